//! The slot store: `booking.availability_slots`, every slot the availability engine offers
//! over a horizon, ranked, kept exact inside each transaction that changes an input.
//!
//! `score` is the pure ranking; `api` recomputes locked staff-days with the availability
//! engine's `Calendar::plan` and writes the difference. The triggers that decide which
//! staff-days a change touches are SQL (sql/slot_store.sql).

pub mod api;
pub mod diff;
pub mod score;

#[cfg(feature = "pg_test")]
mod pg_tests;
