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
        .query_one(&format!("SELECT booking_admin.execute_admin_sql('CREATE INDEX {t}_a_idx ON public.{t} (a)')::text"), &[])
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
