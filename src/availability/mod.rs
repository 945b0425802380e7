//! Availability: which slots can be booked, and why a proposed time cannot.
//!
//! `zone`, `intervals`, `opening_hours`, `engine`, `resources`, `caps` and `strategy` are the
//! pure core (no pgrx types, tested with plain `cargo test`); `model` reads the inputs of one
//! question; `api` exposes the slot and validation functions, `booking` what bookings and holds
//! ask of the engine; `facade` is what other features may use.

pub mod api;
pub mod booking;
pub mod caps;
pub mod engine;
pub mod facade;
pub mod intervals;
pub mod model;
pub mod opening_hours;
pub mod resources;
pub mod strategy;
pub mod zone;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What availability tells the shared layer about itself: its metric.
pub fn register() {
    crate::telemetry::declare(&[&api::SLOT_QUERIES]);
}
