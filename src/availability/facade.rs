//! What other features may use of availability: a small Rust API over the engine (the model of
//! one question, read with the engine's own prepared query; the calendar of one staff member;
//! the interval and time helpers), never its SQL adapters. The slot store computes its rows
//! with it; security checks opening hours with it.

pub use super::engine::{Calendar, Candidate, DayHours, Plan};
pub use super::intervals::{intersect, normalize, subtract, Interval};
pub use super::model::{from_micros, load_model, to_micros, Model, Query};
pub use super::opening_hours::parse as parse_opening_hours;
pub use super::zone::{seconds_of_day, Micros, MICROS_PER_HOUR, MICROS_PER_MINUTE};
