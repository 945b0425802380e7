//! Database administration: statistics (SQL, sql/admin.sql), a parser-checked sandbox for
//! maintenance statements with an audit trail that survives the caller's rollback, query
//! analysis and an index auto-tuner. Everything lives in schema booking_admin.
//!
//! `policy` is the pure core of the sandbox's rules; `parse` turns Postgres's raw parse trees
//! and catalog into its inputs; `api` exposes the SQL functions. The audit trail is written
//! outside the caller's transaction by `crate::writer`.

pub mod api;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod query_api;
pub mod rules;
pub mod tuner;
pub mod tuner_api;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What the admin area tells the shared layer about itself; called from `_PG_init`.
pub fn register() {
    crate::writer::register_sink(&api::ADMIN_ATTEMPT);
    crate::writer::register_sink(&api::ADMIN_OUTCOME);
}
