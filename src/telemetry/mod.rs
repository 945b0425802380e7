//! Counting: the metrics every part of the extension records, in shared memory, at commit. This
//! is the shared recording facade; exposing them (the text formats, the HTTP worker, the
//! dashboard, alerts) is the observability feature's business (src/metrics).
//!
//! # Adding a metric
//!
//! A static declaration where the thing happens, and its place in that part's `METRICS`, which
//! `crate::register_features` hands to `declare`:
//!
//! ```ignore
//! use crate::telemetry::{self, Change, Metric, LATENCY};
//! pub static DELIVERY_DURATION: Metric = Metric::histogram(
//!     "booking_delivery_duration_seconds", &["channel"], LATENCY, 5, "Time of one delivery attempt.");
//! // counted when the transaction commits (forgotten on abort):
//! telemetry::at_commit(&DELIVERY_DURATION, &["webhook"], Change::Observe(0.042));
//! // or at once, whatever becomes of the transaction:
//! telemetry::now(&WORKER_STARTS, &["delivery"], Change::Add(1));
//! ```
//!
//! Counters get `_total` on their samples (declare them without it). From SQL (a trigger),
//! `booking.metrics_record('name', ARRAY[label values], value)` does what `at_commit` does. A
//! gauge the scrape reads with SQL is declared with `Metric::sql_gauge` and gets its rows from
//! `sql/queries/metrics_*_gauges.sql`.
//!
//! # Layout
//!
//! `defs` (what a metric is, the declared list), `table` (the lock-free series table, pure:
//! unit-tested on a `Vec`), `record` (the backend side: changes pending until commit, the
//! shared-memory arena).

pub mod defs;
pub mod record;
pub mod table;

pub use defs::{declare, declared, find, Kind, Metric, Source, LATENCY, METRICS_DROPPED};
pub use record::{at_commit, now, resolve, snapshot};
pub use table::{Change, Series};

/// The shared layer's own metrics.
pub static METRICS: &[&Metric] = &[&METRICS_DROPPED];

/// Asks for the series table's shared memory; called from `_PG_init` while preloading.
pub fn init() {
    record::init();
}
