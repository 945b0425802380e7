//! SQL-facing adapters of the admin area (schema booking_admin): the sandbox, the query
//! analysis and the tuner. Each reads what it needs set-based, calls the pure core, returns.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::parse::{self, RawStatement};
use super::sandbox::{self, Mode, Statement};
use super::{audit, txn};
use crate::errors::{sqlstate_text, DomainError, DomainResult};

/// Longest statement the sandbox takes (its audit record must fit the writer's queue).
pub const MAX_STATEMENT_BYTES: usize = 8000;

fn require<T>(value: Option<T>, name: &str) -> DomainResult<T> {
    value.ok_or_else(|| DomainError::InvalidParameter(format!("{name} must not be NULL")))
}

/// Who asks, when, and with which search_path, read once.
struct Caller {
    role: String,
    session_role: String,
    at: String,
    search_path: String,
}

fn caller() -> DomainResult<Caller> {
    let doc = Spi::get_one::<JsonB>(
        "SELECT jsonb_build_array(current_user, session_user, clock_timestamp(), current_setting('search_path'))",
    )?
    .ok_or_else(|| DomainError::Internal("caller query returned NULL".into()))?;
    let [role, session_role, at, search_path]: [String; 4] = serde_json::from_value(doc.0)?;
    Ok(Caller { role, session_role, at, search_path })
}

/// A statement that passed every rule.
pub struct Accepted {
    pub statement: Statement,
    pub mode: Mode,
    pub text: String,
    /// For CREATE INDEX: the checked tree, which is what runs.
    pub index: Option<parse::AnalysedIndex>,
}

/// Why a statement was refused: our own rule, or an error Postgres raised while we parsed or
/// analysed it (a syntax error, an unknown column in an index expression).
pub enum Refused {
    Rule(DomainError),
    Postgres(pgrx::pg_sys::panic::CaughtError),
}

impl Refused {
    fn sqlstate_and_reason(&self) -> (String, String) {
        match self {
            Refused::Rule(e) => (sqlstate_text(e.sqlstate()), e.message().to_string()),
            Refused::Postgres(e) => txn::describe_error(e),
        }
    }

    fn raise(self) -> pgrx::pg_sys::panic::ErrorReport {
        match self {
            Refused::Rule(e) => e.into(),
            Refused::Postgres(e) => txn::reraise(e),
        }
    }
}

/// Every rule of the sandbox, in a subtransaction kept on success (it holds the locks taken
/// while resolving names, so what was checked is what runs).
pub fn judge(sql: &str, allow_vacuum_full: bool) -> Result<Accepted, Refused> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(Refused::Rule(DomainError::Unsupported(format!(
            "the statement is {} bytes long; at most {MAX_STATEMENT_BYTES} are accepted",
            sql.len()
        ))));
    }
    match txn::subtransaction(true, || judge_parsed(sql, allow_vacuum_full)) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(Refused::Rule(e)),
        Err(caught) => Err(Refused::Postgres(caught)),
    }
}

fn judge_parsed(sql: &str, allow_vacuum_full: bool) -> DomainResult<Accepted> {
    let statements = parse::parse(sql)?;
    sandbox::check_count(statements.len())?;
    let RawStatement { node, text } = statements.into_iter().next().expect("one statement");
    // SAFETY: node is the raw parse tree `parse` just returned.
    let statement = unsafe { parse::describe(node) };
    let mode = sandbox::check_statement(&statement, allow_vacuum_full)?;
    let oids = parse::resolve(&statement.relations());
    let rels = parse::rel_facts(&oids)?;
    sandbox::check_objects(&statement, &rels, &[])?;
    let index = match (&statement, oids.first()) {
        (Statement::CreateIndex { .. }, Some(Some(table))) => {
            let index = parse::analyse_index(node, *table, &text);
            sandbox::check_objects(&statement, &rels, &parse::call_facts(&index)?)?;
            Some(index)
        }
        _ => None,
    };
    Ok(Accepted { statement, mode, text, index })
}

fn audit_row(id: uuid::Uuid, who: &Caller, sql: &str, kind: Option<&str>, decision: &str) -> Value {
    json!({"row": {
        "id": id, "attempted_at": who.at, "role_name": who.role, "session_role": who.session_role,
        "statement": sql, "statement_kind": kind, "decision": decision, "outcome": "pending"
    }})
}

fn refuse(
    id: uuid::Uuid,
    who: &Caller,
    sql: &str,
    kind: Option<&str>,
    refused: Refused,
) -> pgrx::pg_sys::panic::ErrorReport {
    let (sqlstate, reason) = refused.sqlstate_and_reason();
    let mut doc = audit_row(id, who, sql, kind, "refused");
    doc["row"]["reason"] = json!(reason);
    doc["row"]["sqlstate"] = json!(sqlstate);
    doc["row"]["outcome"] = json!("refused");
    match audit::write(&doc) {
        Ok(()) => refused.raise(),
        Err(e) => e.into(),
    }
}

/// The sandbox end to end: judge, audit, run in a subtransaction, audit the outcome. A
/// refusal or failure comes back as the error to raise (already audited).
pub fn run_admin_sql(sql: &str, allow_vacuum_full: bool) -> Result<Value, pgrx::pg_sys::panic::ErrorReport> {
    let who = caller()?;
    let id = uuid::Uuid::new_v4();
    let audited_text: String = sql.chars().take(MAX_STATEMENT_BYTES / 4).collect();
    let accepted = match judge(sql, allow_vacuum_full) {
        Ok(a) => a,
        Err(refused) => return Err(refuse(id, &who, &audited_text, None, refused)),
    };
    let kind = accepted.statement.kind();
    let mut doc = audit_row(id, &who, sql, Some(kind), "accepted");
    doc["row"]["mode"] = json!(accepted.mode.as_str());
    if accepted.mode == Mode::Queued {
        let job_id = enqueue_top_level(kind, &sandbox::queued_payload(&accepted.text, &who.role, &who.search_path))?;
        doc["row"]["job_id"] = json!(job_id);
        audit::write(&doc)?;
        return Ok(json!({
            "accepted": true, "statement_kind": kind, "mode": accepted.mode.as_str(),
            "job_id": job_id, "audit_id": id, "statement": accepted.text,
        }));
    }
    audit::write(&doc)?;
    let ran = txn::subtransaction(true, || match &accepted.index {
        Some(index) => {
            parse::run_index_statement(index, &accepted.text);
            Ok(())
        }
        None => Spi::run(&accepted.text),
    });
    let (outcome, detail) = match &ran {
        Ok(Ok(())) => ("succeeded", None),
        Ok(Err(e)) => ("failed", Some(e.to_string())),
        Err(caught) => {
            let (state, message) = txn::describe_error(caught);
            ("failed", Some(format!("{state}: {message}")))
        }
    };
    audit::write(&json!({"id": id, "outcome": outcome, "outcome_detail": detail}))?;
    match ran {
        Ok(Ok(())) => Ok(json!({
            "accepted": true, "statement_kind": kind, "mode": accepted.mode.as_str(),
            "job_id": null, "audit_id": id, "statement": accepted.text,
        })),
        Ok(Err(e)) => Err(DomainError::from(e).into()),
        Err(caught) => Err(txn::reraise(caught)),
    }
}

/// Hands a checked statement that cannot run inside a transaction (VACUUM, the CONCURRENTLY
/// forms) to the job runner, which runs it at top level as the caller with the caller's
/// search_path. Once only: a half-done CONCURRENTLY build would not succeed on a retry.
fn enqueue_top_level(kind: &str, payload: &Value) -> DomainResult<uuid::Uuid> {
    let id = Spi::get_one_with_args::<pgrx::Uuid>(
        "SELECT booking_admin.enqueue_job('admin_sql ' || $1, 'top_level_sql', $2,
                                          p_max_retries => 0, p_timeout_ms => 3600000)",
        &[kind.into(), JsonB(payload.clone()).into()],
    )?
    .ok_or_else(|| DomainError::Internal("enqueue_job returned NULL".into()))?;
    Ok(uuid::Uuid::from_bytes(*id.as_bytes()))
}

#[pg_schema]
mod booking_admin {
    use super::*;

    /// Run one maintenance statement after checking it with Postgres's own parser; see the
    /// README ("Admin SQL sandbox") for what is accepted.
    #[pg_extern(volatile, parallel_unsafe)]
    fn execute_admin_sql(
        sql_text: Option<&str>,
        allow_vacuum_full: default!(bool, false),
    ) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
        run_admin_sql(require(sql_text, "sql_text")?, allow_vacuum_full).map(JsonB)
    }

    /// The sandbox's verdict on a statement without running or auditing it: the kind, the
    /// mode, the statement text and, for queued statements, what the job runner receives.
    #[pg_extern(volatile, parallel_unsafe)]
    fn check_admin_sql(
        sql_text: Option<&str>,
        allow_vacuum_full: default!(bool, false),
    ) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
        let sql = require(sql_text, "sql_text")?;
        match judge(sql, allow_vacuum_full) {
            Ok(a) => {
                let who = caller()?;
                let payload =
                    (a.mode == Mode::Queued).then(|| sandbox::queued_payload(&a.text, &who.role, &who.search_path));
                Ok(JsonB(json!({
                    "allowed": true, "statement_kind": a.statement.kind(), "mode": a.mode.as_str(),
                    "statement": a.text, "job_payload": payload,
                })))
            }
            Err(refused) => {
                let (sqlstate, reason) = refused.sqlstate_and_reason();
                Ok(JsonB(json!({"allowed": false, "sqlstate": sqlstate, "reason": reason})))
            }
        }
    }
}
