//! Security automation: rate limiting, the audit log, PII discovery and the rule engine.
//!
//! `ratelimit`, `context`, `pii`, `audit` and `rules` are the pure core (plain `cargo test`);
//! `shmem`, `request` and `hook` are the Postgres machinery (the rate counters in shared memory,
//! the request context, the function-manager hook); `api` holds the SQL functions. Rules run
//! in the shared sandbox (`crate::pg::sandbox`); entries that must outlive a rollback go
//! through `crate::writer`.

pub mod api;
pub mod audit;
pub mod context;
pub mod hook;
pub mod pii;
pub mod ratelimit;
pub mod request;
pub mod rules;
pub mod shmem;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What security tells the shared layer about itself; called from `_PG_init`.
pub fn register() {
    crate::writer::register_sink(&audit::AUDIT_SINK);
    crate::telemetry::declare(&[&api::SECURITY_RULES_EVALUATED, &api::PII_SCANS, &api::RATE_LIMIT_REJECTIONS]);
}

/// Sets up the rate counters and the audit hook; called from `_PG_init` when preloaded.
pub fn init() {
    shmem::init();
    hook::install();
}
