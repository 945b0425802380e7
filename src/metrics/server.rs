//! The metrics worker: one per cluster, serving `/metrics`, `/health`, `/ready` and the
//! dashboard over HTTP on `booking_engine.metrics_listen_address:metrics_port`. It sleeps in
//! WaitLatchOrSocket on its listening socket and its latch: a connection, SIGHUP (reload: the
//! token, the address and port, which it re-binds without a gap) or SIGTERM wakes it, and every
//! 15 s it reads the machine's CPU, memory and disk (`sample_host`) for the host alerts. It is
//! connected to `booking_engine.metrics_database` for the SQL gauges and the health report;
//! each request's SQL runs in one short transaction of its own, read-only and under
//! `metrics_sql_timeout_ms`, and the shared-memory metrics are served even when that fails.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;

use super::api::all_samples;
use super::expose::render;
use super::http::{self, Refusal, Route};
use super::{defs, host};
use crate::gucs;
use crate::launcher::WORKER_STARTS;
use crate::pg::bgworker::{attach_signals, report_activity, try_in_transaction, wait, wait_latch_or_socket};
use crate::telemetry::{self, Change};

/// A client gets this long to send its request head and to take the response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before trying to bind again after the address was taken (by another
/// process: the worker's own old socket is released first, see `rebind`).
const REBIND_MS: u64 = 1_000;
/// How often the machine's CPU, memory and disk are read (the CPU share is over this span).
const HOST_SAMPLE_MS: u64 = 15_000;

pub fn register() {
    BackgroundWorkerBuilder::new("booking_engine metrics")
        .set_type("booking_engine metrics")
        .set_library("booking_engine")
        .set_function("booking_engine_metrics_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn wanted_address() -> Option<SocketAddr> {
    let port = gucs::metrics_port();
    if port == 0 {
        return None;
    }
    let ip: IpAddr = match gucs::metrics_listen_address().unwrap_or_else(|| "127.0.0.1".into()).parse() {
        Ok(ip) => ip,
        Err(_) => {
            pgrx::warning!("booking_engine metrics: booking_engine.metrics_listen_address is not an IP address");
            return None;
        }
    };
    Some(SocketAddr::new(ip, port as u16))
}

/// A listening socket on `addr`, non-blocking (the worker waits on it with its latch).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l))
}

/// Moves the listener to `wanted`, keeping the old socket until the new one is bound: nothing
/// stops being served while the address changes. When the two overlap on the same port (the
/// wildcard address and a specific one), the new one cannot be bound beside the old: the old is
/// released and the new bound at once, and if that fails the old is taken back. Returns the
/// listener to use and whether `wanted` is still to be bound (a retry after `REBIND_MS`).
fn rebind(
    bound: Option<(SocketAddr, TcpListener)>,
    wanted: Option<SocketAddr>,
) -> (Option<(SocketAddr, TcpListener)>, bool) {
    let Some(addr) = wanted else {
        return (None, false);
    };
    match listen(addr) {
        Ok(l) => {
            pgrx::log!("booking_engine metrics: listening on {addr}");
            (Some((addr, l)), false)
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && bound.as_ref().is_some_and(|(old, _)| old.port() == addr.port()) =>
        {
            let old = bound.map(|(old, l)| {
                drop(l);
                old
            });
            match listen(addr) {
                Ok(l) => {
                    pgrx::log!("booking_engine metrics: listening on {addr}");
                    (Some((addr, l)), false)
                }
                Err(e) => {
                    pgrx::warning!("booking_engine metrics: cannot listen on {addr}: {e}");
                    (old.and_then(|old| listen(old).ok().map(|l| (old, l))), true)
                }
            }
        }
        Err(e) => {
            pgrx::warning!("booking_engine metrics: cannot listen on {addr}: {e}; retrying");
            (bound, true)
        }
    }
}

/// The machine as /proc and statvfs show it, into the `booking_host_*` gauges. The CPU share
/// needs two readings: the previous one is kept between calls.
fn sample_host(previous: &mut Option<host::CpuTimes>) {
    if let Some(now) = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(host::parse_stat) {
        if let Some(ratio) = previous.and_then(|p| host::cpu_busy_ratio(p, now)) {
            telemetry::now(&defs::HOST_CPU, &[], Change::Set(ratio));
        }
        *previous = Some(now);
    }
    if let Some((total, available)) =
        std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(host::parse_meminfo)
    {
        telemetry::now(&defs::HOST_MEMORY_TOTAL, &[], Change::Set(total as f64));
        telemetry::now(&defs::HOST_MEMORY_USED, &[], Change::Set(1.0 - available as f64 / total.max(1) as f64));
    }
    if let Some(load) = std::fs::read_to_string("/proc/loadavg").ok().as_deref().and_then(host::parse_loadavg) {
        telemetry::now(&defs::HOST_LOAD, &[], Change::Set(load));
    }
    // SAFETY: DataDir is the postmaster's data directory, set before any worker starts.
    let dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    // SAFETY: statvfs is plain old data; all zeroes is a valid value the call overwrites.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: dir is a NUL-terminated path and fs a statvfs the call fills.
    if unsafe { libc::statvfs(dir.as_ptr(), &mut fs) } == 0 {
        let (blocks, available) = (fs.f_blocks as u64, fs.f_bavail as u64);
        if let Some(ratio) = host::disk_used_ratio(blocks, available) {
            telemetry::now(&defs::HOST_DISK_USED, &["data_directory"], Change::Set(ratio));
        }
        telemetry::now(
            &defs::HOST_DISK_FREE,
            &["data_directory"],
            Change::Set((available * fs.f_frsize as u64) as f64),
        );
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_metrics_main(_arg: pg_sys::Datum) {
    attach_signals();
    let database = gucs::metrics_database();
    BackgroundWorker::connect_worker_to_spi(database.as_deref(), None);
    let connected = database.is_some();
    telemetry::now(&WORKER_STARTS, &["metrics"], Change::Add(1));
    let mut bound: Option<(SocketAddr, TcpListener)> = None;
    // The address last tried and, when it could not be bound, when to try again.
    let mut tried: Option<SocketAddr> = None;
    let mut retry_at: Option<Instant> = None;
    let mut cpu = None;
    let mut next_sample = Instant::now();
    loop {
        let wanted = wanted_address();
        let changed = wanted != tried;
        let due = retry_at.is_some_and(|t| t <= Instant::now());
        if bound.as_ref().map(|(a, _)| *a) != wanted && (changed || due) {
            let (now_bound, retry) = rebind(bound.take(), wanted);
            bound = now_bound;
            retry_at = retry.then(|| Instant::now() + Duration::from_millis(REBIND_MS));
        }
        tried = wanted;
        if bound.as_ref().map(|(a, _)| *a) == wanted {
            retry_at = None;
        }
        if Instant::now() >= next_sample {
            sample_host(&mut cpu);
            next_sample = Instant::now() + Duration::from_millis(HOST_SAMPLE_MS);
        }
        // Sleep until a connection, a signal, the next sample or the next bind attempt.
        let wake = retry_at.map_or(next_sample, |r| r.min(next_sample));
        let ms = wake.saturating_duration_since(Instant::now()).as_millis() as i64;
        match &bound {
            Some((_, listener)) => {
                wait_latch_or_socket(Some(listener.as_raw_fd()), ms);
                // Every connection waiting now (none after a latch wake-up): the listener is
                // non-blocking.
                while let Ok((stream, peer)) = listener.accept() {
                    serve(stream, peer, connected);
                }
            }
            None => wait(ms),
        }
    }
}

fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !http::head_complete(&buf) {
        if buf.len() > http::MAX_HEAD {
            return Err(Refusal { status: 431, message: "request head too large" });
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Refusal { status: 400, message: "incomplete request" }),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(buf)
}

fn serve(mut stream: TcpStream, peer: SocketAddr, connected: bool) {
    // Blocking with deadlines: a slow client delays the next scrape by at most CLIENT_TIMEOUT.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let parsed = read_head(&mut stream).and_then(|head| http::parse(&head));
    let head_only = parsed.as_ref().is_ok_and(|r| r.method == "HEAD");
    let token = gucs::metrics_token();
    let answer = parsed.and_then(|req| {
        report_activity(Some(&format!("{} {}", req.method, req.path)));
        http::route(&req, token.as_deref(), peer.ip().is_loopback())
    });
    let bytes = match answer {
        Ok(route) => {
            let (status, content_type, body) = respond(route, connected);
            http::response(status, content_type, body.as_bytes(), head_only)
        }
        Err(r) => {
            http::response(r.status, "text/plain; charset=utf-8", format!("{}\n", r.message).as_bytes(), head_only)
        }
    };
    let _ = stream.write_all(&bytes);
    report_activity(None);
}

/// Status, content type and body of a route.
fn respond(route: Route, connected: bool) -> (u16, &'static str, String) {
    match route {
        Route::Metrics(format) => {
            let samples = if connected {
                try_in_transaction(|| all_samples(true)).unwrap_or_else(|_| all_samples(false))
            } else {
                all_samples(false)
            };
            (200, format.content_type(), render(&samples, format))
        }
        Route::Ready => match connected.then(|| try_in_transaction(|| Spi::get_one::<i32>("SELECT 1"))) {
            Some(Ok(Ok(Some(1)))) => (200, "text/plain; charset=utf-8", "ready\n".into()),
            _ => (503, "text/plain; charset=utf-8", "not ready: the database does not answer\n".into()),
        },
        Route::Health => {
            let report = connected.then(|| try_in_transaction(super::api::health_json)).and_then(Result::ok);
            match report {
                Some(Ok(doc)) => {
                    let critical = doc.get("status").and_then(|s| s.as_str()) == Some("critical");
                    (if critical { 503 } else { 200 }, "application/json", doc.to_string())
                }
                Some(Err(e)) => {
                    (503, "application/json", serde_json::json!({"status": "critical", "error": e}).to_string())
                }
                None => (503, "application/json", r#"{"status":"critical","error":"no database connection"}"#.into()),
            }
        }
        Route::Dashboard(range) => {
            let page = connected.then(|| try_in_transaction(|| super::api::dashboard_html(range))).and_then(Result::ok);
            match page {
                Some(Ok(html)) => (200, "text/html; charset=utf-8", html),
                Some(Err(e)) => (503, "text/plain; charset=utf-8", format!("dashboard unavailable: {e}\n")),
                None => (503, "text/plain; charset=utf-8", "dashboard unavailable: no database connection\n".into()),
            }
        }
    }
}
