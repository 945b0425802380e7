//! The extension's notion of "now", shared by every feature: `booking_engine.now` when a
//! superuser fixed it (tests, demos), else Postgres's clock.

use pgrx::prelude::*;

use crate::errors::DomainError;
use crate::pg::convert::{to_unix_micros, wall_clock_micros, UnixMicros};

/// The fixed instant of `booking_engine.now`, if set.
fn fixed_now() -> Option<Result<TimestampWithTimeZone, DomainError>> {
    let text = crate::gucs::now_override()?;
    // SAFETY: timestamptz_in takes a NUL-terminated string, a type oid and a typmod.
    let ts = unsafe {
        pgrx::direct_function_call::<TimestampWithTimeZone>(
            pg_sys::timestamptz_in,
            &[text.as_c_str().into_datum(), pg_sys::InvalidOid.into_datum(), (-1i32).into_datum()],
        )
    };
    Some(ts.ok_or_else(|| DomainError::InvalidDatetimeFormat("booking_engine.now is not a timestamp".into())))
}

/// The instant the clock-based rules (notice, advance limit) treat as now: the setting
/// `booking_engine.now` when a superuser set it (tests, demos), else the transaction's now().
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn clock_now() -> Result<TimestampWithTimeZone, pgrx::pg_sys::panic::ErrorReport> {
    match fixed_now() {
        Some(fixed) => Ok(fixed?),
        // SAFETY: reads the transaction's start time.
        None => Ok(unsafe { TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp()) }
            .map_err(|_| DomainError::Internal("transaction start time out of range".into()))?),
    }
}

/// Milliseconds since the Unix epoch on the system clock: the one time base of deadlines kept
/// in shared memory and of what the delivery threads measure. Not `booking_engine.now`: these
/// are real waits, and it reads no Postgres state, so any thread may call it.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Unix microseconds: `booking_engine.now` when set, else the real clock (not the
/// transaction's start: a rate window or an audit time must move during a long transaction).
pub fn now_micros() -> UnixMicros {
    match fixed_now() {
        Some(fixed) => fixed.ok().and_then(|t| to_unix_micros(t).ok()).unwrap_or_else(wall_clock_micros),
        None => wall_clock_micros(),
    }
}
