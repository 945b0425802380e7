//! The dashboard page: server-rendered HTML with inline SVG charts (`charts`), no scripts, no
//! external assets (pure).

use serde_json::Value;

use super::charts::{self, esc, Chart, Kind, Series};
use super::expose::Sample;
use super::http::Range;
use crate::telemetry::Metric;

/// The histogram of slot query latency the page summarises.
const SLOT_QUERIES: &str = "booking_slot_query_duration_seconds";

/// Upper bound of the bucket holding the q-quantile of a histogram's observations (the
/// bucket's bound, as Prometheus's histogram_quantile would at the bucket's top), or None
/// without observations. `cumulative` are the `_bucket` counts in order, `+Inf` last.
pub fn quantile_bound(bounds: &[f64], cumulative: &[f64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = cumulative.iter().position(|c| *c >= rank)?;
    Some(bounds.get(i).copied().unwrap_or(f64::INFINITY))
}

/// Observations, mean and p95 bound of one histogram metric across all its series.
pub fn latency_summary(samples: &[Sample], metric: &Metric) -> Option<(f64, f64, f64)> {
    let d = metric.index()?;
    let bounds = metric.buckets;
    let mut cumulative = vec![0.0; bounds.len() + 1];
    let (mut count, mut sum) = (0.0, 0.0);
    for s in samples.iter().filter(|s| s.def == d) {
        match s.suffix {
            "_bucket" => {
                let le = s.labels.iter().find(|(k, _)| *k == "le").map(|(_, v)| v.as_str()).unwrap_or("");
                let i = bounds.iter().position(|b| le.parse::<f64>().ok() == Some(*b)).unwrap_or(bounds.len());
                cumulative[i] += s.value;
            }
            "_count" => count += s.value,
            "_sum" => sum += s.value,
            _ => {}
        }
    }
    let p95 = quantile_bound(bounds, &cumulative, 0.95)?;
    Some((count, sum / count, p95))
}

fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

fn tile(out: &mut String, id: &str, label: &str, value: &str) {
    out.push_str(&format!(
        "<div class=\"tile\" id=\"{id}\"><div class=\"v\">{}</div><div>{}</div></div>",
        esc(value),
        esc(label)
    ));
}

fn table(out: &mut String, id: &str, title: &str, rows: &[(String, String)]) {
    out.push_str(&format!("<h2>{}</h2><table id=\"{id}\">", esc(title)));
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"2\">none</td></tr>");
    }
    for (k, v) in rows {
        out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)));
    }
    out.push_str("</table>");
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string())).collect())
        .unwrap_or_default()
}

/// A series of the chart document: one number (or null) per hour.
fn hourly(series: &Value, key: &str) -> Vec<Option<f64>> {
    series.get(key).and_then(Value::as_array).map(|a| a.iter().map(Value::as_f64).collect()).unwrap_or_default()
}

/// The q-quantile bound of each hour's slot query latency in ms, from the hour's cumulative
/// bucket counts (`[[le, n], ...]`, `+Inf` last).
fn latency_quantile(series: &Value, q: f64) -> Vec<Option<f64>> {
    let hours = series.get("latency_buckets").and_then(Value::as_array).cloned().unwrap_or_default();
    hours
        .iter()
        .map(|h| {
            let pairs = h.as_array()?;
            let bounds: Vec<f64> = pairs
                .iter()
                .filter_map(|p| p.get(0)?.as_str()?.parse::<f64>().ok().filter(|b| b.is_finite()))
                .collect();
            let cumulative: Vec<f64> = pairs.iter().filter_map(|p| p.get(1)?.as_f64()).collect();
            quantile_bound(&bounds, &cumulative, q).filter(|b| b.is_finite()).map(|b| b * 1000.0)
        })
        .collect()
}

/// The charts of `series` (`booking_admin.dashboard_series(window)`), one section.
fn charts_section(out: &mut String, series: &Value, range: Range) {
    let hours: Vec<i64> = series
        .get("hours")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let other = match range {
        Range::Day => "<a href=\"/dashboard?range=week\">last week</a>",
        Range::Week => "<a href=\"/dashboard?range=day\">last day</a>",
    };
    out.push_str(&format!(
        "<h2 id=\"history\">The last {} <small>(per hour, UTC; also: {other})</small></h2><div class=\"charts\">",
        range.name()
    ));
    const GOOD: &str = "#2a7d4f";
    const BAD: &str = "#c0392b";
    // Counts per hour of what went well and what did not, side by side.
    let bars =
        |id, title, unit, (ok, ok_key): (&'static str, &str), (failed, failed_key): (&'static str, &str)| Chart {
            id,
            title,
            unit,
            kind: Kind::Bars,
            hours: &hours,
            series: vec![
                Series { name: ok, color: GOOD, values: hourly(series, ok_key) },
                Series { name: failed, color: BAD, values: hourly(series, failed_key) },
            ],
            format: charts::count,
        };
    // One quantity over time.
    let line = |id, title, unit, name, key: &str, color, format| Chart {
        id,
        title,
        unit,
        kind: Kind::Lines,
        hours: &hours,
        series: vec![Series { name, color, values: hourly(series, key) }],
        format,
    };
    let charts = [
        bars(
            "chart-bookings",
            "Bookings and refusals",
            "operations",
            ("bookings", "bookings"),
            ("refusals", "refusals"),
        ),
        Chart {
            id: "chart-latency",
            title: "Slot query latency",
            unit: "ms, bucket bounds",
            kind: Kind::Lines,
            hours: &hours,
            series: vec![
                Series { name: "p50", color: "#2874a6", values: latency_quantile(series, 0.5) },
                Series { name: "p95", color: "#d68910", values: latency_quantile(series, 0.95) },
                Series { name: "p99", color: BAD, values: latency_quantile(series, 0.99) },
            ],
            format: charts::millis,
        },
        bars(
            "chart-jobs",
            "Job attempts",
            "attempts",
            ("completed", "jobs_completed"),
            ("failed or dead", "jobs_failed"),
        ),
        bars(
            "chart-deliveries",
            "Delivery attempts",
            "attempts",
            ("delivered", "delivered"),
            ("failed", "delivery_failures"),
        ),
        line(
            "chart-backlog",
            "Delivery backlog",
            "pending deliveries",
            "pending",
            "delivery_backlog",
            "#7d3c98",
            charts::count,
        ),
        line("chart-database-size", "Database size", "bytes", "size", "database_bytes", "#2874a6", charts::bytes),
    ];
    for c in &charts {
        out.push_str(&charts::render(c));
    }
    let top = series.get("top_queries").and_then(Value::as_array).cloned().unwrap_or_default();
    const COLORS: [&str; 5] = ["#2874a6", "#d68910", "#2a7d4f", "#c0392b", "#7d3c98"];
    let names: Vec<String> = (1..=top.len()).map(|i| format!("query {i}")).collect();
    let top_chart = Chart {
        id: "chart-top-queries",
        title: "Top queries by total time",
        unit: "ms",
        kind: Kind::Lines,
        hours: &hours,
        series: top
            .iter()
            .zip(&names)
            .zip(COLORS)
            .map(|((q, name), color)| Series { name, color, values: hourly(q, "hourly") })
            .collect(),
        format: charts::millis,
    };
    out.push_str(&charts::render(&top_chart));
    out.push_str("</div><table id=\"top-queries\"><tr><th></th><th>query</th><th>calls</th><th>total</th><th>mean</th><th>vs the window before</th></tr>");
    if top.is_empty() {
        out.push_str("<tr><td colspan=\"6\">no query history yet (pg_stat_statements and the capture-history operation)</td></tr>");
    }
    for (q, name) in top.iter().zip(&names) {
        let num = |k: &str| q.get(k).and_then(Value::as_f64);
        let trend = num("trend").map_or("new".to_string(), |t| format!("\u{d7}{t}"));
        out.push_str(&format!(
            "<tr><th>{}</th><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(q.get("query").and_then(Value::as_str).unwrap_or("")),
            charts::count(num("calls").unwrap_or(0.0)),
            charts::millis(num("total_ms").unwrap_or(0.0)),
            charts::millis(num("mean_ms").unwrap_or(0.0)),
            esc(&trend)
        ));
    }
    out.push_str("</table>");
}

/// The machine as the metrics worker last read it: CPU, memory and disk shares.
fn host_tiles(out: &mut String, samples: &[Sample]) {
    let value = |name: &str| {
        let d = crate::telemetry::find(name).and_then(|m| m.index())?;
        samples.iter().find(|s| s.def == d).map(|s| s.value)
    };
    for (id, label, name) in [
        ("host-cpu", "CPU busy", "booking_host_cpu_usage_ratio"),
        ("host-memory", "memory used", "booking_host_memory_used_ratio"),
        ("host-disk", "data disk used", "booking_host_disk_used_ratio"),
    ] {
        let shown = value(name).map_or("n/a".to_string(), |v| format!("{:.0}%", v * 100.0));
        tile(out, id, label, &shown);
    }
}

/// The page: `data` is `booking_admin.dashboard_data()`, `alerts` the firing alerts as
/// `[{name, severity, started_at, acknowledged}]`, `series` the charts' data
/// (`booking_admin.dashboard_series`) over `range`.
pub fn render(data: &Value, samples: &[Sample], alerts: &[Value], series: &Value, range: Range) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>booking_engine</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}.tile{display:inline-block;border:1px solid #ccc;\
         border-radius:6px;padding:1em;margin:.3em;min-width:9em}.v{font-size:1.8em;font-weight:bold}\
         table{border-collapse:collapse;margin-bottom:1em}th,td{border:1px solid #ddd;padding:.3em .8em;text-align:left}\
         .ok{color:#080}.warning{color:#b60}.critical{color:#c00}code{background:#f4f4f4}\
         .charts{display:flex;flex-wrap:wrap;gap:1em}.chart{margin:0;border:1px solid #eee;padding:.5em}\
         figcaption{font-size:.9em}.key{margin-left:1em}.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em}\
         </style></head><body>",
    );
    let health = data.get("health").cloned().unwrap_or(Value::Null);
    let status = health.get("status").and_then(Value::as_str).unwrap_or("unknown");
    out.push_str(&format!(
        "<h1>booking_engine <span id=\"status\" class=\"{s}\">{s}</span></h1><p>generated {}</p>",
        esc(data.get("generated_at").and_then(Value::as_str).unwrap_or("")),
        s = esc(status)
    ));
    tile(&mut out, "health-score", "health score (0-100)", &num(data, "health_score"));
    tile(&mut out, "bookings-today", "bookings today", &num(data, "bookings_today"));
    tile(&mut out, "refusals-today", "refusals today", &num(data, "refusals_today"));
    tile(&mut out, "undispatched", "undispatched events", &num(data, "undispatched_events"));
    tile(&mut out, "cache-hit", "cache hit ratio", &num(data, "cache_hit_ratio"));
    // The availability engine declares this histogram; it is looked up by its name.
    let slot_queries = crate::telemetry::find(SLOT_QUERIES);
    let latency = match slot_queries.and_then(|m| latency_summary(samples, m)) {
        Some((n, mean, p95)) => format!("{n} queries, mean {:.1} ms, p95 \u{2264} {} ms", mean * 1000.0, p95 * 1000.0),
        None => "no slot queries yet".into(),
    };
    tile(&mut out, "slot-latency", "slot query latency", &latency);
    let conversion = data.get("waitlist_conversion").and_then(Value::as_f64);
    tile(
        &mut out,
        "waitlist-conversion",
        "waitlist conversion (30 days)",
        &conversion.map_or("n/a".to_string(), |c| format!("{:.0}%", c * 100.0)),
    );
    host_tiles(&mut out, samples);
    charts_section(&mut out, series, range);
    let components: Vec<(String, String)> = health
        .get("components")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter().map(|(k, v)| (k.clone(), v.get("status").and_then(Value::as_str).unwrap_or("").into())).collect()
        })
        .unwrap_or_default();
    table(&mut out, "health", "Health", &components);
    table(&mut out, "jobs", "Jobs by status", &pairs(data.get("jobs")));
    table(&mut out, "violations", "Open security violations", &pairs(data.get("violations")));
    out.push_str("<h2>Firing alerts</h2><table id=\"alerts\">");
    if alerts.is_empty() {
        out.push_str("<tr><td>none</td></tr>");
    }
    for a in alerts {
        let get = |k: &str| a.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
        out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td>since {}</td><td>{}</td></tr>",
            esc(&get("name")),
            esc(&get("severity")),
            esc(&get("started_at")),
            if a.get("acknowledged").and_then(Value::as_bool) == Some(true) {
                "acknowledged".to_string()
            } else {
                format!("<code>SELECT booking_admin.acknowledge_alert('{}', 'note');</code>", esc(&get("fingerprint")))
            }
        ));
    }
    out.push_str("</table><p>Metrics: <a href=\"/metrics\">/metrics</a> \u{b7} <a href=\"/health\">/health</a></p></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expose::samples;
    use crate::telemetry::table::CELLS;
    use crate::telemetry::Series;
    use serde_json::json;

    #[test]
    fn quantiles_take_the_bucket_bound() {
        assert_eq!(quantile_bound(&[1.0, 2.0], &[0.0, 10.0, 10.0], 0.95), Some(2.0));
        assert_eq!(quantile_bound(&[1.0, 2.0], &[0.0, 0.0, 4.0], 0.5), Some(f64::INFINITY));
        assert_eq!(quantile_bound(&[1.0], &[0.0, 0.0], 0.5), None);
    }

    #[test]
    fn the_page_shows_the_figures_and_escapes_text() {
        crate::register_features();
        let d = crate::telemetry::find(SLOT_QUERIES).and_then(|m| m.index()).unwrap();
        let mut cells = vec![0u64; CELLS];
        cells[1] = 4; // four at most 1 ms
        cells[CELLS - 2] = 4;
        cells[CELLS - 1] = 0.002f64.to_bits();
        let s = samples(&[Series { def: d, labels: vec!["f".into()], cells }], &[0; 64], &[]);
        let data = json!({"bookings_today": 7, "refusals_today": 2, "jobs": {"dead": 3}, "health_score": 88,
                          "waitlist_conversion": 0.25,
                          "health": {"status": "warning", "components": {"dead_letters": {"status": "warning"}}}});
        let alerts = vec![json!({"name": "<script>", "severity": "high", "fingerprint": "abc"})];
        let series = json!({
            "hours": [1_772_323_200, 1_772_326_800], "bookings": [3, null], "refusals": [1, null],
            "latency_buckets": [[["0.001", 4], ["0.005", 9], ["+Inf", 10]], null],
            "top_queries": [{"query": "SELECT <x>", "calls": 5, "total_ms": 12.5, "mean_ms": 2.5, "trend": null,
                             "hourly": [12.5, null]}]});
        let html = render(&data, &s, &alerts, &series, Range::Day);
        assert!(html.contains("<div class=\"v\">7</div><div>bookings today"));
        assert!(html.contains("<div class=\"v\">88</div><div>health score"));
        assert!(html.contains("4 queries, mean 0.5 ms, p95 \u{2264} 1 ms"), "{html}");
        assert!(html.contains("<th>dead</th><td>3</td>"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(!html.contains("http://") && !html.contains("https://"), "no external assets");
        assert!(html.contains("<div class=\"v\">25%</div><div>waitlist conversion"));
        for id in [
            "chart-bookings",
            "chart-latency",
            "chart-jobs",
            "chart-deliveries",
            "chart-backlog",
            "chart-database-size",
            "chart-top-queries",
        ] {
            assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}: {html}");
        }
        assert!(html.contains("<title>Sun 01 00:00 bookings: 3</title>"), "{html}");
        // p95 of the first hour: the 10 queries' 95th falls in the +Inf bucket (no bound), p50 at 5 ms.
        assert!(html.contains("<title>Sun 01 00:00 p50: 5 ms</title>"), "{html}");
        assert!(html.contains("<code>SELECT &lt;x&gt;</code>") && html.contains("range=week"));
    }

    #[test]
    fn latency_percentiles_come_from_each_hours_buckets() {
        let series = json!({"latency_buckets": [[["0.001", 50], ["0.01", 99], ["0.1", 100], ["+Inf", 100]], null, []]});
        assert_eq!(latency_quantile(&series, 0.5), vec![Some(1.0), None, None]);
        assert_eq!(latency_quantile(&series, 0.99), vec![Some(10.0), None, None]);
        assert_eq!(latency_quantile(&series, 1.0), vec![Some(100.0), None, None]);
    }
}
