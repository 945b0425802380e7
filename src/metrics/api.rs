//! SQL functions of the metrics: recording (for the triggers), the metrics as rows and as
//! exposition text, and the scrape's SQL gauges shared with the HTTP worker.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::defs::{WRITER_DROPPED, WRITER_QUEUE};
use super::expose::{render, samples, Format, Sample, SqlValue};
use super::http::Range;
use crate::errors::{DomainError, DomainResult};
use crate::gucs;
use crate::pg::catalog::extension_installed;
use crate::pg::subxact::Subxact;
use crate::telemetry::{self, Change, Kind};

const SERVER_GAUGES: &str = include_str!("../../sql/queries/metrics_server_gauges.sql");
const BOOKING_GAUGES: &str = include_str!("../../sql/queries/metrics_booking_gauges.sql");

fn read_values(sql: &str) -> Result<Vec<SqlValue>, pgrx::spi::Error> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(sql, None, &[])? {
            out.push(SqlValue {
                metric: row.get::<String>(1)?.unwrap_or_default(),
                labels: row
                    .get::<Vec<Option<String>>>(2)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
                value: row.get::<f64>(3)?.unwrap_or(f64::NAN),
            });
        }
        Ok(out)
    })
}

/// The scrape's SQL gauges of the current database: read-only, rolled back, under
/// `booking_engine.metrics_sql_timeout_ms`. Err is the message of what failed.
pub fn sql_values() -> Result<Vec<SqlValue>, String> {
    let ran = Subxact::rolled_back().read_only().deadline_ms(gucs::metrics_sql_timeout_ms()).run(|| {
        let mut out = read_values(SERVER_GAUGES)?;
        if extension_installed() {
            out.extend(read_values(BOOKING_GAUGES)?);
        }
        Ok::<_, pgrx::spi::Error>(out)
    });
    ran.map_err(|c| c.message).and_then(|r| r.map_err(|e| e.to_string()))
}

/// Every sample: the shared-memory series (none when not preloaded) and, when `with_sql`, the
/// SQL gauges with `booking_metrics_sql_up` saying whether they answered.
pub fn all_samples(with_sql: bool) -> Vec<Sample> {
    // The writer's queue as it stands at this scrape.
    if let Some((pending, capacity, given_up)) = crate::writer::stats() {
        telemetry::now(&WRITER_QUEUE, &["pending"], Change::Set(pending as f64));
        telemetry::now(&WRITER_QUEUE, &["capacity"], Change::Set(capacity as f64));
        telemetry::now(&WRITER_DROPPED, &[], Change::Set(given_up as f64));
    }
    let (series, dropped) = telemetry::snapshot().unwrap_or_default();
    let mut sql = Vec::new();
    if with_sql {
        let up = match sql_values() {
            Ok(v) => {
                sql = v;
                1.0
            }
            Err(e) => {
                pgrx::log!("booking_engine metrics: the SQL gauges failed: {e}");
                0.0
            }
        };
        sql.push(SqlValue { metric: "booking_metrics_sql_up".into(), labels: vec![], value: up });
    }
    samples(&series, &dropped, &sql)
}

/// One JSON document from `sql`, read-only and under the scrape deadline, when `function`
/// exists in this database (booking_engine installed); `absent` otherwise.
fn json_if_installed(function: &str, sql: &str, absent: serde_json::Value) -> Result<serde_json::Value, String> {
    let ran = Subxact::rolled_back().read_only().deadline_ms(gucs::metrics_sql_timeout_ms()).run(|| {
        let found = Spi::get_one_with_args::<bool>("SELECT to_regprocedure($1) IS NOT NULL", &[function.into()])?;
        if found != Some(true) {
            return Ok(absent);
        }
        Ok::<_, pgrx::spi::Error>(Spi::get_one::<JsonB>(sql)?.map_or(serde_json::Value::Null, |j| j.0))
    });
    ran.map_err(|c| c.message).and_then(|r| r.map_err(|e| e.to_string()))
}

/// The health report of this database (`booking_admin.health()`), or the database alone where
/// booking_engine is not installed.
pub fn health_json() -> Result<serde_json::Value, String> {
    json_if_installed(
        "booking_admin.health()",
        "SELECT booking_admin.health()",
        serde_json::json!({"status": "ok", "components": {"database": {"status": "ok"}},
                           "note": "booking_engine is not installed in booking_engine.metrics_database"}),
    )
}

/// The dashboard page of this database, its charts over `range`.
pub fn dashboard_html(range: Range) -> Result<String, String> {
    let data = json_if_installed(
        "booking_admin.dashboard_data()",
        "SELECT booking_admin.dashboard_data()",
        serde_json::Value::Null,
    )?;
    if data.is_null() {
        return Err("booking_engine is not installed in booking_engine.metrics_database".into());
    }
    let series = json_if_installed(
        "booking_admin.dashboard_series(interval)",
        &format!("SELECT booking_admin.dashboard_series('{}')", range.interval()),
        serde_json::Value::Null,
    )?;
    let alerts = data.get("alerts").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    Ok(super::dashboard::render(&data, &all_samples(false), &alerts, &series, range))
}

fn parse_format(format: &str) -> DomainResult<Format> {
    match format {
        "prometheus" => Ok(Format::Prometheus),
        "openmetrics" => Ok(Format::OpenMetrics),
        other => Err(DomainError::InvalidParameter(format!(
            "unknown exposition format \"{other}\": use prometheus or openmetrics"
        ))),
    }
}

fn record_change(metric: &str, labels: &[Option<String>], value: f64) -> DomainResult<()> {
    let m = telemetry::resolve(metric, labels.len()).map_err(DomainError::InvalidParameter)?;
    if !value.is_finite() || value < 0.0 {
        return Err(DomainError::InvalidParameter(format!("{metric}: the value must be finite and not negative")));
    }
    let change = match m.kind {
        Kind::Counter if value.fract() == 0.0 => Change::Add(value as u64),
        Kind::Counter => {
            return Err(DomainError::InvalidParameter(format!("{metric} is a counter: the value must be whole")));
        }
        Kind::Histogram => Change::Observe(value),
        Kind::Gauge => Change::Set(value),
    };
    let values: Vec<&str> = labels.iter().map(|l| l.as_deref().unwrap_or("")).collect();
    telemetry::at_commit(m, &values, change);
    Ok(())
}

/// Counts `p_value` (a counter) or observes it (a histogram) for `p_metric` with the label
/// values `p_labels`, when the calling transaction commits. For the extension's triggers: in
/// schema `booking` (not granted to anyone), because every `booking_admin` call is audited and
/// counting must not cost a booking an audit entry.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn metrics_record(
    p_metric: &str,
    p_labels: Vec<Option<String>>,
    p_value: default!(f64, 1.0),
) -> Result<(), ErrorReport> {
    Ok(record_change(p_metric, &p_labels, p_value)?)
}

#[pg_schema]
pub mod booking_admin {
    use super::*;

    /// Every sample, as rows: sample name, labels as a JSON object, value.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn metrics() -> TableIterator<'static, (name!(metric, String), name!(labels, JsonB), name!(value, f64))> {
        let rows: Vec<_> = all_samples(true)
            .into_iter()
            .map(|s| {
                let labels =
                    s.labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
                (s.name(), JsonB(serde_json::Value::Object(labels)), s.value)
            })
            .collect();
        TableIterator::new(rows)
    }

    /// The exposition text, as the /metrics endpoint serves it ('prometheus' or 'openmetrics').
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn metrics_text(p_format: default!(&str, "'prometheus'")) -> Result<String, ErrorReport> {
        let format = parse_format(p_format)?;
        Ok(render(&all_samples(true), format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named() {
        assert_eq!(parse_format("openmetrics").unwrap(), Format::OpenMetrics);
        assert!(parse_format("json").unwrap_err().to_string().contains("prometheus or openmetrics"));
    }
}
