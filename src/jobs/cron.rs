//! Cron schedules in a time zone: five fields (minute, hour, day of month, month, day of week)
//! read as Vixie cron reads them, evaluated on the wall clock of one zone, with the zone's
//! offsets from Postgres's tz data (the availability engine's `Zone`, through its facade). Pure:
//! no Postgres.
//!
//! Fields: `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to the field's
//! end), comma-separated lists of those; months `JAN`..`DEC` and weekdays `SUN`..`SAT` by name
//! too; day of week 0 or 7 is Sunday. When both day fields are restricted a day matches either
//! (Vixie's rule: `0 9 1 * MON` is the 1st and every Monday). `@yearly` (`@annually`),
//! `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` stand for their expressions.
//!
//! Daylight saving time, as a person who set "every day at 02:30" expects:
//! - a time that does not exist (skipped when clocks spring forward) runs once, at the first
//!   instant after the gap (02:30 on the change day runs at 03:00 new time);
//! - a time that happens twice (clocks fall back) runs once, at its first occurrence, unless the
//!   hour field is `*`: an every-hour or every-few-minutes schedule keeps its rhythm through
//!   the repeated hour, as wall-clock minutes pass twice.

use chrono::{Datelike, Days, NaiveDate};

use crate::availability::facade::{local_micros, LocalTime, Micros, Zone, MICROS_PER_DAY, MICROS_PER_SECOND};

/// How far ahead a schedule is searched: `0 0 29 2 1` (29 February, or any Monday) needs a
/// week, but `0 0 29 2 *` up to eight years (leap years skip 2100).
pub const SEARCH_DAYS: u64 = 366 * 8 + 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..31.
    days: u32,
    /// Bits 1..12.
    months: u16,
    /// Bits 0..6, Sunday 0.
    weekdays: u8,
    days_any: bool,
    weekdays_any: bool,
    hours_any: bool,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's allowed values as a bit set, and whether it was a bare `*`.
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str], names_from: u32) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(names_from + i as u32);
        }
        let n: u32 = s.parse().map_err(|_| format!("{what} {s:?} is not a number from {lo} to {hi}"))?;
        if n < lo || n > hi {
            return Err(format!("{what} {n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{what} field {text:?} has an empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("{what} step {s:?} is not a whole number"))?;
                if step == 0 {
                    return Err(format!("{what} step must be at least 1"));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{what} range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `a/n` runs from a to the field's end; a lone value is itself.
            (a, if item.contains('/') { hi } else { a })
        };
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

/// Reads a cron expression; the error says what is wrong with it.
pub fn parse(expression: &str) -> Result<Cron, String> {
    let expanded = match expression.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        other if other.starts_with('@') => {
            return Err(format!("unknown shorthand {other:?}: @yearly, @monthly, @weekly, @daily or @hourly"))
        }
        _ => expression.trim().to_string(),
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), {:?} has {}",
            expression,
            fields.len()
        ));
    }
    let (minutes, _) = field(fields[0], "minute", 0, 59, &[], 0)?;
    let (hours, hours_any) = field(fields[1], "hour", 0, 23, &[], 0)?;
    let (days, days_any) = field(fields[2], "day of month", 1, 31, &[], 0)?;
    let (months, _) = field(fields[3], "month", 1, 12, &MONTHS, 1)?;
    let (weekdays, weekdays_any) = field(fields[4], "day of week", 0, 7, &WEEKDAYS, 0)?;
    // 7 is Sunday too.
    let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
    let cron = Cron {
        minutes,
        hours: hours as u32,
        days: days as u32,
        months: months as u16,
        weekdays: weekdays as u8,
        days_any,
        weekdays_any,
        hours_any,
    };
    // A day of month no chosen month has (31 in February) would never fire: say so now rather
    // than let an operation wait forever.
    if !days_any && weekdays_any {
        let longest = (1..=12u32)
            .filter(|m| cron.months & (1 << m) != 0)
            .map(|m| [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1])
            .max()
            .unwrap_or(0);
        if (1..=longest).all(|d| cron.days & (1 << d) == 0) {
            return Err(format!("{expression:?} never fires: no chosen month has that day"));
        }
    }
    Ok(cron)
}

impl Cron {
    fn matches_date(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The instants the schedule fires at on local date `d`, in order of wall-clock time.
    fn instants_on(&self, zone: &Zone, d: NaiveDate, out: &mut Vec<Micros>) {
        let midnight = local_micros(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
        for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
            for m in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                let local = midnight + (h * 3600 + m * 60) * MICROS_PER_SECOND;
                match zone.resolve_micros(local) {
                    LocalTime::Ambiguous(first, second) if self.hours_any => out.extend([first, second]),
                    _ => out.push(zone.earliest_at_or_after(local)),
                }
            }
        }
    }

    /// The first instant after `after` (Unix µs) the schedule fires at in `zone`, within
    /// `SEARCH_DAYS`; None when there is none that soon (or `zone` does not cover the span).
    pub fn next_after(&self, zone: &Zone, after: Micros) -> Option<Micros> {
        // From the local day before `after`'s: a fall-back at midnight can put part of a local
        // date after the next one's start.
        let first = zone.to_local(after).date().checked_sub_days(Days::new(1))?;
        let mut found: Option<Micros> = None;
        let mut candidates = Vec::new();
        for i in 0..=SEARCH_DAYS {
            let d = first.checked_add_days(Days::new(i))?;
            if self.matches_date(d) {
                candidates.clear();
                self.instants_on(zone, d, &mut candidates);
                if let Some(t) = candidates.iter().copied().filter(|t| *t > after).min() {
                    found = Some(found.map_or(t, |f| f.min(t)));
                }
            }
            // One more day after the first hit settles the order across a day boundary.
            if let Some(f) = found {
                let day_start = local_micros(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
                if day_start - 2 * MICROS_PER_DAY > f + zone.offset_at(f) as Micros * MICROS_PER_SECOND {
                    return Some(f);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn utc(s: &str) -> Micros {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_micros()
    }

    fn show(t: Micros) -> String {
        chrono::DateTime::from_timestamp_micros(t).unwrap().naive_utc().format("%Y-%m-%d %H:%M").to_string()
    }

    /// Europe/Zurich in 2027, as Postgres's tz data has it: CET (+1) until 2027-03-28 01:00 UTC,
    /// CEST (+2) until 2027-10-31 01:00 UTC, then CET (the same rules as the availability
    /// engine's tests, whose zone comes from the same source).
    fn zurich_2027() -> Zone {
        Zone {
            initial_offset: 3600,
            transitions: vec![(utc("2027-03-28 01:00"), 7200), (utc("2027-10-31 01:00"), 3600)],
        }
    }

    /// Every run in [from, to), UTC, formatted.
    fn runs(expr: &str, zone: &Zone, from: &str, to: &str) -> Vec<String> {
        let cron = parse(expr).unwrap();
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(n) = cron.next_after(zone, t) {
            if n >= end {
                break;
            }
            out.push(show(n));
            t = n;
        }
        out
    }

    #[test]
    fn seven_on_weekdays_in_zurich_follows_summer_time() {
        let z = zurich_2027();
        // Friday 26 March (CET), then Monday 29 March (CEST): 07:00 local is 06:00, then 05:00 UTC.
        assert_eq!(
            runs("0 7 * * 1-5", &z, "2027-03-26 00:00", "2027-03-30 00:00"),
            vec!["2027-03-26 06:00", "2027-03-29 05:00"]
        );
        assert_eq!(
            runs("0 7 * * MON-FRI", &z, "2027-10-29 00:00", "2027-11-02 00:00"),
            vec!["2027-10-29 05:00", "2027-11-01 06:00"]
        );
    }

    #[test]
    fn a_daily_job_runs_once_a_day_across_both_changes() {
        let z = zurich_2027();
        assert_eq!(
            runs("0 7 * * *", &z, "2027-03-27 00:00", "2027-03-30 00:00"),
            vec!["2027-03-27 06:00", "2027-03-28 05:00", "2027-03-29 05:00"]
        );
        assert_eq!(
            runs("0 7 * * *", &z, "2027-10-30 00:00", "2027-11-02 00:00"),
            vec!["2027-10-30 05:00", "2027-10-31 06:00", "2027-11-01 06:00"]
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_at_the_first_instant_after() {
        let z = zurich_2027();
        // 02:30 does not exist on 28 March: it runs at 03:00 CEST (01:00 UTC), once.
        assert_eq!(
            runs("30 2 * * *", &z, "2027-03-27 00:00", "2027-03-30 00:00"),
            vec!["2027-03-27 01:30", "2027-03-28 01:00", "2027-03-29 00:30"]
        );
        // Every quarter hour of the skipped hour lands on 03:00 together: one run.
        assert_eq!(runs("*/15 2 * * *", &z, "2027-03-28 00:00", "2027-03-28 02:00"), vec!["2027-03-28 01:00"]);
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once_unless_the_hour_is_a_wildcard() {
        let z = zurich_2027();
        // 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET) on 31 October: the first only.
        assert_eq!(
            runs("30 2 * * *", &z, "2027-10-30 00:00", "2027-11-01 00:00"),
            vec!["2027-10-30 00:30", "2027-10-31 00:30"]
        );
        // Half-hourly keeps going through the repeated hour: 02:00 and 02:30 pass twice.
        assert_eq!(
            runs("0,30 * * * *", &z, "2027-10-30 23:45", "2027-10-31 02:15"),
            vec!["2027-10-31 00:00", "2027-10-31 00:30", "2027-10-31 01:00", "2027-10-31 01:30", "2027-10-31 02:00"]
        );
    }

    #[test]
    fn fields_lists_ranges_steps_names_and_shorthands() {
        let z = Zone::fixed(0);
        assert_eq!(
            runs("*/20 9-10 * * *", &z, "2027-01-04 00:00", "2027-01-05 00:00"),
            vec![
                "2027-01-04 09:00",
                "2027-01-04 09:20",
                "2027-01-04 09:40",
                "2027-01-04 10:00",
                "2027-01-04 10:20",
                "2027-01-04 10:40"
            ]
        );
        assert_eq!(runs("5/30 0 1 jan,Jul *", &z, "2027-01-01 00:00", "2028-01-01 00:00").len(), 4);
        // Sunday as 0 and as 7.
        assert_eq!(parse("0 0 * * 7").unwrap(), parse("0 0 * * SUN").unwrap());
        assert_eq!(parse("@daily").unwrap(), parse("0 0 * * *").unwrap());
        assert_eq!(
            runs("@monthly", &z, "2027-01-15 00:00", "2027-04-01 00:00"),
            vec!["2027-02-01 00:00", "2027-03-01 00:00"]
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either_as_vixie_cron_does() {
        let z = Zone::fixed(0);
        // The 1st of February 2027 (a Monday) and every Friday of the week after.
        assert_eq!(
            runs("0 9 1 * FRI", &z, "2027-01-31 00:00", "2027-02-08 00:00"),
            vec!["2027-02-01 09:00", "2027-02-05 09:00"]
        );
    }

    #[test]
    fn leap_day_schedules_are_found_years_ahead() {
        let z = Zone::fixed(0);
        let cron = parse("0 12 29 2 *").unwrap();
        assert_eq!(show(cron.next_after(&z, utc("2028-03-01 00:00")).unwrap()), "2032-02-29 12:00");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("0 7 * *", "5 fields"),
            ("60 * * * *", "outside 0-59"),
            ("* 24 * * *", "outside 0-23"),
            ("* * 0 * *", "outside 1-31"),
            ("* * * 13 *", "outside 1-12"),
            ("* * * * 8", "outside 0-7"),
            ("*/0 * * * *", "at least 1"),
            ("5-1 * * * *", "backwards"),
            ("a * * * *", "not a number"),
            ("1,,2 * * * *", "empty list item"),
            ("0 0 31 2 *", "never fires"),
            ("@reboot", "unknown shorthand"),
        ] {
            let e = parse(expr).unwrap_err();
            assert!(e.contains(says), "{expr}: {e}");
        }
    }
}
