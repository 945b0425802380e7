//! The admin sandbox over real connections: its audit is written outside the caller's
//! transaction (visible to others at once, kept after a rollback), refusals never run, and
//! many callers at once share the audit writer's queue without losing a record.

use std::thread;

use crate::common::connect;
use postgres::Client;
use uuid::Uuid;

/// A fresh table in public with a name no other test uses.
fn table(c: &mut Client) -> String {
    let name = format!("admin_it_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!("CREATE TABLE public.{name} (a int, b text); INSERT INTO public.{name} SELECT g, g::text FROM generate_series(1, 100) g"))
        .unwrap();
    name
}

fn audit_rows(c: &mut Client, like: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT decision, outcome FROM booking_admin.admin_audit WHERE statement LIKE $1 ORDER BY attempted_at",
        &[&like],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn the_audit_is_committed_before_the_caller_commits_and_survives_its_rollback() {
    let mut a = connect();
    let mut b = connect();
    let t = table(&mut a);
    let mut tx = a.transaction().unwrap();
    let row = tx
        .query_one(
            &format!("SELECT booking_admin.execute_admin_sql('CREATE INDEX {t}_a_idx ON public.{t} (a)')::text"),
            &[],
        )
        .unwrap();
    let result: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
    assert_eq!(result["accepted"], true);
    // Another session sees the record while the caller's transaction is still open.
    assert_eq!(audit_rows(&mut b, &format!("%{t}_a_idx%")), [("accepted".to_string(), "succeeded".to_string())]);
    tx.rollback().unwrap();
    assert_eq!(audit_rows(&mut b, &format!("%{t}_a_idx%")).len(), 1, "the record outlives the rollback");
    let index: Option<String> =
        b.query_one(&format!("SELECT to_regclass('public.{t}_a_idx')::text"), &[]).unwrap().get(0);
    assert_eq!(index, None, "the index itself was rolled back with the caller");
}

#[test]
fn a_refused_statement_is_audited_and_never_runs() {
    let mut c = connect();
    let t = table(&mut c);
    for (sql, state) in [
        (format!("CREATE INDEX ON public.{t} (a); DROP TABLE public.{t}"), "0A000"),
        (format!("DROP TABLE public.{t}"), "0A000"),
        (format!("VACUUM FULL public.{t}"), "0A000"),
        ("CREATE INDEX ON pg_catalog.pg_proc (proname)".to_string(), "42501"),
    ] {
        let err = c.query_one("SELECT booking_admin.execute_admin_sql($1)", &[&sql]).unwrap_err();
        assert_eq!(err.code().unwrap().code(), state, "{sql}");
    }
    let rows: i64 = c.query_one(&format!("SELECT count(*) FROM public.{t}"), &[]).unwrap().get(0);
    assert_eq!(rows, 100);
    let refused = audit_rows(&mut c, &format!("%{t}%"));
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|(d, o)| d == "refused" && o == "refused"));
}

#[test]
fn many_callers_at_once_lose_no_audit_record() {
    let mut c = connect();
    let t = table(&mut c);
    const THREADS: usize = 8;
    const CALLS: usize = 12;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let t = t.clone();
            thread::spawn(move || {
                let mut c = connect();
                for _ in 0..CALLS {
                    c.execute(&format!("SELECT booking_admin.execute_admin_sql('ANALYZE public.{t}')"), &[]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let rows = audit_rows(&mut c, &format!("ANALYZE public.{t}"));
    assert_eq!(rows.len(), THREADS * CALLS, "one record per call, more calls than queue slots");
    assert!(rows.iter().all(|(d, o)| d == "accepted" && o == "succeeded"));
}

#[test]
fn a_caller_cancelled_while_waiting_for_the_audit_still_gets_recorded_and_runs_nothing() {
    let mut a = connect();
    let mut blocker = connect();
    let mut watcher = connect();
    let t = table(&mut a);
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // Hold the audit table so the writer cannot commit: the caller waits for it.
    let mut hold = blocker.transaction().unwrap();
    hold.batch_execute("LOCK TABLE booking_admin.admin_audit IN ACCESS EXCLUSIVE MODE").unwrap();
    let sql = format!("CREATE INDEX {t}_cancelled_idx ON public.{t} (a)");
    let caller = thread::spawn(move || a.query_one("SELECT booking_admin.execute_admin_sql($1)", &[&sql]).map(|_| ()));
    thread::sleep(std::time::Duration::from_millis(500));
    watcher.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let err = caller.join().unwrap().unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    hold.rollback().unwrap();
    // The queued record is written once the table is free, though nobody waits for it any more.
    let mut rows = vec![];
    for _ in 0..100 {
        rows = audit_rows(&mut watcher, &format!("%{t}_cancelled_idx%"));
        if !rows.is_empty() {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(rows, [("accepted".to_string(), "pending".to_string())], "accepted, never run");
    let index: Option<String> =
        watcher.query_one(&format!("SELECT to_regclass('public.{t}_cancelled_idx')::text"), &[]).unwrap().get(0);
    assert_eq!(index, None);
}

/// Polls admin_sql_status until the queued statement has ended.
fn ended(c: &mut Client, audit_id: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let s: serde_json::Value =
            c.query_one("SELECT booking_admin.admin_sql_status($1::text::uuid)", &[&audit_id]).unwrap().get(0);
        if s["outcome"] != "pending" || started.elapsed() > std::time::Duration::from_secs(30) {
            return s;
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn queued_statements_run_at_top_level_on_the_job_runner() {
    let mut c = connect();
    let t = table(&mut c);
    // Unqualified: the runner resolves it with the caller's search_path.
    c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS it_admin_queued; CREATE TABLE it_admin_queued.{t} (x int);
                              INSERT INTO it_admin_queued.{t} SELECT generate_series(1, 1000); SET search_path = it_admin_queued, public"))
        .unwrap();
    let r: serde_json::Value = c
        .query_one(
            &format!("SELECT booking_admin.execute_admin_sql('CREATE INDEX CONCURRENTLY {t}_x ON {t} (x)')"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(r["mode"], "queued", "{r}");
    assert!(r["job_id"].is_string(), "{r}");
    let s = ended(&mut c, r["audit_id"].as_str().unwrap());
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let valid: bool = c
        .query_one(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relname = $1 AND c.relnamespace = 'it_admin_queued'::regnamespace",
            &[&format!("{t}_x")],
        )
        .unwrap()
        .get(0);
    assert!(valid, "the concurrently built index is valid");

    let r: serde_json::Value =
        c.query_one(&format!("SELECT booking_admin.execute_admin_sql('VACUUM {t}')"), &[]).unwrap().get(0);
    let s = ended(&mut c, r["audit_id"].as_str().unwrap());
    assert_eq!(s["outcome"], "succeeded", "{s}");
    let vacuums: i64 =
        c.query_one(&format!("SELECT pg_stat_get_vacuum_count('it_admin_queued.{t}'::regclass)"), &[]).unwrap().get(0);
    assert_eq!(vacuums, 1);

    // A queued statement that fails at run time ends failed, with Postgres's reason.
    let r: serde_json::Value = c
        .query_one(
            &format!("SELECT booking_admin.execute_admin_sql('CREATE INDEX CONCURRENTLY {t}_x ON {t} (x)')"),
            &[],
        )
        .unwrap()
        .get(0);
    let s = ended(&mut c, r["audit_id"].as_str().unwrap());
    assert_eq!(s["outcome"], "failed", "{s}");
    assert!(s["outcome_detail"].as_str().unwrap().contains("already exists"), "{s}");
}
