//! Booking under concurrency over real connections: many clients racing for the same slots
//! never double-book, every client gets a definite answer, and a key replays its first result.

use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::Value;
use uuid::Uuid;

use crate::common::{book, connect, salon};

fn without_replayed(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("replayed");
    v
}

const SLOTS: [&str; 10] = [
    "2026-03-23 09:00+01",
    "2026-03-23 10:30+01",
    "2026-03-23 12:00+01",
    "2026-03-23 13:30+01",
    "2026-03-23 15:00+01",
    "2026-03-24 09:00+01",
    "2026-03-24 10:30+01",
    "2026-03-24 12:00+01",
    "2026-03-24 13:30+01",
    "2026-03-24 15:00+01",
];

#[test]
fn thirty_two_clients_racing_for_ten_slots_book_each_once() {
    let mut c = connect();
    let s = Arc::new(salon(&mut c, 1));
    let run = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|client| {
            let (s, barrier) = (s.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect();
                barrier.wait();
                // Each client walks the slots from a different starting point.
                (0..SLOTS.len())
                    .map(|i| {
                        let slot = SLOTS[(i + client) % SLOTS.len()];
                        let key = format!("{run}-{client}-{slot}");
                        let first = book(&mut c, &s, &key, slot);
                        let retry = book(&mut c, &s, &key, slot);
                        (slot, first, retry)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut won = std::collections::HashMap::new();
    for h in handles {
        for (slot, first, retry) in h.join().unwrap() {
            assert_eq!(first["replayed"], false);
            assert_eq!(retry["replayed"], true, "a retry replays");
            assert_eq!(without_replayed(first.clone()), without_replayed(retry), "a retry gets the first result");
            match first["success"].as_bool() {
                Some(true) => *won.entry(slot).or_insert(0) += 1,
                Some(false) => {
                    let codes: Vec<&str> =
                        first["details"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
                    assert_eq!(codes, ["conflict"], "a loser is told it lost to another booking: {first}");
                }
                None => panic!("no definite answer: {first}"),
            }
        }
    }
    assert_eq!(won.len(), SLOTS.len(), "every slot was booked");
    assert!(won.values().all(|&n| n == 1), "exactly one winner per slot: {won:?}");
    let overlaps: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.appointments a JOIN booking.appointments b
               ON a.staff_id = b.staff_id AND a.id < b.id AND a.blocked && b.blocked
             WHERE a.status IN ('pending', 'confirmed', 'active') AND b.status IN ('pending', 'confirmed', 'active')
               AND a.tenant_id = $1",
            &[&s.tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(overlaps, 0);
    let booked: i64 =
        c.query_one("SELECT count(*) FROM booking.appointments WHERE tenant_id = $1", &[&s.tenant]).unwrap().get(0);
    assert_eq!(booked, SLOTS.len() as i64);
}

#[test]
fn one_key_sent_by_sixteen_clients_at_once_books_once() {
    let mut c = connect();
    let s = Arc::new(salon(&mut c, 1));
    let key = format!("same-{}", Uuid::new_v4());
    let barrier = Arc::new(Barrier::new(16));
    let results: Vec<Value> = (0..16)
        .map(|_| {
            let (s, barrier, key) = (s.clone(), barrier.clone(), key.clone());
            thread::spawn(move || {
                let mut c = connect();
                barrier.wait();
                book(&mut c, &s, &key, "2026-03-23 09:00+01")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ids: std::collections::HashSet<&str> =
        results.iter().map(|r| r["appointment"]["id"].as_str().expect("every caller gets the booking")).collect();
    assert_eq!(ids.len(), 1, "all callers got the same appointment");
    assert_eq!(results.iter().filter(|r| r["replayed"] == false).count(), 1, "it ran once");
    let booked: i64 =
        c.query_one("SELECT count(*) FROM booking.appointments WHERE tenant_id = $1", &[&s.tenant]).unwrap().get(0);
    assert_eq!(booked, 1);
}

#[test]
fn a_listener_is_woken_by_a_booking() {
    let mut listener = connect();
    listener.batch_execute("LISTEN booking_events").unwrap();
    let mut c = connect();
    let s = salon(&mut c, 1);
    let result = book(&mut c, &s, &format!("notify-{}", Uuid::new_v4()), "2026-03-23 09:00+01");
    assert_eq!(result["success"], true);
    use postgres::fallible_iterator::FallibleIterator;
    let mut notifications = listener.notifications();
    let n =
        notifications.timeout_iter(std::time::Duration::from_secs(5)).next().unwrap().expect("a notification arrives");
    assert_eq!(n.channel(), "booking_events");
    let payload: Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(payload["type"], "booking.created");
    let stored: String = c
        .query_one(
            "SELECT event_type FROM booking.events WHERE id = $1::text::uuid",
            &[&payload["id"].as_str().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, "booking.created");
}

#[test]
fn a_lost_race_is_caught_by_the_exclusion_constraint() {
    let mut c = connect();
    let s = Arc::new(salon(&mut c, 1));
    // The first booking stays uncommitted, so the second one's validation cannot see it; only
    // the constraint can, once the first commits.
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let won = book(&mut tx, &s, &format!("race-a-{}", Uuid::new_v4()), "2026-03-23 09:00+01");
    assert_eq!(won["success"], true);
    let s2 = s.clone();
    let second =
        thread::spawn(move || book(&mut connect(), &s2, &format!("race-b-{}", Uuid::new_v4()), "2026-03-23 09:30+01"));
    // Let the second call reach the insert and wait on the first transaction's row.
    thread::sleep(std::time::Duration::from_millis(500));
    tx.commit().unwrap();
    let lost = second.join().unwrap();
    assert_eq!(lost["success"], false);
    assert_eq!(lost["error"], "Time slot conflicts with another appointment");
    let detected: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.events WHERE tenant_id = $1 AND event_type = 'conflict.detected'",
            &[&s.tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(detected, 1, "the lost race is recorded as a conflict event");
}

#[test]
fn a_reschedule_that_loses_a_race_keeps_its_old_slot() {
    let mut c = connect();
    let s = Arc::new(salon(&mut c, 1));
    let moved = book(&mut c, &s, &format!("move-{}", Uuid::new_v4()), "2026-03-23 09:00+01");
    assert_eq!(moved["success"], true);
    let moved_id = moved["appointment"]["id"].as_str().unwrap().to_string();
    // Someone books 14:00 and has not committed yet; the reschedule into 14:00 cannot see it.
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let won = book(&mut tx, &s, &format!("race-r-{}", Uuid::new_v4()), "2026-03-23 14:00+01");
    assert_eq!(won["success"], true);
    let id = moved_id.clone();
    let second = thread::spawn(move || -> Value {
        connect()
            .query_one("SELECT booking.reschedule_appointment($1::text::uuid, '2026-03-23 14:00+01')", &[&id])
            .unwrap()
            .get(0)
    });
    thread::sleep(std::time::Duration::from_millis(500));
    tx.commit().unwrap();
    let lost = second.join().unwrap();
    assert_eq!(lost["success"], false, "{lost}");
    assert_eq!(lost["code"], "conflict", "{lost}");
    let (starts, count): (String, i32) = {
        let row = c
            .query_one(
                "SELECT to_char(starts_at AT TIME ZONE 'Europe/Zurich', 'HH24:MI'), reschedule_count
                 FROM booking.appointments WHERE id = $1::text::uuid",
                &[&moved_id],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((starts.as_str(), count), ("09:00", 0), "the old booking is intact");
}
