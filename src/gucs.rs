//! Every `booking_engine.*` setting, registered once from `_PG_init`.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// A fixed "now" for the clock-based rules. Superuser-only, or a customer could book inside
/// the notice period by moving the clock.
pub static NOW_OVERRIDE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Whether the background workers do any work (they stay registered either way).
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// The databases the background workers may serve (comma-separated); empty: every database
/// where booking_engine is installed.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// How many job runners each database gets.
pub static JOB_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// How many per-database workers (schedulers and runners, all databases together) the
/// launcher may run at once.
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);

/// How long an idle worker sleeps before looking for work again, in milliseconds.
pub static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How long one security rule's condition_sql may run, in milliseconds.
pub static RULE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// Schemas an API exposes (PostgREST's db-schemas); the RLS lint checks their tables.
pub static EXPOSED_SCHEMAS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"public, booking"));

/// How many proxies in front of PostgREST append to `X-Forwarded-For` and are trusted: the
/// client address is the entry the outermost of them wrote (the N-th from the right); entries
/// left of it were written by the client and can say anything. 0: headers are ignored. Default
/// 1: Supabase's API gateway is one proxy in front of PostgREST.
pub static TRUSTED_PROXIES: GucSetting<i32> = GucSetting::<i32>::new(1);

/// The statement deadline of booking_admin.execute_explain_query and analyze_query, in ms.
pub static EXPLAIN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Whether signed-in users may create tenants themselves (booking.create_tenant).
pub static SELF_SERVE_TENANTS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// How many delivery endpoints a tenant's own people may create (booking.create_tenant_endpoint;
/// operators' endpoints do not count against it).
pub static TENANT_ENDPOINT_QUOTA: GucSetting<i32> = GucSetting::<i32>::new(5);

pub fn register() {
    register_metrics();
    GucRegistry::define_string_guc(
        c"booking_engine.now",
        c"Fixed current time for the booking rules (empty: the transaction's now()).",
        c"Notice and advance-booking limits are measured from this instant when set. For tests and demos; superuser only.",
        &NOW_OVERRIDE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"booking_engine.enabled",
        c"Whether booking_engine's background workers run jobs and maintenance.",
        c"Off: the workers stay up but idle. Reloaded on SIGHUP.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // Read by the launcher at every round: a reload changes which databases are served and
    // how many workers each gets, without a restart.
    GucRegistry::define_string_guc(
        c"booking_engine.database",
        c"Allow-list of the databases booking_engine's background workers serve (empty: all).",
        c"Comma-separated database names. Empty serves every database where the extension is installed. Reloaded on SIGHUP.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.job_workers",
        c"Number of job runner background workers in each database.",
        c"Reloaded on SIGHUP: the launcher starts or stops runners to match.",
        &JOB_WORKERS,
        0,
        32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.max_workers",
        c"Most per-database background workers (schedulers and runners of all databases) running at once.",
        c"Schedulers are served first, then runners; what does not fit is reported in worker_status() and the log. Each also needs a max_worker_processes slot. Reloaded on SIGHUP.",
        &MAX_WORKERS,
        0,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.poll_interval_ms",
        c"How long an idle background worker waits before looking for work again.",
        c"Workers are also woken at once when work is enqueued. Reloaded on SIGHUP.",
        &POLL_INTERVAL_MS,
        10,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"booking_engine.rule_timeout_ms",
        c"How long one security rule's condition_sql may run.",
        c"A rule that runs longer is stopped and reported in evaluate_security_rules' errors.",
        &RULE_TIMEOUT_MS,
        10,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"booking_engine.exposed_schemas",
        c"Schemas an API such as PostgREST exposes, comma-separated.",
        c"The RLS lint flags tables without row level security in these schemas.",
        &EXPOSED_SCHEMAS,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only: a session that could raise it could choose its own audited address.
    GucRegistry::define_int_guc(
        c"booking_engine.trusted_proxies",
        c"How many proxies in front of the database's API append to X-Forwarded-For.",
        c"The audited client address is the X-Forwarded-For entry the outermost trusted proxy wrote; 0 ignores the proxy headers.",
        &TRUSTED_PROXIES,
        0,
        16,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.explain_timeout_ms",
        c"Statement deadline of booking_admin.execute_explain_query and analyze_query.",
        c"The statement explained (and, with ANALYZE, run then rolled back) is cancelled after this long.",
        &EXPLAIN_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    // Superuser-only (ALTER SYSTEM or ALTER DATABASE ... SET): the tenants' own people cannot
    // lift them.
    GucRegistry::define_bool_guc(
        c"booking_engine.self_serve_tenants",
        c"Whether signed-in users may create tenants themselves (booking.create_tenant).",
        c"Off: booking.create_tenant answers 42501 and tenants are created by operators only.",
        &SELF_SERVE_TENANTS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.tenant_endpoint_quota",
        c"How many delivery endpoints a tenant's own owners and managers may create.",
        c"booking.create_tenant_endpoint answers PT409 beyond it; operators' endpoints (booking_admin.create_endpoint) do not count.",
        &TENANT_ENDPOINT_QUOTA,
        0,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    crate::delivery::settings::register();
}

// Observability (src/metrics): the /metrics worker and the metric table.

/// Address the metrics worker listens on (loopback by default).
pub static METRICS_LISTEN_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"127.0.0.1"));

/// TCP port of the metrics worker; 0 (the default) serves nothing.
pub static METRICS_PORT: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Bearer token the metrics worker requires (empty: none; then only loopback clients may see
/// the dashboard).
pub static METRICS_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The database whose SQL gauges (queue, violations, alerts) the worker serves.
pub static METRICS_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// Statement deadline of one scrape's SQL part.
pub static METRICS_SQL_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2000);

/// Whether booking operations are also counted per tenant.
pub static METRICS_TENANT_LABELS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Most series of the per-tenant metric; more are counted as dropped.
pub static METRICS_MAX_TENANT_SERIES: GucSetting<i32> = GucSetting::<i32>::new(1000);

fn register_metrics() {
    GucRegistry::define_string_guc(
        c"booking_engine.metrics_listen_address",
        c"Address booking_engine's metrics worker listens on.",
        c"An IPv4 or IPv6 address; the default serves loopback only. Reloaded on SIGHUP.",
        &METRICS_LISTEN_ADDRESS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.metrics_port",
        c"TCP port of booking_engine's /metrics, /health, /ready and dashboard worker (0: off).",
        c"Reloaded on SIGHUP: the worker opens, moves or closes its socket.",
        &METRICS_PORT,
        0,
        65535,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"booking_engine.metrics_token",
        c"Bearer token the metrics worker requires (empty: none).",
        c"Clients send Authorization: Bearer <token>. Reloaded on SIGHUP.",
        &METRICS_TOKEN,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"booking_engine.metrics_database",
        c"Database whose queue, violation and alert gauges the metrics worker serves.",
        c"The worker connects to it at start (server restart to change). Shared-memory metrics cover every database.",
        &METRICS_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.metrics_sql_timeout_ms",
        c"Statement deadline of the SQL part of one scrape.",
        c"When it is exceeded the scrape still serves the shared-memory metrics, with booking_metrics_sql_up 0.",
        &METRICS_SQL_TIMEOUT_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"booking_engine.metrics_tenant_labels",
        c"Whether booking operations are also counted per tenant (booking_tenant_operations_total).",
        c"Off by default: one series per tenant grows with the number of tenants.",
        &METRICS_TENANT_LABELS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.metrics_max_tenant_series",
        c"Most series of booking_tenant_operations_total; more are counted in booking_metrics_dropped_total.",
        c"Each tenant takes one series per operation and outcome.",
        &METRICS_MAX_TENANT_SERIES,
        0,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}
