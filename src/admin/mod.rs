//! Database administration: statistics (SQL, sql/admin.sql), a parser-checked sandbox for
//! maintenance statements with an audit trail that survives the caller's rollback, query
//! analysis and an index auto-tuner. Everything lives in schema booking_admin.
//!
//! `sandbox` is the pure core of the sandbox's rules; `parse` turns Postgres's raw parse trees
//! and catalog into its inputs; `audit` writes outside the caller's transaction; `txn` holds
//! subtransactions and deadlines; `api` exposes the SQL functions.

pub mod api;
pub mod audit;
pub mod parse;
pub mod plan;
pub mod query_api;
pub mod rules;
pub mod sandbox;
pub mod tuner;
pub mod tuner_api;
pub mod txn;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Called from `_PG_init`: the audit queue lives in shared memory, which only a preloaded
/// library may ask for.
pub fn init() {
    // SAFETY: reading a flag the postmaster sets while it loads shared_preload_libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        audit::init();
    }
}
