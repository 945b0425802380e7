//! Small conversions between pgrx's types and the pure core's: uuids, instants as microseconds
//! since the Unix epoch (checked: an instant outside what either side holds is 22008, never a
//! wrapped value), dates, and required arguments.

use chrono::NaiveDate;
use pgrx::datetime::{Date, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::Uuid as PgUuid;
use uuid::Uuid;

use crate::errors::{DomainError, DomainResult};

/// Microseconds since 1970-01-01 00:00 UTC.
pub type UnixMicros = i64;

/// Microseconds between the Unix epoch and Postgres's (2000-01-01).
pub const PG_EPOCH_OFFSET: UnixMicros = 946_684_800_000_000;

/// The instant of a finite timestamptz. Infinite or beyond what Unix microseconds hold: 22008.
pub fn to_unix_micros(ts: TimestampWithTimeZone) -> DomainResult<UnixMicros> {
    if !ts.is_finite() {
        return Err(DomainError::DatetimeOverflow("timestamp must be finite".into()));
    }
    pg_micros_to_unix(pg_sys::TimestampTz::from(ts))
}

/// Postgres's microseconds (since 2000) as Unix microseconds, checked.
pub fn pg_micros_to_unix(t: pg_sys::TimestampTz) -> DomainResult<UnixMicros> {
    t.checked_add(PG_EPOCH_OFFSET)
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("timestamp {t} µs after 2000 is out of range")))
}

/// The timestamptz of an instant; one outside Postgres's range is 22008.
pub fn from_unix_micros(t: UnixMicros) -> DomainResult<TimestampWithTimeZone> {
    t.checked_sub(PG_EPOCH_OFFSET)
        .and_then(|pg| TimestampWithTimeZone::try_from(pg).ok())
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("instant {t} µs after 1970 is outside Postgres's range")))
}

/// The real clock (not the transaction's start), in Unix microseconds.
pub fn wall_clock_micros() -> UnixMicros {
    // SAFETY: reads the system clock; the value is always far inside i64's range.
    unsafe { pg_sys::GetCurrentTimestamp() }.saturating_add(PG_EPOCH_OFFSET)
}

/// A finite date in years 1..9999 (the pure core's calendar); else 22008 naming `what`.
pub fn to_naive_date(d: Date, what: &str) -> DomainResult<NaiveDate> {
    if !d.is_finite() {
        return Err(DomainError::DatetimeOverflow(format!("{what} must be a finite date")));
    }
    NaiveDate::from_ymd_opt(d.year(), d.month() as u32, d.day() as u32)
        .filter(|nd| (1..=9999).contains(&chrono::Datelike::year(nd)))
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("{what} {d} is outside the supported years 1..9999")))
}

pub fn to_pg_date(d: NaiveDate) -> DomainResult<Date> {
    use chrono::Datelike;
    Date::new(d.year(), d.month() as u8, d.day() as u8).map_err(|e| DomainError::DatetimeOverflow(e.to_string()))
}

pub fn to_uuid(id: PgUuid) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

pub fn to_pg_uuid(id: Uuid) -> PgUuid {
    PgUuid::from_bytes(*id.as_bytes())
}

/// A required argument: NULL is 22023 naming it.
pub fn require<T>(value: Option<T>, name: &str) -> DomainResult<T> {
    value.ok_or_else(|| DomainError::InvalidParameter(format!("{name} must not be NULL")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_instants_are_errors_not_wrapped_values() {
        assert!(pg_micros_to_unix(i64::MAX - 1).is_err());
        assert_eq!(pg_micros_to_unix(0).unwrap(), PG_EPOCH_OFFSET);
        assert!(require::<i32>(None, "x").unwrap_err().to_string().contains("x must not be NULL"));
    }
}
