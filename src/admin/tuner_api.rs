//! SQL-facing adapters of the auto-tuner: one cycle reads the configuration, rolls back
//! applied indexes that went unused or made their query dearer, analyses the slow queries and
//! records (and, when allowed, applies through the sandbox) the indexes the planner verified.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Value};

use super::query_api::{self, Recommendation};
use super::tuner::{self, Aggressiveness, Decision, Proposal, Settings};
use super::{api, plan};
use crate::errors::{DomainError, DomainResult};
use crate::pg::guc::with_search_path;
use crate::pg::subxact::Subxact;

#[derive(Deserialize)]
struct Config {
    enabled: bool,
    aggressiveness: String,
    auto_apply_indexes: bool,
    performance_threshold_ms: Option<f64>,
    monitoring_interval_minutes: i32,
    max_indexes_per_table: i32,
    /// The end of the freeze window in force, if any (booking_admin.freeze_state).
    frozen_until: Option<String>,
    stats_statements: bool,
}

const CONFIG_SQL: &str = include_str!("../../sql/queries/admin_tuner_config.sql");

fn json_query<T: serde::de::DeserializeOwned>(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> DomainResult<T> {
    let doc = Spi::get_one_with_args::<JsonB>(sql, args)?
        .ok_or_else(|| DomainError::Internal(format!("no row from: {sql}")))?;
    Ok(serde_json::from_value(doc.0)?)
}

#[derive(Deserialize)]
struct Applied {
    id: i64,
    rollback_sql: String,
    query: Option<String>,
    cost_before: Option<f64>,
    minutes: f64,
    idx_scan: i64,
    exists: bool,
}

const APPLIED_SQL: &str = include_str!("../../sql/queries/admin_tuner_applied.sql");

fn set_status(id: i64, status: &str, reason: Option<&str>) -> DomainResult<()> {
    Spi::run_with_args(
        "UPDATE booking_admin.tuning_actions
         SET status = $2, status_reason = $3,
             rolled_back_at = CASE WHEN $2 = 'rolled_back' THEN booking.clock_now() END
         WHERE id = $1",
        &[id.into(), status.into(), reason.into()],
    )?;
    Ok(())
}

/// The plan cost of `query` as things are now; None when it cannot be planned any more.
fn cost_now(query: &str) -> Option<f64> {
    let (text, facts) = query_api::dml_statement(Some(query)).ok()?;
    query_api::explain(&text, facts.params, "COSTS").ok().and_then(|p| plan::total_cost(&p))
}

fn roll_back(id: i64, rollback_sql: &str, reason: &str) -> Result<(), ErrorReport> {
    api::run_admin_sql(rollback_sql, false)?;
    set_status(id, "rolled_back", Some(reason))?;
    Ok(())
}

fn rollback_pass(cfg: &Config, frozen: bool, report: &mut Vec<Value>) -> Result<(), ErrorReport> {
    let applied: Vec<Applied> = json_query(APPLIED_SQL, &[])?;
    for a in applied {
        if !a.exists {
            set_status(a.id, "rolled_back", Some("the index no longer exists"))?;
            report.push(json!({"id": a.id, "reason": "the index no longer exists"}));
            continue;
        }
        let now = a.query.as_deref().and_then(cost_now);
        let Some(reason) =
            tuner::rollback_reason(a.idx_scan, a.minutes, cfg.monitoring_interval_minutes.into(), a.cost_before, now)
        else {
            continue;
        };
        if frozen {
            report.push(json!({"id": a.id, "reason": reason, "deferred": "inside a freeze window"}));
            continue;
        }
        match roll_back(a.id, &a.rollback_sql, &reason) {
            Ok(()) => report.push(json!({"id": a.id, "reason": reason})),
            Err(e) => report.push(json!({"id": a.id, "reason": reason, "error": e.to_string()})),
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct SlowQuery {
    query: String,
    mean_ms: f64,
}

fn slow_queries(threshold_ms: f64) -> DomainResult<Vec<SlowQuery>> {
    json_query(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('query', s.query, 'mean_ms', s.mean_ms)), '[]')
         FROM booking_admin.get_slow_queries(20, $1) s",
        &[threshold_ms.into()],
    )
}

#[derive(Deserialize)]
struct Live {
    id: i64,
    status: String,
}

/// Record one recommendation as an action and carry out the decision. A definition has at
/// most one live action: a proposal is updated rather than repeated, and one that was applied
/// or rolled back is left alone (delete its row to let the tuner try it again).
fn act(r: &Recommendation, query: &str, settings: &Settings) -> Result<Option<Value>, ErrorReport> {
    let definition = r.candidate.sql();
    let live = Spi::get_one_with_args::<JsonB>(
        "SELECT (SELECT jsonb_build_object('id', id, 'status', status) FROM booking_admin.tuning_actions
                 WHERE definition = $1 AND status IN ('proposed', 'applying', 'applied', 'rolled_back')
                 ORDER BY id DESC LIMIT 1)",
        &[definition.as_str().into()],
    )
    .map_err(DomainError::from)?
    .map(|d| serde_json::from_value::<Live>(d.0))
    .transpose()
    .map_err(DomainError::from)?;
    if live.as_ref().is_some_and(|l| l.status != "proposed") {
        return Ok(None);
    }
    let table_indexes = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = $1::regclass",
        &[r.candidate.table.as_str().into()],
    )
    .map_err(DomainError::from)?
    .unwrap_or(0);
    let decision = tuner::decide(
        settings,
        &Proposal { method: r.candidate.method, verified: r.cost_after.is_some(), gain_pct: r.gain_pct, table_indexes },
    );
    let (status, reason) = match (&decision, &live) {
        (Decision::Skip(why), None) => ("skipped", Some(why.as_str())),
        (Decision::Apply, _) => ("proposed", None),
        (Decision::Propose(why) | Decision::Skip(why), _) => ("proposed", Some(why.as_str())),
    };
    let id = match &live {
        Some(l) => {
            Spi::run_with_args(
                "UPDATE booking_admin.tuning_actions SET status_reason = $2, cost_before = $3, cost_after = $4 WHERE id = $1",
                &[l.id.into(), reason.into(), r.cost_before.into(), r.cost_after.into()],
            )
            .map_err(DomainError::from)?;
            l.id
        }
        None => Spi::get_one_with_args::<i64>(
            "INSERT INTO booking_admin.tuning_actions
                 (action, table_name, definition, sql, reason, query, status, status_reason, cost_before, cost_after)
             VALUES ('create_index', $1, $2, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                r.candidate.table.as_str().into(),
                definition.as_str().into(),
                r.candidate.reason.as_str().into(),
                query.into(),
                status.into(),
                reason.into(),
                r.cost_before.into(),
                r.cost_after.into(),
            ],
        )
        .map_err(DomainError::from)?
        .ok_or_else(|| DomainError::Internal("tuning action insert returned no id".into()))?,
    };
    let mut out = json!({"id": id, "index_sql": definition, "status": status, "reason": reason});
    if decision != Decision::Apply {
        return Ok(Some(out));
    }
    // Built without blocking the table's writes: CONCURRENTLY, which cannot run inside a
    // transaction, goes through the sandbox's queued path (a top-level job, held back by the
    // freeze calendar); the next cycle settles it (booking_admin.settle_tuning_actions).
    let name = format!("tuning_action_{id}_idx");
    let sql = r.candidate.statement(&name, true);
    match api::run_admin_sql(&sql, false) {
        Ok(queued) => {
            Spi::run_with_args(
                "UPDATE booking_admin.tuning_actions a
                 SET status = 'applying', status_reason = NULL, sql = $2, job_id = $4::uuid,
                     index_name = format('%I.%I', n.nspname, $3::text),
                     rollback_sql = format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', n.nspname, $3::text)
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE a.id = $1 AND c.oid = a.table_name::regclass",
                &[id.into(), sql.as_str().into(), name.as_str().into(), queued["job_id"].as_str().into()],
            )
            .map_err(DomainError::from)?;
            out["status"] = json!("applying");
            out["index_sql"] = json!(sql);
            out["job_id"] = queued["job_id"].clone();
        }
        Err(e) => {
            set_status(id, "skipped", Some(&e.to_string()))?;
            out["status"] = json!("skipped");
            out["reason"] = json!(e.to_string());
        }
    }
    Ok(Some(out))
}

pub fn cycle() -> Result<Value, ErrorReport> {
    let cfg: Config = json_query(CONFIG_SQL, &[])?;
    let aggressiveness = Aggressiveness::parse(&cfg.aggressiveness)?;
    let frozen = cfg.frozen_until.is_some();
    let threshold = cfg.performance_threshold_ms.unwrap_or(aggressiveness.threshold_ms());
    let settings = Settings {
        enabled: cfg.enabled,
        auto_apply: cfg.auto_apply_indexes,
        aggressiveness,
        max_indexes_per_table: cfg.max_indexes_per_table.into(),
        frozen_until: cfg.frozen_until.clone(),
    };
    // The concurrent builds queued by earlier cycles: built, or failed (and cleaned up).
    let settled = Spi::get_one::<JsonB>("SELECT booking_admin.settle_tuning_actions()")
        .map_err(DomainError::from)?
        .map_or(Value::Null, |j| j.0);
    let mut rolled_back = Vec::new();
    rollback_pass(&cfg, frozen, &mut rolled_back)?;
    let mut notes = Vec::new();
    let queries = if cfg.stats_statements {
        slow_queries(threshold)?
    } else {
        notes.push("pg_stat_statements is not installed: no slow queries to analyse".to_string());
        vec![]
    };
    let mut actions = Vec::new();
    let mut analysed = 0;
    for q in &queries {
        // A statement the analysis does not take (utility, unplannable) is passed over.
        let Ok(Ok((_, recs))) = Subxact::rolled_back().run(|| query_api::analyze(Some(q.query.as_str()))) else {
            continue;
        };
        analysed += 1;
        for r in &recs {
            if let Some(a) = act(r, &q.query, &settings)? {
                actions.push(a);
            }
        }
    }
    Spi::run("UPDATE booking_admin.auto_tuner_config SET last_cycle_at = booking.clock_now()")
        .map_err(DomainError::from)?;
    let slowest = queries.iter().map(|q| q.mean_ms).fold(0.0, f64::max);
    Ok(json!({
        "frozen": frozen, "frozen_until": cfg.frozen_until, "settled": settled,
        "enabled": cfg.enabled, "auto_apply_indexes": cfg.auto_apply_indexes,
        "threshold_ms": threshold, "slow_queries": queries.len(), "analysed": analysed,
        "slowest_mean_ms": slowest, "actions": actions, "rolled_back": rolled_back, "notes": notes,
    }))
}

#[pg_schema]
mod booking_admin {
    use super::*;

    /// One auto-tuner cycle; see docs/admin.md ("Auto-tuner").
    /// The slow queries' names are resolved in `p_search_path` (the caller's unless given).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn perform_tuning_cycle(
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, ErrorReport> {
        let path =
            p_search_path.ok_or_else(|| DomainError::InvalidParameter("p_search_path must not be NULL".into()))?;
        with_search_path(path, cycle)?.map(JsonB)
    }

    /// Drop the index an applied action created (through the sandbox) and mark it rolled back.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn rollback_tuning_action(id: Option<i64>) -> Result<JsonB, ErrorReport> {
        let id = id.ok_or_else(|| DomainError::InvalidParameter("id must not be NULL".into()))?;
        #[derive(Deserialize)]
        struct Row {
            status: String,
            rollback_sql: Option<String>,
        }
        let doc = Spi::get_one_with_args::<JsonB>(
            "SELECT (SELECT to_jsonb(a) FROM booking_admin.tuning_actions a WHERE a.id = $1)",
            &[id.into()],
        )
        .map_err(DomainError::from)?
        .ok_or_else(|| DomainError::NotFound(format!("tuning action {id} does not exist")))?;
        let row: Row = serde_json::from_value(doc.0).map_err(DomainError::from)?;
        let sql = match (row.status.as_str(), row.rollback_sql) {
            ("applied", Some(sql)) => sql,
            (status, _) => {
                return Err(DomainError::InvalidParameter(format!(
                    "tuning action {id} is {status}: only applied actions can be rolled back"
                ))
                .into())
            }
        };
        let result = api::run_admin_sql(&sql, false)?;
        let who = Spi::get_one::<String>("SELECT current_user::text").map_err(DomainError::from)?.unwrap_or_default();
        set_status(id, "rolled_back", Some(&format!("rolled back by {who}")))?;
        Ok(JsonB(json!({"id": id, "status": "rolled_back", "statement": result["statement"]})))
    }
}
