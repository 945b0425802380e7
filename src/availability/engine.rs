//! The availability rules: which appointment start times a staff member can take, and why a
//! given start time is refused. Pure Rust, fed by one set-based read per call (see `api`).
//!
//! One predicate (`Calendar::violations`) decides both questions, so the slots offered and the
//! validation of a booking can never disagree.

use chrono::{Datelike, Days, NaiveDate};
use uuid::Uuid;

use super::caps::Caps;
use super::intervals::{contains, first_overlap, intersect, normalize, subtract, Interval};
use super::resources::Pool;
use super::zone::{seconds_of_day, Micros, Zone, MICROS_PER_SECOND};

/// A wall-clock range within one day, in seconds from midnight; `end` may be 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayHours {
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub zone: Zone,
    /// Indexed by `extract(dow)`: 0 = Sunday. `None` = closed.
    pub opening: [Option<DayHours>; 7],
    pub slot_interval: Micros,
    /// Turnover time kept free after every appointment (tenant `buffer_time_minutes`).
    pub turnover: Micros,
}

#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub duration: Micros,
    pub buffer_before: Micros,
    pub buffer_after: Micros,
}

#[derive(Debug, Clone)]
pub struct WeeklyWindow {
    pub dow: u32,
    pub hours: DayHours,
    pub zone: Zone,
}

/// A one-off change to one day of a staff member's schedule. For a day with overrides, the
/// available ones (if any) replace the weekly windows; an unavailable one without hours takes
/// the whole day off, and one with hours cuts that time out.
#[derive(Debug, Clone)]
pub struct DayOverride {
    pub date: NaiveDate,
    pub hours: Option<DayHours>,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolidayDate {
    Once(NaiveDate),
    Yearly { month: u32, day: u32 },
}

#[derive(Debug, Clone)]
pub struct Holiday {
    pub name: String,
    pub date: HolidayDate,
    /// `None` = every staff member.
    pub staff: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone)]
pub struct TimeOff {
    pub period: Interval,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Staff {
    pub id: Uuid,
    pub zone: Zone,
    pub offers_service: bool,
    pub weekly: Vec<WeeklyWindow>,
    pub overrides: Vec<DayOverride>,
    pub time_off: Vec<TimeOff>,
    /// Blocked ranges (appointment plus its buffers) of the staff member's live appointments
    /// and holds.
    pub blocked: Vec<Interval>,
    /// The staff member's own length of the service (`staff_services.duration_minutes`);
    /// `None`: the service's.
    pub duration: Option<Micros>,
}

/// What a booking needs beyond its staff member, the same for every staff member of one
/// question: the resources the service requires, and the tenant's booking caps.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub pool: Pool,
    pub caps: Option<Caps>,
}

/// The rules that depend on the clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Micros,
    pub min_notice: Micros,
    pub max_advance: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    ServiceNotOffered,
    OutsideBusinessHours,
    OutsideStaffSchedule,
    Holiday,
    TimeOff,
    MinNotice,
    MaxAdvance,
    Conflict,
    ResourceUnavailable,
    CapReached,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::ServiceNotOffered,
        Rule::OutsideBusinessHours,
        Rule::OutsideStaffSchedule,
        Rule::Holiday,
        Rule::TimeOff,
        Rule::MinNotice,
        Rule::MaxAdvance,
        Rule::Conflict,
        Rule::ResourceUnavailable,
        Rule::CapReached,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::ServiceNotOffered => "service_not_offered",
            Rule::OutsideBusinessHours => "outside_business_hours",
            Rule::OutsideStaffSchedule => "outside_staff_schedule",
            Rule::Holiday => "holiday",
            Rule::TimeOff => "time_off",
            Rule::MinNotice => "min_notice",
            Rule::MaxAdvance => "max_advance",
            Rule::Conflict => "conflict",
            Rule::ResourceUnavailable => "resource_unavailable",
            Rule::CapReached => "cap_reached",
        }
    }
}

/// What a caller outside the tenant learns about time off and holidays.
pub const UNAVAILABLE: &str = "The staff member is unavailable at this time";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub start: Micros,
    pub staff: Uuid,
    pub end: Micros,
}

/// A start time the schedule offers, for the slot store: `free` is false when another booking
/// (with its buffers) is in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The staff member's local date of `start`.
    pub date: NaiveDate,
    pub start: Micros,
    pub end: Micros,
    pub free: bool,
}

/// One staff member's candidate slots of one service over a span of dates, with the working
/// windows and booked ranges they were cut from and the room a booking takes beyond its own
/// times (buffers before; buffers and turnover after).
#[derive(Debug, Clone)]
pub struct Plan {
    pub slots: Vec<Candidate>,
    pub windows: Vec<Interval>,
    pub blocked: Vec<Interval>,
    pub before: Micros,
    pub after: Micros,
}

fn day_range(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    from.iter_days().take_while(move |d| *d <= to)
}

pub(super) fn dow(date: NaiveDate) -> usize {
    date.weekday().num_days_from_sunday() as usize
}

fn hours_interval(zone: &Zone, date: NaiveDate, hours: DayHours) -> Interval {
    Interval::new(zone.at(date, hours.start), zone.at(date, hours.end))
}

fn whole_day(zone: &Zone, date: NaiveDate) -> Interval {
    hours_interval(zone, date, DayHours { start: 0, end: 24 * 3600 })
}

fn fmt_hhmm(seconds: u32) -> String {
    format!("{:02}:{:02}", seconds / 3600, seconds / 60 % 60)
}

fn fmt_hours(hours: &[DayHours]) -> String {
    hours.iter().map(|h| format!("{} - {}", fmt_hhmm(h.start), fmt_hhmm(h.end))).collect::<Vec<_>>().join(", ")
}

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

impl HolidayDate {
    fn falls_on(&self, date: NaiveDate) -> bool {
        match *self {
            HolidayDate::Once(d) => d == date,
            HolidayDate::Yearly { month, day } => date.month() == month && date.day() == day,
        }
    }
}

impl Staff {
    /// The staff member's own working hours on one local date, after overrides.
    fn hours_on(&self, date: NaiveDate) -> Vec<Interval> {
        let overrides: Vec<&DayOverride> = self.overrides.iter().filter(|o| o.date == date).collect();
        let available: Vec<Interval> = overrides
            .iter()
            .filter(|o| o.available)
            .map(|o| o.hours.map_or_else(|| whole_day(&self.zone, date), |h| hours_interval(&self.zone, date, h)))
            .collect();
        let base = if available.is_empty() {
            self.weekly
                .iter()
                .filter(|w| w.dow as usize == dow(date))
                .map(|w| hours_interval(&w.zone, date, w.hours))
                .collect()
        } else {
            available
        };
        if overrides.iter().any(|o| !o.available && o.hours.is_none()) {
            return Vec::new();
        }
        let cut: Vec<Interval> = overrides
            .iter()
            .filter(|o| !o.available)
            .filter_map(|o| o.hours.map(|h| hours_interval(&self.zone, date, h)))
            .collect();
        subtract(&normalize(base), &normalize(cut))
    }

    fn describe_hours_on(&self, date: NaiveDate) -> String {
        let hours: Vec<DayHours> = self
            .hours_on(date)
            .iter()
            .map(|i| DayHours { start: local_seconds(&self.zone, i.start), end: local_end_seconds(&self.zone, i.end) })
            .collect();
        if hours.is_empty() {
            "not working on this day".to_string()
        } else {
            fmt_hours(&hours)
        }
    }
}

fn local_seconds(zone: &Zone, instant: Micros) -> u32 {
    seconds_of_day(zone.to_local(instant).time())
}

/// Like `local_seconds`, but midnight at the end of a window reads as 24:00.
fn local_end_seconds(zone: &Zone, instant: Micros) -> u32 {
    match local_seconds(zone, instant) {
        0 => 24 * 3600,
        s => s,
    }
}

/// Everything about one staff member over a span of dates, as sorted instants.
pub struct Calendar<'a> {
    tenant: &'a Tenant,
    service: &'a Service,
    staff: &'a Staff,
    clock: &'a Clock,
    /// The booking's length with this staff member.
    duration: Micros,
    shared: Option<&'a Shared>,
    opening: Vec<Interval>,
    schedule: Vec<Interval>,
    holidays: Vec<(Interval, &'a str)>,
    time_off: Vec<Interval>,
    blocked: Vec<Interval>,
}

impl<'a> Calendar<'a> {
    /// Covers local dates `from..=to`, plus two days either side: the tenant's and a schedule
    /// row's zones may be up to 26 hours away from the staff member's.
    pub fn new(
        tenant: &'a Tenant,
        service: &'a Service,
        staff: &'a Staff,
        holidays: &'a [Holiday],
        clock: &'a Clock,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Calendar<'a> {
        let first = from - Days::new(2);
        let last = to + Days::new(2);
        let opening = normalize(
            day_range(first, last)
                .filter_map(|d| tenant.opening[dow(d)].map(|h| hours_interval(&tenant.zone, d, h)))
                .collect(),
        );
        let schedule = normalize(day_range(first, last).flat_map(|d| staff.hours_on(d)).collect());
        let mut holiday_days: Vec<(Interval, &str)> = day_range(first, last)
            .flat_map(|d| {
                holidays
                    .iter()
                    .filter(move |h| h.date.falls_on(d))
                    .filter(|h| h.staff.as_ref().is_none_or(|ids| ids.contains(&staff.id)))
                    .map(move |h| (whole_day(&tenant.zone, d), h.name.as_str()))
            })
            .collect();
        holiday_days.sort_by_key(|(i, _)| *i);
        let time_off = normalize(staff.time_off.iter().map(|t| t.period).collect());
        let blocked = normalize(staff.blocked.clone());
        let duration = staff.duration.unwrap_or(service.duration);
        Calendar {
            tenant,
            service,
            staff,
            clock,
            duration,
            shared: None,
            opening,
            schedule,
            holidays: holiday_days,
            time_off,
            blocked,
        }
    }

    /// The same calendar, also checking the service's resources and the tenant's caps.
    pub fn with_shared(mut self, shared: &'a Shared) -> Calendar<'a> {
        self.shared = Some(shared);
        self
    }

    /// The booking's length with this staff member.
    pub fn duration(&self) -> Micros {
        self.duration
    }

    /// The resources a booking starting at `start` would take (empty when the service needs
    /// none), or the label of a requirement nothing free meets.
    pub fn resources_at(&self, start: Micros) -> Result<super::resources::Assignment, String> {
        match self.shared {
            Some(s) => s.pool.assign(start, start + self.duration, self.blocked_range(start)).map_err(str::to_string),
            None => Ok(Vec::new()),
        }
    }

    /// The caps a booking starting at `start` counts against (their lock keys).
    pub fn cap_keys(&self, start: Micros) -> Vec<super::caps::Key> {
        self.shared.and_then(|s| s.caps.as_ref()).map_or_else(Vec::new, |c| c.keys(self.staff.id, start))
    }

    /// The range the appointment starting at `start` would block, buffers included (as the
    /// appointments' trigger derives it).
    pub fn blocked_range(&self, start: Micros) -> Interval {
        Interval::new(
            start - self.service.buffer_before,
            start + self.duration + self.service.buffer_after + self.tenant.turnover,
        )
    }

    /// Every rule a booking starting at `start` breaks, as a set of `Rule` bits: the one
    /// predicate behind both the slots offered and the violations explained.
    fn broken(&self, start: Micros) -> u16 {
        let end = start + self.duration;
        let b = self.blocked_range(start);
        let pool = self.shared.map(|s| &s.pool).filter(|p| !p.is_empty());
        let caps = self.shared.and_then(|s| s.caps.as_ref()).filter(|c| !c.is_empty());
        let checks = [
            (Rule::ServiceNotOffered, !self.staff.offers_service),
            (Rule::OutsideBusinessHours, !contains(&self.opening, start, end)),
            (Rule::OutsideStaffSchedule, !contains(&self.schedule, start, end)),
            (Rule::Holiday, self.holiday_at(start, end).is_some()),
            (Rule::TimeOff, first_overlap(&self.time_off, start, end).is_some()),
            (Rule::MinNotice, start < self.clock.now + self.clock.min_notice),
            (Rule::MaxAdvance, start > self.clock.now + self.clock.max_advance),
            (Rule::Conflict, first_overlap(&self.blocked, b.start, b.end).is_some()),
            (Rule::ResourceUnavailable, pool.is_some_and(|p| p.assign(start, end, b).is_err())),
            (Rule::CapReached, caps.is_some_and(|c| c.reached(self.staff.id, start).is_some())),
        ];
        checks.iter().filter(|(_, broken)| *broken).fold(0, |set, (rule, _)| set | (1 << *rule as u16))
    }

    /// Every rule a booking starting at `start` breaks, in a fixed order.
    pub fn violations(&self, start: Micros) -> Vec<Rule> {
        let set = self.broken(start);
        Rule::ALL.into_iter().filter(|r| set & (1 << *r as u16) != 0).collect()
    }

    fn holiday_at(&self, start: Micros, end: Micros) -> Option<&'a str> {
        self.holidays.iter().find(|(i, _)| i.start < end && start < i.end).map(|(_, name)| *name)
    }

    /// Bookable start times on the local dates `from..=to` (the staff member's zone), stepping
    /// by the slot interval in wall-clock time from the start of each working window. A step
    /// landing in a spring-forward gap is skipped; one in a repeated autumn hour is offered
    /// once, at the instant Postgres's `AT TIME ZONE` gives it.
    pub fn slots(&self, from: NaiveDate, to: NaiveDate, out: &mut Vec<Slot>) {
        self.candidates(from, to, |start, _, broken| {
            if broken == 0 {
                out.push(Slot { start, staff: self.staff.id, end: start + self.duration });
            }
        });
    }

    /// Every start time the working windows step through on the local dates `from..=to`, with
    /// its local date and the rules it breaks: the one walk behind both `slots` and `plan`.
    fn candidates(&self, from: NaiveDate, to: NaiveDate, mut f: impl FnMut(Micros, NaiveDate, u16)) {
        if !self.staff.offers_service || self.tenant.slot_interval <= 0 {
            return;
        }
        let zone = &self.staff.zone;
        for window in intersect(&self.opening, &self.schedule) {
            let local_start = super::zone::local_micros(zone.to_local(window.start));
            for k in 0.. {
                let local = local_start + k * self.tenant.slot_interval;
                let start = match zone.resolve_micros(local) {
                    super::zone::LocalTime::Nonexistent(_) => continue,
                    resolved => resolved.as_postgres(),
                };
                if start + self.duration > window.end {
                    break;
                }
                let date = zone.to_local(start).date();
                if date >= from && date <= to {
                    f(start, date, self.broken(start));
                }
            }
        }
    }

    /// What the slot store keeps of the local dates `from..=to`: every start time that breaks
    /// no rule except the clock's (applied when the store is read, so that stored slots never
    /// go stale) and those other bookings and holds make (a conflict, its resources taken, a
    /// full cap: kept as taken slots), plus what the store's scores look at. `slots` is exactly
    /// `plan`'s free slots that pass the clock rules.
    pub fn plan(&self, from: NaiveDate, to: NaiveDate) -> Plan {
        let clock = (1 << Rule::MinNotice as u16) | (1 << Rule::MaxAdvance as u16);
        let taken =
            (1 << Rule::Conflict as u16) | (1 << Rule::ResourceUnavailable as u16) | (1 << Rule::CapReached as u16);
        let mut slots = Vec::new();
        self.candidates(from, to, |start, date, broken| {
            if broken & !(clock | taken) == 0 {
                slots.push(Candidate { date, start, end: start + self.duration, free: broken & taken == 0 });
            }
        });
        Plan {
            slots,
            windows: intersect(&self.opening, &self.schedule),
            blocked: self.blocked.clone(),
            before: self.service.buffer_before,
            after: self.service.buffer_after + self.tenant.turnover,
        }
    }

    /// A message for each broken rule, naming the hours or dates involved. Why a staff member
    /// is away (the time off's reason, the holiday's name) is for the tenant's own people:
    /// without `show_private` those messages say only that the staff member is unavailable.
    pub fn explain(&self, start: Micros, show_private: bool) -> Vec<Violation> {
        let end = start + self.duration;
        let tenant_date = self.tenant.zone.to_local(start).date();
        let staff_date = self.staff.zone.to_local(start).date();
        self.violations(start)
            .into_iter()
            .map(|rule| {
                let message = match rule {
                    Rule::ServiceNotOffered => "The staff member does not offer this service".to_string(),
                    Rule::OutsideBusinessHours => match self.tenant.opening[dow(tenant_date)] {
                        Some(h) => format!("Appointment time is outside business hours ({})", fmt_hours(&[h])),
                        None => format!(
                            "Appointment time is outside business hours (closed on {})",
                            WEEKDAYS[dow(tenant_date)]
                        ),
                    },
                    Rule::OutsideStaffSchedule => format!(
                        "Appointment time is outside the staff member's schedule ({})",
                        self.staff.describe_hours_on(staff_date)
                    ),
                    Rule::Holiday | Rule::TimeOff if !show_private => UNAVAILABLE.to_string(),
                    Rule::Holiday => format!(
                        "Appointment date {} is a holiday ({})",
                        tenant_date,
                        self.holiday_at(start, end).unwrap_or_default()
                    ),
                    Rule::TimeOff => {
                        let reason = self
                            .staff
                            .time_off
                            .iter()
                            .find(|t| t.period.start < end && start < t.period.end)
                            .and_then(|t| t.reason.clone());
                        match reason {
                            Some(r) => format!("The staff member is on time off ({r})"),
                            None => "The staff member is on time off".to_string(),
                        }
                    }
                    Rule::MinNotice => format!(
                        "Appointments need at least {} hours' notice",
                        self.clock.min_notice / (3600 * MICROS_PER_SECOND)
                    ),
                    Rule::MaxAdvance => format!(
                        "Appointments can be booked at most {} days in advance",
                        self.clock.max_advance / (86_400 * MICROS_PER_SECOND)
                    ),
                    Rule::Conflict => "Time slot conflicts with another appointment".to_string(),
                    Rule::ResourceUnavailable => match self.resources_at(start) {
                        Err(label) => format!("The resources this service needs are not free at this time ({label})"),
                        Ok(_) => "The resources this service needs are not free at this time".to_string(),
                    },
                    Rule::CapReached => self
                        .shared
                        .and_then(|s| s.caps.as_ref())
                        .and_then(|c| c.reached(self.staff.id, start))
                        .map_or_else(|| "A booking limit is reached".to_string(), |c| c.describe()),
                };
                Violation { rule, message }
            })
            .collect()
    }
}

/// All bookable slots of the given staff members, ordered by start then staff id. `clocks[i]`
/// is `staff[i]`'s: the notice and advance rules may differ per staff member (their own
/// policies win over the service's and the tenant's). `shared`: the service's resources and
/// the tenant's caps, which every staff member's slots must also meet.
#[allow(clippy::too_many_arguments)]
pub fn available_slots(
    tenant: &Tenant,
    service: &Service,
    staff: &[Staff],
    holidays: &[Holiday],
    clocks: &[Clock],
    shared: &Shared,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<Slot> {
    let mut out = Vec::new();
    for (s, clock) in staff.iter().zip(clocks) {
        Calendar::new(tenant, service, s, holidays, clock, from, to).with_shared(shared).slots(from, to, &mut out);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::zone::{MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE};
    use chrono::NaiveDateTime;

    fn utc(s: &str) -> Micros {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_micros()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn hm(s: &str) -> u32 {
        let (h, m) = s.split_once(':').unwrap();
        h.parse::<u32>().unwrap() * 3600 + m.parse::<u32>().unwrap() * 60
    }

    fn hours(a: &str, b: &str) -> DayHours {
        DayHours { start: hm(a), end: hm(b) }
    }

    fn zurich() -> Zone {
        Zone {
            initial_offset: 3600,
            transitions: vec![(utc("2026-03-29 01:00"), 7200), (utc("2026-10-25 01:00"), 3600)],
        }
    }

    fn tenant(zone: Zone) -> Tenant {
        let open = Some(hours("08:00", "18:00"));
        Tenant {
            zone,
            opening: [None, open, open, open, open, open, Some(hours("00:00", "24:00"))],
            slot_interval: 30 * MICROS_PER_MINUTE,
            turnover: 0,
        }
    }

    fn service(minutes: i64) -> Service {
        Service { duration: minutes * MICROS_PER_MINUTE, buffer_before: 0, buffer_after: 0 }
    }

    fn staff(zone: Zone, weekly: &[(u32, &str, &str)]) -> Staff {
        Staff {
            id: Uuid::from_u128(1),
            zone: zone.clone(),
            offers_service: true,
            weekly: weekly
                .iter()
                .map(|&(d, a, b)| WeeklyWindow { dow: d, hours: hours(a, b), zone: zone.clone() })
                .collect(),
            overrides: vec![],
            time_off: vec![],
            blocked: vec![],
            duration: None,
        }
    }

    fn clock(now: &str) -> Clock {
        Clock { now: utc(now), min_notice: 2 * MICROS_PER_HOUR, max_advance: 90 * MICROS_PER_DAY }
    }

    fn starts(slots: &[Slot], zone: &Zone) -> Vec<String> {
        slots.iter().map(|s| zone.to_local(s.start).format("%m-%d %H:%M").to_string()).collect()
    }

    fn monday_staff() -> Staff {
        // 2026-03-23 is a Monday.
        staff(Zone::fixed(0), &[(1, "09:00", "12:00"), (1, "13:00", "15:00")])
    }

    fn run(t: &Tenant, svc: &Service, s: &Staff, hol: &[Holiday], c: &Clock, d: &str) -> Vec<String> {
        starts(
            &available_slots(
                t,
                svc,
                std::slice::from_ref(s),
                hol,
                std::slice::from_ref(c),
                &Shared::default(),
                date(d),
                date(d),
            ),
            &s.zone,
        )
    }

    #[test]
    fn slots_step_from_each_window_start_and_respect_breaks() {
        let t = tenant(Zone::fixed(0));
        let got = run(&t, &service(60), &monday_staff(), &[], &clock("2026-03-01 00:00"), "2026-03-23");
        assert_eq!(
            got,
            [
                "03-23 09:00",
                "03-23 09:30",
                "03-23 10:00",
                "03-23 10:30",
                "03-23 11:00",
                "03-23 13:00",
                "03-23 13:30",
                "03-23 14:00"
            ]
        );
    }

    #[test]
    fn opening_hours_clip_the_schedule() {
        let mut t = tenant(Zone::fixed(0));
        t.opening[1] = Some(hours("10:00", "14:00"));
        let got = run(&t, &service(60), &monday_staff(), &[], &clock("2026-03-01 00:00"), "2026-03-23");
        assert_eq!(got, ["03-23 10:00", "03-23 10:30", "03-23 11:00", "03-23 13:00"]);
        t.opening[1] = None;
        assert!(run(&t, &service(60), &monday_staff(), &[], &clock("2026-03-01 00:00"), "2026-03-23").is_empty());
    }

    #[test]
    fn buffers_stack_with_existing_blocked_ranges() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        // Existing appointment 10:00-10:30 with a 15 minute after-buffer: blocked until 10:45.
        s.blocked.push(Interval::new(utc("2026-03-23 10:00"), utc("2026-03-23 10:45")));
        let svc = Service { duration: 30 * MICROS_PER_MINUTE, buffer_before: 15 * MICROS_PER_MINUTE, buffer_after: 0 };
        let got = run(&t, &svc, &s, &[], &clock("2026-03-01 00:00"), "2026-03-23");
        // 09:30 would end at 10:00, touching the other appointment: fine (half-open). 10:30 would
        // need 10:15-11:00 free, overlapping the blocked 10:00-10:45; 11:00 needs 10:45 on: fine.
        assert_eq!(&got[..4], ["03-23 09:00", "03-23 09:30", "03-23 11:00", "03-23 11:30"]);
        let svc_after =
            Service { duration: 30 * MICROS_PER_MINUTE, buffer_before: 0, buffer_after: 15 * MICROS_PER_MINUTE };
        let got = run(&t, &svc_after, &s, &[], &clock("2026-03-01 00:00"), "2026-03-23");
        // 09:30 + 30 min + 15 min after-buffer runs into 10:00: refused.
        assert_eq!(&got[..3], ["03-23 09:00", "03-23 11:00", "03-23 11:30"]);
    }

    #[test]
    fn tenant_turnover_extends_every_appointment() {
        let mut t = tenant(Zone::fixed(0));
        t.turnover = 15 * MICROS_PER_MINUTE;
        let mut s = monday_staff();
        s.blocked.push(Interval::new(utc("2026-03-23 10:00"), utc("2026-03-23 10:30")));
        let got = run(&t, &service(30), &s, &[], &clock("2026-03-01 00:00"), "2026-03-23");
        assert_eq!(&got[..3], ["03-23 09:00", "03-23 10:30", "03-23 11:00"]);
    }

    #[test]
    fn holidays_once_yearly_and_per_staff() {
        let t = tenant(Zone::fixed(0));
        let s = monday_staff();
        let c = clock("2026-03-01 00:00");
        let once = Holiday { name: "Inventory".into(), date: HolidayDate::Once(date("2026-03-23")), staff: None };
        assert!(run(&t, &service(60), &s, &[once], &c, "2026-03-23").is_empty());
        let yearly = Holiday { name: "Founders".into(), date: HolidayDate::Yearly { month: 3, day: 23 }, staff: None };
        assert!(run(&t, &service(60), &s, &[yearly], &c, "2026-03-23").is_empty());
        let other = Holiday {
            name: "Other".into(),
            date: HolidayDate::Once(date("2026-03-23")),
            staff: Some(vec![Uuid::from_u128(2)]),
        };
        assert_eq!(run(&t, &service(60), &s, std::slice::from_ref(&other), &c, "2026-03-23").len(), 8);
        let mine = Holiday { staff: Some(vec![Uuid::from_u128(1)]), ..other };
        assert!(run(&t, &service(60), &s, &[mine], &c, "2026-03-23").is_empty());
    }

    #[test]
    fn time_off_and_overrides() {
        let t = tenant(Zone::fixed(0));
        let c = clock("2026-03-01 00:00");
        let mut s = monday_staff();
        s.time_off
            .push(TimeOff { period: Interval::new(utc("2026-03-23 09:00"), utc("2026-03-23 12:00")), reason: None });
        assert_eq!(run(&t, &service(60), &s, &[], &c, "2026-03-23"), ["03-23 13:00", "03-23 13:30", "03-23 14:00"]);
        let mut s = monday_staff();
        s.overrides.push(DayOverride {
            date: date("2026-03-23"),
            hours: Some(hours("16:00", "17:00")),
            available: true,
        });
        assert_eq!(run(&t, &service(60), &s, &[], &c, "2026-03-23"), ["03-23 16:00"]);
        let mut s = monday_staff();
        s.overrides.push(DayOverride {
            date: date("2026-03-23"),
            hours: Some(hours("09:00", "11:00")),
            available: false,
        });
        assert_eq!(run(&t, &service(60), &s, &[], &c, "2026-03-23")[0], "03-23 11:00");
        let mut s = monday_staff();
        s.overrides.push(DayOverride { date: date("2026-03-23"), hours: None, available: false });
        assert!(run(&t, &service(60), &s, &[], &c, "2026-03-23").is_empty());
    }

    #[test]
    fn notice_and_advance_limits_use_the_given_clock() {
        let t = tenant(Zone::fixed(0));
        let s = monday_staff();
        let got = run(&t, &service(60), &s, &[], &clock("2026-03-23 08:30"), "2026-03-23");
        assert_eq!(got[0], "03-23 10:30");
        let far = Clock { max_advance: 22 * MICROS_PER_DAY + 10 * MICROS_PER_HOUR, ..clock("2026-03-01 00:00") };
        assert_eq!(run(&t, &service(60), &s, &[], &far, "2026-03-23"), ["03-23 09:00", "03-23 09:30", "03-23 10:00"]);
    }

    #[test]
    fn wall_clock_hours_hold_across_both_dst_changes() {
        let z = zurich();
        let mut t = tenant(z.clone());
        t.opening = [Some(hours("00:00", "24:00")); 7];
        let all_week: Vec<(u32, &str, &str)> = (0..7).map(|d| (d, "09:00", "11:00")).collect();
        let s = staff(z.clone(), &all_week);
        let c = Clock { max_advance: 365 * MICROS_PER_DAY, ..clock("2026-01-01 00:00") };
        let expect = |d: &str| vec![format!("{d} 09:00"), format!("{d} 09:30"), format!("{d} 10:00")];
        // Saturday before, Sunday of, and Monday after each change.
        for d in ["2026-03-28", "2026-03-29", "2026-03-30", "2026-10-24", "2026-10-25", "2026-10-26"] {
            let got = starts(
                &available_slots(
                    &t,
                    &service(60),
                    std::slice::from_ref(&s),
                    &[],
                    &[c],
                    &Shared::default(),
                    date(d),
                    date(d),
                ),
                &z,
            );
            assert_eq!(got, expect(&d[5..]), "day {d}");
        }
        // The instants differ by the offset: 09:00 is 08:00 UTC in winter, 07:00 UTC in summer.
        let spring = available_slots(
            &t,
            &service(60),
            std::slice::from_ref(&s),
            &[],
            &[c],
            &Shared::default(),
            date("2026-03-29"),
            date("2026-03-29"),
        );
        assert_eq!(spring[0].start, utc("2026-03-29 07:00"));
        let before = available_slots(
            &t,
            &service(60),
            std::slice::from_ref(&s),
            &[],
            &[c],
            &Shared::default(),
            date("2026-03-28"),
            date("2026-03-28"),
        );
        assert_eq!(before[0].start, utc("2026-03-28 08:00"));
    }

    #[test]
    fn night_window_skips_the_spring_gap_and_offers_the_autumn_hour_once() {
        let z = zurich();
        let mut t = tenant(z.clone());
        t.opening = [Some(hours("00:00", "24:00")); 7];
        t.slot_interval = 30 * MICROS_PER_MINUTE;
        let s = staff(z.clone(), &[(0, "01:00", "04:00")]);
        let c = Clock { max_advance: 365 * MICROS_PER_DAY, ..clock("2026-01-01 00:00") };
        let spring = available_slots(
            &t,
            &service(30),
            std::slice::from_ref(&s),
            &[],
            &[c],
            &Shared::default(),
            date("2026-03-29"),
            date("2026-03-29"),
        );
        assert_eq!(starts(&spring, &z), ["03-29 01:00", "03-29 01:30", "03-29 03:00", "03-29 03:30"]);
        let autumn = available_slots(
            &t,
            &service(30),
            std::slice::from_ref(&s),
            &[],
            &[c],
            &Shared::default(),
            date("2026-10-25"),
            date("2026-10-25"),
        );
        assert_eq!(
            starts(&autumn, &z),
            ["10-25 01:00", "10-25 01:30", "10-25 02:00", "10-25 02:30", "10-25 03:00", "10-25 03:30"]
        );
        // The repeated 02:00 is offered at the later instant, as `'02:00' AT TIME ZONE` gives.
        assert_eq!(autumn[2].start, utc("2026-10-25 01:00"));
    }

    #[test]
    fn zones_26_hours_apart_still_give_the_whole_first_day() {
        // Tenant at UTC-12 open all day, staff at UTC+14 working all day: the staff member's
        // first local day starts 26 hours before the tenant's day of the same date.
        let mut t = tenant(Zone::fixed(-12 * 3600));
        t.opening = [Some(hours("00:00", "24:00")); 7];
        t.slot_interval = 60 * MICROS_PER_MINUTE;
        let all_week: Vec<(u32, &str, &str)> = (0..7).map(|d| (d, "00:00", "24:00")).collect();
        let s = staff(Zone::fixed(14 * 3600), &all_week);
        let c = clock("2026-03-01 00:00");
        let got = run(&t, &service(60), &s, &[], &c, "2026-03-24");
        assert_eq!(got.len(), 24);
        assert_eq!(got[0], "03-24 00:00");
    }

    #[test]
    fn explain_names_hours_and_rules() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        s.blocked.push(Interval::new(utc("2026-03-23 09:00"), utc("2026-03-23 10:00")));
        let svc = service(60);
        let c = clock("2026-03-23 08:00");
        let cal = Calendar::new(&t, &svc, &s, &[], &c, date("2026-03-23"), date("2026-03-23"));
        let v = cal.explain(utc("2026-03-23 07:00"), true);
        let codes: Vec<&str> = v.iter().map(|v| v.rule.code()).collect();
        assert_eq!(codes, ["outside_business_hours", "outside_staff_schedule", "min_notice"]);
        assert_eq!(v[0].message, "Appointment time is outside business hours (08:00 - 18:00)");
        assert_eq!(
            v[1].message,
            "Appointment time is outside the staff member's schedule (09:00 - 12:00, 13:00 - 15:00)"
        );
        let v = cal.explain(utc("2026-03-23 09:30"), true);
        assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [Rule::MinNotice, Rule::Conflict]);
        assert!(cal.explain(utc("2026-03-23 10:30"), true).is_empty());
    }

    #[test]
    fn time_off_reasons_and_holiday_names_only_for_the_tenants_people() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        s.time_off.push(TimeOff {
            period: Interval::new(utc("2026-03-23 09:00"), utc("2026-03-23 12:00")),
            reason: Some("medical: surgery".into()),
        });
        let holidays =
            [Holiday { name: "Staff party".into(), date: HolidayDate::Once(date("2026-03-24")), staff: None }];
        let svc = service(60);
        let c = clock("2026-03-01 00:00");
        let cal = Calendar::new(&t, &svc, &s, &holidays, &c, date("2026-03-23"), date("2026-03-24"));
        let messages = |at: &str, private: bool| -> Vec<String> {
            cal.explain(utc(at), private).into_iter().map(|v| v.message).collect()
        };
        assert_eq!(messages("2026-03-23 10:00", true), ["The staff member is on time off (medical: surgery)"]);
        assert_eq!(messages("2026-03-23 10:00", false), [UNAVAILABLE]);
        assert!(messages("2026-03-24 10:00", true).iter().any(|m| m.contains("Staff party")));
        assert!(!messages("2026-03-24 10:00", false).iter().any(|m| m.contains("Staff party")));
        let codes: Vec<&str> = cal.explain(utc("2026-03-23 10:00"), false).iter().map(|v| v.rule.code()).collect();
        assert_eq!(codes, ["time_off"], "the rule's code stays: only the reason is private");
    }

    #[test]
    fn service_not_offered_yields_no_slots() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        s.offers_service = false;
        assert!(run(&t, &service(60), &s, &[], &clock("2026-03-01 00:00"), "2026-03-23").is_empty());
    }

    #[test]
    fn results_are_ordered_by_start_then_staff() {
        let t = tenant(Zone::fixed(0));
        let a = Staff { id: Uuid::from_u128(9), ..monday_staff() };
        let b = Staff { id: Uuid::from_u128(3), ..monday_staff() };
        let c = clock("2026-03-01 00:00");
        let slots = available_slots(
            &t,
            &service(60),
            &[a, b],
            &[],
            &[c, c],
            &Shared::default(),
            date("2026-03-23"),
            date("2026-03-23"),
        );
        assert_eq!(slots.len(), 16);
        assert!(slots.windows(2).all(|w| (w[0].start, w[0].staff) < (w[1].start, w[1].staff)));
        assert_eq!(slots[0].staff, Uuid::from_u128(3));
    }

    #[test]
    fn each_staff_member_has_their_own_notice_and_advance() {
        let t = tenant(Zone::fixed(0));
        let a = Staff { id: Uuid::from_u128(1), ..monday_staff() };
        let b = Staff { id: Uuid::from_u128(2), ..monday_staff() };
        // Now is Monday 08:00: a needs the default 2 hours' notice, b a whole day.
        let quick = clock("2026-03-23 08:00");
        let slow = Clock { min_notice: 24 * MICROS_PER_HOUR, ..quick };
        let slots = available_slots(
            &t,
            &service(60),
            &[a, b],
            &[],
            &[quick, slow],
            &Shared::default(),
            date("2026-03-23"),
            date("2026-03-23"),
        );
        assert!(slots.iter().all(|s| s.staff == Uuid::from_u128(1)), "b has nothing that day");
        assert_eq!(slots.first().map(|s| s.start), Some(utc("2026-03-23 10:00")));
    }

    /// The store's plan keeps taken and too-soon slots (their rules apply elsewhere), and its
    /// free slots that pass the clock rules are exactly `slots`.
    #[test]
    fn plan_keeps_taken_and_clock_refused_slots_and_agrees_with_slots() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        s.blocked = vec![Interval::new(utc("2026-03-23 10:00"), utc("2026-03-23 11:00"))];
        let svc = service(60);
        // Now is 08:30: the 09:00 and 09:30 slots are within the 2 hours' notice.
        let c = clock("2026-03-23 08:30");
        let day = date("2026-03-23");
        let cal = Calendar::new(&t, &svc, &s, &[], &c, day, day);
        let plan = cal.plan(day, day);
        let all: Vec<String> = starts(
            &plan.slots.iter().map(|c| Slot { start: c.start, staff: s.id, end: c.end }).collect::<Vec<_>>(),
            &s.zone,
        );
        assert_eq!(all.len(), 8, "{all:?}");
        let taken: Vec<bool> = plan.slots.iter().map(|c| c.free).collect();
        assert_eq!(taken, [true, false, false, false, true, true, true, true]);
        let mut slots = Vec::new();
        cal.slots(day, day, &mut slots);
        let from_plan: Vec<Micros> =
            plan.slots.iter().filter(|c| c.free && c.start >= utc("2026-03-23 10:30")).map(|c| c.start).collect();
        assert_eq!(slots.iter().map(|s| s.start).collect::<Vec<_>>(), from_plan);
        assert_eq!(plan.windows.len(), 2);
        assert_eq!(plan.blocked, s.blocked);
    }
    /// A staff member's own length of the service: their slots end later, and a later start no
    /// longer fits before the end of their window.
    #[test]
    fn a_staff_members_own_length_shapes_their_slots() {
        let t = tenant(Zone::fixed(0));
        let mut s = monday_staff();
        s.duration = Some(90 * MICROS_PER_MINUTE);
        let c = clock("2026-03-01 00:00");
        let slots = available_slots(
            &t,
            &service(60),
            std::slice::from_ref(&s),
            &[],
            std::slice::from_ref(&c),
            &Shared::default(),
            date("2026-03-23"),
            date("2026-03-23"),
        );
        assert_eq!(
            starts(&slots, &s.zone),
            ["03-23 09:00", "03-23 09:30", "03-23 10:00", "03-23 10:30", "03-23 13:00", "03-23 13:30"]
        );
        assert_eq!(slots[0].end - slots[0].start, 90 * MICROS_PER_MINUTE);
    }

    /// The one colour chair taken 10:00-11:00 (by anyone's booking) takes those starts from
    /// every staff member; the store keeps them as taken, not as outside the schedule.
    #[test]
    fn a_taken_resource_takes_the_slot_and_the_plan_keeps_it_as_taken() {
        use crate::availability::resources::{Pool, Requirement, Resource};
        let t = tenant(Zone::fixed(0));
        let s = monday_staff();
        let chair = Resource {
            id: Uuid::from_u128(50),
            name: "Chair".into(),
            position: 0,
            hours: None,
            closures: vec![],
            blocked: vec![Interval::new(utc("2026-03-23 10:00"), utc("2026-03-23 11:00"))],
        };
        let req =
            Requirement { id: Uuid::from_u128(60), label: "colour chair".into(), members: vec![chair.id], quantity: 1 };
        let day = date("2026-03-23");
        let shared = Shared { pool: Pool::new(&t.zone, &[req], &[chair], &[], day, day), caps: None };
        let c = clock("2026-03-01 00:00");
        let got = available_slots(
            &t,
            &service(60),
            std::slice::from_ref(&s),
            &[],
            std::slice::from_ref(&c),
            &shared,
            day,
            day,
        );
        assert_eq!(starts(&got, &s.zone), ["03-23 09:00", "03-23 11:00", "03-23 13:00", "03-23 13:30", "03-23 14:00"]);
        let svc = service(60);
        let cal = Calendar::new(&t, &svc, &s, &[], &c, day, day).with_shared(&shared);
        let v = cal.explain(utc("2026-03-23 10:00"), false);
        assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [Rule::ResourceUnavailable]);
        assert_eq!(v[0].message, "The resources this service needs are not free at this time (colour chair)");
        let plan = cal.plan(day, day);
        assert_eq!(plan.slots.len(), 8);
        assert_eq!(plan.slots.iter().filter(|c| !c.free).count(), 3, "09:30, 10:00 and 10:30 are taken");
        assert_eq!(cal.resources_at(utc("2026-03-23 09:00")), Ok(vec![(Uuid::from_u128(60), Uuid::from_u128(50))]));
    }

    /// A full cap takes the whole day, with its reason.
    #[test]
    fn a_full_cap_takes_the_day() {
        use crate::availability::caps::{Cap, Caps, Counted, Period, Scope};
        let t = tenant(Zone::fixed(0));
        let s = monday_staff();
        let svc_id = Uuid::from_u128(7);
        let cap =
            Cap { id: Uuid::from_u128(90), scope: Scope::Staff(None), service: None, period: Period::Day, max: 1 };
        let booked = Counted { staff: s.id, service: svc_id, customer: None, start: utc("2026-03-23 16:00") };
        let shared = Shared {
            pool: Default::default(),
            caps: Some(Caps::new(t.zone.clone(), svc_id, None, vec![cap], &[booked])),
        };
        let c = clock("2026-03-01 00:00");
        let day = date("2026-03-23");
        let got = available_slots(
            &t,
            &service(60),
            std::slice::from_ref(&s),
            &[],
            std::slice::from_ref(&c),
            &shared,
            day,
            day,
        );
        assert!(got.is_empty());
        let svc = service(60);
        let cal = Calendar::new(&t, &svc, &s, &[], &c, day, day).with_shared(&shared);
        assert_eq!(
            cal.explain(utc("2026-03-23 09:00"), false)[0].message,
            "The staff member's limit of 1 booking a day is reached"
        );
        assert_eq!(cal.cap_keys(utc("2026-03-23 09:00")), vec![(Uuid::from_u128(90), s.id, day)]);
    }
}
