//! The exporter: one background worker per cluster, registered at start whatever the settings.
//! While `booking_engine.otlp_endpoint` is set it marks the queue active, sleeps on its latch
//! until the first span arrives (or a whole batch), gathers spans for `DELAY_MS`, and POSTs
//! them to the endpoint as one OTLP/HTTP protobuf request, retried with exponential backoff
//! (and the collector's Retry-After) on the answers the OTLP specification calls retryable. It
//! never holds anything a backend waits for: backends only put spans in the ring and move on,
//! and what does not fit is dropped and counted. Empty endpoint: it sleeps until a reload.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use prost::Message;

use super::otlp::{self, ExportTraceServiceResponse};
use super::{dequeued, ring, BATCH, SPANS_DROPPED, SPANS_EXPORTED};
use crate::gucs;
use crate::launcher::WORKER_STARTS;
use crate::pg::bgworker::{attach_signals, mark_bookkeeping, my_procno, report_activity, wait_latch_or_socket};
use crate::telemetry::{self, Change};

/// How long spans gather after the first one before they are sent (unless a batch fills
/// first): fewer, larger requests.
const DELAY_MS: i64 = 1000;
/// The longest sleep with nothing to do; producers and reloads wake it.
const IDLE_MS: i64 = 3_600_000;
/// Attempts per batch, and the backoff between them (doubling from the first, at most the
/// cap, spread by up to ±20%).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF_MS: u64 = 1000;
const MAX_BACKOFF_MS: u64 = 30_000;
/// The longest Retry-After honoured.
const MAX_RETRY_AFTER_MS: u64 = 60_000;

pub fn register() {
    BackgroundWorkerBuilder::new("booking_engine tracing")
        .set_type("booking_engine tracing")
        .set_library("booking_engine")
        .set_function("booking_engine_tracing_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// What the exporter works with, read at start and at every reload.
struct Config {
    url: String,
    shown: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    service: String,
}

/// The traces URL of an endpoint setting: as written, or with `/v1/traces` when it names no
/// path (OTel's base endpoint form). Err: not an http(s) URL.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let mut url = url::Url::parse(endpoint.trim()).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{endpoint:?} is not an http or https URL"));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/v1/traces");
    }
    Ok(url.to_string())
}

/// A URL as logs and the status show it: no credentials, no query.
pub fn shown_url(endpoint: &str) -> String {
    match url::Url::parse(endpoint.trim()) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// `name=value` pairs separated by commas, values URL-decoded (OTEL_EXPORTER_OTLP_HEADERS);
/// malformed pairs are skipped.
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            let valid =
                !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
            valid.then(|| {
                (
                    k.to_ascii_lowercase(),
                    url::form_urlencoded::parse(format!("v={}", v.trim()).as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default(),
                )
            })
        })
        .collect()
}

fn config() -> Option<Config> {
    let endpoint = gucs::otlp_endpoint()?;
    match traces_url(&endpoint) {
        Ok(url) => Some(Config {
            shown: shown_url(&url),
            url,
            headers: parse_headers(&gucs::otlp_headers()),
            timeout: Duration::from_millis(gucs::otlp_timeout_ms().max(100) as u64),
            service: gucs::trace_service_name(),
        }),
        Err(e) => {
            pgrx::warning!("booking_engine tracing: booking_engine.otlp_endpoint: {e}; tracing stays off");
            None
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    }
}

/// What one request came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Accepted; the collector may have refused some spans (partial success).
    Accepted { rejected: i64, message: String },
    /// Worth another attempt (after the collector's Retry-After, when it gave one).
    Retry { after_ms: Option<u64>, error: String },
    /// Refused for good (a 4xx other than 429, a 5xx other than 502-504).
    Refused(String),
}

/// The OTLP/HTTP specification's retryable answers: 429, 502, 503, 504; Retry-After in
/// seconds when given.
pub fn classify(status: u16, retry_after: Option<&str>) -> Outcome {
    let after_ms = retry_after.and_then(|s| s.trim().parse::<u64>().ok()).map(|s| (s * 1000).min(MAX_RETRY_AFTER_MS));
    match status {
        200..=299 => Outcome::Accepted { rejected: 0, message: String::new() },
        429 | 502 | 503 | 504 => Outcome::Retry { after_ms, error: format!("HTTP {status}") },
        _ => Outcome::Refused(format!("HTTP {status}")),
    }
}

/// The wait before attempt `attempt + 1` (attempt counts from 1), `spread` in [-1, 1].
pub fn backoff_ms(attempt: u32, spread: f64) -> u64 {
    let base = FIRST_BACKOFF_MS.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(16)).min(MAX_BACKOFF_MS);
    (base as f64 * (1.0 + 0.2 * spread.clamp(-1.0, 1.0))) as u64
}

fn post(agent: &ureq::Agent, cfg: &Config, body: &[u8]) -> Outcome {
    let mut req = agent
        .post(&cfg.url)
        .timeout(cfg.timeout)
        .set("content-type", "application/x-protobuf")
        .set("user-agent", concat!("booking_engine/", env!("CARGO_PKG_VERSION")));
    for (k, v) in &cfg.headers {
        req = req.set(k, v);
    }
    match req.send_bytes(body) {
        Ok(r) => {
            let mut buf = Vec::new();
            let _ = r.into_reader().take(64 * 1024).read_to_end(&mut buf);
            match ExportTraceServiceResponse::decode(buf.as_slice()).ok().and_then(|a| a.partial_success) {
                Some(p) => Outcome::Accepted { rejected: p.rejected_spans, message: p.error_message },
                None => Outcome::Accepted { rejected: 0, message: String::new() },
            }
        }
        Err(ureq::Error::Status(code, r)) => classify(code, r.header("retry-after")),
        Err(ureq::Error::Transport(t)) => Outcome::Retry { after_ms: None, error: t.to_string() },
    }
}

/// Spans waiting, and those exported and dropped since the server started.
pub fn counts() -> (usize, u64, u64) {
    let queued = ring().map_or(0, |r| r.len());
    let total = |m: &telemetry::Metric, series: &[telemetry::Series]| -> u64 {
        m.index().map_or(0, |i| series.iter().filter(|s| s.def == i).map(|s| s.cells[0]).sum())
    };
    match telemetry::snapshot() {
        Some((series, _)) => (queued, total(&SPANS_EXPORTED, &series), total(&SPANS_DROPPED, &series)),
        None => (queued, 0, 0),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    if let Some(r) = ring() {
        r.header().active.store(0, Ordering::Relaxed);
        r.header().consumer.store(0, Ordering::Relaxed);
    }
}

fn drop_all(reason: &str) {
    let Some(r) = ring() else { return };
    let mut n = 0;
    while r.pop().is_some() {
        n += 1;
    }
    if n > 0 {
        telemetry::now(&SPANS_DROPPED, &[reason], Change::Add(n));
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_tracing_main(_arg: pg_sys::Datum) {
    mark_bookkeeping();
    attach_signals();
    BackgroundWorker::connect_worker_to_spi(None, None);
    let Some(ring) = ring() else { return };
    ring.init();
    // SAFETY: registers a plain function for this process's exit.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    ring.header().consumer.store(my_procno() as u32 + 1, Ordering::Relaxed);
    telemetry::now(&WORKER_STARTS, &["tracing"], Change::Add(1));
    let host = hostname();
    let mut cfg = config();
    let mut agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut failing = false;
    loop {
        ring.header().active.store(u32::from(cfg.is_some()), Ordering::Relaxed);
        let Some(c) = &cfg else {
            drop_all("disabled");
            if wait_reloaded(IDLE_MS) {
                cfg = config();
            }
            continue;
        };
        if ring.is_empty() {
            if wait_reloaded(IDLE_MS) {
                cfg = config();
            }
            continue;
        }
        // The first span of a batch: let the rest gather (a full batch wakes us early).
        if ring.len() < BATCH && wait_reloaded(DELAY_MS) {
            cfg = config();
            agent = ureq::AgentBuilder::new().redirects(0).build();
            continue;
        }
        let batch: Vec<otlp::Queued> =
            std::iter::from_fn(|| ring.pop()).take(BATCH).filter_map(|b| dequeued(&b)).collect();
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        report_activity(Some(&format!("exporting {n} spans to {}", c.shown)));
        let body = otlp::request(batch, &c.service, &host).encode_to_vec();
        let (outcome, shown) = export(&agent, &mut cfg, &body);
        match outcome {
            Outcome::Accepted { rejected, message } => {
                let rejected = rejected.clamp(0, n as i64) as u64;
                telemetry::now(&SPANS_EXPORTED, &[], Change::Add(n - rejected));
                if rejected > 0 {
                    telemetry::now(&SPANS_DROPPED, &["rejected"], Change::Add(rejected));
                    pgrx::warning!("booking_engine tracing: {shown} refused {rejected} of {n} spans: {message}");
                }
                if std::mem::replace(&mut failing, false) {
                    pgrx::log!("booking_engine tracing: exporting to {shown} works again");
                }
            }
            Outcome::Refused(e) => {
                telemetry::now(&SPANS_DROPPED, &["rejected"], Change::Add(n));
                pgrx::warning!("booking_engine tracing: {shown} refused {n} spans: {e}");
            }
            Outcome::Retry { error, .. } => {
                telemetry::now(&SPANS_DROPPED, &["export_failed"], Change::Add(n));
                // Once per failing streak: a dead collector must not flood the log.
                if !std::mem::replace(&mut failing, true) {
                    pgrx::warning!(
                        "booking_engine tracing: exporting to {shown} failed after {ATTEMPTS} attempts ({error}); {n} spans dropped, and spans are dropped while it fails"
                    );
                }
            }
        }
        report_activity(None);
    }
}

/// Sleeps (SIGTERM exits); true when the configuration was reloaded meanwhile.
fn wait_reloaded(ms: i64) -> bool {
    wait_latch_or_socket(None, ms)
}

/// Sends one batch with retries; the final outcome and the URL it went to. A reload between
/// attempts takes effect for the next one.
fn export(agent: &ureq::Agent, cfg: &mut Option<Config>, body: &[u8]) -> (Outcome, String) {
    let mut attempt = 1;
    loop {
        let Some(c) = cfg.as_ref() else {
            return (Outcome::Refused("tracing was turned off".into()), String::new());
        };
        let (url, shown) = (c.url.clone(), c.shown.clone());
        let outcome = post(agent, c, body);
        let Outcome::Retry { after_ms, .. } = &outcome else { return (outcome, shown) };
        if attempt >= ATTEMPTS {
            return (outcome, shown);
        }
        let spread = (super::now_ns() % 2001) as f64 / 1000.0 - 1.0;
        let until = Instant::now() + Duration::from_millis(after_ms.unwrap_or_else(|| backoff_ms(attempt, spread)));
        while Instant::now() < until {
            if wait_reloaded((until - Instant::now()).as_millis() as i64) {
                *cfg = config();
                // The operator pointed the exporter elsewhere (or turned it off): the old
                // endpoint's backoff says nothing about the new one, which gets the batch at
                // once and all its attempts.
                if cfg.as_ref().map(|c| &c.url) != Some(&url) {
                    attempt = 0;
                    break;
                }
            }
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_without_a_path_gets_the_traces_path() {
        assert_eq!(traces_url("http://collector:4318").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("https://x.example/otlp/v1/traces").unwrap(), "https://x.example/otlp/v1/traces");
        assert!(traces_url("ftp://x").is_err());
        assert!(traces_url("collector:4318").is_err());
        assert_eq!(shown_url("https://user:secret@x.example/v1/traces?key=abc"), "https://x.example/v1/traces");
    }

    #[test]
    fn headers_are_pairs_with_url_decoded_values() {
        assert_eq!(
            parse_headers("api-key=secret%20value, X-Team = a=b ,bad header=1,novalue"),
            [("api-key".to_string(), "secret value".to_string()), ("x-team".to_string(), "a=b".to_string())]
        );
        assert!(parse_headers("").is_empty());
    }

    #[test]
    fn only_the_retryable_answers_are_retried() {
        assert!(matches!(classify(200, None), Outcome::Accepted { .. }));
        assert_eq!(classify(429, Some("3")), Outcome::Retry { after_ms: Some(3000), error: "HTTP 429".into() });
        assert_eq!(
            classify(503, Some("99999")),
            Outcome::Retry { after_ms: Some(MAX_RETRY_AFTER_MS), error: "HTTP 503".into() }
        );
        assert_eq!(
            classify(502, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Outcome::Retry { after_ms: None, error: "HTTP 502".into() }
        );
        assert_eq!(classify(400, None), Outcome::Refused("HTTP 400".into()));
        assert_eq!(classify(500, None), Outcome::Refused("HTTP 500".into()));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_within_the_spread() {
        assert_eq!(backoff_ms(1, 0.0), 1000);
        assert_eq!(backoff_ms(2, 0.0), 2000);
        assert_eq!(backoff_ms(4, 0.0), 8000);
        assert_eq!(backoff_ms(10, 0.0), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1, 1.0), 1200);
        assert_eq!(backoff_ms(1, -1.0), 800);
    }
}
