//! SQL-facing adapters of the security module: rate limiting, audit entries, PII discovery and
//! the rule engine. Argument checks and set-based reads here; the decisions are in the pure
//! modules next door.

use pgrx::prelude::*;
use pgrx::{JsonB, PgOid, Uuid as PgUuid};
use serde_json::{json, Value};
use uuid::Uuid;

use super::audit::AuditEntry;
use super::request::current_context;
use super::{pii, rules, shmem};
use crate::clock::now_micros;
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{require, to_pg_uuid, to_uuid};
use crate::pg::kept;
use crate::pg::sandbox;
use crate::telemetry::{self, Change, Metric};
use crate::writer;

type Report = pgrx::pg_sys::panic::ErrorReport;

pub static SECURITY_RULES_EVALUATED: Metric =
    Metric::counter("booking_security_rules_evaluated", &[], 1, "Security rule evaluations (one per rule per run).");
pub static PII_SCANS: Metric = Metric::counter("booking_pii_scans", &[], 1, "PII scans run (booking_admin.scan_pii).");
pub static RATE_LIMIT_REJECTIONS: Metric = Metric::counter(
    "booking_rate_limit_rejections",
    &["bucket"],
    50,
    "Requests refused by booking.check_rate_limit, by bucket (counted when refused, even if the caller rolls back).",
);

/// A label of 1..255 characters, as the audit log's CHECK constraints want it.
fn require_label(value: Option<String>, name: &str) -> DomainResult<String> {
    let value = require(value, name)?;
    if (1..=255).contains(&value.chars().count()) {
        Ok(value)
    } else {
        Err(DomainError::InvalidParameter(format!("{name} must have 1 to 255 characters")))
    }
}

/// Longest rate window: a day keeps every counter's meaning obvious and bounded.
const MAX_WINDOW_SECONDS: i32 = 86_400;

/// Whether a rate check counts the request (`check_rate_limit`) or only reads the counter
/// (`rate_limit_status`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rate {
    Count,
    Peek,
}

fn rate_check(
    identifier: Option<String>,
    bucket: Option<String>,
    max_requests: Option<i32>,
    window_seconds: Option<i32>,
    how: Rate,
) -> DomainResult<(String, String, u32, super::ratelimit::Decision)> {
    let identifier = require(identifier, "identifier")?;
    let bucket = require(bucket, "bucket")?;
    let max = require(max_requests, "max_requests")?;
    let window = require(window_seconds, "window_seconds")?;
    if identifier.is_empty() {
        return Err(DomainError::InvalidParameter("identifier must not be empty".into()));
    }
    if max < 0 {
        return Err(DomainError::InvalidParameter(format!("max_requests must be 0 or more, not {max}")));
    }
    if !(1..=MAX_WINDOW_SECONDS).contains(&window) {
        return Err(DomainError::InvalidParameter(format!(
            "window_seconds must be between 1 and {MAX_WINDOW_SECONDS}, not {window}"
        )));
    }
    let (now, window) = (now_micros(), window as i64 * 1_000_000);
    if how == Rate::Peek {
        let d = shmem::rate_peek(&bucket, &identifier, now, max as u32, window)?;
        return Ok((identifier, bucket, max as u32, d));
    }
    let d = shmem::rate_hit(&bucket, &identifier, now, max as u32, window)?;
    if !d.allowed {
        // At once: a refused request stays refused whatever the caller's transaction does.
        telemetry::now(&RATE_LIMIT_REJECTIONS, &[&bucket], Change::Add(1));
    }
    Ok((identifier, bucket, max as u32, d))
}

/// Counts one request of `identifier` in `bucket` and says whether it is admitted: at most
/// `max_requests` per `window_seconds`, counted in shared memory (reset on restart).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn check_rate_limit(
    identifier: Option<String>,
    bucket: default!(Option<String>, "'api'"),
    max_requests: default!(Option<i32>, 100),
    window_seconds: default!(Option<i32>, 900),
) -> Result<bool, Report> {
    Ok(rate_check(identifier, bucket, max_requests, window_seconds, Rate::Count)?.3.allowed)
}

/// The same check, as `{allowed, limit, remaining, reset_at, bucket}`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn check_rate_limit_json(
    identifier: Option<String>,
    bucket: default!(Option<String>, "'api'"),
    max_requests: default!(Option<i32>, 100),
    window_seconds: default!(Option<i32>, 900),
) -> Result<JsonB, Report> {
    rate_json(rate_check(identifier, bucket, max_requests, window_seconds, Rate::Count)?)
}

/// A rate limit's status (a monitoring API's `GET /rate-limit/{identifier}`): the same
/// document as `check_rate_limit_json` for the current window, without counting a request.
/// `allowed` says whether the next request would be admitted.
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
pub fn rate_limit_status(
    identifier: Option<String>,
    bucket: default!(Option<String>, "'api'"),
    max_requests: default!(Option<i32>, 100),
    window_seconds: default!(Option<i32>, 900),
) -> Result<JsonB, Report> {
    rate_json(rate_check(identifier, bucket, max_requests, window_seconds, Rate::Peek)?)
}

fn rate_json((_, bucket, max, d): (String, String, u32, super::ratelimit::Decision)) -> Result<JsonB, Report> {
    let reset_at = chrono::DateTime::from_timestamp_micros(d.reset_at).map(|t| t.to_rfc3339());
    Ok(JsonB(
        json!({"allowed": d.allowed, "limit": max, "remaining": d.remaining, "reset_at": reset_at, "bucket": bucket}),
    ))
}

/// `{user_id, db_user, tenant_id, ip_address, user_agent, request_id, mfa}` of the current
/// request (PostgREST's `request.jwt.claims` / `request.headers`, else the session). Parallel
/// restricted: a parallel worker has no client connection to read the address from.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
pub fn request_context() -> JsonB {
    JsonB(current_context().to_json())
}

/// Records one audit event: a success in the caller's transaction (it stands or falls with
/// what it describes), a failure through the durable queue (it survives a rollback).
pub fn record(mut entry: AuditEntry) -> DomainResult<Uuid> {
    if !entry.success {
        match writer::submit(&super::audit::AUDIT_SINK, &entry.compact_row()) {
            Ok(()) => return Ok(entry.id),
            Err(e) => pgrx::warning!("booking_engine: {e}; the failure entry is written in this transaction instead"),
        }
    }
    entry.at = now_micros();
    // Every booking writes one: planned once per backend, not on every call.
    kept::run(
        &AUDIT_INSERT,
        "INSERT INTO booking_admin.security_audit_log
         SELECT * FROM jsonb_populate_record(NULL::booking_admin.security_audit_log, $1)",
        &[PgOid::from(pg_sys::JSONBOID)],
        &[JsonB(entry.to_row()).into()],
    )?;
    Ok(entry.id)
}

thread_local! {
    static AUDIT_INSERT: kept::Kept = const { std::cell::RefCell::new(None) };
}

/// The internal audit writer: other SECURITY DEFINER code of the extension calls it for
/// booking changes and PII reads. Not for PUBLIC (see `booking.log_security_event`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
pub fn audit_event(
    p_action: Option<String>,
    p_resource_type: Option<String>,
    p_resource_id: default!(Option<String>, "NULL"),
    p_success: default!(Option<bool>, true),
    p_failure_reason: default!(Option<String>, "NULL"),
    p_sensitive_data_accessed: default!(Option<bool>, false),
    p_tenant_id: default!(Option<PgUuid>, "NULL"),
) -> Result<PgUuid, Report> {
    let entry = AuditEntry {
        id: Uuid::new_v4(),
        context: current_context(),
        tenant_id: p_tenant_id.map(to_uuid),
        action: require_label(p_action, "p_action")?,
        resource_type: require_label(p_resource_type, "p_resource_type")?,
        resource_id: p_resource_id,
        success: p_success.unwrap_or(true),
        failure_reason: p_failure_reason,
        sensitive_data_accessed: p_sensitive_data_accessed.unwrap_or(false),
        at: now_micros(),
    };
    Ok(to_pg_uuid(record(entry)?))
}

/// Whether `local_time` (already in the tenant's zone) is within `opening_hours`.
#[pg_extern(immutable, strict, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn is_within_opening_hours(
    opening_hours: crate::pg::json_doc::JsonDoc,
    local_time: Timestamp,
) -> Result<bool, Report> {
    let week = crate::availability::facade::parse_opening_hours(opening_hours.value("opening_hours")?)
        .map_err(DomainError::InvalidParameter)?;
    if !local_time.is_finite() {
        return Err(DomainError::DatetimeOverflow("local_time must be finite".into()).into());
    }
    let (h, m, s) = (local_time.hour() as u32, local_time.minute() as u32, local_time.second() as u32);
    let dow = chrono::Datelike::weekday(
        &chrono::NaiveDate::from_ymd_opt(local_time.year(), local_time.month() as u32, local_time.day() as u32)
            .ok_or_else(|| DomainError::DatetimeOverflow(format!("{local_time} is outside the supported years")))?,
    )
    .num_days_from_sunday() as usize;
    Ok(rules::within_opening_hours(&week, dow, h * 3600 + m * 60 + s))
}

/// Whether `sql` is exactly one plain SELECT (Postgres's own parser decides): the CHECK on
/// `security_rules.condition_sql`. Stable, not immutable: how string literals are read
/// depends on `standard_conforming_strings`.
#[pg_extern(stable, strict, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn is_single_select(sql: &str) -> bool {
    sandbox::check_single_select(sql).is_ok()
}

#[pgrx::pg_schema]
pub mod booking_admin {
    use super::*;
    use crate::pg::convert::{from_unix_micros, to_unix_micros};

    /// Refuses `identifier` in every bucket of `booking.check_rate_limit` (in this database)
    /// until `p_until`, from the commit of the calling transaction on. Shared memory: a restart
    /// forgets it (the client-blocks operation applies the remediations' blocks again).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn block_client(p_identifier: Option<String>, p_until: Option<TimestampWithTimeZone>) -> Result<bool, Report> {
        let identifier = require_label(p_identifier, "p_identifier")?;
        let until = to_unix_micros(require(p_until, "p_until")?)?;
        crate::pg::preload::require("booking_admin.block_client")?;
        crate::pg::xact::on_commit(move || {
            let _ = shmem::block(&identifier, now_micros(), until);
        });
        Ok(until > now_micros())
    }

    /// Lifts a block at the commit of the calling transaction; whether one is in force now.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn unblock_client(p_identifier: Option<String>) -> Result<bool, Report> {
        let identifier = require_label(p_identifier, "p_identifier")?;
        let blocked = shmem::blocked_until(&identifier, now_micros())?.is_some();
        crate::pg::xact::on_commit(move || {
            let _ = shmem::unblock(&identifier, now_micros());
        });
        Ok(blocked)
    }

    /// Until when `identifier` is blocked in this database, or NULL.
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn client_blocked_until(p_identifier: Option<String>) -> Result<Option<TimestampWithTimeZone>, Report> {
        let identifier = require_label(p_identifier, "p_identifier")?;
        match shmem::blocked_until(&identifier, now_micros())? {
            Some(until) => Ok(Some(from_unix_micros(until)?)),
            None => Ok(None),
        }
    }

    /// The PII kind of one value (`email`, `phone`, `payment_card`, `iban`) or NULL.
    #[pg_extern(immutable, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn classify_pii_value(value: &str) -> Option<&'static str> {
        pii::classify_value(value).map(pii::Kind::as_str)
    }

    /// Scans every user table the caller may read and records PII columns in
    /// `pii_data_registry`; `{tables_scanned, columns_scanned, pii_columns_found, new_columns}`.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn scan_pii(sample_rows: default!(Option<i32>, 1000)) -> Result<JsonB, Report> {
        let sample_rows = require(sample_rows, "sample_rows")?;
        if !(1..=1_000_000).contains(&sample_rows) {
            return Err(DomainError::InvalidParameter(format!(
                "sample_rows must be between 1 and 1000000, not {sample_rows}"
            ))
            .into());
        }
        let report = super::scan(sample_rows)?;
        telemetry::at_commit(&PII_SCANS, &[], Change::Add(1));
        Ok(JsonB(report))
    }

    /// Runs every active rule (see docs/security.md) and keeps `security_violations` current:
    /// `{rules_evaluated, violations_found, new_violations, violations_resolved, errors}`.
    /// The rules' statements are resolved in `p_search_path` (the caller's unless given).
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn evaluate_security_rules(
        p_search_path: default!(Option<&str>, "current_setting('search_path')"),
    ) -> Result<JsonB, Report> {
        let path = require(p_search_path, "p_search_path")?;
        let report = crate::pg::guc::with_search_path(path, super::evaluate)??;
        let rules = report.get("rules_evaluated").and_then(serde_json::Value::as_u64).unwrap_or(0);
        telemetry::at_commit(&SECURITY_RULES_EVALUATED, &[], Change::Add(rules));
        Ok(JsonB(report))
    }
}

/// Column types whose values are sampled; bytea columns are only noted as encrypted.
const TABLES_SQL: &str = include_str!("../../sql/queries/security_pii_tables.sql");

#[derive(serde::Deserialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
}

#[derive(serde::Deserialize)]
struct Table {
    table: String,
    columns: Vec<Column>,
}

fn scan(sample_rows: i32) -> DomainResult<Value> {
    let text: String =
        Spi::get_one(TABLES_SQL)?.ok_or_else(|| DomainError::Internal("table list query returned NULL".into()))?;
    let tables: Vec<Table> = serde_json::from_str(&text)?;
    // The scan reads samples of every table: its audit entry says it touched personal data.
    super::hook::mark_sensitive();
    let mut found = Vec::new();
    let mut columns_scanned = 0;
    for t in &tables {
        let sampled: Vec<&Column> = t.columns.iter().filter(|c| c.type_name != "bytea").collect();
        columns_scanned += t.columns.len();
        let values: Vec<Vec<Option<String>>> = if sampled.is_empty() {
            Vec::new()
        } else {
            let list = sampled
                .iter()
                .map(|c| format!("{}::text", pgrx::spi::quote_identifier(&c.name)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql =
                format!("SELECT json_agg(json_build_array({list}))::text FROM (SELECT * FROM {} LIMIT $1) s", t.table);
            let rows: Option<String> = Spi::get_one_with_args(&sql, &[sample_rows.into()])?;
            rows.map(|r| serde_json::from_str(&r)).transpose()?.unwrap_or_default()
        };
        let samples: Vec<pii::Sample> = (0..sampled.len())
            .map(|i| pii::Sample::of(values.iter().filter_map(|row| row.get(i).and_then(|v| v.as_deref()))))
            .collect();
        let has_value_pii = samples.iter().any(|s| s.verdict().is_some());
        for (i, c) in sampled.iter().enumerate() {
            if let Some(kind) = pii::classify_column(&c.name, &samples[i], has_value_pii) {
                let encrypted = values
                    .iter()
                    .filter_map(|row| row.get(i).and_then(|v| v.as_deref()))
                    .filter(|v| !v.trim().is_empty())
                    .all(pii::looks_encrypted)
                    && samples[i].non_empty > 0;
                found.push(json!({"table_name": t.table, "column_name": c.name, "data_type": kind.as_str(),
                                  "compliance_level": kind.compliance_level(),
                                  "encryption_method": encrypted.then_some("pgcrypto")}));
            }
        }
        for c in t.columns.iter().filter(|c| c.type_name == "bytea") {
            if let Some(kind) = pii::name_hint(&c.name) {
                found.push(json!({"table_name": t.table, "column_name": c.name, "data_type": kind.as_str(),
                                  "compliance_level": kind.compliance_level(), "encryption_method": "bytea"}));
            }
        }
    }
    let new_columns: i64 = Spi::get_one_with_args(
        "SELECT booking_admin.record_pii_columns($1)",
        &[JsonB(Value::Array(found.clone())).into()],
    )?
    .unwrap_or(0);
    Ok(json!({"tables_scanned": tables.len(), "columns_scanned": columns_scanned,
              "pii_columns_found": found.len(), "new_columns": new_columns}))
}

#[derive(serde::Deserialize)]
struct Rule {
    id: Uuid,
    rule_name: String,
    condition_sql: String,
}

const MERGE_SQL: &str = include_str!("../../sql/queries/security_violations_merge.sql");

fn evaluate() -> DomainResult<Value> {
    let text: String = Spi::get_one(
        "SELECT coalesce(json_agg(json_build_object('id', id, 'rule_name', rule_name, 'condition_sql', condition_sql)
                 ORDER BY rule_name), '[]')::text
         FROM booking_admin.security_rules WHERE is_active",
    )?
    .ok_or_else(|| DomainError::Internal("rule list query returned NULL".into()))?;
    let rules: Vec<Rule> = serde_json::from_str(&text)?;
    let timeout = crate::gucs::rule_timeout_ms();
    let (mut found, mut new, mut resolved) = (0i64, 0i64, 0i64);
    let mut errors = Vec::new();
    for rule in &rules {
        match sandbox::run_select(&rule.condition_sql, timeout) {
            Ok(rows) => {
                found += rows.len() as i64;
                let items: Vec<Value> =
                    rows.into_iter().map(|r| json!({"key": rules::violation_key(&r), "details": r})).collect();
                let counts: String = Spi::get_one_with_args(
                    MERGE_SQL,
                    &[to_pg_uuid(rule.id).into(), JsonB(Value::Array(items)).into()],
                )?
                .unwrap_or_default();
                let (n, r): (i64, i64) = serde_json::from_str(&counts)?;
                new += n;
                resolved += r;
            }
            Err(message) => errors.push(json!({"rule": rule.rule_name, "error": message})),
        }
    }
    // What the rules that name an action propose for their new violations (a dry run each).
    let proposed = Spi::get_one::<i32>("SELECT booking_admin.propose_remediations()")?.unwrap_or(0);
    Ok(json!({"rules_evaluated": rules.len(), "violations_found": found, "new_violations": new,
              "violations_resolved": resolved, "remediations_proposed": proposed, "errors": errors}))
}
