//! The delivery worker: one per database that has an enabled endpoint or reminder rule, started
//! by the launcher (src/launcher) as the kind `DELIVERY`. Its main thread claims due deliveries
//! in short transactions, hands them to the sending threads (src/delivery/send.rs), and records
//! what happened. It expands new events and due reminders into deliveries first
//! (fan_out_events, fan_out_reminders), in the transaction that claims them. It sleeps on its latch (set at the commit of a transaction that wrote
//! events or queued a delivery) and on the threads' socket, with a timeout at the next due
//! retry: no polling, except on a Citus coordinator, whose events are written on the workers.
//!
//! At-least-once: a claim commits before the send starts, and a worker that stops mid-send
//! leaves its deliveries `sending`; the next worker (the launcher restarts it) sends them
//! again with the same webhook-id.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::hosts::traced_url;
use super::message::{context, email_parts, slack_body, sms_text, webhook_body, Template};
use super::policy::{breaker, next, Next, Rules, Sent};
use super::send::{Email, Finished, Outgoing, Payload, Pool, Signing};
use super::settings;
use super::signature::parse_secret;
use super::sms::{self, Auth, Provider};
use crate::clock::epoch_ms;
use crate::gucs;
use crate::launcher::kinds::{Need, WorkerKind};
use crate::launcher::{self, dbworker};
use crate::pg::bgworker::{interrupts_and_reload, report_activity, try_in_transaction, wait_latch_or_socket};
use crate::pg::catalog::extension_installed;
use crate::pg::convert::{to_pg_uuid, to_uuid};
use crate::telemetry::{self, Change, Metric, LATENCY};
use crate::trace::{self, SpanKind, TraceContext};

/// The delivery worker, one in each database with an enabled endpoint.
pub static DELIVERY: WorkerKind = WorkerKind::new(
    "booking_engine delivery",
    "delivery",
    "booking_engine_delivery_main",
    Need::WhereSql(
        "SELECT EXISTS (SELECT 1 FROM booking_admin.delivery_endpoints WHERE enabled)
             OR EXISTS (SELECT 1 FROM booking.reminder_rules WHERE enabled)",
    ),
    false,
);

pub static DELIVERY_ATTEMPTS: Metric = Metric::counter(
    "booking_delivery_attempts",
    &["channel", "outcome"],
    20,
    "Delivery attempts (webhook, slack, email) by outcome: delivered, retry, dead, gone (410), counted when the delivery worker records them.",
);
pub static DELIVERY_DURATION: Metric = Metric::histogram(
    "booking_delivery_duration_seconds",
    &["channel"],
    LATENCY,
    5,
    "Time of one delivery attempt, from the request to the receiver's answer (or the failure), by channel.",
);

const CLAIM_SQL: &str = include_str!("../../sql/queries/delivery_claim.sql");
const NEXT_DUE_SQL: &str = include_str!("../../sql/queries/delivery_next_due.sql");
const RECORD_SQL: &str = include_str!("../../sql/queries/delivery_record.sql");
const RELEASE_SQL: &str = include_str!("../../sql/queries/delivery_release.sql");
const UNCLAIM_SQL: &str = include_str!("../../sql/queries/delivery_unclaim.sql");

/// Events expanded into deliveries per fan-out call (sql/delivery.sql, fan_out_events).
const FAN_OUT_BATCH: i32 = 1000;
/// The longest sleep without a wake-up: a safety net for a wake-up lost in a crash, not the
/// way work is found.
const MAX_SLEEP_MS: i64 = 60_000;
/// How long after a failed record-and-claim transaction the worker tries again.
const RETRY_RECORD_MS: i64 = 1_000;
/// Claimed deliveries the worker holds at most per sending thread (queued or in flight): claims
/// run ahead of the network in large batches, one transaction for many sends.
const AHEAD_PER_THREAD: usize = 16;
/// Claimed deliveries one endpoint holds at most; more are claimed as these finish.
const PER_ENDPOINT: i64 = 256;

/// A number in [-1, 1] for the retry jitter; it need not be unpredictable, only spread.
fn jitter(seed: &uuid::Uuid) -> f64 {
    let b = seed.as_bytes();
    let n = u16::from_le_bytes([b[14], b[15]]) ^ (epoch_ms() as u16);
    f64::from(n) / f64::from(u16::MAX) * 2.0 - 1.0
}

/// One claimed delivery, as the claim query returns it.
struct Claimed {
    id: uuid::Uuid,
    endpoint_id: uuid::Uuid,
    attempt: i32,
    message_id: String,
    event_type: String,
    payload: Value,
    created_at: String,
    tenant_id: Option<String>,
    event_id: Option<String>,
    horizon_from_ms: i64,
    channel: String,
    url: Option<String>,
    timeout_ms: i32,
    /// The endpoint's in-flight limit now (1 while its circuit is half-open).
    limit: i32,
    /// The endpoint's failures in a row when it was claimed.
    failures: i32,
    secrets: Vec<String>,
    context: Option<Value>,
    template: Option<Value>,
    /// The trace the delivery continues (its event's).
    trace: Option<TraceContext>,
    /// An SMS endpoint's provider, sender and credentials.
    sms: Option<Value>,
    /// An SMS whose recipient opted out of the tenant's SMS.
    opted_out: bool,
}

/// The spans of one attempt, opened when it is claimed and finished when it is recorded: the
/// attempt (a messaging consumer span of the event's trace) and, for HTTP, the request (a
/// client span), whose context the receiver gets in `traceparent`.
struct Traced {
    attempt: trace::Open,
    http: Option<trace::Open>,
}

/// A claimed delivery with the spans of its attempt.
type TracedClaim = (Option<Traced>, Claimed);

/// Opens the spans of a claimed attempt (None when tracing is off).
fn traced(c: &Claimed) -> Option<Traced> {
    let now = trace::now_ns();
    let mut attempt = trace::detached(c.trace.as_ref(), "process booking.events", SpanKind::Consumer, now)?;
    attempt.attr("messaging.system", "booking_engine");
    attempt.attr("messaging.operation.type", "process");
    attempt.attr("messaging.operation.name", "process");
    attempt.attr("messaging.destination.name", "booking.events");
    attempt.attr("messaging.message.id", c.message_id.as_str());
    attempt.attr("booking.event_type", c.event_type.as_str());
    attempt.attr("booking.delivery.id", c.id);
    attempt.attr("booking.delivery.endpoint_id", c.endpoint_id);
    attempt.attr("booking.delivery.channel", c.channel.as_str());
    attempt.attr("booking.delivery.attempt", c.attempt);
    if let Some(t) = &c.tenant_id {
        attempt.attr("booking.tenant_id", t.as_str());
    }
    let http = (c.channel != "email").then(|| {
        let mut http = trace::child(&attempt, "POST", SpanKind::Client, now);
        http.attr("http.request.method", "POST");
        if let Some((full, host, port)) = c.url.as_deref().and_then(|u| traced_url(u, &c.channel)) {
            http.attr("url.full", full);
            http.attr("server.address", host);
            http.attr("server.port", i64::from(port));
        }
        if c.attempt > 1 {
            http.attr("http.request.resend_count", c.attempt - 1);
        }
        http
    });
    Some(Traced { attempt, http })
}

/// Ends an attempt's spans with what came of it (`row` is the recorded decision).
fn finish_traced(t: Traced, f: &Finished, row: &Value) {
    let start = f.started_ms * 1_000_000;
    let end = start + (f.duration_ms * 1_000_000.0) as u64;
    let outcome = row["outcome"].as_str().unwrap_or("retry");
    let error_type = match &f.sent {
        Sent::Status { code, .. } if *code >= 400 => Some(code.to_string()),
        Sent::Status { .. } => None,
        Sent::Failed { error, .. } if error.contains("timed out") => Some("timeout".into()),
        Sent::Failed { permanent: true, .. } => Some("unsendable".into()),
        Sent::Failed { .. } => Some("transport".into()),
    };
    let error = row["error"].as_str().unwrap_or_default();
    let Traced { mut attempt, http } = t;
    if let Some(mut http) = http {
        http.set_start(start);
        if let Sent::Status { code, .. } = &f.sent {
            http.attr("http.response.status_code", i64::from(*code));
        }
        if let Some(t) = &error_type {
            http.fail(t, error);
        }
        http.finish(end);
    }
    attempt.set_start(start);
    attempt.attr("booking.delivery.outcome", outcome);
    if let Some(next) = row["next_attempt_ms"].as_u64() {
        attempt
            .attr("booking.delivery.retry_delay_ms", next.saturating_sub(f.started_ms + f.duration_ms as u64) as i64);
    }
    if outcome != "delivered" {
        attempt.fail(error_type.as_deref().unwrap_or(trace::OTHER_ERROR), error);
    }
    attempt.finish(end);
}

/// Why a claimed delivery is not sent: never sendable (recorded as dead), or suppressed (the
/// recipient opted out; recorded as such, not a failure of the endpoint).
struct Unsent {
    why: String,
    suppressed: bool,
}

impl From<String> for Unsent {
    fn from(why: String) -> Unsent {
        Unsent { why, suppressed: false }
    }
}

impl From<&str> for Unsent {
    fn from(why: &str) -> Unsent {
        Unsent::from(why.to_string())
    }
}

/// A claimed delivery until its attempt is recorded: when its retries started, its channel (for
/// the metrics), whom it went to, whether it was suppressed, and the spans of its attempt.
#[derive(Default)]
struct InFlight {
    horizon_from_ms: i64,
    channel: String,
    recipient: Option<String>,
    suppressed: bool,
    traced: Option<Traced>,
}

fn template_of(c: &Claimed) -> Option<Template> {
    c.template.clone().and_then(|t| serde_json::from_value(t).ok())
}

/// An SMS provider call: the text from the template's plain-text body, to the recipient's
/// number, from the endpoint's sender, with its credentials.
fn sms_payload(c: &Claimed) -> Result<(Payload, String), Unsent> {
    if c.opted_out {
        return Err(Unsent {
            why: "not sent: the recipient replied STOP to this tenant's SMS".into(),
            suppressed: true,
        });
    }
    let settings = c.sms.clone().unwrap_or(Value::Null);
    let field = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_string);
    let provider =
        field("provider").as_deref().and_then(Provider::parse).ok_or("the SMS endpoint names no provider")?;
    let from = field("from").ok_or("the SMS endpoint has no sender")?;
    let template = template_of(c)
        .ok_or_else(|| format!("no message template for {} (booking_admin.set_message_template)", c.event_type))?;
    let ctx = context(c.context.as_ref().unwrap_or(&Value::Null));
    let to = ctx.get("recipient_phone").cloned().ok_or("the event's customer has no phone number")?;
    let (body, content_type) = sms::request(provider, &to, &from, &sms_text(&template, &ctx), &c.message_id);
    let auth = match (field("username"), field("password"), field("token")) {
        (user, Some(password), _) => Auth::Basic { user: user.unwrap_or_default(), password },
        (_, None, Some(token)) => Auth::Bearer(token),
        _ => Auth::None,
    };
    let url = c.url.clone().unwrap_or_default();
    Ok((Payload::Http { url, body, content_type, auth: auth.header(), signing: None }, to))
}

/// What to send for a claimed delivery and to whom (email and SMS), or why it is not sent.
fn outgoing(c: &Claimed) -> Result<(Outgoing, Option<String>), Unsent> {
    let mut recipient = None;
    let payload = match c.channel.as_str() {
        "webhook" => {
            let keys = c.secrets.iter().filter_map(|s| parse_secret(s).ok()).collect();
            Payload::Http {
                url: c.url.clone().unwrap_or_default(),
                body: webhook_body(
                    &c.event_type,
                    &c.created_at,
                    c.tenant_id.as_deref(),
                    c.event_id.as_deref(),
                    &c.payload,
                ),
                content_type: "application/json",
                auth: None,
                signing: Some(Signing { msg_id: c.message_id.clone(), keys }),
            }
        }
        "slack" => {
            let ctx = context(c.context.as_ref().unwrap_or(&Value::Null));
            Payload::Http {
                url: c.url.clone().unwrap_or_default(),
                body: slack_body(template_of(c).as_ref(), &ctx, &c.event_type, &c.payload),
                content_type: "application/json",
                auth: None,
                signing: None,
            }
        }
        "sms" => {
            let (payload, to) = sms_payload(c)?;
            recipient = Some(to);
            payload
        }
        _ => {
            let template = template_of(c).ok_or_else(|| {
                format!("no message template for {} (booking_admin.set_message_template)", c.event_type)
            })?;
            let ctx = context(c.context.as_ref().unwrap_or(&Value::Null));
            let to = match c.url.as_deref().and_then(|u| u.strip_prefix("mailto:")) {
                Some(fixed) => fixed.to_string(),
                None => ctx.get("recipient_email").cloned().ok_or("the event's customer has no email address")?,
            };
            recipient = Some(to.clone());
            let (subject, text, html) = email_parts(&template, &ctx);
            Payload::Email(Email { to, subject, text, html })
        }
    };
    let o = Outgoing {
        delivery_id: c.id,
        endpoint_id: c.endpoint_id,
        attempt: c.attempt.max(1) as u32,
        timeout: std::time::Duration::from_millis(c.timeout_ms.max(100) as u64),
        payload,
        trace: None,
    };
    Ok((o, recipient))
}

/// The ledger row and decision for one finished attempt.
fn decided(f: &Finished, flight: &InFlight, schedule: &[u64], horizon_s: i32) -> Value {
    let finished_ms = f.started_ms + f.duration_ms as u64;
    let rules =
        Rules { schedule, give_up_at_ms: flight.horizon_from_ms.max(0) as u64 + horizon_s.max(1) as u64 * 1000 };
    let decision = next(&rules, f.attempt, &f.sent, finished_ms, jitter(&f.delivery_id));
    let (status_code, error) = match &f.sent {
        Sent::Status { code, .. } => (Some(*code), None),
        Sent::Failed { error, .. } => (None, Some(error.clone())),
    };
    let breaker = breaker(&f.sent).as_str();
    let (outcome, next_ms, error) = match decision {
        _ if flight.suppressed => ("suppressed", None, error),
        Next::Delivered => ("delivered", None, error),
        Next::RetryAt(at) => ("retry", Some(at), error),
        Next::Dead(why) => ("dead", None, Some(why)),
        Next::EndpointGone => ("gone", None, error),
    };
    // An SMS provider's id for the message it accepted, which its delivery receipts name.
    let provider_message_id = (flight.channel == "sms" && outcome == "delivered")
        .then(|| f.excerpt.as_deref().and_then(sms::provider_message_id))
        .flatten();
    json!({
        "id": f.delivery_id, "endpoint_id": f.endpoint_id, "attempt": f.attempt,
        "started_ms": f.started_ms, "finished_ms": finished_ms, "duration_ms": f.duration_ms,
        "status_code": status_code, "error": error, "excerpt": f.excerpt, "outcome": outcome,
        "next_attempt_ms": next_ms, "breaker": breaker, "recipient": flight.recipient,
        "provider_message_id": provider_message_id,
    })
}

/// A delivery given up on goes to the server log with its ids (and trace), once.
fn log_given_up(f: &Finished, row: &Value, trace_id: Option<&str>) {
    let why = row["error"].as_str().unwrap_or("no reason recorded");
    let trace = trace_id.map(|t| format!(" (trace {t})")).unwrap_or_default();
    let what = if row["outcome"] == "gone" { "the endpoint answered 410 Gone and is disabled" } else { "given up" };
    pgrx::log!(
        "booking_engine delivery: delivery {} to endpoint {}: {what} after {} attempts: {why}{trace}",
        f.delivery_id,
        f.endpoint_id,
        f.attempt
    );
}

/// A delivery that could not even be attempted (or was suppressed), as a finished permanent
/// failure.
fn unsendable(c: &Claimed, why: String) -> Finished {
    Finished {
        delivery_id: c.id,
        endpoint_id: c.endpoint_id,
        attempt: c.attempt.max(1) as u32,
        started_ms: epoch_ms(),
        duration_ms: 0.0,
        sent: Sent::Failed { error: why, permanent: true },
        excerpt: None,
    }
}

/// Ids as the uuid[] parameter of the claim and next-due statements.
fn uuid_array(ids: &[uuid::Uuid]) -> Vec<pgrx::Uuid> {
    ids.iter().copied().map(to_pg_uuid).collect()
}

fn claim(limit: usize, threshold: i32, skip: &[uuid::Uuid]) -> Result<Vec<Claimed>, pgrx::spi::Error> {
    Spi::connect_mut(|c| {
        let args = [(limit as i64).into(), threshold.into(), PER_ENDPOINT.into(), uuid_array(skip).into()];
        c.update(CLAIM_SQL, None, &args)?
            .map(|r| {
                let json = |name: &str| r.get_by_name::<JsonB, _>(name).map(|j| j.map(|j| j.0));
                Ok(Claimed {
                    id: to_uuid(r.get_by_name::<pgrx::Uuid, _>("id")?.expect("a claimed delivery has an id")),
                    endpoint_id: to_uuid(r.get_by_name::<pgrx::Uuid, _>("endpoint_id")?.expect("and an endpoint")),
                    attempt: r.get_by_name("attempt")?.unwrap_or(1),
                    message_id: r.get_by_name("message_id")?.unwrap_or_default(),
                    event_type: r.get_by_name("event_type")?.unwrap_or_default(),
                    payload: json("payload")?.unwrap_or(Value::Null),
                    created_at: r.get_by_name("created_at")?.unwrap_or_default(),
                    tenant_id: r.get_by_name("tenant_id")?,
                    event_id: r.get_by_name("event_id")?,
                    horizon_from_ms: r.get_by_name("horizon_from_ms")?.unwrap_or(0),
                    channel: r.get_by_name("channel")?.unwrap_or_default(),
                    url: r.get_by_name("url")?,
                    timeout_ms: r.get_by_name("timeout_ms")?.unwrap_or(10_000),
                    limit: r.get_by_name("in_flight_limit")?.unwrap_or(1),
                    failures: r.get_by_name("failures")?.unwrap_or(0),
                    secrets: r.get_by_name::<Vec<String>, _>("secrets")?.unwrap_or_default(),
                    context: json("context")?,
                    template: json("template")?,
                    trace: r.get_by_name::<String, _>("traceparent")?.and_then(|p| {
                        trace::context::parse(&p, r.get_by_name::<String, _>("tracestate").ok().flatten().as_deref())
                    }),
                    sms: json("sms")?,
                    opted_out: r.get_by_name("opted_out")?.unwrap_or(false),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
}

fn next_due_ms(skip: &[uuid::Uuid]) -> Option<i64> {
    Spi::get_one_with_args::<i64>(NEXT_DUE_SQL, &[uuid_array(skip).into()]).ok().flatten()
}

/// Expands the next batch of new events, then of due reminders, into deliveries (and a
/// reminder's event); the number of events and reminders handled.
fn fan_out() -> Result<i32, pgrx::spi::Error> {
    let events =
        Spi::get_one_with_args::<i32>("SELECT booking_admin.fan_out_events($1)", &[FAN_OUT_BATCH.into()])?.unwrap_or(0);
    let reminders =
        Spi::get_one_with_args::<i32>("SELECT booking_admin.fan_out_reminders($1)", &[FAN_OUT_BATCH.into()])?
            .unwrap_or(0);
    Ok(events + reminders)
}

/// In how many ms the next reminder falls due.
fn next_reminder_ms() -> Option<i64> {
    Spi::get_one::<i64>("SELECT booking_admin.next_reminder_due_ms()").ok().flatten()
}

/// How long the worker may sleep before it looks for new events itself: on a Citus coordinator
/// the events are written by the workers, whose commits cannot set this worker's latch
/// (booking_engine.delivery_poll_interval); elsewhere a commit that wrote events wakes it.
fn poll_ms() -> Option<i64> {
    let ms = gucs::delivery_poll_interval_ms();
    let distributed = Spi::get_one::<bool>("SELECT booking_admin.is_distributed()").ok().flatten().unwrap_or(false);
    (distributed && ms > 0).then_some(i64::from(ms))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_delivery_main(arg: pg_sys::Datum) {
    let db = dbworker::start(arg).db;
    let mut live = match settings::Live::load() {
        Ok(l) => l,
        Err(e) => {
            pgrx::warning!("booking_engine delivery: {e}; nothing is sent until it is fixed");
            launcher::want(db, &DELIVERY, false);
            return;
        }
    };
    let concurrency = gucs::delivery_concurrency();
    // The breaker's threshold as the sending threads count (0: never open).
    let as_threshold = |t: i32| u32::try_from(t).unwrap_or(0);
    let pool = match Pool::start(
        concurrency,
        as_threshold(gucs::delivery_breaker_threshold()),
        live.rules.clone(),
        live.smtp.clone(),
    ) {
        Ok(p) => p,
        Err(e) => {
            pgrx::warning!("booking_engine delivery: the sending threads could not start: {e}");
            return;
        }
    };
    if let Err(e) = try_in_transaction(|| extension_installed() && Spi::run(RELEASE_SQL).is_ok()) {
        pgrx::warning!("booking_engine delivery: releasing interrupted deliveries failed: {}", e.message);
    }
    // Claimed and not yet recorded: the horizon start, channel and spans of each, for the
    // decision, the metrics and the trace.
    let mut claimed_at: std::collections::HashMap<uuid::Uuid, InFlight> = std::collections::HashMap::new();
    let mut unsent: Vec<Finished> = Vec::new();
    // What the next committed transaction records: decided attempts with their metrics, and
    // deliveries the breaker handed back. A transaction that fails (a deadlock, a lock timeout)
    // leaves them here for the next one, instead of `sending` until the worker restarts.
    let mut unrecorded: Vec<Value> = Vec::new();
    let mut uncounted: Vec<(String, String, f64)> = Vec::new();
    let mut unreleased: Vec<pgrx::Uuid> = Vec::new();
    let mut seen_upto = 0;
    loop {
        let threshold = gucs::delivery_breaker_threshold();
        let mut finished = std::mem::take(&mut unsent);
        let (sent, upto) = pool.finished();
        finished.extend(sent);
        seen_upto = seen_upto.max(upto);
        // Handed back unsent by the breaker: pending again, their spans never started.
        let held = pool.take_held();
        unreleased.extend(held.iter().map(|o| {
            claimed_at.remove(&o.delivery_id);
            to_pg_uuid(o.delivery_id)
        }));
        let room = (concurrency * AHEAD_PER_THREAD).saturating_sub(pool.backlog());
        let full = pool.saturated(PER_ENDPOINT as usize);
        // Each attempt's channel, outcome and seconds, counted when its record commits.
        if !finished.is_empty() {
            let schedule = &live.schedule;
            let horizon = gucs::delivery_retry_horizon_s();
            let rows = finished.iter().map(|f| {
                let flight = claimed_at.remove(&f.delivery_id).unwrap_or_default();
                let row = decided(f, &flight, schedule, horizon);
                let outcome = row["outcome"].as_str().unwrap_or("retry").to_string();
                let trace_id = flight.traced.as_ref().map(|t| t.attempt.ctx.trace_id_hex());
                if let Some(t) = flight.traced {
                    finish_traced(t, f, &row);
                }
                if outcome == "dead" || outcome == "gone" {
                    log_given_up(f, &row, trace_id.as_deref());
                }
                uncounted.push((flight.channel, outcome, f.duration_ms / 1000.0));
                row
            });
            unrecorded.extend(rows);
        }
        let rows = (!unrecorded.is_empty()).then(|| JsonB(Value::Array(unrecorded.clone())));
        let mut claimed = Vec::new();
        let mut fanned = 0;
        let mut failed = false;
        if rows.is_some() || !unreleased.is_empty() || room > 0 {
            report_activity(Some("recording and claiming deliveries"));
            // One transaction records what finished and claims what is due.
            let outcome = try_in_transaction(|| -> Result<Option<(i32, Vec<TracedClaim>)>, pgrx::spi::Error> {
                if !extension_installed() {
                    return Ok(None);
                }
                if let Some(rows) = rows {
                    let disable_after = gucs::delivery_disable_after_s();
                    Spi::run_with_args(RECORD_SQL, &[rows.into(), threshold.into(), disable_after.into()])?;
                    for (channel, outcome, seconds) in &uncounted {
                        telemetry::at_commit(&DELIVERY_ATTEMPTS, &[channel, outcome], Change::Add(1));
                        telemetry::at_commit(&DELIVERY_DURATION, &[channel], Change::Observe(*seconds));
                    }
                }
                if !unreleased.is_empty() {
                    Spi::run_with_args(UNCLAIM_SQL, &[unreleased.clone().into()])?;
                }
                // New events first: their deliveries are claimed in the same transaction.
                let fanned = if room > 0 { fan_out()? } else { 0 };
                let claimed = if room > 0 { claim(room, threshold, &full)? } else { Vec::new() };
                Ok(Some((fanned, claimed.into_iter().map(|c| (traced(&c), c)).collect::<Vec<_>>())))
            });
            match outcome {
                Ok(Ok(Some((n, c)))) => {
                    // The endpoints' rows now say what the recorded attempts did to their
                    // breakers: the lanes those attempts tripped may be claimed for again.
                    pool.recorded(seen_upto);
                    (fanned, claimed) = (n, c);
                    unrecorded.clear();
                    uncounted.clear();
                    unreleased.clear();
                }
                // The extension is gone from this database.
                Ok(Ok(None)) => return,
                // Kept for the next transaction (see `unrecorded`).
                Ok(Err(e)) => {
                    pgrx::warning!("booking_engine delivery: recording or claiming failed, tried again: {e}");
                    failed = true;
                }
                Err(e) => {
                    pgrx::warning!("booking_engine delivery: recording or claiming failed, tried again: {}", e.message);
                    failed = true;
                }
            }
        }
        if failed {
            // Not at once: a failure that persists would otherwise spin.
            if wait_latch_or_socket(Some(pool.wake_fd()), RETRY_RECORD_MS) {
                live.reload();
                pool.renew_client();
                pool.set_threshold(as_threshold(gucs::delivery_breaker_threshold()));
            }
            continue;
        }
        let busy = !claimed.is_empty() || !finished.is_empty() || !held.is_empty() || fanned > 0;
        for (traced, c) in claimed {
            // The receiver continues the trace from the request's span.
            let header =
                traced.as_ref().and_then(|t| t.http.as_ref()).map(|h| (h.ctx.traceparent(), h.ctx.tracestate.clone()));
            let mut flight = InFlight {
                horizon_from_ms: c.horizon_from_ms,
                channel: c.channel.clone(),
                traced,
                ..InFlight::default()
            };
            match outgoing(&c) {
                Ok((o, recipient)) => {
                    flight.recipient = recipient;
                    let fails = u32::try_from(c.failures).unwrap_or(0);
                    pool.push(c.endpoint_id, c.limit.max(1) as usize, fails, Outgoing { trace: header, ..o });
                }
                Err(Unsent { why, suppressed }) => {
                    flight.suppressed = suppressed;
                    unsent.push(unsendable(&c, why));
                }
            }
            claimed_at.insert(c.id, flight);
        }
        if busy || !unsent.is_empty() {
            if interrupts_and_reload() {
                live.reload();
                pool.renew_client();
                pool.set_threshold(as_threshold(gucs::delivery_breaker_threshold()));
            }
            continue;
        }
        report_activity(None);
        let full = pool.saturated(PER_ENDPOINT as usize);
        let (due, reminder, poll) =
            try_in_transaction(|| (next_due_ms(&full), next_reminder_ms(), poll_ms())).unwrap_or((None, None, None));
        let sleep =
            due.into_iter().chain(reminder).chain(poll).min().map_or(MAX_SLEEP_MS, |d| d.clamp(1, MAX_SLEEP_MS));
        if wait_latch_or_socket(Some(pool.wake_fd()), sleep) {
            live.reload();
            pool.renew_client();
            pool.set_threshold(as_threshold(gucs::delivery_breaker_threshold()));
        }
    }
}
