//! What other features may use of availability: a small Rust API over the engine (the model of
//! one question, read with the engine's own prepared query; the calendar of one staff member;
//! the interval and time helpers; a time zone's offsets from Postgres's tz data and the wall
//! clock read through them), never its SQL adapters. The slot store computes its rows with it;
//! security checks opening hours with it; jobs evaluates cron schedules and reminders their
//! quiet hours in a zone by the same rules the engine books by.

pub use super::engine::{Calendar, Candidate, DayHours, Plan};
pub use super::intervals::{intersect, normalize, subtract, Interval};
pub use super::model::{from_micros, load_model, load_zone, to_micros, Model, Query};
pub use super::opening_hours::parse as parse_opening_hours;
pub use super::zone::{
    local_micros, seconds_of_day, LocalTime, Micros, Zone, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE,
    MICROS_PER_SECOND,
};
