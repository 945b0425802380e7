//! Reminders end to end: rules, a booking's reminders handed to their channels at the right
//! local times (a local fake SMS provider, tests/integration/receiver.rs, and the SMTP sink),
//! reschedules and cancels, quiet hours across both 2027 changes of the clocks, signed links
//! and STOP over PostgREST's statement sequence, the staff's agenda, and a killed sending worker.
//!
//! The clock is the extension's: each step sets `booking_engine.now` in the test's session and
//! runs `booking_admin.fan_out_reminders()`, the call the delivery worker makes with its own
//! clock, which the test cluster fixes at 2026-03-01 00:00+01 (so it hands off only what falls
//! due by then, which the worker test below uses). The tests of this file run one at a time:
//! one's hand-off at a later time would hand off another's reminders early.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use postgres::types::Json;
use postgres::Client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{connect, crash_delivery_mid_way, durable_connection, salon, Caller, PostgRest, RpcError, Salon};
use crate::receiver::{smtp_sink, Answer, Receiver, Request};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A salon whose customer has a phone and an address, with an SMS endpoint at a fake provider
/// (Twilio-style) and an email endpoint, both for reminders only.
struct Shop {
    s: Salon,
    phone: String,
    email: String,
    sms: Uuid,
    secret: String,
    provider: Receiver,
}

fn random_phone() -> String {
    format!("+4179{:07}", Uuid::new_v4().as_u128() % 10_000_000)
}

fn shop(c: &mut Client) -> Shop {
    let s = salon(c, 1);
    let (phone, email) = (random_phone(), format!("r-{}@example.test", s.customer.simple()));
    // Written as people write it: stored in E.164.
    let spaced = format!("{} {} {}", &phone[..3], &phone[3..5], &phone[5..]);
    c.execute("UPDATE booking.customers SET phone = $2, email = $3 WHERE id = $1", &[&s.customer, &spaced, &email])
        .unwrap();
    let provider = Receiver::start(vec![], Answer::Accepted);
    let r: Json<Value> = c
        .query_one(
            "SELECT booking_admin.create_endpoint($1, '{booking.reminder}', $2, 'sms',
                 '{\"provider\": \"twilio\", \"from\": \"+41 44 668 18 00\", \"username\": \"AC-it\", \"password\": \"pw-it\"}')",
            &[&provider.url, &s.tenant],
        )
        .unwrap()
        .get(0);
    c.execute("SELECT booking_admin.create_endpoint(NULL, '{booking.reminder}', $1, 'email')", &[&s.tenant]).unwrap();
    smtp_sink();
    Shop {
        sms: r.0["id"].as_str().unwrap().parse().unwrap(),
        secret: r.0["secret"].as_str().unwrap().to_string(),
        s,
        phone,
        email,
        provider,
    }
}

/// A rule of the shop's tenant (set as an operator, through the owners' RPC).
fn rule(c: &mut Client, s: &Salon, rule: Value) -> Uuid {
    let r: Json<Value> =
        c.query_one("SELECT booking.set_reminder_rule($1, $2)", &[&s.tenant, &Json(rule)]).unwrap().get(0);
    r.0["id"].as_str().unwrap().parse().unwrap()
}

/// The delivery worker's hand-off, run at `at` on the extension's clock.
fn hand_off_at(c: &mut Client, at: &str) {
    c.batch_execute(&format!("SET booking_engine.now = '{at}'; SELECT booking_admin.fan_out_reminders();")).unwrap();
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
}

/// The tenant's reminders as (rule name, local start, status, reason), by start and due time.
fn reminders(c: &mut Client, s: &Salon) -> Vec<(String, String, String, Option<String>)> {
    c.query(
        "SELECT u.name, to_char(r.starts_at AT TIME ZONE 'Europe/Zurich', 'YYYY-MM-DD HH24:MI'), r.status, r.reason
         FROM booking.reminders r JOIN booking.reminder_rules u ON u.tenant_id = r.tenant_id AND u.id = r.rule_id
         WHERE r.tenant_id = $1 ORDER BY r.starts_at, r.due_at",
        &[&s.tenant],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn row(name: &str, starts: &str, status: &str, reason: Option<&str>) -> (String, String, String, Option<String>) {
    (name.into(), starts.into(), status.into(), reason.map(str::to_string))
}

/// The SMS messages the provider received, as their form fields, once there are `n`.
fn await_sms(provider: &Receiver, n: usize) -> Vec<HashMap<String, String>> {
    provider.await_requests(n).iter().map(form).collect()
}

fn form(r: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(r.body.as_bytes()).into_owned().collect()
}

/// Deliveries queued for the tenant so far (whatever became of them).
fn queued(c: &mut Client, s: &Salon) -> i64 {
    c.query_one("SELECT count(*) FROM booking_admin.deliveries WHERE tenant_id = $1", &[&s.tenant]).unwrap().get(0)
}

/// The shop's appointment at `starts` (local Zurich time).
fn appointment(c: &mut Client, s: &Salon, starts: &str) -> Uuid {
    c.query_one(
        "SELECT id FROM booking.appointments WHERE tenant_id = $1 AND starts_at = ($2::text::timestamp AT TIME ZONE 'Europe/Zurich')",
        &[&s.tenant, &starts],
    )
    .unwrap()
    .get(0)
}

/// Books at the extension's clock `now`.
fn book_at(c: &mut Client, s: &Salon, now: &str, key: &str, starts: &str, status: &str) -> Value {
    c.batch_execute(&format!("SET booking_engine.now = '{now}'")).unwrap();
    let r: Value = c
        .query_one(
            "SELECT booking.create_booking_idempotent($1, jsonb_build_object('customer_id', $2::uuid, 'staff_id', $3::uuid,
                 'service_id', $4::uuid, 'starts_at', $5::text, 'status', $6::text))",
            &[&key, &s.customer, &s.staff[0], &s.service, &starts, &status],
        )
        .unwrap()
        .get(0);
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
    assert_eq!(r["success"], true, "{r}");
    r
}

/// A Standard Webhooks signature of an SMS callback with the endpoint's secret, as a provider's
/// relay sends it: (webhook-id, webhook-timestamp, body, webhook-signature).
fn signed(secret: &str, body: Value) -> (String, String, String, String) {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let (id, ts, body) =
        (format!("in_{}", Uuid::new_v4().simple()), chrono::Utc::now().timestamp().to_string(), body.to_string());
    let tag =
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), format!("{id}.{ts}.{body}").as_bytes());
    let sig = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()));
    (id, ts, body, sig)
}

/// The provider's callback to an SMS endpoint, signed with `secret`, over PostgREST as an
/// anonymous caller (the signature is the check).
fn callback(rest: &mut PostgRest, endpoint: Uuid, secret: &str, body: Value) -> Result<Value, RpcError> {
    let (id, ts, body, sig) = signed(secret, body);
    rest.rpc(
        &Caller::Anon,
        "sms_inbound",
        &[
            ("p_endpoint_id", "uuid", json!(endpoint.to_string())),
            ("p_webhook_id", "text", json!(id)),
            ("p_timestamp", "text", json!(ts)),
            ("p_body", "text", json!(body)),
            ("p_signature", "text", json!(sig)),
        ],
    )
}

fn cleanup(c: &mut Client, s: &Salon) {
    c.execute("DELETE FROM booking.reminder_rules WHERE tenant_id = $1", &[&s.tenant]).unwrap();
}

#[test]
fn a_booking_gets_its_24_hour_and_2_hour_reminders_at_the_right_local_times() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    rule(&mut c, s, json!({"name": "day before", "offset_minutes": 1440, "channels": ["sms", "email", "webhook"]}));
    // The two-hour reminder has a text of its own; the day before, the default one.
    let soon = json!({"subject": "Soon", "body_text": "See you at {{time_local}}, {{customer_name}}: in {{reminder_offset}}."});
    rule(&mut c, s, json!({"name": "two hours", "offset_minutes": 120, "channels": ["sms"], "template": soon}));
    book_at(&mut c, s, "2026-03-01 00:00+01", "r-1", "2026-03-03T10:00:00+01:00", "confirmed");
    let armed = vec![
        row("day before", "2026-03-03 10:00", "pending", None),
        row("two hours", "2026-03-03 10:00", "pending", None),
    ];
    assert_eq!(reminders(&mut c, s), armed);
    // A minute early, nothing; at 10:00 on Monday (Zurich), the day-before reminder.
    hand_off_at(&mut c, "2026-03-02 09:59+01");
    assert_eq!((reminders(&mut c, s), queued(&mut c, s)), (armed, 0));
    hand_off_at(&mut c, "2026-03-02 10:00+01");
    let sms = await_sms(&shop.provider, 1);
    assert_eq!(sms[0]["To"], shop.phone);
    assert_eq!(sms[0]["From"], "+41446681800");
    assert!(sms[0]["Body"].contains("Tuesday 03 March 2026, 10:00 (Europe/Zurich)"), "{:?}", sms[0]);
    let auth = &shop.provider.requests()[0].headers["authorization"];
    assert_eq!(auth, &format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC-it:pw-it")));
    let mail = smtp_sink().await_mail(&shop.email);
    assert!(mail.data.replace("=\r\n", "").contains("Tuesday 03 March 2026, 10:00"), "{}", mail.data);
    let events: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.events WHERE tenant_id = $1 AND event_type = 'booking.reminder'",
            &[&s.tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(events, 1, "the webhook channel is an event");
    // At 07:59 on Tuesday, nothing more; at 08:00 the two-hour reminder, by SMS only.
    hand_off_at(&mut c, "2026-03-03 07:59+01");
    assert_eq!(queued(&mut c, s), 2);
    hand_off_at(&mut c, "2026-03-03 08:00+01");
    let sms = await_sms(&shop.provider, 2);
    assert!(
        sms[1]["Body"].starts_with("See you at 10:00, ") && sms[1]["Body"].ends_with(": in 2 hours."),
        "{:?}",
        sms[1]
    );
    assert_eq!(
        reminders(&mut c, s),
        vec![row("day before", "2026-03-03 10:00", "sent", None), row("two hours", "2026-03-03 10:00", "sent", None)]
    );
    // Each went once, however often the hand-off runs.
    hand_off_at(&mut c, "2026-03-03 09:00+01");
    assert_eq!(queued(&mut c, s), 3);
    assert_eq!(smtp_sink().mails_to(&shop.email).len(), 1);
    // The provider's delivery receipt reaches the message it names (Twilio's fields, signed),
    // once the worker has recorded the provider's id for it.
    let start = Instant::now();
    while c
        .query_one(
            "SELECT count(*) FROM booking_admin.deliveries WHERE endpoint_id = $1 AND provider_message_id = 'SM1'",
            &[&shop.sms],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the provider's id was never recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = PostgRest::connect();
    let receipt =
        callback(&mut rest, shop.sms, &shop.secret, json!({"MessageSid": "SM1", "MessageStatus": "delivered"}))
            .unwrap();
    assert_eq!(receipt["matched"], true, "{receipt}");
    let status: Option<String> = c
        .query_one("SELECT receipt_status FROM booking_admin.deliveries WHERE endpoint_id = $1 AND provider_message_id = 'SM1'", &[&shop.sms])
        .unwrap()
        .get(0);
    assert_eq!(status.as_deref(), Some("delivered"));
    cleanup(&mut c, s);
}

#[test]
fn a_reschedule_moves_the_reminders_and_a_cancel_stops_them() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    rule(&mut c, s, json!({"name": "day before", "offset_minutes": 1440, "channels": ["sms"]}));
    rule(&mut c, s, json!({"name": "two hours", "offset_minutes": 120, "channels": ["sms"]}));
    book_at(&mut c, s, "2026-03-01 00:00+01", "m-1", "2026-03-04T10:00:00+01:00", "confirmed");
    let id = appointment(&mut c, s, "2026-03-04 10:00");
    c.query_one("SELECT booking.reschedule_appointment($1, '2026-03-05 15:00+01')", &[&id]).unwrap();
    // At the old time nothing goes out; at the new one it does.
    hand_off_at(&mut c, "2026-03-03 10:00+01");
    assert_eq!(queued(&mut c, s), 0, "the old start's reminder is not sent");
    hand_off_at(&mut c, "2026-03-04 15:00+01");
    let sms = await_sms(&shop.provider, 1);
    assert!(sms[0]["Body"].contains("Thursday 05 March 2026, 15:00"), "{:?}", sms[0]);
    assert_eq!(
        reminders(&mut c, s),
        vec![
            row("day before", "2026-03-04 10:00", "dropped", Some("rescheduled")),
            row("two hours", "2026-03-04 10:00", "dropped", Some("rescheduled")),
            row("day before", "2026-03-05 15:00", "sent", None),
            row("two hours", "2026-03-05 15:00", "pending", None),
        ]
    );
    // Cancelled: its pending reminder is dropped, and nothing more goes out.
    c.query_one("SELECT booking.cancel_appointment($1, 'ill')", &[&id]).unwrap();
    hand_off_at(&mut c, "2026-03-05 13:00+01");
    assert_eq!(queued(&mut c, s), 1);
    assert_eq!(reminders(&mut c, s)[3], row("two hours", "2026-03-05 15:00", "dropped", Some("cancelled")));
    assert_eq!(shop.provider.requests().len(), 1);
    cleanup(&mut c, s);
}

/// Quiet hours 21:00-08:00 on the customer's clock, on the nights the clocks change in 2027: a
/// reminder falling due in the evening (21:00 in March, 23:00 in October) goes out at 08:00 on
/// the clock the next morning, which is 06:00 UTC after the spring change and 07:00 UTC after
/// the autumn one.
#[test]
fn quiet_hours_hold_across_both_changes_of_the_clocks() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    rule(
        &mut c,
        s,
        json!({"name": "evening before", "offset_minutes": 720, "channels": ["sms"], "quiet_start": "21:00", "quiet_end": "08:00"}),
    );
    // Sunday appointments (directly: the staff's week has no Sundays), due twelve hours before:
    // 28 March 2027 10:00 CEST and 31 October 2027 10:00 CET.
    c.batch_execute("SET booking_engine.now = '2027-03-01 00:00+01'").unwrap();
    for starts in ["2027-03-28 10:00+02", "2027-10-31 10:00+01"] {
        c.execute(
            "INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status)
             VALUES ($1, $2, $3, $4, $5::text::timestamptz, 'confirmed')",
            &[&s.tenant, &s.staff[0], &s.service, &s.customer, &starts],
        )
        .unwrap();
    }
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
    let utc = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT to_char(send_at AT TIME ZONE 'UTC', 'MM-DD HH24:MI') FROM booking.reminders WHERE tenant_id = $1 ORDER BY starts_at",
            &[&s.tenant],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(utc(&mut c), ["03-27 20:00", "10-30 21:00"], "21:00 CET and 23:00 CEST");
    for (due, before, morning, n) in [
        ("2027-03-27 21:00+01", "2027-03-28 07:59+02", "2027-03-28 08:00+02", 1),
        ("2027-10-30 23:00+02", "2027-10-31 07:59+01", "2027-10-31 08:00+01", 2),
    ] {
        hand_off_at(&mut c, due);
        assert_eq!(queued(&mut c, s), n - 1, "held at {due}");
        hand_off_at(&mut c, before);
        assert_eq!(queued(&mut c, s), n - 1, "still held at {before}");
        hand_off_at(&mut c, morning);
        await_sms(&shop.provider, n as usize);
    }
    assert_eq!(utc(&mut c), ["03-28 06:00", "10-31 07:00"], "08:00 on the clock, both mornings");
    cleanup(&mut c, s);
}

#[test]
fn a_signed_link_in_the_sms_confirms_once_and_refuses_its_replay() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    c.query_one(
        "SELECT booking.set_tenant_message_template($1, 'booking.reminder', 'Reminder',
             'See you {{starts_at_local}}. Confirm: {{confirm_url}} Cancel: {{cancel_url}}')",
        &[&s.tenant],
    )
    .unwrap();
    c.query_one(
        "SELECT booking.set_messaging_settings($1, '{\"link_base_url\": \"https://salon.example/a\"}')",
        &[&s.tenant],
    )
    .unwrap();
    rule(&mut c, s, json!({"name": "day before", "offset_minutes": 1440, "channels": ["sms"]}));
    book_at(&mut c, s, "2026-03-01 00:00+01", "l-1", "2026-03-06T10:00:00+01:00", "pending");
    hand_off_at(&mut c, "2026-03-05 10:00+01");
    let body = await_sms(&shop.provider, 1).remove(0)["Body"].clone();
    let token = |action: &str| -> String {
        let at = body.find(&format!("action={action}&token=")).unwrap_or_else(|| panic!("{action} link in {body}"));
        body[at..].split_whitespace().next().unwrap().rsplit('=').next().unwrap().to_string()
    };
    let (confirm, cancel) = (token("confirm"), token("cancel"));
    let mut rest = PostgRest::connect();
    // A client address of its own: the links' rate limit counts per address, and the other
    // tests (the fuzzing of every function among them) present links from the default one.
    rest.headers = json!({"user-agent": "it-postgrest", "x-forwarded-for": "198.51.100.25"});
    let args = |t: &str| vec![("p_token", "text", json!(t))];
    let page = rest.rpc(&Caller::Anon, "describe_appointment_link", &args(&confirm)).unwrap();
    assert_eq!((page["action"].as_str(), page["appointment"]["status"].as_str()), (Some("confirm"), Some("pending")));
    let done = rest.rpc(&Caller::Anon, "confirm_appointment_by_link", &args(&confirm)).unwrap();
    assert_eq!((done["success"].as_bool(), done["changed"].as_bool()), (Some(true), Some(true)), "{done}");
    let replay = rest.rpc(&Caller::Anon, "confirm_appointment_by_link", &args(&confirm)).unwrap_err();
    assert_eq!(replay.code, "PT409");
    let status = |c: &mut Client| -> String {
        c.query_one("SELECT status FROM booking.appointments WHERE tenant_id = $1", &[&s.tenant]).unwrap().get(0)
    };
    assert_eq!(status(&mut c), "confirmed");
    // The cancel link does not confirm; an altered one is refused and changes nothing; the cancel
    // link itself cancels.
    assert_eq!(rest.rpc(&Caller::Anon, "confirm_appointment_by_link", &args(&cancel)).unwrap_err().code, "PT403");
    let mut altered = cancel.clone().into_bytes();
    altered[40] = if altered[40] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(rest.rpc(&Caller::Anon, "cancel_appointment_by_link", &args(&altered)).unwrap_err().code, "PT403");
    assert_eq!(status(&mut c), "confirmed");
    let gone = rest.rpc(&Caller::Anon, "cancel_appointment_by_link", &args(&cancel)).unwrap();
    assert_eq!(gone["appointment"]["status"], "cancelled", "{gone}");
    let cancelled: i64 = c
        .query_one(
            "SELECT count(*) FROM booking.events WHERE tenant_id = $1 AND event_type = 'booking.cancelled'",
            &[&s.tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(cancelled, 1, "announced like any cancellation");
    cleanup(&mut c, s);
}

#[test]
fn stop_stops_the_sms_of_that_tenant_and_start_allows_them_again() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    rule(&mut c, s, json!({"name": "day before", "offset_minutes": 1440, "channels": ["sms", "email"]}));
    for (key, day) in [("s-1", "09"), ("s-2", "10"), ("s-3", "11")] {
        book_at(&mut c, s, "2026-03-01 00:00+01", key, &format!("2026-03-{day}T10:00:00+01:00"), "confirmed");
    }
    hand_off_at(&mut c, "2026-03-08 10:00+01");
    await_sms(&shop.provider, 1);
    // The customer answers STOP: the provider's callback, signed, over PostgREST.
    let mut rest = PostgRest::connect();
    let stop = callback(&mut rest, shop.sms, &shop.secret, json!({"From": shop.phone, "Body": "STOP"})).unwrap();
    assert_eq!(
        (stop["keyword"].as_str(), stop["tenant_id"].as_str()),
        (Some("stop"), Some(s.tenant.to_string().as_str()))
    );
    // A forged START (another secret) is refused and changes nothing.
    let forged = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(
        callback(&mut rest, shop.sms, forged, json!({"From": shop.phone, "Body": "START"})).unwrap_err().code,
        "PT401"
    );
    hand_off_at(&mut c, "2026-03-09 10:00+01");
    let channels: Json<Value> = c
        .query_one(
            "SELECT channels FROM booking.reminders WHERE tenant_id = $1 AND starts_at = '2026-03-10 10:00+01'",
            &[&s.tenant],
        )
        .unwrap()
        .get(0);
    assert_eq!(channels.0, json!({"sms": "opted_out", "email": "queued"}));
    smtp_sink().await_mail(&shop.email);
    // START: SMS again.
    let start =
        callback(&mut rest, shop.sms, &shop.secret, json!({"type": "inbound", "from": shop.phone, "text": "start"}))
            .unwrap();
    assert_eq!(start["keyword"], "start");
    hand_off_at(&mut c, "2026-03-10 10:00+01");
    let sms = await_sms(&shop.provider, 2);
    assert!(sms[1]["Body"].contains("11 March"), "{:?}", sms[1]);
    assert_eq!(shop.provider.requests().len(), 2, "none while opted out");
    cleanup(&mut c, s);
}

/// A booking made inside a rule's window with late_booking "send" is reminded at once, by the
/// running delivery worker itself (its clock is the cluster's, 2026-03-01 00:00+01).
#[test]
fn the_worker_hands_off_a_late_booking_at_once() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    rule(&mut c, s, json!({"name": "two days", "offset_minutes": 2880, "channels": ["sms"], "late_booking": "send"}));
    book_at(&mut c, s, "2026-03-01 00:00+01", "w-1", "2026-03-02T10:00:00+01:00", "confirmed");
    let sms = await_sms(&shop.provider, 1);
    assert!(sms[0]["Body"].contains("Monday 02 March 2026, 10:00"), "{:?}", sms[0]);
    assert_eq!(reminders(&mut c, s), vec![row("two days", "2026-03-02 10:00", "sent", Some("booked_late"))]);
    cleanup(&mut c, s);
}

#[test]
fn owners_and_managers_set_reminders_over_postgrest_and_others_are_refused() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    let (owner, front_desk, stranger) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    c.execute(
        "INSERT INTO booking.tenant_members (tenant_id, user_id, role) VALUES ($1, $2, 'owner'), ($1, $3, 'receptionist')",
        &[&s.tenant, &owner, &front_desk],
    )
    .unwrap();
    let mut rest = PostgRest::connect();
    let tenant = ("p_tenant_id", "uuid", json!(s.tenant.to_string()));
    let set = |rule: Value| vec![tenant.clone(), ("p_rule", "jsonb", rule)];
    let r = rest
        .rpc(
            &Caller::User(owner),
            "set_reminder_rule",
            &set(json!({"offset_minutes": 1440, "channels": ["sms", "webhook"]})),
        )
        .unwrap();
    assert_eq!((r["offset_minutes"].as_i64(), r["late_booking"].as_str()), (Some(1440), Some("skip")), "{r}");
    let settings = rest
        .rpc(
            &Caller::User(owner),
            "set_messaging_settings",
            &[
                tenant.clone(),
                (
                    "p_settings",
                    "jsonb",
                    json!({"link_base_url": "https://salon.example/r", "agenda_cron": "0 7 * * 1-5"}),
                ),
            ],
        )
        .unwrap();
    assert_eq!(settings["agenda_cron"], "0 7 * * 1-5");
    let read = rest.rpc(&Caller::User(owner), "get_reminder_settings", std::slice::from_ref(&tenant)).unwrap();
    assert_eq!(read["rules"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        rest.rpc(&Caller::User(front_desk), "set_reminder_rule", &set(json!({"offset_minutes": 60}))).unwrap_err().code,
        "42501"
    );
    assert_eq!(
        rest.rpc(&Caller::User(stranger), "set_reminder_rule", &set(json!({"offset_minutes": 60}))).unwrap_err().code,
        "PT404"
    );
    assert_eq!(
        rest.rpc(&Caller::Anon, "get_reminder_settings", std::slice::from_ref(&tenant)).unwrap_err().code,
        "PT404"
    );
    assert_eq!(
        rest.rpc(&Caller::User(owner), "set_reminder_rule", &set(json!({"offset_minutes": 60, "channels": "sms"})))
            .unwrap_err()
            .code,
        "22023"
    );
    // The front desk follows an appointment's reminders.
    book_at(&mut c, s, "2026-03-01 00:00+01", "p-1", "2026-03-12T10:00:00+01:00", "confirmed");
    let id = appointment(&mut c, s, "2026-03-12 10:00");
    let list = rest
        .rpc(
            &Caller::User(front_desk),
            "get_appointment_reminders",
            &[tenant.clone(), ("p_appointment_id", "uuid", json!(id.to_string()))],
        )
        .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let rule_id = r["id"].as_str().unwrap().to_string();
    let removed = rest
        .rpc(&Caller::User(owner), "delete_reminder_rule", &[tenant.clone(), ("p_rule_id", "uuid", json!(rule_id))])
        .unwrap();
    assert_eq!(removed, json!(true));
    cleanup(&mut c, s);
}

#[test]
fn each_staff_member_gets_the_agenda_at_seven_on_the_tenants_clock() {
    let _one = one_at_a_time();
    let mut c = connect();
    let shop = shop(&mut c);
    let s = &shop.s;
    let anna = format!("anna-{}@salon.test", s.staff[0].simple());
    c.execute("UPDATE booking.staff SET email = $2 WHERE id = $1", &[&s.staff[0], &anna]).unwrap();
    book_at(&mut c, s, "2026-03-01 00:00+01", "a-1", "2026-03-03T10:00:00+01:00", "confirmed");
    book_at(&mut c, s, "2026-03-01 00:00+01", "a-2", "2026-03-03T14:00:00+01:00", "pending");
    // Set on Monday evening: the next agenda is Tuesday's.
    c.batch_execute("SET booking_engine.now = '2026-03-02 18:00+01'").unwrap();
    c.query_one("SELECT booking.set_messaging_settings($1, '{\"agenda_cron\": \"0 7 * * 1-5\"}')", &[&s.tenant])
        .unwrap();
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
    let run_at = |c: &mut Client, at: &str| {
        c.batch_execute(&format!(
            "SET booking_engine.now = '{at}'; SELECT booking_admin.run_maintenance('staff-agenda', 'scheduler');
             SET booking_engine.now = '2026-03-01 00:00+01';"
        ))
        .unwrap();
    };
    run_at(&mut c, "2026-03-03 06:59+01");
    assert!(smtp_sink().mails_to(&anna).is_empty());
    run_at(&mut c, "2026-03-03 07:00+01");
    let mail = smtp_sink().await_mail(&anna).data.replace("=\r\n", "");
    assert!(
        mail.contains("10:00-11:00  Cut  Client") && mail.contains("14:00-15:00  Cut  Client  (pending)"),
        "{mail}"
    );
    run_at(&mut c, "2026-03-03 07:05+01");
    assert_eq!(smtp_sink().mails_to(&anna).len(), 1, "once a day");
    c.query_one("SELECT booking.set_messaging_settings($1, '{\"agenda_cron\": null}')", &[&s.tenant]).unwrap();
}

/// `kill -9` of the sending worker (the delivery worker, which also hands reminders off) in the
/// middle of 200 reminders, then an immediate shutdown: every reminder is handed off exactly
/// once, every SMS arrives, and one that arrives twice is one the ledger records as
/// interrupted (the at-least-once of every delivery).
#[test]
#[ignore = "crashes and stops the server; run alone by scripts/test.sh"]
fn a_killed_sending_worker_loses_no_reminder_and_sends_none_twice_beyond_the_ledger() {
    const N: i64 = 200;
    let _one = one_at_a_time();
    let mut c = durable_connection();
    let s = salon(&mut c, 1);
    let provider = Receiver::start(vec![], Answer::Delay(20));
    c.execute("UPDATE booking.customers SET phone = $2 WHERE id = $1", &[&s.customer, &random_phone()]).unwrap();
    c.execute(
        "SELECT booking_admin.create_endpoint($1, '{booking.reminder}', $2, 'sms',
             '{\"provider\": \"json\", \"from\": \"Salon\", \"token\": \"t\", \"max_in_flight\": 8}')",
        &[&provider.url, &s.tenant],
    )
    .unwrap();
    rule(
        &mut c,
        &s,
        json!({"name": "long before", "offset_minutes": 86400, "channels": ["sms"], "late_booking": "send"}),
    );
    // N appointments in the next days (directly, two hours apart): each booked inside its
    // rule's 60 days, so each is due now on the worker's clock.
    c.execute(
        "INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status)
         SELECT $1, $2, $3, $4, '2026-03-01 02:00+01'::timestamptz + i * interval '2 hours', 'confirmed'
         FROM generate_series(0, $5::int8 - 1) i",
        &[&s.tenant, &s.staff[0], &s.service, &s.customer, &N],
    )
    .unwrap();
    let count = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[&s.tenant]).unwrap().get(0) };
    let delivered = |c: &mut Client| {
        count(c, "SELECT count(*) FROM booking_admin.deliveries WHERE tenant_id = $1 AND status = 'delivered'")
    };
    let mut c = crash_delivery_mid_way(c, N, 40, &delivered);
    assert_eq!(count(&mut c, "SELECT count(*) FROM booking.reminders WHERE tenant_id = $1 AND status = 'sent'"), N);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM booking_admin.deliveries WHERE tenant_id = $1"),
        N,
        "handed off once each"
    );
    let received: HashMap<String, usize> = provider.requests().iter().fold(HashMap::new(), |mut m, r| {
        let reference = serde_json::from_str::<Value>(&r.body).unwrap()["reference"].as_str().unwrap().to_string();
        *m.entry(reference).or_default() += 1;
        m
    });
    assert_eq!(received.len() as i64, N, "every reminder arrived");
    let interrupted: HashMap<String, i64> = c
        .query(
            "SELECT d.message_id, count(*) FILTER (WHERE a.outcome = 'interrupted') FROM booking_admin.deliveries d
             JOIN booking_admin.delivery_attempts a ON a.delivery_id = d.id WHERE d.tenant_id = $1 GROUP BY d.message_id",
            &[&s.tenant],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (message, times) in &received {
        let allowed = 1 + interrupted.get(message).copied().unwrap_or(0) as usize;
        assert!(*times <= allowed, "{message} arrived {times} times, the ledger allows {allowed}");
    }
    cleanup(&mut c, &s);
}
