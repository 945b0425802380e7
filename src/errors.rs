//! The one error type of the extension, and the SQLSTATE each kind maps to.
//!
//! Every `#[pg_extern]` returns `Result<_, ErrorReport>` and converts with `?`, so no error ever
//! reaches Postgres as pgrx's generic 22000.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// 22023: an argument is missing (NULL) or out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// 22007: a date or time value that cannot be read.
    #[error("{0}")]
    InvalidDatetimeFormat(String),
    /// 22008: a date or time outside what the function supports.
    #[error("{0}")]
    DatetimeOverflow(String),
    /// P0002: an id that names nothing.
    #[error("{0}")]
    NotFound(String),
    /// XX000: stored data the extension itself should have prevented (a bug, not bad input).
    #[error("{0}")]
    Internal(String),
    /// 2F003: a rule's condition_sql that is not exactly one plain SELECT.
    #[error("{0}")]
    ProhibitedStatement(String),
    /// 42501: the caller may not do this to this object (admin sandbox: not owned, system
    /// schema, unsafe function in an index expression).
    #[error("{0}")]
    Forbidden(String),
    /// 0A000: a statement or option the admin functions do not accept at all.
    #[error("{0}")]
    Unsupported(String),
    /// 55000: something the function needs is not set up (an extension, the library in
    /// shared_preload_libraries, shared memory that is exhausted).
    #[error("{0}")]
    NotReady(String),
    /// XX000: pgrx's SPI layer refused a call (Postgres's own errors are raised as they are;
    /// this is internal misuse).
    #[error("SPI: {0}")]
    Spi(#[from] pgrx::spi::Error),
    /// XX000: a document the extension built itself could not be read back.
    #[error("malformed input document: {0}")]
    Json(#[from] serde_json::Error),
}

impl DomainError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            DomainError::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            DomainError::InvalidDatetimeFormat(_) => PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT,
            DomainError::DatetimeOverflow(_) => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            DomainError::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            DomainError::Internal(_) | DomainError::Spi(_) | DomainError::Json(_) => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
            DomainError::ProhibitedStatement(_) => PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
            DomainError::Forbidden(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            DomainError::Unsupported(_) => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            DomainError::NotReady(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
}

impl From<DomainError> for ErrorReport {
    #[track_caller]
    fn from(e: DomainError) -> ErrorReport {
        ErrorReport::new(e.sqlstate(), e.to_string(), "booking_engine")
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::error::sqlstate_text;

    #[test]
    fn every_kind_has_its_sqlstate_and_sources_keep_their_text() {
        assert_eq!(sqlstate_text(DomainError::NotReady(String::new()).sqlstate()), "55000");
        assert_eq!(sqlstate_text(DomainError::Forbidden(String::new()).sqlstate()), "42501");
        let json = DomainError::from(serde_json::from_str::<i32>("x").unwrap_err());
        assert_eq!(sqlstate_text(json.sqlstate()), "XX000");
        assert!(json.to_string().starts_with("malformed input document: expected value"), "{json}");
        assert!(std::error::Error::source(&json).is_some(), "the serde error is kept as the source");
    }
}
