//! Observability: metrics counted in shared memory at commit, served by SQL
//! (`booking_admin.metrics()`, `metrics_text()`) and by a background worker over HTTP
//! (`/metrics` in Prometheus text 0.0.4 or OpenMetrics, `/health`, `/ready`).
//!
//! # Adding a metric
//!
//! One declaration in `defs.rs` (`metrics! { ... }`): a variant name, the kind (`Counter`,
//! `Gauge`, `Histogram`), where the values come from (`Counted` here, or `Sql` for a gauge the
//! scrape reads with a query), the family name (counters without `_total`), the label names,
//! the histogram buckets (`&[]` otherwise, `LATENCY` for durations in seconds), the cap on its
//! series, and the help text. Then one call where the thing happens:
//!
//! ```ignore
//! use crate::metrics::{record, defs::Metric, registry::Change};
//! // counted when the transaction commits (forgotten on abort):
//! record::at_commit(Metric::DeliveriesSent, &["webhook", "ok"], Change::Add(1));
//! record::at_commit(Metric::DeliveryLatency, &["webhook"], Change::Observe(0.042));
//! // or at once, whatever becomes of the transaction:
//! record::now(Metric::WorkerStarts, &["delivery"], Change::Add(1));
//! ```
//!
//! From SQL (a trigger, a PL/pgSQL function): `booking.metrics_record('name', ARRAY[label
//! values], value)` does the same as `at_commit`. A `Sql` gauge needs a row
//! `(metric, label values, value)` in `sql/queries/metrics_*_gauges.sql` instead.
//!
//! # Layout
//!
//! `defs` (declarations), `registry` (the lock-free series table, pure), `expose` (the two
//! text formats, pure), `http` (request parsing and routing, pure), `dashboard` (the HTML page, pure), `alerts` (the alert lifecycle, pure) are unit-tested without a
//! server; `record` is the backend side (pending changes, the commit hook, the shared-memory
//! arena), `api` the SQL functions, `alert_api` the alert evaluation, `server` the background
//! worker.

pub mod alert_api;
pub mod alerts;
pub mod api;
pub mod dashboard;
pub mod defs;
pub mod expose;
pub mod http;
pub mod record;
pub mod registry;
pub mod server;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Sets up the metric table and registers the HTTP worker; called from `_PG_init` when
/// preloaded.
pub fn init() {
    record::init();
    server::register();
}
