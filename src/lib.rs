//! booking_engine: an appointment-booking back end inside PostgreSQL.

// Every SQL-facing function returns pgrx's ErrorReport, which is large; it is raised at most
// once per call, so its size costs nothing that matters.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

// The shared layer every feature builds on: Postgres plumbing, the clock, the errors, the
// settings, the writer for rows that must survive a rollback, the launcher of the per-database
// workers, and the counting of metrics. It imports nothing from a feature (the test in
// `layering` fails when it does); features tell it what it must know about them from
// `_PG_init` (`register_features`).
pub mod clock;
pub mod errors;
pub mod gucs;
pub mod launcher;
pub mod pg;
pub mod telemetry;
pub mod trace;
pub mod writer;

// The features; each depends on the shared layer, and on another feature only through that
// feature's `facade` module.
pub mod admin;
pub mod availability;
pub mod delivery;
pub mod jobs;
pub mod metrics;
pub mod reminders;
pub mod security;
pub mod slot_store;
pub mod tenants;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/schema.sql",
    name = "schema",
    requires = ["bootstrap", availability::api::is_valid_timezone, availability::api::is_valid_opening_hours,]
);
// The partitioning of the history tables comes first: the job history is one of them, and every
// later file declares its own.
extension_sql_file!("../sql/partitions.sql", name = "partitions", requires = ["schema", clock::clock_now]);
// Install order: the generic job queue and scheduler come right after the core schema, so that
// every feature's file can register its own handlers and scheduled operations at its end.
extension_sql_file!(
    "../sql/jobs.sql",
    name = "jobs",
    requires = [
        "partitions",
        clock::clock_now,
        jobs::api::booking_admin::random_uuids,
        jobs::api::booking_admin::retry_delay_ms,
        jobs::api::booking_admin::wake_workers_at_commit,
        jobs::api::booking_admin::worker_status,
        jobs::api::booking_admin::check_cron,
        jobs::api::booking_admin::cron_next,
    ]
);
// The freeze calendar of the scheduler, the sandbox and the tuner.
extension_sql_file!("../sql/freeze.sql", name = "freeze", requires = ["jobs"]);
extension_sql_file!("../sql/events.sql", name = "events", requires = ["freeze"]);
extension_sql_file!("../sql/access.sql", name = "access", requires = ["schema", "events"]);
extension_sql_file!(
    "../sql/waitlist.sql",
    name = "waitlist",
    requires = ["access", availability::api::tenant_slot_violations, clock::clock_now]
);
extension_sql_file!("../sql/booking.sql", name = "booking", requires = ["waitlist"]);
// Resources, "any staff", holds and caps: their tables, the claims that follow appointments,
// and the placement of bookings and holds the booking functions call.
extension_sql_file!(
    "../sql/resources.sql",
    name = "resources",
    requires = [
        "booking",
        availability::booking::tenant_booking_plan,
        availability::booking::any_staff_slot_arrays,
        tenants::api::booking_internal::new_hold_token,
        tenants::api::booking_internal::parse_hold_token,
        tenants::api::booking_internal::same_token_hash,
        tenants::api::booking_internal::tenant_limits,
        clock::clock_now,
    ]
);
extension_sql_file!(
    "../sql/availability.sql",
    name = "availability",
    requires = [
        "access",
        availability::api::booking_internal::available_slot_arrays,
        availability::api::tenant_slot_arrays,
        availability::api::slot_violations
    ]
);
// The slot store follows the availability and booking functions it reads and wraps.
extension_sql_file!(
    "../sql/slot_store.sql",
    name = "slot_store",
    requires = ["availability", "booking", "resources", slot_store::api::refresh_availability_slots, clock::clock_now]
);
extension_sql_file!(
    "../sql/security.sql",
    name = "security",
    requires = [
        "jobs",
        "slot_store",
        security::api::is_single_select,
        security::api::audit_event,
        security::api::is_within_opening_hours,
        security::api::request_context,
        security::api::booking_admin::scan_pii,
        security::api::booking_admin::evaluate_security_rules,
        security::api::booking_admin::block_client,
        security::api::booking_admin::unblock_client,
        security::api::booking_admin::client_blocked_until,
        clock::clock_now,
    ]
);
extension_sql_file!(
    "../sql/admin.sql",
    name = "admin",
    requires = ["jobs", "freeze", admin::tuner_api::booking_admin::perform_tuning_cycle,]
);
// Database health over time and the DBA's questions about it.
extension_sql_file!("../sql/history.sql", name = "history", requires = ["admin"]);
extension_sql_file!("../sql/portal.sql", name = "portal", requires = ["booking", "availability", "security"]);
extension_sql_file!(
    "../sql/operator.sql",
    name = "operator",
    requires = [
        "admin",
        "history",
        "security",
        "booking",
        admin::api::booking_admin::execute_admin_sql,
        admin::api::booking_admin::check_admin_sql,
        admin::query_api::booking_admin::execute_explain_query,
        admin::query_api::booking_admin::analyze_query,
        trace::api::booking_internal::tracing,
        trace::api::booking_internal::trace_context,
        trace::api::booking_admin::tracing_status,
    ]
);
extension_sql_file!(
    "../sql/delivery.sql",
    name = "delivery",
    requires = [
        "operator",
        delivery::api::booking_internal::generate_webhook_secret,
        delivery::api::booking_internal::check_webhook_secret,
        delivery::api::booking_internal::check_endpoint_url,
        delivery::api::booking_internal::check_template,
        delivery::api::wake_delivery_at_commit,
        delivery::api::delivery_wanted_at_commit,
        delivery::api::booking_internal::normalize_phone,
        delivery::api::booking_internal::check_sms_sender,
        delivery::api::booking_internal::read_sms_inbound,
    ]
);
extension_sql_file!(
    "../sql/observability.sql",
    name = "observability",
    requires = [
        "operator",
        "events",
        "delivery",
        metrics::api::metrics_record,
        metrics::api::booking_admin::metrics,
        metrics::api::booking_admin::metrics_text,
        metrics::alert_api::booking_admin::evaluate_alert_rules,
        metrics::alert_api::booking_admin::check_alert_rule,
        jobs::api::booking_admin::worker_status,
    ]
);
// Tenants that run themselves: invitations, events and the self-administration functions.
extension_sql_file!(
    "../sql/tenants.sql",
    name = "tenants",
    requires = [
        "access",
        "portal",
        "slot_store",
        "delivery",
        tenants::api::booking_internal::new_invitation_token,
        tenants::api::booking_internal::parse_invitation_token,
        tenants::api::booking_internal::same_token_hash,
        tenants::api::booking_internal::tenant_limits,
    ]
);
// Reminders, the signed links they carry, and the staff's agenda: after the tenants'
// administration whose role checks they use, and the delivery they hand their messages to.
extension_sql_file!(
    "../sql/reminders.sql",
    name = "reminders",
    requires = [
        "tenants",
        "delivery",
        "booking",
        reminders::api::booking_internal::quiet_hours_end,
        reminders::api::booking_internal::new_link_key,
        reminders::api::booking_internal::sign_link,
        reminders::api::booking_internal::parse_link,
        reminders::api::booking_internal::link_is_authentic,
        reminders::api::booking_internal::link_rate_limit,
    ]
);
// The exposed API's SECURITY INVOKER entry points, once every implementation exists.
extension_sql_file!(
    "../sql/api.sql",
    name = "api",
    requires = [
        "access",
        "booking",
        "resources",
        "waitlist",
        "availability",
        "slot_store",
        "portal",
        "observability",
        "tenants",
        "reminders"
    ]
);
// Citus support: the distribute function (Citus itself is optional and never required).
extension_sql_file!(
    "../sql/citus.sql",
    name = "citus",
    requires = ["operator", "portal", "availability", "delivery", "observability", "api"]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// What the features tell the shared layer about themselves, once per process: their metrics
/// (the order here is the exposition's), their kinds of background worker (the order is the
/// one the launcher serves them in when its budget is short) and their writer sinks (a batch
/// is written sink by sink in this order). Pure registration, no Postgres call.
pub fn register_features() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        telemetry::declare(telemetry::METRICS);
        telemetry::declare(launcher::METRICS);
        telemetry::declare(trace::METRICS);
        availability::register();
        security::register();
        admin::register();
        jobs::register();
        delivery::register();
        metrics::register();
    });
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloaded = pg::preload::detect();
    gucs::register();
    register_features();
    // Shared memory, hooks and workers can only be asked for while preloading.
    if preloaded {
        writer::init();
        launcher::init();
        telemetry::init();
        trace::init();
        security::init();
        metrics::init();
    }
}

#[cfg(test)]
mod layering;

/// Settings the `#[pg_test]` cluster starts with.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The launcher starts the workers in the test database, where tests about them find them,
    /// but they stay idle (enabled = off): nothing scans, schedules or claims behind the tests'
    /// back.
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'booking_engine'",
            "booking_engine.database = 'pgrx_tests'",
            "booking_engine.enabled = off",
        ]
    }
}
