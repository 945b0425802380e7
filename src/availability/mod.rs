//! Availability: which slots can be booked, and why a proposed time cannot.
//!
//! `zone`, `intervals`, `opening_hours` and `engine` are the pure core (no pgrx types, tested
//! with plain `cargo test`); `model` reads the inputs of one question; `api` exposes the SQL
//! functions; `facade` is what other features may use.

pub mod api;
pub mod engine;
pub mod facade;
pub mod intervals;
pub mod model;
pub mod opening_hours;
pub mod zone;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What availability tells the shared layer about itself: its metric.
pub fn register() {
    crate::telemetry::declare(&[&api::SLOT_QUERIES]);
}
