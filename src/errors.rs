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
    /// 55000: a feature that needs the library in shared_preload_libraries (or shared memory
    /// that is exhausted).
    NotPreloaded(String),
    /// 2F003: a rule's condition_sql that is not exactly one plain SELECT.
    ProhibitedStatement(String),
}

impl DomainError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            DomainError::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            DomainError::InvalidDatetimeFormat(_) => PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT,
            DomainError::DatetimeOverflow(_) => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            DomainError::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            DomainError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            DomainError::NotPreloaded(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            DomainError::ProhibitedStatement(_) => {
                PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED
            }
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DomainError::InvalidParameter(m)
            | DomainError::InvalidDatetimeFormat(m)
            | DomainError::DatetimeOverflow(m)
            | DomainError::NotFound(m)
            | DomainError::Internal(m)
            | DomainError::NotPreloaded(m)
            | DomainError::ProhibitedStatement(m) => m,
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
