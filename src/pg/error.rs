//! A caught Postgres error (or Rust panic) as plain data: its level, SQLSTATE and texts, to
//! record as text or raise again as it was.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::PgLogLevel;

#[derive(Debug, Clone)]
pub struct Caught {
    pub level: PgLogLevel,
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

fn report(e: &CaughtError) -> &ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => r,
    }
}

impl From<&CaughtError> for Caught {
    fn from(e: &CaughtError) -> Caught {
        let r = report(e);
        Caught {
            level: r.level(),
            code: r.sql_error_code(),
            message: r.message().to_string(),
            detail: r.detail().map(str::to_string),
            hint: r.hint().map(str::to_string),
        }
    }
}

impl Caught {
    /// The five-character SQLSTATE, as Postgres prints it.
    pub fn sqlstate(&self) -> String {
        sqlstate_text(self.code)
    }

    /// Raised again as it was (code, message, detail, hint), without the Rust backtrace a
    /// plain rethrow would add to its detail.
    pub fn reraise(&self) -> ErrorReport {
        let mut out = ErrorReport::new(self.code, self.message.clone(), "booking_engine");
        if let Some(d) = &self.detail {
            out = out.set_detail(d.clone());
        }
        if let Some(h) = &self.hint {
            out = out.set_hint(h.clone());
        }
        out
    }
}

impl std::fmt::Display for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The five-character SQLSTATE of an error code, as Postgres prints it (`unpack_sql_state`).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    sqlstate_of(code as i32)
}

/// The five-character SQLSTATE of a packed code, such as `ErrorData.sqlerrcode`.
pub fn sqlstate_of(packed: i32) -> String {
    (0..5).map(|i| char::from(((packed >> (6 * i)) & 0x3F) as u8 + b'0')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_unpack_like_postgres() {
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE), "42501");
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED), "0A000");
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), "55000");
    }
}
