//! Every function of the schemas `booking`, `booking_internal` and `booking_admin`, found in
//! the catalog (so a new function is fuzzed without touching this file), called with hostile
//! arguments: NULLs, empty and huge strings, extreme numbers, infinite and far dates and times,
//! deep and oddly shaped JSON, unknown ids. Bad input must get a documented SQLSTATE: the test fails on any XX000
//! (an internal error: a panic, an unchecked conversion) or a lost connection.
//!
//! Deterministic: the arguments come from a fixed-seed generator. Each call runs in its own
//! transaction under a 3 s statement timeout and is rolled back, so nothing it does stays,
//! except what is designed to outlive a rollback (the admin and security audit records, rate
//! limit counters in shared memory). Trigger functions cannot be called directly and are
//! skipped; nothing else is: no function here stops workers or the server.

use std::collections::BTreeMap;
use std::time::Instant;

use postgres::Client;

use crate::common::connect;

/// Calls per function, besides the all-NULL call.
const CALLS_PER_FUNCTION: usize = 60;

/// xorshift64*: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, values: &'a [String]) -> &'a str {
        &values[(self.next() % values.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// SQL expressions of type `ty` (as format_type names it), hostile ones first among equals.
fn values(ty: &str, rng: &mut Rng, ids: &[String]) -> Vec<String> {
    let deep_array = "(repeat('[', 200) || repeat(']', 200))::jsonb".to_string();
    let deep_object = "(repeat('{\"a\": ', 150) || '1' || repeat('}', 150))::jsonb".to_string();
    let texts = vec![
        "''".to_string(),
        "'x'".to_string(),
        "repeat('x', 100000)".to_string(),
        "repeat('é', 5000)".to_string(),
        lit("'; DROP TABLE booking.tenants; --"),
        lit("ANALYZE booking.tenants"),
        lit("VACUUM booking.tenants"),
        lit("SELECT 1"),
        lit("SELECT pg_sleep(10)"),
        lit("Europe/Zurich"),
        lit("No/Such_Zone"),
        lit("{\"a\": 1}"),
        lit("retry"),
        lit("delete"),
        lit("cleanup-history"),
        lit("top_level_sql"),
        lit(&rng.uuid()),
    ];
    let mut v: Vec<String> = match ty {
        "text" => texts,
        "integer" => ["0", "1", "-1", "2147483647", "-2147483648", "100"].map(String::from).to_vec(),
        "bigint" => ["0", "-1", "9223372036854775807", "-9223372036854775808"].map(String::from).to_vec(),
        "double precision" => ["0", "-1", "'NaN'", "'Infinity'", "'-Infinity'", "1e308", "0.5"].map(String::from).to_vec(),
        "numeric" => ["0", "'NaN'", "1e100", "-1", "'Infinity'"].map(String::from).to_vec(),
        "boolean" => ["true", "false"].map(String::from).to_vec(),
        "uuid" => {
            let mut u: Vec<String> = ids.iter().map(|i| lit(i)).collect();
            u.push(lit(&rng.uuid()));
            u.push(lit("00000000-0000-0000-0000-000000000000"));
            u
        }
        "date" => ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'", "'0001-01-01'", "'9999-12-31'", "'2026-03-02'"]
            .map(String::from)
            .to_vec(),
        "timestamp with time zone" | "timestamp without time zone" => [
            "'infinity'",
            "'-infinity'",
            "'4713-01-01 00:00 BC'",
            "'294276-12-31 23:59:59'",
            "'262142-12-31 23:00'",
            "'0001-01-01 00:00'",
            "'9999-12-31 23:59'",
            "'2026-03-02 10:00'",
        ]
        .map(String::from)
        .to_vec(),
        "jsonb" => vec![
            "'{}'".into(),
            "'[]'".into(),
            "'null'".into(),
            "'1'".into(),
            "'\"s\"'".into(),
            deep_array,
            deep_object,
            lit("{\"0\": {\"is_open\": true, \"start_time\": \"25:00\", \"end_time\": \"09:00\"}}"),
            lit("[{\"days\": [9], \"start\": \"24:00\", \"end\": \"00:00\"}]"),
            lit("{\"sql\": \"VACUUM booking.tenants\", \"search_path\": \"nope, pg_catalog\"}"),
            "(SELECT jsonb_object_agg(g::text, g) FROM generate_series(1, 5000) g)".into(),
            lit(
                "{\"customer_id\": \"00000000-0000-0000-0000-000000000000\", \"starts_at\": \"294276-12-31 23:59:59+00\", \"ends_at\": \"infinity\"}",
            ),
            lit("{\"starts_at\": 1e400, \"staff_id\": [], \"service_id\": {}}"),
        ],
        "text[]" => ["'{}'", "'{NULL}'", "ARRAY['']", "ARRAY[repeat('x', 10000)]"].map(String::from).to_vec(),
        "uuid[]" => ["'{}'", "'{NULL}'", "ARRAY[gen_random_uuid()]"].map(String::from).to_vec(),
        "jsonb[]" => ["'{}'", "'{NULL}'", "ARRAY['{}'::jsonb]"].map(String::from).to_vec(),
        // Composite arguments: a real row when there is one (else NULL).
        other if other.contains('.') => vec![format!("(SELECT t FROM {other} t LIMIT 1)")],
        _ => vec![],
    };
    v.push("NULL".into());
    v.into_iter().map(|e| format!("({e})::{ty}")).collect()
}

struct Function {
    name: String,
    args: Vec<String>,
}

fn functions(c: &mut Client) -> Vec<Function> {
    c.query(
        "SELECT p.oid::regproc::text, coalesce(array_agg(format_type(t.oid, NULL) ORDER BY t.n) FILTER (WHERE t.oid IS NOT NULL), '{}')
         FROM pg_proc p
         LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY t(oid, n) ON true
         WHERE p.pronamespace IN ('booking'::regnamespace, 'booking_admin'::regnamespace, 'booking_internal'::regnamespace)
           AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype
         GROUP BY p.oid ORDER BY p.oid::regprocedure::text",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| Function { name: r.get(0), args: r.get(1) })
    .collect()
}

#[test]
fn every_function_answers_hostile_arguments_without_an_internal_error() {
    let mut c = connect();
    let started = Instant::now();
    // Some ids that exist, so calls get past "unknown id" now and then.
    let ids: Vec<String> = c
        .query(
            "(SELECT id::text FROM booking.services LIMIT 2) UNION ALL (SELECT id::text FROM booking.staff LIMIT 2)
             UNION ALL (SELECT id::text FROM booking.appointments LIMIT 2) UNION ALL (SELECT id::text FROM booking.tenants LIMIT 1)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let fns = functions(&mut c);
    assert!(fns.len() > 80, "found only {} functions", fns.len());
    let (mut calls, mut failures, mut states) = (0, Vec::new(), BTreeMap::<String, usize>::new());
    for f in &fns {
        let pools: Vec<Vec<String>> = f.args.iter().map(|t| values(t, &mut rng, &ids)).collect();
        let mut arg_lists = vec![f.args.iter().map(|t| format!("NULL::{t}")).collect::<Vec<_>>()];
        for _ in 0..if f.args.is_empty() { 0 } else { CALLS_PER_FUNCTION } {
            arg_lists.push(pools.iter().map(|p| rng.pick(p).to_string()).collect());
        }
        for args in arg_lists {
            let sql = format!("SELECT {}({})", f.name, args.join(", "));
            calls += 1;
            let mut tx = c.transaction().unwrap();
            tx.batch_execute("SET LOCAL statement_timeout = '3s'").unwrap();
            let outcome = tx.batch_execute(&sql);
            drop(tx);
            let state = outcome
                .as_ref()
                .err()
                .map_or("ok".to_string(), |e| e.code().map_or("none".into(), |s| s.code().into()));
            *states.entry(state).or_default() += 1;
            if let Err(e) = outcome {
                match e.code().map(|s| s.code()) {
                    Some("XX000") => failures.push(format!("{sql}\n    XX000: {}", e.as_db_error().unwrap().message())),
                    Some(_) => {}
                    None => failures.push(format!("{sql}\n    no SQLSTATE (connection lost?): {e}")),
                }
            }
            if c.is_closed() {
                failures.push(format!("{sql}\n    the connection was lost"));
                c = connect();
            }
        }
    }
    println!("fuzz: {} functions, {calls} calls in {:?}; outcomes {states:?}", fns.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {calls} calls failed:\n{}", failures.len(), failures.join("\n"));
}
