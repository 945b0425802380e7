//! Booking caps: at most n bookings per staff member, service or customer, per day or week of
//! the tenant's calendar ("one wedding a day", "a customer at most two bookings a week"). Pure
//! Rust: which caps a booking counts against, and whether one of them is full.
//!
//! What counts: every appointment that is not cancelled or expired (pending, confirmed, active,
//! completed, no-show: a booking that took place or holds its place) and every live hold. Days
//! and weeks (Monday to Sunday) are the tenant's local dates of the booking's start.

use std::collections::HashMap;

use chrono::{Datelike, Days, NaiveDate};
use uuid::Uuid;

use super::zone::{Micros, Zone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Per staff member: the one named, or (`None`) each of them.
    Staff(Option<Uuid>),
    /// The service's bookings together (the cap names the service).
    Service,
    /// Per customer.
    Customer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cap {
    pub id: Uuid,
    pub scope: Scope,
    /// Only bookings of this service count (and only bookings of it are limited); `None`: all.
    pub service: Option<Uuid>,
    pub period: Period,
    pub max: u32,
}

impl Cap {
    /// What a refused booking is told.
    pub fn describe(&self) -> String {
        let n = match self.max {
            1 => "1 booking".to_string(),
            n => format!("{n} bookings"),
        };
        let whose = match self.scope {
            Scope::Staff(_) => "The staff member's limit",
            Scope::Service => "The service's limit",
            Scope::Customer => "The customer's limit",
        };
        format!("{whose} of {n} a {} is reached", self.period.name())
    }
}

/// A booking that counts against caps: an appointment or a live hold.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    pub staff: Uuid,
    pub service: Uuid,
    pub customer: Option<Uuid>,
    pub start: Micros,
}

/// The lock key of one cap's count: (cap, subject, first day of the period). A booking locks
/// the keys of every cap it counts against, so that two bookings of one full period are counted
/// one after the other.
pub type Key = (Uuid, Uuid, NaiveDate);

/// The caps that apply to bookings of one service (for one customer, when known), with what
/// counts against them already.
#[derive(Debug, Clone)]
pub struct Caps {
    zone: Zone,
    service: Uuid,
    customer: Option<Uuid>,
    caps: Vec<Cap>,
    counts: HashMap<(usize, Uuid, NaiveDate), u32>,
}

impl Caps {
    /// `caps` are the tenant's; those that do not limit bookings of `service` (another
    /// service's, a customer's cap without a customer) are left out. `counted` are the tenant's
    /// bookings around the question's dates, the booking being changed left out.
    pub fn new(zone: Zone, service: Uuid, customer: Option<Uuid>, caps: Vec<Cap>, counted: &[Counted]) -> Caps {
        let caps: Vec<Cap> = caps
            .into_iter()
            .filter(|c| c.service.is_none_or(|s| s == service))
            .filter(|c| c.scope != Scope::Customer || customer.is_some())
            .collect();
        let mut out = Caps { zone, service, customer, caps, counts: HashMap::new() };
        for item in counted {
            for (k, cap) in out.caps.iter().enumerate() {
                if cap.service.is_some_and(|s| s != item.service) {
                    continue;
                }
                let subject = match cap.scope {
                    Scope::Staff(Some(s)) if s != item.staff => continue,
                    Scope::Staff(_) => item.staff,
                    Scope::Service => out.service,
                    Scope::Customer => match item.customer {
                        Some(c) if Some(c) == out.customer => c,
                        _ => continue,
                    },
                };
                *out.counts.entry((k, subject, out.period_start(cap, item.start))).or_default() += 1;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    fn period_start(&self, cap: &Cap, start: Micros) -> NaiveDate {
        let date = self.zone.to_local(start).date();
        match cap.period {
            Period::Day => date,
            Period::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
        }
    }

    /// The caps a booking of `staff` at `start` counts against, with its subject and period.
    fn applying(&self, staff: Uuid, start: Micros) -> impl Iterator<Item = (usize, Uuid, NaiveDate)> + '_ {
        self.caps.iter().enumerate().filter_map(move |(k, cap)| {
            let subject = match cap.scope {
                Scope::Staff(Some(s)) if s != staff => return None,
                Scope::Staff(_) => staff,
                Scope::Service => self.service,
                Scope::Customer => self.customer?,
            };
            Some((k, subject, self.period_start(cap, start)))
        })
    }

    /// A cap that a booking of `staff` at `start` would go beyond.
    pub fn reached(&self, staff: Uuid, start: Micros) -> Option<&Cap> {
        self.applying(staff, start)
            .find(|key| self.counts.get(key).copied().unwrap_or(0) >= self.caps[key.0].max)
            .map(|(k, _, _)| &self.caps[k])
    }

    /// The lock keys of every cap a booking of `staff` at `start` counts against.
    pub fn keys(&self, staff: Uuid, start: Micros) -> Vec<Key> {
        self.applying(staff, start).map(|(k, subject, period)| (self.caps[k].id, subject, period)).collect()
    }
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

    fn booked(staff: u128, service: u128, customer: Option<u128>, days: i64, hour: i64) -> Counted {
        Counted { staff: id(staff), service: id(service), customer: customer.map(id), start: at(days, hour) }
    }

    fn cap(n: u128, scope: Scope, service: Option<u128>, period: Period, max: u32) -> Cap {
        Cap { id: id(n), scope, service: service.map(id), period, max }
    }

    #[test]
    fn one_wedding_a_day_for_the_whole_service() {
        let caps = vec![cap(90, Scope::Service, Some(7), Period::Day, 1)];
        let c = Caps::new(Zone::fixed(0), id(7), None, caps, &[booked(1, 7, None, 0, 10)]);
        assert!(c.reached(id(2), at(0, 15)).is_some(), "another photographer, the same day");
        assert!(c.reached(id(1), at(1, 10)).is_none(), "the next day");
        // Other services are not limited by it, and do not count.
        let other = Caps::new(Zone::fixed(0), id(8), None, vec![cap(90, Scope::Service, Some(7), Period::Day, 1)], &[]);
        assert!(other.is_empty());
    }

    #[test]
    fn per_staff_caps_count_each_staff_member_or_the_one_named() {
        let each = vec![cap(90, Scope::Staff(None), None, Period::Day, 2)];
        let items = [booked(1, 7, None, 0, 9), booked(1, 8, None, 0, 11), booked(2, 7, None, 0, 9)];
        let c = Caps::new(Zone::fixed(0), id(7), None, each, &items);
        assert!(c.reached(id(1), at(0, 15)).is_some());
        assert!(c.reached(id(2), at(0, 15)).is_none());
        let named = vec![cap(90, Scope::Staff(Some(id(2))), None, Period::Day, 1)];
        let c = Caps::new(Zone::fixed(0), id(7), None, named, &items);
        assert!(c.reached(id(1), at(0, 15)).is_none(), "the cap is Bea's only");
        assert!(c.reached(id(2), at(0, 15)).is_some());
        assert_eq!(c.keys(id(1), at(0, 15)), vec![]);
        assert_eq!(c.keys(id(2), at(0, 15)), vec![(id(90), id(2), NaiveDate::from_ymd_opt(2026, 3, 23).unwrap())]);
    }

    #[test]
    fn a_customer_at_most_two_a_week_monday_to_sunday() {
        let caps = vec![cap(90, Scope::Customer, None, Period::Week, 2)];
        let items = [booked(1, 7, Some(5), 0, 9), booked(2, 8, Some(5), 3, 9), booked(2, 8, Some(6), 3, 9)];
        let c = Caps::new(Zone::fixed(0), id(7), Some(id(5)), caps.clone(), &items);
        assert!(c.reached(id(1), at(6, 9)).is_some(), "Sunday is the same week");
        assert!(c.reached(id(1), at(7, 9)).is_none(), "next Monday is a new week");
        let other = Caps::new(Zone::fixed(0), id(7), Some(id(6)), caps.clone(), &items);
        assert!(other.reached(id(1), at(2, 9)).is_none());
        // Without a customer (a slot query for anyone), customer caps do not apply.
        assert!(Caps::new(Zone::fixed(0), id(7), None, caps, &items).is_empty());
    }

    #[test]
    fn days_are_the_tenants_local_dates() {
        // 23:30 UTC on Monday is Tuesday in Zurich (UTC+1): it counts for Tuesday there.
        let caps = vec![cap(90, Scope::Service, Some(7), Period::Day, 1)];
        let items = [booked(1, 7, None, 0, 23)];
        let zurich = Caps::new(Zone::fixed(3600), id(7), None, caps.clone(), &items);
        assert!(zurich.reached(id(1), at(1, 10)).is_some());
        assert!(zurich.reached(id(1), at(0, 10)).is_none());
        let utc = Caps::new(Zone::fixed(0), id(7), None, caps, &items);
        assert!(utc.reached(id(1), at(0, 10)).is_some());
    }

    #[test]
    fn a_cap_of_zero_closes_and_the_messages_say_whose() {
        let c = Caps::new(Zone::fixed(0), id(7), None, vec![cap(90, Scope::Staff(None), None, Period::Week, 0)], &[]);
        assert_eq!(
            c.reached(id(1), at(0, 9)).map(Cap::describe).as_deref(),
            Some("The staff member's limit of 0 bookings a week is reached")
        );
        assert_eq!(
            cap(1, Scope::Service, Some(7), Period::Day, 1).describe(),
            "The service's limit of 1 booking a day is reached"
        );
    }
}
