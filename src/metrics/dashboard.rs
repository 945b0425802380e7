//! The dashboard page: server-rendered HTML, no scripts, no external assets (pure).

use serde_json::Value;

use super::expose::Sample;
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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

/// The page: `data` is `booking_admin.dashboard_data()`, `alerts` the firing alerts as
/// `[{name, severity, started_at, acknowledged}]`.
pub fn render(data: &Value, samples: &[Sample], alerts: &[Value]) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>booking_engine</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}.tile{display:inline-block;border:1px solid #ccc;\
         border-radius:6px;padding:1em;margin:.3em;min-width:9em}.v{font-size:1.8em;font-weight:bold}\
         table{border-collapse:collapse;margin-bottom:1em}th,td{border:1px solid #ddd;padding:.3em .8em;text-align:left}\
         .ok{color:#080}.warning{color:#b60}.critical{color:#c00}code{background:#f4f4f4}</style></head><body>",
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
                          "health": {"status": "warning", "components": {"dead_letters": {"status": "warning"}}}});
        let alerts = vec![json!({"name": "<script>", "severity": "high", "fingerprint": "abc"})];
        let html = render(&data, &s, &alerts);
        assert!(html.contains("<div class=\"v\">7</div><div>bookings today"));
        assert!(html.contains("<div class=\"v\">88</div><div>health score"));
        assert!(html.contains("4 queries, mean 0.5 ms, p95 \u{2264} 1 ms"), "{html}");
        assert!(html.contains("<th>dead</th><td>3</td>"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(!html.contains("http://") && !html.contains("https://"), "no external assets");
    }
}
