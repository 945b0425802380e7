//! The operator boundary over real connections: a non-superuser operator whose only grant is
//! membership in `booking_operator` uses the whole admin surface (queued statements included,
//! every attempt audited, failures recorded with Postgres's own error), and no write to the job
//! queue lets anyone run code as a role they cannot act as. Also the hostile inputs that used to
//! give XX000, and btree_gist installed in an `extensions` schema.

use std::thread::sleep;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use serde_json::Value;
use uuid::Uuid;

use crate::common::{connect, dsn, salon};

/// A login role whose only grant is membership in booking_operator, with a schema of its own
/// holding a table of 1000 rows; and a connection as that role.
struct Operator {
    role: String,
    schema: String,
    conn: Client,
}

fn operator(admin: &mut Client) -> Operator {
    let role = format!("op_it_{}", &Uuid::new_v4().simple().to_string()[..12]);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT booking_operator TO {role};
             CREATE SCHEMA {role} AUTHORIZATION {role};"
        ))
        .unwrap();
    let mut conn = Client::connect(&format!("{} user={role}", dsn()), NoTls).unwrap();
    conn.batch_execute(&format!(
        "CREATE TABLE {role}.t (a int, b text);
         INSERT INTO {role}.t SELECT g, g::text FROM generate_series(1, 1000) g;"
    ))
    .unwrap();
    Operator { schema: role.clone(), role, conn }
}

fn code(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

fn json(c: &mut Client, sql: &str) -> Value {
    let row = c.query_one(&format!("SELECT ({sql})::jsonb"), &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, postgres::types::Json<Value>>(0).0
}

fn job_status(c: &mut Client, id: Uuid) -> (String, Option<String>) {
    let r = c.query_one("SELECT status, error_message FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap();
    (r.get(0), r.get(1))
}

/// Polls until the job is completed or dead (every job here has no retry).
fn finished(c: &mut Client, id: Uuid) -> (String, Option<String>) {
    let start = Instant::now();
    loop {
        let s = job_status(c, id);
        if s.0 == "completed" || s.0 == "dead" {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "job {id} still {s:?}");
        sleep(Duration::from_millis(20));
    }
}

fn is_superuser(c: &mut Client, role: &str) -> bool {
    c.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role]).unwrap().get(0)
}

fn uuid_of(v: &Value, key: &str) -> Uuid {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")).parse().unwrap()
}

#[test]
fn no_write_to_the_job_queue_runs_code_as_a_role_the_writer_cannot_act_as() {
    let mut admin = connect();
    let mut op = operator(&mut admin);
    let r = op.role.clone();
    // Even a role granted far more than booking_operator gets (write access to the queue and
    // the handler registry, granted here explicitly) cannot borrow another role's identity.
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA booking_admin TO {r};
             GRANT EXECUTE ON FUNCTION booking_admin.enqueue_job, booking_admin.wake_workers_at_commit TO {r};
             GRANT SELECT, INSERT, UPDATE, DELETE ON booking_admin.jobs, booking_admin.job_handlers TO {r};"
        ))
        .unwrap();

    // 1. The attack of the issue: a job that claims to come from postgres.
    let e = op
        .conn
        .execute(
            &format!(
                "INSERT INTO booking_admin.jobs (name, handler, payload, created_by)
                 VALUES ('x', 'top_level_sql', '{{\"sql\": \"ALTER ROLE {r} SUPERUSER\"}}', 'postgres')"
            ),
            &[],
        )
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    assert!(e.as_db_error().unwrap().message().contains("cannot act as postgres"), "{e:?}");

    // 2. Its variants: taking over a superuser's queued job, or re-labelling one's own job.
    let theirs: Uuid = admin
        .query_one(
            "SELECT booking_admin.enqueue_job('later', 'top_level_sql', '{\"sql\": \"SELECT 1\"}', p_run_at => now() + interval '1 day')",
            &[],
        )
        .unwrap()
        .get(0);
    let e = op
        .conn
        .execute(
            &format!(
                "UPDATE booking_admin.jobs SET payload = '{{\"sql\": \"ALTER ROLE {r} SUPERUSER\"}}' WHERE id = $1"
            ),
            &[&theirs],
        )
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let e = op
        .conn
        .execute("UPDATE booking_admin.jobs SET handler = 'data_cleanup' WHERE id = $1", &[&theirs])
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let mine: Uuid = op
        .conn
        .query_one(
            "SELECT booking_admin.enqueue_job('mine', 'top_level_sql', '{\"sql\": \"SELECT 1\"}', p_run_at => now() + interval '1 day')",
            &[],
        )
        .unwrap()
        .get(0);
    let e =
        op.conn.execute("UPDATE booking_admin.jobs SET created_by = 'postgres' WHERE id = $1", &[&mine]).unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    let e =
        op.conn.execute("UPDATE booking_admin.jobs SET enqueued_by = 'postgres' WHERE id = $1", &[&mine]).unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    admin.execute("DELETE FROM booking_admin.jobs WHERE id IN ($1, $2)", &[&theirs, &mine]).unwrap();

    // 3. A forged handler naming a function the operator may not execute runs it as the
    // operator: refused by Postgres, nothing written.
    let handler = format!("forged_{}", &Uuid::new_v4().simple().to_string()[..12]);
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.{handler}_log (at timestamptz);
             CREATE FUNCTION public.{handler}_secret(p jsonb) RETURNS jsonb LANGUAGE sql
                 AS $$ INSERT INTO public.{handler}_log VALUES (now()) RETURNING '{{}}'::jsonb $$;
             REVOKE ALL ON FUNCTION public.{handler}_secret(jsonb) FROM PUBLIC;"
        ))
        .unwrap();
    op.conn
        .execute(
            &format!(
                "INSERT INTO booking_admin.job_handlers (handler, kind, function) VALUES ('{handler}', 'function', 'public.{handler}_secret')"
            ),
            &[],
        )
        .unwrap();
    let forged: Uuid = op
        .conn
        .query_one(&format!("SELECT booking_admin.enqueue_job('forged', '{handler}', p_max_retries => 0)"), &[])
        .unwrap()
        .get(0);
    let (status, error) = finished(&mut admin, forged);
    assert_eq!(status, "dead");
    assert!(error.as_deref().unwrap_or("").contains("permission denied for function"), "{error:?}");
    let logged: i64 = admin.query_one(&format!("SELECT count(*) FROM public.{handler}_log"), &[]).unwrap().get(0);
    assert_eq!(logged, 0, "the forged handler's function never ran");

    // 4. A payload search_path changes nothing about who runs the statement.
    let sp: Uuid = op
        .conn
        .query_one(
            &format!(
                "SELECT booking_admin.enqueue_job('sp', 'top_level_sql',
                     jsonb_build_object('sql', 'ALTER ROLE {r} SUPERUSER', 'search_path', 'pg_catalog, public'),
                     p_max_retries => 0)"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let (status, error) = finished(&mut admin, sp);
    assert_eq!(status, "dead");
    assert!(error.as_deref().unwrap_or("").starts_with("42501: must be superuser"), "{error:?}");

    assert!(!is_superuser(&mut admin, &r), "{r} became superuser");
}

#[test]
fn the_runner_refuses_a_job_whose_enqueuer_cannot_act_as_its_role() {
    let mut admin = connect();
    let op = operator(&mut admin);
    let r = op.role.clone();
    // Triggers off (superuser only): the row claims postgres as its role and the operator as
    // its enqueuer, which the trigger would never let through.
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica").unwrap();
    let id: Uuid = tx
        .query_one(
            &format!(
                "INSERT INTO booking_admin.jobs (name, handler, payload, max_retries, created_by, enqueued_by)
                 VALUES ('behind', 'top_level_sql', '{{\"sql\": \"ALTER ROLE {r} SUPERUSER\"}}', 0, 'postgres', '{r}')
                 RETURNING id"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    tx.batch_execute("SELECT booking_admin.wake_workers_at_commit()").unwrap();
    tx.commit().unwrap();
    let (status, error) = finished(&mut admin, id);
    assert_eq!(status, "dead");
    assert_eq!(
        error.as_deref(),
        Some(format!("42501: refused: {r} enqueued the job but cannot act as postgres").as_str())
    );
    assert!(!is_superuser(&mut admin, &r), "{r} became superuser");
}

#[test]
fn an_operator_with_only_the_booking_operator_role_uses_the_whole_admin_surface() {
    let mut admin = connect();
    let mut op = operator(&mut admin);
    let (r, s) = (op.role.clone(), op.schema.clone());
    let c = &mut op.conn;
    let mut calls = 0;

    // Immediate statements.
    for sql in [
        format!("CREATE INDEX t_a_idx ON {s}.t (a)"),
        format!("ANALYZE {s}.t"),
        format!("REINDEX INDEX {s}.t_a_idx"),
        format!("DROP INDEX {s}.t_a_idx"),
    ] {
        let v = json(c, &format!("booking_admin.execute_admin_sql('{sql}')"));
        calls += 1;
        assert_eq!(v["mode"], "immediate", "{sql}: {v}");
    }
    // Queued statements: queued with the extension's rights, run as the operator.
    for sql in [
        format!("VACUUM (ANALYZE) {s}.t"),
        format!("CREATE INDEX CONCURRENTLY t_b_idx ON {s}.t (b)"),
        format!("REINDEX TABLE CONCURRENTLY {s}.t"),
        format!("DROP INDEX CONCURRENTLY {s}.t_b_idx"),
    ] {
        let v = json(c, &format!("booking_admin.execute_admin_sql('{sql}')"));
        calls += 1;
        assert_eq!(v["mode"], "queued", "{sql}: {v}");
        let (status, error) = finished(&mut admin, uuid_of(&v, "job_id"));
        assert_eq!(status, "completed", "{sql}: {error:?}");
        let st = json(c, &format!("booking_admin.admin_sql_status('{}')", uuid_of(&v, "audit_id")));
        assert_eq!(st["outcome"], "succeeded", "{st}");
    }
    let ran_as: String = admin
        .query_one(
            "SELECT created_by::text FROM booking_admin.jobs WHERE payload ->> 'sql' = $1",
            &[&format!("VACUUM (ANALYZE) {s}.t")],
        )
        .unwrap()
        .get(0);
    assert_eq!(ran_as, r, "the queued statement ran as the operator");

    // A queued statement that fails is recorded with Postgres's own error, not a dead worker.
    let v = json(c, &format!("booking_admin.execute_admin_sql('VACUUM ANALYZE {s}.t (nope)')"));
    calls += 1;
    let (status, error) = finished(&mut admin, uuid_of(&v, "job_id"));
    assert_eq!(status, "dead");
    let error = error.unwrap();
    assert!(error.starts_with("42703: column \"nope\""), "{error}");
    let st = json(c, &format!("booking_admin.admin_sql_status('{}')", uuid_of(&v, "audit_id")));
    assert_eq!(st["outcome"], "failed");
    assert_eq!(st["outcome_detail"].as_str(), Some(error.as_str()));

    // Partitioned tables: REINDEX is queued (it commits per partition); a partition of another
    // role makes statements on the parent refused.
    c.batch_execute(&format!(
        "CREATE TABLE {s}.p (a int) PARTITION BY RANGE (a);
         CREATE TABLE {s}.p1 PARTITION OF {s}.p FOR VALUES FROM (0) TO (100);
         CREATE INDEX p_a_idx ON {s}.p (a);"
    ))
    .unwrap();
    let v = json(c, &format!("booking_admin.execute_admin_sql('REINDEX TABLE {s}.p')"));
    calls += 1;
    assert_eq!(v["mode"], "queued", "{v}");
    assert_eq!(finished(&mut admin, uuid_of(&v, "job_id")).0, "completed");
    admin.batch_execute(&format!("CREATE TABLE {s}.p2 PARTITION OF {s}.p FOR VALUES FROM (100) TO (200)")).unwrap();
    for sql in
        [format!("CREATE INDEX ON {s}.p (a)"), format!("DROP INDEX {s}.p_a_idx"), format!("REINDEX INDEX {s}.p_a_idx")]
    {
        let e = c.query_one("SELECT booking_admin.execute_admin_sql($1)", &[&sql]).unwrap_err();
        calls += 1;
        assert_eq!(code(&e), "42501", "{sql}: {e}");
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(message.contains(&format!("{s}.p2")), "{message}");
    }

    // Every attempt is in the audit, written whatever the caller's rights.
    let audited: i64 =
        admin.query_one("SELECT count(*) FROM booking_admin.admin_audit WHERE role_name = $1", &[&r]).unwrap().get(0);
    assert_eq!(audited, calls);

    // The rest of the surface.
    let verdict = json(c, &format!("booking_admin.check_admin_sql('VACUUM {s}.t')"));
    assert_eq!(verdict["job_payload"]["role"], r.as_str());
    let plan = json(c, &format!("booking_admin.execute_explain_query('SELECT count(*) FROM {s}.t', true)"));
    assert!(plan["Plan"].is_object(), "{plan}");
    let analysis = json(c, &format!("booking_admin.analyze_query('SELECT * FROM {s}.t WHERE a = 1')"));
    assert!(analysis["findings"].is_array(), "{analysis}");
    for f in [
        "get_table_stats",
        "get_index_stats",
        "get_table_vacuum_stats",
        "get_connection_stats",
        "analyze_partitioning_candidates",
        "dead_letter_jobs",
        "maintenance_history",
    ] {
        c.query(&format!("SELECT * FROM booking_admin.{f}()"), &[]).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for f in [
        "get_cache_hit_ratio()",
        "get_index_hit_ratio()",
        "stats_since()",
        "job_stats()",
        "worker_status()",
        "scheduler_status()",
        "scheduler_job('cleanup-history')",
        "configure_scheduler_job('cleanup-history')",
        "process_dead_letter('retry', 1)",
    ] {
        c.query_one(&format!("SELECT booking_admin.{f}"), &[]).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let e = c.query("SELECT * FROM booking_admin.get_slow_queries()", &[]).err();
    assert!(e.is_none() || code(e.as_ref().unwrap()) == "55000", "{e:?}");
    let job: Uuid = c
        .query_one(
            &format!("SELECT booking_admin.enqueue_job('op job', 'top_level_sql', '{{\"sql\": \"ANALYZE {s}.t\"}}', p_max_retries => 0)"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(finished(&mut admin, job).0, "completed");

    // What stays out of reach: the runners' own functions and the scheduler's function column.
    for sql in [
        "SELECT booking_admin.claim_jobs('x', 1)".to_string(),
        "SELECT booking_admin.run_maintenance('cleanup-history')".to_string(),
        "UPDATE booking_admin.scheduler_job_info SET function = 'public.f' WHERE false".to_string(),
        format!("UPDATE booking_admin.jobs SET payload = '{{}}' WHERE id = '{job}'"),
    ] {
        let e = c.batch_execute(&sql).unwrap_err();
        assert_eq!(code(&e), "42501", "{sql}: {e}");
    }
    assert!(!is_superuser(&mut admin, &r));
}

/// The first report: a role with nothing but EXECUTE on execute_admin_sql (and USAGE
/// on the schema to reach it) could not queue VACUUM ("permission denied for function
/// enqueue_job", then "for table jobs") and left no audit row.
#[test]
fn execute_on_execute_admin_sql_alone_is_enough_to_queue_a_statement() {
    let mut admin = connect();
    let role = format!("op_it_{}", &Uuid::new_v4().simple().to_string()[..12]);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA booking_admin TO {role};
             GRANT EXECUTE ON FUNCTION booking_admin.execute_admin_sql TO {role};
             CREATE SCHEMA {role} AUTHORIZATION {role};"
        ))
        .unwrap();
    let mut c = Client::connect(&format!("{} user={role}", dsn()), NoTls).unwrap();
    c.batch_execute(&format!("CREATE TABLE {role}.t (a int); INSERT INTO {role}.t SELECT generate_series(1, 100)"))
        .unwrap();
    let v = json(&mut c, &format!("booking_admin.execute_admin_sql('VACUUM {role}.t')"));
    assert_eq!(v["mode"], "queued", "{v}");
    assert_eq!(finished(&mut admin, uuid_of(&v, "job_id")), ("completed".to_string(), None));
    let audited: i64 = admin
        .query_one(
            "SELECT count(*) FROM booking_admin.admin_audit WHERE role_name = $1 AND decision = 'accepted'",
            &[&role],
        )
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}

#[test]
fn null_flags_and_deep_documents_and_far_times_get_their_documented_sqlstate() {
    let mut c = connect();
    for sql in [
        "SELECT booking_admin.execute_admin_sql('ANALYZE x', NULL)",
        "SELECT booking_admin.check_admin_sql('ANALYZE x', NULL)",
        "SELECT booking_admin.execute_explain_query('SELECT 1', NULL)",
    ] {
        let e = c.query_one(sql, &[]).unwrap_err();
        assert_eq!(code(&e), "22023", "{sql}: {e}");
        let message = e.as_db_error().unwrap().message().to_string();
        assert!(message.contains("allow_vacuum_full") || message.contains("analyze"), "{sql}: {message}");
    }

    let deep = "(repeat('[', 200) || repeat(']', 200))::jsonb";
    let sql = format!("SELECT booking.is_valid_opening_hours({deep})");
    let valid: bool = c.query_one(&sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0);
    assert!(!valid, "{sql}");
    let e =
        c.query_one(&format!("SELECT booking.is_within_opening_hours({deep}, '2026-03-02 10:00')"), &[]).unwrap_err();
    assert_eq!(code(&e), "22023", "{e}");
    let e = c
        .execute(
            &format!("INSERT INTO booking.tenants (name, timezone, opening_hours) VALUES ('deep', 'UTC', {deep})"),
            &[],
        )
        .unwrap_err();
    assert_eq!(code(&e), "23514", "{e}");

    let s = salon(&mut c, 1);
    let far = "'294276-12-31 23:59:59+00'::timestamptz";
    for sql in [
        format!("SELECT booking.validate_appointment_timing($1, $2, {far})"),
        format!("SELECT booking.rpc_validate_appointment_slot($1, $2, '0001-01-01 00:00+00', {far})"),
        format!("SELECT booking.rpc_validate_appointment_slot($1, $2, '2026-03-02 10:00+01', {far})"),
    ] {
        let e = c.query_one(&sql, &[&s.staff[0], &s.service]).unwrap_err();
        assert_eq!(code(&e), "22008", "{sql}: {e}");
    }
}

/// btree_gist in an `extensions` schema (as Supabase's linter wants it) instead of `public`:
/// booking_engine installs and its exclusion constraint finds btree_gist's operator classes.
#[test]
fn booking_engine_works_with_btree_gist_in_an_extensions_schema() {
    let mut admin = connect();
    let db = format!("booking_ext_{}", &Uuid::new_v4().simple().to_string()[..12]);
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let outcome = std::panic::catch_unwind(|| {
        let mut c = Client::connect(&format!("{} dbname={db}", dsn()), NoTls).unwrap();
        c.batch_execute(
            "CREATE SCHEMA extensions;
             CREATE EXTENSION btree_gist SCHEMA extensions;
             CREATE EXTENSION booking_engine;",
        )
        .unwrap();
        let in_public: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'btree_gist'
                 JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
                 WHERE p.pronamespace = 'public'::regnamespace",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(in_public, 0, "nothing of btree_gist in public");
        c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
        let s = salon(&mut c, 1);
        let insert = "INSERT INTO booking.appointments (tenant_id, customer_id, staff_id, service_id, starts_at, ends_at, status)
                      VALUES ($1, $2, $3, $4, '2026-03-02 10:00+01', '2026-03-02 11:00+01', 'confirmed')";
        c.execute(insert, &[&s.tenant, &s.customer, &s.staff[0], &s.service]).unwrap();
        let e = c.execute(insert, &[&s.tenant, &s.customer, &s.staff[0], &s.service]).unwrap_err();
        assert_eq!(code(&e), "23P01", "{e}");
    });
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
