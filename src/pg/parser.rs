//! The one entry to Postgres's raw parser (gram.y): the admin sandbox and the rule sandbox both
//! judge statements by the parse tree Postgres itself builds, never by their text.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::PgList;

use crate::errors::{DomainError, DomainResult};

/// One statement of the input: its raw parse tree (in the current memory context) and where
/// its text starts and how long it is (0: to the end).
pub struct RawStatement {
    pub node: *mut pg_sys::Node,
    pub location: usize,
    pub len: usize,
}

/// Every statement of `sql`. A syntax error is raised as Postgres's own error (42601); a NUL
/// byte, which Postgres cannot read, is 22023 naming `what`.
pub fn parse(sql: &str, what: &str) -> DomainResult<Vec<RawStatement>> {
    let text = CString::new(sql).map_err(|_| DomainError::InvalidParameter(format!("{what} contains a NUL byte")))?;
    // SAFETY: raw_parser reads a NUL-terminated string and returns a List of RawStmt in the
    // current memory context; errors arrive as Rust panics through pgrx's guard.
    let list = unsafe {
        PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT))
    };
    Ok(list
        .iter_ptr()
        .map(|raw| {
            // SAFETY: every element of raw_parser's list is a RawStmt.
            let raw = unsafe { &*raw };
            RawStatement {
                node: raw.stmt,
                location: raw.stmt_location.max(0) as usize,
                len: raw.stmt_len.max(0) as usize,
            }
        })
        .collect())
}
