//! The out-of-transaction writer against real writer processes: a record whose writer keeps
//! dying is given up after exactly 3 deaths, as docs/security.md ("Rows that survive a
//! rollback") and the `booking_writer_records_dropped` metric's help say, while records that
//! died with it fewer times are still written.

use std::thread::sleep;
use std::time::{Duration, Instant};

use postgres::Client;
use uuid::Uuid;

use crate::common::{await_pid, connect, terminate};

/// A failure audit entry: it goes through the writer (it must survive its caller's rollback).
fn log_failure(c: &mut Client, resource: &str) {
    c.execute("SELECT booking.log_security_event('writer.test', 'test', $1, false, 'a failure')", &[&resource])
        .unwrap();
}

fn written(c: &mut Client, resource: &str) -> i64 {
    c.query_one("SELECT count(*) FROM booking_admin.security_audit_log WHERE resource_id = $1", &[&resource])
        .unwrap()
        .get(0)
}

/// The records the writer gave up on since the server started (the gauge each scrape reads).
fn given_up(c: &mut Client) -> f64 {
    c.query_one(
        "SELECT coalesce(sum(value), 0) FROM booking_admin.metrics() WHERE metric = 'booking_writer_records_dropped'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The pid of this database's writer once it waits on a lock (the audit log, locked by the
/// test), other than `previous`.
fn blocked_writer(c: &mut Client, previous: Option<i32>) -> i32 {
    await_pid(
        c,
        "a writer waiting on the locked audit log",
        "SELECT (SELECT pid FROM pg_stat_activity
                 WHERE backend_type = 'booking_engine writer' AND datname = current_database()
                   AND wait_event_type = 'Lock' AND pid IS DISTINCT FROM $1 LIMIT 1)",
        &[&previous],
    )
}

#[test]
#[ignore = "locks the audit log and kills writers; run alone by scripts/test.sh"]
fn a_record_is_given_up_after_exactly_three_writer_deaths() {
    const DOCUMENTED_DEATHS: usize = 3;
    let mut c = connect();
    let mut holder = connect();
    let marker = Uuid::new_v4().simple().to_string();
    let poison = format!("poison-{marker}");
    // Reading the metric is a call of a booking_admin function, audited through the writer
    // too: its entry must be written before the log is locked, or it is the oldest record in
    // the hands of every writer killed below and is given up in the poison's place (which then
    // dies one time fewer and is written).
    let session = format!("writer-test-{marker}");
    c.batch_execute(&format!("SET application_name = '{session}'")).unwrap();
    let given_up_before = given_up(&mut c);
    let start = Instant::now();
    while c
        .query_one(
            "SELECT count(*) FROM booking_admin.security_audit_log WHERE user_agent = $1 AND resource_id = 'booking_admin.metrics'",
            &[&session],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the metric's reading is audited");
        sleep(Duration::from_millis(20));
    }

    // While the test holds the audit log, every writer that takes records blocks on it, and
    // the test can kill it with the records in hand.
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE booking_admin.security_audit_log IN ACCESS EXCLUSIVE MODE").unwrap();
    log_failure(&mut c, &poison);
    let mut previous = None;
    let mut nudges = Vec::new();
    for death in 1..=DOCUMENTED_DEATHS {
        let pid = blocked_writer(&mut c, previous);
        terminate(&mut c, pid);
        previous = Some(pid);
        // The next record starts the next writer, which takes the poison again with it; the
        // first of these dies 2 times with its writers, the last not at all.
        let nudge = format!("nudge-{death}-{marker}");
        log_failure(&mut c, &nudge);
        nudges.push(nudge);
    }
    // The writer after the third death gives the poison up and takes the others.
    blocked_writer(&mut c, previous);
    lock.rollback().unwrap();

    let start = Instant::now();
    while nudges.iter().any(|n| written(&mut c, n) == 0) {
        assert!(start.elapsed() < Duration::from_secs(20), "the records that died fewer than 3 times are written");
        sleep(Duration::from_millis(20));
    }
    for n in &nudges {
        assert_eq!(written(&mut c, n), 1, "{n} written once");
    }
    assert_eq!(written(&mut c, &poison), 0, "given up after {DOCUMENTED_DEATHS} writer deaths, never written");
    assert_eq!(given_up(&mut c) - given_up_before, 1.0, "exactly one record given up");
}
