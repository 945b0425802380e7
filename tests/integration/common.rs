//! Shared by the integration tests: a connection to the cluster the test command started, and a
//! small salon with fresh ids so tests never see each other's rows.

use postgres::{Client, GenericClient, NoTls};
use uuid::Uuid;

pub fn dsn() -> String {
    std::env::var("BOOKING_ENGINE_TEST_DSN").expect(
        "BOOKING_ENGINE_TEST_DSN is not set: run the integration tests through `make test`, which starts a cluster",
    )
}

pub fn connect() -> Client {
    let mut c = Client::connect(&dsn(), NoTls).expect("connect to the test cluster");
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'; SET timezone = 'Europe/Zurich'").unwrap();
    c
}

#[derive(Clone)]
pub struct Salon {
    pub tenant: Uuid,
    pub staff: Vec<Uuid>,
    pub service: Uuid,
    pub customer: Uuid,
}

/// A tenant in Europe/Zurich with `staff` people working 09:00-17:00 Monday to Friday, one
/// 60-minute service with a 15-minute after-buffer, and one customer.
pub fn salon(c: &mut Client, staff: usize) -> Salon {
    let tenant = Uuid::new_v4();
    let service = Uuid::new_v4();
    let customer = Uuid::new_v4();
    c.execute(
        "INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes) VALUES ($1, 'it salon', 'Europe/Zurich', 15)",
        &[&tenant],
    )
    .unwrap();
    c.execute(
        "INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_after_minutes) VALUES ($1, $2, 'Cut', 60, 15)",
        &[&service, &tenant],
    )
    .unwrap();
    c.execute("INSERT INTO booking.customers (id, tenant_id, name) VALUES ($1, $2, 'Client')", &[&customer, &tenant])
        .unwrap();
    let ids: Vec<Uuid> = (0..staff).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        c.execute("INSERT INTO booking.staff (id, tenant_id, name) VALUES ($1, $2, 'Staff')", &[id, &tenant]).unwrap();
        c.execute("INSERT INTO booking.staff_services (staff_id, service_id) VALUES ($1, $2)", &[id, &service])
            .unwrap();
        c.execute(
            "INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
             SELECT $1, d, '09:00', '17:00' FROM generate_series(1, 5) d",
            &[id],
        )
        .unwrap();
    }
    Salon { tenant, staff: ids, service, customer }
}

/// Books the salon's first staff member for its customer through create_booking_idempotent, on a
/// connection or inside a transaction, and returns the function's JSON answer.
pub fn book(c: &mut impl GenericClient, s: &Salon, key: &str, starts_at: &str) -> serde_json::Value {
    c.query_one(
        "SELECT booking.create_booking_idempotent($1, jsonb_build_object('customer_id', $2::uuid, 'staff_id', $3::uuid,
             'service_id', $4::uuid, 'starts_at', $5::text))",
        &[&key, &s.customer, &s.staff[0], &s.service, &starts_at],
    )
    .unwrap()
    .get(0)
}
