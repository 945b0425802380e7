//! The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0, from the counted series
//! and the scrape's SQL gauges (pure).

use std::fmt::Write;

use crate::telemetry::table::CELLS;
use crate::telemetry::{declared, Kind, Metric, Series, METRICS_DROPPED};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// What the client asked for in `Accept`: OpenMetrics when it lists it (Prometheus sends
    /// it first, with the text format as a fallback), else the text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let wants = accept.unwrap_or("").split(',').any(|part| {
            let mut it = part.split(';');
            let media = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| p.trim().replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        });
        if wants {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// One sample: its metric, the suffix of its sample name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub def: usize,
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    pub fn name(&self) -> String {
        format!("{}{}", declared()[self.def].name, self.suffix)
    }
}

/// A value read by the scrape's SQL: a metric name, label values in the declared order.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlValue {
    pub metric: String,
    pub labels: Vec<String>,
    pub value: f64,
}

fn named(def: &Metric, values: &[String]) -> Vec<(&'static str, String)> {
    def.labels
        .iter()
        .zip(values.iter().chain(std::iter::repeat(&String::new())))
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn format_le(b: f64) -> String {
    // OpenMetrics wants a float in canonical form ("1.0", not "1").
    if b.fract() == 0.0 {
        format!("{b:.1}")
    } else {
        format!("{b}")
    }
}

/// Every sample, grouped by metric in declaration order; the series of one metric sorted by
/// labels so that scrapes are stable. SQL values of unknown or counted metrics are ignored.
pub fn samples(series: &[Series], dropped: &[u64], sql: &[SqlValue]) -> Vec<Sample> {
    let defs = declared();
    let mut out = Vec::with_capacity(series.len() + sql.len());
    // One pass to group the series by metric (a scrape has thousands of them).
    let mut by_def: Vec<Vec<&Series>> = vec![Vec::new(); defs.len()];
    series.iter().filter(|s| s.def < defs.len()).for_each(|s| by_def[s.def].push(s));
    for (d, def) in defs.iter().enumerate() {
        let of_def = &mut by_def[d];
        of_def.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        for s in of_def.iter() {
            let labels = named(def, &s.labels);
            match def.kind {
                Kind::Counter => out.push(Sample { def: d, suffix: "_total", labels, value: s.cells[0] as f64 }),
                Kind::Gauge => out.push(Sample { def: d, suffix: "", labels, value: f64::from_bits(s.cells[0]) }),
                Kind::Histogram => {
                    let mut cumulative = 0u64;
                    for (i, b) in def.buckets.iter().map(|b| format_le(*b)).chain(["+Inf".to_string()]).enumerate() {
                        cumulative += s.cells[i];
                        let mut l = labels.clone();
                        l.push(("le", b));
                        out.push(Sample { def: d, suffix: "_bucket", labels: l, value: cumulative as f64 });
                    }
                    out.push(Sample {
                        def: d,
                        suffix: "_sum",
                        labels: labels.clone(),
                        value: f64::from_bits(s.cells[CELLS - 1]),
                    });
                    out.push(Sample { def: d, suffix: "_count", labels, value: s.cells[CELLS - 2] as f64 });
                }
            }
        }
        if def.name == METRICS_DROPPED.name {
            for (m, n) in dropped.iter().enumerate().filter(|(m, n)| **n > 0 && *m < defs.len()) {
                out.push(Sample {
                    def: d,
                    suffix: "_total",
                    labels: vec![("metric", defs[m].name.into())],
                    value: *n as f64,
                });
            }
        }
        let mut from_sql: Vec<&SqlValue> =
            sql.iter().filter(|v| v.metric == def.name && def.kind == Kind::Gauge).collect();
        from_sql.sort_by(|a, b| a.labels.cmp(&b.labels));
        for v in from_sql {
            out.push(Sample { def: d, suffix: "", labels: named(def, &v.labels), value: v.value });
        }
    }
    out
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, format: Format) -> String {
    let mut s = v.replace('\\', "\\\\").replace('\n', "\\n");
    if format == Format::OpenMetrics {
        s = s.replace('"', "\\\"");
    }
    s
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The exposition text. Every declared metric gets its HELP and TYPE lines, with or without
/// samples, so dashboards and alert rules find every name from the first scrape.
pub fn render(samples: &[Sample], format: Format) -> String {
    let mut out = String::with_capacity(64 * samples.len() + 4096);
    let mut i = 0;
    for (d, def) in declared().iter().enumerate() {
        let family = match (def.kind, format) {
            (Kind::Counter, Format::Prometheus) => format!("{}_total", def.name),
            _ => def.name.to_string(),
        };
        let kind = match def.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {family} {}", escape_help(def.help, format));
        let _ = writeln!(out, "# TYPE {family} {kind}");
        while i < samples.len() && samples[i].def == d {
            let s = &samples[i];
            out.push_str(def.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (j, (k, v)) in s.labels.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label(v, &mut out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(s.value));
            out.push('\n');
            i += 1;
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(name: &str) -> usize {
        crate::register_features();
        crate::telemetry::find(name).and_then(|m| m.index()).expect("declared")
    }

    fn series(name: &str, labels: &[&str], cells: &[u64]) -> Series {
        let mut c = vec![0u64; CELLS];
        c[..cells.len()].copy_from_slice(cells);
        Series { def: index_of(name), labels: labels.iter().map(|s| s.to_string()).collect(), cells: c }
    }

    #[test]
    fn accept_picks_openmetrics_only_when_asked() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("application/openmetrics-text; q=0")), Format::Prometheus);
    }

    #[test]
    fn counters_have_total_samples_and_escaped_labels() {
        let s = samples(&[series("booking_events", &["a\"b\\c\nd"], &[3])], &[0; 64], &[]);
        let text = render(&s, Format::Prometheus);
        assert!(text.contains("# TYPE booking_events_total counter\n"));
        assert!(text.contains("booking_events_total{type=\"a\\\"b\\\\c\\nd\"} 3\n"), "{text}");
        let om = render(&s, Format::OpenMetrics);
        assert!(om.contains("# TYPE booking_events counter\n"));
        assert!(om.contains("booking_events_total{type="));
        assert!(om.ends_with("# EOF\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let d = index_of("booking_job_duration_seconds");
        let n = declared()[d].buckets.len();
        let mut cells = vec![0u64; CELLS];
        cells[0] = 1;
        cells[2] = 2;
        cells[n] = 1;
        cells[CELLS - 2] = 4;
        cells[CELLS - 1] = 7.5f64.to_bits();
        let s = samples(&[Series { def: d, labels: vec!["h".into()], cells }], &[0; 64], &[]);
        let text = render(&s, Format::OpenMetrics);
        assert!(text.contains("booking_job_duration_seconds_bucket{handler=\"h\",le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("booking_job_duration_seconds_bucket{handler=\"h\",le=\"1.0\"} 3\n"), "{text}");
        assert!(text.contains("booking_job_duration_seconds_bucket{handler=\"h\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("booking_job_duration_seconds_sum{handler=\"h\"} 7.5\n"));
        assert!(text.contains("booking_job_duration_seconds_count{handler=\"h\"} 4\n"));
    }

    #[test]
    fn dropped_changes_and_sql_gauges_appear_under_their_metrics() {
        let mut dropped = vec![0u64; 64];
        dropped[index_of("booking_rate_limit_rejections")] = 9;
        let sql = vec![
            SqlValue { metric: "booking_jobs".into(), labels: vec!["pending".into()], value: 4.0 },
            SqlValue { metric: "no_such_metric".into(), labels: vec![], value: 1.0 },
            SqlValue { metric: "booking_events".into(), labels: vec!["forged".into()], value: 1.0 },
        ];
        let text = render(&samples(&[], &dropped, &sql), Format::Prometheus);
        assert!(text.contains("booking_metrics_dropped_total{metric=\"booking_rate_limit_rejections\"} 9\n"));
        assert!(text.contains("booking_jobs{status=\"pending\"} 4\n"));
        assert!(!text.contains("no_such_metric"));
        assert!(!text.contains("forged"), "SQL cannot set counted metrics");
    }

    #[test]
    fn every_metric_has_help_and_type_even_without_samples() {
        crate::register_features();
        let text = render(&[], Format::Prometheus);
        for d in declared() {
            assert!(text.contains(&format!("# HELP {}", d.name)), "{}", d.name);
        }
    }
}
