//! Observability: the metrics the extension counts (src/telemetry) served by SQL
//! (`booking_admin.metrics()`, `metrics_text()`) and by a background worker over HTTP
//! (`/metrics` in Prometheus text 0.0.4 or OpenMetrics, `/health`, `/ready`, a dashboard),
//! the SQL gauges each scrape reads, the health report, and alert rules.
//!
//! Counting itself is the shared layer's (`crate::telemetry`, whose module doc says how to add
//! a metric); this feature declares the metrics it counts in SQL (`defs`) and exposes them all.
//!
//! # Layout
//!
//! `defs` (this feature's declarations), `expose` (the two text formats, pure), `http`
//! (request parsing and routing, pure), `dashboard` (the HTML page and its charts, pure),
//! `alerts` (the alert lifecycle, pure), `host` (/proc's CPU, memory and load, pure) are
//! unit-tested without a server; `api` holds the SQL functions,
//! `alert_api` the alert evaluation, `server` the background worker.

pub mod alert_api;
pub mod alerts;
pub mod api;
pub mod charts;
pub mod dashboard;
pub mod defs;
pub mod expose;
pub mod host;
pub mod http;
pub mod server;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What observability tells the shared layer about itself; called from `_PG_init`.
pub fn register() {
    crate::telemetry::declare(defs::METRICS);
}

/// Registers the HTTP worker; called from `_PG_init` when preloaded.
pub fn init() {
    server::register();
}
