//! Outbound delivery: booking.events fanned out to webhooks (Standard Webhooks signatures),
//! Slack, email and SMS, sent by a per-database background worker with retries, an attempts
//! ledger and a circuit breaker per endpoint. The SQL side is sql/delivery.sql.
//!
//! Pure core: `signature`, `sms` (phone numbers, the providers' requests and callbacks),
//! `policy` (what follows an attempt), `hosts` (which URLs may be called), `template`,
//! `message`, `dispatch` (the worker's queue per endpoint); `send` is the network side
//! (threads, no Postgres); `worker` and `api` are the Postgres adapters; `settings` what the
//! worker makes of its settings (declared in `crate::gucs`).

pub mod api;
pub mod dispatch;
pub mod hosts;
pub mod message;
pub mod policy;
pub mod send;
pub mod settings;
pub mod signature;
pub mod sms;
pub mod template;
pub mod worker;

#[cfg(feature = "pg_test")]
mod pg_tests;

/// What delivery tells the shared layer about itself: its worker and its metrics.
pub fn register() {
    crate::launcher::kinds::register_kind(&worker::DELIVERY);
    crate::telemetry::declare(&[&worker::DELIVERY_ATTEMPTS, &worker::DELIVERY_DURATION]);
}
