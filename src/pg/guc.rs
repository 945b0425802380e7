//! Setting `search_path` from Rust, the one place that calls Postgres's `set_config_option` for
//! it: for a piece of work, as a function's own `SET search_path` does for its body (the value
//! is saved at a new GUC nest level and put back when the work returns, and by the transaction's
//! or subtransaction's abort when an error unwinds through it), or for the rest of the
//! transaction, as `SET LOCAL` does.
//!
//! Every function of the extension pins its `search_path` (Supabase's lint 0011); the few that
//! resolve a caller's statement or rules as the caller would take the caller's path as an
//! explicit argument (`DEFAULT current_setting('search_path')`, evaluated in the caller's frame
//! before the function's own setting applies) and run that work under it here.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::errors::{DomainError, DomainResult};

/// Runs `f` with `search_path` set to `path` (checked as `SET search_path` checks it: 22023 for
/// a malformed list).
pub fn with_search_path<R>(path: &str, f: impl FnOnce() -> R) -> DomainResult<R> {
    let value = CString::new(path)
        .map_err(|_| DomainError::InvalidParameter("the search_path must not contain NUL bytes".into()))?;
    // SAFETY: the same calls fmgr_security_definer makes for a function's SET clause: a new
    // nest level, a saved value, and AtEOXact_GUC(true) to pop it. An ERROR raised by the
    // setting itself or by `f` aborts the (sub)transaction, whose cleanup pops the level.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        set_search_path(&value, pg_sys::GucAction::GUC_ACTION_SAVE);
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        Ok(result)
    }
}

/// Sets `search_path` until the current transaction ends, as `SET LOCAL search_path` does (an
/// ERROR for a malformed list).
///
/// # Safety
/// Inside a transaction.
pub unsafe fn set_local_search_path(path: &CStr) {
    // SAFETY: the caller is inside a transaction, whose end pops the local value.
    unsafe { set_search_path(path, pg_sys::GucAction::GUC_ACTION_LOCAL) }
}

/// # Safety
/// Inside a transaction; a SAVE action inside a nest level its caller pops.
unsafe fn set_search_path(path: &CStr, action: pg_sys::GucAction::Type) {
    // SAFETY: set_config_option copies the NUL-terminated value; errors are raised at ERROR.
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            path.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
}
