//! Security automation: rate limiting, the audit log, PII discovery and the rule engine.
//!
//! `ratelimit`, `context`, `pii`, `audit` and `rules` are the pure core (plain `cargo test`);
//! `shmem`, `flusher`, `hook` and `sandbox` are the Postgres machinery (shared memory, the
//! audit flusher worker, the function-manager hook, the rule sandbox); `api` holds the SQL
//! functions.

pub mod api;
pub mod audit;
pub mod context;
pub mod flusher;
pub mod hook;
pub mod pii;
pub mod ratelimit;
pub mod rules;
pub mod sandbox;
pub mod shmem;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Sets up shared memory and the audit hook; only when preloaded (called from `_PG_init`).
pub fn init() {
    // SAFETY: reading a flag the postmaster sets while it loads shared_preload_libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
        hook::install();
    }
}
