//! Reminders and the day's messages: rules that remind a customer before an appointment (by
//! email, SMS and a `booking.reminder` event), rows of their own that follow the appointment
//! (sql/reminders.sql), the signed links a message may carry to confirm or cancel, and a staff
//! member's agenda of the day on a cron schedule in the tenant's zone.
//!
//! Pure core: `quiet` (quiet hours on the wall clock), `links` (the signed tokens); `api` is the
//! Postgres adapter. The delivery worker hands due reminders to their channels
//! (`booking_admin.fan_out_reminders`); cron schedules are the jobs feature's.

pub mod api;
pub mod links;
pub mod quiet;

#[cfg(feature = "pg_test")]
mod pg_tests;
