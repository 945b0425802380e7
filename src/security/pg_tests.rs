//! In-database tests of the security adapters.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pg::sandbox::{check_single_select, run_select as run_rule};

    #[pg_test]
    fn only_one_plain_select_passes_the_parser_check() {
        for ok in [
            "SELECT 1",
            "VALUES (1), (2)",
            "SELECT 1 UNION ALL SELECT 2",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "SELECT 1 -- trailing comment",
        ] {
            assert!(check_single_select(ok).is_ok(), "{ok}");
        }
        for refused in [
            "INSERT INTO booking.tenants (name) VALUES ('x')",
            "DELETE FROM booking.tenants",
            "UPDATE booking.tenants SET name = 'x'",
            "SELECT 1; SELECT 2",
            "SELECT 1 INTO TEMP t",
            "SELECT * FROM booking.tenants FOR UPDATE",
            "WITH d AS (DELETE FROM booking.tenants RETURNING *) SELECT * FROM d",
            "EXPLAIN ANALYZE DELETE FROM booking.tenants",
            "",
        ] {
            let e = check_single_select(refused).expect_err(refused);
            assert_eq!(
                e.sqlstate(),
                pgrx::PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
                "{refused}"
            );
        }
    }

    #[pg_test]
    fn a_rule_is_always_rolled_back() {
        Spi::run("CREATE TABLE public.sandbox_victim (x int); INSERT INTO public.sandbox_victim VALUES (1)").unwrap();
        Spi::run(
            "CREATE FUNCTION public.sandbox_writer() RETURNS int LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO public.sandbox_victim VALUES (2); RETURN 1; END $$",
        )
        .unwrap();
        // A setting changed by the rule (allowed in read-only mode) is undone with it.
        let rows =
            run_rule("SELECT set_config('booking_engine.rule_timeout_ms', '4321', false) AS object", 1000).unwrap();
        assert_eq!(rows, vec![serde_json::json!({"object": "4321ms"})]);
        assert_eq!(Spi::get_one::<String>("SHOW booking_engine.rule_timeout_ms").unwrap().as_deref(), Some("5s"));
        let err = run_rule("SELECT public.sandbox_writer()", 1000).unwrap_err();
        assert!(err.contains("read-only"), "{err}");
        assert!(run_rule("INSERT INTO public.sandbox_victim VALUES (3)", 1000)
            .unwrap_err()
            .contains("must be a SELECT"));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM public.sandbox_victim").unwrap(), Some(1));
        // The caller's transaction is still read-write and usable.
        Spi::run("INSERT INTO public.sandbox_victim VALUES (4)").unwrap();
    }

    #[pg_test]
    fn a_slow_rule_is_stopped_and_an_outer_statement_timeout_survives() {
        Spi::run("SET statement_timeout = '60s'").unwrap();
        let started = std::time::Instant::now();
        let err = run_rule("SELECT pg_sleep(0.05) FROM generate_series(1, 400)", 100).unwrap_err();
        assert!(err.contains("statement timeout"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The outer timer is armed again: a later short sleep is not cancelled.
        Spi::run("SELECT pg_sleep(0.2)").unwrap();
    }

    #[pg_test]
    fn compliance_report_sums_the_registry_violations_and_audit() {
        Spi::run(
            "SET booking_engine.now = '2026-03-02 10:00+01';
             INSERT INTO booking_admin.pii_data_registry (table_name, column_name, data_type, encryption_method, compliance_level) VALUES
                 ('public.a', 'email', 'email', NULL, 'confidential'),
                 ('public.a', 'iban', 'iban', 'pgcrypto', 'restricted'),
                 ('public.a', 'name', 'name', NULL, 'internal'),
                 ('public.a', 'card', 'payment_card', 'pgcrypto', 'restricted');
             INSERT INTO booking_admin.security_rules (id, rule_name, rule_type, severity, condition_sql, remediation_text) VALUES
                 ('00000000-0000-0000-0000-00000000f001', 'r1', 'test', 'high', 'SELECT 1', 'fix');
             INSERT INTO booking_admin.security_violations (rule_id, object_key, violation_details, severity, status, detected_at, resolved_at) VALUES
                 ('00000000-0000-0000-0000-00000000f001', 'x', '{}', 'high', 'open', '2026-03-01 08:00+01', NULL),
                 ('00000000-0000-0000-0000-00000000f001', 'y', '{}', 'critical', 'acknowledged', '2026-02-01 08:00+01', NULL),
                 ('00000000-0000-0000-0000-00000000f001', 'z', '{}', 'low', 'resolved', '2026-01-01 08:00+01', '2026-01-02 08:00+01');
             INSERT INTO booking_admin.security_audit_log (action, resource_type, success, created_at) VALUES
                 ('login', 'auth', false, '2026-03-02 09:00+01'),
                 ('login', 'auth', true, '2026-02-20 09:00+01'),
                 ('login', 'auth', true, '2025-01-01 09:00+01');",
        )
        .unwrap();
        let r = Spi::get_one::<pgrx::JsonB>("SELECT booking_admin.compliance_report()").unwrap().unwrap().0;
        assert_eq!(r["pii_summary"]["columns"], 4);
        assert_eq!(
            r["pii_summary"]["by_compliance_level"],
            serde_json::json!({"public": 0, "internal": 1, "confidential": 1, "restricted": 2})
        );
        assert_eq!(r["encryption_coverage_pct"], 50.0);
        assert_eq!(r["open_violations"]["total"], 2);
        assert_eq!(
            r["open_violations"]["by_severity"],
            serde_json::json!({"low": 0, "medium": 0, "high": 1, "critical": 1})
        );
        assert_eq!(r["oldest_unresolved_violation"]["object"], "y");
        // The log is shared with concurrently running tests (their entries carry the real date, so
        // they fall outside the windows of this fixed clock but count in the total).
        assert_eq!(r["audit"]["last_24h"], 1);
        assert_eq!(r["audit"]["failures_last_24h"], 1);
        assert_eq!(r["audit"]["last_30d"], 2);
        assert!(r["audit"]["total"].as_i64().unwrap() >= 3, "{}", r["audit"]);
        assert_eq!(r["rules"], serde_json::json!({"active": 1, "total": 1}));
    }

    #[pg_test]
    fn opening_hours_are_read_in_local_time() {
        let within = |ts: &str| {
            Spi::get_one_with_args::<bool>(
                "SELECT booking.is_within_opening_hours('{\"1\": {\"is_open\": true, \"start_time\": \"09:00\", \"end_time\": \"18:00\"}}', $1::timestamp)",
                &[ts.into()],
            )
            .unwrap()
            .unwrap()
        };
        assert!(within("2026-03-02 09:00"), "Monday 09:00");
        assert!(!within("2026-03-02 18:00"), "closing time is outside");
        assert!(!within("2026-03-03 10:00"), "Tuesday is not in the document");
    }
}
