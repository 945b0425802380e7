//! Availability: which slots can be booked, and why a proposed time cannot.
//!
//! `zone`, `intervals`, `opening_hours` and `engine` are the pure core (no pgrx types, tested
//! with plain `cargo test`); `api` reads the inputs and exposes the SQL functions.

pub mod api;
pub mod engine;
pub mod intervals;
pub mod opening_hours;
pub mod zone;

#[cfg(feature = "pg_test")]
mod pg_tests;
