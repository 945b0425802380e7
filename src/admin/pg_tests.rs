//! In-database tests of the admin adapters: Postgres's parser turned into the sandbox's
//! description, the catalog facts, the parse-tree facts of the analysis, and the audit writer.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::admin::parse::{analyse_index, call_facts, describe, query_facts, rel_facts, resolve};
    use crate::admin::policy::{ReindexTarget, RelName, Statement};
    use crate::admin::rules::{FilterOp, QueryKind};
    use crate::pg::parser::RawStatement;

    fn parse(sql: &str) -> crate::errors::DomainResult<Vec<RawStatement>> {
        crate::pg::parser::parse(sql, "the text")
    }

    fn one(sql: &str) -> Statement {
        let stmts = parse(sql).unwrap();
        assert_eq!(stmts.len(), 1, "{sql}");
        // SAFETY: the tree comes straight from `parse` and is only read.
        unsafe { describe(stmts[0].node) }
    }

    fn rel(schema: Option<&str>, name: &str) -> RelName {
        RelName { schema: schema.map(str::to_string), name: name.into() }
    }

    #[pg_test]
    fn the_parser_tells_the_statement_kinds_apart() {
        assert_eq!(
            one("create index concurrently on s.t (a)"),
            Statement::CreateIndex { table: rel(Some("s"), "t"), concurrent: true }
        );
        assert_eq!(
            one("DROP INDEX IF EXISTS a, s.b CASCADE"),
            Statement::DropIndex {
                indexes: vec![rel(None, "a"), rel(Some("s"), "b")],
                concurrent: false,
                missing_ok: true,
                cascade: true
            }
        );
        assert_eq!(
            one("VACUUM (FULL false, ANALYZE) t"),
            Statement::Vacuum { tables: vec![rel(None, "t")], full: false }
        );
        assert_eq!(one("VACUUM FULL t"), Statement::Vacuum { tables: vec![rel(None, "t")], full: true });
        assert_eq!(one("ANALYZE a, b"), Statement::Analyze { tables: vec![rel(None, "a"), rel(None, "b")] });
        assert_eq!(
            one("REINDEX (CONCURRENTLY, VERBOSE) INDEX i"),
            Statement::Reindex {
                target: ReindexTarget::Index,
                relation: Some(rel(None, "i")),
                concurrent: true,
                other_options: vec![]
            }
        );
        assert_eq!(one("DROP TABLE t"), Statement::Other("DROP TABLE".into()));
        assert_eq!(one("SELECT 1"), Statement::Other("SELECT".into()));
        // A semicolon inside a dollar quote or a comment is not a statement boundary.
        assert_eq!(parse("CREATE INDEX ON t (a) WHERE $q$;DROP TABLE t;$q$ <> '' -- ; DROP TABLE t").unwrap().len(), 1);
        assert_eq!(parse("ANALYZE t; /* ; */ DROP TABLE t").unwrap().len(), 2);
        assert_eq!(parse("ANALYZE t; /* ; */ DROP TABLE t").unwrap()[1].text, "/* ; */ DROP TABLE t");
    }

    #[pg_test]
    fn names_resolve_through_the_catalog() {
        Spi::run("CREATE TABLE public.sandbox_t (a int)").unwrap();
        let oids = resolve(&[&rel(None, "sandbox_t"), &rel(Some("pg_catalog"), "pg_class"), &rel(None, "nope")]);
        assert!(oids[0].is_some() && oids[1].is_some() && oids[2].is_none());
        let facts = rel_facts(&oids).unwrap();
        let t = facts[0].as_ref().unwrap();
        assert_eq!((t.qualified.as_str(), t.relkind, t.system, t.owned), ("public.sandbox_t", 'r', false, true));
        assert!(facts[1].as_ref().unwrap().system);
        assert!(facts[2].is_none());
    }

    #[pg_test]
    fn index_expressions_reveal_every_function_they_call() {
        Spi::run(
            "CREATE TABLE public.sandbox_f (a int, b text);
             CREATE FUNCTION public.sneaky(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';",
        )
        .unwrap();
        let sql = "CREATE INDEX ON public.sandbox_f ((lower(b))) WHERE public.sneaky(a) > 0";
        let node = parse(sql).unwrap()[0].node;
        let table = resolve(&[&rel(Some("public"), "sandbox_f")])[0].unwrap();
        let facts = call_facts(&analyse_index(node, table, sql)).unwrap();
        let sneaky =
            facts.iter().find(|f| f.signature.starts_with("sneaky(") || f.signature.contains(".sneaky(")).unwrap();
        assert!(!sneaky.trusted && sneaky.immutable);
        let lower = facts.iter().find(|f| f.signature == "lower(text)").unwrap();
        assert!(lower.trusted && lower.immutable);
        // A domain's CHECK runs on every coercion: the domain is a call too.
        Spi::run("CREATE DOMAIN public.sneaky_dom AS int CHECK (public.sneaky(VALUE) > 0)").unwrap();
        let sql = "CREATE INDEX ON public.sandbox_f ((a::public.sneaky_dom))";
        let facts = call_facts(&analyse_index(parse(sql).unwrap()[0].node, table, sql)).unwrap();
        assert!(facts.iter().any(|f| f.signature == "domain sneaky_dom" && !f.trusted), "{:?}", facts);
    }

    #[pg_test]
    fn query_facts_come_from_the_tree() {
        // SAFETY: each tree comes straight from `parse` and is only read.
        let facts = |sql: &str| unsafe { query_facts(parse(sql).unwrap()[0].node) };
        let f = facts(
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id
             WHERE o.status = $1 AND o.created_at BETWEEN $2 AND $3 AND c.email LIKE 'abc%'",
        );
        assert_eq!(f.kind, QueryKind::Select);
        assert_eq!(f.relations.len(), 2);
        assert_eq!(f.joins, 1);
        assert_eq!(f.params, 3);
        let filters: Vec<(Option<&str>, &str, FilterOp)> =
            f.filters.iter().map(|u| (u.qualifier.as_deref(), u.column.as_str(), u.op)).collect();
        assert_eq!(
            filters,
            [
                (Some("o"), "status", FilterOp::Eq),
                (Some("o"), "created_at", FilterOp::Range),
                (Some("c"), "email", FilterOp::Range)
            ]
        );
        assert_eq!(f.join_columns.len(), 2);
        assert!(!f.select_star && !f.modifies && f.unfiltered_selects.is_empty());
        let w = facts("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x");
        assert!(w.modifies && w.select_star && w.ctes == 1);
    }

    #[pg_test(
        error = "get_slow_queries needs the pg_stat_statements extension, which is not installed in database pgrx_tests"
    )]
    fn slow_queries_name_the_missing_extension() {
        Spi::run("SELECT * FROM booking_admin.get_slow_queries()").unwrap();
    }

    #[pg_test]
    fn the_audit_row_is_committed_before_the_function_returns() {
        Spi::run("CREATE TABLE public.sandbox_a (a int)").unwrap();
        let result = Spi::get_one::<pgrx::JsonB>(
            "SELECT booking_admin.execute_admin_sql('CREATE INDEX ON public.sandbox_a (a)')",
        )
        .unwrap()
        .unwrap();
        let id = result.0["audit_id"].as_str().unwrap().to_string();
        // The writer committed it in its own transaction: visible here, and it would stay if
        // this test's transaction (rolled back at the end) were the caller's.
        let outcome = Spi::get_one_with_args::<String>(
            "SELECT outcome FROM booking_admin.admin_audit WHERE id = $1::uuid",
            &[id.as_str().into()],
        )
        .unwrap();
        assert_eq!(outcome.as_deref(), Some("succeeded"));
        let xmin_is_other = Spi::get_one_with_args::<bool>(
            "SELECT xmin::text::bigint <> txid_current() % 4294967296 FROM booking_admin.admin_audit WHERE id = $1::uuid",
            &[id.as_str().into()],
        )
        .unwrap();
        assert_eq!(xmin_is_other, Some(true));
    }
}
