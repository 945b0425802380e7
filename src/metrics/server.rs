//! The metrics worker: one per cluster, serving `/metrics`, `/health`, `/ready` and the
//! dashboard over HTTP on `booking_engine.metrics_listen_address:metrics_port`. It sleeps in
//! WaitLatchOrSocket on its listening socket and its latch (no polling): a connection, SIGHUP
//! (reload: the token, the address and port, which it re-binds) or SIGTERM wakes it. It is
//! connected to `booking_engine.metrics_database` for the SQL gauges and the health report;
//! each request's SQL runs in one short transaction of its own, read-only and under
//! `metrics_sql_timeout_ms`, and the shared-memory metrics are served even when that fails.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;

use super::api::all_samples;
use super::expose::render;
use super::http::{self, Refusal, Route};
use crate::gucs;
use crate::launcher::WORKER_STARTS;
use crate::pg::bgworker::{attach_signals, report_activity, try_in_transaction, wait, wait_latch_or_socket};
use crate::telemetry::{self, Change};

/// A client gets this long to send its request head and to take the response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before trying to bind again after the address was taken.
const REBIND_MS: i64 = 10_000;
/// Longest sleep: connections and signals wake the worker at once; this only bounds a wait
/// when nothing happens at all.
const IDLE_MS: i64 = 3_600_000;

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

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_metrics_main(_arg: pg_sys::Datum) {
    attach_signals();
    let database = gucs::metrics_database();
    BackgroundWorker::connect_worker_to_spi(database.as_deref(), None);
    let connected = database.is_some();
    telemetry::now(&WORKER_STARTS, &["metrics"], Change::Add(1));
    let mut bound: Option<(SocketAddr, TcpListener)> = None;
    loop {
        let wanted = wanted_address();
        if bound.as_ref().map(|(a, _)| *a) != wanted {
            bound = wanted.and_then(|addr| {
                match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                    Ok(l) => {
                        pgrx::log!("booking_engine metrics: listening on {addr}");
                        Some((addr, l))
                    }
                    Err(e) => {
                        pgrx::warning!("booking_engine metrics: cannot listen on {addr}: {e}");
                        None
                    }
                }
            });
        }
        match &bound {
            Some((_, listener)) => {
                wait_latch_or_socket(Some(listener.as_raw_fd()), IDLE_MS);
                // Every connection waiting now (none after a latch wake-up): the listener is
                // non-blocking.
                while let Ok((stream, peer)) = listener.accept() {
                    serve(stream, peer, connected);
                }
            }
            // Off, or the address was taken: sleep until a reload (or retry a failed bind).
            None => wait(if wanted.is_some() { REBIND_MS } else { IDLE_MS }),
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
        Route::Dashboard => {
            let page = connected.then(|| try_in_transaction(super::api::dashboard_html)).and_then(Result::ok);
            match page {
                Some(Ok(html)) => (200, "text/html; charset=utf-8", html),
                Some(Err(e)) => (503, "text/plain; charset=utf-8", format!("dashboard unavailable: {e}\n")),
                None => (503, "text/plain; charset=utf-8", "dashboard unavailable: no database connection\n".into()),
            }
        }
    }
}
