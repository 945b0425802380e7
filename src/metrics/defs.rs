//! Every metric the extension exposes, declared once here (see the module doc for the API).

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

#[derive(Debug)]
pub struct Def {
    /// The family name; counters' samples add `_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub source: Source,
    pub labels: &'static [&'static str],
    /// Histogram upper bounds (ascending, at most `registry::MAX_BUCKETS`); `+Inf` is implied.
    pub buckets: &'static [f64],
    /// Most series of this metric (more are counted in `booking_metrics_dropped_total`).
    pub max_series: u32,
}

/// Latency buckets in seconds, from half a millisecond to a minute.
pub const LATENCY: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0];

macro_rules! metrics {
    ($($id:ident = $kind:ident $source:ident $name:literal [$($label:literal),*] $buckets:expr, $max:expr, $help:literal;)*) => {
        /// A metric, by its place in `DEFS`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Metric { $($id),* }
        /// Every metric, in declaration order (`ALL[i] as usize == i`).
        pub const ALL: &[Metric] = &[$(Metric::$id),*];
        pub static DEFS: &[Def] = &[$(Def {
            name: $name, help: $help, kind: Kind::$kind, source: Source::$source,
            labels: &[$($label),*], buckets: $buckets, max_series: $max,
        }),*];
    };
}

metrics! {
    BookingOperations = Counter Counted "booking_operations" ["operation", "outcome", "code"] &[], 200,
        "Idempotent booking operations (create, reschedule, cancel) finished, by outcome and refusal code; counted at commit.";
    BookingEvents = Counter Counted "booking_events" ["type"] &[], 100,
        "Events written to booking.events (booking.created, booking.cancelled, waitlist.notified, conflict.detected...); counted at commit.";
    TenantOperations = Counter Counted "booking_tenant_operations" ["tenant", "operation", "outcome"] &[], 10_000,
        "booking_operations per tenant, only when booking_engine.metrics_tenant_labels is on (capped by booking_engine.metrics_max_tenants).";
    SlotQueries = Histogram Counted "booking_slot_query_duration_seconds" ["function"] LATENCY, 20,
        "Time to compute available slots, by SQL function; observed at commit.";
    JobsProcessed = Counter Counted "booking_jobs_processed" ["handler", "outcome"] &[], 400,
        "Job attempts finished, by handler and outcome (completed, failed, dead); counted at commit.";
    JobDuration = Histogram Counted "booking_job_duration_seconds" ["handler"] LATENCY, 100,
        "Time from a job's start to its completion or failure, by handler.";
    SecurityRulesEvaluated = Counter Counted "booking_security_rules_evaluated" [] &[], 1,
        "Security rule evaluations (one per rule per run).";
    PiiScans = Counter Counted "booking_pii_scans" [] &[], 1,
        "PII scans run (booking_admin.scan_pii).";
    RateLimitRejections = Counter Counted "booking_rate_limit_rejections" ["bucket"] &[], 50,
        "Requests refused by booking.check_rate_limit, by bucket (counted when refused, even if the caller rolls back).";
    WorkerStarts = Counter Counted "booking_worker_starts" ["worker"] &[], 20,
        "Background worker starts by kind; more than one per kind means restarts.";
    AlertNotifications = Counter Counted "booking_alert_notifications" ["state"] &[], 10,
        "Alert notifications written to booking.events, by state (firing, resolved).";
    DeliveryAttempts = Counter Counted "booking_delivery_attempts" ["channel", "outcome"] &[], 20,
        "Delivery attempts (webhook, slack, email) by outcome: delivered, retry, dead, gone (410), counted when the delivery worker records them.";
    DeliveryDuration = Histogram Counted "booking_delivery_duration_seconds" ["channel"] LATENCY, 5,
        "Time of one delivery attempt, from the request to the receiver's answer (or the failure), by channel.";
    WriterQueue = Gauge Counted "booking_writer_queue" ["state"] &[], 2,
        "The out-of-transaction writer's queue (audit entries, admin outcomes), all databases: records waiting (state=pending) and its capacity (state=capacity).";
    WriterDropped = Gauge Counted "booking_writer_records_dropped" [] &[], 1,
        "Records the writer gave up on since the server started (their writer process failed 3 times; each is logged with its content).";
    MetricsDropped = Counter Counted "booking_metrics_dropped" ["metric"] &[], 0,
        "Changes not recorded because their metric reached its series cap or the table was full.";
    Jobs = Gauge Sql "booking_jobs" ["status"] &[], 0,
        "Jobs in the queue by status.";
    OldestPendingJob = Gauge Sql "booking_oldest_pending_job_age_seconds" [] &[], 0,
        "Age of the oldest job due and not yet claimed (0 when none).";
    ViolationsOpen = Gauge Sql "booking_security_violations_open" ["severity"] &[], 0,
        "Unresolved security violations by severity.";
    AlertsFiring = Gauge Sql "booking_alerts_firing" ["severity"] &[], 0,
        "Alert instances firing, by severity.";
    WorkersUp = Gauge Sql "booking_workers_up" ["worker"] &[], 0,
        "booking_engine background workers connected to this database, by kind.";
    Connections = Gauge Sql "booking_pg_connections" ["state"] &[], 0,
        "Client backends by state (pg_stat_activity).";
    MaxConnections = Gauge Sql "booking_pg_max_connections" [] &[], 0,
        "The server's max_connections.";
    CacheHitRatio = Gauge Sql "booking_pg_cache_hit_ratio" [] &[], 0,
        "Share of this database's block reads served from shared buffers (pg_stat_database).";
    LongestTransaction = Gauge Sql "booking_pg_longest_transaction_seconds" [] &[], 0,
        "Age of the oldest open transaction.";
    XidAge = Gauge Sql "booking_pg_database_xid_age" [] &[], 0,
        "age(datfrozenxid) of this database: wraparound danger above about 1.5 billion.";
    ReplicationSlotLag = Gauge Sql "booking_pg_replication_slot_lag_bytes" ["slot"] &[], 0,
        "WAL retained by each replication slot.";
    Deliveries = Gauge Sql "booking_deliveries" ["status"] &[], 0,
        "Deliveries by status (pending, sending, delivered, dead): the delivery backlog.";
    OldestPendingDelivery = Gauge Sql "booking_oldest_pending_delivery_age_seconds" [] &[], 0,
        "Age of the oldest delivery due and not yet sent (0 when none).";
    ScrapeErrors = Gauge Sql "booking_metrics_sql_up" [] &[], 0,
        "1 when this scrape's SQL part answered, 0 when it failed (shared-memory metrics are served either way).";
}

impl Metric {
    pub fn def(self) -> &'static Def {
        &DEFS[self as usize]
    }
}

/// A metric by its family name.
pub fn find(name: &str) -> Option<usize> {
    DEFS.iter().position(|d| d.name == name)
}

#[cfg(test)]
pub fn index_of(name: &str) -> usize {
    find(name).expect("declared")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_well_formed() {
        let name = regex::Regex::new("^[a-z_][a-z0-9_]*$").unwrap();
        assert!(DEFS.len() <= super::super::registry::MAX_DEFS);
        for d in DEFS {
            assert!(name.is_match(d.name), "{}", d.name);
            assert!(!d.name.ends_with("_total"), "{}: counters get _total on their samples", d.name);
            assert!(d.labels.iter().all(|l| name.is_match(l) && *l != "le"), "{}", d.name);
            assert!(d.buckets.len() <= super::super::registry::MAX_BUCKETS);
            assert!(d.buckets.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(d.kind == Kind::Histogram, !d.buckets.is_empty(), "{}", d.name);
            assert_eq!(d.source == Source::Counted, d.max_series > 0 || d.name == "booking_metrics_dropped");
        }
        let mut names: Vec<_> = DEFS.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DEFS.len());
    }
}
