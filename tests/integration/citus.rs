//! booking_engine on a real Citus cluster: a coordinator and two workers on loopback, started by
//! scripts/citus_test.sh (only where Citus is installed) which points these variables at it:
//! BOOKING_ENGINE_CITUS_DSN (the coordinator's booking database, not yet distributed),
//! BOOKING_ENGINE_CITUS_SINGLE_DSN (a database with booking_engine and no Citus, the single-node
//! reference), BOOKING_ENGINE_CITUS_PG_BIN and BOOKING_ENGINE_CITUS_WORKERS ("port=datadir,...").
//! Without them every test here says so and passes: `make test` on a machine without Citus.
//!
//! One test, in steps, because the steps share one cluster and the last one stops a worker.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use postgres::{Client, NoTls};
use serde_json::Value;
use uuid::Uuid;

struct Cluster {
    coordinator: String,
    single: String,
    pg_bin: String,
    /// (port, data directory) of each worker.
    workers: Vec<(u16, String)>,
}

fn cluster() -> Option<Cluster> {
    let Ok(coordinator) = std::env::var("BOOKING_ENGINE_CITUS_DSN") else {
        println!("citus not installed: skipping the Citus test (scripts/citus_test.sh runs it where Citus is)");
        return None;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} (set by scripts/citus_test.sh)"));
    let workers = var("BOOKING_ENGINE_CITUS_WORKERS")
        .split(',')
        .map(|w| {
            let (port, dir) = w.split_once('=').expect("port=datadir");
            (port.parse().unwrap(), dir.to_string())
        })
        .collect();
    Some(Cluster {
        coordinator,
        single: var("BOOKING_ENGINE_CITUS_SINGLE_DSN"),
        pg_bin: var("BOOKING_ENGINE_CITUS_PG_BIN"),
        workers,
    })
}

fn open(dsn: &str) -> Client {
    let mut c = Client::connect(dsn, NoTls).expect("connect");
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'; SET timezone = 'Europe/Zurich'").unwrap();
    c
}

/// One tenant: `staff` people working 09:00-17:00 Monday to Friday, a 60-minute service, two
/// customers (the first one signed in as `user`). Every row names its tenant, as Citus needs.
#[derive(Clone, Debug)]
struct Tenant {
    id: Uuid,
    staff: Vec<Uuid>,
    service: Uuid,
    customers: Vec<Uuid>,
    user: Uuid,
}

fn tenant(n: usize) -> Tenant {
    let id = |kind: u32, k: usize| Uuid::parse_str(&format!("{kind:08x}-0000-4000-8000-{:012x}", n * 16 + k)).unwrap();
    Tenant {
        id: id(0x1000, 0),
        staff: vec![id(0x2000, 0), id(0x2000, 1)],
        service: id(0x3000, 0),
        customers: vec![id(0x4000, 0), id(0x4000, 1)],
        user: id(0xc000, 0),
    }
}

fn load(c: &mut Client, t: &Tenant, n: usize) {
    let sql = format!(
        "INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes)
             VALUES ('{t}', 'Salon {n}', 'Europe/Zurich', {interval}, {n} % 3 * 5);
         INSERT INTO booking.services (tenant_id, id, name, duration_minutes, buffer_after_minutes, price)
             VALUES ('{t}', '{svc}', 'Cut', 60, 10, 40);
         INSERT INTO booking.customers (tenant_id, id, name, user_id) VALUES
             ('{t}', '{c0}', 'First', '{user}'), ('{t}', '{c1}', 'Second', NULL);",
        t = t.id,
        interval = [15, 30][n % 2],
        svc = t.service,
        c0 = t.customers[0],
        c1 = t.customers[1],
        user = t.user,
    );
    c.batch_execute(&sql).unwrap();
    for (k, s) in t.staff.iter().enumerate() {
        c.batch_execute(&format!(
            "INSERT INTO booking.staff (tenant_id, id, name) VALUES ('{t}', '{s}', 'Staff');
             INSERT INTO booking.staff_services (tenant_id, staff_id, service_id) VALUES ('{t}', '{s}', '{svc}');
             INSERT INTO booking.staff_schedules (tenant_id, staff_id, day_of_week, start_time, end_time)
                 SELECT '{t}', '{s}', d, '{start}', '17:00' FROM generate_series(1, 5) d;",
            t = t.id,
            svc = t.service,
            start = ["09:00", "10:00"][k],
        ))
        .unwrap();
    }
    // A day off and a holiday, so that availability has more than weekly hours to get right.
    c.batch_execute(&format!(
        "INSERT INTO booking.staff_time_off (tenant_id, staff_id, period)
             VALUES ('{t}', '{s}', tstzrange('2026-03-24 12:00+01', '2026-03-24 15:00+01'));
         INSERT INTO booking.holidays (tenant_id, name, date) VALUES ('{t}', 'Closed', '2026-03-26');",
        t = t.id,
        s = t.staff[n % 2],
    ))
    .unwrap();
}

fn json(c: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Value {
    c.query_one(sql, params).unwrap().get(0)
}

fn book(c: &mut Client, t: &Tenant, key: &str, staff: Uuid, customer: Uuid, starts_at: &str) -> Result<Value, String> {
    let booking = serde_json::json!({"customer_id": customer, "staff_id": staff, "service_id": t.service, "starts_at": starts_at});
    c.query_one("SELECT booking.create_tenant_booking($1, $2, $3)", &[&t.id, &key, &booking])
        .map(|r| r.get(0))
        .map_err(|e| e.as_db_error().map(|d| format!("{}: {}", d.code().code(), d.message())).unwrap_or(e.to_string()))
}

fn date(day: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap()
}

fn slots(c: &mut Client, t: &Tenant, day: &str) -> Value {
    json(c, "SELECT booking.get_tenant_available_slots($1, $2, $3)", &[&t.id, &date(day), &t.service])
}

/// The store's available slots of a tenant's service on one (staff local) day, as instants.
fn stored_slots(
    c: &mut Client,
    t: &Tenant,
    day: &str,
) -> Vec<(String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    c.query(
        "SELECT staff_id::text, start_time, end_time FROM booking.availability_slots_now
         WHERE tenant_id = $1 AND service_id = $2 AND date = $3 AND is_available ORDER BY start_time, staff_id",
        &[&t.id, &t.service, &date(day)],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The store of each tenant equals the engine's slots on two weeks of days.
fn assert_store_exact(c: &mut Client, pair: &[Tenant], after: &str) {
    for t in pair {
        let mut n = 0;
        for d in 2..=13 {
            let day = format!("2026-03-{d:02}");
            let mut engine = instants(&slots(c, t, &day));
            engine.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            let store = stored_slots(c, t, &day);
            assert_eq!(store, engine, "tenant {} on {day}, after {after}", t.id);
            n += store.len();
        }
        assert!(n > 100, "compared on real slots ({n})");
    }
}

/// The slot store turned on for a tenant on each worker (its triggers run there): it equals the
/// engine's slots after it is filled, after a booking, a cancellation and a time off.
fn slot_store_on_each_worker(c: &mut Client, pair: &[Tenant]) {
    for t in pair {
        c.execute("UPDATE booking.slot_store_settings SET enabled = true WHERE tenant_id = $1", &[&t.id]).unwrap();
    }
    assert_store_exact(c, pair, "filling");
    for (i, t) in pair.iter().enumerate() {
        let booked = book(c, t, &format!("store-{i}"), t.staff[0], t.customers[0], "2026-03-03 10:00+01").unwrap();
        assert_eq!(booked["success"], true, "{booked}");
    }
    assert_store_exact(c, pair, "a booking");
    for t in pair {
        let id: Uuid = c
            .query_one(
                "SELECT id FROM booking.appointments WHERE tenant_id = $1 AND starts_at = '2026-03-03 10:00+01'",
                &[&t.id],
            )
            .unwrap()
            .get(0);
        let cancelled = json(c, "SELECT booking.cancel_tenant_appointment($1, $2, 'store test')", &[&t.id, &id]);
        assert_eq!(cancelled["success"], true, "{cancelled}");
        c.execute(
            "INSERT INTO booking.staff_time_off (tenant_id, staff_id, period)
             VALUES ($1, $2, tstzrange('2026-03-04 12:00+01', '2026-03-04 15:00+01'))",
            &[&t.id, &t.staff[1]],
        )
        .unwrap();
    }
    assert_store_exact(c, pair, "a cancellation and a time off");
    println!("citus: the slot store of a tenant on each worker equals the engine after filling, a booking, a cancel and a time off");
}

/// A webhook endpoint on the coordinator receives the bookings of tenants on both workers: the
/// coordinator's delivery worker expands the events the workers wrote.
fn webhooks_from_each_worker(c: &mut Client, pair: &[Tenant]) {
    let receiver = crate::receiver::Receiver::start(vec![], crate::receiver::Answer::Status(204));
    let endpoint = json(c, "SELECT booking_admin.create_endpoint($1, ARRAY['booking.created'])", &[&receiver.url]);
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"), "{endpoint}");
    for (i, t) in pair.iter().enumerate() {
        let booked = book(c, t, &format!("hook-{i}"), t.staff[0], t.customers[0], "2026-03-05 14:00+01").unwrap();
        assert_eq!(booked["success"], true, "{booked}");
    }
    let mut seen: Vec<String> = receiver
        .await_requests(pair.len())
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["type"], "booking.created", "{body}");
            assert!(r.headers.contains_key("webhook-signature"), "signed: {:?}", r.headers);
            body["data"]["tenant_id"].as_str().unwrap().to_string()
        })
        .collect();
    seen.sort();
    let mut want: Vec<String> = pair.iter().map(|t| t.id.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "one delivery per booking, from tenants on both workers");
    // The worker records an attempt after the receiver answered it.
    let start = std::time::Instant::now();
    loop {
        let delivered: i64 = c
            .query_one("SELECT count(*) FROM booking_admin.deliveries WHERE status = 'delivered'", &[])
            .unwrap()
            .get(0);
        if delivered == pair.len() as i64 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the ledger on the coordinator: {delivered} delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("citus: bookings on both workers reached a webhook receiver through the coordinator's delivery worker");
}

/// Reminders of tenants on both workers: the booking (pushed down to the tenant's worker) arms
/// them there, a reschedule re-arms them there, and the coordinator hands them off (its
/// delivery worker's call, here at their due time on the extension's clock) to an SMS endpoint
/// and the webhooks' event; a signed cancel link works through the coordinator, once.
fn reminders_from_each_worker(c: &mut Client, pair: &[Tenant]) {
    let provider = crate::receiver::Receiver::start(vec![], crate::receiver::Answer::Accepted);
    let mut booked = Vec::new();
    for (i, t) in pair.iter().enumerate() {
        let phone = format!("+4179000{i:04}");
        c.execute(
            "UPDATE booking.customers SET phone = $3 WHERE tenant_id = $1 AND id = $2",
            &[&t.id, &t.customers[0], &phone],
        )
        .unwrap();
        c.execute(
            "SELECT booking.set_reminder_rule($1, '{\"offset_minutes\": 1440, \"channels\": [\"sms\", \"webhook\"]}')",
            &[&t.id],
        )
        .unwrap();
        c.execute(
            "SELECT booking_admin.create_endpoint($1, '{booking.reminder}', $2, 'sms', '{\"provider\": \"json\", \"from\": \"Salon\"}')",
            &[&provider.url, &t.id],
        )
        .unwrap();
        c.execute(
            "SELECT booking.set_messaging_settings($1, '{\"link_base_url\": \"https://salon.example/a\"}')",
            &[&t.id],
        )
        .unwrap();
        let r = book(c, t, &format!("remind-{i}"), t.staff[1], t.customers[0], "2026-03-13 11:00+01").unwrap();
        assert_eq!(r["success"], true, "{r}");
        let id = Uuid::parse_str(r["appointment"]["id"].as_str().unwrap()).unwrap();
        let moved = json(
            c,
            "SELECT booking.reschedule_tenant_appointment($1, $2, '2026-03-13 13:00+01', $3)",
            &[&t.id, &id, &format!("remind-move-{i}")],
        );
        assert_eq!(moved["success"], true, "{moved}");
        booked.push((t.id, phone, id.to_string()));
    }
    // The rule also reminds the tenants' other upcoming appointments (of the earlier steps): the
    // ones booked here are followed.
    let ids: Vec<String> = booked.iter().map(|(_, _, id)| id.clone()).collect();
    let states: Vec<String> = c
        .query(
            "SELECT status || ' ' || to_char(starts_at AT TIME ZONE 'Europe/Zurich', 'HH24:MI') FROM booking.reminders
             WHERE tenant_id = ANY ($1) AND appointment_id::text = ANY ($2) ORDER BY tenant_id, starts_at",
            &[&pair.iter().map(|t| t.id).collect::<Vec<_>>(), &ids],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        states,
        ["dropped 11:00", "pending 13:00", "dropped 11:00", "pending 13:00"],
        "armed and re-armed on the workers"
    );
    c.batch_execute("SET booking_engine.now = '2026-03-12 13:00+01'; SELECT booking_admin.fan_out_reminders();")
        .unwrap();
    let mut to: Vec<String> = provider
        .await_requests(pair.len())
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    to.dedup();
    let mut want: Vec<String> = booked.iter().map(|(_, p, _)| p.clone()).collect();
    want.sort();
    assert_eq!(to, want, "SMS to each tenant's customer, from both workers' bookings");
    let events: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.events WHERE event_type = 'booking.reminder' AND tenant_id = ANY ($1)
             AND payload ->> 'appointment_id' = ANY ($2)",
            &[&pair.iter().map(|t| t.id).collect::<Vec<_>>(), &ids],
        )
        .unwrap()
        .get(0);
    assert_eq!(events, pair.len() as i64, "the webhook channel's events, written on the workers");
    let token: String = c
        .query_one(
            "SELECT substring(d.payload ->> 'cancel_url' FROM 'token=(.*)$') FROM booking_admin.deliveries d
             WHERE d.tenant_id = $1 AND d.event_type = 'booking.reminder' AND d.payload ->> 'appointment_id' = $2",
            &[&pair[0].id, &ids[0]],
        )
        .unwrap()
        .get(0);
    let cancelled = json(c, "SELECT booking.cancel_appointment_by_link($1)", &[&token]);
    assert_eq!(cancelled["appointment"]["status"], "cancelled", "{cancelled}");
    let replay = c.query_one("SELECT booking.cancel_appointment_by_link($1)", &[&token]).unwrap_err();
    assert_eq!(replay.code().map(|c| c.code()), Some("PT409"), "{replay}");
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
    println!("citus: reminders armed by bookings on both workers, re-armed by a reschedule, handed off by the coordinator; a signed link cancels once");
}

/// A cancellation pushed down to a worker offers the freed slot to the waitlist there; the
/// staff's confirm and check-in work on tenants of both workers.
fn waitlist_and_staff_steps(c: &mut Client, pair: &[Tenant]) {
    for (i, t) in pair.iter().enumerate() {
        let booked = book(c, t, &format!("wait-{i}"), t.staff[0], t.customers[0], "2026-03-02 11:00+01").unwrap();
        let id = Uuid::parse_str(booked["appointment"]["id"].as_str().unwrap()).unwrap();
        let entry = json(
            c,
            "SELECT booking.add_to_waitlist(jsonb_build_object('customer_id', $1::uuid, 'service_id', $2::uuid))",
            &[&t.customers[1], &t.service],
        );
        let cancelled = json(c, "SELECT booking.cancel_tenant_appointment($1, $2, 'freed')", &[&t.id, &id]);
        assert_eq!(cancelled["success"], true, "{cancelled}");
        let status: String = c
            .query_one(
                "SELECT status FROM booking.waitlist WHERE tenant_id = $1 AND id = $2",
                &[&t.id, &Uuid::parse_str(entry["id"].as_str().unwrap()).unwrap()],
            )
            .unwrap()
            .get(0);
        assert_eq!(status, "notified", "the freed slot was offered");
        let offers: i64 = c
            .query_one(
                "SELECT count(*) FROM booking.events WHERE tenant_id = $1 AND event_type = 'waitlist.notified'",
                &[&t.id],
            )
            .unwrap()
            .get(0);
        assert_eq!(offers, 1);
        let pending = json(
            c,
            "SELECT booking.create_booking_idempotent($1, $2)",
            &[
                &format!("staff-{i}"),
                &serde_json::json!({"customer_id": t.customers[1], "staff_id": t.staff[1], "service_id": t.service,
                                    "starts_at": "2026-03-06 15:00+01", "status": "pending"}),
            ],
        );
        let id = Uuid::parse_str(pending["appointment"]["id"].as_str().unwrap()).unwrap();
        for step in ["confirm_appointment", "check_in_appointment", "complete_appointment"] {
            let r = json(c, &format!("SELECT booking.{step}($1)"), &[&id]);
            assert_eq!(r["success"], true, "{step}: {r}");
        }
    }
    println!("citus: the waitlist offer of a pushed-down cancel and the staff steps work on both workers");
}

/// On a tenant of each worker, through the coordinator: a service that needs the tenant's one
/// chair books it (the engine's read, the claim and its exclusion constraint on the worker), the
/// other stylist cannot take the chair at the same time; an "any staff" booking records how it
/// chose; a hold, made and booked with its token, is a pushed-down call as well.
fn resources_and_any_staff_on_each_worker(c: &mut Client, pair: &[Tenant]) {
    for (i, t) in pair.iter().enumerate() {
        let chair = Uuid::new_v4();
        c.batch_execute(&format!(
            "INSERT INTO booking.resources (tenant_id, id, name, kind) VALUES ('{t}', '{chair}', 'Chair', 'chair');
             INSERT INTO booking.service_requirements (tenant_id, service_id, resource_id) VALUES ('{t}', '{svc}', '{chair}');
             INSERT INTO booking.booking_settings (tenant_id, staff_strategy) VALUES ('{t}', 'priority');",
            t = t.id,
            svc = t.service,
        ))
        .unwrap();
        let first = book(c, t, &format!("chair-{i}"), t.staff[0], t.customers[0], "2026-03-05 11:00+01").unwrap();
        assert_eq!(first["appointment"]["resources"][0]["resource_id"], serde_json::json!(chair), "{first}");
        let second =
            book(c, t, &format!("chair-second-{i}"), t.staff[1], t.customers[1], "2026-03-05 11:30+01").unwrap();
        assert_eq!(second["details"][0]["code"], "resource_unavailable", "{second}");
        let any = json(
            c,
            "SELECT booking.create_tenant_booking($1, $2, jsonb_build_object('customer_id', $3::uuid, 'service_id', $4::uuid,
                 'starts_at', '2026-03-05 12:30+01'))",
            &[&t.id, &format!("any-{i}"), &t.customers[1], &t.service],
        );
        assert_eq!(any["appointment"]["staff_choice"]["strategy"], "priority", "{any}");
        // Both are free at 12:30 (the first booking's chair is free again): equal priorities go by id.
        assert_eq!(any["appointment"]["staff_choice"]["free_staff"], 2, "{any}");
        assert_eq!(any["appointment"]["staff_id"], serde_json::json!(t.staff[0]), "priority ties go by id: {any}");
        let hold = json(
            c,
            "SELECT booking.create_hold($1, jsonb_build_object('service_id', $2::uuid, 'starts_at', '2026-03-05 15:30+01'))",
            &[&t.id, &t.service],
        );
        assert_eq!(hold["success"], true, "{hold}");
        let held = json(
            c,
            "SELECT booking.create_tenant_booking($1, $2, jsonb_build_object('hold_token', $3::text, 'customer_id', $4::uuid))",
            &[&t.id, &format!("held-{i}"), &hold["token"].as_str().unwrap(), &t.customers[0]],
        );
        assert_eq!(held["success"], true, "{held}");
        let claims: i64 = c
            .query_one(
                "SELECT count(*) FROM booking.assignments WHERE tenant_id = $1 AND resource_id IS NOT NULL AND live",
                &[&t.id],
            )
            .unwrap()
            .get(0);
        assert_eq!(claims, 3, "three bookings hold the chair, one after the other");
    }
    println!("citus: a resource booking, an any-staff booking and a booked hold on both workers");
}

/// A customer's request as PostgREST sends it (one pooled authenticator connection, the role
/// and claims set per transaction) through the coordinator: the booking page, the slots, a
/// booking of their own, and a refusal for another tenant.
fn postgrest_through_the_coordinator(cl: &Cluster, t: &Tenant) {
    use crate::common::{Caller, PostgRest};
    let mut rest = PostgRest::connect_to(&cl.coordinator);
    let page =
        rest.rpc(&Caller::Anon, "get_booking_page", &[("p_tenant_id", "uuid", serde_json::json!(t.id))]).unwrap();
    assert_eq!(page["tenant"]["id"], serde_json::json!(t.id), "{page}");
    let free = rest
        .rpc(
            &Caller::Anon,
            "get_tenant_available_slots",
            &[
                ("p_tenant_id", "uuid", serde_json::json!(t.id)),
                ("p_date", "date", serde_json::json!("2026-03-09")),
                ("p_service_id", "uuid", serde_json::json!(t.service)),
            ],
        )
        .unwrap();
    assert!(!free.as_array().unwrap().is_empty(), "{free}");
    let args = |key: &str, at: &str| {
        vec![
            ("p_tenant_id", "uuid", serde_json::json!(t.id)),
            ("p_idempotency_key", "text", serde_json::json!(key)),
            (
                "p_booking",
                "jsonb",
                serde_json::json!({"customer_id": t.customers[0], "staff_id": t.staff[0], "service_id": t.service,
                                   "starts_at": at}),
            ),
        ]
    };
    let mine =
        rest.rpc(&Caller::User(t.user), "create_tenant_booking", &args("rest-own", "2026-03-09 09:00+01")).unwrap();
    assert_eq!(mine["success"], true, "{mine}");
    let again =
        rest.rpc(&Caller::User(t.user), "create_tenant_booking", &args("rest-own", "2026-03-09 09:00+01")).unwrap();
    assert_eq!(again["appointment"]["id"], mine["appointment"]["id"], "the same key answers the same booking");
    let refused =
        rest.rpc(&Caller::Anon, "create_tenant_booking", &args("rest-anon", "2026-03-09 10:00+01")).unwrap_err();
    assert!(refused.code.starts_with("PT4") || refused.code == "42501", "{refused:?}");
    println!("citus: a PostgREST request sequence through the coordinator books for its customer and refuses anon");
}

/// Tenants that run themselves, through the coordinator: the single-node test's salon, set up
/// and booked over PostgREST's statement sequence only, four times (so that they land on both
/// workers).
fn tenants_run_themselves_through_the_coordinator(cl: &Cluster) {
    let mut front = crate::tenants::Front { rest: crate::common::PostgRest::connect_to(&cl.coordinator) };
    let made: Vec<Uuid> =
        (0..4).map(|_| crate::tenants::a_salon_set_up_and_booked(&mut front).1.parse().unwrap()).collect();
    let mut c = open(&cl.coordinator);
    let workers: BTreeSet<i32> = c
        .query(
            "SELECT DISTINCT n.nodeport FROM unnest($1::uuid[]) t JOIN pg_dist_placement p
                 ON p.shardid = get_shard_id_for_distribution_column('booking.tenants', t)
             JOIN pg_dist_node n USING (groupid)",
            &[&made],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let members: i64 =
        c.query_one("SELECT count(*) FROM booking.tenant_members WHERE tenant_id = ANY ($1)", &[&made]).unwrap().get(0);
    assert_eq!(members, 12, "an owner, a receptionist and a stylist in each");
    println!("citus: 4 salons set up and booked over PostgREST, on workers {workers:?}");
}

/// The history partitioned by time on a cluster: the coordinator's partition-maintenance
/// creates the outbox's partitions as distributed tables colocated with it, moves an event of
/// a month without a partition out of the default partition (the row lives on a worker), drops
/// a month past retention on every shard, and maintains each worker's own tables (its audit
/// log) through Citus's connections to them.
fn history_partitioned_on_the_cluster(cl: &Cluster, c: &mut Client, t: &Tenant) {
    let report = json(c, "SELECT booking_admin.maintain_partitions()", &[]);
    let tables = report["tables"].as_array().unwrap();
    assert!(tables.iter().all(|t| t.get("error").is_none()), "{report}");
    let workers = report["workers"].as_array().unwrap();
    assert_eq!(workers.len(), cl.workers.len(), "{report}");
    assert!(workers.iter().all(|w| w["success"] == true), "{report}");
    let distributed = |c: &mut Client| -> (i64, i64) {
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = i.inhrelid))
                 FROM pg_inherits i WHERE i.inhparent = 'booking.events'::regclass",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (partitions, of_citus) = distributed(c);
    assert!(
        partitions >= 2 && of_citus == partitions,
        "every partition of the outbox is distributed: {partitions} {of_citus}"
    );
    let waiting: i64 = c.query_one("SELECT count(*) FROM booking.events_default", &[]).unwrap().get(0);
    assert_eq!(waiting, 0, "the workers' events are in their months' partitions");
    c.execute(
        "INSERT INTO booking.events (tenant_id, event_type, created_at) VALUES ($1, 'booking.created', '2025-06-15 12:00+00')",
        &[&t.id],
    )
    .unwrap();
    let moved = json(c, "SELECT booking_admin.maintain_partitions('booking.events') -> 'tables' -> 0", &[]);
    assert_eq!(moved["moved_rows"], 1, "{moved}");
    assert!(moved["created"].as_array().unwrap().contains(&Value::from("booking.events_p20250601")), "{moved}");
    // (tableoid would name the worker's shard: the partitions are asked directly.)
    let home: (i64, i64) = {
        let row = c
            .query_one(
                "SELECT (SELECT count(*) FROM booking.events_p20250601 WHERE created_at = '2025-06-15 12:00+00'),
                        (SELECT count(*) FROM booking.events_default WHERE created_at = '2025-06-15 12:00+00')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(home, (1, 0), "the event moved into its month's partition");
    assert_eq!(distributed(c).0, distributed(c).1, "the new partition is distributed too");
    c.batch_execute("SELECT booking_admin.configure_partitions('booking.events', p_retention => '30 days')").unwrap();
    let dropped =
        json(c, "SELECT booking_admin.maintain_partitions('booking.events') -> 'tables' -> 0 -> 'dropped'", &[]);
    c.batch_execute("SELECT booking_admin.configure_partitions('booking.events', p_retention => '365 days')").unwrap();
    assert_eq!(dropped, serde_json::json!(["booking.events_p20250601"]), "a month past retention, dropped whole");
    for (port, _) in &cl.workers {
        let mut w = open(&cl.coordinator.replace(&format!("port={}", coordinator_port(cl)), &format!("port={port}")));
        let own: i64 = w
            .query_one(
                "SELECT count(*) FROM booking_admin.partitions('booking_admin.security_audit_log') WHERE NOT is_default",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(own >= 1, "worker {port}'s audit log is partitioned by the coordinator's maintenance");
    }
    println!("citus: the outbox's partitions are distributed, a default partition's event moved, a month past retention dropped; the workers' audit logs partitioned");
}

/// The worker port holding each tenant.
fn placement(c: &mut Client, tenants: &[Tenant]) -> BTreeMap<Uuid, i32> {
    tenants
        .iter()
        .map(|t| {
            let port: i32 = c
                .query_one(
                    "SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                     WHERE p.shardid = get_shard_id_for_distribution_column('booking.tenants', $1::uuid)",
                    &[&t.id],
                )
                .unwrap()
                .get(0);
            (t.id, port)
        })
        .collect()
}

/// Slots as (staff, start, end) instants.
fn instants(slots: &Value) -> Vec<(String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["staff_id"].as_str().unwrap().to_string(), at(&s["starts_at"]), at(&s["ends_at"])))
        .collect()
}

/// "2026-03-27 09:00+01" as UTC "2026-03-27 08:00".
fn utc(at: &str) -> String {
    chrono::DateTime::parse_from_str(&format!("{at}00"), "%Y-%m-%d %H:%M%z")
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn explain(c: &mut Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A PostgREST-style call: in a transaction, as role `authenticated` with `user`'s JWT claims.
/// Err: the SQLSTATE.
fn as_user(
    c: &mut Client,
    user: Uuid,
    sql: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Value, String> {
    let mut tx = c.transaction().unwrap();
    tx.batch_execute("SET LOCAL role authenticated").unwrap();
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&serde_json::json!({"role": "authenticated", "sub": user}).to_string()],
    )
    .unwrap();
    let r = tx.query_one(sql, args).map(|r| r.get::<_, Value>(0));
    let r = r.map_err(|e| e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or(e.to_string()));
    if r.is_ok() {
        tx.commit().unwrap();
    }
    r
}

fn coordinator_port(cl: &Cluster) -> String {
    cl.coordinator.split_whitespace().find_map(|kv| kv.strip_prefix("port=")).expect("port= in the DSN").to_string()
}

fn pg_ctl(cl: &Cluster, data: &str, args: &[&str]) {
    let pg_ctl = format!("{}/pg_ctl", cl.pg_bin);
    let log = format!("{data}/../log");
    let mut full = vec!["-u", "postgres", "--", pg_ctl.as_str(), "-D", data, "-l", log.as_str(), "-w"];
    full.extend_from_slice(args);
    let status = Command::new("runuser").args(&full).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "pg_ctl {args:?}");
}

#[test]
fn booking_engine_on_a_citus_cluster() {
    let Some(cl) = cluster() else { return };
    let mut c = open(&cl.coordinator);
    let tenants: Vec<Tenant> = (0..20).map(tenant).collect();
    let mut single = open(&cl.single);

    // 1. Distribute a database that already holds tenants (their rows, their triggers' rows,
    // are copied into the shards), twice: the second call finds everything done.
    for (n, t) in tenants.iter().enumerate().take(3) {
        load(&mut c, t, n);
        load(&mut single, t, n);
    }
    // What the layout names, counted from the layout itself: a table a later change adds to it
    // is expected to be distributed too.
    let mut layout = |kind: &str| -> i64 {
        c.query_one("SELECT count(*) FROM booking_admin.citus_layout() WHERE kind = $1", &[&kind]).unwrap().get(0)
    };
    let (tables, references, functions) = (layout("distributed"), layout("reference"), layout("function"));
    assert!(tables >= 18, "every tenant table of the layout ({tables})");
    let first = json(&mut c, "SELECT booking_admin.distribute_tables()", &[]);
    assert_eq!(first["reference_tables"], serde_json::json!(["booking.global_policies"]), "{first}");
    assert_eq!(first["distributed_tables"].as_array().unwrap().len() as i64, tables, "{first}");
    assert_eq!(first["newly_distributed"].as_array().unwrap().len() as i64, tables + references, "{first}");
    assert_eq!(first["distributed_functions"].as_array().unwrap().len() as i64, functions, "{first}");
    let again = json(&mut c, "SELECT booking_admin.distribute_tables()", &[]);
    assert_eq!(again["newly_distributed"], serde_json::json!([]), "idempotent: {again}");
    let colocated: i64 = c
        .query_one(
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'booking.%' AND partmethod = 'h'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(colocated, 1, "every tenant table in one colocation group");
    println!("citus: distributed {}", first["newly_distributed"]);

    // 2. 17 more tenants, written through the coordinator into the shards (each tenant's
    // triggers run on its worker); the same rows in a single-node database.
    for (n, t) in tenants.iter().enumerate().skip(3) {
        load(&mut c, t, n);
        load(&mut single, t, n);
    }
    let on = placement(&mut c, &tenants);
    let ports: BTreeSet<i32> = on.values().copied().collect();
    assert_eq!(ports.len(), 2, "tenants on both workers: {on:?}");
    println!(
        "citus: 20 tenants, {} on port {:?}",
        on.values().filter(|p| **p == on[&tenants[0].id]).count(),
        on[&tenants[0].id]
    );

    // 3. The same bookings on both, then the same availability, day by day and tenant by tenant.
    for (n, t) in tenants.iter().enumerate() {
        for (k, at) in ["2026-03-23 10:00+01", "2026-03-24 09:00+01", "2026-03-25 14:30+01"].iter().enumerate() {
            let key = format!("seed-{n}-{k}");
            let on_cluster = book(&mut c, t, &key, t.staff[k % 2], t.customers[0], at).unwrap();
            let on_single = json(
                &mut single,
                "SELECT booking.create_booking_idempotent($1, $2)",
                &[
                    &key,
                    &serde_json::json!({"customer_id": t.customers[0], "staff_id": t.staff[k % 2], "service_id": t.service, "starts_at": at}),
                ],
            );
            assert_eq!(on_cluster["success"], on_single["success"], "{on_cluster} vs {on_single}");
        }
    }
    // The tenant-less functions work on the cluster too (looked up by id, then routed).
    let t = &tenants[3];
    let legacy = json(
        &mut c,
        "SELECT booking.create_booking_idempotent('legacy', $1)",
        &[
            &serde_json::json!({"customer_id": t.customers[1], "staff_id": t.staff[1], "service_id": t.service, "starts_at": "2026-03-30 14:00+02"}),
        ],
    );
    assert_eq!(legacy["success"], true, "{legacy}");
    let id = Uuid::parse_str(legacy["appointment"]["id"].as_str().unwrap()).unwrap();
    let moved = json(&mut c, "SELECT booking.reschedule_appointment($1, '2026-03-30 15:00+02')", &[&id]);
    assert_eq!(moved["success"], true, "{moved}");
    let cancelled = json(&mut c, "SELECT booking.cancel_appointment($1, 'plans changed')", &[&id]);
    assert_eq!(cancelled["success"], true, "{cancelled}");
    let pending: Uuid = c
        .query_one(
            "SELECT id FROM booking.appointments WHERE tenant_id = $1 AND status = 'confirmed' LIMIT 1",
            &[&t.id],
        )
        .unwrap()
        .get(0);
    let confirmed = json(&mut c, "SELECT booking.check_in_appointment($1)", &[&pending]);
    assert_eq!(confirmed["success"], true, "{confirmed}");
    println!("citus: the tenant-less create, reschedule, cancel and check-in work through the coordinator");
    // The tenant-qualified reschedule and cancel, pushed down to the tenant's worker.
    let booked = book(&mut c, t, "tenant-change", t.staff[1], t.customers[1], "2026-03-31 14:00+02").unwrap();
    let id = Uuid::parse_str(booked["appointment"]["id"].as_str().unwrap()).unwrap();
    let plan = explain(&mut c, &format!("SELECT booking.cancel_tenant_appointment('{}', '{id}')", t.id));
    assert!(plan.contains("Task Count: 1"), "{plan}");
    let moved = json(
        &mut c,
        "SELECT booking.reschedule_tenant_appointment($1, $2, '2026-03-31 15:00+02', 'tenant-move')",
        &[&t.id, &id],
    );
    assert_eq!(moved["success"], true, "{moved}");
    let err = c.query_one("SELECT booking.cancel_tenant_appointment($1, $2)", &[&tenants[4].id, &id]).unwrap_err();
    assert_eq!(
        err.code().map(|c| c.code()),
        Some("PT404"),
        "another tenant's appointment does not exist for it: {err}"
    );
    let cancelled = json(&mut c, "SELECT booking.cancel_tenant_appointment($1, $2, 'done')", &[&t.id, &id]);
    assert_eq!(cancelled["success"], true, "{cancelled}");
    println!("citus: the tenant-qualified reschedule and cancel run on the tenant's worker (Task Count: 1)");
    let mut compared = 0;
    for t in &tenants {
        for day in ["2026-03-23", "2026-03-24", "2026-03-25", "2026-03-26", "2026-03-28"] {
            let cluster_slots = slots(&mut c, t, day);
            let single_slots =
                json(&mut single, "SELECT booking.rpc_get_available_slots_enhanced($1, $2)", &[&date(day), &t.service]);
            // Compared as instants: a call delegated to a worker writes timestamps in the worker
            // session's TimeZone, not the client's.
            assert_eq!(instants(&cluster_slots), instants(&single_slots), "tenant {} on {day}", t.id);
            compared += cluster_slots.as_array().unwrap().len();
        }
    }
    assert!(compared > 1000, "availability compared on real slots ({compared})");
    println!("citus: availability equals the single node's ({compared} slots over 20 tenants x 5 days)");

    // 4. 32 clients race for the same slots of four tenants, two on each worker.
    let mut racers: Vec<Tenant> = Vec::new();
    for port in &ports {
        racers.extend(tenants.iter().filter(|t| on[&t.id] == *port).take(2).cloned());
    }
    let wanted: Vec<(usize, &str)> = (0..racers.len())
        .flat_map(|i| ["2026-03-27 09:00+01", "2026-03-27 11:00+01", "2026-03-27 13:00+01"].map(|at| (i, at)))
        .collect();
    let barrier = Arc::new(Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|client| {
            let (dsn, racers, wanted, barrier) =
                (cl.coordinator.clone(), racers.clone(), wanted.clone(), barrier.clone());
            let wanted: Vec<(usize, String)> = wanted.into_iter().map(|(i, at)| (i, at.to_string())).collect();
            std::thread::spawn(move || {
                let mut c = open(&dsn);
                barrier.wait();
                let mut won = 0;
                for k in 0..wanted.len() {
                    // Each client goes through the slots from its own starting point.
                    let (i, at) = &wanted[(k + client) % wanted.len()];
                    let t = &racers[*i];
                    let r =
                        book(&mut c, t, &format!("race-{client}-{i}-{at}"), t.staff[0], t.customers[1], at).unwrap();
                    if r["success"] == true {
                        won += 1;
                    }
                }
                won
            })
        })
        .collect();
    let won: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(won as usize, wanted.len(), "exactly one booking per slot");
    for (i, at) in &wanted {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM booking.appointments WHERE tenant_id = $1 AND staff_id = $2
                 AND to_char(starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') = $3
                 AND status IN ('pending', 'confirmed', 'active')",
                &[&racers[*i].id, &racers[*i].staff[0], &utc(at)],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "one booking at {at}");
    }
    let overlaps: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.appointments a JOIN booking.appointments b
                 ON a.tenant_id = b.tenant_id AND a.staff_id = b.staff_id AND a.id < b.id AND a.blocked && b.blocked
             WHERE a.status IN ('pending', 'confirmed', 'active') AND b.status IN ('pending', 'confirmed', 'active')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(overlaps, 0, "no overlapping blocked ranges anywhere in the cluster");
    println!("citus: 32 clients, {} slots on 4 tenants over both workers: {won} bookings, 0 overlaps", wanted.len());

    // 5. Caller checks and row-level security through the coordinator, as PostgREST calls.
    c.batch_execute(
        "DO $$ BEGIN
             IF to_regrole('authenticated') IS NULL THEN CREATE ROLE authenticated NOLOGIN; END IF;
         END $$;
         GRANT USAGE ON SCHEMA booking TO authenticated;",
    )
    .unwrap();
    let (a, b) = (&tenants[0], &tenants[1]);
    let own = serde_json::json!({"customer_id": a.customers[0], "staff_id": a.staff[0], "service_id": a.service, "starts_at": "2026-03-30 15:00+02"});
    let mine =
        as_user(&mut c, a.user, "SELECT booking.create_tenant_booking($1, 'rls-own', $2)", &[&a.id, &own]).unwrap();
    assert_eq!(mine["success"], true, "a customer books for themself: {mine}");
    let other = serde_json::json!({"customer_id": b.customers[0], "staff_id": b.staff[0], "service_id": b.service, "starts_at": "2026-03-30 15:00+02"});
    let refused =
        as_user(&mut c, a.user, "SELECT booking.create_tenant_booking($1, 'rls-other', $2)", &[&b.id, &other]);
    assert_eq!(refused, Err("PT404".to_string()), "nobody books for another tenant's customer");
    let foreign = serde_json::json!({"customer_id": a.customers[1], "staff_id": a.staff[0], "service_id": a.service, "starts_at": "2026-03-30 16:00+02"});
    let refused =
        as_user(&mut c, a.user, "SELECT booking.create_tenant_booking($1, 'rls-foreign', $2)", &[&a.id, &foreign]);
    assert_eq!(refused, Err("PT404".to_string()), "nor for another customer of the same tenant");
    let seen = as_user(&mut c, a.user, "SELECT to_jsonb(count(*)) FROM booking.appointments", &[]);
    assert_eq!(seen, Ok(serde_json::json!(0)), "no appointment rows are readable directly on a cluster");
    let written: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.booking_operations WHERE idempotency_key IN ('rls-other', 'rls-foreign')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "refusals write nothing");
    println!("citus: caller checks and row-level security hold through the coordinator");

    // A refusal in a call pushed down to a worker is audited there, by that worker's writer
    // (booking_engine preloaded with its runners idle), and survives the call's rollback.
    let key = format!("refused-{}", Uuid::new_v4().simple());
    let missing = Uuid::new_v4();
    let unknown = serde_json::json!({"customer_id": a.customers[0], "staff_id": a.staff[0], "service_id": missing, "starts_at": "2026-03-30 15:00+02"});
    let err = c.query_one("SELECT booking.create_tenant_booking($1, $2, $3)", &[&a.id, &key, &unknown]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("PT404"), "{err}");
    let worker_dsn = cl.coordinator.replace(&format!("port={}", coordinator_port(&cl)), &format!("port={}", on[&a.id]));
    let mut w = open(&worker_dsn);
    let start = std::time::Instant::now();
    while w
        .query_one(
            "SELECT count(*) FROM booking_admin.security_audit_log WHERE resource_id = $1 AND NOT success
             AND failure_reason LIKE 'PT404: service % does not exist'",
            &[&missing.to_string()],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the worker's writer never recorded the refusal");
    }
    println!("citus: a refusal in a pushed-down call is audited on the worker that ran it");

    // 6. Single-tenant calls are router plans: one task, on the tenant's worker.
    let booking_plan = explain(&mut c, &format!("SELECT booking.create_tenant_booking('{}', 'explain', '{{}}')", a.id));
    assert!(booking_plan.contains("Task Count: 1"), "{booking_plan}");
    let slot_plan = explain(
        &mut c,
        &format!("SELECT booking.get_tenant_available_slots('{}', '2026-03-23', '{}')", a.id, a.service),
    );
    assert!(slot_plan.contains("Task Count: 1"), "{slot_plan}");
    // The engine's own read, as the slot functions run it on the worker: one router query.
    c.batch_execute(&format!(
        "PREPARE inputs (uuid, uuid, date, date, uuid, boolean, int4, uuid, uuid, uuid, boolean) AS {}",
        include_str!("../../sql/queries/availability_inputs.sql")
    ))
    .unwrap();
    let inputs_plan = explain(
        &mut c,
        &format!(
            "EXECUTE inputs('{}', NULL, '2026-03-23', '2026-03-23', NULL, false, 0, '{}', NULL, NULL, true)",
            a.service, a.id
        ),
    );
    assert!(inputs_plan.contains("Task Count: 1"), "{inputs_plan}");
    println!("citus: router plans (Task Count: 1) for a booking, a slot query and the engine's read");
    println!("{booking_plan}\n{slot_plan}");

    // 7. Every feature on the cluster, with one tenant on each worker (not the racers'), each
    // call through the coordinator: the slot store, webhooks, the waitlist, the staff steps and a
    // PostgREST request.
    let pair: Vec<Tenant> = ports
        .iter()
        .map(|p| {
            tenants.iter().rev().find(|t| on[&t.id] == *p && !racers.iter().any(|r| r.id == t.id)).unwrap().clone()
        })
        .collect();
    slot_store_on_each_worker(&mut c, &pair);
    webhooks_from_each_worker(&mut c, &pair);
    reminders_from_each_worker(&mut c, &pair);
    waitlist_and_staff_steps(&mut c, &pair);
    resources_and_any_staff_on_each_worker(&mut c, &pair);
    postgrest_through_the_coordinator(&cl, &pair[0]);
    tenants_run_themselves_through_the_coordinator(&cl);

    // 8. The coordinator's scheduler and job handlers work across the shards: every scheduled
    // operation and the outbox dispatch succeed, and the sweeps do their work tenant by tenant.
    c.batch_execute("SET booking_engine.now = '2026-03-27 09:30+01'").unwrap();
    let ops = c
        .query(
            "SELECT job_name, booking_admin.run_maintenance(job_name) FROM booking_admin.scheduler_job_info ORDER BY job_name",
            &[],
        )
        .unwrap();
    assert!(ops.len() >= 10, "every scheduled operation ran");
    for op in &ops {
        let r: Value = op.get(1);
        assert_eq!(r["success"], true, "{}: {r}", op.get::<_, String>(0));
    }
    let activated: i64 =
        c.query_one("SELECT count(*) FROM booking.events WHERE event_type = 'booking.activated'", &[]).unwrap().get(0);
    assert!(activated >= 4, "the 09:00 race bookings of four tenants on both workers were activated ({activated})");
    let dispatched = json(&mut c, "SELECT booking_admin.handle_outbox_dispatch('{\"batch_size\": 100000}')", &[]);
    assert!(dispatched["dispatched"].as_i64().unwrap() > 0, "{dispatched}");
    let left: i64 = c.query_one("SELECT count(*) FROM booking.events WHERE dispatched_at IS NULL", &[]).unwrap().get(0);
    assert_eq!(left, 0, "every event dispatched once");
    let workers: Vec<Value> = cl
        .workers
        .iter()
        .map(|(port, _)| {
            let mut w =
                open(&cl.coordinator.replace(&format!("port={}", coordinator_port(&cl)), &format!("port={port}")));
            json(&mut w, "SELECT booking_admin.worker_status()", &[])
        })
        .collect();
    for w in &workers {
        assert_eq!(w["enabled"], false, "workers' job runners and scheduler stay idle: {w}");
    }
    println!("citus: {} scheduled operations and the outbox dispatch ran from the coordinator ({activated} activations); workers idle", ops.len());

    history_partitioned_on_the_cluster(&cl, &mut c, &tenants[0]);

    // 9. A worker stops: tenants on the other one still book; its own tenants fail with a clear
    // error, and nothing of those calls is written.
    let (down_port, down_dir) = cl.workers[1].clone();
    let up = tenants.iter().find(|t| on[&t.id] != i32::from(down_port)).unwrap();
    let down = tenants.iter().find(|t| on[&t.id] == i32::from(down_port)).unwrap();
    pg_ctl(&cl, &down_dir, &["stop", "-m", "immediate"]);
    let mut c = open(&cl.coordinator);
    let ok = book(&mut c, up, "down-up", up.staff[0], up.customers[0], "2026-03-31 09:00+02").unwrap();
    assert_eq!(ok["success"], true, "{ok}");
    let err = book(&mut c, down, "down-down", down.staff[0], down.customers[0], "2026-03-31 09:00+02").unwrap_err();
    assert!(err.contains("connection") || err.contains("could not"), "a clear error: {err}");
    println!("citus: with worker {down_port} stopped: tenant on the other worker booked, tenant on it: {err}");
    pg_ctl(&cl, &down_dir, &["start"]);
    let mut c = open(&cl.coordinator);
    let half: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM booking.booking_operations WHERE tenant_id = $1 AND idempotency_key = 'down-down')
                  + (SELECT count(*) FROM booking.appointments WHERE tenant_id = $1
                     AND to_char(starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') = '2026-03-31 07:00')",
            &[&down.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(half, 0, "nothing half-written for the failed call");
    let retried = book(&mut c, down, "down-down", down.staff[0], down.customers[0], "2026-03-31 09:00+02").unwrap();
    assert_eq!(retried["success"], true, "the same key books once the worker is back: {retried}");
    println!("citus: worker {down_port} back: the failed call left nothing, its retry booked");
}
