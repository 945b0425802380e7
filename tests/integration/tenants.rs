//! A salon that runs itself from the front end, over PostgREST's statement sequence
//! only (`PostgRest`: one `authenticator` connection, `SET LOCAL role`, the JWT's claims): a new
//! user creates a tenant and becomes its owner, members join by invitation, and each role does
//! exactly what it may. Every refusal is checked for its SQLSTATE, for the HTTP status PostgREST
//! makes of it (a 4xx, never a 5xx) and for its audit entry with the caller's user id.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{connect, Caller, PostgRest, RpcError};

pub type Args = Vec<(&'static str, &'static str, Value)>;

pub fn id(name: &'static str, id: impl ToString) -> (&'static str, &'static str, Value) {
    (name, "uuid", json!(id.to_string()))
}

pub fn text(name: &'static str, value: &str) -> (&'static str, &'static str, Value) {
    (name, "text", json!(value))
}

pub fn doc(name: &'static str, value: Value) -> (&'static str, &'static str, Value) {
    (name, "jsonb", value)
}

/// The HTTP status PostgREST answers for a SQLSTATE (its documented mapping).
fn http_status(code: &str, anon: bool) -> u16 {
    if let Some(status) = code.strip_prefix("PT") {
        return status.parse().unwrap();
    }
    match code {
        "42501" if anon => 401,
        "42501" => 403,
        "23503" | "23505" => 409,
        "25006" => 405,
        "42883" | "42P01" => 404,
        c if c.starts_with("08") || c.starts_with("53") => 503,
        c if ["09", "0L", "0P", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "P0", "XX"]
            .iter()
            .any(|p| c.starts_with(p)) =>
        {
            500
        }
        _ => 400,
    }
}

/// Waits (the writer commits refusals after the caller's rollback) for the audit entry of one
/// request and returns (action, success, user id, failure reason).
fn audit_of(request_id: &str) -> (String, bool, Option<Uuid>, Option<String>) {
    let mut c = connect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = c
            .query_opt(
                "SELECT action, success, user_id, failure_reason FROM booking_admin.security_audit_log
                 WHERE request_id = $1 ORDER BY created_at DESC LIMIT 1",
                &[&request_id],
            )
            .unwrap();
        if let Some(r) = row {
            return (r.get(0), r.get(1), r.get(2), r.get(3));
        }
        assert!(Instant::now() < deadline, "no audit entry for request {request_id}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A front end's session: a PostgREST connection that tags each request with its own id.
pub struct Front {
    pub rest: PostgRest,
}

impl Front {
    pub fn new() -> Front {
        Front { rest: PostgRest::connect() }
    }

    pub fn call(&mut self, who: &Caller, function: &str, args: Args) -> (Result<Value, RpcError>, String) {
        let request = format!("it-tenants-{}", Uuid::new_v4());
        self.rest.headers = json!({"x-request-id": request, "user-agent": "it-tenants"});
        (self.rest.rpc(who, function, &args), request)
    }

    pub fn ok(&mut self, who: &Caller, function: &str, args: Args) -> Value {
        match self.call(who, function, args).0 {
            Ok(v) => v,
            Err(e) => panic!("{function} as {who:?}: {e:?}"),
        }
    }

    /// The call is refused with `code`, which PostgREST answers with a 4xx, and the refusal is
    /// audited as a failure of the caller's user with that code.
    pub fn refused(&mut self, who: &Caller, function: &str, args: Args, code: &str) -> RpcError {
        let (result, request) = self.call(who, function, args);
        let err = result.err().unwrap_or_else(|| panic!("{function} as {who:?} was not refused"));
        assert_eq!(err.code, code, "{function} as {who:?}: {err:?}");
        let status = http_status(&err.code, matches!(who, Caller::Anon));
        assert!((400..500).contains(&status), "{function}: {} becomes HTTP {status}", err.code);
        let (action, success, user, reason) = audit_of(&request);
        assert!(!success, "{function}: audited as a success");
        assert!(action.starts_with("booking."), "{function}: audited as {action}");
        let expected_user = match who {
            Caller::User(u) | Caller::UserWithEmail(u, _) => Some(*u),
            _ => None,
        };
        assert_eq!(user, expected_user, "{function}: the audit names the caller");
        assert!(reason.as_deref().is_some_and(|r| r.starts_with(&format!("{code}:"))), "{function}: {reason:?}");
        err
    }
}

pub fn user() -> (Uuid, Caller) {
    let u = Uuid::new_v4();
    (u, Caller::User(u))
}

/// A tenant made by a new signed-in user through booking.create_tenant, with one service and
/// one staff member working weekdays 09-17: (owner, tenant, service, staff).
pub fn salon(front: &mut Front, name: &str) -> (Caller, Uuid, Uuid, Uuid) {
    let (_, owner) = user();
    let t = front.ok(&owner, "create_tenant", vec![text("p_name", name), text("p_timezone", "Europe/Zurich")]);
    assert_eq!(t["role"], "owner", "{t}");
    let tenant: Uuid = t["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let service = front.ok(
        &owner,
        "create_service",
        vec![id("p_tenant_id", tenant), doc("p_service", json!({"name": "Cut", "duration_minutes": 60, "price": 80}))],
    );
    let service: Uuid = service["id"].as_str().unwrap().parse().unwrap();
    let staff = front.ok(
        &owner,
        "add_staff",
        vec![id("p_tenant_id", tenant), doc("p_staff", json!({"name": "Anna", "service_ids": [service]}))],
    );
    let staff: Uuid = staff["id"].as_str().unwrap().parse().unwrap();
    let week: Vec<Value> =
        (1..=5).map(|d| json!({"day_of_week": d, "start_time": "09:00", "end_time": "17:00"})).collect();
    front.ok(
        &owner,
        "set_staff_schedule",
        vec![id("p_tenant_id", tenant), id("p_staff_id", staff), doc("p_schedule", json!(week))],
    );
    (owner, tenant, service, staff)
}

/// Invites a new user into the tenant with a role (as staff member `staff`, when given) and
/// has them accept: the new member.
pub fn member(front: &mut Front, inviter: &Caller, tenant: Uuid, role: &str, staff: Option<Uuid>) -> (Uuid, Caller) {
    let (u, who) = user();
    let mut args = vec![id("p_tenant_id", tenant), text("p_role", role), id("p_user_id", u)];
    if let Some(s) = staff {
        args.push(id("p_staff_id", s));
    }
    let invitation = front.ok(inviter, "invite_member", args);
    let token = invitation["token"].as_str().unwrap().to_string();
    let joined = front.ok(&who, "accept_invitation", vec![text("p_token", &token)]);
    assert_eq!(joined["role"], role, "{joined}");
    (u, who)
}

/// The "done when": over PostgREST only, a new signed-in user creates a salon, adds two
/// stylists and a service, sets opening hours and a holiday, invites a receptionist who
/// accepts, a stylist enters her own time off, and a customer signs up and books.
#[test]
fn a_new_user_sets_up_a_salon_and_a_customer_books_over_postgrest() {
    let mut front = Front::new();
    let (owner_id, tenant) = a_salon_set_up_and_booked(&mut front);
    // Every change was announced as an event with its actor.
    let events: Vec<(String, Value)> = connect()
        .query("SELECT event_type, payload FROM booking.events WHERE tenant_id = $1::text::uuid ORDER BY created_at, event_type", &[&tenant])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for kind in [
        "tenant.created",
        "service.created",
        "staff.created",
        "schedule.updated",
        "tenant.updated",
        "member.invited",
        "member.joined",
        "time_off.created",
        "booking.created",
    ] {
        assert!(
            events.iter().any(|(k, _)| k == kind),
            "{kind} missing from {:?}",
            events.iter().map(|e| &e.0).collect::<Vec<_>>()
        );
    }
    let created = events.iter().find(|(k, _)| k == "tenant.created").unwrap();
    assert_eq!(created.1["actor"], json!({"user_id": owner_id, "role": "owner"}));
    let time_off = events.iter().find(|(k, _)| k == "time_off.created").unwrap();
    assert_eq!(time_off.1["actor"]["role"], "staff");
    assert!(time_off.1.get("reason").is_none(), "the reason stays private");
}

/// The salon of the "done when", set up and booked through `front` alone (the Citus test runs it
/// through a coordinator too): returns the owner's user id and the tenant id.
pub fn a_salon_set_up_and_booked(front: &mut Front) -> (Uuid, String) {
    let (owner_id, owner) = user();

    // The salon, and its owner.
    let created =
        front.ok(&owner, "create_tenant", vec![text("p_name", "Salon Nova"), text("p_timezone", "Europe/Zurich")]);
    let tenant = created["tenant"]["id"].as_str().unwrap().to_string();
    let t = || id("p_tenant_id", &tenant);
    assert_eq!(front.ok(&owner, "my_tenants", vec![])[0]["role"], "owner");

    // A service and two stylists who perform it, with their weekly hours.
    let cut = front.ok(
        &owner,
        "create_service",
        vec![t(), doc("p_service", json!({"name": "Haircut", "duration_minutes": 45, "price": 65}))],
    );
    let cut = cut["id"].as_str().unwrap().to_string();
    let mut stylists = Vec::new();
    for name in ["Anna", "Luca"] {
        let s = front.ok(&owner, "add_staff", vec![t(), doc("p_staff", json!({"name": name, "service_ids": [cut]}))]);
        let staff = s["id"].as_str().unwrap().to_string();
        let week: Vec<Value> =
            (1..=6).map(|d| json!({"day_of_week": d, "start_time": "09:00", "end_time": "18:00"})).collect();
        front.ok(&owner, "set_staff_schedule", vec![t(), id("p_staff_id", &staff), doc("p_schedule", json!(week))]);
        stylists.push(staff);
    }
    // Opening hours (closed Sundays and Mondays), stylists may enter their own time off, and a
    // holiday on Wednesday 2026-03-04.
    let hours: serde_json::Map<String, Value> = (0..7)
        .map(|d| (d.to_string(), json!({"is_open": d >= 2, "start_time": "09:00", "end_time": "18:00"})))
        .collect();
    let profile = front.ok(
        &owner,
        "update_tenant",
        vec![t(), doc("p_changes", json!({"opening_hours": hours, "staff_manage_own_schedule": true}))],
    );
    assert_eq!(profile["staff_manage_own_schedule"], true);
    front.ok(
        &owner,
        "add_holiday",
        vec![t(), doc("p_holiday", json!({"name": "Team day", "date": "2026-03-04", "type": "company_holiday"}))],
    );

    // A receptionist, invited by e-mail, accepts signed in with that address.
    let invitation = front.ok(
        &owner,
        "invite_member",
        vec![t(), text("p_role", "receptionist"), text("p_email", "Mia@Example.com")],
    );
    let receptionist = Caller::UserWithEmail(Uuid::new_v4(), "mia@example.com".into());
    let joined =
        front.ok(&receptionist, "accept_invitation", vec![text("p_token", invitation["token"].as_str().unwrap())]);
    assert_eq!((joined["role"].as_str(), joined["tenant_name"].as_str()), (Some("receptionist"), Some("Salon Nova")));

    // Anna joins as the staff member she is, and enters her own time off (Tuesday morning).
    let invitation = front.ok(
        &owner,
        "invite_member",
        vec![t(), text("p_role", "staff"), text("p_email", "anna@example.com"), id("p_staff_id", &stylists[0])],
    );
    let anna = Caller::UserWithEmail(Uuid::new_v4(), "anna@example.com".into());
    front.ok(&anna, "accept_invitation", vec![text("p_token", invitation["token"].as_str().unwrap())]);
    front.ok(
        &anna,
        "add_time_off",
        vec![
            t(),
            id("p_staff_id", &stylists[0]),
            ("p_starts_at", "timestamptz", json!("2026-03-03T09:00:00+01:00")),
            ("p_ends_at", "timestamptz", json!("2026-03-03T13:00:00+01:00")),
            text("p_reason", "dentist"),
        ],
    );

    // A customer finds the page (anonymously), signs up and books Anna on Tuesday afternoon.
    let page = front.ok(&Caller::Anon, "get_booking_page", vec![t()]);
    assert_eq!(page["tenant"]["name"], "Salon Nova");
    assert_eq!(page["services"][0]["price"], json!(65.00));
    assert_eq!(page["policies"]["cancellation_deadline_hours"], 24, "{page}");
    assert_eq!(page["staff"].as_array().map(Vec::len), Some(2));
    let slots = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-03")), id("p_service_id", &cut), id("p_staff_id", &stylists[0])],
    );
    let starts: Vec<&str> = slots.as_array().unwrap().iter().map(|s| s["starts_at"].as_str().unwrap()).collect();
    assert!(!starts.is_empty());
    let back = chrono::DateTime::parse_from_rfc3339("2026-03-03T13:00:00+01:00").unwrap();
    assert!(
        starts.iter().all(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap() >= back),
        "no slot in Anna's time off: {starts:?}"
    );
    let holiday = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-04")), id("p_service_id", &cut)],
    );
    assert_eq!(holiday, json!([]), "the holiday is closed");
    let monday = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-02")), id("p_service_id", &cut)],
    );
    assert_eq!(monday, json!([]), "closed on Mondays");

    let (_, customer) = user();
    let me = front.ok(
        &customer,
        "register_customer",
        vec![t(), text("p_name", "Nina Keller"), text("p_email", "nina@example.com")],
    );
    let booked = front.ok(&customer, "create_tenant_booking", vec![
        t(), text("p_idempotency_key", "nova-1"),
        doc("p_booking", json!({"customer_id": me["customer"]["id"], "staff_id": stylists[0], "service_id": cut, "starts_at": starts[0]})),
    ]);
    assert_eq!(
        (booked["success"].as_bool(), booked["appointment"]["status"].as_str()),
        (Some(true), Some("confirmed")),
        "{booked}"
    );

    // The receptionist sees it in the day's agenda; Anna sees it in hers.
    let agenda = front.ok(
        &receptionist,
        "get_agenda",
        vec![t(), ("p_from", "date", json!("2026-03-03")), ("p_to", "date", json!("2026-03-03"))],
    );
    assert_eq!(agenda[0]["customer"]["name"], "Nina Keller", "{agenda}");
    let own = front.ok(
        &anna,
        "get_agenda",
        vec![t(), ("p_from", "date", json!("2026-03-03")), ("p_to", "date", json!("2026-03-03"))],
    );
    assert_eq!(own.as_array().map(Vec::len), Some(1));

    // Every change is in the owner's admin view.
    let admin = front.ok(&owner, "get_tenant_admin", vec![t()]);
    assert_eq!(admin["members"].as_array().map(Vec::len), Some(3), "{}", admin["members"]);
    assert_eq!(admin["staff"].as_array().map(Vec::len), Some(2));
    assert_eq!(admin["time_off"][0]["reason"], "dentist");
    let mine = front.ok(&owner, "my_tenants", vec![]);
    assert_eq!((mine[0]["tenant_id"].as_str(), mine[0]["role"].as_str()), (Some(tenant.as_str()), Some("owner")));
    (owner_id, tenant)
}

/// A manager of tenant A cannot read or change tenant B, not even by naming A with B's objects.
#[test]
fn a_manager_of_one_tenant_cannot_reach_another() {
    let mut front = Front::new();
    let (owner_a, a, _, _) = salon(&mut front, "A");
    let (_, b, b_service, b_staff) = salon(&mut front, "B");
    let (_, manager) = member(&mut front, &owner_a, a, "manager", None);
    front.refused(&manager, "get_tenant_admin", vec![id("p_tenant_id", b)], "PT404");
    front.refused(
        &manager,
        "update_tenant",
        vec![id("p_tenant_id", b), doc("p_changes", json!({"name": "mine"}))],
        "PT404",
    );
    front.refused(
        &manager,
        "create_service",
        vec![id("p_tenant_id", b), doc("p_service", json!({"name": "x", "duration_minutes": 5}))],
        "PT404",
    );
    front.refused(
        &manager,
        "update_service",
        vec![id("p_tenant_id", b), id("p_service_id", b_service), doc("p_changes", json!({"price": 0}))],
        "PT404",
    );
    front.refused(
        &manager,
        "update_service",
        vec![id("p_tenant_id", a), id("p_service_id", b_service), doc("p_changes", json!({"price": 0}))],
        "PT404",
    );
    front.refused(
        &manager,
        "set_staff_schedule",
        vec![id("p_tenant_id", a), id("p_staff_id", b_staff), doc("p_schedule", json!([]))],
        "PT404",
    );
    front.refused(
        &manager,
        "add_time_off",
        vec![
            id("p_tenant_id", b),
            id("p_staff_id", b_staff),
            ("p_starts_at", "timestamptz", json!("2026-03-10T09:00:00Z")),
            ("p_ends_at", "timestamptz", json!("2026-03-10T10:00:00Z")),
        ],
        "PT404",
    );
    front.refused(
        &manager,
        "invite_member",
        vec![id("p_tenant_id", b), text("p_role", "staff"), text("p_email", "x@example.com")],
        "PT404",
    );
    front.refused(
        &manager,
        "get_agenda",
        vec![id("p_tenant_id", b), ("p_from", "date", json!("2026-03-02")), ("p_to", "date", json!("2026-03-02"))],
        "PT404",
    );
    // Another tenant does not exist for them in the same way an unknown one does not.
    let unknown = front.refused(&manager, "get_tenant_admin", vec![id("p_tenant_id", Uuid::new_v4())], "PT404");
    assert!(unknown.message.contains("does not exist"));
    // B is untouched.
    let price: String =
        connect().query_one("SELECT price::text FROM booking.services WHERE id = $1", &[&b_service]).unwrap().get(0);
    assert_eq!(price, "80.00");
    // Anonymous and signed-in outsiders get the same.
    front.refused(
        &Caller::Anon,
        "update_tenant",
        vec![id("p_tenant_id", a), doc("p_changes", json!({"name": "x"}))],
        "PT404",
    );
    front.refused(
        &user().1,
        "create_service",
        vec![id("p_tenant_id", a), doc("p_service", json!({"name": "x", "duration_minutes": 5}))],
        "PT404",
    );
}

/// Staff cannot raise their own role or change a colleague's hours, and change their own only
/// where the tenant allows it.
#[test]
fn staff_cannot_raise_their_role_or_change_a_colleagues_schedule() {
    let mut front = Front::new();
    let (owner, tenant, service, anna_staff) = salon(&mut front, "Staffed");
    let t = || id("p_tenant_id", tenant);
    let luca_staff =
        front.ok(&owner, "add_staff", vec![t(), doc("p_staff", json!({"name": "Luca", "service_ids": [service]}))]);
    let luca_staff = luca_staff["id"].as_str().unwrap().to_string();
    let (anna_id, anna) = member(&mut front, &owner, tenant, "staff", Some(anna_staff));
    for role in ["manager", "owner", "receptionist"] {
        front.refused(&anna, "change_member_role", vec![t(), id("p_user_id", anna_id), text("p_role", role)], "42501");
    }
    front.refused(&anna, "invite_member", vec![t(), text("p_role", "owner"), id("p_user_id", anna_id)], "42501");
    front.refused(
        &anna,
        "update_service",
        vec![t(), id("p_service_id", service), doc("p_changes", json!({"price": 1}))],
        "42501",
    );
    let week = json!([{"day_of_week": 1, "start_time": "06:00", "end_time": "22:00"}]);
    front.refused(
        &anna,
        "set_staff_schedule",
        vec![t(), id("p_staff_id", &luca_staff), doc("p_schedule", week.clone())],
        "42501",
    );
    let off = |staff: &str| -> Args {
        vec![
            id("p_tenant_id", tenant),
            id("p_staff_id", staff),
            ("p_starts_at", "timestamptz", json!("2026-03-10T09:00:00+01:00")),
            ("p_ends_at", "timestamptz", json!("2026-03-10T12:00:00+01:00")),
        ]
    };
    // Her own: not while the tenant does not allow it; then yes; a colleague's never.
    front.refused(&anna, "add_time_off", off(&anna_staff.to_string()), "42501");
    front.ok(&owner, "update_tenant", vec![t(), doc("p_changes", json!({"staff_manage_own_schedule": true}))]);
    front.ok(&anna, "add_time_off", off(&anna_staff.to_string()));
    front.ok(&anna, "set_staff_schedule", vec![t(), id("p_staff_id", anna_staff), doc("p_schedule", week.clone())]);
    front.refused(&anna, "add_time_off", off(&luca_staff), "42501");
    front.refused(
        &anna,
        "set_staff_schedule",
        vec![t(), id("p_staff_id", &luca_staff), doc("p_schedule", week)],
        "42501",
    );
    front.refused(
        &anna,
        "add_schedule_override",
        vec![t(), id("p_staff_id", &luca_staff), doc("p_override", json!({"date": "2026-03-11"}))],
        "42501",
    );
    // The owner's time off for Luca cannot be removed by Anna either.
    let lucas = front.ok(&owner, "add_time_off", off(&luca_staff));
    front.refused(&anna, "remove_time_off", vec![t(), id("p_time_off_id", lucas["id"].as_str().unwrap())], "42501");
    // Her own agenda only.
    front.refused(
        &anna,
        "get_agenda",
        vec![
            t(),
            ("p_from", "date", json!("2026-03-02")),
            ("p_to", "date", json!("2026-03-02")),
            id("p_staff_id", &luca_staff),
        ],
        "42501",
    );
    front.refused(&anna, "get_tenant_admin", vec![t()], "42501");
    let role: String = connect()
        .query_one(
            "SELECT role FROM booking.tenant_members WHERE tenant_id = $1 AND user_id = $2",
            &[&tenant, &anna_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(role, "staff");
}

/// A receptionist books, reschedules and cancels for any customer and runs the day, but
/// changes no prices, schedules or members.
#[test]
fn a_receptionist_runs_the_day_but_changes_no_prices_schedules_or_members() {
    let mut front = Front::new();
    let (owner, tenant, service, staff) = salon(&mut front, "Front desk");
    let t = || id("p_tenant_id", tenant);
    let (_, desk) = member(&mut front, &owner, tenant, "receptionist", None);
    let (staff_user, _) = member(&mut front, &owner, tenant, "staff", Some(staff));
    front.refused(
        &desk,
        "update_service",
        vec![t(), id("p_service_id", service), doc("p_changes", json!({"price": 0}))],
        "42501",
    );
    front.refused(
        &desk,
        "create_service",
        vec![t(), doc("p_service", json!({"name": "Free", "duration_minutes": 5, "price": 0}))],
        "42501",
    );
    front.refused(
        &desk,
        "set_policy",
        vec![t(), text("p_key", "cancellation_deadline_hours"), doc("p_value", json!(0))],
        "42501",
    );
    front.refused(
        &desk,
        "set_staff_schedule",
        vec![t(), id("p_staff_id", staff), doc("p_schedule", json!([]))],
        "42501",
    );
    front.refused(
        &desk,
        "invite_member",
        vec![t(), text("p_role", "staff"), text("p_email", "pal@example.com")],
        "42501",
    );
    front.refused(
        &desk,
        "change_member_role",
        vec![t(), id("p_user_id", staff_user), text("p_role", "receptionist")],
        "42501",
    );
    front.refused(&desk, "remove_member", vec![t(), id("p_user_id", staff_user)], "42501");
    front.refused(&desk, "update_tenant", vec![t(), doc("p_changes", json!({"name": "Mine"}))], "42501");
    front.refused(
        &desk,
        "create_tenant_endpoint",
        vec![t(), text("p_url", "https://hooks.example.com/x"), ("p_event_types", "text[]", json!("{booking.*}"))],
        "42501",
    );

    // A phone customer, booked, moved, confirmed, checked in, completed; another cancelled.
    let customer = front.ok(
        &desk,
        "create_customer",
        vec![t(), doc("p_customer", json!({"name": "Walk In", "phone": "+41 44 000 00 00"}))],
    );
    let book = |front: &mut Front, key: &str, at: &str, extra: Value| {
        let mut b = json!({"customer_id": customer["id"], "staff_id": staff, "service_id": service, "starts_at": at});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        front
            .call(
                &desk,
                "create_tenant_booking",
                vec![id("p_tenant_id", tenant), text("p_idempotency_key", key), doc("p_booking", b)],
            )
            .0
    };
    // No prices: not even the booking's own.
    let err = book(&mut front, "desk-0", "2026-03-10T10:00:00+01:00", json!({"price": 0})).unwrap_err();
    assert_eq!(err.code, "22023");
    let booked = book(&mut front, "desk-1", "2026-03-10T10:00:00+01:00", json!({})).unwrap();
    assert_eq!(booked["success"], true, "{booked}");
    let appt = booked["appointment"]["id"].as_str().unwrap().to_string();
    let moved = front.ok(
        &desk,
        "reschedule_tenant_appointment",
        vec![
            t(),
            id("p_appointment_id", &appt),
            ("p_new_starts_at", "timestamptz", json!("2026-03-10T11:00:00+01:00")),
        ],
    );
    assert_eq!(moved["success"], true, "{moved}");
    for step in ["confirm_appointment", "check_in_appointment", "complete_appointment"] {
        let r = front.ok(&desk, step, vec![id("p_appointment_id", &appt)]);
        assert_eq!(r["success"], true, "{step}: {r}");
    }
    let other = book(&mut front, "desk-2", "2026-03-12T10:00:00+01:00", json!({})).unwrap();
    let cancelled = front.ok(
        &desk,
        "cancel_tenant_appointment",
        vec![t(), id("p_appointment_id", other["appointment"]["id"].as_str().unwrap())],
    );
    assert_eq!(cancelled["appointment"]["status"], "cancelled");
    let found = front.ok(&desk, "list_customers", vec![t(), text("p_search", "walk")]);
    assert_eq!(found[0]["id"], customer["id"]);
}

/// The last owner can neither leave nor be demoted; a co-owner makes both possible; a manager
/// cannot touch owners.
#[test]
fn the_last_owner_cannot_leave_or_be_demoted() {
    let mut front = Front::new();
    let (owner, tenant, _, _) = salon(&mut front, "Owned");
    let t = || id("p_tenant_id", tenant);
    let owner_id = match owner {
        Caller::User(u) => u,
        _ => unreachable!(),
    };
    front.refused(
        &owner,
        "change_member_role",
        vec![t(), id("p_user_id", owner_id), text("p_role", "manager")],
        "PT409",
    );
    front.refused(&owner, "remove_member", vec![t(), id("p_user_id", owner_id)], "PT409");
    let (manager_id, manager) = member(&mut front, &owner, tenant, "manager", None);
    front.refused(
        &manager,
        "change_member_role",
        vec![t(), id("p_user_id", owner_id), text("p_role", "staff")],
        "42501",
    );
    front.refused(&manager, "remove_member", vec![t(), id("p_user_id", owner_id)], "42501");
    front.refused(
        &manager,
        "change_member_role",
        vec![t(), id("p_user_id", manager_id), text("p_role", "owner")],
        "42501",
    );
    // A second owner: now the first may step down, and then the second is the last.
    let r = front.ok(&owner, "change_member_role", vec![t(), id("p_user_id", manager_id), text("p_role", "owner")]);
    assert_eq!(r["role"], "owner");
    let r = front.ok(&owner, "change_member_role", vec![t(), id("p_user_id", owner_id), text("p_role", "manager")]);
    assert_eq!(r["role"], "manager");
    front.refused(&manager, "remove_member", vec![t(), id("p_user_id", manager_id)], "PT409");
    assert_eq!(
        front.ok(&owner, "remove_member", vec![t(), id("p_user_id", owner_id)]),
        json!(true),
        "a manager may leave"
    );
    front.refused(&owner, "get_tenant_admin", vec![t()], "PT404");
}

/// An invitation is accepted once, by the user it names, before it expires.
#[test]
fn an_invitation_is_single_use_for_its_own_user_and_expires() {
    let mut front = Front::new();
    let (owner, tenant, _, staff) = salon(&mut front, "Invites");
    let t = || id("p_tenant_id", tenant);
    let invite = |front: &mut Front, args: Args| -> (String, String) {
        let mut all = vec![id("p_tenant_id", tenant)];
        all.extend(args);
        let r = front.ok(&owner, "invite_member", all);
        (r["token"].as_str().unwrap().to_string(), r["invitation"]["id"].as_str().unwrap().to_string())
    };
    let accept = |token: &str| vec![text("p_token", token)];

    // By e-mail: another signed-in user (or one without the address) cannot take it.
    let (token, _) = invite(&mut front, vec![text("p_role", "receptionist"), text("p_email", "rita@example.com")]);
    front.refused(
        &Caller::UserWithEmail(Uuid::new_v4(), "mallory@example.com".into()),
        "accept_invitation",
        accept(&token),
        "PT403",
    );
    front.refused(&user().1, "accept_invitation", accept(&token), "PT403");
    front.refused(&Caller::Anon, "accept_invitation", accept(&token), "42501");
    let rita = Caller::UserWithEmail(Uuid::new_v4(), "rita@example.com".into());
    front.ok(&rita, "accept_invitation", accept(&token));
    // Twice: neither by her nor by anyone else.
    front.refused(&rita, "accept_invitation", accept(&token), "PT409");
    front.refused(
        &Caller::UserWithEmail(Uuid::new_v4(), "rita@example.com".into()),
        "accept_invitation",
        accept(&token),
        "PT409",
    );

    // By user id.
    let (sam_id, sam) = user();
    let (token, _) =
        invite(&mut front, vec![text("p_role", "staff"), id("p_user_id", sam_id), id("p_staff_id", staff)]);
    front.refused(
        &Caller::UserWithEmail(Uuid::new_v4(), "sam@example.com".into()),
        "accept_invitation",
        accept(&token),
        "PT403",
    );
    front.ok(&sam, "accept_invitation", accept(&token));

    // Expired, revoked, forged, garbage.
    let (late_id, late) = user();
    let (token, invitation) = invite(&mut front, vec![text("p_role", "staff"), id("p_user_id", late_id)]);
    connect()
        .execute(
            "UPDATE booking.tenant_invitations SET expires_at = '2026-02-28 00:00+01' WHERE id = $1::text::uuid",
            &[&invitation],
        )
        .unwrap();
    front.refused(&late, "accept_invitation", accept(&token), "PT410");
    let (token, invitation) = invite(&mut front, vec![text("p_role", "staff"), id("p_user_id", late_id)]);
    assert_eq!(front.ok(&owner, "revoke_invitation", vec![t(), id("p_invitation_id", &invitation)]), json!(true));
    front.refused(&late, "accept_invitation", accept(&token), "PT410");
    let (token, _) = invite(&mut front, vec![text("p_role", "owner"), id("p_user_id", late_id)]);
    // The same invitation with another secret: the stored hash does not match.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = b64.decode(token.strip_prefix("bkinv_").unwrap()).unwrap();
    raw[40] ^= 1;
    let forged = format!("bkinv_{}", b64.encode(raw));
    front.refused(&late, "accept_invitation", accept(&forged), "PT404");
    front.refused(&late, "accept_invitation", accept("bkinv_not-a-token"), "PT404");
    front.refused(&late, "accept_invitation", accept(""), "PT404");
    // The genuine token still works afterwards (the forgeries changed nothing).
    assert_eq!(front.ok(&late, "accept_invitation", accept(&token))["role"], "owner");
    // Only the token's hash is stored.
    let stored: i64 = connect()
        .query_one("SELECT count(*) FROM booking.tenant_invitations WHERE tenant_id = $1 AND position($2::text::bytea IN token_hash) > 0",
                   &[&tenant, &token])
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // A manager invites only roles below their own.
    let (_, manager) = member(&mut front, &owner, tenant, "manager", None);
    front.refused(
        &manager,
        "invite_member",
        vec![t(), text("p_role", "manager"), text("p_email", "peer@example.com")],
        "42501",
    );
    front.refused(
        &manager,
        "invite_member",
        vec![t(), text("p_role", "owner"), text("p_email", "boss@example.com")],
        "42501",
    );
    front.ok(&manager, "invite_member", vec![t(), text("p_role", "staff"), text("p_email", "junior@example.com")]);
}

/// Self-service tenant creation: signed-in users only, rate-limited per user, and the operator
/// can turn it off.
#[test]
fn self_service_tenants_are_for_signed_in_users_rate_limited_and_can_be_turned_off() {
    let mut front = Front::new();
    front.refused(&Caller::Anon, "create_tenant", vec![text("p_name", "Anon Inc")], "42501");
    front.refused(
        &user().1,
        "create_tenant",
        vec![text("p_name", "Nowhere"), text("p_timezone", "Mars/Olympus")],
        "22023",
    );
    let (_, eager) = user();
    for i in 0..5 {
        front.ok(&eager, "create_tenant", vec![text("p_name", &format!("Shop {i}"))]);
    }
    front.refused(&eager, "create_tenant", vec![text("p_name", "Shop 6")], "PT429");
    assert_eq!(front.ok(&eager, "my_tenants", vec![]).as_array().map(Vec::len), Some(5));

    // An operator's setting (here on the PostgREST login role, which only a superuser may set).
    connect()
        .batch_execute(
            "DO $$ BEGIN
                 IF to_regrole('authenticator_closed') IS NULL THEN CREATE ROLE authenticator_closed LOGIN NOINHERIT; END IF;
             END $$;
             GRANT anon, authenticated TO authenticator_closed;
             ALTER ROLE authenticator_closed SET booking_engine.self_serve_tenants = off;",
        )
        .unwrap();
    let mut closed = Front { rest: PostgRest::connect_as("authenticator_closed") };
    let err = closed.refused(&user().1, "create_tenant", vec![text("p_name", "Closed")], "42501");
    assert!(err.message.contains("self_serve_tenants"), "{err:?}");
}

/// Owners and managers manage the tenant's own delivery endpoints, with the operators' URL and
/// secret rules, up to the quota; never another tenant's or a global one.
#[test]
fn tenant_endpoints_follow_the_operators_rules_and_the_quota() {
    let mut front = Front::new();
    let (owner, tenant, _, _) = salon(&mut front, "Hooks");
    let (other_owner, other_tenant, _, _) = salon(&mut front, "Other hooks");
    let t = || id("p_tenant_id", tenant);
    let create = |url: &str| {
        vec![id("p_tenant_id", tenant), text("p_url", url), ("p_event_types", "text[]", json!("{booking.*,staff.*}"))]
    };
    // The operators' URL rules: no private hosts, no credentials, http(s) only.
    for bad in ["http://10.0.0.1/hook", "https://user:pw@hooks.example.com/x", "ftp://hooks.example.com/x"] {
        front.refused(&owner, "create_tenant_endpoint", create(bad), "22023");
    }
    let first = front.ok(&owner, "create_tenant_endpoint", create("https://hooks.example.com/1"));
    assert!(first["secret"].as_str().unwrap().starts_with("whsec_"), "the secret is shown once: {first}");
    let admin = front.ok(&owner, "get_tenant_admin", vec![t()]);
    assert!(!admin["endpoints"].to_string().contains("whsec_"), "never again");
    for i in 2..=5 {
        front.ok(&owner, "create_tenant_endpoint", create(&format!("https://hooks.example.com/{i}")));
    }
    front.refused(&owner, "create_tenant_endpoint", create("https://hooks.example.com/6"), "PT409");
    let endpoint = first["id"].as_str().unwrap().to_string();
    let rotated = front.ok(&owner, "rotate_tenant_endpoint_secret", vec![t(), id("p_endpoint_id", &endpoint)]);
    assert!(rotated.as_str().unwrap().starts_with("whsec_"));
    let changed = front.ok(
        &owner,
        "update_tenant_endpoint",
        vec![
            t(),
            id("p_endpoint_id", &endpoint),
            doc("p_changes", json!({"enabled": false, "disabled_reason": "moving"})),
        ],
    );
    assert_eq!(changed["enabled"], false);
    // Another tenant's endpoint and an operator's global one do not exist for this tenant.
    front.refused(
        &other_owner,
        "update_tenant_endpoint",
        vec![
            id("p_tenant_id", other_tenant),
            id("p_endpoint_id", &endpoint),
            doc("p_changes", json!({"enabled": true})),
        ],
        "PT404",
    );
    let global: Uuid = connect()
        .query_one(
            "SELECT (booking_admin.create_endpoint('https://hooks.example.com/global', '{*}') ->> 'id')::uuid",
            &[],
        )
        .unwrap()
        .get(0);
    front.refused(&owner, "delete_tenant_endpoint", vec![t(), id("p_endpoint_id", global)], "PT404");
    front.refused(&owner, "send_tenant_test_event", vec![t(), id("p_endpoint_id", global)], "PT404");
    assert_eq!(front.ok(&owner, "delete_tenant_endpoint", vec![t(), id("p_endpoint_id", &endpoint)]), json!(true));
    // The tenant's templates: the operators' placeholder checks.
    front.refused(
        &owner,
        "set_tenant_message_template",
        vec![t(), text("p_event_type", "booking.created"), text("p_subject", "{{nope}}"), text("p_body_text", "x")],
        "22023",
    );
    let tpl = front.ok(
        &owner,
        "set_tenant_message_template",
        vec![
            t(),
            text("p_event_type", "booking.created"),
            text("p_subject", "Hi {{customer_name}}"),
            text("p_body_text", "See you {{date_local}}"),
        ],
    );
    assert_eq!(tpl["subject"], "Hi {{customer_name}}");
    connect()
        .execute("DELETE FROM booking_admin.delivery_endpoints WHERE id = $1 OR tenant_id = $2", &[&global, &tenant])
        .unwrap();
}

/// A tenant that confirms its customers' bookings itself: they start pending, and a customer
/// cannot confirm one; staff and service policies win over the tenant's, and the booking page
/// shows them.
#[test]
fn tenant_settings_and_scoped_policies_apply_to_customers() {
    let mut front = Front::new();
    let (owner, tenant, service, staff) = salon(&mut front, "Careful");
    let t = || id("p_tenant_id", tenant);
    front.ok(&owner, "update_tenant", vec![t(), doc("p_changes", json!({"customer_booking_status": "pending"}))]);
    front.ok(
        &owner,
        "set_policy",
        vec![t(), text("p_key", "minimum_booking_notice_hours"), doc("p_value", json!(48)), id("p_staff_id", staff)],
    );
    front.ok(
        &owner,
        "set_policy",
        vec![t(), text("p_key", "cancellation_deadline_hours"), doc("p_value", json!(72)), id("p_service_id", service)],
    );
    front.refused(&owner, "set_policy", vec![t(), text("p_key", "no_such_policy"), doc("p_value", json!(1))], "22023");
    let page = front.ok(&Caller::Anon, "get_booking_page", vec![t()]);
    assert_eq!(page["tenant"]["customer_booking_status"], "pending");
    assert_eq!(page["services"][0]["policies"]["cancellation_deadline_hours"], 72, "{page}");
    assert_eq!(page["policies"]["cancellation_deadline_hours"], 24);
    assert_eq!(page["staff"][0]["policies"], json!({"minimum_booking_notice_hours": 48}));
    // The staff member's 48 hours' notice: nothing on Monday 2026-03-02 (now is Sunday 00:00).
    let monday = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-02")), id("p_service_id", service)],
    );
    assert_eq!(monday, json!([]));
    let tuesday = front.ok(
        &Caller::Anon,
        "get_tenant_available_slots",
        vec![t(), ("p_date", "date", json!("2026-03-03")), id("p_service_id", service)],
    );
    assert!(!tuesday.as_array().unwrap().is_empty());
    let (_, customer) = user();
    let me = front.ok(&customer, "register_customer", vec![t(), text("p_name", "Careful Customer")]);
    let booking = |status: Option<&str>| {
        let mut b = json!({"customer_id": me["customer"]["id"], "staff_id": staff, "service_id": service, "starts_at": "2026-03-05T10:00:00+01:00"});
        if let Some(s) = status {
            b["status"] = json!(s);
        }
        b
    };
    front.refused(
        &customer,
        "create_tenant_booking",
        vec![t(), text("p_idempotency_key", "c-1"), doc("p_booking", booking(Some("confirmed")))],
        "22023",
    );
    let r = front.ok(
        &customer,
        "create_tenant_booking",
        vec![t(), text("p_idempotency_key", "c-2"), doc("p_booking", booking(None))],
    );
    assert_eq!(r["appointment"]["status"], "pending", "{r}");
    // The service's 72-hour cancellation deadline, not the tenant's 24: a booking 106 hours
    // ahead can be cancelled, one 62 hours ahead no longer.
    let id_ = r["appointment"]["id"].as_str().unwrap().to_string();
    let cancelled = front.ok(&customer, "cancel_tenant_appointment", vec![t(), id("p_appointment_id", &id_)]);
    assert_eq!(cancelled["success"], true, "{cancelled}");
    let soon = front.ok(&owner, "create_tenant_booking", vec![t(), text("p_idempotency_key", "c-3"), doc("p_booking", json!({
        "customer_id": me["customer"]["id"], "staff_id": staff, "service_id": service, "starts_at": "2026-03-03T14:00:00+01:00"}))]);
    assert_eq!(soon["appointment"]["status"], "confirmed", "the tenant's own people book confirmed: {soon}");
    let late = front.ok(
        &customer,
        "cancel_tenant_appointment",
        vec![t(), id("p_appointment_id", soon["appointment"]["id"].as_str().unwrap())],
    );
    assert_eq!(late["code"], "cancellation_deadline_hours_passed", "{late}");
}
