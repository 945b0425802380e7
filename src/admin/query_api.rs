//! SQL-facing adapters of the query analysis: EXPLAIN in a rolled-back subtransaction under a
//! deadline, the parse-tree rules, plan bottlenecks and index recommendations checked with
//! hypopg when it is installed.

use std::collections::HashMap;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{Json, JsonB};
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse;
use super::plan::{self, Candidate, TableInfo};
use super::rules::{self, QueryFacts};
use crate::errors::{DomainError, DomainResult};
use crate::gucs;
use crate::pg::convert::require;
use crate::pg::guc::with_search_path;
use crate::pg::subxact::Subxact;

/// The one statement of `sql` with its parse-tree facts; only DML can be explained.
pub fn dml_statement(sql: Option<&str>) -> DomainResult<(String, QueryFacts)> {
    let sql = sql.ok_or_else(|| DomainError::InvalidParameter("sql must not be NULL".into()))?;
    let statements = crate::pg::parser::parse(sql, "the text")?;
    super::policy::check_count(statements.len())?;
    let st = statements.into_iter().next().expect("one statement");
    // SAFETY: st.node is a raw parse tree from `parse`.
    let tag = unsafe { (*st.node).type_ };
    use pgrx::pg_sys::NodeTag::*;
    if ![T_SelectStmt, T_InsertStmt, T_UpdateStmt, T_DeleteStmt].contains(&tag) {
        // SAFETY: as above.
        let what = unsafe { parse::command_tag(st.node) };
        return Err(DomainError::Unsupported(format!(
            "only SELECT, VALUES, INSERT, UPDATE and DELETE can be explained, not {what}"
        )));
    }
    // SAFETY: st.node is the raw parse tree `parse` just returned.
    Ok((st.text, unsafe { parse::query_facts(st.node) }))
}

/// EXPLAIN (FORMAT JSON, `options`) of one statement, inside a subtransaction that is always
/// rolled back, under booking_engine.explain_timeout_ms. A statement with `$n` parameters is
/// planned generically (prepared, then explained with NULLs that a generic plan never sees).
pub fn explain(text: &str, params: i32, options: &str) -> Result<Value, ErrorReport> {
    let name = format!("booking_admin_explain_{}", std::process::id());
    let body = || -> DomainResult<Option<Json>> {
        if params == 0 {
            let q = format!("EXPLAIN (FORMAT JSON, {options}) {text}");
            return Ok(Spi::connect_mut(|c| c.update(&q, None, &[])?.first().get_one::<Json>())?);
        }
        Spi::run("SET LOCAL plan_cache_mode = force_generic_plan")?;
        Spi::run(&format!("PREPARE {name} AS {text}"))?;
        let nulls = vec!["NULL"; params as usize].join(", ");
        let q = format!("EXPLAIN (FORMAT JSON, {options}) EXECUTE {name}({nulls})");
        let plan = Spi::connect_mut(|c| c.update(&q, None, &[])?.first().get_one::<Json>());
        Spi::run(&format!("DEALLOCATE {name}"))?;
        Ok(plan?)
    };
    let ran = Subxact::rolled_back().deadline_ms(gucs::explain_timeout_ms()).run(body);
    // A prepared statement outlives a rolled-back subtransaction.
    if params > 0 {
        let left = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE name = $1)",
            &[name.as_str().into()],
        )
        .map_err(DomainError::from)?;
        if left == Some(true) {
            Spi::run(&format!("DEALLOCATE {name}")).map_err(DomainError::from)?;
        }
    }
    match ran {
        Ok(Ok(Some(Json(Value::Array(mut docs))))) if !docs.is_empty() => Ok(docs.swap_remove(0)),
        Ok(Ok(_)) => Err(DomainError::Internal("EXPLAIN returned no plan".into()).into()),
        Ok(Err(e)) => Err(e.into()),
        Err(caught) => Err(caught.reraise()),
    }
}

#[derive(Deserialize)]
struct TableRow {
    name: String,
    qualified: String,
    rows: f64,
    columns: HashMap<String, String>,
    index_leads: Vec<String>,
    gin_leads: Vec<String>,
}

/// Rows, quoted names, columns and index leading columns of the tables the plan scans, in one read.
const TABLES_SQL: &str = include_str!("../../sql/queries/admin_query_tables.sql");

/// Each scanned table's facts and estimated rows, by name.
fn tables(scans: &[plan::SeqScan]) -> DomainResult<(HashMap<String, TableInfo>, HashMap<String, f64>)> {
    let schemas: Vec<String> = scans.iter().map(|s| s.schema.clone().unwrap_or_default()).collect();
    let names: Vec<String> = scans.iter().map(|s| s.relation.clone()).collect();
    let doc = Spi::get_one_with_args::<JsonB>(TABLES_SQL, &[schemas.into(), names.into()])?
        .ok_or_else(|| DomainError::Internal("table facts query returned NULL".into()))?;
    let rows: Vec<TableRow> = serde_json::from_value(doc.0)?;
    let counts = rows.iter().map(|r| (r.name.clone(), r.rows)).collect();
    let infos = rows
        .into_iter()
        .map(|r| {
            let info = TableInfo {
                qualified: r.qualified,
                columns: r.columns,
                index_leads: r.index_leads,
                gin_leads: r.gin_leads,
            };
            (r.name, info)
        })
        .collect();
    Ok((infos, counts))
}

fn hypopg_schema() -> DomainResult<Option<String>> {
    Ok(Spi::get_one::<String>(
        "SELECT (SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
                 JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hypopg')",
    )?)
}

/// The plan's cost with the candidate as a hypothetical index (hypopg), or None when it
/// cannot be created.
fn hypothetical_cost(hypopg: &str, candidate: &Candidate, text: &str, params: i32) -> Result<Option<f64>, ErrorReport> {
    let create = format!("SELECT {hypopg}.hypopg_create_index($1)");
    let made = Subxact::kept().run(|| Spi::run_with_args(&create, &[candidate.sql().as_str().into()]));
    let cost = match made {
        Ok(Ok(())) => explain(text, params, "COSTS").map(|p| plan::total_cost(&p)),
        _ => Ok(None),
    };
    // Hypothetical indexes live in this backend's memory, not in the transaction.
    Spi::run(&format!("SELECT {hypopg}.hypopg_reset()")).map_err(DomainError::from)?;
    cost
}

/// One recommended index and what the planner says it is worth.
pub struct Recommendation {
    pub candidate: Candidate,
    pub cost_before: f64,
    /// With the index as a hypothetical one (hypopg); None when unverified.
    pub cost_after: Option<f64>,
    pub gain_pct: Option<f64>,
}

/// The whole analysis of one statement: analyze_query's document, and the recommendations
/// for the tuner.
pub fn analyze(sql: Option<&str>) -> Result<(Value, Vec<Recommendation>), ErrorReport> {
    let (text, facts) = dml_statement(sql)?;
    let findings = rules::findings(&facts);
    let (plan_doc, plan_error) = match explain(&text, facts.params, "VERBOSE") {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let hypopg = hypopg_schema()?;
    let mut bottlenecks = Vec::new();
    let mut recommendations = Vec::new();
    if let Some(p) = &plan_doc {
        let scans = plan::seq_scans(p);
        let (infos, rows) = tables(&scans)?;
        let work_mem = Spi::get_one::<i64>("SELECT pg_size_bytes(current_setting('work_mem'))")
            .map_err(DomainError::from)?
            .unwrap_or(4 << 20);
        bottlenecks = plan::bottlenecks(p, &rows, work_mem as f64);
        let large: Vec<plan::SeqScan> =
            scans.into_iter().filter(|s| rows.get(&s.relation).is_some_and(|r| *r >= plan::LARGE_TABLE_ROWS)).collect();
        let before = plan::total_cost(p).unwrap_or(0.0);
        for candidate in plan::candidates(&facts, &large, &infos) {
            let cost_after = match &hypopg {
                Some(schema) => hypothetical_cost(schema, &candidate, &text, facts.params)?,
                None => None,
            };
            let gain_pct = cost_after.map(|a| plan::improvement_pct(before, a));
            recommendations.push(Recommendation { candidate, cost_before: before, cost_after, gain_pct });
        }
    }
    let count = |sev: &str| findings.iter().filter(|f| f.severity == sev).count();
    let best = recommendations.iter().filter_map(|r| r.gain_pct).reduce(f64::max);
    let (pct, basis) = match best {
        Some(p) => (p, "measured"),
        None if bottlenecks.is_empty() && findings.is_empty() => (0.0, "none"),
        None => (plan::heuristic_improvement_pct(bottlenecks.len(), count("high"), count("medium")), "heuristic"),
    };
    let recs: Vec<Value> = recommendations
        .iter()
        .map(|r| {
            json!({
                "index_sql": r.candidate.sql(), "reason": r.candidate.reason, "verified": r.cost_after.is_some(),
                "estimated_cost_before": r.cost_before, "estimated_cost_after": r.cost_after,
                "improvement_pct": r.gain_pct,
            })
        })
        .collect();
    let doc = json!({
        "complexity": rules::complexity(&facts),
        "findings": findings,
        "bottlenecks": bottlenecks,
        "recommendations": recs,
        "estimated_improvement_pct": pct,
        "improvement_basis": basis,
        "hypopg": hypopg.is_some(),
        "plan_error": plan_error,
    });
    Ok((doc, recommendations))
}

#[pg_schema]
mod booking_admin {
    use super::*;

    /// The plan of one statement as JSON. With `analyze` only a read-only SELECT (or VALUES,
    /// WITH ... SELECT) is accepted; it runs under the deadline and is rolled back.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn execute_explain_query(
        sql: Option<&str>,
        analyze: default!(Option<bool>, false),
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, ErrorReport> {
        with_search_path(require(p_search_path, "p_search_path")?, || explain_query(sql, analyze))?
    }

    fn explain_query(sql: Option<&str>, analyze: Option<bool>) -> Result<JsonB, ErrorReport> {
        let analyze = analyze.ok_or_else(|| DomainError::InvalidParameter("analyze must not be NULL".into()))?;
        let (text, facts) = dml_statement(sql)?;
        if analyze && (facts.kind != rules::QueryKind::Select || facts.modifies) {
            return Err(DomainError::Unsupported(
                "EXPLAIN ANALYZE runs the statement: only a read-only SELECT, VALUES or WITH ... SELECT is accepted (no INSERT/UPDATE/DELETE, data-modifying WITH, SELECT INTO or FOR UPDATE)".into(),
            )
            .into());
        }
        if analyze && facts.params > 0 {
            return Err(DomainError::Unsupported(
                "EXPLAIN ANALYZE needs values: the statement has $n parameters".into(),
            )
            .into());
        }
        let options = if analyze { "ANALYZE, BUFFERS" } else { "COSTS" };
        Ok(JsonB(explain(&text, facts.params, options)?))
    }

    /// Rules on the parse tree, plan bottlenecks and index recommendations for one statement.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn analyze_query(
        sql: Option<&str>,
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, ErrorReport> {
        Ok(JsonB(with_search_path(require(p_search_path, "p_search_path")?, || analyze(sql))??.0))
    }
}
