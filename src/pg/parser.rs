//! The one entry to Postgres's raw parser (gram.y): the admin sandbox and the rule sandbox both
//! judge statements by the parse tree Postgres itself builds, never by their text.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::PgList;

use crate::errors::{DomainError, DomainResult};

/// One statement of the input: its raw parse tree (in the current memory context) and its own
/// text, cut from the input where the parser says it starts and ends.
pub struct RawStatement {
    pub node: *mut pg_sys::Node,
    pub text: String,
}

/// The text of one statement of `sql`: from `location` for `len` bytes (0: to the end), without
/// surrounding blanks and its terminating semicolon.
pub fn statement_text(sql: &str, location: usize, len: usize) -> String {
    let start = location.min(sql.len());
    let end = if len == 0 { sql.len() } else { (start + len).min(sql.len()) };
    sql.get(start..end).unwrap_or(sql).trim().trim_end_matches(';').trim().to_string()
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
                text: statement_text(sql, raw.stmt_location.max(0) as usize, raw.stmt_len.max(0) as usize),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::statement_text;

    #[test]
    fn statement_text_is_cut_from_the_input() {
        let sql = "  CREATE INDEX ON t (a);  ";
        assert_eq!(statement_text(sql, 0, 0), "CREATE INDEX ON t (a)");
        assert_eq!(statement_text("ANALYZE a; ANALYZE b", 10, 0), "ANALYZE b");
        assert_eq!(statement_text("ANALYZE a; ANALYZE b", 0, 9), "ANALYZE a");
    }
}
