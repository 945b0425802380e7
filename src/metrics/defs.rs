//! The metrics observability itself owns: what the counting triggers of sql/observability.sql
//! count (booking operations, events, job attempts), the alert notifications, the writer's
//! queue as each scrape reads it, the machine as the metrics worker reads it, and the gauges the
//! scrape reads with SQL. Other metrics are
//! declared where they are counted (see `crate::telemetry`).

use crate::telemetry::{Metric, LATENCY};

pub static BOOKING_OPERATIONS: Metric = Metric::counter(
    "booking_operations",
    &["operation", "outcome", "code"],
    200,
    "Idempotent booking operations (create, reschedule, cancel) finished, by outcome and refusal code; counted at commit.",
);
pub static BOOKING_EVENTS: Metric = Metric::counter(
    "booking_events",
    &["type"],
    100,
    "Events written to booking.events (booking.created, booking.cancelled, waitlist.notified, conflict.detected...); counted at commit.",
);
pub static TENANT_OPERATIONS: Metric = Metric::counter(
    "booking_tenant_operations",
    &["tenant", "operation", "outcome"],
    10_000,
    "booking_operations per tenant, only when booking_engine.metrics_tenant_labels is on (capped by booking_engine.metrics_max_tenant_series).",
)
.capped_by(crate::gucs::metrics_max_tenant_series);
pub static JOBS_PROCESSED: Metric = Metric::counter(
    "booking_jobs_processed",
    &["handler", "outcome"],
    400,
    "Job attempts finished, by handler and outcome (completed, failed, dead); counted at commit.",
);
pub static JOB_DURATION: Metric = Metric::histogram(
    "booking_job_duration_seconds",
    &["handler"],
    LATENCY,
    100,
    "Time from a job's start to its completion or failure, by handler.",
);
pub static ALERT_NOTIFICATIONS: Metric = Metric::counter(
    "booking_alert_notifications",
    &["state"],
    10,
    "Alert notifications written to booking.events, by state (firing, resolved).",
);
pub static WRITER_QUEUE: Metric = Metric::gauge(
    "booking_writer_queue",
    &["state"],
    2,
    "The out-of-transaction writer's queue (audit entries, admin outcomes), all databases: records waiting (state=pending) and its capacity (state=capacity).",
);
pub static WRITER_DROPPED: Metric = Metric::gauge(
    "booking_writer_records_dropped",
    &[],
    1,
    "Records the writer gave up on since the server started (their writer process failed 3 times; each is logged with its content).",
);

pub static HOST_CPU: Metric = Metric::gauge(
    "booking_host_cpu_usage_ratio",
    &[],
    1,
    "Share of the machine's CPU time spent busy over the last 15 s (/proc/stat, read by the metrics worker; Linux only).",
);
pub static HOST_MEMORY_USED: Metric = Metric::gauge(
    "booking_host_memory_used_ratio",
    &[],
    1,
    "Share of the machine's memory not available to new work: 1 - MemAvailable / MemTotal (/proc/meminfo; Linux only).",
);
pub static HOST_MEMORY_TOTAL: Metric = Metric::gauge(
    "booking_host_memory_total_bytes",
    &[],
    1,
    "The machine's memory (/proc/meminfo MemTotal; Linux only).",
);
pub static HOST_LOAD: Metric =
    Metric::gauge("booking_host_load1", &[], 1, "The one-minute load average (/proc/loadavg; Linux only).");
pub static HOST_DISK_USED: Metric = Metric::gauge(
    "booking_host_disk_used_ratio",
    &["path"],
    2,
    "Share of the file system holding the data directory (path=data_directory) the server can no longer use: 1 - available / total (statvfs; blocks reserved for root count as used).",
);
pub static HOST_DISK_FREE: Metric = Metric::gauge(
    "booking_host_disk_free_bytes",
    &["path"],
    2,
    "Bytes left to the server on the file system holding the data directory (statvfs).",
);

pub static JOBS: Metric = Metric::sql_gauge("booking_jobs", &["status"], "Jobs in the queue by status.");
pub static OLDEST_PENDING_JOB: Metric = Metric::sql_gauge(
    "booking_oldest_pending_job_age_seconds",
    &[],
    "Age of the oldest job due and not yet claimed (0 when none).",
);
pub static VIOLATIONS_OPEN: Metric =
    Metric::sql_gauge("booking_security_violations_open", &["severity"], "Unresolved security violations by severity.");
pub static ALERTS_FIRING: Metric =
    Metric::sql_gauge("booking_alerts_firing", &["severity"], "Alert instances firing, by severity.");
pub static WORKERS_UP: Metric = Metric::sql_gauge(
    "booking_workers_up",
    &["worker"],
    "booking_engine background workers connected to this database, by kind.",
);
pub static CONNECTIONS: Metric =
    Metric::sql_gauge("booking_pg_connections", &["state"], "Client backends by state (pg_stat_activity).");
pub static MAX_CONNECTIONS: Metric =
    Metric::sql_gauge("booking_pg_max_connections", &[], "The server's max_connections.");
pub static CACHE_HIT_RATIO: Metric = Metric::sql_gauge(
    "booking_pg_cache_hit_ratio",
    &[],
    "Share of this database's block reads served from shared buffers (pg_stat_database).",
);
pub static LONGEST_TRANSACTION: Metric =
    Metric::sql_gauge("booking_pg_longest_transaction_seconds", &[], "Age of the oldest open transaction.");
pub static XID_AGE: Metric = Metric::sql_gauge(
    "booking_pg_database_xid_age",
    &[],
    "age(datfrozenxid) of this database: wraparound danger above about 1.5 billion.",
);
pub static REPLICATION_SLOT_LAG: Metric =
    Metric::sql_gauge("booking_pg_replication_slot_lag_bytes", &["slot"], "WAL retained by each replication slot.");
pub static DELIVERIES: Metric = Metric::sql_gauge(
    "booking_deliveries",
    &["status"],
    "Deliveries by status (pending, sending, delivered, dead): the delivery backlog.",
);
pub static OLDEST_PENDING_DELIVERY: Metric = Metric::sql_gauge(
    "booking_oldest_pending_delivery_age_seconds",
    &[],
    "Age of the oldest delivery due and not yet sent (0 when none).",
);
pub static WAITLIST_CONVERSION: Metric = Metric::sql_gauge(
    "booking_waitlist_conversion_ratio",
    &[],
    "Share of the waitlist entries of the last 30 days whose customer booked the service (booking_admin.waitlist_conversion).",
);
pub static SQL_UP: Metric = Metric::sql_gauge(
    "booking_metrics_sql_up",
    &[],
    "1 when this scrape's SQL part answered, 0 when it failed (shared-memory metrics are served either way).",
);

/// Observability's metrics, in exposition order.
pub static METRICS: &[&Metric] = &[
    &BOOKING_OPERATIONS,
    &BOOKING_EVENTS,
    &TENANT_OPERATIONS,
    &JOBS_PROCESSED,
    &JOB_DURATION,
    &ALERT_NOTIFICATIONS,
    &WRITER_QUEUE,
    &WRITER_DROPPED,
    &HOST_CPU,
    &HOST_MEMORY_USED,
    &HOST_MEMORY_TOTAL,
    &HOST_LOAD,
    &HOST_DISK_USED,
    &HOST_DISK_FREE,
    &JOBS,
    &OLDEST_PENDING_JOB,
    &VIOLATIONS_OPEN,
    &ALERTS_FIRING,
    &WORKERS_UP,
    &CONNECTIONS,
    &MAX_CONNECTIONS,
    &CACHE_HIT_RATIO,
    &LONGEST_TRANSACTION,
    &XID_AGE,
    &REPLICATION_SLOT_LAG,
    &DELIVERIES,
    &OLDEST_PENDING_DELIVERY,
    &WAITLIST_CONVERSION,
    &SQL_UP,
];
