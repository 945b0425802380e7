//! Security automation: rate limiting, the audit log, PII discovery and the rule engine.
//!
//! `ratelimit`, `context`, `pii`, `audit` and `rules` are the pure core (plain `cargo test`);
//! `shmem`, `request`, `hook` and `rule_runner` are the Postgres machinery (the rate counters in
//! shared memory, the request context, the function-manager hook, the rule sandbox); `api`
//! holds the SQL functions. Entries that must outlive a rollback go through `crate::writer`.

pub mod api;
pub mod audit;
pub mod context;
pub mod hook;
pub mod pii;
pub mod ratelimit;
pub mod request;
pub mod rule_runner;
pub mod rules;
pub mod shmem;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Sets up the rate counters and the audit hook; called from `_PG_init` when preloaded.
pub fn init() {
    shmem::init();
    hook::install();
}
