//! The slot store over real connections: concurrent bookings of different staff members never
//! wait on each other's staff-day locks, and each commit leaves the store exact.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{backend_pid, connect, salon};
use uuid::Uuid;

const CLIENTS: usize = 32;

/// 32 sessions each book a different staff member of one tenant, and each holds its
/// transaction open until all 32 have booked. A booking whose store recomputation waited on
/// another's lock would never get there while the others hold theirs; the server's own lock
/// graph (`pg_blocking_pids`) is sampled until then and while all 32 hold their locks, and must
/// never show one of the 32 waiting on another. After the commits, every staff member's store rows of that day agree with
/// get_available_slots.
#[test]
fn bookings_of_different_staff_never_wait_on_each_others_store_locks() {
    let mut admin = connect();
    let s = salon(&mut admin, CLIENTS);
    admin.execute("UPDATE booking.slot_store_settings SET enabled = true WHERE tenant_id = $1", &[&s.tenant]).unwrap();
    let customers: Vec<Uuid> = (0..CLIENTS).map(|_| Uuid::new_v4()).collect();
    for c in &customers {
        admin
            .execute("INSERT INTO booking.customers (id, tenant_id, name) VALUES ($1, $2, 'Client')", &[c, &s.tenant])
            .unwrap();
    }
    let booked = Arc::new(Barrier::new(CLIENTS + 1));
    let release = Arc::new(Barrier::new(CLIENTS + 1));
    let (tx, rx) = std::sync::mpsc::channel::<i32>();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (s, booked, release, tx) = (s.clone(), booked.clone(), release.clone(), tx.clone());
            let customer = customers[i];
            thread::spawn(move || {
                let mut c = connect();
                tx.send(backend_pid(&mut c)).unwrap();
                let mut t = c.transaction().unwrap();
                let r: serde_json::Value = t
                    .query_one(
                        "SELECT booking.book_slot($1, $2, '2026-03-23 10:00+01', $3, $4)",
                        &[&s.staff[i], &s.service, &customer, &format!("store-{i}-{}", s.tenant)],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(r["success"], true, "{r}");
                booked.wait();
                release.wait();
                t.commit().unwrap();
            })
        })
        .collect();
    let pids: Vec<i32> = (0..CLIENTS).map(|_| rx.recv().unwrap()).collect();
    // Poll (no sleeping to order the race): either all 32 reach the barrier, or one is stuck
    // behind another one's lock, which pg_blocking_pids shows. (Waits on sessions outside the
    // 32, such as other tests running DDL on the shared tables, are not the store's and pass;
    // so are the moments a session waits for another to finish extending a table they both
    // insert into, a relation extension lock, not a staff-day's.)
    let waiting = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(DISTINCT l.pid) FROM pg_locks l
                 WHERE NOT l.granted AND l.locktype <> 'extend' AND l.pid = ANY ($1::int4[])
                   AND pg_blocking_pids(l.pid) && $1::int4[]",
                &[&pids],
            )
            .unwrap()
            .get(0)
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let waiter = {
        let booked = booked.clone();
        thread::spawn(move || {
            booked.wait();
            done_tx.send(()).unwrap();
        })
    };
    let start = Instant::now();
    loop {
        assert_eq!(waiting(&mut admin), 0, "a booking waited on another session's lock");
        if done_rx.try_recv().is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the 32 bookings never all got through");
    }
    waiter.join().unwrap();
    // All 32 hold their locks now: none of them waits on another.
    assert_eq!(waiting(&mut admin), 0, "a booking waited on another session's lock");
    release.wait();
    for h in handles {
        h.join().unwrap();
    }
    let differences: i64 = admin
        .query_one(
            "WITH engine AS (SELECT staff_id, starts_at FROM booking.get_available_slots($1, '2026-03-23', '2026-03-23')),
                  store AS (SELECT staff_id, start_time FROM booking.availability_slots_now
                            WHERE service_id = $1 AND date = '2026-03-23' AND is_available)
             SELECT (SELECT count(*) FROM (SELECT * FROM engine EXCEPT SELECT * FROM store) a)
                  + (SELECT count(*) FROM (SELECT * FROM store EXCEPT SELECT * FROM engine) b)",
            &[&s.service],
        )
        .unwrap()
        .get(0);
    assert_eq!(differences, 0);
    let taken: i64 = admin
        .query_one(
            "SELECT count(*) FROM booking.availability_slots WHERE service_id = $1 AND date = '2026-03-23' AND NOT is_available",
            &[&s.service],
        )
        .unwrap()
        .get(0);
    // Each booking blocks 10:00-11:15 (its hour and 15 minutes after); a slot blocks its own
    // 75 minutes, so the quarter hours from 09:00 to 11:00 are taken: 9 per staff member.
    assert_eq!(taken, 9 * CLIENTS as i64);
}
