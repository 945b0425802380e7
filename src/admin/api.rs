//! SQL-facing adapters of the admin area (schema booking_admin): the sandbox, the query
//! analysis and the tuner. Each reads what it needs set-based, calls the pure core, returns.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::parse;
use super::policy::{self, Mode, Statement};
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{require, to_uuid};
use crate::pg::error::{sqlstate_text, Caught};
use crate::pg::guc::with_search_path;
use crate::pg::parser::{self, RawStatement};
use crate::pg::role;
use crate::pg::subxact::Subxact;
use crate::writer::{self, Sink};

/// Each sandbox attempt, written before its statement runs (`booking_admin.admin_audit`).
pub static ADMIN_ATTEMPT: Sink = Sink::new("admin attempt", include_str!("../../sql/queries/writer_admin_attempt.sql"));
/// How an attempt ended; registered after `ADMIN_ATTEMPT`, so a batch writes an attempt first.
pub static ADMIN_OUTCOME: Sink = Sink::new("admin outcome", include_str!("../../sql/queries/writer_admin_outcome.sql"));

/// Longest statement the sandbox takes (its audit record must fit the writer's queue).
pub const MAX_STATEMENT_BYTES: usize = 8000;

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
    Postgres(Caught),
}

impl Refused {
    fn sqlstate_and_reason(&self) -> (String, String) {
        match self {
            Refused::Rule(e) => (sqlstate_text(e.sqlstate()), e.to_string()),
            Refused::Postgres(e) => (e.sqlstate(), e.message.clone()),
        }
    }

    fn raise(self) -> pgrx::pg_sys::panic::ErrorReport {
        match self {
            Refused::Rule(e) => e.into(),
            Refused::Postgres(e) => e.reraise(),
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
    match Subxact::kept().run(|| judge_parsed(sql, allow_vacuum_full)) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(Refused::Rule(e)),
        Err(caught) => Err(Refused::Postgres(caught)),
    }
}

fn judge_parsed(sql: &str, allow_vacuum_full: bool) -> DomainResult<Accepted> {
    let statements = parser::parse(sql, "the text")?;
    policy::check_count(statements.len())?;
    let RawStatement { node, text } = statements.into_iter().next().expect("one statement");
    // SAFETY: node is the raw parse tree `parse` just returned.
    let statement = unsafe { parse::describe(node) };
    let mode = policy::check_statement(&statement, allow_vacuum_full)?;
    let oids = parse::resolve(&statement.relations());
    let rels = parse::rel_facts(&oids)?;
    policy::check_objects(&statement, &rels, &[])?;
    let mode = policy::mode_for(&statement, mode, &rels);
    let index = match (&statement, oids.first()) {
        (Statement::CreateIndex { .. }, Some(Some(table))) => {
            let index = parse::analyse_index(node, *table, &text);
            policy::check_objects(&statement, &rels, &parse::call_facts(&index)?)?;
            Some(index)
        }
        _ => None,
    };
    Ok(Accepted { statement, mode, text, index })
}

/// How long a caller waits for its audit record to be committed before giving up (and not
/// running the statement).
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

fn audit_row(id: uuid::Uuid, who: &Caller, sql: &str, kind: Option<&str>, decision: &str) -> Value {
    json!({
        "id": id, "attempted_at": who.at, "role_name": who.role, "session_role": who.session_role,
        "statement": sql, "statement_kind": kind, "decision": decision, "outcome": "pending"
    })
}

/// Commits an audit document outside the caller's transaction before going on: nothing runs
/// unaudited, and the record stays whatever the caller does next.
fn audit(sink: &Sink, doc: &Value) -> DomainResult<()> {
    writer::submit_and_wait(sink, doc, AUDIT_WAIT).map_err(|e| {
        DomainError::NotReady(format!("the admin audit record was not stored ({e}); the statement was not run"))
    })
}

fn refuse(
    id: uuid::Uuid,
    who: &Caller,
    sql: &str,
    kind: Option<&str>,
    refused: Refused,
) -> pgrx::pg_sys::panic::ErrorReport {
    let (sqlstate, reason) = refused.sqlstate_and_reason();
    let mut row = audit_row(id, who, sql, kind, "refused");
    row["reason"] = json!(reason);
    row["sqlstate"] = json!(sqlstate);
    row["outcome"] = json!("refused");
    match audit(&ADMIN_ATTEMPT, &row) {
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
    let frozen = accepted.statement.frozen_by_calendar();
    // The freeze calendar: a refusing window raises 57000 (audited as this attempt's refusal);
    // a deferring one queues the statement for the window's end.
    let deferred_until = if frozen {
        // The caller may hold EXECUTE on execute_admin_sql alone: the calendar is read with the
        // extension owner's rights, as the queue is written.
        let owner = role::extension_owner()?;
        let gate = || {
            role::run_as(owner, || {
                Spi::get_one_with_args::<String>("SELECT booking_admin.freeze_gate($1)::text", &[sql_what(kind).into()])
            })
        };
        match Subxact::kept().run(gate) {
            Ok(Ok(until)) => until,
            Ok(Err(e)) => return Err(DomainError::from(e).into()),
            Err(caught) => return Err(refuse(id, &who, &audited_text, Some(kind), Refused::Postgres(caught))),
        }
    } else {
        None
    };
    let mode = if deferred_until.is_some() { Mode::Queued } else { accepted.mode };
    let mut row = audit_row(id, &who, sql, Some(kind), "accepted");
    row["mode"] = json!(mode.as_str());
    if mode == Mode::Queued {
        let payload = policy::queued_payload(&accepted.text, &who.role, &who.search_path, frozen);
        let job_id = match enqueue_top_level(kind, &payload, deferred_until.as_deref()) {
            Ok(job_id) => job_id,
            Err(e) => {
                // Every attempt is audited, the ones that could not be queued too.
                row["outcome"] = json!("failed");
                audit(&ADMIN_ATTEMPT, &row)?;
                let detail = format!("{}: {e}", sqlstate_text(e.sqlstate()));
                audit(&ADMIN_OUTCOME, &json!({"id": id, "outcome": "failed", "outcome_detail": detail}))?;
                return Err(e.into());
            }
        };
        row["job_id"] = json!(job_id);
        audit(&ADMIN_ATTEMPT, &row)?;
        // Queued is only as good as the runner that will take it: say when none will (the
        // enqueue also raised a WARNING).
        let will_run = crate::launcher::will_run();
        return Ok(json!({
            "accepted": true, "statement_kind": kind, "mode": mode.as_str(),
            "job_id": job_id, "audit_id": id, "statement": accepted.text, "deferred_until": deferred_until,
            "will_run": will_run.is_ok(), "will_not_run_because": will_run.err().map(|w| w.as_str()),
        }));
    }
    audit(&ADMIN_ATTEMPT, &row)?;
    let ran = Subxact::kept().run(|| match &accepted.index {
        Some(index) => {
            parse::run_index_statement(index, &accepted.text);
            Ok(())
        }
        None => Spi::run(&accepted.text),
    });
    let (outcome, detail) = match &ran {
        Ok(Ok(())) => ("succeeded", None),
        Ok(Err(e)) => ("failed", Some(e.to_string())),
        Err(caught) => ("failed", Some(format!("{}: {caught}", caught.sqlstate()))),
    };
    audit(&ADMIN_OUTCOME, &json!({"id": id, "outcome": outcome, "outcome_detail": detail}))?;
    match ran {
        Ok(Ok(())) => Ok(json!({
            "accepted": true, "statement_kind": kind, "mode": accepted.mode.as_str(),
            "job_id": null, "audit_id": id, "statement": accepted.text,
        })),
        Ok(Err(e)) => Err(DomainError::from(e).into()),
        Err(caught) => Err(caught.reraise()),
    }
}

/// How a sandbox statement is named in a freeze refusal and its audit entry.
fn sql_what(kind: &str) -> String {
    format!("execute_admin_sql ({kind})")
}

/// Hands a checked statement that cannot run inside a transaction (VACUUM, the CONCURRENTLY
/// forms) to the job runner, which runs it at top level as the caller with the caller's
/// search_path. Once only: a half-done CONCURRENTLY build would not succeed on a retry.
///
/// The caller needs no rights on the job queue: the row is written with the extension owner's
/// rights, for exactly this payload, and names the caller (current_user now) as the role the
/// job runs as, which the owner may do (booking_admin.jobs_identity). The query names every
/// object with its schema, since it runs with the caller's search_path.
fn enqueue_top_level(kind: &str, payload: &Value, run_at: Option<&str>) -> DomainResult<uuid::Uuid> {
    let caller = role::current_user();
    let id = role::run_as(role::extension_owner()?, || {
        Spi::get_one_with_args::<pgrx::Uuid>(
            "INSERT INTO booking_admin.jobs (name, handler, payload, max_retries, timeout_ms, created_by, scheduled_at)
             VALUES ($1, 'top_level_sql', $2, 0, 3600000, $3, coalesce($4::timestamptz, now())) RETURNING id",
            &[format!("admin_sql {kind}").into(), JsonB(payload.clone()).into(), caller.into(), run_at.into()],
        )
    })?
    .ok_or_else(|| DomainError::Internal("the job insert returned no id".into()))?;
    // Not through the SQL function: the caller may hold EXECUTE on execute_admin_sql alone.
    crate::launcher::queued_work_at_commit();
    Ok(to_uuid(id))
}

#[pg_schema]
mod booking_admin {
    use super::*;

    /// Run one maintenance statement after checking it with Postgres's own parser; see the
    /// docs/admin.md ("Admin SQL sandbox") for what is accepted. The statement's names are resolved in
    /// `p_search_path`, the caller's own unless given (the function's is pinned).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn execute_admin_sql(
        sql_text: Option<&str>,
        allow_vacuum_full: default!(Option<bool>, false),
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
        let allow_vacuum_full = require(allow_vacuum_full, "allow_vacuum_full")?;
        let sql = require(sql_text, "sql_text")?;
        with_search_path(require(p_search_path, "p_search_path")?, || run_admin_sql(sql, allow_vacuum_full))?.map(JsonB)
    }

    /// The sandbox's verdict on a statement without running or auditing it: the kind, the
    /// mode, the statement text and, for queued statements, what the job runner receives.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn check_admin_sql(
        sql_text: Option<&str>,
        allow_vacuum_full: default!(Option<bool>, false),
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
        let sql = require(sql_text, "sql_text")?;
        let allow_vacuum_full = require(allow_vacuum_full, "allow_vacuum_full")?;
        with_search_path(require(p_search_path, "p_search_path")?, || verdict(sql, allow_vacuum_full))?
    }

    fn verdict(sql: &str, allow_vacuum_full: bool) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
        match judge(sql, allow_vacuum_full) {
            Ok(a) => {
                let who = caller()?;
                let frozen = a.statement.frozen_by_calendar();
                // What the calendar would do now, without the refusal's audit entry.
                let freeze = if frozen {
                    role::run_as(role::extension_owner()?, || {
                        Spi::get_one::<JsonB>("SELECT booking_admin.freeze_state()")
                    })
                    .map_err(DomainError::from)?
                    .map_or(Value::Null, |j| j.0)
                } else {
                    json!({"frozen": false})
                };
                if freeze["frozen"] == true && freeze["action"] == "refuse" {
                    return Ok(JsonB(json!({
                        "allowed": false, "sqlstate": "57000",
                        "reason": format!("{} is refused inside a freeze window until {}", sql_what(a.statement.kind()),
                                          freeze["until"].as_str().unwrap_or("")),
                        "freeze": freeze,
                    })));
                }
                let deferred_until = freeze.get("until").cloned().unwrap_or(Value::Null);
                let mode = if deferred_until.is_null() { a.mode } else { Mode::Queued };
                let payload = (mode == Mode::Queued)
                    .then(|| policy::queued_payload(&a.text, &who.role, &who.search_path, frozen));
                Ok(JsonB(json!({
                    "allowed": true, "statement_kind": a.statement.kind(), "mode": mode.as_str(),
                    "statement": a.text, "job_payload": payload, "deferred_until": deferred_until,
                })))
            }
            Err(refused) => {
                let (sqlstate, reason) = refused.sqlstate_and_reason();
                Ok(JsonB(json!({"allowed": false, "sqlstate": sqlstate, "reason": reason})))
            }
        }
    }
}
