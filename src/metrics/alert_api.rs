//! Evaluating the alert rules: each rule's condition (a sandboxed SELECT, or a metric with an
//! operator and threshold) gives the instances that hold now; `alerts::step` decides each
//! instance's next state; `booking_admin.alert_apply` stores it, keeps the history and writes
//! the notification event.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Value};

use super::alerts::{compare, fingerprint, matches, render_template, step, Instance, Notify, Timing};
use super::api::all_samples;
use super::defs::ALERT_NOTIFICATIONS;
use super::expose::Sample;
use crate::errors::{DomainError, DomainResult};
use crate::gucs;
use crate::pg::sandbox;
use crate::pg::subxact::Subxact;
use crate::telemetry::{self, Change};

#[derive(Deserialize)]
struct Rule {
    id: String,
    run_as: u32,
    name: String,
    severity: String,
    condition_sql: Option<String>,
    metric: Option<String>,
    operator: Option<String>,
    threshold: Option<f64>,
    for_seconds: f64,
    keep_firing_for_seconds: f64,
    repeat_interval_seconds: f64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Stored {
    fingerprint: String,
    labels: BTreeMap<String, String>,
    instance: Instance,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What holds now for a rule: labels → value.
/// Labels and value of one instance whose condition holds.
type Held = (BTreeMap<String, String>, f64);

fn observe(rule: &Rule, samples: &mut Option<Vec<Sample>>) -> Result<Vec<Held>, String> {
    if let Some(sql) = &rule.condition_sql {
        // As the rule's writer: the scheduler runs as the extension's owner.
        let rows = Subxact::kept()
            .as_role(pg_sys::Oid::from(rule.run_as))
            .run(|| sandbox::run_select(sql, gucs::rule_timeout_ms()))
            .map_err(|c| c.message)??;
        return Ok(rows
            .into_iter()
            .map(|row| {
                let obj = row.as_object().cloned().unwrap_or_default();
                let value =
                    obj.get("value").and_then(|v| v.as_f64().or_else(|| text_of(v).parse().ok())).unwrap_or(1.0);
                let labels = obj.iter().filter(|(k, _)| *k != "value").map(|(k, v)| (k.clone(), text_of(v))).collect();
                (labels, value)
            })
            .collect());
    }
    let (metric, op, threshold) = match (&rule.metric, &rule.operator, rule.threshold) {
        (Some(m), Some(o), Some(t)) => (m, o, t),
        _ => return Err("the rule has neither condition_sql nor metric, operator and threshold".into()),
    };
    let samples = samples.get_or_insert_with(|| all_samples(true));
    let mut out = Vec::new();
    for s in samples.iter().filter(|s| &s.name() == metric) {
        if compare(s.value, op, threshold).ok_or_else(|| format!("unknown operator {op}"))? {
            out.push((s.labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), s.value));
        }
    }
    Ok(out)
}

fn load<T: for<'de> Deserialize<'de>>(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> DomainResult<Vec<T>> {
    let doc = Spi::get_one_with_args::<JsonB>(sql, args)?.map_or(Value::Array(vec![]), |j| j.0);
    Ok(serde_json::from_value(doc)?)
}

fn evaluate() -> DomainResult<Value> {
    // One evaluation at a time (the scheduler's and a manual one): each reads the instances,
    // decides, and writes; two at once would both notify the same change.
    Spi::run("SELECT pg_advisory_xact_lock(hashtext('booking_engine alert evaluation'))")?;
    let now = Spi::get_one::<f64>("SELECT extract(epoch FROM clock_timestamp())::float8")?.unwrap_or(0.0);
    let rules: Vec<Rule> = load(
        "SELECT coalesce(jsonb_agg(to_jsonb(r) - 'for_duration' - 'keep_firing_for' - 'repeat_interval' - 'run_as' || jsonb_build_object(
                 'run_as', r.run_as::oid::int8,
                 'for_seconds', extract(epoch FROM r.for_duration),
                 'keep_firing_for_seconds', extract(epoch FROM r.keep_firing_for),
                 'repeat_interval_seconds', extract(epoch FROM r.repeat_interval)) ORDER BY r.name), '[]')
         FROM booking_admin.alert_rules r WHERE r.enabled",
        &[],
    )?;
    let silences: Vec<BTreeMap<String, String>> = load(
        "SELECT coalesce(jsonb_agg(s.matchers), '[]') FROM booking_admin.alert_silences s
         WHERE clock_timestamp() >= s.starts_at AND clock_timestamp() < s.ends_at",
        &[],
    )?;
    let mut samples = None;
    let (mut errors, mut notifications, mut firing, mut pending) = (Vec::new(), 0, 0, 0);
    for rule in &rules {
        let observed = match observe(rule, &mut samples) {
            Ok(o) => o,
            Err(e) => {
                // Its instances stay as they are: an error says nothing about the condition.
                errors.push(json!({"rule": rule.name, "error": e}));
                continue;
            }
        };
        let stored: Vec<Stored> = load(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('fingerprint', i.fingerprint, 'labels', i.labels,
                     'instance', i.instance)), '[]')
             FROM booking_admin.alert_instances i WHERE i.rule_id = $1::uuid",
            &[rule.id.as_str().into()],
        )?;
        let timing = Timing {
            for_s: rule.for_seconds,
            keep_firing_for_s: rule.keep_firing_for_seconds,
            repeat_s: rule.repeat_interval_seconds,
        };
        let mut now_held: BTreeMap<String, Held> = BTreeMap::new();
        for (own, value) in observed {
            let mut labels = rule.labels.clone();
            labels.extend(own);
            labels.insert("alertname".into(), rule.name.clone());
            labels.insert("severity".into(), rule.severity.clone());
            now_held.insert(fingerprint(&rule.name, &labels), (labels, value));
        }
        let prev: BTreeMap<&str, &Stored> = stored.iter().map(|s| (s.fingerprint.as_str(), s)).collect();
        let keys: BTreeSet<&str> = now_held.keys().map(String::as_str).chain(prev.keys().copied()).collect();
        for fp in keys {
            let before = prev.get(fp).map(|s| &s.instance);
            let (labels, value) = match (now_held.get(fp), prev.get(fp)) {
                (Some((l, v)), _) => (l.clone(), Some(*v)),
                (None, Some(s)) => (s.labels.clone(), None),
                (None, None) => continue,
            };
            let silenced = silences.iter().any(|m| matches(m, &labels));
            let (next, notify) = step(before, value, now, timing, silenced);
            if next.as_ref() == before && notify.is_none() {
                continue;
            }
            let shown = value.or(before.map(|b| b.value)).unwrap_or(0.0);
            let annotations: BTreeMap<&String, String> =
                rule.annotations.iter().map(|(k, v)| (k, render_template(v, &labels, shown))).collect();
            if let Some(n) = notify {
                notifications += 1;
                let kind = if n == Notify::Firing { "firing" } else { "resolved" };
                telemetry::at_commit(&ALERT_NOTIFICATIONS, &[kind], Change::Add(1));
            }
            let doc = json!({
                "rule_id": rule.id, "rule": rule.name, "severity": rule.severity, "fingerprint": fp,
                "labels": labels, "annotations": annotations, "value": shown, "silenced": silenced,
                "previous": before.map(|b| b.state), "instance": next, "notify": notify,
            });
            Spi::run_with_args("SELECT booking_admin.alert_apply($1)", &[JsonB(doc).into()])?;
        }
        let states = Spi::get_two_with_args::<i64, i64>(
            "SELECT count(*) FILTER (WHERE state = 'firing'), count(*) FILTER (WHERE state = 'pending')
             FROM booking_admin.alert_instances WHERE rule_id = $1::uuid",
            &[rule.id.as_str().into()],
        )?;
        firing += states.0.unwrap_or(0);
        pending += states.1.unwrap_or(0);
    }
    Ok(json!({"rules_evaluated": rules.len(), "firing": firing, "pending": pending,
              "notifications": notifications, "errors": errors}))
}

fn check_rule(condition_sql: Option<&str>, metric: Option<&str>) -> DomainResult<()> {
    if let Some(sql) = condition_sql {
        sandbox::check_single_select(sql)?;
    }
    if let Some(m) = metric {
        let family = ["_total", "_bucket", "_sum", "_count"].iter().find_map(|s| m.strip_suffix(s)).unwrap_or(m);
        if telemetry::find(m).or_else(|| telemetry::find(family)).is_none() {
            return Err(DomainError::InvalidParameter(format!(
                "unknown metric \"{m}\": see booking_admin.metrics() for the names"
            )));
        }
    }
    Ok(())
}

#[pg_schema]
pub mod booking_admin {
    use super::*;

    /// Evaluates every enabled alert rule once: `{rules_evaluated, firing, pending,
    /// notifications, errors}`. Run by the scheduler (`evaluate-alerts`).
    /// Conditions name their tables with schemas: the search path is pinned.
    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn evaluate_alert_rules() -> Result<JsonB, ErrorReport> {
        Ok(JsonB(evaluate()?))
    }

    /// Refuses a rule whose condition_sql is not one plain SELECT (2F003, 42601) or whose
    /// metric is unknown (22023). Called by the rules' validation trigger.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_alert_rule(condition_sql: Option<&str>, metric: Option<&str>) -> Result<bool, ErrorReport> {
        check_rule(condition_sql, metric)?;
        Ok(true)
    }
}
