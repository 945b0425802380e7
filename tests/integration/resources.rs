//! Bookable resources, "any staff", holds, caps and per-staff terms (docs/resources.md):
//! who may do what over PostgREST's statement sequence (`PostgRest`), the strategies' choices,
//! and a property test of the engine against a brute-force reference written here.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{connect, Caller, PostgRest};
use crate::tenants::{doc, id, member, salon, text, user, Front};

fn uuid_of(v: &Value) -> Uuid {
    v.as_str().unwrap_or_else(|| panic!("not a uuid: {v}")).parse().unwrap()
}

/// A salon over PostgREST with a colour chair group of one chair that its service needs:
/// (owner, tenant, service, staff, chair, group).
fn salon_with_a_chair(front: &mut Front) -> (Caller, Uuid, Uuid, Uuid, Uuid, Uuid) {
    let (owner, tenant, service, staff) = salon(front, "Chair salon");
    let chair = front.ok(
        &owner,
        "create_resource",
        vec![id("p_tenant_id", tenant), doc("p_resource", json!({"name": "Chair 1", "kind": "chair"}))],
    );
    let chair = uuid_of(&chair["id"]);
    let group = front.ok(
        &owner,
        "create_resource_group",
        vec![id("p_tenant_id", tenant), doc("p_group", json!({"name": "Colour chairs", "resource_ids": [chair]}))],
    );
    let group = uuid_of(&group["id"]);
    let req = front.ok(
        &owner,
        "set_service_requirements",
        vec![
            id("p_tenant_id", tenant),
            id("p_service_id", service),
            doc("p_requirements", json!([{"group_id": group}])),
        ],
    );
    assert_eq!(req[0]["group_id"], json!(group), "{req}");
    (owner, tenant, service, staff, chair, group)
}

/// Owners and managers set resources, groups, requirements, caps, strategies and staff terms;
/// receptionists and staff are refused with 42501, a customer or another tenant's owner with
/// PT404 (each refusal a 4xx, audited with the caller).
#[test]
fn owners_and_managers_set_resources_caps_and_strategies_nobody_else() {
    let mut front = Front::new();
    let (owner, tenant, service, staff, chair, group) = salon_with_a_chair(&mut front);
    let (_, manager) = member(&mut front, &owner, tenant, "manager", None);
    let (_, receptionist) = member(&mut front, &owner, tenant, "receptionist", None);
    let (_, stylist) = member(&mut front, &owner, tenant, "staff", Some(staff));
    let (_, stranger) = user();
    let (other_owner, _, _, _) = salon(&mut front, "Other salon");
    let t = || id("p_tenant_id", tenant);

    // A manager does everything an owner does here.
    let cap = front.ok(
        &manager,
        "add_booking_cap",
        vec![t(), doc("p_cap", json!({"scope": "staff", "period": "day", "max_bookings": 6}))],
    );
    front.ok(&manager, "remove_booking_cap", vec![t(), id("p_cap_id", uuid_of(&cap["id"]))]);
    let tenant_doc = front.ok(
        &manager,
        "update_tenant",
        vec![t(), doc("p_changes", json!({"staff_strategy": "round_robin", "hold_minutes": 15}))],
    );
    assert_eq!(
        (tenant_doc["staff_strategy"].as_str(), tenant_doc["hold_minutes"].as_i64()),
        (Some("round_robin"), Some(15))
    );
    let terms = front.ok(
        &manager,
        "set_staff_service",
        vec![
            t(),
            id("p_staff_id", staff),
            id("p_service_id", service),
            doc("p_terms", json!({"duration_minutes": 45, "price": 90})),
        ],
    );
    assert_eq!((terms["duration_minutes"].as_i64(), terms["price"].as_f64()), (Some(45), Some(90.0)));
    front.ok(
        &manager,
        "add_resource_closure",
        vec![
            t(),
            id("p_resource_id", chair),
            ("p_starts_at", "timestamptz", json!("2026-03-24 08:00+01")),
            ("p_ends_at", "timestamptz", json!("2026-03-24 12:00+01")),
        ],
    );
    front.ok(
        &manager,
        "update_resource",
        vec![t(), id("p_resource_id", chair), doc("p_changes", json!({"position": 2}))],
    );
    let admin = front.ok(&manager, "get_tenant_admin", vec![t()]);
    assert_eq!(admin["resources"][0]["closures"].as_array().map(Vec::len), Some(1));
    assert_eq!(admin["resource_groups"][0]["resource_ids"], json!([chair]));
    assert_eq!(admin["requirements"][0]["group_id"], json!(group));
    assert_eq!(admin["staff"][0]["service_terms"][0]["price"].as_f64(), Some(90.0));
    // A group a service requires cannot be deleted.
    front.refused(&manager, "delete_resource_group", vec![t(), id("p_group_id", group)], "PT409");

    let attempts: Vec<(&str, crate::tenants::Args)> = vec![
        ("create_resource", vec![t(), doc("p_resource", json!({"name": "Room"}))]),
        ("set_service_requirements", vec![t(), id("p_service_id", service), doc("p_requirements", json!([]))]),
        ("add_booking_cap", vec![t(), doc("p_cap", json!({"scope": "customer", "period": "week", "max_bookings": 0}))]),
        ("update_tenant", vec![t(), doc("p_changes", json!({"staff_strategy": "priority"}))]),
        (
            "set_staff_service",
            vec![t(), id("p_staff_id", staff), id("p_service_id", service), doc("p_terms", json!({"price": 0}))],
        ),
    ];
    for (function, args) in attempts {
        for who in [&receptionist, &stylist] {
            front.refused(who, function, args.clone(), "42501");
        }
        for who in [&stranger, &other_owner] {
            front.refused(who, function, args.clone(), "PT404");
        }
    }
    // Nothing of it happened.
    let mut c = connect();
    let caps: i64 =
        c.query_one("SELECT count(*) FROM booking.booking_caps WHERE tenant_id = $1", &[&tenant]).unwrap().get(0);
    let reqs: i64 = c
        .query_one("SELECT count(*) FROM booking.service_requirements WHERE tenant_id = $1", &[&tenant])
        .unwrap()
        .get(0);
    assert_eq!((caps, reqs), (0, 1));
}

/// A PostgREST request from a client address (the rate limiter counts anon callers by it).
fn from_address(
    rest: &mut PostgRest,
    address: &str,
    who: &Caller,
    function: &str,
    args: crate::tenants::Args,
) -> Result<Value, crate::common::RpcError> {
    rest.headers = json!({"x-forwarded-for": address, "user-agent": "it-resources"});
    rest.rpc(who, function, &args)
}

/// Who may hold a slot, book it with the token, and see the resources it took: anon holds (and
/// is rate-limited per address), a customer books the hold for their own record, never for
/// another's; the booking's answer names its chair, which other customers cannot read; the
/// front desk sees it in the agenda.
#[test]
fn anon_holds_customers_book_the_hold_and_assignments_stay_private() {
    let mut front = Front::new();
    let (owner, tenant, service, staff, chair, _) = salon_with_a_chair(&mut front);
    let (_, receptionist) = member(&mut front, &owner, tenant, "receptionist", None);
    let (nina_user, nina) = user();
    let (_, jonas) = user();
    let nina_customer = uuid_of(
        &front.ok(&nina, "register_customer", vec![id("p_tenant_id", tenant), text("p_name", "Nina")])["customer"]
            ["id"],
    );
    let jonas_customer = uuid_of(
        &front.ok(&jonas, "register_customer", vec![id("p_tenant_id", tenant), text("p_name", "Jonas")])["customer"]
            ["id"],
    );
    let t = || id("p_tenant_id", tenant);
    let hold_at = |at: &str| doc("p_hold", json!({"service_id": service, "starts_at": at}));

    // Anon holds Monday 10:00 (any staff member: the one there is).
    let mut rest = PostgRest::connect();
    let address = format!("198.51.100.{}", rand_octet());
    let held =
        from_address(&mut rest, &address, &Caller::Anon, "create_hold", vec![t(), hold_at("2026-03-23 10:00+01")])
            .unwrap();
    assert_eq!(held["success"], true, "{held}");
    assert_eq!(held["hold"]["staff_id"], json!(staff));
    assert_eq!(held["hold"]["resources"][0]["resource_id"], json!(chair));
    assert!(held["hold"].get("token_hash").is_none());
    let token = held["token"].as_str().unwrap().to_string();
    // The slot is taken for everyone else: another hold, and the slots.
    let again = front.ok(&jonas, "create_hold", vec![t(), hold_at("2026-03-23 10:00+01")]);
    assert_eq!(
        (again["success"].as_bool(), again["code"].as_str()),
        (Some(false), Some("slot_unavailable")),
        "{again}"
    );
    let slots = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-23")), id("p_service_id", service)],
    );
    let held_at = chrono::DateTime::parse_from_rfc3339("2026-03-23T10:00:00+01:00").unwrap();
    let starts: Vec<_> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| chrono::DateTime::parse_from_rfc3339(s["starts_at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(!starts.contains(&held_at) && !starts.is_empty(), "{slots}");
    // A hold for someone else's customer record is refused as if it did not exist.
    front.refused(
        &jonas,
        "create_hold",
        vec![
            t(),
            doc(
                "p_hold",
                json!({"service_id": service, "starts_at": "2026-03-23 12:00+01", "customer_id": nina_customer}),
            ),
        ],
        "PT404",
    );
    // Anon cannot book it (no customer of their own); a wrong token names no hold.
    front.refused(
        &Caller::Anon,
        "create_tenant_booking",
        vec![
            t(),
            text("p_idempotency_key", "anon-hold"),
            doc("p_booking", json!({"hold_token": token, "customer_id": nina_customer})),
        ],
        "PT404",
    );
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    front.refused(
        &nina,
        "create_tenant_booking",
        vec![
            t(),
            text("p_idempotency_key", "forged"),
            doc("p_booking", json!({"hold_token": forged, "customer_id": nina_customer})),
        ],
        "PT404",
    );
    // Nina books it for herself; a replay answers the same.
    let booking_args = || {
        vec![
            t(),
            text("p_idempotency_key", "nina-hold"),
            doc("p_booking", json!({"hold_token": token, "customer_id": nina_customer})),
        ]
    };
    let booked = front.ok(&nina, "create_tenant_booking", booking_args());
    assert_eq!(booked["success"], true, "{booked}");
    assert_eq!(booked["appointment"]["resources"][0]["name"], "Chair 1");
    assert_eq!(front.ok(&nina, "create_tenant_booking", booking_args())["replayed"], true);
    // Jonas cannot turn the (now used) token into his own booking.
    front.refused(
        &jonas,
        "create_tenant_booking",
        vec![
            t(),
            text("p_idempotency_key", "jonas-hold"),
            doc("p_booking", json!({"hold_token": token, "customer_id": jonas_customer})),
        ],
        "PT404",
    );

    // The claims are not readable directly by applications; the front desk's agenda shows them.
    let mut c = connect();
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL role authenticated; SELECT set_config('request.jwt.claims', '{{\"role\": \"authenticated\", \"sub\": \"{nina_user}\"}}', true)"
    ))
    .unwrap();
    let direct = c.query("SELECT * FROM booking.assignments", &[]);
    assert_eq!(direct.unwrap_err().code().map(|s| s.code()), Some("42501"), "no direct read of assignments");
    c.batch_execute("ROLLBACK").unwrap();
    let agenda = front.ok(
        &receptionist,
        "get_agenda",
        vec![t(), ("p_from", "date", json!("2026-03-23")), ("p_to", "date", json!("2026-03-23"))],
    );
    assert_eq!(agenda[0]["resources"][0]["resource_id"], json!(chair), "{agenda}");
    front.refused(
        &nina,
        "get_agenda",
        vec![t(), ("p_from", "date", json!("2026-03-23")), ("p_to", "date", json!("2026-03-23"))],
        "PT404",
    );

    // A receptionist holds for any customer of the tenant, without a rate limit.
    let desk = front.ok(
        &receptionist,
        "create_hold",
        vec![
            t(),
            doc(
                "p_hold",
                json!({"service_id": service, "starts_at": "2026-03-23 14:00+01", "customer_id": jonas_customer}),
            ),
        ],
    );
    assert_eq!(desk["success"], true, "{desk}");
    // The hold is for Jonas: Nina may not book it even with the token.
    front.refused(
        &nina,
        "create_tenant_booking",
        vec![
            t(),
            text("p_idempotency_key", "nina-desk"),
            doc("p_booking", json!({"hold_token": desk["token"], "customer_id": nina_customer})),
        ],
        "22023",
    );
    assert!(front
        .ok(&receptionist, "release_hold", vec![text("p_token", desk["token"].as_str().unwrap())])
        .as_bool()
        .unwrap());

    // Anon is rate-limited per address: booking_engine.hold_rate_limit holds in 10 minutes,
    // refused ones counted too.
    let limit: i64 = c.query_one("SELECT current_setting('booking_engine.hold_rate_limit')::int8", &[]).unwrap().get(0);
    let address = format!("203.0.113.{}", rand_octet());
    for n in 0..limit {
        let h =
            from_address(&mut rest, &address, &Caller::Anon, "create_hold", vec![t(), hold_at("2026-03-25 09:00+01")])
                .unwrap();
        assert_eq!(h["success"], true, "hold {n}: {h}");
        assert!(from_address(
            &mut rest,
            &address,
            &Caller::Anon,
            "release_hold",
            vec![text("p_token", h["token"].as_str().unwrap())]
        )
        .unwrap()
        .as_bool()
        .unwrap());
    }
    let err =
        from_address(&mut rest, &address, &Caller::Anon, "create_hold", vec![t(), hold_at("2026-03-25 09:00+01")])
            .unwrap_err();
    assert_eq!(err.code, "PT429");
    // Another address is not affected.
    let other = from_address(
        &mut rest,
        &format!("192.0.2.{}", rand_octet()),
        &Caller::Anon,
        "create_hold",
        vec![t(), hold_at("2026-03-25 09:00+01")],
    )
    .unwrap();
    assert_eq!(other["success"], true, "{other}");
}

fn rand_octet() -> u8 {
    (Uuid::new_v4().as_u128() % 250) as u8 + 1
}

/// A tenant made directly (as an operator would): `staff` people working weekdays 09-17 in
/// UTC, one 60-minute service, one customer. (tenant, service, staff, customer)
fn plain_tenant(c: &mut postgres::Client, staff: usize, strategy: &str) -> (Uuid, Uuid, Vec<Uuid>, Uuid) {
    let s = crate::common::salon(c, staff);
    c.execute("UPDATE booking.tenants SET timezone = 'UTC' WHERE id = $1", &[&s.tenant]).unwrap();
    c.execute("UPDATE booking.staff SET timezone = 'UTC' WHERE tenant_id = $1", &[&s.tenant]).unwrap();
    c.execute("UPDATE booking.services SET buffer_after_minutes = 0 WHERE tenant_id = $1", &[&s.tenant]).unwrap();
    c.execute(
        "INSERT INTO booking.booking_settings (tenant_id, staff_strategy) VALUES ($1, $2)",
        &[&s.tenant, &strategy],
    )
    .unwrap();
    (s.tenant, s.service, s.staff, s.customer)
}

fn book_any(c: &mut postgres::Client, tenant: Uuid, service: Uuid, customer: Uuid, key: &str, at: &str) -> Value {
    c.query_one(
        "SELECT booking.create_tenant_booking($1, $2, jsonb_build_object('customer_id', $3::uuid, 'service_id', $4::uuid,
             'starts_at', $5::text))",
        &[&tenant, &key, &customer, &service, &at],
    )
    .unwrap()
    .get(0)
}

/// "Any staff": each strategy chooses as documented, the same state gives the same choice,
/// and the choice is recorded on the appointment.
#[test]
fn any_staff_strategies_choose_deterministically_and_say_how() {
    let mut c = connect();
    // Least busy that day: the one with fewer booked minutes on Monday, ties by id.
    let (tenant, service, staff, customer) = plain_tenant(&mut c, 3, "least_busy_day");
    let mut sorted = staff.clone();
    sorted.sort();
    let first = book_any(&mut c, tenant, service, customer, "lbd-1", "2026-03-23T09:00:00Z");
    assert_eq!(first["appointment"]["staff_id"], json!(sorted[0]), "{first}");
    assert_eq!(first["appointment"]["staff_choice"], json!({"strategy": "least_busy_day", "free_staff": 3}));
    let second = book_any(&mut c, tenant, service, customer, "lbd-2", "2026-03-23T09:00:00Z");
    assert_eq!(second["appointment"]["staff_id"], json!(sorted[1]), "the busier one is skipped: {second}");
    let third = book_any(&mut c, tenant, service, customer, "lbd-3", "2026-03-23T11:00:00Z");
    assert_eq!(third["appointment"]["staff_id"], json!(sorted[2]));
    // Everyone has 60 minutes now; the next goes to the first by id again.
    let fourth = book_any(&mut c, tenant, service, customer, "lbd-4", "2026-03-23T13:00:00Z");
    assert_eq!(fourth["appointment"]["staff_id"], json!(sorted[0]));
    // The slots for "any staff" count who is free: at 09:00 only the third.
    let free: Vec<(chrono::DateTime<chrono::Utc>, i32)> = c
        .query(
            "SELECT starts_at, staff_free FROM booking.get_any_staff_slots($1, '2026-03-23', '2026-03-23')",
            &[&service],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let at = |h: u32| free.iter().find(|(t, _)| t.format("%H:%M").to_string() == format!("{h:02}:00")).map(|f| f.1);
    assert_eq!((at(9), at(10), at(15)), (Some(1), Some(3), Some(3)), "{free:?}");

    // Priority: the lowest priority number, whatever the load; weight 0 is never chosen.
    let (tenant, service, staff, customer) = plain_tenant(&mut c, 3, "priority");
    c.execute("UPDATE booking.staff_services SET priority = 5 WHERE staff_id = $1", &[&staff[0]]).unwrap();
    c.execute("UPDATE booking.staff_services SET priority = 1 WHERE staff_id = $1", &[&staff[1]]).unwrap();
    c.execute("UPDATE booking.staff_services SET priority = 0, weight = 0 WHERE staff_id = $1", &[&staff[2]]).unwrap();
    for (n, at) in ["2026-03-23T09:00:00Z", "2026-03-23T10:00:00Z"].iter().enumerate() {
        let b = book_any(&mut c, tenant, service, customer, &format!("prio-{n}"), at);
        assert_eq!(b["appointment"]["staff_id"], json!(staff[1]), "{b}");
    }
    let b = book_any(&mut c, tenant, service, customer, "prio-2", "2026-03-23T09:00:00Z");
    assert_eq!(b["appointment"]["staff_id"], json!(staff[0]), "the second in order once the first is taken: {b}");
    let b = book_any(&mut c, tenant, service, customer, "prio-3", "2026-03-23T09:00:00Z");
    assert_eq!(b["details"][0]["code"], "no_staff_free", "weight 0 takes no 'any staff' booking: {b}");

    // Weighted round robin: weights 3 and 1 share six bookings 3:1 (and the heavier first).
    let (tenant, service, staff, customer) = plain_tenant(&mut c, 2, "round_robin");
    c.execute("UPDATE booking.staff_services SET weight = 3 WHERE staff_id = $1", &[&staff[0]]).unwrap();
    let mut counts = [0, 0];
    for n in 0..8 {
        let at = format!("2026-03-{}T{:02}:00:00Z", 23 + n / 4, 9 + 2 * (n % 4));
        let b = book_any(&mut c, tenant, service, customer, &format!("rr-{n}"), &at);
        let chosen = uuid_of(&b["appointment"]["staff_id"]);
        counts[usize::from(chosen == staff[1])] += 1;
    }
    assert_eq!(counts, [6, 2]);
    // The same state gives the same plan.
    let plan = |c: &mut postgres::Client| -> Value {
        c.query_one(
            "SELECT booking.tenant_booking_plan($1, $2, NULL, '2026-03-25T09:00:00Z', NULL, NULL, NULL, NULL)",
            &[&tenant, &service],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(plan(&mut c), plan(&mut c));
}

/// A senior's cut takes 45 minutes and costs 90, a junior's 60 and 60: slots, ends and prices
/// follow the staff member's terms; customers cannot send another length or price.
#[test]
fn per_staff_length_and_price_shape_slots_and_bookings() {
    let mut c = connect();
    c.batch_execute("SET timezone = 'UTC'").unwrap();
    let (tenant, service, staff, customer) = plain_tenant(&mut c, 2, "priority");
    let (senior, junior) = (staff[0], staff[1]);
    c.execute(
        "UPDATE booking.staff_services SET duration_minutes = 45, price = 90, priority = 0 WHERE staff_id = $1",
        &[&senior],
    )
    .unwrap();
    c.execute("UPDATE booking.staff_services SET price = 60, priority = 1 WHERE staff_id = $1", &[&junior]).unwrap();
    let lengths: Vec<(Uuid, i64)> = c
        .query(
            "SELECT DISTINCT staff_id, extract(epoch FROM ends_at - starts_at)::int8 / 60
             FROM booking.get_available_slots($1, '2026-03-23', '2026-03-23') ORDER BY 2",
            &[&service],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(lengths, [(senior, 45), (junior, 60)]);
    // The senior's last start is 16:15 (ends 17:00), the junior's 16:00.
    let last: Vec<(Uuid, String)> = c
        .query(
            "SELECT staff_id, to_char(max(starts_at) AT TIME ZONE 'UTC', 'HH24:MI') FROM booking.get_available_slots($1, '2026-03-23', '2026-03-23')
             GROUP BY 1 ORDER BY 2",
            &[&service],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(last, [(junior, "16:00".to_string()), (senior, "16:15".to_string())]);

    // A customer's booking: the staff member's length and price.
    let user = Uuid::new_v4();
    c.execute("UPDATE booking.customers SET user_id = $1 WHERE id = $2", &[&user, &customer]).unwrap();
    let as_customer = |c: &mut postgres::Client, key: &str, booking: Value| -> Result<Value, String> {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute(&format!(
            "SET LOCAL role authenticated; SELECT set_config('request.jwt.claims', '{{\"role\": \"authenticated\", \"sub\": \"{user}\"}}', true)"
        ))
        .unwrap();
        let r = tx.query_one("SELECT booking.create_tenant_booking($1, $2, $3)", &[&tenant, &key, &booking]);
        match r {
            Ok(row) => {
                let v: Value = row.get(0);
                tx.commit().unwrap();
                Ok(v)
            }
            Err(e) => Err(e.code().map(|s| s.code().to_string()).unwrap_or_default()),
        }
    };
    let base = json!({"customer_id": customer, "service_id": service, "starts_at": "2026-03-23T09:00:00Z"});
    let mut named = base.clone();
    named["staff_id"] = json!(senior);
    let senior_booking = as_customer(&mut c, "terms-1", named).unwrap();
    assert_eq!(senior_booking["appointment"]["ends_at"], "2026-03-23T09:45:00+00:00", "{senior_booking}");
    assert_eq!(senior_booking["appointment"]["price"].as_f64(), Some(90.0));
    // The junior's price for the senior, or the service's hour: refused.
    let mut cheap = base.clone();
    cheap["staff_id"] = json!(senior);
    cheap["starts_at"] = json!("2026-03-23T11:00:00Z");
    cheap["price"] = json!(60);
    assert_eq!(as_customer(&mut c, "terms-2", cheap.clone()).unwrap_err(), "22023");
    cheap["price"] = json!(90);
    cheap["ends_at"] = json!("2026-03-23T12:00:00Z");
    assert_eq!(as_customer(&mut c, "terms-3", cheap).unwrap_err(), "22023");
    // "Any staff" (priority: the senior first, busy at 09:00): the junior's terms.
    let any = as_customer(&mut c, "terms-4", base.clone()).unwrap();
    assert_eq!(any["appointment"]["staff_id"], json!(junior), "{any}");
    assert_eq!(any["appointment"]["ends_at"], "2026-03-23T10:00:00+00:00");
    assert_eq!(any["appointment"]["price"].as_f64(), Some(60.0));
    // With any staff member a customer sends neither end nor price.
    let mut priced = base.clone();
    priced["starts_at"] = json!("2026-03-23T13:00:00Z");
    priced["price"] = json!(60);
    assert_eq!(as_customer(&mut c, "terms-5", priced).unwrap_err(), "22023");
}

/// xorshift64*: a seeded generator, so that a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.below(list.len() as u64) as usize]
    }
}

/// Minutes since 2026-03-23 00:00 UTC (a Monday) of an instant.
fn minutes(t: chrono::DateTime<chrono::Utc>) -> i64 {
    (t - chrono::DateTime::parse_from_rfc3339("2026-03-23T00:00:00Z").unwrap().with_timezone(&chrono::Utc))
        .num_minutes()
}

fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Every input of the reference, read back from the tables as plain rows (minutes from Monday).
struct World {
    interval: i64,
    turnover: i64,
    /// service -> (duration, buffer before, buffer after)
    services: Vec<(Uuid, i64, i64, i64)>,
    /// (staff, service, own duration, weight)
    offers: Vec<(Uuid, Uuid, Option<i64>, i32)>,
    /// (staff, day of week, start, end) in minutes of the day
    windows: Vec<(Uuid, i32, i64, i64)>,
    /// (staff, service, customer, start, end): live appointments and live holds, what blocks staff
    bookings: Vec<(Uuid, Uuid, Option<Uuid>, i64, i64, bool)>,
    /// (resource, opening start, end in minutes of the day or None)
    resources: Vec<(Uuid, Option<(i64, i64)>)>,
    closures: Vec<(Uuid, i64, i64)>,
    /// (resource, blocked) of live, unexpired resource claims
    claims: Vec<(Uuid, i64, i64)>,
    /// (service, quantity, eligible resources)
    requirements: Vec<(Uuid, i64, Vec<Uuid>)>,
    /// (scope, staff, service, max) of day caps
    caps: Vec<(String, Option<Uuid>, Option<Uuid>, i64)>,
}

fn read_world(c: &mut postgres::Client, tenant: Uuid) -> World {
    let rows = |c: &mut postgres::Client, sql: &str| c.query(sql, &[&tenant]).unwrap();
    let t = c
        .query_one("SELECT slot_interval_minutes, buffer_time_minutes FROM booking.tenants WHERE id = $1", &[&tenant])
        .unwrap();
    let services = rows(c, "SELECT id, duration_minutes, buffer_before_minutes, buffer_after_minutes FROM booking.services WHERE tenant_id = $1")
        .iter()
        .map(|r| (r.get(0), r.get::<_, i32>(1) as i64, r.get::<_, i32>(2) as i64, r.get::<_, i32>(3) as i64))
        .collect();
    let offers = rows(
        c,
        "SELECT staff_id, service_id, duration_minutes, weight FROM booking.staff_services WHERE tenant_id = $1",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get::<_, Option<i32>>(2).map(i64::from), r.get(3)))
    .collect();
    let windows = rows(c, "SELECT staff_id, day_of_week, extract(epoch FROM start_time)::int8 / 60, extract(epoch FROM end_time)::int8 / 60
                           FROM booking.staff_schedules WHERE tenant_id = $1")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let stamp = |r: &postgres::Row, i: usize| minutes(r.get::<_, chrono::DateTime<chrono::Utc>>(i));
    let bookings = rows(
        c,
        "SELECT staff_id, service_id, customer_id, starts_at, ends_at, status IN ('pending', 'confirmed', 'active')
                            FROM booking.appointments WHERE tenant_id = $1 AND status NOT IN ('cancelled', 'expired')
                            UNION ALL
                            SELECT staff_id, service_id, customer_id, starts_at, ends_at, true FROM booking.holds
                            WHERE tenant_id = $1 AND expires_at > booking.clock_now()",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), stamp(r, 3), stamp(r, 4), r.get(5)))
    .collect();
    let resources = rows(
        c,
        "SELECT id, (opening_hours -> '1' ->> 'start_time')::time, (opening_hours -> '1' ->> 'end_time')::time
                             FROM booking.resources WHERE tenant_id = $1 AND is_active",
    )
    .iter()
    .map(|r| {
        let hm =
            |t: Option<chrono::NaiveTime>| t.map(|t| i64::from(chrono::Timelike::num_seconds_from_midnight(&t)) / 60);
        (r.get(0), hm(r.get(1)).zip(hm(r.get(2))))
    })
    .collect();
    let closures =
        rows(c, "SELECT resource_id, lower(period), upper(period) FROM booking.resource_closures WHERE tenant_id = $1")
            .iter()
            .map(|r| (r.get(0), stamp(r, 1), stamp(r, 2)))
            .collect();
    let claims = rows(
        c,
        "SELECT resource_id, lower(blocked), upper(blocked) FROM booking.assignments
                          WHERE tenant_id = $1 AND resource_id IS NOT NULL AND live
                            AND (expires_at IS NULL OR expires_at > booking.clock_now())",
    )
    .iter()
    .map(|r| (r.get(0), stamp(r, 1), stamp(r, 2)))
    .collect();
    let requirements = rows(
        c,
        "SELECT q.service_id, q.quantity,
                                       CASE WHEN q.resource_id IS NOT NULL THEN ARRAY[q.resource_id]
                                            ELSE ARRAY(SELECT m.resource_id FROM booking.resource_group_members m
                                                       WHERE m.tenant_id = q.tenant_id AND m.group_id = q.group_id) END
                                FROM booking.service_requirements q WHERE q.tenant_id = $1",
    )
    .iter()
    .map(|r| (r.get(0), r.get::<_, i32>(1) as i64, r.get(2)))
    .collect();
    let caps = rows(c, "SELECT scope, staff_id, service_id, max_bookings FROM booking.booking_caps WHERE tenant_id = $1 AND period = 'day'")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) as i64))
        .collect();
    World {
        interval: t.get::<_, i32>(0) as i64,
        turnover: t.get::<_, i32>(1) as i64,
        services,
        offers,
        windows,
        bookings,
        resources,
        closures,
        claims,
        requirements,
        caps,
    }
}

/// Whether every unit (a requirement's quantity) gets its own free resource: tried one way
/// after another, exhaustively.
fn all_met(units: &[Vec<Uuid>], free: &dyn Fn(Uuid) -> bool, used: &mut Vec<Uuid>) -> bool {
    let Some((first, rest)) = units.split_first() else { return true };
    for r in first {
        if !used.contains(r) && free(*r) {
            used.push(*r);
            if all_met(rest, free, used) {
                return true;
            }
            used.pop();
        }
    }
    false
}

/// The reference: the free starts (minutes from Monday) of each staff member for a service on
/// day `day` (0 = Monday), from the rules as docs/availability.md and docs/resources.md state
/// them, for a tenant open 08:00-18:00 every day in UTC, with every booking at least a day away.
fn reference(w: &World, service: Uuid, day: i64) -> Vec<(Uuid, i64)> {
    let &(_, base, before, after) = w.services.iter().find(|s| s.0 == service).unwrap();
    let mut out = Vec::new();
    let units: Vec<Vec<Uuid>> = w
        .requirements
        .iter()
        .filter(|q| q.0 == service)
        .flat_map(|q| std::iter::repeat_n(q.2.clone(), q.1 as usize))
        .collect();
    for &(staff, _, own, _) in w.offers.iter().filter(|o| o.1 == service) {
        let duration = own.unwrap_or(base);
        let dow = ((day + 1) % 7) as i32;
        for &(_, _, ws, we) in w.windows.iter().filter(|x| x.0 == staff && x.1 == dow) {
            let (ws, we) = (ws.max(8 * 60), we.min(18 * 60));
            let mut start = ws;
            while start + duration <= we {
                let at = day * 1440 + start;
                let blocked = (at - before, at + duration + after + w.turnover);
                let staff_free = !w.bookings.iter().filter(|b| b.0 == staff && b.5).any(|b| {
                    let &(_, _, bb, ba) = w.services.iter().find(|s| s.0 == b.1).unwrap();
                    overlaps(blocked, (b.3 - bb, b.4 + ba + w.turnover))
                });
                let free_resource = |r: Uuid| {
                    w.resources.iter().find(|x| x.0 == r).is_some_and(|x| {
                        x.1.is_none_or(|(hs, he)| day * 1440 + hs <= at && at + duration <= day * 1440 + he)
                    }) && !w.closures.iter().any(|c| c.0 == r && overlaps((at, at + duration), (c.1, c.2)))
                        && !w.claims.iter().any(|c| c.0 == r && overlaps(blocked, (c.1, c.2)))
                };
                let resources_met = all_met(&units, &free_resource, &mut Vec::new());
                let capped = w.caps.iter().any(|(scope, cap_staff, cap_service, max)| {
                    let counted = w
                        .bookings
                        .iter()
                        .filter(|b| b.3.div_euclid(1440) == day)
                        .filter(|b| cap_service.is_none_or(|s| s == b.1))
                        .filter(|b| match scope.as_str() {
                            "staff" => b.0 == staff,
                            _ => true,
                        })
                        .count() as i64;
                    let applies = cap_service.is_none_or(|s| s == service)
                        && cap_staff.is_none_or(|s| s == staff)
                        && scope != "customer";
                    applies && counted >= *max
                });
                if staff_free && resources_met && !capped {
                    out.push((staff, at));
                }
                start += w.interval;
            }
        }
    }
    out.sort_by_key(|&(s, t)| (t, s));
    out
}

/// A random tenant: staff with their hours and terms, two services, resources in groups with
/// hours and a closure, requirements, caps, bookings made through the booking function (any
/// staff or named), and holds, some of which have expired by the time slots are read. Returns
/// the tenant and its services.
fn random_tenant(c: &mut postgres::Client, rng: &mut Rng) -> (Uuid, Vec<Uuid>) {
    let tenant = Uuid::new_v4();
    let open: serde_json::Map<String, Value> =
        (0..7).map(|d| (d.to_string(), json!({"is_open": true, "start_time": "08:00", "end_time": "18:00"}))).collect();
    c.execute(
        "INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes, opening_hours)
         VALUES ($1, 'prop', 'UTC', $2, $3, $4)",
        &[&tenant, &rng.pick(&[15, 30]), &rng.pick(&[0, 5]), &Value::Object(open)],
    )
    .unwrap();
    // The store keeps up with every change below (checked at the end).
    c.execute(
        "UPDATE booking.slot_store_settings SET enabled = true, horizon_days = 30 WHERE tenant_id = $1",
        &[&tenant],
    )
    .unwrap();
    c.execute(
        "INSERT INTO booking.booking_settings (tenant_id, staff_strategy) VALUES ($1, $2)",
        &[&tenant, &rng.pick(&["least_busy_day", "least_busy_week", "round_robin", "priority"])],
    )
    .unwrap();
    let services: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    for s in &services {
        c.execute(
            "INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes, price)
             VALUES ($1, $2, 'S', $3, $4, $5, 50)",
            &[s, &tenant, &rng.pick(&[30, 45, 60, 90]), &rng.pick(&[0, 10]), &rng.pick(&[0, 15])],
        )
        .unwrap();
    }
    let staff: Vec<Uuid> = (0..2 + rng.below(3)).map(|_| Uuid::new_v4()).collect();
    for (k, s) in staff.iter().enumerate() {
        c.execute(
            "INSERT INTO booking.staff (id, tenant_id, name, timezone) VALUES ($1, $2, 'P', 'UTC')",
            &[s, &tenant],
        )
        .unwrap();
        for (n, svc) in services.iter().enumerate() {
            if n == 0 && k == 0 || rng.chance(75) {
                let own: Option<i32> = rng.chance(30).then(|| rng.pick(&[30, 45, 75]));
                c.execute(
                    "INSERT INTO booking.staff_services (tenant_id, staff_id, service_id, duration_minutes, weight, priority)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&tenant, s, svc, &own, &rng.pick(&[0, 1, 1, 2, 3]), &(rng.below(3) as i32)],
                )
                .unwrap();
            }
        }
        // One window, or two with a break of at least half an hour between them.
        let windows: Vec<(&str, &str)> = if rng.chance(50) {
            vec![(rng.pick(&["08:00", "09:00", "10:00"]), rng.pick(&["14:00", "16:00", "18:00"]))]
        } else {
            vec![
                (rng.pick(&["08:00", "09:00"]), "12:00"),
                (rng.pick(&["12:30", "13:00"]), rng.pick(&["16:00", "17:30"])),
            ]
        };
        for d in 1..=5 {
            for (a, b) in &windows {
                c.execute(
                    "INSERT INTO booking.staff_schedules (tenant_id, staff_id, day_of_week, start_time, end_time) VALUES ($1, $2, $3, $4::text::time, $5::text::time)",
                    &[&tenant, s, &d, a, b],
                )
                .unwrap();
            }
        }
    }
    let resources: Vec<Uuid> = (0..2 + rng.below(3)).map(|_| Uuid::new_v4()).collect();
    for (k, r) in resources.iter().enumerate() {
        let hours: Option<Value> = rng.chance(40).then(|| {
            let (a, b) = (rng.pick(&["08:00", "10:00"]), rng.pick(&["15:00", "18:00"]));
            Value::Object(
                (0..7).map(|d| (d.to_string(), json!({"is_open": true, "start_time": a, "end_time": b}))).collect(),
            )
        });
        c.execute(
            "INSERT INTO booking.resources (id, tenant_id, name, position, opening_hours) VALUES ($1, $2, 'R', $3, $4)",
            &[r, &tenant, &(rng.below(3) as i32), &hours],
        )
        .unwrap();
        if k == 0 && rng.chance(50) {
            c.execute(
                "INSERT INTO booking.resource_closures (tenant_id, resource_id, period)
                 VALUES ($1, $2, tstzrange('2026-03-23 11:00+00', '2026-03-23 13:30+00'))",
                &[&tenant, r],
            )
            .unwrap();
        }
    }
    let groups: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    for g in &groups {
        c.execute("INSERT INTO booking.resource_groups (id, tenant_id, name) VALUES ($1, $2, 'G')", &[g, &tenant])
            .unwrap();
        let mut any = false;
        for r in &resources {
            if rng.chance(60) {
                any = true;
                c.execute(
                    "INSERT INTO booking.resource_group_members (tenant_id, group_id, resource_id) VALUES ($1, $2, $3)",
                    &[&tenant, g, r],
                )
                .unwrap();
            }
        }
        if !any {
            c.execute(
                "INSERT INTO booking.resource_group_members (tenant_id, group_id, resource_id) VALUES ($1, $2, $3)",
                &[&tenant, g, &resources[0]],
            )
            .unwrap();
        }
    }
    c.execute(
        "INSERT INTO booking.service_requirements (tenant_id, service_id, group_id, quantity) VALUES ($1, $2, $3, $4)",
        &[&tenant, &services[0], &groups[0], &(if rng.chance(30) { 2 } else { 1 })],
    )
    .unwrap();
    if rng.chance(50) {
        c.execute(
            "INSERT INTO booking.service_requirements (tenant_id, service_id, resource_id) VALUES ($1, $2, $3)",
            &[&tenant, &services[1], &resources[0]],
        )
        .unwrap();
        c.execute(
            "INSERT INTO booking.service_requirements (tenant_id, service_id, group_id) VALUES ($1, $2, $3)",
            &[&tenant, &services[1], &groups[1]],
        )
        .unwrap();
    }
    if rng.chance(50) {
        c.execute(
            "INSERT INTO booking.booking_caps (tenant_id, scope, period, max_bookings) VALUES ($1, 'staff', 'day', 2)",
            &[&tenant],
        )
        .unwrap();
    }
    if rng.chance(30) {
        c.execute("INSERT INTO booking.booking_caps (tenant_id, scope, service_id, period, max_bookings) VALUES ($1, 'service', $2, 'day', 3)", &[&tenant, &services[0]]).unwrap();
    }
    let customer = Uuid::new_v4();
    c.execute("INSERT INTO booking.customers (id, tenant_id, name) VALUES ($1, $2, 'C')", &[&customer, &tenant])
        .unwrap();
    // Bookings and holds at random starts on Monday and Tuesday, by any staff member or a named
    // one (refusals and conflicts are part of the game). Holds are made at 00:00 (lapsing at
    // 00:10) or 00:05 (lapsing at 00:15); slots are read at 00:12.
    for n in 0..14 {
        let at = format!("2026-03-{}T{:02}:{:02}:00Z", 23 + rng.below(2), 8 + rng.below(9), rng.pick(&[0, 15, 30, 45]));
        let svc = rng.pick(&services);
        let named = rng.chance(50).then(|| rng.pick(&staff));
        let mut booking = json!({"customer_id": customer, "service_id": svc, "starts_at": at});
        if let Some(s) = named {
            booking["staff_id"] = json!(s);
        }
        if n % 4 == 3 {
            c.batch_execute(&format!("SET booking_engine.now = '2026-03-01 00:{:02}+00'", rng.pick(&[0, 5]))).unwrap();
            let mut hold = booking.clone();
            hold.as_object_mut().unwrap().remove("customer_id");
            c.query_one("SELECT booking.create_hold($1, $2)", &[&tenant, &hold]).unwrap();
            c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+00'").unwrap();
        } else {
            c.query_one("SELECT booking.create_tenant_booking($1, $2, $3)", &[&tenant, &format!("prop-{n}"), &booking])
                .unwrap();
        }
    }
    (tenant, services)
}

/// The property test: random tenants (staff, per-staff lengths, resource groups with hours and
/// closures, requirements, caps, bookings, holds live and expired), and on every staff member's
/// every slot of two days the engine (`get_available_slots`) equals the brute-force reference
/// above; the "any staff" slots count the same staff; after the sweep the slot store's free
/// slots equal the engine's and a full recomputation changes nothing. A failure names its seed.
#[test]
fn random_tenants_with_resources_holds_and_caps_equal_a_brute_force_reference() {
    let mut c = connect();
    c.batch_execute("SET timezone = 'UTC'; SET booking_engine.now = '2026-03-01 00:00+00'").unwrap();
    let mut checked = 0;
    for seed in [24_u64, 2026, 0x5eed, 77, 1_000_003, 31337] {
        let mut rng = Rng(seed);
        let (tenant, services) = random_tenant(&mut c, &mut rng);
        c.batch_execute("SET booking_engine.now = '2026-03-01 00:12+00'").unwrap();
        let world = read_world(&mut c, tenant);
        for service in &services {
            for day in 0..2_i64 {
                let date = format!("2026-03-{}", 23 + day);
                let engine: Vec<(Uuid, i64)> = c
                    .query("SELECT staff_id, starts_at FROM booking.get_available_slots($1, $2::text::date, $2::text::date)", &[service, &date])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), minutes(r.get(1))))
                    .collect();
                let expected = reference(&world, *service, day);
                assert_eq!(engine, expected, "seed {seed}, service {service}, {date}");
                checked += expected.len();
                // "Any staff": per start, the staff free who take such bookings (weight > 0).
                let any: Vec<(i64, i32)> = c
                    .query("SELECT starts_at, staff_free FROM booking.get_any_staff_slots($1, $2::text::date, $2::text::date)", &[service, &date])
                    .unwrap()
                    .iter()
                    .map(|r| (minutes(r.get(0)), r.get(1)))
                    .collect();
                let mut counted: std::collections::BTreeMap<i64, i32> = std::collections::BTreeMap::new();
                for (s, t) in &expected {
                    if world.offers.iter().any(|o| o.0 == *s && o.1 == *service && o.3 > 0) {
                        *counted.entry(*t).or_default() += 1;
                    }
                }
                assert_eq!(any, counted.into_iter().collect::<Vec<_>>(), "seed {seed}: any staff, {date}");
            }
        }
        // The store counts holds until they are removed: after the sweep it equals the engine,
        // and it is what a full recomputation makes of it.
        c.query_one("SELECT booking_admin.op_expire_holds('{}')", &[]).unwrap();
        for service in &services {
            let store_minus_engine: i64 = c
                .query_one(
                    "SELECT count(*) FROM (
                         (SELECT staff_id, start_time FROM booking.availability_slots_now
                          WHERE service_id = $1 AND is_available AND date BETWEEN '2026-03-23' AND '2026-03-27')
                         EXCEPT ALL SELECT staff_id, starts_at FROM booking.get_available_slots($1, '2026-03-23', '2026-03-27')) x",
                    &[service],
                )
                .unwrap()
                .get(0);
            let engine_minus_store: i64 = c
                .query_one(
                    "SELECT count(*) FROM (
                         SELECT staff_id, starts_at FROM booking.get_available_slots($1, '2026-03-23', '2026-03-27')
                         EXCEPT ALL (SELECT staff_id, start_time FROM booking.availability_slots_now
                                     WHERE service_id = $1 AND is_available AND date BETWEEN '2026-03-23' AND '2026-03-27')) x",
                    &[service],
                )
                .unwrap()
                .get(0);
            assert_eq!((store_minus_engine, engine_minus_store), (0, 0), "seed {seed}: the store against the engine");
        }
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS before_refresh;
             CREATE TEMP TABLE before_refresh AS
                 SELECT staff_id, date, service_id, start_time, end_time, is_available, confidence_score
                 FROM booking.availability_slots WHERE tenant_id = '{tenant}';
             SELECT booking.slot_store_touch_dates(array_agg(f.tenant_id), array_agg(f.id), NULL, NULL)
             FROM booking.staff f WHERE f.tenant_id = '{tenant}';"
        ))
        .unwrap();
        let changed: i64 = c
            .query_one(
                "WITH now AS (SELECT staff_id, date, service_id, start_time, end_time, is_available, confidence_score
                              FROM booking.availability_slots WHERE tenant_id = $1)
                 SELECT (SELECT count(*) FROM (SELECT * FROM now EXCEPT SELECT * FROM before_refresh) a)
                      + (SELECT count(*) FROM (SELECT * FROM before_refresh EXCEPT SELECT * FROM now) b)",
                &[&tenant],
            )
            .unwrap()
            .get(0);
        assert_eq!(changed, 0, "seed {seed}: a full recomputation changes the store");
        c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+00'").unwrap();
    }
    assert!(checked > 200, "the reference found slots to compare ({checked})");
}
