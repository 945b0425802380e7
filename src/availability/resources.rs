//! Bookable resources (rooms, chairs, equipment): whether a service's requirements can all be
//! met at once for one booked range, and which resources meet them. Pure Rust.
//!
//! A service needs a list of requirements, each "one (or n) of group G" or "this resource".
//! Requirements can compete for the same resources (two chairs of one group, a specific chair
//! that is also in that group), so the choice is a bipartite matching between the resources
//! needed (one unit per resource, a requirement of quantity n is n units) and the free
//! resources, found with augmenting paths (Kuhn): it finds an assignment whenever one exists,
//! where taking the first free resource for each requirement in turn can miss it. The result is
//! deterministic: units are tried most constrained first, resources in the tenant's order
//! (`position`, then id), a resource the booking already holds first.

use chrono::{Days, NaiveDate};
use uuid::Uuid;

use super::engine::DayHours;
use super::intervals::{contains, first_overlap, normalize, Interval};
use super::zone::Zone;

/// One resource as the tenant describes it, with what occupies it around the question's dates.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: Uuid,
    pub name: String,
    pub position: i32,
    /// Weekly hours in the tenant's zone (`extract(dow)` index); `None`: whenever the tenant is
    /// open (a booking must be within the tenant's opening hours anyway).
    pub hours: Option<[Option<DayHours>; 7]>,
    /// Closures (maintenance, repairs): no booking may overlap one.
    pub closures: Vec<Interval>,
    /// The blocked ranges of its live assignments (bookings and holds).
    pub blocked: Vec<Interval>,
}

/// `quantity` of the resources `members` (a group's active members, or the one resource named).
#[derive(Debug, Clone)]
pub struct Requirement {
    pub id: Uuid,
    /// What a message calls it: the group's or the resource's name.
    pub label: String,
    pub members: Vec<Uuid>,
    pub quantity: u32,
}

#[derive(Debug, Clone)]
struct Free {
    id: Uuid,
    /// `None`: no hours of its own.
    open: Option<Vec<Interval>>,
    closures: Vec<Interval>,
    blocked: Vec<Interval>,
}

impl Free {
    fn at(&self, start: i64, end: i64, blocked: Interval) -> bool {
        self.open.as_ref().is_none_or(|open| contains(open, start, end))
            && first_overlap(&self.closures, start, end).is_none()
            && first_overlap(&self.blocked, blocked.start, blocked.end).is_none()
    }
}

/// One resource to find: which requirement it is for and the resources that may meet it, in
/// the order they are tried.
#[derive(Debug, Clone)]
struct Unit {
    requirement: usize,
    eligible: Vec<usize>,
}

/// The resources one service needs and what is free of them, over the dates of one question.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    requirements: Vec<(Uuid, String)>,
    resources: Vec<Free>,
    units: Vec<Unit>,
}

/// Which resource meets which requirement: (requirement id, resource id), in the order the
/// requirements were matched.
pub type Assignment = Vec<(Uuid, Uuid)>;

impl Pool {
    /// The pool for a service's `requirements` among the tenant's active `resources`, with their
    /// hours laid out over the local dates `from..=to` (two days either side, as the calendars
    /// do). `preferred` lists (requirement, resource) pairs the booking holds already (its own
    /// when it moves): they are tried first, so that a move keeps its resources where it can.
    /// A requirement naming a resource that is not among `resources` (inactive, removed) can
    /// never be met.
    pub fn new(
        zone: &Zone,
        requirements: &[Requirement],
        resources: &[Resource],
        preferred: &[(Uuid, Uuid)],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Pool {
        let mut order: Vec<&Resource> = resources.iter().collect();
        order.sort_by_key(|r| (r.position, r.id));
        let days: Vec<NaiveDate> = (from - Days::new(2)).iter_days().take_while(|d| *d <= to + Days::new(2)).collect();
        let free: Vec<Free> = order
            .iter()
            .map(|r| Free {
                id: r.id,
                open: r.hours.map(|week| {
                    normalize(
                        days.iter()
                            .filter_map(|d| {
                                week[super::engine::dow(*d)]
                                    .map(|h| Interval::new(zone.at(*d, h.start), zone.at(*d, h.end)))
                            })
                            .collect(),
                    )
                }),
                closures: normalize(r.closures.clone()),
                blocked: normalize(r.blocked.clone()),
            })
            .collect();
        let index = |id: &Uuid| free.iter().position(|f| f.id == *id);
        let mut units: Vec<Unit> = Vec::new();
        for (k, req) in requirements.iter().enumerate() {
            let mut eligible: Vec<usize> = req.members.iter().filter_map(index).collect();
            eligible.sort_unstable();
            eligible.dedup();
            // What the booking holds for this requirement goes first, in the same order.
            eligible.sort_by_key(|&i| !preferred.contains(&(req.id, free[i].id)));
            units.extend((0..req.quantity).map(|_| Unit { requirement: k, eligible: eligible.clone() }));
        }
        // Most constrained first (fewest candidates), then by requirement id: a fixed order.
        units.sort_by_key(|u| (u.eligible.len(), requirements[u.requirement].id));
        Pool { requirements: requirements.iter().map(|r| (r.id, r.label.clone())).collect(), resources: free, units }
    }

    /// Whether the service needs no resources at all.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The resources that meet every requirement of a booking of `[start, end)` occupying
    /// `blocked` (its buffers and the turnover included), or the label of a requirement that
    /// cannot be met.
    pub fn assign(&self, start: i64, end: i64, blocked: Interval) -> Result<Assignment, &str> {
        if self.units.is_empty() {
            return Ok(Vec::new());
        }
        let free: Vec<bool> = self.resources.iter().map(|r| r.at(start, end, blocked)).collect();
        // owner[r]: the unit resource r currently meets.
        let mut owner: Vec<Option<usize>> = vec![None; self.resources.len()];
        for u in 0..self.units.len() {
            let mut seen = vec![false; self.resources.len()];
            if !self.augment(u, &free, &mut seen, &mut owner) {
                return Err(&self.requirements[self.units[u].requirement].1);
            }
        }
        let mut by_unit: Vec<(usize, usize)> =
            owner.iter().enumerate().filter_map(|(r, u)| u.map(|u| (u, r))).collect();
        by_unit.sort_unstable();
        Ok(by_unit
            .into_iter()
            .map(|(u, r)| (self.requirements[self.units[u].requirement].0, self.resources[r].id))
            .collect())
    }

    /// Kuhn's augmenting path from unit `u`: the first free eligible resource nobody holds, else
    /// one whose holder can move to another. (Looking for an unheld one first keeps earlier
    /// units where they are whenever that suffices: the order of the search changes which
    /// matching is found, never whether one is.)
    fn augment(&self, u: usize, free: &[bool], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
        let eligible = &self.units[u].eligible;
        if let Some(&r) = eligible.iter().find(|&&r| free[r] && !seen[r] && owner[r].is_none()) {
            seen[r] = true;
            owner[r] = Some(u);
            return true;
        }
        for &r in eligible {
            if !free[r] || seen[r] {
                continue;
            }
            seen[r] = true;
            if owner[r].is_some_and(|other| self.augment(other, free, seen, owner)) {
                owner[r] = Some(u);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::zone::MICROS_PER_HOUR;

    const H: i64 = MICROS_PER_HOUR;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn resource(n: u128, position: i32) -> Resource {
        Resource { id: id(n), name: format!("r{n}"), position, hours: None, closures: vec![], blocked: vec![] }
    }

    fn group(req: u128, members: &[u128], quantity: u32) -> Requirement {
        Requirement {
            id: id(req),
            label: format!("group {req}"),
            members: members.iter().map(|m| id(*m)).collect(),
            quantity,
        }
    }

    fn this(req: u128, resource: u128) -> Requirement {
        Requirement { id: id(req), label: format!("resource {resource}"), members: vec![id(resource)], quantity: 1 }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 23).unwrap()
    }

    fn pool(reqs: &[Requirement], res: &[Resource]) -> Pool {
        Pool::new(&Zone::fixed(0), reqs, res, &[], day(), day())
    }

    /// 2026-03-23 10:00 UTC plus `h` hours, as an instant.
    fn at(h: i64) -> i64 {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 23)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
            + h * H
    }

    fn try_at(p: &Pool) -> Result<Assignment, String> {
        p.assign(at(0), at(1), Interval::new(at(0), at(1))).map_err(str::to_string)
    }

    #[test]
    fn no_requirements_need_nothing() {
        let p = pool(&[], &[resource(1, 0)]);
        assert!(p.is_empty());
        assert_eq!(try_at(&p), Ok(vec![]));
    }

    #[test]
    fn resources_are_taken_in_the_tenants_order() {
        let p = pool(&[group(10, &[1, 2, 3], 1)], &[resource(1, 3), resource(2, 1), resource(3, 2)]);
        assert_eq!(try_at(&p), Ok(vec![(id(10), id(2))]));
        let p = pool(&[group(10, &[1, 2, 3], 2)], &[resource(1, 3), resource(2, 1), resource(3, 2)]);
        let got: Vec<Uuid> = try_at(&p).unwrap().into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, [id(2), id(3)]);
    }

    #[test]
    fn a_busy_closed_or_shut_resource_is_not_free() {
        let mut busy = resource(1, 0);
        busy.blocked.push(Interval::new(at(0) + H / 2, at(2)));
        let mut closed = resource(2, 1);
        closed.closures.push(Interval::new(at(-1), at(0) + 1));
        let mut shut = resource(3, 2);
        // Open 08:00-10:30 every day: the booking ends at 11:00.
        shut.hours = Some([Some(DayHours { start: 8 * 3600, end: 10 * 3600 + 1800 }); 7]);
        let free = resource(4, 3);
        let p = pool(&[group(10, &[1, 2, 3, 4], 1)], &[busy.clone(), closed.clone(), shut.clone(), free]);
        assert_eq!(try_at(&p), Ok(vec![(id(10), id(4))]));
        let p = pool(&[group(10, &[1, 2, 3], 1)], &[busy, closed, shut]);
        assert_eq!(try_at(&p), Err("group 10".to_string()));
    }

    #[test]
    fn buffers_count_against_assignments_not_against_hours() {
        // The booking runs 10:00-11:00 but blocks 09:45-11:15; the resource is busy until 09:50.
        let mut r = resource(1, 0);
        r.blocked.push(Interval::new(at(-1), at(0) - H / 6));
        let p = pool(&[group(10, &[1], 1)], &[r]);
        assert!(p.assign(at(0), at(1), Interval::new(at(0), at(1))).is_ok());
        assert!(p.assign(at(0), at(1), Interval::new(at(0) - H / 4, at(1) + H / 4)).is_err());
    }

    /// A specific resource that is also a group's member: taking it for the group first (it
    /// comes first in the tenant's order) would leave the specific requirement unmet. The
    /// matching moves the group's unit to the other member.
    #[test]
    fn a_specific_resource_in_a_group_is_matched_not_taken_greedily() {
        let res = [resource(1, 0), resource(2, 1)];
        let p = pool(&[group(10, &[1, 2], 1), this(20, 1)], &res);
        let mut got = try_at(&p).unwrap();
        got.sort();
        assert_eq!(got, [(id(10), id(2)), (id(20), id(1))]);
        // Both chairs of the group and the specific one: three resources needed, two exist.
        let p = pool(&[group(10, &[1, 2], 2), this(20, 1)], &res);
        assert!(try_at(&p).is_err());
    }

    /// Two requirements on overlapping groups, where the order of the requirements would decide
    /// a greedy choice: A needs one of {1, 2}, B one of {1}; greedy by A first takes 1 and fails
    /// B, the matching reassigns.
    #[test]
    fn overlapping_groups_are_matched() {
        let res = [resource(1, 0), resource(2, 1), resource(3, 2)];
        // Both have two candidates, so neither is "more constrained" by count.
        let p = pool(&[group(10, &[1, 2], 1), group(20, &[1, 3], 1), group(30, &[1, 2], 1)], &res);
        let mut got = try_at(&p).unwrap();
        got.sort();
        assert_eq!(got.len(), 3);
        let used: std::collections::BTreeSet<Uuid> = got.iter().map(|(_, r)| *r).collect();
        assert_eq!(used.len(), 3, "three distinct resources: {got:?}");
        assert_eq!(got.iter().find(|(q, _)| *q == id(20)).map(|(_, r)| *r), Some(id(3)));
    }

    #[test]
    fn a_missing_or_inactive_resource_cannot_be_met() {
        let p = pool(&[this(20, 9)], &[resource(1, 0)]);
        assert_eq!(try_at(&p), Err("resource 9".to_string()));
        let p = pool(&[group(10, &[9], 1)], &[resource(1, 0)]);
        assert!(try_at(&p).is_err());
    }

    #[test]
    fn what_the_booking_holds_is_tried_first() {
        let res = [resource(1, 0), resource(2, 1)];
        let p = Pool::new(&Zone::fixed(0), &[group(10, &[1, 2], 1)], &res, &[(id(10), id(2))], day(), day());
        assert_eq!(try_at(&p), Ok(vec![(id(10), id(2))]));
    }

    #[test]
    fn the_same_state_gives_the_same_assignment() {
        let res: Vec<Resource> = (1..=6).map(|n| resource(n, (n % 3) as i32)).collect();
        let reqs = [group(10, &[1, 2, 3, 4], 2), group(20, &[3, 4, 5, 6], 2), this(30, 5)];
        let first = try_at(&pool(&reqs, &res)).unwrap();
        for _ in 0..5 {
            assert_eq!(try_at(&pool(&reqs, &res)).unwrap(), first);
        }
        let used: std::collections::BTreeSet<Uuid> = first.iter().map(|(_, r)| *r).collect();
        assert_eq!(used.len(), 5);
    }
}
