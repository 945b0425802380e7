//! Every `booking_engine.*` setting, declared here and nowhere else: its default, range, context
//! and the descriptions `pg_settings` shows, registered once from `_PG_init`. The statics are
//! private; code reads a setting through its accessor below, so each one has exactly one
//! reader of its raw value. Users find every setting in docs/configuration.md, which the
//! documentation test checks against `pg_settings`.
//!
//! Adding a setting: a private static, its `define_*` call in `register`, an accessor, and a
//! row in docs/configuration.md.

use std::ffi::{CStr, CString};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

// The clock and the background workers (the shared layer).

/// A fixed "now" for the clock-based rules. Superuser-only, or a customer could book inside
/// the notice period by moving the clock.
static NOW: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static JOB_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static RULE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

// Security and the admin area.

static EXPOSED_SCHEMAS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"public, booking"));
static TRUSTED_PROXIES: GucSetting<i32> = GucSetting::<i32>::new(1);
static EXPLAIN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

// Tenants that run themselves.

static SELF_SERVE_TENANTS: GucSetting<bool> = GucSetting::<bool>::new(true);
static TENANT_ENDPOINT_QUOTA: GucSetting<i32> = GucSetting::<i32>::new(5);
static LINK_RATE_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(60);
static HOLD_RATE_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(20);

// Outbound delivery.

/// Svix's retry schedule (its first attempt is immediate): the wait after the 1st, 2nd, ...
/// failed attempt, the last repeating until the horizon.
pub const DELIVERY_RETRY_SCHEDULE_DEFAULT: &CStr = c"5s, 5min, 30min, 2h, 5h, 10h, 10h";
/// The deny list when the operator sets none: loopback, private, link-local (cloud metadata),
/// carrier-grade NAT, unspecified and unique-local addresses, and `localhost`.
pub const DELIVERY_DENIED_HOSTS_DEFAULT: &CStr =
    c"localhost, *.localhost, 127.0.0.0/8, ::1/128, 0.0.0.0/8, ::/128, 10.0.0.0/8, \
     172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10, fc00::/7, fe80::/10";

static DELIVERY_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(16);
static DELIVERY_RETRY_SCHEDULE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DELIVERY_RETRY_SCHEDULE_DEFAULT));
static DELIVERY_RETRY_HORIZON_S: GucSetting<i32> = GucSetting::<i32>::new(3 * 86_400);
static DELIVERY_BREAKER_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(5);
static DELIVERY_DISABLE_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(5 * 86_400);
static DELIVERY_POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static DELIVERY_ALLOWED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DELIVERY_DENIED_HOSTS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DELIVERY_DENIED_HOSTS_DEFAULT));
static SMTP_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SMTP_PORT: GucSetting<i32> = GucSetting::<i32>::new(587);
static SMTP_SECURITY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"starttls"));
static SMTP_USER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SMTP_PASSWORD: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SMTP_FROM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

// Observability.

static METRICS_LISTEN_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"127.0.0.1"));
static METRICS_PORT: GucSetting<i32> = GucSetting::<i32>::new(0);
static METRICS_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static METRICS_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
static METRICS_SQL_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2000);
static METRICS_TENANT_LABELS: GucSetting<bool> = GucSetting::<bool>::new(false);
static METRICS_MAX_TENANT_SERIES: GucSetting<i32> = GucSetting::<i32>::new(1000);

// Tracing.

static OTLP_ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static OTLP_HEADERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static OTLP_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static TRACE_SERVICE_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"booking_engine"));
/// OpenTelemetry's default sampler is parent-based "always on": every root is sampled.
static TRACE_SAMPLE_RATIO: GucSetting<f64> = GucSetting::<f64>::new(1.0);
static TRACEPARENT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TRACESTATE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// A text setting's value; empty when unset.
fn text(s: &GucSetting<Option<CString>>) -> String {
    s.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A text setting's value; None when unset or empty.
fn non_empty(s: &GucSetting<Option<CString>>) -> Option<String> {
    Some(text(s)).filter(|v| !v.is_empty())
}

/// `booking_engine.now`: the fixed instant the clock-based rules treat as now, when set.
pub fn now_override() -> Option<CString> {
    NOW.get().filter(|t| !t.as_bytes().is_empty())
}

/// `booking_engine.enabled`: whether the background workers do any work.
pub fn enabled() -> bool {
    ENABLED.get()
}

/// `booking_engine.database`: the workers' allow-list as written (None: every database).
pub fn database_allow_list() -> Option<String> {
    non_empty(&DATABASE)
}

/// `booking_engine.job_workers`: job runners per database.
pub fn job_workers() -> i32 {
    JOB_WORKERS.get()
}

/// `booking_engine.max_workers`: per-database workers of all databases at once.
pub fn max_workers() -> i32 {
    MAX_WORKERS.get()
}

/// `booking_engine.poll_interval_ms`: how long an idle worker sleeps without a wake-up.
pub fn poll_interval_ms() -> i32 {
    POLL_INTERVAL_MS.get()
}

/// `booking_engine.rule_timeout_ms`: the deadline of one sandboxed rule (security rules,
/// alert conditions).
pub fn rule_timeout_ms() -> i32 {
    RULE_TIMEOUT_MS.get()
}

/// `booking_engine.trusted_proxies`: proxies in front of the API that append to
/// X-Forwarded-For.
pub fn trusted_proxies() -> usize {
    TRUSTED_PROXIES.get().max(0) as usize
}

/// `booking_engine.explain_timeout_ms`: the deadline of what the query analysis explains or runs.
pub fn explain_timeout_ms() -> i32 {
    EXPLAIN_TIMEOUT_MS.get()
}

/// `booking_engine.self_serve_tenants`: whether signed-in users may create tenants themselves.
pub fn self_serve_tenants() -> bool {
    SELF_SERVE_TENANTS.get()
}

/// `booking_engine.tenant_endpoint_quota`: delivery endpoints a tenant's own people may create.
pub fn tenant_endpoint_quota() -> i32 {
    TENANT_ENDPOINT_QUOTA.get()
}

/// `booking_engine.link_rate_limit`: signed-link requests per client address in 10 minutes.
pub fn link_rate_limit() -> i32 {
    LINK_RATE_LIMIT.get()
}

/// `booking_engine.hold_rate_limit`: holds one client outside the tenant may make in 10 minutes.
pub fn hold_rate_limit() -> i32 {
    HOLD_RATE_LIMIT.get()
}

/// `booking_engine.delivery_concurrency`: the delivery worker's sending threads.
pub fn delivery_concurrency() -> usize {
    DELIVERY_CONCURRENCY.get().max(1) as usize
}

/// `booking_engine.delivery_retry_schedule`, as written.
pub fn delivery_retry_schedule() -> String {
    text(&DELIVERY_RETRY_SCHEDULE)
}

/// `booking_engine.delivery_retry_horizon`, in seconds.
pub fn delivery_retry_horizon_s() -> i32 {
    DELIVERY_RETRY_HORIZON_S.get()
}

/// `booking_engine.delivery_breaker_threshold`: failures in a row that open a circuit (0: never).
pub fn delivery_breaker_threshold() -> i32 {
    DELIVERY_BREAKER_THRESHOLD.get()
}

/// `booking_engine.delivery_disable_after`, in seconds.
pub fn delivery_disable_after_s() -> i32 {
    DELIVERY_DISABLE_AFTER_S.get()
}

/// `booking_engine.delivery_poll_interval`: how often a Citus coordinator's delivery worker
/// looks for new events (0: only when woken).
pub fn delivery_poll_interval_ms() -> i32 {
    DELIVERY_POLL_INTERVAL_MS.get()
}

/// `booking_engine.delivery_allowed_hosts` and `delivery_denied_hosts`, as written.
pub fn delivery_host_lists() -> (String, String) {
    (text(&DELIVERY_ALLOWED_HOSTS), text(&DELIVERY_DENIED_HOSTS))
}

/// `booking_engine.smtp_host` (empty: email is not sent).
pub fn smtp_host() -> String {
    text(&SMTP_HOST)
}

/// `booking_engine.smtp_port`.
pub fn smtp_port() -> u16 {
    SMTP_PORT.get().clamp(1, 65535) as u16
}

/// `booking_engine.smtp_security`: starttls, tls or none.
pub fn smtp_security() -> String {
    text(&SMTP_SECURITY)
}

/// `booking_engine.smtp_user` (empty: no authentication).
pub fn smtp_user() -> String {
    text(&SMTP_USER)
}

/// `booking_engine.smtp_password`.
pub fn smtp_password() -> String {
    text(&SMTP_PASSWORD)
}

/// `booking_engine.smtp_from`: the sender address.
pub fn smtp_from() -> String {
    text(&SMTP_FROM)
}

/// `booking_engine.metrics_listen_address` (None: unset).
pub fn metrics_listen_address() -> Option<String> {
    non_empty(&METRICS_LISTEN_ADDRESS)
}

/// `booking_engine.metrics_port` (0: no HTTP).
pub fn metrics_port() -> i32 {
    METRICS_PORT.get()
}

/// `booking_engine.metrics_token` (None: no token).
pub fn metrics_token() -> Option<String> {
    non_empty(&METRICS_TOKEN)
}

/// `booking_engine.metrics_database` (None: connected to no database).
pub fn metrics_database() -> Option<String> {
    non_empty(&METRICS_DATABASE)
}

/// `booking_engine.metrics_sql_timeout_ms`.
pub fn metrics_sql_timeout_ms() -> i32 {
    METRICS_SQL_TIMEOUT_MS.get()
}

/// `booking_engine.metrics_max_tenant_series`.
pub fn metrics_max_tenant_series() -> u32 {
    METRICS_MAX_TENANT_SERIES.get().max(0) as u32
}

/// `booking_engine.otlp_endpoint` (None: tracing is off).
pub fn otlp_endpoint() -> Option<String> {
    non_empty(&OTLP_ENDPOINT)
}

/// `booking_engine.otlp_headers`, as written (`name=value,...`).
pub fn otlp_headers() -> String {
    text(&OTLP_HEADERS)
}

/// `booking_engine.otlp_timeout_ms`: one export request's deadline.
pub fn otlp_timeout_ms() -> i32 {
    OTLP_TIMEOUT_MS.get()
}

/// `booking_engine.trace_service_name`: the resource's `service.name`.
pub fn trace_service_name() -> String {
    Some(text(&TRACE_SERVICE_NAME)).filter(|s| !s.is_empty()).unwrap_or_else(|| "booking_engine".into())
}

/// `booking_engine.trace_sample_ratio`: the share of new traces (roots) that are recorded.
pub fn trace_sample_ratio() -> f64 {
    TRACE_SAMPLE_RATIO.get()
}

/// `booking_engine.traceparent` and `booking_engine.tracestate`: the caller's context on a
/// direct connection (None when no traceparent is set).
pub fn trace_context_setting() -> Option<(String, Option<String>)> {
    non_empty(&TRACEPARENT).map(|p| (p, non_empty(&TRACESTATE)))
}

/// Registers every setting; called first thing in `_PG_init`.
pub fn register() {
    register_workers();
    register_security_and_admin();
    register_tenants();
    register_delivery();
    register_metrics();
    register_tracing();
}

fn register_workers() {
    GucRegistry::define_string_guc(
        c"booking_engine.now",
        c"Fixed current time for the booking rules (empty: the transaction's now()).",
        c"Notice and advance-booking limits are measured from this instant when set. For tests and demos; superuser only.",
        &NOW,
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
}

fn register_security_and_admin() {
    GucRegistry::define_string_guc(
        c"booking_engine.exposed_schemas",
        c"Schemas an API such as PostgREST exposes, comma-separated.",
        c"The RLS lint flags tables without row level security in these schemas.",
        &EXPOSED_SCHEMAS,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only: a session that could raise it could choose its own audited address.
    // The client address is the X-Forwarded-For entry the outermost trusted proxy wrote (the
    // N-th from the right); entries left of it were written by the client and can say
    // anything. Default 1: Supabase's API gateway is one proxy in front of PostgREST.
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
}

/// Superuser-only (ALTER SYSTEM or ALTER DATABASE ... SET): the tenants' own people cannot
/// lift them.
fn register_tenants() {
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
    GucRegistry::define_int_guc(
        c"booking_engine.link_rate_limit",
        c"How many times one client address may present signed appointment links in 10 minutes (0: no limit).",
        c"booking.confirm_appointment_by_link, cancel_appointment_by_link and describe_appointment_link answer PT429 beyond it; every try counts, valid or not.",
        &LINK_RATE_LIMIT,
        0,
        100000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"booking_engine.hold_rate_limit",
        c"How many holds one client outside the tenant (a signed-in user, else an address) may make in 10 minutes.",
        c"booking.create_hold answers PT429 beyond it; the tenant's own people are not limited.",
        &HOLD_RATE_LIMIT,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Delivery's settings are read by the delivery worker and take effect at a reload (SIGHUP),
/// except `delivery_concurrency`, read when the worker starts.
fn register_delivery() {
    fn string(
        name: &'static CStr,
        short: &'static CStr,
        long: &'static CStr,
        s: &'static GucSetting<Option<CString>>,
        flags: GucFlags,
    ) {
        GucRegistry::define_string_guc(name, short, long, s, GucContext::Sighup, flags);
    }
    fn int(name: &'static CStr, short: &'static CStr, s: &'static GucSetting<i32>, range: (i32, i32), flags: GucFlags) {
        GucRegistry::define_int_guc(name, short, c"", s, range.0, range.1, GucContext::Sighup, flags);
    }
    int(
        c"booking_engine.delivery_concurrency",
        c"Deliveries the delivery worker sends at once (read when it starts).",
        &DELIVERY_CONCURRENCY,
        (1, 256),
        GucFlags::default(),
    );
    string(
        c"booking_engine.delivery_retry_schedule",
        c"Waits between delivery attempts, e.g. '5s, 5min, 30min, 2h'; the last repeats.",
        c"Each wait is spread by up to 20% either way.",
        &DELIVERY_RETRY_SCHEDULE,
        GucFlags::default(),
    );
    int(
        c"booking_engine.delivery_retry_horizon",
        c"How long a delivery is retried before it is given up (dead).",
        &DELIVERY_RETRY_HORIZON_S,
        (1, 30 * 86_400),
        GucFlags::UNIT_S,
    );
    int(
        c"booking_engine.delivery_breaker_threshold",
        c"Failures in a row that open an endpoint's circuit (0: never).",
        &DELIVERY_BREAKER_THRESHOLD,
        (0, 1000),
        GucFlags::default(),
    );
    int(
        c"booking_engine.delivery_disable_after",
        c"An endpoint failing without a success for this long is disabled.",
        &DELIVERY_DISABLE_AFTER_S,
        (60, 90 * 86_400),
        GucFlags::UNIT_S,
    );
    int(
        c"booking_engine.delivery_poll_interval",
        c"How often a Citus coordinator's delivery worker looks for new events (0: only when woken).",
        &DELIVERY_POLL_INTERVAL_MS,
        (0, 60_000),
        GucFlags::UNIT_MS,
    );
    string(
        c"booking_engine.delivery_allowed_hosts",
        c"Hosts endpoints may call (names, *.suffix, CIDR); empty: any not denied.",
        c"",
        &DELIVERY_ALLOWED_HOSTS,
        GucFlags::default(),
    );
    string(
        c"booking_engine.delivery_denied_hosts",
        c"Hosts endpoints may never call (names, *.suffix, CIDR); wins over the allow list.",
        c"Checked on the URL when an endpoint is saved and on every resolved address when it is called.",
        &DELIVERY_DENIED_HOSTS,
        GucFlags::default(),
    );
    string(
        c"booking_engine.smtp_host",
        c"The SMTP relay for email deliveries (empty: email is not sent).",
        c"",
        &SMTP_HOST,
        GucFlags::default(),
    );
    int(c"booking_engine.smtp_port", c"The SMTP relay's port.", &SMTP_PORT, (1, 65535), GucFlags::default());
    string(c"booking_engine.smtp_security", c"starttls, tls or none.", c"", &SMTP_SECURITY, GucFlags::default());
    string(
        c"booking_engine.smtp_user",
        c"The SMTP user (empty: no authentication).",
        c"",
        &SMTP_USER,
        GucFlags::SUPERUSER_ONLY,
    );
    string(
        c"booking_engine.smtp_password",
        c"The SMTP password; readable by superusers only.",
        c"",
        &SMTP_PASSWORD,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    string(
        c"booking_engine.smtp_from",
        c"The sender address of delivery emails.",
        c"",
        &SMTP_FROM,
        GucFlags::default(),
    );
}

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
    // Read by the counting trigger in SQL (current_setting), not by Rust.
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

/// The exporter reads its settings at every reload; the context and the ratio are read by the
/// session when a span starts.
fn register_tracing() {
    GucRegistry::define_string_guc(
        c"booking_engine.otlp_endpoint",
        c"OTLP/HTTP URL spans are exported to (empty: tracing is off).",
        c"An http(s) URL such as http://collector:4318/v1/traces; a URL without a path gets /v1/traces. Reloaded on SIGHUP.",
        &OTLP_ENDPOINT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // Superuser-only and hidden: collectors take their API keys in these headers.
    GucRegistry::define_string_guc(
        c"booking_engine.otlp_headers",
        c"Extra headers of every export request, as name=value pairs separated by commas.",
        c"Values are URL-decoded, as in OTEL_EXPORTER_OTLP_HEADERS. Reloaded on SIGHUP.",
        &OTLP_HEADERS,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"booking_engine.otlp_timeout_ms",
        c"Deadline of one export request to the OTLP endpoint.",
        c"A request that takes longer counts as failed and is retried with backoff. Reloaded on SIGHUP.",
        &OTLP_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"booking_engine.trace_service_name",
        c"The service.name resource attribute of exported spans.",
        c"Reloaded on SIGHUP.",
        &TRACE_SERVICE_NAME,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"booking_engine.trace_sample_ratio",
        c"Share of new traces that are recorded (0..1); a span with a parent follows the parent.",
        c"Applies to spans that start a trace; a caller's traceparent decides by its sampled flag.",
        &TRACE_SAMPLE_RATIO,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"booking_engine.traceparent",
        c"The caller's W3C traceparent on a direct connection (PostgREST's request headers win).",
        c"Set per session or transaction (SET LOCAL) by clients that do not send it in a sqlcommenter comment.",
        &TRACEPARENT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"booking_engine.tracestate",
        c"The caller's W3C tracestate, with booking_engine.traceparent.",
        c"",
        &TRACESTATE,
        GucContext::Userset,
        GucFlags::default(),
    );
}
