//! What a metric is, and the list of every metric the extension exposes. Each part of the
//! extension declares its own metrics as statics (`Metric::counter(...)` and friends) and
//! hands them to `declare` from `_PG_init`; the order of declaration is the order of the
//! exposition and the index of each metric in the shared-memory table, the same in every
//! process (they all inherit the postmaster's list).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::table::{MAX_BUCKETS, MAX_DEFS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Where the values come from: counted in shared memory where things happen, or read by SQL
/// at each scrape (states of tables and of the server, which are already stored somewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Counted,
    Sql,
}

/// Latency buckets in seconds, from half a millisecond to a minute.
pub const LATENCY: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0];

/// One metric family.
#[derive(Debug)]
pub struct Metric {
    /// The family name; counters' samples add `_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub source: Source,
    pub labels: &'static [&'static str],
    /// Histogram upper bounds (ascending, at most `table::MAX_BUCKETS`); `+Inf` is implied.
    pub buckets: &'static [f64],
    /// Most series of this metric (more are counted in `booking_metrics_dropped_total`).
    pub max_series: u32,
    /// A cap read from a setting at each new series, instead of `max_series`.
    cap: Option<fn() -> u32>,
    /// The place in the declared list; `usize::MAX` until declared.
    index: AtomicUsize,
}

impl Metric {
    const fn new(
        name: &'static str,
        kind: Kind,
        source: Source,
        labels: &'static [&'static str],
        buckets: &'static [f64],
        max_series: u32,
        help: &'static str,
    ) -> Metric {
        Metric { name, help, kind, source, labels, buckets, max_series, cap: None, index: AtomicUsize::new(usize::MAX) }
    }

    /// A counter counted where things happen.
    pub const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        max_series: u32,
        help: &'static str,
    ) -> Metric {
        Metric::new(name, Kind::Counter, Source::Counted, labels, &[], max_series, help)
    }

    /// A gauge set where things happen.
    pub const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        max_series: u32,
        help: &'static str,
    ) -> Metric {
        Metric::new(name, Kind::Gauge, Source::Counted, labels, &[], max_series, help)
    }

    /// A histogram observed where things happen.
    pub const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
        max_series: u32,
        help: &'static str,
    ) -> Metric {
        Metric::new(name, Kind::Histogram, Source::Counted, labels, buckets, max_series, help)
    }

    /// A gauge the scrape reads with SQL (never counted).
    pub const fn sql_gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
        Metric::new(name, Kind::Gauge, Source::Sql, labels, &[], 0, help)
    }

    /// The series cap comes from `cap` (a setting) rather than `max_series`.
    pub const fn capped_by(self, cap: fn() -> u32) -> Metric {
        Metric { cap: Some(cap), ..self }
    }

    /// The most series this metric may have now.
    pub fn cap(&self) -> u32 {
        self.cap.map_or(self.max_series, |f| f())
    }

    /// Its place in the declared list (None: never declared, so nothing is recorded for it).
    pub fn index(&self) -> Option<usize> {
        Some(self.index.load(Ordering::Relaxed)).filter(|i| *i != usize::MAX)
    }
}

static DECLARED: Mutex<Vec<&'static Metric>> = Mutex::new(Vec::new());

fn declared_list() -> std::sync::MutexGuard<'static, Vec<&'static Metric>> {
    DECLARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds metrics to the exposition, in order; called from `_PG_init`. A metric declared twice
/// keeps its first place.
pub fn declare(metrics: &[&'static Metric]) {
    let mut list = declared_list();
    for m in metrics {
        if m.index().is_some() {
            continue;
        }
        assert!(list.len() < MAX_DEFS, "more than {MAX_DEFS} metrics declared");
        assert!(m.buckets.len() <= MAX_BUCKETS, "{}: more than {MAX_BUCKETS} buckets", m.name);
        m.index.store(list.len(), Ordering::Relaxed);
        list.push(m);
    }
}

/// Every declared metric, in declaration order (`declared()[m.index()] == m`).
pub fn declared() -> Vec<&'static Metric> {
    declared_list().clone()
}

/// A declared metric by its family name.
pub fn find(name: &str) -> Option<&'static Metric> {
    declared_list().iter().copied().find(|m| m.name == name)
}

/// Changes not recorded because their metric reached its series cap or the table was full;
/// the table counts them per metric and the exposition shows them under this family.
pub static METRICS_DROPPED: Metric = Metric::counter(
    "booking_metrics_dropped",
    &["metric"],
    0,
    "Changes not recorded because their metric reached its series cap or the table was full.",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_is_well_formed_and_named_once() {
        crate::register_features();
        let all = declared();
        let name = regex::Regex::new("^[a-z_][a-z0-9_]*$").unwrap();
        for d in &all {
            assert!(name.is_match(d.name), "{}", d.name);
            assert!(!d.name.ends_with("_total"), "{}: counters get _total on their samples", d.name);
            assert!(d.labels.iter().all(|l| name.is_match(l) && *l != "le"), "{}", d.name);
            assert!(d.buckets.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(d.kind == Kind::Histogram, !d.buckets.is_empty(), "{}", d.name);
            assert_eq!(d.source == Source::Counted, d.max_series > 0 || d.name == METRICS_DROPPED.name);
        }
        let mut names: Vec<_> = all.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.iter().enumerate().all(|(i, m)| m.index() == Some(i)));
    }
}
