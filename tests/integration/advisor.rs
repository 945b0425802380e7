//! Supabase's Security Advisor (the splinter linter) on this extension, with the schemas the
//! documentation (docs/supabase.md) tells users to expose in PostgREST's `db-schemas`. These are splinter's own predicates
//! (supabase/splinter, lints 0011, 0028 and 0029 as of commit 55db5b1), written against the
//! catalog:
//!
//! - 0028 / 0029: a SECURITY DEFINER function that `anon` / `authenticated` may execute in an
//!   exposed schema (outside the Supabase-internal schemas splinter skips);
//! - 0011: a function whose `search_path` is not set, outside those schemas. Splinter leaves
//!   extension members out by default; here the filter is turned around, to every function of
//!   booking_engine and only those.
//!
//! Each must find nothing, and each is shown to catch a function that breaks it, so a future
//! function that reintroduces a warning fails this test.

use postgres::GenericClient;

use crate::common::{connect, ensure_supabase_roles};

/// The schemas splinter never reports on (Supabase's own and other extensions').
const SPLINTER_SKIPS: &[&str] = &[
    "_timescaledb_cache",
    "_timescaledb_catalog",
    "_timescaledb_config",
    "_timescaledb_internal",
    "auth",
    "cron",
    "extensions",
    "graphql",
    "graphql_public",
    "information_schema",
    "net",
    "pgmq",
    "pgroonga",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "pgbouncer",
    "pg_catalog",
    "realtime",
    "repack",
    "storage",
    "supabase_functions",
    "supabase_migrations",
    "tiger",
    "topology",
    "vault",
];

/// The schemas the documentation tells users to expose: its `db-schemas = "..."` setting.
fn exposed_schemas() -> Vec<String> {
    let found: Vec<String> = crate::docs::documents()
        .iter()
        .flat_map(|(_, text)| {
            text.match_indices("db-schemas = \"")
                .map(|(at, m)| {
                    let rest = &text[at + m.len()..];
                    rest[..rest.find('"').expect("a closing quote")].to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!found.is_empty(), "the documentation names no PostgREST db-schemas setting");
    assert!(found.windows(2).all(|w| w[0] == w[1]), "the documentation names different db-schemas: {found:?}");
    found[0].split(',').map(|s| s.trim().to_string()).collect()
}

const DEFINER_EXECUTABLE: &str = "
    SELECT p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prosecdef AND has_function_privilege($1, p.oid, 'EXECUTE')
      AND n.nspname = ANY ($2) AND NOT n.nspname = ANY ($3)
    ORDER BY 1";

const SEARCH_PATH_MUTABLE: &str = "
    SELECT p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine'
    WHERE NOT n.nspname = ANY ($1)
      AND NOT EXISTS (SELECT FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%')
    ORDER BY 1";

/// (0028, 0029, 0011) findings.
fn lints(c: &mut impl GenericClient, exposed: &[String]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let skips: Vec<&str> = SPLINTER_SKIPS.to_vec();
    let names = |rows: Vec<postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
    (
        names(c.query(DEFINER_EXECUTABLE, &[&"anon", &exposed, &skips]).unwrap()),
        names(c.query(DEFINER_EXECUTABLE, &[&"authenticated", &exposed, &skips]).unwrap()),
        names(c.query(SEARCH_PATH_MUTABLE, &[&skips]).unwrap()),
    )
}

#[test]
fn supabase_security_advisor_reports_nothing_for_the_extension() {
    ensure_supabase_roles();
    let exposed = exposed_schemas();
    assert!(exposed.iter().any(|s| s == "booking"), "the documented API schema is exposed: {exposed:?}");
    assert!(
        !exposed.iter().any(|s| s == "booking_internal" || s == "booking_admin"),
        "the implementations and the operators' schema are never exposed: {exposed:?}"
    );
    let mut c = connect();
    let (anon, authenticated, search_path) = lints(&mut c, &exposed);
    assert!(anon.is_empty(), "0028 anon_security_definer_function_executable: {anon:?}");
    assert!(authenticated.is_empty(), "0029 authenticated_security_definer_function_executable: {authenticated:?}");
    assert!(search_path.is_empty(), "0011 function_search_path_mutable (extension members): {search_path:?}");

    // Not blind: a SECURITY DEFINER function PUBLIC may execute in booking, and an extension
    // function without a search_path, are found (in a transaction that is rolled back).
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "CREATE FUNCTION booking.advisor_probe() RETURNS int LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog AS 'SELECT 1';
         CREATE FUNCTION booking_internal.advisor_probe_path() RETURNS int LANGUAGE sql AS 'SELECT 1';
         ALTER EXTENSION booking_engine ADD FUNCTION booking_internal.advisor_probe_path();",
    )
    .unwrap();
    let (anon, authenticated, search_path) = lints(&mut tx, &exposed);
    assert_eq!(anon, ["booking.advisor_probe()"]);
    assert_eq!(authenticated, ["booking.advisor_probe()"]);
    assert_eq!(search_path, ["booking_internal.advisor_probe_path()"]);
    tx.rollback().unwrap();
}

/// Citus pushes calls of its distributed functions down to the tenant's worker: those must be
/// the entry points applications call (schema booking, SECURITY INVOKER), not the privileged
/// implementations.
#[test]
fn distributed_functions_are_the_entry_points_applications_call() {
    let mut c = connect();
    let wrong: Vec<String> = c
        .query(
            "SELECT l.object FROM booking_admin.citus_layout() l JOIN pg_proc p ON p.oid = l.object::regprocedure
             WHERE l.kind = 'function' AND (p.prosecdef OR p.pronamespace <> 'booking'::regnamespace)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    let n: i64 =
        c.query_one("SELECT count(*) FROM booking_admin.citus_layout() WHERE kind = 'function'", &[]).unwrap().get(0);
    assert!(n >= 6, "{n} distributed functions");
}
