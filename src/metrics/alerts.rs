//! Alert instances' lifecycle, as Prometheus and Alertmanager define it (pure): inactive →
//! pending (the condition holds, for less than `for`) → firing → resolved, with
//! `keep_firing_for` riding out flapping, a repeat interval for reminders, silences that mute
//! notifications (not state), and acknowledgements that mute reminders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

/// A rule's durations, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub for_s: f64,
    pub keep_firing_for_s: f64,
    pub repeat_s: f64,
}

/// One instance as stored (times in seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub state: State,
    pub active_since: f64,
    pub last_held: f64,
    pub fired_at: Option<f64>,
    pub resolved_at: Option<f64>,
    pub last_notified: Option<f64>,
    /// Whether a firing notification went out for this firing (a resolve is sent only then).
    pub notified_firing: bool,
    pub acknowledged: bool,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    Firing,
    Resolved,
}

/// The next state of one instance given whether its condition holds now (`Some(value)`).
/// None: the instance is inactive (a pending one whose condition stopped holding, or nothing
/// at all). A resolved instance is reported once, then gone.
pub fn step(
    prev: Option<&Instance>,
    held: Option<f64>,
    now: f64,
    t: Timing,
    silenced: bool,
) -> (Option<Instance>, Option<Notify>) {
    let live = prev.filter(|p| p.state != State::Resolved);
    match (live, held) {
        (None, None) => (None, None),
        (None, Some(v)) => {
            let fresh = Instance {
                state: State::Pending,
                active_since: now,
                last_held: now,
                fired_at: None,
                resolved_at: None,
                last_notified: None,
                notified_firing: false,
                acknowledged: false,
                value: v,
            };
            promote(fresh, now, t, silenced)
        }
        (Some(p), Some(v)) => {
            let next = Instance { last_held: now, value: v, ..p.clone() };
            promote(next, now, t, silenced)
        }
        (Some(p), None) if p.state == State::Pending => (None, None),
        (Some(p), None) => {
            if now - p.last_held < t.keep_firing_for_s {
                return (Some(p.clone()), None);
            }
            let notify = (p.notified_firing && !silenced).then_some(Notify::Resolved);
            let resolved = Instance {
                state: State::Resolved,
                resolved_at: Some(now),
                last_notified: if notify.is_some() { Some(now) } else { p.last_notified },
                ..p.clone()
            };
            (Some(resolved), notify)
        }
    }
}

/// A held instance: pending until it held for `for`, then firing, notified at once and again
/// every repeat interval unless silenced or acknowledged.
fn promote(mut i: Instance, now: f64, t: Timing, silenced: bool) -> (Option<Instance>, Option<Notify>) {
    if i.state == State::Pending && now - i.active_since >= t.for_s {
        i.state = State::Firing;
        i.fired_at = Some(now);
    }
    if i.state != State::Firing || silenced {
        return (Some(i), None);
    }
    let due = match i.last_notified {
        None => true,
        Some(_) if !i.notified_firing => true,
        Some(at) => !i.acknowledged && now - at >= t.repeat_s,
    };
    if due {
        i.last_notified = Some(now);
        i.notified_firing = true;
        (Some(i), Some(Notify::Firing))
    } else {
        (Some(i), None)
    }
}

/// A stable identity of an instance: its rule and labels (FNV-1a, 16 hex digits).
pub fn fingerprint(rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(rule);
    for (k, v) in labels {
        eat(k);
        eat(v);
    }
    format!("{h:016x}")
}

/// Whether a silence's matchers (label → value, all equal) cover these labels.
pub fn matches(matchers: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !matchers.is_empty() && matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// An annotation with `{{ $value }}` and `{{ $labels.NAME }}` filled in (spaces inside the
/// braces optional); unknown labels become empty.
pub fn render_template(text: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let re = regex::Regex::new(r"\{\{\s*\$(value|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}").expect("valid");
    re.replace_all(text, |c: &regex::Captures| match c.get(2) {
        Some(name) => labels.get(name.as_str()).cloned().unwrap_or_default(),
        None => format!("{value}"),
    })
    .into_owned()
}

/// Compares a sample's value with a rule's threshold; None for an unknown operator.
pub fn compare(value: f64, operator: &str, threshold: f64) -> Option<bool> {
    Some(match operator {
        ">" => value > threshold,
        ">=" => value >= threshold,
        "<" => value < threshold,
        "<=" => value <= threshold,
        "=" | "==" => value == threshold,
        "!=" => value != threshold,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { for_s: 10.0, keep_firing_for_s: 5.0, repeat_s: 60.0 };

    /// Runs a sequence of (time, held) evaluations and returns the notifications.
    fn run(seq: &[(f64, bool)], t: Timing, silenced_until: f64) -> (Option<Instance>, Vec<(f64, Notify)>) {
        let mut inst = None;
        let mut sent = Vec::new();
        for (now, held) in seq {
            let (next, n) = step(inst.as_ref(), held.then_some(1.0), *now, t, *now < silenced_until);
            if let Some(n) = n {
                sent.push((*now, n));
            }
            inst = next;
        }
        (inst, sent)
    }

    #[test]
    fn shorter_than_for_never_fires() {
        let (inst, sent) = run(&[(0.0, true), (5.0, true), (9.0, false), (20.0, false)], T, 0.0);
        assert!(sent.is_empty());
        assert!(inst.is_none());
    }

    #[test]
    fn held_longer_fires_once_then_resolves_once() {
        let (inst, sent) = run(&[(0.0, true), (10.0, true), (15.0, true), (18.0, false), (21.0, false)], T, 0.0);
        assert_eq!(sent, vec![(10.0, Notify::Firing), (21.0, Notify::Resolved)], "kept firing at 18, within 5 s of 15");
        assert_eq!(inst.unwrap().state, State::Resolved);
    }

    #[test]
    fn flapping_within_keep_firing_for_does_not_renotify() {
        let seq = [(0.0, true), (10.0, true), (12.0, false), (14.0, true), (16.0, false), (18.0, true)];
        let (inst, sent) = run(&seq, T, 0.0);
        assert_eq!(sent, vec![(10.0, Notify::Firing)]);
        assert_eq!(inst.unwrap().state, State::Firing);
    }

    #[test]
    fn reminders_follow_the_repeat_interval_unless_acknowledged() {
        let (_, sent) = run(&[(0.0, true), (10.0, true), (50.0, true), (71.0, true)], T, 0.0);
        assert_eq!(sent, vec![(10.0, Notify::Firing), (71.0, Notify::Firing)]);
        let (mut inst, _) = run(&[(0.0, true), (10.0, true)], T, 0.0);
        inst.as_mut().unwrap().acknowledged = true;
        let (_, n) = step(inst.as_ref(), Some(1.0), 100.0, T, false);
        assert_eq!(n, None);
    }

    #[test]
    fn a_silence_mutes_and_its_end_notifies_what_still_fires() {
        let (_, sent) = run(&[(0.0, true), (10.0, true), (20.0, true), (31.0, true)], T, 30.0);
        assert_eq!(sent, vec![(31.0, Notify::Firing)]);
        // Firing and resolved entirely inside a silence: nothing at all, not even a resolve.
        let (_, sent) = run(&[(0.0, true), (10.0, true), (20.0, false), (40.0, false)], T, 100.0);
        assert!(sent.is_empty());
    }

    #[test]
    fn for_zero_fires_at_first_sight_and_a_resolved_instance_starts_over() {
        let t = Timing { for_s: 0.0, ..T };
        let (_, sent) = run(&[(0.0, true), (1.0, false), (7.0, false), (8.0, true)], t, 0.0);
        assert_eq!(sent, vec![(0.0, Notify::Firing), (7.0, Notify::Resolved), (8.0, Notify::Firing)]);
    }

    #[test]
    fn fingerprints_templates_matchers_and_operators() {
        let l: BTreeMap<String, String> = [("alertname".into(), "x".into()), ("db".into(), "a".into())].into();
        assert_eq!(fingerprint("r", &l), fingerprint("r", &l.clone()));
        assert_ne!(fingerprint("r", &l), fingerprint("r2", &l));
        assert_eq!(render_template("{{ $labels.db }} at {{$value}} {{ $labels.none }}", &l, 2.5), "a at 2.5 ");
        assert!(matches(&[("db".into(), "a".into())].into(), &l));
        assert!(!matches(&[("db".into(), "b".into())].into(), &l));
        assert!(!matches(&BTreeMap::new(), &l), "an empty silence silences nothing");
        assert_eq!(compare(3.0, ">=", 3.0), Some(true));
        assert_eq!(compare(3.0, "~", 3.0), None);
    }
}
