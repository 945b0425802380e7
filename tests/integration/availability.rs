//! Availability over real connections: what one session books, another stops being offered;
//! parallel readers agree; roles without table access can still read slots.

use std::thread;

use crate::common::{connect, salon};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

type Slot = (Uuid, DateTime<Utc>, DateTime<Utc>);

fn slots(c: &mut postgres::Client, service: Uuid, from: &str, to: &str) -> Vec<Slot> {
    let from = NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap();
    let to = NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap();
    c.query("SELECT staff_id, starts_at, ends_at FROM booking.get_available_slots($1, $2, $3)", &[&service, &from, &to])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn a_committed_booking_disappears_from_other_sessions() {
    let mut a = connect();
    let mut b = connect();
    let s = salon(&mut a, 2);
    let before = slots(&mut b, s.service, "2026-03-23", "2026-03-23");
    assert_eq!(before.len(), 2 * 29, "two staff, 09:00..16:00 every 15 minutes");
    let (staff, start, _) = before[0];
    a.execute(
        "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status) VALUES ($1, $2, $3, $4, 'confirmed')",
        &[&staff, &s.service, &s.customer, &start],
    )
    .unwrap();
    let after = slots(&mut b, s.service, "2026-03-23", "2026-03-23");
    let theirs: Vec<&Slot> = after.iter().filter(|x| x.0 == staff).collect();
    // 60 minutes plus a 15-minute after-buffer take 09:00..10:00 and the slots whose own
    // buffered range would reach into it.
    assert_eq!(theirs.len(), 29 - 5, "09:00 and the four starts up to 10:00 are gone");
    assert!(theirs.iter().all(|x| x.1 >= start + chrono::Duration::minutes(75)));
    assert_eq!(after.len() - theirs.len(), 29, "the other staff member is untouched");
}

#[test]
fn parallel_readers_get_the_same_month() {
    let mut c = connect();
    let s = salon(&mut c, 10);
    let expected = slots(&mut c, s.service, "2026-03-02", "2026-03-31");
    assert_eq!(expected.len(), 10 * 22 * 29);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut c = connect();
                (0..5).map(|_| slots(&mut c, s.service, "2026-03-02", "2026-03-31")).collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for got in h.join().unwrap() {
            assert_eq!(got, expected);
        }
    }
}

#[test]
fn a_caller_without_rows_of_its_own_reads_slots_but_no_appointments() {
    let mut c = connect();
    let s = salon(&mut c, 1);
    c.execute(
        "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
         VALUES ($1, $2, $3, '2026-03-24 09:00+01', 'confirmed')",
        &[&s.staff[0], &s.service, &s.customer],
    )
    .unwrap();
    c.batch_execute(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_it_web') THEN
                 CREATE ROLE booking_it_web NOLOGIN;
             END IF;
         END $$;",
    )
    .unwrap();
    // As PostgREST does it: a role without table privileges and the request's JWT claims.
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL ROLE booking_it_web; SET LOCAL request.jwt.claims = '{{\"sub\": \"{}\", \"role\": \"authenticated\"}}'",
        Uuid::new_v4()
    ))
    .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM booking.get_available_slots($1, '2026-03-23', '2026-03-23')", &[&s.service])
        .unwrap()
        .get(0);
    assert_eq!(n, 29);
    let seen: i64 = tx.query_one("SELECT count(*) FROM booking.appointments", &[]).unwrap().get(0);
    assert_eq!(seen, 0, "row-level security hides other people's appointments");
    let err = tx
        .query_one(
            "SELECT booking.create_booking_idempotent('it-web', jsonb_build_object('customer_id', $1::uuid,
                 'staff_id', $2::uuid, 'service_id', $3::uuid, 'starts_at', '2026-03-23 09:00+01'))",
            &[&s.customer, &s.staff[0], &s.service],
        )
        .unwrap_err();
    // Someone else's customer record is as good as none: PT404 (PostgREST: HTTP 404).
    assert_eq!(err.code().unwrap().code(), "PT404", "{err}");
}
