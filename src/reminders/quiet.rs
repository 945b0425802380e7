//! Quiet hours: a daily wall-clock window (22:00-08:00, or 12:00-14:00) in which no reminder
//! goes out. Pure: local times in, the local time the window ends out; the caller turns that
//! into an instant with the customer's zone (`Zone::earliest_at_or_after`), so that "until
//! 08:00" means 08:00 on the clock on the night the clocks change too.

use chrono::{Days, NaiveDateTime, NaiveTime};

/// When the quiet window [`start`, `end`) that holds wall-clock time `now` ends, as a local
/// time; None when `now` is outside it. A window whose start is after its end runs over
/// midnight; one whose start equals its end is no window.
pub fn quiet_until(now: NaiveDateTime, start: NaiveTime, end: NaiveTime) -> Option<NaiveDateTime> {
    let t = now.time();
    let today = now.date();
    if start < end {
        (start <= t && t < end).then(|| today.and_time(end))
    } else if start > end {
        if t >= start {
            today.checked_add_days(Days::new(1)).map(|d| d.and_time(end))
        } else if t < end {
            Some(today.and_time(end))
        } else {
            None
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn an_overnight_window_ends_the_next_morning_or_the_same_morning() {
        let (start, end) = (hm("22:00"), hm("08:00"));
        assert_eq!(quiet_until(at("2027-03-27 22:30"), start, end), Some(at("2027-03-28 08:00")));
        assert_eq!(quiet_until(at("2027-03-28 03:00"), start, end), Some(at("2027-03-28 08:00")));
        assert_eq!(quiet_until(at("2027-03-27 22:00"), start, end), Some(at("2027-03-28 08:00")));
        assert_eq!(quiet_until(at("2027-03-28 08:00"), start, end), None);
        assert_eq!(quiet_until(at("2027-03-27 21:59"), start, end), None);
    }

    #[test]
    fn a_daytime_window_and_an_empty_one() {
        let (start, end) = (hm("12:00"), hm("14:00"));
        assert_eq!(quiet_until(at("2027-06-01 13:15"), start, end), Some(at("2027-06-01 14:00")));
        assert_eq!(quiet_until(at("2027-06-01 14:00"), start, end), None);
        assert_eq!(quiet_until(at("2027-06-01 11:59"), start, end), None);
        assert_eq!(quiet_until(at("2027-06-01 13:15"), start, start), None);
    }
}
