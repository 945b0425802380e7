//! Tracing over real connections: a local OTLP/HTTP receiver (tests/integration/otlp_receiver.py)
//! decodes what the exporter sends with OpenTelemetry's own protocol definitions (the
//! `opentelemetry-proto` package, never the extension's encoder), and the tests follow a trace
//! from a PostgREST request's `traceparent` through the booking, its event and its delivery to
//! the header the webhook receiver gets; a job's retries as spans of one trace; a dead collector
//! that loses spans (counted) while bookings go on.
//!
//! `booking_engine.otlp_endpoint` is a server-wide setting: these tests change it, so they run
//! alone (`#[ignore]`, run by scripts/test.sh after the others, one at a time).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{book, connect, salon, Caller, PostgRest, RpcError};
use crate::receiver::{Answer, Receiver};

/// The receiver process and the file its decoded spans go to, one JSON object a line.
struct Collector {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Collector {
    fn start(extra: &[&str]) -> Collector {
        let python = std::env::var("BOOKING_ENGINE_TEST_PYTHON")
            .expect("BOOKING_ENGINE_TEST_PYTHON (set by scripts/test.sh: python with opentelemetry-proto)");
        let dir = PathBuf::from(std::env::var("BOOKING_ENGINE_TEST_ARTEFACTS").unwrap_or_else(|_| "/tmp".into()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("spans-{}.jsonl", Uuid::new_v4().simple()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Collector { child, out, port }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The spans of `trace_id` once `done` holds of them (up to 30 s).
    fn await_trace(&self, trace_id: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let spans: Vec<Value> = self.lines().into_iter().filter(|s| s["trace_id"] == trace_id).collect();
            if done(&spans) {
                return spans;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{what}: {spans:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points the exporter at `url` (None: tracing off) and waits until it took the setting.
fn export_to(c: &mut Client, url: Option<&str>) {
    match url {
        Some(u) => c.batch_execute(&format!("ALTER SYSTEM SET booking_engine.otlp_endpoint = '{u}'")).unwrap(),
        None => c.batch_execute("ALTER SYSTEM RESET booking_engine.otlp_endpoint").unwrap(),
    }
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let start = Instant::now();
    loop {
        let status: postgres::types::Json<Value> =
            c.query_one("SELECT booking_admin.tracing_status()", &[]).unwrap().get(0);
        let want = url.map(|u| format!("{}/v1/traces", u.trim_end_matches('/')));
        if status.0["active"] == url.is_some() && status.0["endpoint"].as_str().map(str::to_string) == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the exporter did not take {url:?}: {}", status.0);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Turns tracing off again when a test ends, however it ends.
struct Off;

impl Drop for Off {
    fn drop(&mut self) {
        export_to(&mut connect(), None);
    }
}

/// POST /rpc/create_booking_idempotent as the signed-in customer `user`.
fn rest_book(rest: &mut PostgRest, user: Uuid, key: &str, booking: Value) -> Result<Value, RpcError> {
    rest.rpc(
        &Caller::User(user),
        "create_booking_idempotent",
        &[("p_idempotency_key", "text", json!(key)), ("p_booking", "jsonb", booking)],
    )
}

fn hex(n: usize) -> String {
    Uuid::new_v4().simple().to_string()[..n].to_string()
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

// OTLP's SpanKind and Status.code numbers.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;
const STATUS_ERROR: i64 = 2;

#[test]
#[ignore = "changes server settings; run alone by scripts/test.sh"]
fn a_postgrest_requests_trace_reaches_the_webhook_receiver_through_booking_event_and_delivery() {
    let collector = Collector::start(&[]);
    let mut c = connect();
    let off = Off;
    export_to(&mut c, Some(&format!("http://127.0.0.1:{}", collector.port)));

    let s = salon(&mut c, 1);
    let user = Uuid::new_v4();
    c.execute("UPDATE booking.customers SET user_id = $1 WHERE id = $2", &[&user, &s.customer]).unwrap();
    let rx = Receiver::start(vec![], Answer::Status(200));
    let endpoint: postgres::types::Json<Value> = c
        .query_one(
            "SELECT booking_admin.create_endpoint($1, '{booking.created}', $2, 'webhook', '{}')",
            &[&rx.url, &s.tenant],
        )
        .unwrap()
        .get(0);
    let endpoint = endpoint.0["id"].as_str().unwrap().to_string();

    // The browser's trace, as PostgREST forwards its headers.
    let (trace_id, caller_span) = (hex(32), hex(16));
    let mut rest = PostgRest::connect();
    rest.headers = json!({
        "user-agent": "it-tracing",
        "traceparent": format!("00-{trace_id}-{caller_span}-01"),
        "tracestate": "congo=t61rcWkgMzE",
    });
    let booking = json!({"customer_id": s.customer, "staff_id": s.staff[0], "service_id": s.service,
                         "starts_at": "2026-03-03T10:00:00+01:00"});
    let answer = rest_book(&mut rest, user, "traced", booking).unwrap();
    assert_eq!(answer["success"], true, "{answer}");

    // The webhook carries a child of the delivery attempt's span, in the browser's trace.
    let got = rx.await_requests(1);
    let header = got[0].headers.get("traceparent").cloned().expect("the webhook carries a traceparent");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", trace_id.as_str(), "01"), "{header}");
    assert_eq!(got[0].headers.get("tracestate").map(String::as_str), Some("congo=t61rcWkgMzE"));

    let spans = collector.await_trace(&trace_id, "the booking, its event and delivery are exported", |spans| {
        spans.iter().any(|s| s["span_id"] == parts[2])
    });
    for s in &spans {
        assert_eq!(s["content_type"], "application/x-protobuf");
        assert_eq!(s["path"], "/v1/traces");
        assert_eq!(s["scope"], "booking_engine");
        assert_eq!(s["resource"]["service.name"], "booking_engine");
        assert_eq!(s["resource"]["db.system.name"], "postgresql");
        assert_eq!(s["resource"]["db.namespace"], "booking_it");
        assert_eq!(s["trace_state"], "congo=t61rcWkgMzE", "the tracestate goes along: {s}");
    }
    let ids: HashMap<&str, &Value> = spans.iter().map(|s| (s["span_id"].as_str().unwrap(), s)).collect();
    let parent_of = |s: &Value| -> Option<&Value> { ids.get(s["parent_span_id"].as_str().unwrap()).copied() };

    // The request: a server span under the caller's span, remote parent flagged.
    let create = one(&spans, "booking.create");
    assert_eq!(create["parent_span_id"], caller_span.as_str());
    assert_eq!(create["kind"], SERVER);
    assert_eq!(create["flags"].as_i64().unwrap() & 0x3ff, 0x301, "sampled, with a remote parent: {create}");
    assert_eq!(create["attributes"]["booking.outcome"], "succeeded");
    assert_eq!(create["attributes"]["booking.tenant_id"], s.tenant.to_string());
    let appointment = create["attributes"]["booking.appointment_id"].as_str().expect("the appointment").to_string();
    assert_eq!(answer["appointment"]["id"], appointment.as_str());
    // The write, the event and the audit entry are its children; the write (booking.place)
    // plans before it writes, so the engine's check is the write's child.
    for child in ["booking.write", "send booking.events", "booking.audit"] {
        let span = one(&spans, child);
        assert_eq!(span["parent_span_id"], create["span_id"], "{child} is a child of booking.create");
        assert_eq!(span["flags"].as_i64().unwrap() & 0x300, 0x100, "{child}: a local parent");
    }
    let check = one(&spans, "booking.check_slot");
    assert_eq!(check["parent_span_id"], one(&spans, "booking.write")["span_id"], "the check is the write's child");
    assert_eq!(one(&spans, "booking.check_slot")["attributes"]["booking.valid"], true);
    assert_eq!(one(&spans, "booking.write")["attributes"]["booking.appointment_id"], appointment.as_str());
    let send = one(&spans, "send booking.events");
    assert_eq!(send["kind"], PRODUCER);
    assert_eq!(send["attributes"]["messaging.destination.name"], "booking.events");
    assert_eq!(send["attributes"]["booking.event_type"], "booking.created");

    // The delivery continues the event's span, after commit, in the delivery worker (other
    // tests' endpoints for every tenant may have deliveries of this event too).
    let ours: Vec<Value> = named(&spans, "process booking.events")
        .into_iter()
        .filter(|a| a["attributes"]["booking.delivery.endpoint_id"] == endpoint.as_str())
        .cloned()
        .collect();
    let attempt = one(&ours, "process booking.events");
    assert_eq!(attempt["kind"], CONSUMER);
    assert_eq!(parent_of(attempt).map(|p| &p["name"]), Some(&json!("send booking.events")));
    assert_eq!(attempt["attributes"]["booking.delivery.outcome"], "delivered");
    assert_eq!(attempt["attributes"]["booking.delivery.attempt"], 1);
    assert_eq!(attempt["attributes"]["messaging.message.id"], got[0].headers["webhook-id"].as_str());
    // The HTTP request is the attempt's child, and its id is the webhook's parent id.
    let posts: Vec<Value> =
        named(&spans, "POST").into_iter().filter(|p| p["parent_span_id"] == attempt["span_id"]).cloned().collect();
    let post = one(&posts, "POST");
    assert_eq!(post["kind"], CLIENT);
    assert_eq!(post["parent_span_id"], attempt["span_id"]);
    assert_eq!(post["span_id"], parts[2], "the receiver continues from the request's span");
    assert_eq!(post["attributes"]["http.request.method"], "POST");
    assert_eq!(post["attributes"]["http.response.status_code"], 200);
    assert_eq!(post["attributes"]["url.full"], rx.url.as_str());
    assert_eq!(post["attributes"]["server.address"], "127.0.0.1");
    // Every span ends after it starts, and children within their parents' trace.
    for s in &spans {
        assert!(s["end"].as_u64() >= s["start"].as_u64(), "{s}");
    }

    // A refusal raised inside the request ends its span as an error with the SQLSTATE.
    let (trace_id, caller_span) = (hex(32), hex(16));
    rest.headers["traceparent"] = json!(format!("00-{trace_id}-{caller_span}-01"));
    let refused = rest_book(
        &mut rest,
        user,
        "missing",
        json!({"customer_id": s.customer, "staff_id": Uuid::new_v4(), "service_id": s.service,
               "starts_at": "2026-03-03T12:00:00+01:00"}),
    );
    assert_eq!(refused.unwrap_err().code, "PT404");
    let spans =
        collector.await_trace(&trace_id, "the refused request", |spans| !named(spans, "booking.create").is_empty());
    let create = one(&spans, "booking.create");
    assert_eq!(create["status_code"], STATUS_ERROR);
    assert_eq!(create["attributes"]["error.type"], "PT404");
    assert_eq!(create["parent_span_id"], caller_span.as_str());

    // An unsampled caller is followed, not recorded: nothing of its trace is exported, and the
    // webhook still gets its trace (unsampled) to continue.
    let unsampled = hex(32);
    let trace_id = unsampled.clone();
    rest.headers["traceparent"] = json!(format!("00-{trace_id}-{}-00", hex(16)));
    let before = rx.requests().len();
    let booking = json!({"customer_id": s.customer, "staff_id": s.staff[0], "service_id": s.service,
                         "starts_at": "2026-03-03T14:00:00+01:00"});
    let answer = rest_book(&mut rest, user, "unsampled", booking).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    let got = rx.await_requests(before + 1);
    let header = got[before].headers["traceparent"].clone();
    assert!(header.starts_with(&format!("00-{trace_id}-")) && header.ends_with("-00"), "{header}");

    // sqlcommenter and the session setting carry a direct connection's context.
    let trace_id = hex(32);
    c.batch_execute(&format!(
        "SELECT booking.get_available_slots('{}', '2026-03-03', '2026-03-03') /*action='slots',traceparent='00-{trace_id}-{}-01'*/",
        s.service,
        hex(16)
    ))
    .unwrap();
    let spans =
        collector.await_trace(&trace_id, "the commented query's slots", |s| !named(s, "booking.slots").is_empty());
    let slots = one(&spans, "booking.slots");
    assert_eq!(slots["attributes"]["booking.days"], 1);
    assert_eq!(slots["attributes"]["booking.slots.source"], "engine");
    assert!(slots["attributes"]["booking.slots_returned"].as_i64().unwrap() > 0);
    let trace_id = hex(32);
    c.batch_execute(&format!("SET booking_engine.traceparent = '00-{trace_id}-{}-01'", hex(16))).unwrap();
    assert_eq!(book(&mut c, &s, "from-a-setting", "2026-03-04T10:00:00+01:00")["success"], true);
    c.batch_execute("RESET booking_engine.traceparent").unwrap();
    collector.await_trace(&trace_id, "the session's booking", |s| !named(s, "booking.create").is_empty());
    // Spans are exported in order: by now the unsampled request's would have arrived.
    assert!(collector.lines().iter().all(|l| l["trace_id"] != unsampled.as_str()), "nothing of an unsampled trace");
    drop(off);
}

#[test]
#[ignore = "changes server settings; run alone by scripts/test.sh"]
fn a_jobs_retries_are_spans_of_the_trace_it_was_enqueued_in() {
    let collector = Collector::start(&[]);
    let mut c = connect();
    let off = Off;
    export_to(&mut c, Some(&format!("http://127.0.0.1:{}", collector.port)));
    // Fails its first two attempts.
    let handler = format!("it_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!(
        "CREATE SEQUENCE public.{handler}_tries;
         CREATE FUNCTION public.{handler}(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $body$
         DECLARE v int;
         BEGIN
             -- A sequence: a failed attempt's writes roll back, its nextval does not.
             v := nextval('public.{handler}_tries');
             IF v < 3 OR p ? 'always' THEN RAISE EXCEPTION 'try % fails', v USING ERRCODE = 'P0001'; END IF;
             RETURN jsonb_build_object('tries', v);
         END $body$;
         INSERT INTO booking_admin.job_handlers (handler, kind, function) VALUES ('{handler}', 'function', 'public.{handler}');"
    ))
    .unwrap();
    let (trace_id, caller_span) = (hex(32), hex(16));
    c.batch_execute(&format!("SET booking_engine.traceparent = '00-{trace_id}-{caller_span}-01'")).unwrap();
    let job: Uuid = c
        .query_one(
            "SELECT booking_admin.enqueue_job('traced', $1, '{}', p_retry_delay_ms => 200, p_jitter => false)",
            &[&handler],
        )
        .unwrap()
        .get(0);
    let carried: Option<String> =
        c.query_one("SELECT traceparent FROM booking_admin.jobs WHERE id = $1", &[&job]).unwrap().get(0);
    assert_eq!(carried, Some(format!("00-{trace_id}-{caller_span}-01")), "the job carries its enqueuer's trace");
    let attempts = collector
        .await_trace(&trace_id, "three attempts", |spans| named(spans, &format!("process {handler}")).len() == 3);
    let mut attempts: Vec<&Value> = attempts.iter().collect();
    attempts.sort_by_key(|s| s["attributes"]["booking.job.attempt"].as_i64());
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["kind"], CONSUMER);
        assert_eq!(a["parent_span_id"], caller_span.as_str(), "every attempt continues the enqueuer's span");
        assert_eq!(a["attributes"]["booking.job.id"], job.to_string());
        assert_eq!(a["attributes"]["booking.job.handler"], handler.as_str());
        assert_eq!(a["attributes"]["booking.job.attempt"], i as i64 + 1);
        assert_eq!(a["attributes"]["messaging.destination.name"], handler.as_str());
    }
    for a in &attempts[..2] {
        assert_eq!(a["attributes"]["booking.job.outcome"], "failed");
        assert_eq!(a["status_code"], STATUS_ERROR);
        assert!(a["status_message"].as_str().unwrap().contains("fails"), "{a}");
        assert_eq!(a["attributes"]["error.type"], "P0001", "the handler's SQLSTATE");
        let delay = a["attributes"]["booking.job.retry_delay_ms"].as_i64().expect("the retry delay");
        assert!((0..=400).contains(&delay), "the 200 ms backoff, not jittered: {delay}");
    }
    assert_eq!(
        attempts[1]["attributes"]["booking.job.retry_delay_ms"].as_i64().map(|d| d > 150),
        Some(true),
        "doubled"
    );
    assert_eq!(attempts[2]["attributes"]["booking.job.outcome"], "completed");
    assert_ne!(attempts[2]["status_code"], STATUS_ERROR);

    // A job given up on is logged with its id and trace (the runner's log context).
    let dead: Uuid = c
        .query_one(
            "SELECT booking_admin.enqueue_job('doomed', $1, '{\"always\": true}', p_max_retries => 0)",
            &[&handler],
        )
        .unwrap()
        .get(0);
    let start = Instant::now();
    let log = PathBuf::from(std::env::var("BOOKING_ENGINE_TEST_PGDATA").unwrap()).join("../log");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().position(|l| l.contains(&format!("job {dead}")) && l.contains("is dead"));
        if let Some(i) = line {
            let context = text.lines().skip(i + 1).take(3).collect::<Vec<_>>().join("\n");
            assert!(
                context.contains(&format!("trace {trace_id}")),
                "the log line's context names the trace: {context}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no log line for the dead job {dead}");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.batch_execute("RESET booking_engine.traceparent").unwrap();
    drop(off);
}

#[test]
#[ignore = "changes server settings; run alone by scripts/test.sh"]
fn a_dead_collector_loses_spans_counted_and_never_fails_a_booking() {
    let mut c = connect();
    let off = Off;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    export_to(&mut c, Some(&format!("http://127.0.0.1:{port}")));
    let dropped = |c: &mut Client, reason: &str| -> f64 {
        c.query_one(
            "SELECT coalesce(sum(value), 0) FROM booking_admin.metrics()
             WHERE metric = 'booking_trace_spans_dropped_total' AND labels ->> 'reason' = $1",
            &[&reason],
        )
        .unwrap()
        .get(0)
    };
    let full_before = dropped(&mut c, "queue_full");
    let s = salon(&mut c, 1);
    for (i, hour) in [9, 11, 13, 15].into_iter().enumerate() {
        let answer = book(&mut c, &s, &format!("dead-{i}"), &format!("2026-03-05T{hour:02}:00:00+01:00"));
        assert_eq!(answer["success"], true, "{answer}");
    }
    // Slot readers' spans while the exporter is stuck retrying, and then more spans than the
    // queue holds, made faster than a retrying exporter can drain a batch (it holds one batch
    // through about 15 s of backoff): the rest are dropped at once, and the statements complete.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM generate_series(1, 200) g,
                 LATERAL booking.get_available_slots($1, '2026-03-06'::date + g % 2, '2026-03-06'::date + g % 2) s",
            &[&s.service],
        )
        .unwrap()
        .get(0);
    assert!(n > 0);
    c.batch_execute(
        "DO $$ BEGIN FOR i IN 1..6000 LOOP
             PERFORM booking_internal.trace_begin('fill');
             PERFORM booking_internal.trace_end('fill');
         END LOOP; END $$",
    )
    .unwrap();
    assert!(dropped(&mut c, "queue_full") > full_before, "the full queue's spans are counted");
    // The batches the exporter held are given up after its retries, and counted too.
    let start = Instant::now();
    while dropped(&mut c, "export_failed") == 0.0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the failed export is never counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(book(&mut c, &s, "dead-after", "2026-03-06T16:00:00+01:00")["success"], true);
    // A collector that comes back gets the spans again.
    let collector = Collector::start(&["--fail", "1"]);
    export_to(&mut c, Some(&format!("http://127.0.0.1:{}", collector.port)));
    let trace_id = hex(32);
    c.batch_execute(&format!("SET booking_engine.traceparent = '00-{trace_id}-{}-01'", hex(16))).unwrap();
    assert_eq!(book(&mut c, &s, "alive-again", "2026-03-09T10:00:00+01:00")["success"], true);
    c.batch_execute("RESET booking_engine.traceparent").unwrap();
    collector.await_trace(&trace_id, "exported after a 503 and a retry", |s| !named(s, "booking.create").is_empty());
    assert!(collector.lines().iter().any(|l| l["refused"] == true), "the first request was refused and retried");
    drop(off);
}
