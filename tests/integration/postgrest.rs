//! booking_engine behind Supabase/PostgREST, attacked and used the way a browser front end
//! does: every call goes through `PostgRest` (one connection logged in as `authenticator`,
//! PostgREST's statement sequence per request) as `anon`, an `authenticated` user or
//! `service_role`. Each hole this file closes has a test here that failed before its fix.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{connect, salon, Caller, PostgRest, Salon};

/// A salon (one staff member, a 60-minute service at 80.00 with a 15-minute after-buffer) whose
/// customer belongs to user A, a second customer belonging to user B, and a staff member who is
/// the signed-in user `staff_user`.
struct Shop {
    s: Salon,
    user_a: Uuid,
    user_b: Uuid,
    customer_b: Uuid,
    staff_user: Uuid,
}

/// A confirmed appointment of customer B (Thursday 10:00), written directly.
fn appointment_of_b(shop: &Shop) -> Uuid {
    connect()
        .query_one(
            "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
             VALUES ($1, $2, $3, '2026-03-05 10:00+01', 'confirmed') RETURNING id",
            &[&shop.s.staff[0], &shop.s.service, &shop.customer_b],
        )
        .unwrap()
        .get(0)
}

fn shop() -> Shop {
    let mut c = connect();
    let s = salon(&mut c, 1);
    let (user_a, user_b, staff_user, customer_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    c.execute("UPDATE booking.services SET price = 80 WHERE id = $1", &[&s.service]).unwrap();
    c.execute("UPDATE booking.customers SET user_id = $1 WHERE id = $2", &[&user_a, &s.customer]).unwrap();
    c.execute(
        "INSERT INTO booking.customers (id, tenant_id, user_id, name, email) VALUES ($1, $2, $3, 'B', 'b@example.com')",
        &[&customer_b, &s.tenant, &user_b],
    )
    .unwrap();
    c.execute(
        "UPDATE booking.staff SET user_id = $1, email = 'staff@example.com' WHERE id = $2",
        &[&staff_user, &s.staff[0]],
    )
    .unwrap();
    Shop { s, user_a, user_b, customer_b, staff_user }
}

fn booking_args(key: &str, booking: Value) -> Vec<(&'static str, &'static str, Value)> {
    vec![("p_idempotency_key", "text", json!(key)), ("p_booking", "jsonb", booking)]
}

fn book(rest: &mut PostgRest, who: &Caller, key: &str, booking: Value) -> Result<Value, crate::common::RpcError> {
    rest.rpc(who, "create_booking_idempotent", &booking_args(key, booking))
}

fn id_arg(name: &'static str, id: impl ToString) -> (&'static str, &'static str, Value) {
    (name, "uuid", json!(id.to_string()))
}

/// Polls the audit log (failures are written by the writer, after the caller's
/// rollback) until `predicate` over the entries of request `request_id` holds.
fn await_audit(request_id: &str, min_rows: usize) -> Vec<postgres::Row> {
    let mut c = connect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = c
            .query(
                "SELECT action, success, user_id, failure_reason, host(ip_address), tenant_id
                 FROM booking_admin.security_audit_log WHERE request_id = $1 ORDER BY created_at, action",
                &[&request_id],
            )
            .unwrap();
        if rows.len() >= min_rows || Instant::now() > deadline {
            return rows;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn customers_cannot_choose_their_own_price_or_length() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    let a = Caller::User(shop.user_a);
    let cheap = json!({"customer_id": shop.s.customer, "staff_id": shop.s.staff[0], "service_id": shop.s.service,
                       "starts_at": "2026-03-02T09:00:00+01:00", "ends_at": "2026-03-02T09:05:00+01:00", "price": 0});
    let err = book(&mut rest, &a, "cheap-1", cheap.clone()).unwrap_err();
    assert_eq!(err.code, "22023", "a 5-minute end for a 60-minute service: {err:?}");
    let mut free = cheap.clone();
    free.as_object_mut().unwrap().remove("ends_at");
    let err = book(&mut rest, &a, "cheap-2", free).unwrap_err();
    assert_eq!(err.code, "22023", "price 0 for an 80.00 service: {err:?}");
    // Echoing the service's own values is fine; leaving them out gives them.
    let fair = json!({"customer_id": shop.s.customer, "staff_id": shop.s.staff[0], "service_id": shop.s.service,
                      "starts_at": "2026-03-02T09:00:00+01:00", "price": 80});
    let r = book(&mut rest, &a, "fair", fair).unwrap();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["appointment"]["price"], json!(80.00));
    let mut c = connect();
    let (minutes, price): (f64, String) = c
        .query_one(
            "SELECT (extract(epoch FROM ends_at - starts_at) / 60)::float8, price::text FROM booking.appointments WHERE customer_id = $1",
            &[&shop.s.customer],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((minutes, price.as_str()), (60.0, "80.00"));
    // The real 60 minutes (+ 15 buffer) are taken: B cannot book 09:05.
    let b = Caller::User(shop.user_b);
    let r = book(
        &mut rest,
        &b,
        "b-inside",
        json!({"customer_id": shop.customer_b, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-02T09:15:00+01:00"}),
    )
    .unwrap();
    assert_eq!(r["success"], false, "{r}");
    // The tenant's staff may set another end and price (a discount, a short follow-up).
    let staff = Caller::User(shop.staff_user);
    let r = book(
        &mut rest,
        &staff,
        "staff-deal",
        json!({"customer_id": shop.customer_b, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-02T11:00:00+01:00", "ends_at": "2026-03-02T11:30:00+01:00",
        "price": 40}),
    )
    .unwrap();
    assert_eq!((r["success"].as_bool(), r["appointment"]["price"].as_f64()), (Some(true), Some(40.0)), "{r}");
    // Anonymous callers are no customers at all.
    let err = book(
        &mut rest,
        &Caller::Anon,
        "anon",
        json!({"customer_id": shop.s.customer, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-02T13:00:00+01:00", "price": 0}),
    )
    .unwrap_err();
    assert_eq!(err.code, "PT404");
}

#[test]
fn customers_cannot_jump_the_waitlist_queue() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    let a = Caller::User(shop.user_a);
    let entry = |priority: Option<i64>| {
        let mut e = json!({"customer_id": shop.s.customer, "service_id": shop.s.service});
        if let Some(p) = priority {
            e["priority"] = json!(p);
        }
        vec![("p_entry", "jsonb", e)]
    };
    let err = rest.rpc(&a, "add_to_waitlist", &entry(Some(2147483647))).unwrap_err();
    assert_eq!(err.code, "42501", "{err:?}");
    let mine = rest.rpc(&a, "add_to_waitlist", &entry(None)).unwrap();
    assert_eq!(mine["priority"], 0, "a customer's entry gets the default");
    let change =
        |id: &Value, changes: Value| vec![id_arg("p_id", id.as_str().unwrap()), ("p_changes", "jsonb", changes)];
    let err = rest.rpc(&a, "update_waitlist_entry", &change(&mine["id"], json!({"priority": 99}))).unwrap_err();
    assert_eq!(err.code, "42501", "{err:?}");
    // Other changes of one's own entry still work, and resending the current priority is no change.
    let r = rest
        .rpc(&a, "update_waitlist_entry", &change(&mine["id"], json!({"notes": "mornings", "priority": 0})))
        .unwrap();
    assert_eq!((r["notes"].as_str(), r["priority"].as_i64()), (Some("mornings"), Some(0)));
    // The tenant's staff order the queue.
    let staff = Caller::User(shop.staff_user);
    let r = rest.rpc(&staff, "update_waitlist_entry", &change(&mine["id"], json!({"priority": 5}))).unwrap();
    assert_eq!(r["priority"], 5);
}

#[test]
fn only_the_tenants_people_read_why_a_staff_member_is_away() {
    let shop = shop();
    let mut c = connect();
    c.execute(
        "INSERT INTO booking.staff_time_off (staff_id, period, reason)
         VALUES ($1, tstzrange('2026-03-03 08:00+01', '2026-03-03 18:00+01'), 'medical: knee surgery')",
        &[&shop.s.staff[0]],
    )
    .unwrap();
    c.execute(
        "INSERT INTO booking.holidays (tenant_id, name, date) VALUES ($1, 'Owner''s wedding', '2026-03-04')",
        &[&shop.s.tenant],
    )
    .unwrap();
    let mut rest = PostgRest::connect();
    let check = |rest: &mut PostgRest, who: &Caller, function: &str, at: &str| -> String {
        rest.rpc(
            who,
            function,
            &[
                id_arg("p_staff_id", shop.s.staff[0]),
                id_arg("p_service_id", shop.s.service),
                ("p_starts_at", "timestamptz", json!(at)),
            ],
        )
        .unwrap()
        .to_string()
    };
    for who in [Caller::Anon, Caller::User(shop.user_a)] {
        for function in ["validate_appointment_timing", "rpc_validate_appointment_slot"] {
            let off = check(&mut rest, &who, function, "2026-03-03T10:00:00+01:00");
            assert!(off.contains("time_off") && off.contains("unavailable"), "{off}");
            assert!(!off.contains("medical"), "{who:?} {function}: {off}");
            let holiday = check(&mut rest, &who, function, "2026-03-04T10:00:00+01:00");
            assert!(!holiday.contains("wedding"), "{who:?} {function}: {holiday}");
        }
    }
    let staff = Caller::User(shop.staff_user);
    assert!(check(&mut rest, &staff, "validate_appointment_timing", "2026-03-03T10:00:00+01:00")
        .contains("medical: knee surgery"));
    assert!(check(&mut rest, &staff, "validate_appointment_timing", "2026-03-04T10:00:00+01:00").contains("wedding"));
    // A customer's refused booking carries the same discreet message.
    let r = book(
        &mut rest,
        &Caller::User(shop.user_a),
        "off",
        json!({"customer_id": shop.s.customer,
        "staff_id": shop.s.staff[0], "service_id": shop.s.service, "starts_at": "2026-03-03T10:00:00+01:00"}),
    )
    .unwrap();
    assert_eq!(r["success"], false);
    assert!(!r.to_string().contains("medical"), "{r}");
}

#[test]
fn untrusted_callers_cannot_write_the_audit_log() {
    let mut rest = PostgRest::connect();
    let forged_tenant = Uuid::new_v4();
    let args = |tenant: Uuid| {
        vec![
            ("p_action", "text", json!("login")),
            ("p_resource_type", "text", json!("auth")),
            ("p_resource_id", "text", json!("victim@example.com")),
            ("p_success", "boolean", json!("false")),
            ("p_failure_reason", "text", json!("forged")),
            ("p_sensitive_data_accessed", "boolean", json!("true")),
            ("p_tenant_id", "uuid", json!(tenant.to_string())),
        ]
    };
    for who in [Caller::Anon, Caller::User(Uuid::new_v4())] {
        let err = rest.rpc(&who, "log_security_event", &args(forged_tenant)).unwrap_err();
        assert_eq!(err.code, "42501", "{who:?}: {err:?}");
    }
    // Supabase's back end (service key) is trusted to record application events.
    let id = rest.rpc(&Caller::Service, "log_security_event", &args(forged_tenant)).unwrap();
    assert!(id.is_string(), "{id}");
}

#[test]
fn untrusted_callers_cannot_spend_rate_limit_budgets() {
    let victim = format!("198.51.100.{}", (Uuid::new_v4().as_u128() % 200) as u8 + 1);
    let mut rest = PostgRest::connect();
    let args = vec![
        ("identifier", "text", json!(victim)),
        ("bucket", "text", json!("auth")),
        ("max_requests", "integer", json!("1000000")),
        ("window_seconds", "integer", json!("900")),
    ];
    for who in [Caller::Anon, Caller::User(Uuid::new_v4())] {
        for _ in 0..5 {
            let err = rest.rpc(&who, "check_rate_limit", &args).unwrap_err();
            assert_eq!(err.code, "42501", "{err:?}");
        }
        assert_eq!(rest.rpc(&who, "check_rate_limit_json", &args).unwrap_err().code, "42501");
    }
    let mut c = connect();
    let allowed: bool = c.query_one("SELECT booking.check_rate_limit($1, 'auth', 5, 900)", &[&victim]).unwrap().get(0);
    assert!(allowed, "the server's own budget for the address is untouched");
}

#[test]
fn refused_calls_are_audited_with_the_callers_identity_and_request() {
    let shop = shop();
    let b_appt = appointment_of_b(&shop);
    let mut rest = PostgRest::connect();
    let request_id = format!("it-refused-{}", Uuid::new_v4());
    rest.headers = json!({"x-request-id": request_id, "x-forwarded-for": "192.0.2.66, 203.0.113.10"});
    let a = Caller::User(shop.user_a);
    let for_b = json!({"customer_id": shop.customer_b, "staff_id": shop.s.staff[0], "service_id": shop.s.service,
                       "starts_at": "2026-03-02T10:00:00+01:00"});
    assert_eq!(book(&mut rest, &a, "impersonate", for_b).unwrap_err().code, "PT404");
    let cancel = vec![id_arg("p_appointment_id", b_appt)];
    assert_eq!(rest.rpc(&a, "cancel_appointment", &cancel).unwrap_err().code, "PT404");
    let reschedule = vec![
        id_arg("p_appointment_id", b_appt),
        ("p_new_starts_at", "timestamptz", json!("2026-03-05T12:00:00+01:00")),
    ];
    assert_eq!(rest.rpc(&a, "reschedule_appointment", &reschedule).unwrap_err().code, "PT404");
    let wait = vec![("p_entry", "jsonb", json!({"customer_id": shop.customer_b, "service_id": shop.s.service}))];
    assert_eq!(rest.rpc(&a, "add_to_waitlist", &wait).unwrap_err().code, "PT404");
    let rows = await_audit(&request_id, 4);
    let seen: Vec<(String, bool, Option<Uuid>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let mut actions: Vec<&str> = seen.iter().map(|(a, _, _)| a.as_str()).collect();
    actions.sort();
    assert_eq!(actions, ["booking.cancel", "booking.create", "booking.reschedule", "booking.waitlist_add"], "{seen:?}");
    for (action, success, user) in &seen {
        assert!(!success && *user == Some(shop.user_a), "{action}: {seen:?}");
    }
    // The address is the one the trusted proxy saw, not the one the client wrote.
    assert!(rows.iter().all(|r| r.get::<_, Option<String>>(4).as_deref() == Some("203.0.113.10")));
    // A refusal does not tell the refused caller whose the object is, but the tenant's trail has it.
    assert!(rows.iter().all(|r| r.get::<_, Option<Uuid>>(5) == Some(shop.s.tenant)));
}

#[test]
fn the_audited_address_is_the_one_the_trusted_proxy_saw() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    let request_id = format!("it-xff-{}", Uuid::new_v4());
    rest.headers = json!({"x-request-id": request_id, "x-forwarded-for": "192.0.2.66, 203.0.113.10"});
    let r = book(
        &mut rest,
        &Caller::User(shop.user_a),
        "xff",
        json!({"customer_id": shop.s.customer,
        "staff_id": shop.s.staff[0], "service_id": shop.s.service, "starts_at": "2026-03-02T09:00:00+01:00"}),
    )
    .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let rows = await_audit(&request_id, 1);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, Option<String>>(4).as_deref(),
        Some("203.0.113.10"),
        "not the client-written 192.0.2.66"
    );
}

#[test]
fn callers_learn_nothing_about_objects_they_may_not_see() {
    let shop = shop();
    let b_appt = appointment_of_b(&shop);
    let mut rest = PostgRest::connect();
    let booking_for = |customer: Uuid| {
        json!({"customer_id": customer, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-02T10:00:00+01:00"})
    };
    // The message names only the id the caller sent: the same shape for both.
    let shape = |e: crate::common::RpcError, id: Uuid| (e.code, e.message.replace(&id.to_string(), "<id>"));
    let unknown = Uuid::new_v4();
    for who in [Caller::Anon, Caller::User(shop.user_a)] {
        let existing = shape(book(&mut rest, &who, "o-1", booking_for(shop.customer_b)).unwrap_err(), shop.customer_b);
        let missing = shape(book(&mut rest, &who, "o-2", booking_for(unknown)).unwrap_err(), unknown);
        assert_eq!(existing, missing, "{who:?}");
        assert_eq!(existing.0, "PT404", "PostgREST answers 404, not 500");
        let cancel = |rest: &mut PostgRest, id: Uuid| {
            shape(rest.rpc(&who, "cancel_appointment", &[id_arg("p_appointment_id", id)]).unwrap_err(), id)
        };
        assert_eq!(cancel(&mut rest, b_appt), cancel(&mut rest, unknown), "{who:?}");
    }
    // Not-found on the booking page is PostgREST's 404 too.
    let err = rest
        .rpc_rows(
            &Caller::Anon,
            "get_available_slots",
            &[
                id_arg("service_id", unknown),
                ("from_date", "date", json!("2026-03-02")),
                ("to_date", "date", json!("2026-03-02")),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "PT404");
    assert_eq!(
        rest.rpc(&Caller::Anon, "get_booking_page", &[id_arg("p_tenant_id", unknown)]).unwrap_err().code,
        "PT404"
    );
}

/// The functions the documentation lists as executable by untrusted callers: every backticked
/// name in its `<!-- application functions -->` ... `<!-- /application functions -->` blocks
/// (docs/supabase.md's list, and the tenant administration functions of docs/tenants.md).
fn documented_application_functions() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for (file, text) in crate::docs::documents() {
        for block in text.split("<!-- application functions -->").skip(1) {
            let block = block
                .split("<!-- /application functions -->")
                .next()
                .unwrap_or_else(|| panic!("{file}: unclosed block"));
            for quoted in block.split('`').skip(1).step_by(2) {
                if quoted.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && quoted.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    names.insert(quoted.to_string());
                }
            }
        }
    }
    assert!(names.len() > 40, "the documented list is missing: {names:?}");
    names
}

/// Every function an untrusted caller can execute is in the documentation's list, and every
/// function listed there is executable: the list and the grants cannot drift apart. In
/// booking_internal they may execute only the implementations behind those entry points.
#[test]
fn untrusted_roles_may_execute_only_the_documented_application_functions() {
    crate::common::ensure_supabase_roles();
    let documented = documented_application_functions();
    let mut c = connect();
    for role in ["anon", "authenticated"] {
        let executable = |c: &mut postgres::Client, schema: &str| -> std::collections::BTreeSet<String> {
            c.query(
                "SELECT DISTINCT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = $2::text::regnamespace AND p.prokind = 'f'
                   AND has_function_privilege($1, p.oid, 'EXECUTE')",
                &[&role, &schema],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let api = executable(&mut c, "booking");
        let undocumented: Vec<_> = api.difference(&documented).collect();
        let ungranted: Vec<_> = documented.difference(&api).collect();
        assert!(
            undocumented.is_empty() && ungranted.is_empty(),
            "{role}: executable but not documented {undocumented:?}, documented but not executable {ungranted:?}"
        );
        let internal = executable(&mut c, "booking_internal");
        let stray: Vec<_> = internal.difference(&api).collect();
        assert!(stray.is_empty(), "{role} may execute implementations without an entry point: {stray:?}");
    }
}

#[test]
fn service_role_manages_a_tenant_directly() {
    crate::common::ensure_supabase_roles();
    let mut c =
        postgres::Client::connect(&format!("{} user=authenticator", crate::common::dsn()), postgres::NoTls).unwrap();
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL role service_role;
         SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true);",
    )
    .unwrap();
    let tenant: Uuid =
        tx.query_one("INSERT INTO booking.tenants (name) VALUES ('service-made') RETURNING id", &[]).unwrap().get(0);
    let staff: Uuid = tx
        .query_one(
            "INSERT INTO booking.staff (tenant_id, name, timezone) VALUES ($1, 'S', 'UTC') RETURNING id",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    tx.execute("INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time) VALUES ($1, 1, '09:00', '17:00')", &[&staff])
        .unwrap();
    tx.execute("INSERT INTO booking.customers (tenant_id, name) VALUES ($1, 'C')", &[&tenant]).unwrap();
    tx.execute("UPDATE booking.staff SET name = 'S2' WHERE id = $1", &[&staff]).unwrap();
    let n: i64 =
        tx.query_one("SELECT count(*) FROM booking.staff_schedules WHERE staff_id = $1", &[&staff]).unwrap().get(0);
    assert_eq!(n, 1);
    tx.rollback().unwrap();
}

/// The whole path of a new customer over PostgREST: read the booking page, sign up, book
/// (pending, with an idempotency key), replay, conflict, staff confirm, check in, complete; and
/// a second booking cancelled.
#[test]
fn a_new_customer_books_and_the_tenant_runs_the_day_over_rpc() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    // 1. The booking page, anonymously: profile, services with length and price, staff names.
    let page = rest.rpc(&Caller::Anon, "get_booking_page", &[id_arg("p_tenant_id", shop.s.tenant)]).unwrap();
    assert_eq!(page["tenant"]["name"], "it salon");
    assert_eq!(page["services"][0]["duration_minutes"], 60);
    assert_eq!(page["services"][0]["price"], json!(80.00));
    assert_eq!(page["staff"][0]["name"], "Staff");
    assert_eq!(page["staff"][0]["service_ids"], json!([shop.s.service]));
    let text = page.to_string();
    assert!(!text.contains("staff@example.com") && !text.contains(&shop.staff_user.to_string()), "{text}");
    let slots = rest
        .rpc_rows(
            &Caller::Anon,
            "get_available_slots",
            &[
                id_arg("service_id", shop.s.service),
                ("from_date", "date", json!("2026-03-02")),
                ("to_date", "date", json!("2026-03-02")),
            ],
        )
        .unwrap();
    assert_eq!(slots[0]["staff_id"], json!(shop.s.staff[0]));
    let first = slots[0]["starts_at"].as_str().unwrap().to_string();

    // 2. Sign-up: anonymous callers cannot, a new user gets one record however often they ask.
    let signup = |name: &str| {
        vec![
            id_arg("p_tenant_id", shop.s.tenant),
            ("p_name", "text", json!(name)),
            ("p_email", "text", json!("new@example.com")),
        ]
    };
    assert_eq!(rest.rpc(&Caller::Anon, "register_customer", &signup("Nina")).unwrap_err().code, "42501");
    let user = Uuid::new_v4();
    let me = Caller::User(user);
    let joined = rest.rpc(&me, "register_customer", &signup("Nina")).unwrap();
    assert_eq!(joined["created"], true, "{joined}");
    let again = rest.rpc(&me, "register_customer", &signup("Nina")).unwrap();
    assert_eq!((again["created"].as_bool(), &again["customer"]["id"]), (Some(false), &joined["customer"]["id"]));
    let customer = joined["customer"]["id"].as_str().unwrap().to_string();
    let owner: Option<Uuid> = connect()
        .query_one("SELECT user_id FROM booking.customers WHERE id = $1::text::uuid", &[&customer])
        .unwrap()
        .get(0);
    assert_eq!(owner, Some(user));

    // 3. Book the first slot, pending; the same key replays; another key for the slot conflicts.
    let request = json!({"customer_id": customer, "staff_id": shop.s.staff[0], "service_id": shop.s.service,
                         "starts_at": first, "status": "pending"});
    let booked = book(&mut rest, &me, "page-1", request.clone()).unwrap();
    assert_eq!((booked["success"].as_bool(), booked["replayed"].as_bool()), (Some(true), Some(false)), "{booked}");
    let appt = booked["appointment"]["id"].as_str().unwrap().to_string();
    let replay = book(&mut rest, &me, "page-1", request.clone()).unwrap();
    assert_eq!((replay["replayed"].as_bool(), replay["appointment"]["id"].as_str()), (Some(true), Some(appt.as_str())));
    let conflict = book(
        &mut rest,
        &Caller::User(shop.user_a),
        "page-2",
        json!({"customer_id": shop.s.customer,
        "staff_id": shop.s.staff[0], "service_id": shop.s.service, "starts_at": first}),
    )
    .unwrap();
    assert_eq!(conflict["success"], false, "{conflict}");

    // 4. The day: the customer cannot confirm their own booking; staff confirm (twice: no
    // change), check in, complete.
    let on = || vec![id_arg("p_appointment_id", &appt)];
    assert_eq!(rest.rpc(&me, "confirm_appointment", &on()).unwrap_err().code, "42501");
    assert_eq!(rest.rpc(&Caller::User(shop.user_a), "confirm_appointment", &on()).unwrap_err().code, "PT404");
    let staff = Caller::User(shop.staff_user);
    let r = rest.rpc(&staff, "complete_appointment", &on()).unwrap();
    assert_eq!((r["success"].as_bool(), r["code"].as_str()), (Some(false), Some("invalid_status")), "pending: {r}");
    let r = rest.rpc(&staff, "confirm_appointment", &on()).unwrap();
    assert_eq!((r["changed"].as_bool(), r["appointment"]["status"].as_str()), (Some(true), Some("confirmed")), "{r}");
    let r = rest.rpc(&staff, "confirm_appointment", &on()).unwrap();
    assert_eq!((r["success"].as_bool(), r["changed"].as_bool()), (Some(true), Some(false)));
    let r = rest.rpc(&staff, "complete_appointment", &on()).unwrap();
    assert_eq!(r["code"], "not_checked_in", "{r}");
    let r = rest.rpc(&staff, "check_in_appointment", &on()).unwrap();
    assert!(r["changed"] == true && r["appointment"]["checked_in_at"].is_string(), "{r}");
    assert_eq!(rest.rpc(&staff, "check_in_appointment", &on()).unwrap()["changed"], false);
    let r = rest.rpc(&staff, "mark_no_show", &on()).unwrap();
    assert_eq!(r["code"], "checked_in", "{r}");
    let r = rest.rpc(&staff, "complete_appointment", &on()).unwrap();
    assert_eq!((r["changed"].as_bool(), r["appointment"]["status"].as_str()), (Some(true), Some("completed")), "{r}");
    let mut c = connect();
    let events: Vec<String> = c
        .query(
            "SELECT event_type FROM booking.events WHERE payload ->> 'appointment_id' = $1 ORDER BY created_at, event_type",
            &[&appt],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for e in ["booking.created", "booking.confirmed", "booking.checked_in", "booking.completed"] {
        assert!(events.iter().any(|x| x == e), "{e} missing from {events:?}");
    }

    // 5. A second booking, cancelled by the customer (more than 24 hours ahead).
    let second = book(
        &mut rest,
        &me,
        "page-3",
        json!({"customer_id": customer, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-03T14:00:00+01:00"}),
    )
    .unwrap();
    let id = second["appointment"]["id"].as_str().unwrap().to_string();
    let r = rest
        .rpc(
            &me,
            "cancel_appointment",
            &[
                id_arg("p_appointment_id", &id),
                ("p_reason", "text", json!("ill")),
                ("p_idempotency_key", "text", json!("cancel-3")),
            ],
        )
        .unwrap();
    assert_eq!((r["success"].as_bool(), r["appointment"]["status"].as_str()), (Some(true), Some("cancelled")), "{r}");
}

/// A staff member marks a no-show once the appointment has started.
#[test]
fn staff_mark_a_started_appointment_without_check_in_as_no_show() {
    let shop = shop();
    let mut c = connect();
    // Started an hour before the tests' fixed clock (2026-03-01 00:00+01).
    let appt: Uuid = c
        .query_one(
            "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
             VALUES ($1, $2, $3, '2026-02-28 23:00+01', 'confirmed') RETURNING id",
            &[&shop.s.staff[0], &shop.s.service, &shop.s.customer],
        )
        .unwrap()
        .get(0);
    let mut rest = PostgRest::connect();
    let on = [id_arg("p_appointment_id", appt)];
    assert_eq!(rest.rpc(&Caller::User(shop.user_a), "mark_no_show", &on).unwrap_err().code, "42501");
    let staff = Caller::User(shop.staff_user);
    let r = rest.rpc(&staff, "mark_no_show", &on).unwrap();
    assert_eq!((r["changed"].as_bool(), r["appointment"]["status"].as_str()), (Some(true), Some("no_show")), "{r}");
    assert_eq!(rest.rpc(&staff, "mark_no_show", &on).unwrap()["changed"], false);
    let r = rest.rpc(&staff, "check_in_appointment", &on).unwrap();
    assert_eq!(r["code"], "invalid_status", "{r}");
}

/// The visibility checks guard what callers ask for, not the extension's own follow-up work:
/// cancelling a booking of a service the tenant has since retired still works (the freed slot
/// is checked by the engine directly, not refused as invisible).
#[test]
fn a_customer_cancels_a_booking_of_a_retired_service() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    let a = Caller::User(shop.user_a);
    let r = book(
        &mut rest,
        &a,
        "retired",
        json!({"customer_id": shop.s.customer, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-04T10:00:00+01:00"}),
    )
    .unwrap();
    let id = r["appointment"]["id"].as_str().unwrap().to_string();
    connect().execute("UPDATE booking.services SET is_active = false WHERE id = $1", &[&shop.s.service]).unwrap();
    // Retired: the booking page no longer offers it.
    let err = book(
        &mut rest,
        &a,
        "retired-2",
        json!({"customer_id": shop.s.customer, "staff_id": shop.s.staff[0],
        "service_id": shop.s.service, "starts_at": "2026-03-05T10:00:00+01:00"}),
    )
    .unwrap_err();
    assert_eq!(err.code, "PT404");
    let r = rest.rpc(&a, "cancel_appointment", &[id_arg("p_appointment_id", &id)]).unwrap();
    assert_eq!((r["success"].as_bool(), r["appointment"]["status"].as_str()), (Some(true), Some("cancelled")), "{r}");
}

/// PostgREST reading a table (GET /{table}) as `who`: the rows of `sql` (one uuid column).
fn table_read(who: &str, sql: &str, args: &[&(dyn postgres::types::ToSql + Sync)]) -> Vec<Uuid> {
    crate::common::ensure_supabase_roles();
    let mut c =
        postgres::Client::connect(&format!("{} user=authenticator", crate::common::dsn()), postgres::NoTls).unwrap();
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL role {who}; SELECT set_config('request.jwt.claims', '{{\"role\": \"{who}\"}}', true)"
    ))
    .unwrap();
    let rows = tx.query(sql, args).unwrap().iter().map(|r| r.get(0)).collect();
    tx.rollback().unwrap();
    rows
}

/// The slot store's settings tell a booking page what it needs about the tenants whose store is
/// on, and nobody which other tenants exist.
#[test]
fn anon_cannot_list_every_tenant_through_the_slot_store_settings() {
    let (on, off) = (shop(), shop());
    connect()
        .execute(
            "UPDATE booking.slot_store_settings SET enabled = true, horizon_days = 3 WHERE tenant_id = $1",
            &[&on.s.tenant],
        )
        .unwrap();
    let ids = table_read("anon", "SELECT tenant_id FROM booking.slot_store_settings", &[]);
    assert!(ids.contains(&on.s.tenant), "a tenant whose store is on is readable: the store's view joins it");
    assert!(!ids.contains(&off.s.tenant), "a tenant whose store is off is not listed");
    // The store's view still works for anon.
    let slots = table_read(
        "anon",
        "SELECT staff_id FROM booking.availability_slots_now WHERE tenant_id = $1 AND is_available",
        &[&on.s.tenant],
    );
    assert!(!slots.is_empty());
    connect()
        .execute("UPDATE booking.slot_store_settings SET enabled = false WHERE tenant_id = $1", &[&on.s.tenant])
        .unwrap();
}

/// The slot store's readers answer a 4xx (PT409: the tenant's store is off), not 55000 (a 500
/// through PostgREST), for a tenant whose store is off.
#[test]
fn the_slot_store_readers_answer_a_4xx_for_a_tenant_without_a_store() {
    let shop = shop();
    let mut rest = PostgRest::connect();
    let err = rest
        .rpc_rows(
            &Caller::Anon,
            "find_optimal_slots",
            &[
                id_arg("p_service_id", shop.s.service),
                ("p_from", "date", json!("2026-03-02")),
                ("p_to", "date", json!("2026-03-03")),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "PT409", "{err:?}");
    let staff = Caller::User(shop.staff_user);
    let err = rest
        .rpc(
            &staff,
            "generate_availability_slots",
            &[
                id_arg("p_staff_id", shop.s.staff[0]),
                ("p_start_date", "date", json!("2026-03-02")),
                ("p_end_date", "date", json!("2026-03-03")),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "PT409", "{err:?}");
}

/// A service_role JWT is an operator: booking_admin is open to it (it is a member of
/// booking_operator and has its grants, Supabase's roles being NOINHERIT), not to anon or
/// signed-in users.
#[test]
fn service_role_is_an_operator_in_booking_admin() {
    let mut rest = PostgRest::connect();
    let stats = rest.rpc(&Caller::Service, "booking_admin.job_stats", &[]).unwrap();
    assert!(stats["by_status"].is_object(), "{stats}");
    let r = rest
        .rpc(
            &Caller::Service,
            "booking_admin.create_endpoint",
            &[
                ("p_url", "text", json!("https://hooks.example.com/service")),
                ("p_event_types", "text[]", json!("{booking.created}")),
            ],
        )
        .unwrap();
    connect()
        .execute(
            "DELETE FROM booking_admin.delivery_endpoints WHERE id = $1::text::uuid",
            &[&r["id"].as_str().unwrap()],
        )
        .unwrap();
    for who in [Caller::Anon, Caller::User(Uuid::new_v4())] {
        assert_eq!(rest.rpc(&who, "booking_admin.job_stats", &[]).unwrap_err().code, "42501", "{who:?}");
    }
}

/// A rate limit's status: a trusted back end reads an identifier's budget without
/// spending it; untrusted callers cannot read it at all.
#[test]
fn the_rate_limit_status_spends_nothing() {
    let victim = format!("203.0.113.{}", (Uuid::new_v4().as_u128() % 200) as u8 + 1);
    let bucket = format!("status-{}", Uuid::new_v4());
    let args = |id: &str| {
        vec![
            ("identifier", "text", json!(id)),
            ("bucket", "text", json!(bucket)),
            ("max_requests", "integer", json!("5")),
            ("window_seconds", "integer", json!("900")),
        ]
    };
    let mut rest = PostgRest::connect();
    for _ in 0..2 {
        assert_eq!(rest.rpc(&Caller::Service, "check_rate_limit", &args(&victim)).unwrap(), json!(true));
    }
    for _ in 0..10 {
        let status = rest.rpc(&Caller::Service, "rate_limit_status", &args(&victim)).unwrap();
        assert_eq!((status["remaining"].as_i64(), status["allowed"].as_bool()), (Some(3), Some(true)), "{status}");
    }
    let counted = rest.rpc(&Caller::Service, "check_rate_limit_json", &args(&victim)).unwrap();
    assert_eq!(counted["remaining"], 2, "the reads spent nothing: {counted}");
    for who in [Caller::Anon, Caller::User(Uuid::new_v4())] {
        assert_eq!(rest.rpc(&who, "rate_limit_status", &args(&victim)).unwrap_err().code, "42501");
    }
}
