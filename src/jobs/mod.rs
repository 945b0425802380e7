//! Jobs: a durable queue (sql/jobs.sql), background workers that run its in-database handlers,
//! and the maintenance scheduler.
//!
//! `backoff`, `cron`, `ids` and `naming` are the pure core; `exec` runs
//! one job (subtransaction or top-level statement), `worker` the worker processes, `api` the
//! Rust-side SQL functions.

pub mod api;
pub mod backoff;
pub mod cron;
pub mod exec;
pub mod ids;
pub mod naming;
pub mod worker;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What jobs tell the shared layer about themselves: the scheduler and runner workers.
pub fn register() {
    crate::launcher::kinds::register_kind(&worker::SCHEDULER);
    crate::launcher::kinds::register_kind(&worker::RUNNER);
}
