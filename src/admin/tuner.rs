//! The auto-tuner's decisions: thresholds by aggressiveness, whether a recommended index is
//! applied, proposed or skipped, and when an applied one is rolled back. (Whether a freeze
//! window is in force is the freeze calendar's answer, sql/freeze.sql.)

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
    /// The end of the freeze window in force (the freeze calendar), if any.
    pub frozen_until: Option<String>,
}

/// What is known about one recommended index.
pub struct Proposal {
    /// The index's access method when it is not a b-tree (gin).
    pub method: Option<&'static str>,
    pub verified: bool,
    pub gain_pct: Option<f64>,
    /// Indexes the table has now, including any applied earlier in this cycle.
    pub table_indexes: i64,
}

pub fn decide(s: &Settings, p: &Proposal) -> Decision {
    let gain = p.gain_pct.unwrap_or(0.0);
    if !p.verified {
        return Decision::Propose(match p.method {
            Some(method) => {
                format!("a {method} index, which hypopg cannot measure: recommended, never applied automatically")
            }
            None => "not verified (install hypopg to measure it): never applied automatically".into(),
        });
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
    if let Some(until) = &s.frozen_until {
        // Kept as a proposal: the first cycle after the window applies it.
        return Decision::Propose(format!("deferred: inside a freeze window until {until}"));
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

    #[test]
    fn thresholds_follow_the_seed() {
        assert_eq!(Aggressiveness::parse("conservative").unwrap().threshold_ms(), 50.0);
        assert_eq!(Aggressiveness::parse("aggressive").unwrap().threshold_ms(), 20.0);
        assert_eq!(Aggressiveness::parse("moderate").unwrap().threshold_ms(), 35.0);
        assert!(Aggressiveness::parse("reckless").is_err());
    }

    fn settings() -> Settings {
        Settings {
            enabled: true,
            auto_apply: true,
            aggressiveness: Aggressiveness::Moderate,
            max_indexes_per_table: 10,
            frozen_until: None,
        }
    }

    fn proposal() -> Proposal {
        Proposal { method: None, verified: true, gain_pct: Some(50.0), table_indexes: 3 }
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
        let frozen = Settings { frozen_until: Some("2026-03-07 24:00".into()), ..settings() };
        assert!(
            matches!(decide(&frozen, &proposal()), Decision::Propose(m) if m.contains("freeze window until 2026-03-07"))
        );
        let gin = Proposal { method: Some("gin"), verified: false, gain_pct: None, ..proposal() };
        assert!(matches!(decide(&settings(), &gin), Decision::Propose(m) if m.contains("gin index")));
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
