//! Charts as inline SVG, drawn on the server (pure): no script, no external asset, readable by
//! any browser with JavaScript off, and every bar and point carries its value as a tooltip
//! (`<title>`). One x value per hour; a value of None is a gap (no snapshot that hour).

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 210.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
/// Horizontal grid lines above the axis.
const GRID: usize = 4;

/// One series of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<Option<f64>>,
}

/// How a chart draws its series.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bars side by side within each hour.
    Bars,
    /// Lines, broken where a value is missing.
    Lines,
}

/// What a chart says about itself.
pub struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// The unit of the y axis, shown beside it.
    pub unit: &'a str,
    pub kind: Kind,
    /// Hour starts, Unix seconds (UTC).
    pub hours: &'a [i64],
    pub series: Vec<Series<'a>>,
    /// Turns a value into the text of an axis label or tooltip.
    pub format: fn(f64) -> String,
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || v.is_infinite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|c| *c >= v * (1.0 - 1e-12)).unwrap_or(10.0 * magnitude)
}

/// A count: whole numbers plain, large ones with k and M.
pub fn count(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

/// Milliseconds.
pub fn millis(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Bytes in binary units.
pub fn bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut u = 0;
    while x.abs() >= 1024.0 && u < units.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{x:.0} {}", units[u])
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// "HH:00" for a day's worth of hours, "Mon 14" (weekday and day of the month) beyond.
fn hour_label(t: i64, span_hours: usize) -> String {
    let Some(at) = chrono::DateTime::from_timestamp(t, 0) else { return String::new() };
    if span_hours <= 48 {
        at.format("%H:00").to_string()
    } else {
        at.format("%a %d").to_string()
    }
}

/// A tooltip's time: weekday, day and hour.
fn hour_tip(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|at| at.format("%a %d %H:00").to_string()).unwrap_or_default()
}

/// One chart as an SVG figure with its legend. Without any value it says so instead of
/// drawing empty axes.
pub fn render(c: &Chart) -> String {
    let mut out = String::new();
    let n = c.hours.len();
    let max = c.series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |m, v| m.max(*v));
    let has_data = c.series.iter().any(|s| s.values.iter().any(Option::is_some));
    let top = nice_ceiling(max);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let slot = if n == 0 { plot_w } else { plot_w / n as f64 };
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let _ = write!(
        out,
        "<figure class=\"chart\"><svg id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\"><title id=\"{id}-title\">{title} ({unit}, per hour, UTC)</title>",
        id = esc(c.id),
        title = esc(c.title),
        unit = esc(c.unit)
    );
    // Grid and y axis labels.
    for g in 0..=GRID {
        let v = top * g as f64 / GRID as f64;
        let y = y_of(v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 3.0,
            esc(&(c.format)(v))
        );
    }
    // About six x labels whatever the span.
    let step = n.div_ceil(6).max(1);
    for (i, t) in c.hours.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            x_of(i),
            HEIGHT - 10.0,
            esc(&hour_label(*t, n))
        );
    }
    if !has_data {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#888\">no data in this window yet</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    let k = c.series.len().max(1);
    for (si, s) in c.series.iter().enumerate() {
        let color = esc(s.color);
        match c.kind {
            Kind::Bars => {
                let bar = (slot * 0.8 / k as f64).max(1.0);
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = v.filter(|v| *v > 0.0) else { continue };
                    let x = LEFT + slot * i as f64 + slot * 0.1 + bar * si as f64;
                    let y = y_of(v);
                    let _ = write!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} {}: {}</title></rect>",
                        TOP + plot_h - y,
                        esc(&hour_tip(c.hours[i])),
                        esc(s.name),
                        esc(&(c.format)(v))
                    );
                }
            }
            Kind::Lines => {
                let mut path = String::new();
                let mut pen_down = false;
                for (i, v) in s.values.iter().enumerate() {
                    match v {
                        Some(v) => {
                            let _ = write!(path, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x_of(i), y_of(*v));
                            pen_down = true;
                        }
                        None => pen_down = false,
                    }
                }
                if !path.is_empty() {
                    let _ = write!(
                        out,
                        "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                        path.trim_end()
                    );
                }
                for (i, v) in s.values.iter().enumerate() {
                    if let Some(v) = v {
                        let _ = write!(
                            out,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"><title>{} {}: {}</title></circle>",
                            x_of(i),
                            y_of(*v),
                            esc(&hour_tip(c.hours[i])),
                            esc(s.name),
                            esc(&(c.format)(*v))
                        );
                    }
                }
            }
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/></svg><figcaption><b>{}</b>",
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h,
        esc(c.title)
    );
    for s in &c.series {
        // An empty sum of floats is -0.0, which would print as "-0".
        let total = s.values.iter().flatten().sum::<f64>() + 0.0;
        let _ = write!(
            out,
            " <span class=\"key\"><span class=\"swatch\" style=\"background:{}\"></span>{}{}</span>",
            esc(s.color),
            esc(s.name),
            if c.kind == Kind::Bars { format!(" ({})", esc(&(c.format)(total))) } else { String::new() }
        );
    }
    out.push_str("</figcaption></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(kind: Kind, values: Vec<Option<f64>>) -> String {
        let hours = [1_772_323_200, 1_772_326_800, 1_772_330_400];
        render(&Chart {
            id: "chart-x",
            title: "Bookings <per> hour",
            unit: "count",
            kind,
            hours: &hours,
            series: vec![Series { name: "bookings", color: "#2a7", values }],
            format: count,
        })
    }

    #[test]
    fn axes_round_up_to_a_nice_number() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(1500.0), 2000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn bars_carry_their_values_and_gaps_stay_gaps() {
        let svg = chart(Kind::Bars, vec![Some(4.0), None, Some(8.0)]);
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("<title>Sun 01 00:00 bookings: 4</title>"), "{svg}");
        assert!(svg.contains("bookings (12)"), "the legend totals the bars: {svg}");
        assert!(svg.contains("Bookings &lt;per&gt; hour") && !svg.contains("<per>"));
        assert!(!svg.contains("://"), "no external reference, not even a namespace: {svg}");
    }

    #[test]
    fn lines_break_where_a_value_is_missing() {
        let svg = chart(Kind::Lines, vec![Some(1.0), None, Some(2.0)]);
        let d = svg.split("<path d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "two pieces: {d}");
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn an_empty_chart_says_so() {
        assert!(chart(Kind::Lines, vec![None, None, None]).contains("no data in this window yet"));
        assert!(chart(Kind::Bars, vec![None, None, None]).contains("bookings (0)"), "not (-0)");
    }

    #[test]
    fn units_are_readable() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
        assert_eq!(millis(2.5), "2.50 ms");
        assert_eq!(millis(250.0), "250 ms");
        assert_eq!(count(25_000.0), "25k");
        assert_eq!(count(3.0), "3");
    }
}
