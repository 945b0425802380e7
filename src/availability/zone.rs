//! Wall-clock <-> instant conversion for one time zone, with no tz database of its own.
//!
//! The offsets and transitions come from Postgres's own tz code (see `api::load_zone`), so every
//! conversion here agrees with `AT TIME ZONE`; this module only applies them. Instants are
//! microseconds since the Unix epoch, UTC.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

pub type Micros = i64;

pub const MICROS_PER_SECOND: Micros = 1_000_000;
pub const MICROS_PER_MINUTE: Micros = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: Micros = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: Micros = 24 * MICROS_PER_HOUR;

/// A time zone's UTC offsets over a span of time: `initial_offset` holds before the first
/// transition, and each transition `(at, offset)` switches to `offset` (seconds east of UTC)
/// from instant `at` on.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub initial_offset: i32,
    pub transitions: Vec<(Micros, i32)>,
}

/// How a wall-clock time maps to instants in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTime {
    Unique(Micros),
    /// Skipped by a spring-forward change; carries the instant Postgres would pick (the
    /// offset in force before the change), which is where a window starting there begins.
    Nonexistent(Micros),
    /// Repeated by a fall-back change: both instants, earlier first.
    Ambiguous(Micros, Micros),
}

impl LocalTime {
    /// The instant `timestamp AT TIME ZONE zone` yields: before-offset in a gap, after-offset
    /// (the later instant) when ambiguous, as Postgres's DetermineTimeZoneOffset does.
    pub fn as_postgres(self) -> Micros {
        match self {
            LocalTime::Unique(t) | LocalTime::Nonexistent(t) => t,
            LocalTime::Ambiguous(_, later) => later,
        }
    }
}

pub fn local_micros(local: NaiveDateTime) -> Micros {
    local.and_utc().timestamp_micros()
}

pub fn date_micros(date: NaiveDate) -> Micros {
    local_micros(date.and_time(NaiveTime::MIN))
}

impl Zone {
    pub fn fixed(offset_seconds: i32) -> Zone {
        Zone { initial_offset: offset_seconds, transitions: Vec::new() }
    }

    pub fn offset_at(&self, instant: Micros) -> i32 {
        let after = self.transitions.partition_point(|&(at, _)| at <= instant);
        if after == 0 {
            self.initial_offset
        } else {
            self.transitions[after - 1].1
        }
    }

    pub fn to_local(&self, instant: Micros) -> NaiveDateTime {
        let shifted = instant + self.offset_at(instant) as Micros * MICROS_PER_SECOND;
        chrono::DateTime::from_timestamp_micros(shifted).expect("instant within chrono's range").naive_utc()
    }

    /// Resolves a wall-clock time, counted as microseconds on a UTC-like local axis.
    pub fn resolve_micros(&self, local: Micros) -> LocalTime {
        // Each offset that could apply gives one candidate instant; a candidate is real when the
        // zone actually has that offset at that instant. Offsets near `local` are the one in
        // force two days before and those of transitions within two days (no zone shifts by
        // more than a day). Called for every candidate slot, so it does not allocate.
        let lo = local - 2 * MICROS_PER_DAY;
        let hi = local + 2 * MICROS_PER_DAY;
        let first = self.transitions.partition_point(|&(at, _)| at < lo);
        let near = self.transitions[first..].iter().take_while(|&&(at, _)| at <= hi).map(|&(_, off)| off);
        let before = if first == 0 { self.initial_offset } else { self.transitions[first - 1].1 };
        let (mut earliest, mut latest): (Option<Micros>, Option<Micros>) = (None, None);
        for off in std::iter::once(before).chain(near) {
            let t = local - off as Micros * MICROS_PER_SECOND;
            if local - self.offset_at(t) as Micros * MICROS_PER_SECOND == t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                latest = Some(latest.map_or(t, |l| l.max(t)));
            }
        }
        match (earliest, latest) {
            (Some(a), Some(b)) if a == b => LocalTime::Unique(a),
            (Some(a), Some(b)) => LocalTime::Ambiguous(a, b),
            _ => {
                // In a gap: use the offset in force just before it.
                let transition = self
                    .transitions
                    .iter()
                    .find(|&&(at, off)| {
                        local - off as Micros * MICROS_PER_SECOND < at
                            && local - self.offset_at(at - 1) as Micros * MICROS_PER_SECOND >= at
                    })
                    .map(|&(at, _)| at);
                let before = transition.map_or(self.initial_offset, |at| self.offset_at(at - 1));
                LocalTime::Nonexistent(local - before as Micros * MICROS_PER_SECOND)
            }
        }
    }

    /// The first instant at or after wall-clock time `local` (µs on the local axis): the time
    /// itself when it happens once, its first occurrence when clocks fall back over it, and
    /// the end of the gap when clocks spring forward over it (02:30 skipped from 02:00 to
    /// 03:00 gives 03:00 new time). What a schedule or a quiet period set in local time means.
    pub fn earliest_at_or_after(&self, local: Micros) -> Micros {
        match self.resolve_micros(local) {
            LocalTime::Unique(t) | LocalTime::Ambiguous(t, _) => t,
            LocalTime::Nonexistent(t) => self
                .transitions
                .iter()
                .map(|&(at, after)| (at, after, self.offset_at(at - 1)))
                .find(|&(at, after, before)| {
                    after > before
                        && local - after as Micros * MICROS_PER_SECOND < at
                        && at <= local - before as Micros * MICROS_PER_SECOND
                })
                .map_or(t, |(at, _, _)| at),
        }
    }

    pub fn resolve(&self, local: NaiveDateTime) -> LocalTime {
        self.resolve_micros(local_micros(local))
    }

    /// `date + time AT TIME ZONE zone`, allowing `time` = 24:00 for the end of a day.
    pub fn at(&self, date: NaiveDate, seconds_of_day: u32) -> Micros {
        self.resolve_micros(date_micros(date) + seconds_of_day as Micros * MICROS_PER_SECOND).as_postgres()
    }
}

pub fn seconds_of_day(t: NaiveTime) -> u32 {
    t.num_seconds_from_midnight()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Micros {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_micros()
    }

    /// Europe/Zurich around its 2026 changes: CET (+1h) until 2026-03-29 01:00 UTC, CEST (+2h)
    /// until 2026-10-25 01:00 UTC, then CET again.
    fn zurich() -> Zone {
        Zone {
            initial_offset: 3600,
            transitions: vec![(utc("2026-03-29 01:00"), 7200), (utc("2026-10-25 01:00"), 3600)],
        }
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn ordinary_times_are_unique() {
        let z = zurich();
        assert_eq!(z.resolve(local("2026-03-28 09:00")), LocalTime::Unique(utc("2026-03-28 08:00")));
        assert_eq!(z.resolve(local("2026-03-29 09:00")), LocalTime::Unique(utc("2026-03-29 07:00")));
        assert_eq!(z.resolve(local("2026-10-25 09:00")), LocalTime::Unique(utc("2026-10-25 08:00")));
    }

    #[test]
    fn spring_gap_is_nonexistent_and_postgres_uses_the_offset_before() {
        let z = zurich();
        let r = z.resolve(local("2026-03-29 02:30"));
        assert_eq!(r, LocalTime::Nonexistent(utc("2026-03-29 01:30")));
        // 01:30 UTC is 03:30 CEST, which is what Postgres prints for '02:30' AT TIME ZONE.
        assert_eq!(z.to_local(r.as_postgres()), local("2026-03-29 03:30"));
        assert_eq!(z.resolve(local("2026-03-29 03:00")), LocalTime::Unique(utc("2026-03-29 01:00")));
        assert_eq!(z.resolve(local("2026-03-29 01:59")), LocalTime::Unique(utc("2026-03-29 00:59")));
    }

    #[test]
    fn autumn_repeat_is_ambiguous_and_postgres_takes_the_later_instant() {
        let z = zurich();
        let r = z.resolve(local("2026-10-25 02:30"));
        assert_eq!(r, LocalTime::Ambiguous(utc("2026-10-25 00:30"), utc("2026-10-25 01:30")));
        assert_eq!(r.as_postgres(), utc("2026-10-25 01:30"));
        assert_eq!(z.resolve(local("2026-10-25 03:00")), LocalTime::Unique(utc("2026-10-25 02:00")));
    }

    #[test]
    fn the_earliest_instant_at_or_after_a_wall_clock_time() {
        let z = zurich();
        let at = |s: &str| z.earliest_at_or_after(local_micros(local(s)));
        assert_eq!(at("2026-03-28 08:00"), utc("2026-03-28 07:00"));
        // In the spring gap: the change itself, 03:00 CEST.
        assert_eq!(at("2026-03-29 02:30"), utc("2026-03-29 01:00"));
        assert_eq!(at("2026-03-29 02:00"), utc("2026-03-29 01:00"));
        // Repeated in autumn: the first time, still CEST.
        assert_eq!(at("2026-10-25 02:30"), utc("2026-10-25 00:30"));
    }

    #[test]
    fn to_local_follows_offsets() {
        let z = zurich();
        assert_eq!(z.to_local(utc("2026-10-25 00:59")), local("2026-10-25 02:59"));
        assert_eq!(z.to_local(utc("2026-10-25 01:00")), local("2026-10-25 02:00"));
    }

    #[test]
    fn end_of_day_as_24_00() {
        let z = zurich();
        let d = NaiveDate::from_ymd_opt(2026, 3, 28).unwrap();
        assert_eq!(z.at(d, 24 * 3600), utc("2026-03-28 23:00"));
    }
}
