//! "Any staff": when a booking names no staff member, the tenant's strategy orders the staff
//! members who are free at that time, and the engine takes the first. Pure Rust, deterministic:
//! the same rows give the same order (ties end on the staff id).
//!
//! - `least_busy_day` / `least_busy_week`: the fewest booked minutes on the staff member's local
//!   date (Monday to Sunday week) of the start;
//! - `round_robin`: weighted, the fewest "any staff" bookings of the service in the tenant's
//!   calendar month of the start relative to the staff member's weight (count ÷ weight);
//! - `priority`: a fixed order, the lowest priority number first.
//!
//! Every strategy breaks ties by priority, then id. A staff member whose weight for the service
//! is 0 is never chosen for "any staff" (only when named).

use std::cmp::Ordering;

use chrono::{Datelike, Days, NaiveDate};
use uuid::Uuid;

use super::engine::Slot;
use super::zone::{Micros, Zone, MICROS_PER_MINUTE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    LeastBusyDay,
    LeastBusyWeek,
    RoundRobin,
    Priority,
}

impl Strategy {
    pub const ALL: [Strategy; 4] =
        [Strategy::LeastBusyDay, Strategy::LeastBusyWeek, Strategy::RoundRobin, Strategy::Priority];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::LeastBusyDay => "least_busy_day",
            Strategy::LeastBusyWeek => "least_busy_week",
            Strategy::RoundRobin => "round_robin",
            Strategy::Priority => "priority",
        }
    }

    pub fn parse(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A staff member's terms for "any staff" bookings of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub priority: i32,
    /// 0: never chosen for "any staff".
    pub weight: u32,
}

/// Booked time that makes a staff member busy: an appointment that is not cancelled, expired or
/// a no-show, or a live hold. `any_staff`: the engine chose the staff member (round robin
/// counts those).
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub staff: Uuid,
    pub service: Uuid,
    pub start: Micros,
    pub end: Micros,
    pub any_staff: bool,
}

/// One free staff member at a start time, as the strategy sees them.
#[derive(Debug, Clone)]
pub struct Free<'a> {
    pub id: Uuid,
    pub zone: &'a Zone,
    pub terms: Terms,
}

/// The measure a strategy compares, smaller first: booked minutes, or round robin's (count,
/// weight) compared as count ÷ weight.
#[derive(Debug, Clone, Copy)]
enum Load {
    Minutes(i64),
    Share(u64, u64),
    None,
}

fn cmp_load(a: Load, b: Load) -> Ordering {
    match (a, b) {
        (Load::Minutes(x), Load::Minutes(y)) => x.cmp(&y),
        // x/wx < y/wy, without division; a heavier weight first on equal shares.
        (Load::Share(x, wx), Load::Share(y, wy)) => (x * wy).cmp(&(y * wx)).then(wy.cmp(&wx)),
        _ => Ordering::Equal,
    }
}

fn week_start(date: NaiveDate) -> NaiveDate {
    date - Days::new(u64::from(date.weekday().num_days_from_monday()))
}

/// Minutes of `busy` of one staff member inside the local dates `first..=last` of `zone`.
fn minutes_within(busy: &[Busy], staff: Uuid, zone: &Zone, first: NaiveDate, last: NaiveDate) -> i64 {
    let (from, to) = (zone.at(first, 0), zone.at(last + Days::new(1), 0));
    busy.iter().filter(|b| b.staff == staff).map(|b| (b.end.min(to) - b.start.max(from)).max(0)).sum::<i64>()
        / MICROS_PER_MINUTE
}

/// The order in which `free` staff members take a booking of `service` at `start`: indices into
/// `free`, first choice first. `tenant_zone` defines round robin's month.
pub fn rank(
    strategy: Strategy,
    free: &[Free],
    busy: &[Busy],
    service: Uuid,
    start: Micros,
    tenant_zone: &Zone,
) -> Vec<usize> {
    let loads: Vec<Load> = free
        .iter()
        .map(|f| match strategy {
            Strategy::LeastBusyDay => {
                let d = f.zone.to_local(start).date();
                Load::Minutes(minutes_within(busy, f.id, f.zone, d, d))
            }
            Strategy::LeastBusyWeek => {
                let w = week_start(f.zone.to_local(start).date());
                Load::Minutes(minutes_within(busy, f.id, f.zone, w, w + Days::new(6)))
            }
            Strategy::RoundRobin => {
                let month = tenant_zone.to_local(start).date();
                let count = busy
                    .iter()
                    .filter(|b| b.staff == f.id && b.any_staff && b.service == service)
                    .filter(|b| {
                        let d = tenant_zone.to_local(b.start).date();
                        (d.year(), d.month()) == (month.year(), month.month())
                    })
                    .count() as u64;
                Load::Share(count, u64::from(f.terms.weight.max(1)))
            }
            Strategy::Priority => Load::None,
        })
        .collect();
    let mut order: Vec<usize> = (0..free.len()).filter(|&i| free[i].terms.weight > 0).collect();
    order.sort_by(|&a, &b| {
        cmp_load(loads[a], loads[b])
            .then(free[a].terms.priority.cmp(&free[b].terms.priority))
            .then(free[a].id.cmp(&free[b].id))
    });
    order
}

/// One start time of the "any staff" slots: how many staff members are free then, and the end
/// with the one the strategy chooses as of now (lengths may differ per staff member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnySlot {
    pub start: Micros,
    pub end: Micros,
    pub free: u32,
}

/// The "any staff" slots from every staff member's free `slots` (ordered by start, then staff):
/// one per start time at which a staff member who takes "any staff" bookings is free. `staff`:
/// each staff member's id, zone and terms.
pub fn any_staff_slots(
    strategy: Strategy,
    slots: &[Slot],
    staff: &[Free],
    busy: &[Busy],
    service: Uuid,
    tenant_zone: &Zone,
) -> Vec<AnySlot> {
    let mut out = Vec::new();
    for group in slots.chunk_by(|a, b| a.start == b.start) {
        let free: Vec<Free> = group
            .iter()
            .filter_map(|s| staff.iter().find(|f| f.id == s.staff && f.terms.weight > 0))
            .cloned()
            .collect();
        let order = rank(strategy, &free, busy, service, group[0].start, tenant_zone);
        if let Some(&first) = order.first() {
            let end = group.iter().find(|s| s.staff == free[first].id).map_or(group[0].end, |s| s.end);
            out.push(AnySlot { start: group[0].start, end, free: order.len() as u32 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::zone::MICROS_PER_HOUR;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// 2026-03-23 (a Monday) plus `days`, at `hour` UTC.
    fn at(days: i64, hour: i64) -> Micros {
        NaiveDate::from_ymd_opt(2026, 3, 23).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()
            + (days * 24 + hour) * MICROS_PER_HOUR
    }

    fn busy(staff: u128, days: i64, hour: i64, hours: i64, any: bool) -> Busy {
        Busy { staff: id(staff), service: id(7), start: at(days, hour), end: at(days, hour + hours), any_staff: any }
    }

    fn free<'a>(zone: &'a Zone, list: &[(u128, i32, u32)]) -> Vec<Free<'a>> {
        list.iter().map(|&(n, priority, weight)| Free { id: id(n), zone, terms: Terms { priority, weight } }).collect()
    }

    fn ids(order: &[usize], f: &[Free]) -> Vec<Uuid> {
        order.iter().map(|&i| f[i].id).collect()
    }

    #[test]
    fn least_busy_day_and_week_count_booked_minutes() {
        let z = Zone::fixed(0);
        let f = free(&z, &[(1, 0, 1), (2, 0, 1), (3, 0, 1)]);
        // Monday: 1 has 3 hours, 2 has 1 hour, 3 nothing; over the week 3 has 5 hours (Wednesday).
        let b = [busy(1, 0, 9, 3, false), busy(2, 0, 9, 1, false), busy(3, 2, 9, 5, false)];
        let day = rank(Strategy::LeastBusyDay, &f, &b, id(7), at(0, 14), &z);
        assert_eq!(ids(&day, &f), [id(3), id(2), id(1)]);
        let week = rank(Strategy::LeastBusyWeek, &f, &b, id(7), at(0, 14), &z);
        assert_eq!(ids(&week, &f), [id(2), id(1), id(3)]);
    }

    #[test]
    fn the_staff_members_own_date_decides_the_day() {
        // A booking 22:00-24:00 UTC Monday is Tuesday 00:00-02:00 in UTC+2: it does not load
        // Monday there.
        let east = Zone::fixed(2 * 3600);
        let f = free(&east, &[(1, 0, 1), (2, 0, 1)]);
        let b = [busy(1, 0, 22, 2, false), busy(2, 0, 8, 1, false)];
        let order = rank(Strategy::LeastBusyDay, &f, &b, id(7), at(0, 12), &east);
        assert_eq!(ids(&order, &f), [id(1), id(2)]);
    }

    #[test]
    fn weighted_round_robin_shares_by_weight_within_the_month() {
        let z = Zone::fixed(0);
        // Weight 2 against 1: after 2 and 1 "any staff" bookings the shares are equal (1 each),
        // the heavier weight goes first; after 3 and 1, the lighter.
        let f = free(&z, &[(1, 0, 2), (2, 0, 1)]);
        let mut b = vec![busy(1, 0, 9, 1, true), busy(1, 1, 9, 1, true), busy(2, 0, 11, 1, true)];
        assert_eq!(ids(&rank(Strategy::RoundRobin, &f, &b, id(7), at(3, 9), &z), &f), [id(1), id(2)]);
        b.push(busy(1, 2, 9, 1, true));
        assert_eq!(ids(&rank(Strategy::RoundRobin, &f, &b, id(7), at(3, 9), &z), &f), [id(2), id(1)]);
        // Bookings the caller named a staff member for, and last month's, do not count.
        let named = vec![busy(1, 0, 9, 1, false), busy(1, -30, 9, 1, true)];
        assert_eq!(ids(&rank(Strategy::RoundRobin, &f, &named, id(7), at(3, 9), &z), &f), [id(1), id(2)]);
    }

    #[test]
    fn priority_order_then_id_and_weight_zero_never_chosen() {
        let z = Zone::fixed(0);
        let f = free(&z, &[(1, 5, 1), (2, 1, 1), (3, 1, 1), (4, 0, 0)]);
        let order = rank(Strategy::Priority, &f, &[], id(7), at(0, 9), &z);
        assert_eq!(ids(&order, &f), [id(2), id(3), id(1)]);
        // Ties of load fall back to priority too.
        let order = rank(Strategy::LeastBusyDay, &f, &[], id(7), at(0, 9), &z);
        assert_eq!(ids(&order, &f), [id(2), id(3), id(1)]);
    }

    #[test]
    fn any_staff_slots_count_free_staff_and_end_with_the_first_choice() {
        let z = Zone::fixed(0);
        let f = free(&z, &[(1, 0, 1), (2, 0, 1), (3, 0, 0)]);
        let slot = |staff: u128, h: i64, minutes: i64| Slot {
            start: at(0, h),
            staff: id(staff),
            end: at(0, h) + minutes * MICROS_PER_MINUTE,
        };
        // 9:00: 1 (60 min) and 2 (45 min) free, 1 busier today; 10:00: only 3, who takes no
        // "any staff" bookings; 11:00: 1 alone.
        let slots = [slot(1, 9, 60), slot(2, 9, 45), slot(3, 10, 30), slot(1, 11, 60)];
        let b = [busy(1, 0, 13, 2, false)];
        let got = any_staff_slots(Strategy::LeastBusyDay, &slots, &f, &b, id(7), &z);
        assert_eq!(
            got,
            [
                AnySlot { start: at(0, 9), end: at(0, 9) + 45 * MICROS_PER_MINUTE, free: 2 },
                AnySlot { start: at(0, 11), end: at(0, 12), free: 1 }
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Some(s));
        }
        assert_eq!(Strategy::parse("random"), None);
    }
}
