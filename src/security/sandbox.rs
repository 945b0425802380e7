//! Running an operator's rule safely: `condition_sql` must parse (with Postgres's own parser)
//! as exactly one plain SELECT, and runs in a subtransaction that is read-only, has a time
//! limit, and is always rolled back, so whatever it tried leaves nothing behind.

use std::ffi::CString;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgList;
use serde_json::Value;

use crate::errors::{DomainError, DomainResult};

use crate::pg_timeout::{
    disable_timeout, enable_timeout_after, enable_timeout_at, get_timeout_active, get_timeout_finish_time,
    STATEMENT_TIMEOUT,
};

fn refuse(why: &str) -> DomainError {
    DomainError::ProhibitedStatement(format!("condition_sql {why}"))
}

/// Ok when `sql` is one SELECT that neither creates a table (SELECT INTO), locks rows (FOR
/// UPDATE) nor modifies data in a WITH clause. A syntax error is raised by the parser (42601).
pub fn check_single_select(sql: &str) -> DomainResult<()> {
    let text = CString::new(sql).map_err(|_| refuse("contains a NUL byte"))?;
    // SAFETY: raw_parser reads a NUL-terminated string and returns a List of RawStmt (or
    // raises a syntax error); the nodes live in the current memory context.
    unsafe {
        let stmts = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            text.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        if stmts.len() != 1 {
            return Err(refuse(&format!("must be exactly one statement, not {}", stmts.len())));
        }
        let node = (*stmts.get_ptr(0).expect("one statement")).stmt;
        if !pgrx::is_a(node, pg_sys::NodeTag::T_SelectStmt) {
            return Err(refuse("must be a SELECT"));
        }
        let select = node.cast::<pg_sys::SelectStmt>();
        if !(*select).intoClause.is_null() {
            return Err(refuse("must not use SELECT INTO"));
        }
        if !(*select).lockingClause.is_null() {
            return Err(refuse("must not lock rows (FOR UPDATE/SHARE)"));
        }
        let with = (*select).withClause;
        if !with.is_null() {
            for cte in PgList::<pg_sys::CommonTableExpr>::from_pg((*with).ctes).iter_ptr() {
                if !pgrx::is_a((*cte).ctequery, pg_sys::NodeTag::T_SelectStmt) {
                    return Err(refuse("must not modify data in WITH"));
                }
            }
        }
    }
    Ok(())
}

/// Arms the statement timer for `ms` and puts back an outer statement_timeout afterwards.
struct Timer {
    outer: Option<pg_sys::TimestampTz>,
}

impl Timer {
    fn arm(ms: i32) -> Timer {
        // SAFETY: timeout.c's API, used as the backend itself does.
        unsafe {
            let outer = get_timeout_active(STATEMENT_TIMEOUT).then(|| get_timeout_finish_time(STATEMENT_TIMEOUT));
            let ours = pg_sys::GetCurrentTimestamp() + ms as i64 * 1000;
            if outer.is_none_or(|fin| fin > ours) {
                enable_timeout_after(STATEMENT_TIMEOUT, ms);
            }
            Timer { outer }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: as in arm.
        unsafe {
            disable_timeout(STATEMENT_TIMEOUT, false);
            if let Some(fin) = self.outer {
                enable_timeout_at(STATEMENT_TIMEOUT, fin);
            }
        }
    }
}

/// The message of a caught Postgres error or Rust panic.
pub fn caught_message(e: CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// Runs one rule; every returned row becomes a JSON object. Err carries the message of what
/// went wrong (refused, timed out, failed), for the evaluation report.
pub fn run_rule(sql: &str, timeout_ms: i32) -> Result<Vec<Value>, String> {
    // SAFETY: the subtransaction protocol of PL/pgSQL's exception blocks: remember the memory
    // context and resource owner, begin, and on every path roll back and restore both.
    unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        let read_only = pg_sys::XactReadOnly;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::XactReadOnly = true;
        let result = PgTryBuilder::new(|| {
            check_single_select(sql).map_err(|e| e.message().to_string())?;
            // The newlines keep a trailing comment in the rule from swallowing the wrapper.
            let wrapped = format!("SELECT to_jsonb(r)::text FROM (\n{sql}\n) r");
            check_single_select(&wrapped).map_err(|e| e.message().to_string())?;
            let _timer = Timer::arm(timeout_ms);
            Spi::connect(|client| {
                let rows = client.select(&wrapped, None, &[]).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for row in rows {
                    let text: Option<String> = row.get(1).map_err(|e| e.to_string())?;
                    out.push(serde_json::from_str(&text.unwrap_or_default()).map_err(|e| e.to_string())?);
                }
                Ok(out)
            })
        })
        .catch_others(|e| Err(caught_message(e)))
        .execute();
        pg_sys::XactReadOnly = read_only;
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}
