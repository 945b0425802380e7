//! Database health on a running cluster: the blocking tree of real sessions, the scheduler
//! keeping the partitions of the history ahead, and a freeze window holding a job back until
//! its end in a database on real time (the test cluster's other databases run on a fixed clock).

use std::thread;
use std::time::Duration;

use postgres::{Client, NoTls};
use uuid::Uuid;

use crate::common::{await_parked, backend_pid, connect, poll, with_db, Parked};

/// How long the workers of a new database and one queued job may take in a busy suite.
const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn the_blocking_tree_shows_who_waits_for_whom() {
    let mut c = connect();
    let table = format!("public.it_block_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!("CREATE TABLE {table} (id int)")).unwrap();
    let mut holder = connect();
    let holder_pid = backend_pid(&mut holder);
    holder.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).unwrap();
    let mut waiter = connect();
    let waiter_pid = backend_pid(&mut waiter);
    let select = format!("SELECT count(*) FROM {table}");
    let blocked = thread::spawn(move || waiter.query_one(&select, &[]).map(|_| ()));
    await_parked(&mut c, waiter_pid, Parked::OnLock);
    let tree: Vec<(i32, Vec<i32>, i32, i32)> = c
        .query(
            "SELECT pid, blocked_by, root_pid, depth FROM booking_admin.blocking_tree() WHERE root_pid = $1 ORDER BY depth",
            &[&holder_pid],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(tree, vec![(holder_pid, vec![], holder_pid, 0), (waiter_pid, vec![holder_pid], holder_pid, 1)]);
    holder.batch_execute("COMMIT").unwrap();
    blocked.join().unwrap().unwrap();
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

/// The scheduler's partition-maintenance keeps the current month of the outbox and the audit
/// log partitioned (it runs as soon as the extension exists, then every 10 minutes).
#[test]
fn the_scheduler_keeps_the_history_partitioned_ahead() {
    let mut c = connect();
    for table in ["booking.events", "booking_admin.security_audit_log", "booking_admin.job_history"] {
        poll(&format!("{table}'s current partition"), WITHIN, || {
            let found: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM booking_admin.partitions($1) p
                                    WHERE p.range_from <= now() AND p.range_to > now())",
                    &[&table],
                )
                .unwrap()
                .get(0);
            found.then_some(())
        });
    }
    let runs: i64 = c
        .query_one(
            "SELECT run_count FROM booking_admin.scheduler_job_info WHERE job_name = 'partition-maintenance'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(runs >= 1);
}

/// In a database whose clock is the real one: a window that defers, in force for a few seconds.
/// A statement given to the sandbox inside it is queued for the window's end; a job that
/// respects the calendar and is due now is claimed by a runner, found frozen and put back
/// until then. Both run once the window has ended, not before.
#[test]
fn a_freeze_window_holds_ddl_and_jobs_until_its_end() {
    let mut admin = connect();
    let db = format!("it_freeze_{}", Uuid::new_v4().simple());
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    // The suite's fixed clock off for this database (its workers read it when they connect).
    admin.batch_execute(&format!("ALTER DATABASE {db} SET booking_engine.now = ''")).unwrap();
    let mut c = Client::connect(&with_db(&db), NoTls).unwrap();
    c.batch_execute(
        "SET client_min_messages = warning; CREATE EXTENSION booking_engine CASCADE;
         CREATE TABLE public.visits (x int, y int);",
    )
    .unwrap();
    c.batch_execute(
        "SELECT booking_admin.add_freeze_window('release', p_starts_at => now() - interval '1 minute',
                                               p_ends_at => clock_timestamp() + interval '6 seconds')",
    )
    .unwrap();
    let until: chrono::DateTime<chrono::Utc> =
        c.query_one("SELECT (booking_admin.freeze_state() ->> 'until')::timestamptz", &[]).unwrap().get(0);
    let queued: serde_json::Value = c
        .query_one("SELECT booking_admin.execute_admin_sql('CREATE INDEX visits_x_idx ON public.visits (x)')", &[])
        .unwrap()
        .get(0);
    assert_eq!(queued["mode"], "queued", "{queued}");
    let job_x = Uuid::parse_str(queued["job_id"].as_str().unwrap()).unwrap();
    let job_y: Uuid = c
        .query_one(
            "INSERT INTO booking_admin.jobs (name, handler, payload)
             VALUES ('frozen', 'top_level_sql', '{\"sql\": \"CREATE INDEX visits_y_idx ON public.visits (y)\", \"respect_freeze\": true}')
             RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    // A runner claims the due job and puts it back until the window's end.
    let deferred_to: chrono::DateTime<chrono::Utc> = poll("the runner to defer the frozen job", WITHIN, || {
        let row = c
            .query_one(
                "SELECT scheduled_at, coalesce(error_message, '') LIKE 'deferred by the freeze calendar%' FROM booking_admin.jobs WHERE id = $1",
                &[&job_y],
            )
            .unwrap();
        row.get::<_, bool>(1).then(|| row.get(0))
    });
    assert!(deferred_to >= until, "deferred to {deferred_to}, the window ends {until}");
    let built = |c: &mut Client, index: &str| -> bool {
        c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{index}")]).unwrap().get(0)
    };
    if chrono::Utc::now() < until {
        assert!(!built(&mut c, "visits_x_idx") && !built(&mut c, "visits_y_idx"), "nothing is built inside the window");
    }
    for job in [job_x, job_y] {
        let finished: chrono::DateTime<chrono::Utc> = poll("the jobs after the window", WITHIN, || {
            c.query_opt("SELECT completed_at FROM booking_admin.jobs WHERE id = $1 AND status = 'completed'", &[&job])
                .unwrap()
                .map(|row| row.get::<_, chrono::DateTime<chrono::Utc>>(0))
        });
        assert!(finished >= until, "{job} ran at {finished}, inside the window ending {until}");
    }
    assert!(built(&mut c, "visits_x_idx") && built(&mut c, "visits_y_idx"));
    drop(c);
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}
