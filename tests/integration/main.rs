//! Integration tests over real connections to the cluster `make test` starts
//! (`BOOKING_ENGINE_TEST_DSN`). Built only with `--features integration`, so that
//! `cargo test --lib` and `cargo pgrx test` do not need a cluster.

mod admin;
mod advisor;
mod availability;
mod booking;
mod citus;
mod common;
mod databases;
mod delivery;
mod docs;
mod dump;
mod external_worker;
mod fuzz;
mod health;
mod jobs;
mod observability;
mod operator;
mod postgrest;
mod receiver;
mod reminders;
mod resources;
mod security;
mod slot_store;
mod tenants;
mod tracing;
mod writer;
