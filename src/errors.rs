//! The one error type of the extension, and the SQLSTATE each kind maps to.
//!
//! Every `#[pg_extern]` returns `Result<_, ErrorReport>` and converts with `?`, so no error ever
//! reaches Postgres as pgrx's generic 22000.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// 22023: an argument is missing (NULL) or out of range.
    InvalidParameter(String),
    /// 22007: a date or time value that cannot be read.
    InvalidDatetimeFormat(String),
    /// 22008: a date or time outside what the function supports.
    DatetimeOverflow(String),
    /// P0002: an id that names nothing.
    NotFound(String),
    /// XX000: stored data the extension itself should have prevented (a bug, not bad input).
    Internal(String),
    /// 2F003: a rule's condition_sql that is not exactly one plain SELECT.
    ProhibitedStatement(String),
    /// 42501: the caller may not do this to this object (admin sandbox: not owned, system
    /// schema, unsafe function in an index expression).
    Forbidden(String),
    /// 0A000: a statement or option the admin functions do not accept at all.
    Unsupported(String),
    /// 55000: something the function needs is not set up (an extension, the library in
    /// shared_preload_libraries, shared memory that is exhausted).
    NotReady(String),
}

impl DomainError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            DomainError::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            DomainError::InvalidDatetimeFormat(_) => PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT,
            DomainError::DatetimeOverflow(_) => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            DomainError::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            DomainError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            DomainError::ProhibitedStatement(_) => PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
            DomainError::Forbidden(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            DomainError::Unsupported(_) => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            DomainError::NotReady(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DomainError::InvalidParameter(m)
            | DomainError::InvalidDatetimeFormat(m)
            | DomainError::DatetimeOverflow(m)
            | DomainError::NotFound(m)
            | DomainError::Internal(m)
            | DomainError::ProhibitedStatement(m)
            | DomainError::Forbidden(m)
            | DomainError::Unsupported(m)
            | DomainError::NotReady(m) => m,
        }
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for DomainError {}

impl From<DomainError> for ErrorReport {
    #[track_caller]
    fn from(e: DomainError) -> ErrorReport {
        ErrorReport::new(e.sqlstate(), e.message().to_string(), "booking_engine")
    }
}

/// SPI failures are Postgres errors already raised or internal misuse; keep their text.
impl From<pgrx::spi::Error> for DomainError {
    fn from(e: pgrx::spi::Error) -> DomainError {
        DomainError::Internal(format!("SPI: {e}"))
    }
}

impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> DomainError {
        DomainError::Internal(format!("malformed input document: {e}"))
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

/// The five-character SQLSTATE of an error code, as Postgres prints it (`unpack_sql_state`).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let packed = code as i32;
    (0..5).map(|i| char::from(((packed >> (6 * i)) & 0x3F) as u8 + b'0')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_unpack_like_postgres() {
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE), "42501");
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED), "0A000");
        assert_eq!(sqlstate_text(DomainError::NotReady(String::new()).sqlstate()), "55000");
    }
}
