//! Running a piece of work under another `search_path`, as a function's own `SET search_path`
//! does for its body: the value is saved at a new GUC nest level and put back when the work
//! returns (and by the transaction's or subtransaction's abort when an error unwinds through it).
//!
//! Every function of the extension pins its `search_path` (Supabase's lint 0011); the few that
//! resolve a caller's statement or rules as the caller would take the caller's path as an
//! explicit argument (`DEFAULT current_setting('search_path')`, evaluated in the caller's frame
//! before the function's own setting applies) and run that work under it here.

use std::ffi::CString;

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
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        Ok(result)
    }
}
