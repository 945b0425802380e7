//! Subtransactions and a statement deadline for the admin adapters: a statement that fails
//! (or is only tried out) is rolled back on its own, leaving the caller's transaction usable.

use std::panic::UnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary;
use pgrx::prelude::*;

use crate::errors::sqlstate_text;

fn report(e: &CaughtError) -> &ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

/// A caught Postgres error as (SQLSTATE, message).
pub fn describe_error(e: &CaughtError) -> (String, String) {
    let r = report(e);
    (sqlstate_text(r.sql_error_code()), r.message().to_string())
}

/// The caught error raised again as it was (code, message, detail, hint), without the Rust
/// backtrace a plain rethrow would add to its detail.
pub fn reraise(e: CaughtError) -> ErrorReport {
    let r = report(&e);
    let mut out = ErrorReport::new(r.sql_error_code(), r.message().to_string(), "booking_engine");
    if let Some(d) = r.detail() {
        out = out.set_detail(d);
    }
    if let Some(h) = r.hint() {
        out = out.set_hint(h);
    }
    out
}

/// Run `f` in a subtransaction: released into the caller's transaction when `keep` and it
/// succeeded (its locks and changes stay), rolled back otherwise. An error comes back as a
/// value, with the subtransaction already rolled back, for the caller to record and rethrow.
pub fn subtransaction<R>(keep: bool, f: impl FnOnce() -> R + UnwindSafe) -> Result<R, CaughtError> {
    // SAFETY: the classic PL pattern (plpython's PLy_spi_subtransaction_*): remember the memory
    // context and resource owner, begin, and restore both after release or rollback.
    unsafe {
        let cx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cx);
        let result = PgTryBuilder::new(move || Ok(f())).catch_others(Err).execute();
        if keep && result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cx);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

#[allow(non_camel_case_types)]
type TimeoutId = u32;
/// utils/timeout.h's STATEMENT_TIMEOUT (not in pgrx's bindings).
const STATEMENT_TIMEOUT: TimeoutId = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: TimeoutId, delay_ms: i32);
    fn enable_timeout_at(id: TimeoutId, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: TimeoutId, keep_indicator: bool);
    fn get_timeout_active(id: TimeoutId) -> bool;
    fn get_timeout_finish_time(id: TimeoutId) -> pg_sys::TimestampTz;
}

/// Run `f` with a statement deadline of at most `ms` milliseconds. `SET statement_timeout`
/// inside a function would only apply to the next top-level statement, so the timer itself is
/// set, and the caller's own deadline (if sooner, kept; if any, restored) is respected.
pub fn with_deadline<R>(ms: i32, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<pg_sys::TimestampTz>);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain calls into timeout.c from a backend.
            unsafe {
                pg_guard_ffi_boundary(|| match self.0 {
                    Some(o) => enable_timeout_at(STATEMENT_TIMEOUT, o),
                    None => disable_timeout(STATEMENT_TIMEOUT, false),
                })
            }
        }
    }
    // SAFETY: as above.
    let outer = unsafe {
        pg_guard_ffi_boundary(|| {
            get_timeout_active(STATEMENT_TIMEOUT).then(|| get_timeout_finish_time(STATEMENT_TIMEOUT))
        })
    };
    let ours = unsafe { pg_sys::GetCurrentTimestamp() } + i64::from(ms) * 1000;
    if outer.is_none_or(|o| ours < o) {
        unsafe { pg_guard_ffi_boundary(|| enable_timeout_after(STATEMENT_TIMEOUT, ms)) };
    }
    let _restore = Restore(outer);
    f()
}
