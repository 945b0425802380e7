//! The store's ranking: each slot's confidence score and the factors it is made of, computed
//! from one staff-day's plan (`availability::engine::Plan`). Pure; scores are whole basis
//! points (1/10000) so that a recomputation gives bit-identical rows.
//!
//! For a free slot:
//!   confidence = 0.35 × fit + 0.25 × day_open + 0.20 × (1 − density) + boost
//! - fit (best fit, less fragmentation): 1, minus 0.5 for each side of the slot that would leave
//!   a gap too short for another booking of the service (between the slot's own buffers and the
//!   next booking or the end of the working window);
//! - day_open: the share of that day's slots of the service that are still free;
//! - density: the share of the slot plus an hour either side that other bookings (with their
//!   buffers) occupy;
//! - boost: 0.20 when the slot starts within the tenant's prime hours.
//!
//! A taken slot scores 0 (its factors are still reported).

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::availability::facade::{intersect, normalize, subtract, Candidate, Interval, Micros, Plan, MICROS_PER_HOUR};

/// One basis point is 1/10000: the unit of every score.
pub const ONE: i32 = 10_000;
const FIT_WEIGHT: i64 = 3_500;
const DAY_OPEN_WEIGHT: i64 = 2_500;
const QUIET_WEIGHT: i64 = 2_000;
pub const PRIME_BOOST: i32 = 2_000;
/// How far either side of a slot the density looks.
const DENSITY_REACH: Micros = MICROS_PER_HOUR;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    pub slot: Candidate,
    pub confidence: i32,
    pub density: i32,
    pub boost: i32,
    pub fit: i32,
    pub day_open: i32,
}

/// `part / whole` in basis points, rounded half up.
fn ratio(part: i64, whole: i64) -> i32 {
    if whole <= 0 {
        return 0;
    }
    ((part * i64::from(ONE) * 2 + whole) / (2 * whole)) as i32
}

fn covered(blocked: &[Interval], span: Interval) -> Micros {
    intersect(blocked, &[span]).iter().map(|i| i.end - i.start).sum()
}

/// Scores every slot of `plan`; `is_prime` tells whether a start time is in prime hours.
pub fn score(plan: &Plan, is_prime: impl Fn(Micros) -> bool) -> Vec<Scored> {
    let blocked = normalize(plan.blocked.clone());
    let free_pieces = subtract(&normalize(plan.windows.clone()), &blocked);
    let mut per_day: HashMap<NaiveDate, (i64, i64)> = HashMap::new();
    for c in &plan.slots {
        let e = per_day.entry(c.date).or_default();
        e.0 += i64::from(c.free);
        e.1 += 1;
    }
    plan.slots
        .iter()
        .map(|&c| {
            let (free, total) = per_day[&c.date];
            let day_open = ratio(free, total);
            let span = Interval::new(c.start - DENSITY_REACH, c.end + DENSITY_REACH);
            let density = ratio(covered(&blocked, span), span.end - span.start);
            let need = (c.end - c.start) + plan.before + plan.after;
            let unusable = |gap: Micros| gap > 0 && gap < need;
            let fit = match free_pieces.iter().find(|p| p.start <= c.start && c.end <= p.end) {
                Some(p) if c.free => {
                    let before = (c.start - plan.before - p.start).max(0);
                    let after = (p.end - c.end - plan.after).max(0);
                    ONE - ONE / 2 * (i32::from(unusable(before)) + i32::from(unusable(after)))
                }
                _ => 0,
            };
            let boost = if is_prime(c.start) { PRIME_BOOST } else { 0 };
            let confidence = if c.free {
                let weighted = FIT_WEIGHT * i64::from(fit)
                    + DAY_OPEN_WEIGHT * i64::from(day_open)
                    + QUIET_WEIGHT * i64::from(ONE - density);
                (weighted / i64::from(ONE)) as i32 + boost
            } else {
                0
            };
            Scored { slot: c, confidence, density, boost, fit, day_open }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::facade::MICROS_PER_MINUTE;

    const M: Micros = MICROS_PER_MINUTE;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 23).unwrap()
    }

    /// A 09:00-17:00 window (minutes since midnight), 60-minute slots every 30 minutes, with the
    /// given booked ranges; a slot is free when it overlaps none of them.
    fn plan(blocked: &[(i64, i64)], before: Micros, after: Micros) -> Plan {
        let blocked: Vec<Interval> = blocked.iter().map(|&(a, b)| Interval::new(a * M, b * M)).collect();
        let slots = (0..15)
            .map(|k| {
                let start = (540 + 30 * k) * M;
                let end = start + 60 * M;
                let free = !blocked.iter().any(|b| b.start < end + after && start - before < b.end);
                Candidate { date: day(), start, end, free }
            })
            .collect();
        Plan { slots, windows: vec![Interval::new(540 * M, 1020 * M)], blocked, before, after }
    }

    fn at(scored: &[Scored], minute: i64) -> Scored {
        *scored.iter().find(|s| s.slot.start == minute * M).unwrap()
    }

    #[test]
    fn an_empty_day_scores_the_window_edges_best_and_counts_prime_hours() {
        let scored = score(&plan(&[], 0, 0), |t| (600 * M..840 * M).contains(&t));
        // 09:00 leaves no gap before and 7 free hours after: a perfect fit.
        let first = at(&scored, 540);
        assert_eq!((first.fit, first.day_open, first.density, first.boost), (ONE, ONE, 0, 0));
        assert_eq!(first.confidence, 8_000);
        // 09:30 leaves 30 minutes before it that no 60-minute booking can use.
        assert_eq!(at(&scored, 570).fit, 5_000);
        assert_eq!(at(&scored, 570).confidence, 8_000 - 1_750);
        // 10:00 is prime time and leaves a usable hour before it.
        assert_eq!((at(&scored, 600).boost, at(&scored, 600).confidence), (PRIME_BOOST, 10_000));
        assert_eq!(at(&scored, 600).slot.start, 600 * M);
    }

    #[test]
    fn bookings_take_slots_raise_density_and_lower_the_day() {
        // Booked 12:00-13:00: 11:30 and 12:00 and 12:30 are taken.
        let scored = score(&plan(&[(720, 780)], 0, 0), |_| false);
        let taken: Vec<i64> = scored.iter().filter(|s| !s.slot.free).map(|s| s.slot.start / M).collect();
        assert_eq!(taken, [690, 720, 750]);
        assert!(scored.iter().filter(|s| !s.slot.free).all(|s| s.confidence == 0 && s.fit == 0));
        assert!(scored.iter().all(|s| s.day_open == ratio(12, 15)));
        // 11:00 ends right where the booking starts: no gap after it, half its surroundings booked.
        let snug = at(&scored, 660);
        assert_eq!(snug.fit, ONE);
        assert_eq!(snug.density, ratio(60, 180));
        // 10:30 leaves 30 unusable minutes before the booking.
        assert_eq!(at(&scored, 630).fit, 5_000);
        // Far away, nothing is booked nearby.
        assert_eq!(at(&scored, 900).density, 0);
    }

    #[test]
    fn buffers_count_as_part_of_the_booking_when_judging_gaps() {
        // 15 minutes before and after each booking; one booked 12:00-13:00 blocks 11:45-13:15.
        let scored = score(&plan(&[(705, 795)], 15 * M, 15 * M), |_| false);
        // 10:30 with its buffers occupies 10:15-11:45: snug against the booking's buffer, but
        // the 75 minutes from 09:00 are too short for another booking with its buffers (90).
        assert_eq!(at(&scored, 630).fit, 5_000);
        assert_eq!(at(&scored, 540).fit, ONE, "09:00 leaves exactly the 90 minutes one more booking takes");
        // 13:30 with its buffers starts at 13:15, right after the booking's buffer.
        assert_eq!(at(&scored, 810).fit, ONE);
    }

    #[test]
    fn ratios_round_half_up_and_survive_empty_days() {
        assert_eq!(ratio(1, 3), 3_333);
        assert_eq!(ratio(2, 3), 6_667);
        assert_eq!(ratio(0, 0), 0);
        assert!(score(&plan(&[], 0, 0), |_| false).iter().all(|s| s.confidence <= ONE));
    }
}
