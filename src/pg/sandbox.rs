//! The sandbox for SQL an operator writes and the extension runs later (security rules, alert
//! conditions): `condition_sql` must parse (with Postgres's own parser) as exactly one plain
//! SELECT, and runs in a subtransaction that is read-only, has a time limit, and is always
//! rolled back, so whatever it tried leaves nothing behind.

use pgrx::prelude::*;
use pgrx::PgList;
use serde_json::Value;

use super::parser;
use super::subxact::Subxact;
use crate::errors::{DomainError, DomainResult};

fn refuse(why: &str) -> DomainError {
    DomainError::ProhibitedStatement(format!("condition_sql {why}"))
}

/// Ok when `sql` is one SELECT that neither creates a table (SELECT INTO), locks rows (FOR
/// UPDATE) nor modifies data in a WITH clause. A syntax error is raised by the parser (42601).
pub fn check_single_select(sql: &str) -> DomainResult<()> {
    let stmts = parser::parse(sql, "condition_sql")?;
    if stmts.len() != 1 {
        return Err(refuse(&format!("must be exactly one statement, not {}", stmts.len())));
    }
    let node = stmts[0].node;
    // SAFETY: node is a raw parse tree just built by the parser; each cast follows its tag.
    unsafe {
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

/// Runs one condition under `timeout_ms`; every returned row becomes a JSON object. Err carries
/// the message of what went wrong (refused, timed out, failed), for the evaluation report.
pub fn run_select(sql: &str, timeout_ms: i32) -> Result<Vec<Value>, String> {
    let ran = Subxact::rolled_back().read_only().deadline_ms(timeout_ms).run(|| {
        check_single_select(sql).map_err(|e| e.to_string())?;
        // The newlines keep a trailing comment in the rule from swallowing the wrapper.
        let wrapped = format!("SELECT to_jsonb(r)::text FROM (\n{sql}\n) r");
        check_single_select(&wrapped).map_err(|e| e.to_string())?;
        Spi::connect(|client| {
            let rows = client.select(&wrapped, None, &[]).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for row in rows {
                let text: Option<String> = row.get(1).map_err(|e| e.to_string())?;
                out.push(serde_json::from_str(&text.unwrap_or_default()).map_err(|e| e.to_string())?);
            }
            Ok(out)
        })
    });
    ran.map_err(|caught| caught.message).and_then(|r| r)
}
