//! Postgres's timeout manager (utils/timeout.h), which pgrx does not bind: the statement timeout
//! that job runners and the rule sandbox arm around work they run themselves.

use pgrx::pg_sys;

/// `TimeoutId` value of STATEMENT_TIMEOUT in PostgreSQL 13..18.
pub const STATEMENT_TIMEOUT: u32 = 3;

unsafe extern "C-unwind" {
    pub fn enable_timeout_after(id: u32, delay_ms: std::ffi::c_int);
    pub fn enable_timeout_at(id: u32, fin_time: pg_sys::TimestampTz);
    pub fn disable_timeout(id: u32, keep_indicator: bool);
    pub fn get_timeout_active(id: u32) -> bool;
    pub fn get_timeout_finish_time(id: u32) -> pg_sys::TimestampTz;
}
