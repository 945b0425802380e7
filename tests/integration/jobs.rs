//! Jobs over a real cluster with the background workers serving this database: pickup on
//! enqueue, retries with backoff, timeouts, top-level statements, maintenance, and no job lost
//! when a runner or the whole server dies. Tests that kill or restart the server, or run
//! maintenance over every tenant, are `#[ignore]`d here and run alone by scripts/test.sh
//! (`--ignored --test-threads=1`).

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::Value;
use uuid::Uuid;

use crate::common::{
    await_pid, connect, durable_connection, pg_ctl, reconnect, reconnect_after_crash, salon, terminate,
};

/// A handler `it_<random>` whose function body is `body` (PL/pgSQL, payload in `p`).
fn handler(c: &mut Client, body: &str) -> String {
    let name = format!("it_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!(
        "CREATE FUNCTION public.{name}(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $body$ BEGIN {body} END $body$;
         INSERT INTO booking_admin.job_handlers (handler, kind, function) VALUES ('{name}', 'function', 'public.{name}');"
    ))
    .unwrap();
    name
}

fn enqueue(c: &mut Client, handler: &str, payload: Value, options: &str) -> Uuid {
    c.query_one(
        &format!("SELECT booking_admin.enqueue_job('it', $1, $2 {options})"),
        &[&handler, &postgres::types::Json(payload)],
    )
    .unwrap()
    .get(0)
}

fn status(c: &mut Client, id: Uuid) -> String {
    c.query_one("SELECT status FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap().get(0)
}

/// Polls until the job reaches `want`, or panics after `limit`.
fn wait_for(c: &mut Client, id: Uuid, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if status(c, id) == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "job {id} not {want} after {limit:?} (is {})", status(c, id));
        sleep(Duration::from_millis(10));
    }
}

fn last_errors(c: &mut Client, id: Uuid) -> Vec<Value> {
    let v: postgres::types::Json<Value> =
        c.query_one("SELECT last_errors FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    v.0.as_array().unwrap().clone()
}

fn at(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

fn poll_interval(c: &mut Client) -> Duration {
    let v: i32 = c.query_one("SELECT (booking_admin.worker_status()->>'poll_interval_ms')::int", &[]).unwrap().get(0);
    Duration::from_millis(v as u64)
}

#[test]
fn workers_are_running_under_their_names() {
    let mut c = connect();
    let s: postgres::types::Json<Value> = c.query_one("SELECT booking_admin.worker_status()", &[]).unwrap().get(0);
    assert_eq!(s.0["state"], "running", "{}", s.0);
    let names: Vec<&str> = s.0["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"booking_engine scheduler"), "{names:?}");
    let runners = s.0["job_workers"].as_i64().unwrap();
    for n in 1..=runners {
        assert!(names.contains(&format!("booking_engine runner {n}").as_str()), "{names:?}");
    }
}

/// The workers' own calls of booking_admin functions (claiming, recording completions,
/// recovering) are bookkeeping, not people's actions: they stay out of the security audit log,
/// which only grows by what callers do (here: the enqueue).
#[test]
fn the_workers_own_calls_are_not_audited() {
    let mut c = connect();
    let count = |c: &mut Client, f: &str| -> i64 {
        c.query_one("SELECT count(*) FROM booking_admin.security_audit_log WHERE resource_id = $1", &[&f])
            .unwrap()
            .get(0)
    };
    let completions = count(&mut c, "booking_admin.record_completions");
    let h = handler(&mut c, "RETURN p;");
    let id = enqueue(&mut c, &h, serde_json::json!({}), "");
    wait_for(&mut c, id, "completed", Duration::from_secs(10));
    // Audit entries of calls reach the log through a queue, oldest first: once an entry of a
    // call made after the job completed is in, anything the runner queued before it would be.
    let markers = count(&mut c, "booking_admin.job_stats");
    c.query_one("SELECT booking_admin.job_stats()", &[]).unwrap();
    let started = Instant::now();
    while count(&mut c, "booking_admin.job_stats") == markers {
        assert!(started.elapsed() < Duration::from_secs(10), "the marker call was audited");
        sleep(Duration::from_millis(50));
    }
    assert_eq!(
        count(&mut c, "booking_admin.record_completions"),
        completions,
        "the runner's completion is not audited"
    );
}

/// Five jobs in a row are each done in under half a poll interval: the runners are woken at
/// enqueue, not found by polling (with polling alone, each would wait half an interval on average).
#[test]
fn a_job_is_picked_up_at_once_when_enqueued() {
    let mut c = connect();
    let poll = poll_interval(&mut c);
    let h = handler(&mut c, "RETURN p || '{\"seen\": true}';");
    for k in 0..5 {
        let id = enqueue(&mut c, &h, serde_json::json!({ "k": k }), "");
        let took = wait_for(&mut c, id, "completed", poll * 5);
        assert!(took < poll / 2, "job {k} took {took:?} with a poll interval of {poll:?}");
        let result: postgres::types::Json<Value> =
            c.query_one("SELECT result FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap().get(0);
        assert_eq!(result.0, serde_json::json!({ "k": k, "seen": true }));
    }
}

/// The same for jobs queued in bulk: enqueue_jobs wakes the runners at commit too.
#[test]
fn jobs_enqueued_in_bulk_are_picked_up_at_once() {
    let mut c = connect();
    let poll = poll_interval(&mut c);
    let h = handler(&mut c, "RETURN p;");
    for k in 0..3 {
        let ids: Vec<Uuid> = c
            .query_one(
                "SELECT booking_admin.enqueue_jobs(jsonb_build_array(
                     jsonb_build_object('name', 'it', 'handler', $1::text, 'payload', jsonb_build_object('k', $2::int))))",
                &[&h, &k],
            )
            .unwrap()
            .get(0);
        let took = wait_for(&mut c, ids[0], "completed", poll * 5);
        assert!(took < poll / 2, "job {k} took {took:?} with a poll interval of {poll:?}");
    }
}

#[test]
fn a_failing_handler_retries_with_growing_delays_then_is_dead() {
    let mut c = connect();
    let h = handler(&mut c, "RAISE EXCEPTION 'payment gateway down';");
    let id = enqueue(
        &mut c,
        &h,
        serde_json::json!({}),
        ", p_max_retries => 3, p_retry_delay_ms => 200, p_retry_backoff_multiplier => 2, p_jitter => false",
    );
    wait_for(&mut c, id, "dead", Duration::from_secs(20));
    let errors = last_errors(&mut c, id);
    assert_eq!(errors.len(), 4, "the first attempt and three retries: {errors:?}");
    for (k, e) in errors.iter().enumerate() {
        assert_eq!(e["error"], "payment gateway down");
        if k < 3 {
            let delay = at(e, "retry_at") - at(e, "at");
            let expected = 200 * 2_i64.pow(k as u32);
            assert!((delay.num_milliseconds() - expected).abs() <= 1, "retry {k}: {delay:?}, expected {expected} ms");
            assert!(at(&errors[k + 1], "at") >= at(e, "retry_at"), "attempt {} ran before its retry time", k + 2);
        } else {
            assert!(e["retry_at"].is_null(), "the last failure schedules nothing");
        }
    }
    let retries: i32 = c.query_one("SELECT retry_count FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(retries, 4);
    let dead: i64 = c
        .query_one("SELECT count(*) FROM booking_admin.dead_letter_jobs(1000, 0) WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(dead, 1, "listed in the dead-letter queue");
}

#[test]
fn a_job_past_its_timeout_is_cancelled_and_retried() {
    let mut c = connect();
    let h = handler(&mut c, "PERFORM pg_sleep(30); RETURN p;");
    let started = Instant::now();
    let id = enqueue(
        &mut c,
        &h,
        serde_json::json!({}),
        ", p_timeout_ms => 300, p_max_retries => 1, p_retry_delay_ms => 100",
    );
    wait_for(&mut c, id, "dead", Duration::from_secs(15));
    assert!(started.elapsed() < Duration::from_secs(10), "cancelled long before the 30 s sleep ended");
    let errors = last_errors(&mut c, id);
    assert_eq!(errors.len(), 2, "the first attempt and one retry");
    assert!(errors.iter().all(|e| e["error"] == "canceling statement due to statement timeout"), "{errors:?}");
}

#[test]
fn a_failed_job_rolls_back_only_its_own_work() {
    let mut c = connect();
    let table = format!("it_effects_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!("CREATE TABLE public.{table} (k int)")).unwrap();
    let h = handler(
        &mut c,
        &format!("INSERT INTO public.{table} VALUES ((p->>'k')::int); IF (p->>'k')::int = 2 THEN RAISE EXCEPTION 'two'; END IF; RETURN p;"),
    );
    let ids: Vec<Uuid> =
        (1..=3).map(|k| enqueue(&mut c, &h, serde_json::json!({ "k": k }), ", p_max_retries => 0")).collect();
    wait_for(&mut c, ids[0], "completed", Duration::from_secs(10));
    wait_for(&mut c, ids[1], "dead", Duration::from_secs(10));
    wait_for(&mut c, ids[2], "completed", Duration::from_secs(10));
    let ks: Vec<i32> =
        c.query(&format!("SELECT k FROM public.{table} ORDER BY k"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ks, vec![1, 3]);
}

#[test]
fn top_level_statements_run_outside_a_transaction_block() {
    let mut c = connect();
    let table = format!("it_tl_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!(
        "CREATE TABLE public.{table} (k int); INSERT INTO public.{table} SELECT generate_series(1, 1000)"
    ))
    .unwrap();
    let index = format!("{table}_k");
    let create = enqueue(
        &mut c,
        "top_level_sql",
        serde_json::json!({ "sql": format!("CREATE INDEX CONCURRENTLY {index} ON public.{table} (k)") }),
        "",
    );
    let bad = enqueue(
        &mut c,
        "top_level_sql",
        serde_json::json!({ "sql": "VACUUM no_such_table_here" }),
        ", p_max_retries => 0",
    );
    let two =
        enqueue(&mut c, "top_level_sql", serde_json::json!({ "sql": "SELECT 1; SELECT 2" }), ", p_max_retries => 0");
    wait_for(&mut c, create, "completed", Duration::from_secs(20));
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::text::regclass",
            &[&format!("public.{index}")],
        )
        .unwrap()
        .get(0);
    assert!(valid, "the concurrently built index is valid");
    let vacuum = enqueue(&mut c, "top_level_sql", serde_json::json!({ "sql": format!("VACUUM public.{table}") }), "");
    wait_for(&mut c, vacuum, "completed", Duration::from_secs(20));
    let vacuums: i64 = c
        .query_one("SELECT pg_stat_get_vacuum_count($1::text::regclass)", &[&format!("public.{table}")])
        .unwrap()
        .get(0);
    assert_eq!(vacuums, 1, "VACUUM ran once");
    wait_for(&mut c, bad, "dead", Duration::from_secs(20));
    wait_for(&mut c, two, "dead", Duration::from_secs(20));
    let e = last_errors(&mut c, bad);
    assert!(e[0]["error"].as_str().unwrap().contains("no_such_table_here"), "{e:?}");
    let e = last_errors(&mut c, two);
    assert_eq!(e[0]["error"], "22023: a top_level_sql job runs exactly one statement, not 2");
}

/// Every operation moves exactly the rows it names and writes one event each; the run is in
/// the history. The clock is set years ahead so the background scheduler (real time) never
/// touches these appointments; run alone because it moves every tenant's appointments.
#[test]
#[ignore = "moves other tests' appointments; run alone by scripts/test.sh"]
fn maintenance_transitions_each_status_and_writes_history() {
    let mut c = connect();
    c.batch_execute("SET booking_engine.now = '2030-01-10 12:00+00'").unwrap();
    let s = salon(&mut c, 5);
    let mut book = |staff: usize, status: &str, start: &str, end: &str, checked_in: bool| -> Uuid {
        c.query_one(
            "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, ends_at, status, checked_in_at)
             VALUES ($1, $2, $3, $4::text::timestamptz, $5::text::timestamptz, $6, CASE WHEN $7 THEN $4::text::timestamptz END)
             RETURNING id",
            &[&s.staff[staff], &s.service, &s.customer, &start, &end, &status, &checked_in],
        )
        .unwrap()
        .get(0)
    };
    let to_activate = book(0, "confirmed", "2030-01-10 11:55+00", "2030-01-10 12:55+00", true);
    let to_complete = book(1, "active", "2030-01-10 10:00+00", "2030-01-10 11:00+00", true);
    let to_expire = book(2, "pending", "2030-01-10 11:30+00", "2030-01-10 12:30+00", false);
    let no_show = book(3, "confirmed", "2030-01-10 11:30+00", "2030-01-10 12:30+00", false);
    let future = book(4, "confirmed", "2030-01-10 13:00+00", "2030-01-10 14:00+00", false);
    let mut run = |op: &str| -> Value {
        let v: postgres::types::Json<Value> =
            c.query_one("SELECT booking_admin.run_maintenance($1)", &[&op]).unwrap().get(0);
        v.0
    };
    let cases = [
        ("cancel-no-shows", no_show, "no_show", "booking.no_show"),
        ("activate-due", to_activate, "active", "booking.activated"),
        ("update-completed", to_complete, "completed", "booking.completed"),
        ("update-expired", to_expire, "expired", "booking.expired"),
    ];
    for (op, _, _, _) in cases {
        let r = run(op);
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["message"], "Operation completed successfully");
        let data = &r["data"];
        assert_eq!(data["operation"], op);
        assert_eq!(data["status"], "SUCCESS");
        assert!(data["processedCount"].as_i64().unwrap() >= 1, "{r}");
        assert!(data["errorMessage"].is_null());
        assert!(data["executionTimeMs"].as_i64().unwrap() >= 0);
        assert!(data["executedAt"].as_str().unwrap().ends_with('Z'));
        assert!(data["description"].is_string());
    }
    let mut c = connect();
    for (op, id, want, event) in cases {
        let got: String = c.query_one("SELECT status FROM booking.appointments WHERE id = $1", &[&id]).unwrap().get(0);
        assert_eq!(got, want, "{op}");
        let events: i64 = c
            .query_one(
                "SELECT count(*) FROM booking.events WHERE event_type = $1 AND payload->>'appointment_id' = $2::text",
                &[&event, &id.to_string()],
            )
            .unwrap()
            .get(0);
        assert_eq!(events, 1, "{op} emits {event}");
        let history: i64 = c
            .query_one(
                "SELECT count(*) FROM booking_admin.maintenance_history(100000, 0) WHERE operation = $1 AND triggered_by = 'manual'",
                &[&op],
            )
            .unwrap()
            .get(0);
        assert!(history >= 1, "{op} recorded");
    }
    let untouched: String =
        c.query_one("SELECT status FROM booking.appointments WHERE id = $1", &[&future]).unwrap().get(0);
    assert_eq!(untouched, "confirmed");
}

#[test]
#[ignore = "moves other tests' appointments; run alone by scripts/test.sh"]
fn one_operation_never_runs_twice_at_once() {
    let mut a = connect();
    let mut b = connect();
    let mut tx = a.transaction().unwrap();
    let first: postgres::types::Json<Value> =
        tx.query_one("SELECT booking_admin.run_maintenance('update-expired')", &[]).unwrap().get(0);
    assert_eq!(first.0["success"], true);
    let second: postgres::types::Json<Value> =
        b.query_one("SELECT booking_admin.run_maintenance('update-expired')", &[]).unwrap().get(0);
    assert_eq!(second.0["success"], false, "{}", second.0);
    assert_eq!(second.0["message"], "Operation update-expired is already running");
    tx.commit().unwrap();
    let third: postgres::types::Json<Value> =
        b.query_one("SELECT booking_admin.run_maintenance('update-expired')", &[]).unwrap().get(0);
    assert_eq!(third.0["success"], true);
}

#[test]
fn a_configured_delay_takes_effect_without_restart() {
    let mut c = connect();
    let runs = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM booking_admin.maintenance_executions WHERE operation = 'cleanup-history' AND triggered_by = 'scheduler'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = runs(&mut c);
    c.query_one("SELECT booking_admin.configure_scheduler_job('cleanup-history', 300)", &[]).unwrap();
    let start = Instant::now();
    while runs(&mut c) < before + 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the scheduler did not pick up the 300 ms delay");
        sleep(Duration::from_millis(50));
    }
    c.query_one("SELECT booking_admin.configure_scheduler_job('cleanup-history', 86400000)", &[]).unwrap();
}

// Tests that kill workers or the server.

/// A job sleeping 2 s, and the pid of the runner that is running it.
fn sleeping_job_on_a_runner(c: &mut Client) -> (Uuid, i32) {
    let h = handler(c, "PERFORM pg_sleep(2); RETURN p;");
    let id = enqueue(c, &h, serde_json::json!({}), ", p_retry_delay_ms => 100, p_jitter => false");
    wait_for(c, id, "running", Duration::from_secs(10));
    let (pid, by): (i32, String) = c
        .query_one("SELECT locked_pid, locked_by FROM booking_admin.jobs WHERE id = $1", &[&id])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(by.starts_with("booking_engine runner "), "{by}");
    (id, pid)
}

/// The test cluster commits asynchronously; a crash test's own setup must be durable first.
fn assert_retried_after_death(c: &mut Client, id: Uuid) {
    wait_for(c, id, "completed", Duration::from_secs(30));
    let errors = last_errors(c, id);
    assert_eq!(errors.len(), 1, "one attempt lost with its worker: {errors:?}");
    assert!(errors[0]["error"].as_str().unwrap().contains("died"), "{errors:?}");
}

/// A terminated runner loses no job, and the launcher starts a new runner in its place (a new
/// pid under the same name, after the documented 1 s): the job alone would also be finished by
/// the other runner, so the replacement is checked on its own.
#[test]
#[ignore = "terminates a runner; run alone by scripts/test.sh"]
fn a_terminated_runner_loses_no_job_and_is_replaced() {
    let mut c = connect();
    let (id, pid) = sleeping_job_on_a_runner(&mut c);
    let name: String = c.query_one("SELECT locked_by FROM booking_admin.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    terminate(&mut c, pid);
    let new = await_pid(
        &mut c,
        &format!("a new {name} after {pid} was terminated"),
        "SELECT (SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND datname = current_database() AND pid <> $2)",
        &[&name, &pid],
    );
    assert_ne!(new, pid);
    assert_retried_after_death(&mut c, id);
}

#[test]
#[ignore = "crashes the server; run alone by scripts/test.sh"]
fn a_runner_killed_with_sigkill_loses_no_job() {
    let mut c = durable_connection();
    let (id, pid) = sleeping_job_on_a_runner(&mut c);
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let mut c = reconnect_after_crash(c);
    assert_retried_after_death(&mut c, id);
}

/// `pg_ctl stop -m immediate` in the middle of a batch: after the restart every job completes,
/// and each one's effect is there exactly once (a job's work commits with its completion).
#[test]
#[ignore = "stops the server; run alone by scripts/test.sh"]
fn an_immediate_shutdown_mid_batch_loses_no_job() {
    let mut c = durable_connection();
    let table = format!("it_done_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!("CREATE TABLE public.{table} (job int PRIMARY KEY)")).unwrap();
    let h = handler(
        &mut c,
        &format!("PERFORM pg_sleep(0.01); INSERT INTO public.{table} VALUES ((p->>'k')::int); RETURN p;"),
    );
    let ids: Vec<Uuid> = c
        .query(
            "SELECT booking_admin.enqueue_job('it', $1, jsonb_build_object('k', k)) FROM generate_series(1, 400) k",
            &[&h],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let completed = |c: &mut Client| -> i64 {
        c.query_one("SELECT count(*) FROM booking_admin.jobs WHERE id = ANY($1) AND status = 'completed'", &[&ids])
            .unwrap()
            .get(0)
    };
    let start = Instant::now();
    loop {
        let done = completed(&mut c);
        if done > 0 {
            assert!(done < 400, "stopped too late to be mid-batch");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        sleep(Duration::from_millis(5));
    }
    drop(c);
    pg_ctl(&["stop", "-m", "immediate"]);
    pg_ctl(&["start"]);
    let mut c = reconnect();
    let start = Instant::now();
    loop {
        let done = completed(&mut c);
        if done == 400 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "only {done} of 400 jobs completed after the restart");
        sleep(Duration::from_millis(50));
    }
    let effects: i64 = c.query_one(&format!("SELECT count(*) FROM public.{table}"), &[]).unwrap().get(0);
    assert_eq!(effects, 400);
}

#[test]
#[ignore = "changes server settings; run alone by scripts/test.sh"]
fn sighup_reloads_the_enabled_switch() {
    let mut c = connect();
    let h = handler(&mut c, "RETURN p;");
    c.batch_execute("ALTER SYSTEM SET booking_engine.enabled = off").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    sleep(Duration::from_millis(500));
    let id = enqueue(&mut c, &h, serde_json::json!({}), "");
    sleep(Duration::from_millis(1500));
    assert_eq!(status(&mut c, id), "pending", "disabled workers leave the job alone");
    c.batch_execute("ALTER SYSTEM RESET booking_engine.enabled").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(&mut c, id, "completed", Duration::from_secs(10));
}

/// A maintenance operation on a cron schedule, `0 7 * * *` in Europe/Zurich, run the way the
/// scheduler worker runs operations (`due_operations()`, then `run_maintenance(.., 'scheduler')`)
/// at every five minutes of the extension's clock through the days around both 2027 changes:
/// once a day, at 07:00 on the clock; a `30 2 * * *` one runs once on both change days too (at
/// 03:00 new time when 02:30 does not exist, at the first 02:30 when it happens twice). Between
/// the two periods the clock jumps seven months: a schedule missed while nothing ran runs once
/// when the scheduler looks again, then keeps its times.
#[test]
fn a_seven_oclock_zurich_job_runs_once_a_day_across_both_2027_changes() {
    let mut c = connect();
    let (seven, half_past_two, runs) = (
        format!("it-seven-{}", Uuid::new_v4().simple()),
        format!("it-0230-{}", Uuid::new_v4().simple()),
        format!("it_runs_{}", Uuid::new_v4().simple()),
    );
    c.batch_execute(&format!(
        "CREATE TABLE public.{runs} (job text, at timestamptz);
         CREATE FUNCTION public.{runs}(p jsonb) RETURNS integer LANGUAGE sql AS
             $f$ INSERT INTO public.{runs} VALUES (p ->> 'job', booking_admin.scheduler_clock()) RETURNING 1 $f$;
         SET booking_engine.now = '2027-03-26 00:00+01';
         INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, cron, timezone) VALUES
             ('{seven}', 'it', 'public.{runs}', '{{\"job\": \"seven\"}}', '0 7 * * *', 'Europe/Zurich'),
             ('{half_past_two}', 'it', 'public.{runs}', '{{\"job\": \"0230\"}}', '30 2 * * *', 'Europe/Zurich');"
    ))
    .unwrap();
    for (from, to) in [("2027-03-26 00:00+01", "2027-03-31 00:00+02"), ("2027-10-29 00:00+02", "2027-11-03 00:00+01")] {
        c.batch_execute(&format!(
            "DO $d$ DECLARE t timestamptz; BEGIN
                 FOR t IN SELECT generate_series('{from}'::timestamptz, '{to}', interval '5 minutes') LOOP
                     PERFORM set_config('booking_engine.now', t::text, false);
                     PERFORM booking_admin.run_maintenance(d.job_name, 'scheduler') FROM booking_admin.due_operations() d
                     WHERE d.job_name IN ('{seven}', '{half_past_two}');
                 END LOOP;
             END $d$;"
        ))
        .unwrap();
    }
    let local = |c: &mut Client, job: &str| -> Vec<String> {
        c.query(
            &format!(
                "SELECT to_char(at AT TIME ZONE 'Europe/Zurich', 'MM-DD HH24:MI') || to_char(at AT TIME ZONE 'UTC', ' (HH24:MI UTC)')
                 FROM public.{runs} WHERE job = $1 ORDER BY at"
            ),
            &[&job],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(
        local(&mut c, "seven"),
        [
            "03-26 07:00 (06:00 UTC)",
            "03-27 07:00 (06:00 UTC)",
            "03-28 07:00 (05:00 UTC)",
            "03-29 07:00 (05:00 UTC)",
            "03-30 07:00 (05:00 UTC)",
            "10-29 00:00 (22:00 UTC)",
            "10-29 07:00 (05:00 UTC)",
            "10-30 07:00 (05:00 UTC)",
            "10-31 07:00 (06:00 UTC)",
            "11-01 07:00 (06:00 UTC)",
            "11-02 07:00 (06:00 UTC)",
        ]
    );
    assert_eq!(
        local(&mut c, "0230"),
        [
            "03-26 02:30 (01:30 UTC)",
            "03-27 02:30 (01:30 UTC)",
            "03-28 03:00 (01:00 UTC)",
            "03-29 02:30 (00:30 UTC)",
            "03-30 02:30 (00:30 UTC)",
            "10-29 00:00 (22:00 UTC)",
            "10-29 02:30 (00:30 UTC)",
            "10-30 02:30 (00:30 UTC)",
            "10-31 02:30 (00:30 UTC)",
            "11-01 02:30 (01:30 UTC)",
            "11-02 02:30 (01:30 UTC)",
        ]
    );
    c.batch_execute(&format!(
        "DELETE FROM booking_admin.scheduler_job_info WHERE job_name IN ('{seven}', '{half_past_two}');
         DROP FUNCTION public.{runs}(jsonb); DROP TABLE public.{runs};"
    ))
    .unwrap();
}
