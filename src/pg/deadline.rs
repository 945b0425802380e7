//! A statement deadline for work the extension runs itself. `SET statement_timeout` inside a
//! function only applies to the next top-level statement, so the guard arms Postgres's own
//! statement timer (utils/timeout.h, which pgrx does not bind) and puts the caller's back when
//! dropped. A sooner outer deadline is kept: the extension never extends what the caller set.

use pgrx::pg_sys;
use pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary;

/// `TimeoutId` value of STATEMENT_TIMEOUT in PostgreSQL 13..18.
const STATEMENT_TIMEOUT: u32 = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: u32, delay_ms: std::ffi::c_int);
    fn enable_timeout_at(id: u32, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: u32, keep_indicator: bool);
    fn get_timeout_active(id: u32) -> bool;
    fn get_timeout_finish_time(id: u32) -> pg_sys::TimestampTz;
}

pub struct Deadline {
    /// The caller's deadline, restored on drop.
    outer: Option<pg_sys::TimestampTz>,
    /// When ours fires, if ours was the one armed (it was sooner than the caller's).
    ours: Option<pg_sys::TimestampTz>,
}

impl Deadline {
    /// Arms a deadline `ms` milliseconds from now (at least 1 ms).
    pub fn arm(ms: i32) -> Deadline {
        let ms = ms.max(1);
        // SAFETY: timeout.c's API, called from a backend as Postgres itself calls it; errors
        // cross the boundary as Rust panics.
        unsafe {
            pg_guard_ffi_boundary(|| {
                let outer = get_timeout_active(STATEMENT_TIMEOUT).then(|| get_timeout_finish_time(STATEMENT_TIMEOUT));
                let ours = pg_sys::GetCurrentTimestamp().saturating_add(i64::from(ms) * 1000);
                let armed = outer.is_none_or(|o| ours < o);
                if armed {
                    enable_timeout_after(STATEMENT_TIMEOUT, ms);
                }
                Deadline { outer, ours: armed.then_some(ours) }
            })
        }
    }

    /// Whether this guard's own deadline has passed (so a statement timeout came from it, not
    /// from the caller's setting or a cancel request).
    pub fn expired(&self) -> bool {
        // SAFETY: reads the clock.
        self.ours.is_some_and(|t| unsafe { pg_sys::GetCurrentTimestamp() } >= t)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // SAFETY: as in arm.
        unsafe {
            pg_guard_ffi_boundary(|| match self.outer {
                Some(o) => enable_timeout_at(STATEMENT_TIMEOUT, o),
                None => disable_timeout(STATEMENT_TIMEOUT, false),
            })
        }
    }
}
