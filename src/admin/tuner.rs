//! The auto-tuner's decisions: thresholds by aggressiveness, freeze windows, whether a
//! recommended index is applied, proposed or skipped, and when an applied one is rolled back.

use serde_json::Value;

use crate::errors::{DomainError, DomainResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggressiveness {
    Conservative,
    Moderate,
    Aggressive,
}

impl Aggressiveness {
    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "conservative" => Ok(Self::Conservative),
            "moderate" => Ok(Self::Moderate),
            "aggressive" => Ok(Self::Aggressive),
            _ => Err(DomainError::InvalidParameter(format!("unknown aggressiveness {s:?}"))),
        }
    }

    /// Mean execution time above which a query counts as slow: 50 ms (conservative), 20 ms
    /// (aggressive), and halfway between for moderate.
    pub fn threshold_ms(self) -> f64 {
        match self {
            Self::Conservative => 50.0,
            Self::Moderate => 35.0,
            Self::Aggressive => 20.0,
        }
    }

    /// The smallest verified cost reduction worth an index.
    pub fn min_gain_pct(self) -> f64 {
        match self {
            Self::Conservative => 30.0,
            Self::Moderate => 20.0,
            Self::Aggressive => 10.0,
        }
    }
}

/// Weekdays (0 = Sunday, as `extract(dow)`) and a [start, end) time of day in minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeWindow {
    pub days: Vec<u32>,
    pub start: u32,
    pub end: u32,
}

fn minutes(v: Option<&Value>, what: &str) -> DomainResult<u32> {
    let bad = || DomainError::InvalidParameter(format!("freeze window {what} must be \"HH:MM\" (00:00..24:00)"));
    let s = v.and_then(Value::as_str).ok_or_else(bad)?;
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) || s.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `[{"days": [6], "start": "00:00", "end": "24:00"}, ...]`.
pub fn parse_windows(doc: &Value) -> DomainResult<Vec<FreezeWindow>> {
    let list =
        doc.as_array().ok_or_else(|| DomainError::InvalidParameter("freeze_windows must be a JSON array".into()))?;
    list.iter()
        .map(|w| {
            let days: Vec<u32> = w
                .get("days")
                .and_then(Value::as_array)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    DomainError::InvalidParameter("freeze window days must be a non-empty array of 0..6".into())
                })?
                .iter()
                .map(|d| d.as_u64().filter(|d| *d <= 6).map(|d| d as u32))
                .collect::<Option<_>>()
                .ok_or_else(|| DomainError::InvalidParameter("freeze window days are 0 (Sunday) .. 6".into()))?;
            let (start, end) = (minutes(w.get("start"), "start")?, minutes(w.get("end"), "end")?);
            if start >= end {
                return Err(DomainError::InvalidParameter(
                    "a freeze window must end after it starts (split one over midnight in two)".into(),
                ));
            }
            Ok(FreezeWindow { days, start, end })
        })
        .collect()
}

/// Whether local weekday `dow` at `minute` of the day falls in a window.
pub fn frozen(windows: &[FreezeWindow], dow: u32, minute: u32) -> bool {
    windows.iter().any(|w| w.days.contains(&dow) && (w.start..w.end).contains(&minute))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Apply,
    /// Recorded for an operator to apply by hand.
    Propose(String),
    Skip(String),
}

pub struct Settings {
    pub enabled: bool,
    pub auto_apply: bool,
    pub aggressiveness: Aggressiveness,
    pub max_indexes_per_table: i64,
    pub frozen: bool,
}

/// What is known about one recommended index.
pub struct Proposal {
    pub verified: bool,
    pub gain_pct: Option<f64>,
    /// Indexes the table has now, including any applied earlier in this cycle.
    pub table_indexes: i64,
}

pub fn decide(s: &Settings, p: &Proposal) -> Decision {
    let gain = p.gain_pct.unwrap_or(0.0);
    if !p.verified {
        return Decision::Propose("not verified (install hypopg to measure it): never applied automatically".into());
    }
    if gain < s.aggressiveness.min_gain_pct() {
        return Decision::Skip(format!("verified gain {gain}% is below {}%", s.aggressiveness.min_gain_pct()));
    }
    if p.table_indexes >= s.max_indexes_per_table {
        return Decision::Skip(format!(
            "the table already has {} indexes (limit {})",
            p.table_indexes, s.max_indexes_per_table
        ));
    }
    if s.frozen {
        return Decision::Skip("inside a freeze window".into());
    }
    if !s.enabled || !s.auto_apply {
        return Decision::Propose("auto-apply is off".into());
    }
    Decision::Apply
}

/// Why an applied index should go: unused for a whole monitoring interval since it was
/// applied, or the query it was made for now costs more than before.
pub fn rollback_reason(
    idx_scan: i64,
    minutes_since_applied: f64,
    interval_minutes: f64,
    cost_before: Option<f64>,
    cost_now: Option<f64>,
) -> Option<String> {
    if let (Some(before), Some(now)) = (cost_before, cost_now) {
        if now > before {
            return Some(format!("regression: the query now costs {now} (was {before} before the index)"));
        }
    }
    (idx_scan == 0 && minutes_since_applied >= interval_minutes)
        .then(|| format!("unused for {minutes_since_applied:.0} minutes since it was applied"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds_follow_the_seed() {
        assert_eq!(Aggressiveness::parse("conservative").unwrap().threshold_ms(), 50.0);
        assert_eq!(Aggressiveness::parse("aggressive").unwrap().threshold_ms(), 20.0);
        assert_eq!(Aggressiveness::parse("moderate").unwrap().threshold_ms(), 35.0);
        assert!(Aggressiveness::parse("reckless").is_err());
    }

    #[test]
    fn freeze_windows_parse_and_match() {
        let w = parse_windows(&json!([{"days": [6], "start": "00:00", "end": "24:00"},
                                      {"days": [1, 2], "start": "08:30", "end": "09:00"}]))
        .unwrap();
        assert!(frozen(&w, 6, 0) && frozen(&w, 6, 1439));
        assert!(frozen(&w, 2, 8 * 60 + 30) && !frozen(&w, 2, 9 * 60) && !frozen(&w, 3, 8 * 60 + 45));
        assert!(!frozen(&[], 6, 0));
        for bad in [
            json!({}),
            json!([{"days": [7], "start": "00:00", "end": "01:00"}]),
            json!([{"days": [], "start": "00:00", "end": "01:00"}]),
            json!([{"days": [1], "start": "10:00", "end": "09:00"}]),
            json!([{"days": [1], "start": "9:00", "end": "10:00"}]),
            json!([{"days": [1], "start": "24:30", "end": "10:00"}]),
        ] {
            assert!(parse_windows(&bad).is_err(), "{bad}");
        }
    }

    fn settings() -> Settings {
        Settings {
            enabled: true,
            auto_apply: true,
            aggressiveness: Aggressiveness::Moderate,
            max_indexes_per_table: 10,
            frozen: false,
        }
    }

    fn proposal() -> Proposal {
        Proposal { verified: true, gain_pct: Some(50.0), table_indexes: 3 }
    }

    #[test]
    fn only_verified_worthwhile_indexes_are_applied() {
        assert_eq!(decide(&settings(), &proposal()), Decision::Apply);
        assert!(matches!(
            decide(&settings(), &Proposal { verified: false, gain_pct: None, ..proposal() }),
            Decision::Propose(_)
        ));
        assert!(matches!(decide(&settings(), &Proposal { gain_pct: Some(5.0), ..proposal() }), Decision::Skip(_)));
        assert!(
            matches!(decide(&settings(), &Proposal { table_indexes: 10, ..proposal() }), Decision::Skip(m) if m.contains("limit 10"))
        );
        assert!(
            matches!(decide(&Settings { frozen: true, ..settings() }, &proposal()), Decision::Skip(m) if m.contains("freeze"))
        );
        assert!(matches!(decide(&Settings { auto_apply: false, ..settings() }, &proposal()), Decision::Propose(_)));
        assert!(matches!(decide(&Settings { enabled: false, ..settings() }, &proposal()), Decision::Propose(_)));
    }

    #[test]
    fn unused_or_regressing_indexes_are_rolled_back() {
        assert!(rollback_reason(0, 61.0, 60.0, None, None).unwrap().contains("unused"));
        assert_eq!(rollback_reason(0, 10.0, 60.0, None, None), None);
        assert_eq!(rollback_reason(5, 600.0, 60.0, Some(100.0), Some(40.0)), None);
        assert!(rollback_reason(5, 1.0, 60.0, Some(100.0), Some(140.0)).unwrap().contains("regression"));
    }
}
