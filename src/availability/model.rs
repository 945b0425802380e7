//! What availability reads for one question, and the engine's model built from it: every input
//! in one prepared query (sql/queries/availability_inputs.sql), the time zones from Postgres's
//! own tz data, and the checked conversions between Postgres's instants and the engine's.
//! Used by the SQL functions (`api`) and, through `facade`, by the other features.

use std::collections::HashMap;
use std::ffi::CString;

use chrono::{Days, NaiveDate};
use pgrx::prelude::*;
use pgrx::Uuid as PgUuid;
use serde::Deserialize;
use uuid::Uuid;

use super::caps::{Cap, Caps, Counted, Period, Scope};
use super::engine::{
    Clock, DayHours, DayOverride, Holiday, HolidayDate, Service, Shared, Staff, Tenant, TimeOff, WeeklyWindow,
};
use super::intervals::Interval;
use super::opening_hours;
use super::resources::{Pool, Requirement, Resource};
use super::strategy::{Busy, Strategy, Terms};
use super::zone::{Micros, Zone, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND};
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{self, to_pg_date, to_pg_uuid, to_uuid};

/// Microseconds since the Unix epoch (UTC) of 0001-01-01 and of 10000-01-01: the engine works
/// on years 1..9999 only, so none of its sums of instants and durations can overflow.
const MIN_MICROS: Micros = -62_135_596_800 * MICROS_PER_SECOND;
const MAX_MICROS: Micros = 253_402_300_800 * MICROS_PER_SECOND;

fn in_engine_range(t: Micros) -> Option<Micros> {
    (MIN_MICROS..MAX_MICROS).contains(&t).then_some(t)
}

/// An instant as the engine reads it: 22008 for an infinite timestamp or one outside years
/// 1..9999.
pub fn to_micros(ts: TimestampWithTimeZone) -> DomainResult<Micros> {
    in_engine_range(convert::to_unix_micros(ts)?)
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("timestamp {ts} is outside the supported years 1..9999")))
}

/// The inverse of `to_micros`, checked the same way.
pub fn from_micros(t: Micros) -> DomainResult<TimestampWithTimeZone> {
    in_engine_range(t)
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("instant {t} µs is outside the supported years 1..9999")))
        .and_then(convert::from_unix_micros)
}

/// The UTC offsets of `name` from `from` to `to`, read from Postgres's own tz data so that every
/// conversion agrees with `AT TIME ZONE`.
pub fn load_zone(name: &str, from: Micros, to: Micros) -> DomainResult<Zone> {
    let unknown = || DomainError::InvalidParameter(format!("time zone \"{name}\" not recognized"));
    let cname = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: pg_tzset takes a NUL-terminated name and returns a cached zone or NULL.
    let tz = unsafe { pg_sys::pg_tzset(cname.as_ptr()) };
    if tz.is_null() {
        return Err(unknown());
    }
    let mut at: pg_sys::pg_time_t = from.div_euclid(MICROS_PER_SECOND);
    let end: pg_sys::pg_time_t = to.div_euclid(MICROS_PER_SECOND);
    let mut zone: Option<Zone> = None;
    loop {
        let (mut before, mut before_dst, mut boundary, mut after, mut after_dst) = (0, 0, 0, 0, 0);
        // SAFETY: all out-pointers are valid locals; tz came from pg_tzset.
        let found = unsafe {
            pg_sys::pg_next_dst_boundary(
                &at,
                &mut before,
                &mut before_dst,
                &mut boundary,
                &mut after,
                &mut after_dst,
                tz,
            )
        };
        let z = zone.get_or_insert_with(|| Zone::fixed(before as i32));
        if found != 1 || boundary > end {
            break;
        }
        z.transitions.push((boundary * MICROS_PER_SECOND, after as i32));
        at = boundary;
    }
    Ok(zone.expect("first iteration sets it"))
}

#[derive(Deserialize)]
struct ServiceRow {
    tenant_id: Uuid,
    duration: i64,
    buffer_before: i64,
    buffer_after: i64,
}

#[derive(Deserialize)]
struct TenantRow {
    timezone: String,
    opening_hours: serde_json::Value,
    buffer: i64,
    interval: i64,
    strategy: String,
}

/// Everything one availability question needs, as read by `INPUTS_SQL`.
#[derive(Deserialize)]
struct Inputs {
    service: Option<ServiceRow>,
    tenant: Option<TenantRow>,
    /// The tenant of the staff member asked for, if one was and exists.
    staff_tenant: Option<Uuid>,
    now: Micros,
    staff: Vec<StaffRow>,
    schedules: Vec<(Uuid, u32, u32, u32, Option<String>)>,
    overrides: Vec<OverrideRow>,
    time_off: Vec<(Uuid, Micros, Micros, Option<String>)>,
    blocked: Vec<(Uuid, Micros, Micros)>,
    holidays: Vec<HolidayRow>,
    /// (id, label, quantity, the active resources that may meet it).
    requirements: Vec<(Uuid, Option<String>, u32, Vec<Uuid>)>,
    resources: Vec<ResourceRow>,
    /// (requirement, resource) the appointment or hold being changed holds.
    held: Vec<(Uuid, Uuid)>,
    caps: Vec<CapRow>,
    /// (staff, service, customer, start) of what counts against the caps.
    counted: Vec<(Uuid, Uuid, Option<Uuid>, Micros)>,
    /// (staff, service, start, end, chosen for "any staff").
    busy: Vec<(Uuid, Uuid, Micros, Micros, bool)>,
}

/// (id, time zone, offers the service, minimum notice hours, advance limit days, own length in
/// minutes, weight, priority): the two policies as they apply to this staff member and service,
/// and their terms for it.
type StaffRow = (Uuid, String, bool, f64, f64, Option<i64>, u32, i32);
/// (staff, date, start second, end second, available), as the inputs query writes it.
type OverrideRow = (Uuid, NaiveDate, Option<u32>, Option<u32>, bool);
/// (name, date, recurring, month, day, affects all staff, affected staff), likewise.
type HolidayRow = (String, Option<NaiveDate>, bool, Option<u32>, Option<u32>, bool, Vec<Uuid>);
/// (id, name, position, weekly hours or NULL, closures, blocked ranges of its assignments).
type ResourceRow = (Uuid, String, i32, Option<serde_json::Value>, Vec<(Micros, Micros)>, Vec<(Micros, Micros)>);
/// (id, scope, staff, service, period, max).
type CapRow = (Uuid, String, Option<Uuid>, Option<Uuid>, String, u32);

/// One read of every input: $1 service, $2 staff member or NULL for all, $3..$4 the local date
/// range, $5 an appointment to leave out (its own slot when rescheduling), $6 whether to keep
/// staff who do not offer the service (validation reports them; slot search skips them), $7 the
/// booking's length in minutes when it is not the service's (0 otherwise), $8 the tenant, $9 a
/// hold to leave out (the one being turned into a booking), $10 the customer (their caps), $11
/// whether to read what the "any staff" strategies weigh.
const INPUTS_SQL: &str = include_str!("../../sql/queries/availability_inputs.sql");

/// The staff lookup that tells "of another tenant" (22023) from "does not exist" (PT404): with
/// the tenant given, a staff member of another tenant does not exist for it.
const STAFF_OF_TENANT: &str = "f.id = $2 AND f.tenant_id = $8";

/// `INPUTS_SQL` for callers that name no tenant (the original, tenant-less functions): the
/// tenant is the service's, looked up first, and a staff member of another tenant is still seen
/// as such (22023 rather than "does not exist").
fn inputs_sql_without_tenant() -> String {
    INPUTS_SQL.replace(STAFF_OF_TENANT, "f.id = $2")
}

thread_local! {
    /// `INPUTS_SQL` prepared once per backend, with and without the staff member's tenant
    /// filter: planning it costs more than running it.
    static INPUTS_PLANS: std::cell::RefCell<[Option<pgrx::spi::OwnedPreparedStatement>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

fn read_inputs(args: &[pgrx::datum::DatumWithOid], tenant_given: bool) -> DomainResult<String> {
    Spi::connect(|client| {
        INPUTS_PLANS.with(|cell| {
            let mut plans = cell.borrow_mut();
            let plan = &mut plans[usize::from(tenant_given)];
            if plan.is_none() {
                let types = [
                    pg_sys::UUIDOID,
                    pg_sys::UUIDOID,
                    pg_sys::DATEOID,
                    pg_sys::DATEOID,
                    pg_sys::UUIDOID,
                    pg_sys::BOOLOID,
                    pg_sys::INT4OID,
                    pg_sys::UUIDOID,
                    pg_sys::UUIDOID,
                    pg_sys::UUIDOID,
                    pg_sys::BOOLOID,
                ]
                .map(pgrx::PgOid::from);
                let sql = if tenant_given { INPUTS_SQL.to_string() } else { inputs_sql_without_tenant() };
                *plan = Some(client.prepare(&sql, &types)?.keep());
            }
            let stmt = plan.as_ref().expect("prepared above");
            client
                .select(stmt, Some(1), args)?
                .first()
                .get_one::<String>()?
                .ok_or_else(|| DomainError::Internal("availability inputs query returned NULL".into()))
        })
    })
}

/// The tenant of a service, for the tenant-less functions (on Citus, a lookup on every shard).
fn service_tenant(service_id: Uuid) -> DomainResult<Uuid> {
    // A scalar subquery: one row, NULL for an unknown service (get_one fails on no row at all).
    Spi::get_one_with_args::<PgUuid>(
        "SELECT (SELECT tenant_id FROM booking.services WHERE id = $1)",
        &[to_pg_uuid(service_id).into()],
    )?
    .map(to_uuid)
    .ok_or_else(|| DomainError::NotFound(format!("service {service_id} does not exist")))
}

/// The core's view of one question, built from `Inputs`.
pub struct Model {
    pub tenant_id: Uuid,
    pub tenant: Tenant,
    pub service: Service,
    pub staff: Vec<Staff>,
    pub holidays: Vec<Holiday>,
    /// `clocks[i]` is `staff[i]`'s notice and advance rules (staff > service > tenant > global).
    pub clocks: Vec<Clock>,
    /// The service's resources and the tenant's caps, which every staff member's slots meet too.
    pub shared: Shared,
    /// `terms[i]`: `staff[i]`'s priority and weight for "any staff" bookings of the service.
    pub terms: Vec<Terms>,
    /// The tenant's "any staff" strategy, and what it weighs (read when the query asks).
    pub strategy: Strategy,
    pub busy: Vec<Busy>,
}

pub struct Query {
    /// The tenant, when the caller names it (the tenant-qualified functions, which Citus routes
    /// to one shard); otherwise the service's.
    pub tenant_id: Option<Uuid>,
    pub service_id: Uuid,
    pub staff_id: Option<Uuid>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub exclude_appointment: Option<Uuid>,
    pub include_non_offering: bool,
    /// A booking length other than the service's, for validation of an explicit end.
    pub duration: Option<Micros>,
    /// A hold to leave out: the one being turned into a booking.
    pub exclude_hold: Option<Uuid>,
    /// The customer booking, whose own caps then apply.
    pub customer: Option<Uuid>,
    /// Whether to read what the "any staff" strategies weigh.
    pub any_staff: bool,
}

impl Query {
    /// The slots of one service on local dates `from..=to`, of one staff member or all, as anyone
    /// asks for them: no customer, nothing left out.
    pub fn slots(
        tenant_id: Option<Uuid>,
        service_id: Uuid,
        staff_id: Option<Uuid>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Query {
        Query {
            tenant_id,
            service_id,
            staff_id,
            from,
            to,
            exclude_appointment: None,
            include_non_offering: false,
            duration: None,
            exclude_hold: None,
            customer: None,
            any_staff: false,
        }
    }
}

pub fn load_model(q: &Query) -> DomainResult<Model> {
    let args: [pgrx::datum::DatumWithOid; 11] = [
        to_pg_uuid(q.service_id).into(),
        q.staff_id.map(to_pg_uuid).into(),
        to_pg_date(q.from)?.into(),
        to_pg_date(q.to)?.into(),
        q.exclude_appointment.map(to_pg_uuid).into(),
        q.include_non_offering.into(),
        q.duration
            .unwrap_or(0)
            .checked_add(MICROS_PER_MINUTE - 1)
            .and_then(|d| i32::try_from(d / MICROS_PER_MINUTE).ok())
            .ok_or_else(|| DomainError::DatetimeOverflow("the booking is too long".into()))?
            .into(),
        to_pg_uuid(match q.tenant_id {
            Some(t) => t,
            None => service_tenant(q.service_id)?,
        })
        .into(),
        q.exclude_hold.map(to_pg_uuid).into(),
        q.customer.map(to_pg_uuid).into(),
        q.any_staff.into(),
    ];
    let text = read_inputs(&args, q.tenant_id.is_some())?;
    let inputs: Inputs = serde_json::from_str(&text)?;
    let service =
        inputs.service.ok_or_else(|| DomainError::NotFound(format!("service {} does not exist", q.service_id)))?;
    if let Some(staff_id) = q.staff_id {
        match inputs.staff_tenant {
            None => return Err(DomainError::NotFound(format!("staff member {staff_id} does not exist"))),
            Some(t) if t != service.tenant_id => {
                return Err(DomainError::InvalidParameter(format!(
                    "staff member {staff_id} does not belong to the tenant of service {}",
                    q.service_id
                )))
            }
            Some(_) => {}
        }
    }
    let tenant_id = service.tenant_id;
    let tenant_row = inputs.tenant.ok_or_else(|| {
        DomainError::Internal(format!("tenant {} of service {} is missing", service.tenant_id, q.service_id))
    })?;

    let span_from = crate::availability::zone::date_micros(q.from - Days::new(4));
    let span_to = crate::availability::zone::date_micros(q.to + Days::new(5));
    let mut zones: HashMap<String, Zone> = HashMap::new();
    let mut zone = |name: &str| -> DomainResult<Zone> {
        if let Some(z) = zones.get(name) {
            return Ok(z.clone());
        }
        let z = load_zone(name, span_from, span_to)?;
        zones.insert(name.to_string(), z.clone());
        Ok(z)
    };

    let opening = opening_hours::parse(&tenant_row.opening_hours).map_err(DomainError::Internal)?;
    let tenant = Tenant {
        zone: zone(&tenant_row.timezone)?,
        opening,
        slot_interval: tenant_row.interval * MICROS_PER_MINUTE,
        turnover: tenant_row.buffer * MICROS_PER_MINUTE,
    };

    let mut staff: Vec<Staff> = Vec::with_capacity(inputs.staff.len());
    let mut clocks: Vec<Clock> = Vec::with_capacity(inputs.staff.len());
    let mut terms: Vec<Terms> = Vec::with_capacity(inputs.staff.len());
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (id, tz, offers, notice_hours, advance_days, minutes, weight, priority) in inputs.staff {
        index.insert(id, staff.len());
        clocks.push(Clock {
            now: inputs.now,
            min_notice: (notice_hours * MICROS_PER_HOUR as f64) as Micros,
            max_advance: (advance_days * MICROS_PER_DAY as f64) as Micros,
        });
        terms.push(Terms { priority, weight });
        staff.push(Staff {
            id,
            zone: zone(&tz)?,
            offers_service: offers,
            weekly: Vec::new(),
            overrides: Vec::new(),
            time_off: Vec::new(),
            blocked: Vec::new(),
            // An explicit length (a booking with its own end) is the same for everyone.
            duration: minutes.filter(|_| q.duration.is_none()).map(|m| m * MICROS_PER_MINUTE),
        });
    }
    for (sid, dow, start, end, tz) in inputs.schedules {
        let Some(&i) = index.get(&sid) else { continue };
        let z = match tz {
            Some(name) => zone(&name)?,
            None => staff[i].zone.clone(),
        };
        staff[i].weekly.push(WeeklyWindow { dow, hours: DayHours { start, end }, zone: z });
    }
    for (sid, date, start, end, available) in inputs.overrides {
        let Some(&i) = index.get(&sid) else { continue };
        let hours = start.zip(end).map(|(start, end)| DayHours { start, end });
        staff[i].overrides.push(DayOverride { date, hours, available });
    }
    for (sid, lo, hi, reason) in inputs.time_off {
        let Some(&i) = index.get(&sid) else { continue };
        staff[i].time_off.push(TimeOff { period: Interval::new(lo, hi), reason });
    }
    for (sid, lo, hi) in inputs.blocked {
        let Some(&i) = index.get(&sid) else { continue };
        staff[i].blocked.push(Interval::new(lo, hi));
    }
    let holidays = inputs
        .holidays
        .into_iter()
        .filter_map(|(name, date, recurring, month, day, all, ids)| {
            let date = match (recurring, date, month, day) {
                (true, _, Some(month), Some(day)) => HolidayDate::Yearly { month, day },
                (false, Some(d), _, _) => HolidayDate::Once(d),
                _ => return None,
            };
            Some(Holiday { name, date, staff: (!all).then_some(ids) })
        })
        .collect();

    let requirements: Vec<Requirement> = inputs
        .requirements
        .into_iter()
        .map(|(id, label, quantity, members)| Requirement {
            id,
            label: label.unwrap_or_else(|| "resource".to_string()),
            members,
            quantity,
        })
        .collect();
    let resources: Vec<Resource> = inputs
        .resources
        .into_iter()
        .map(|(id, name, position, hours, closures, blocked)| {
            let hours = hours.map(|h| opening_hours::parse(&h)).transpose().map_err(DomainError::Internal)?;
            let iv = |list: Vec<(Micros, Micros)>| list.into_iter().map(|(a, b)| Interval::new(a, b)).collect();
            Ok(Resource { id, name, position, hours, closures: iv(closures), blocked: iv(blocked) })
        })
        .collect::<DomainResult<_>>()?;
    let pool = Pool::new(&tenant.zone, &requirements, &resources, &inputs.held, q.from, q.to);
    let caps: Vec<Cap> = inputs
        .caps
        .into_iter()
        .map(|(id, scope, staff, service, period, max)| Cap {
            id,
            scope: match scope.as_str() {
                "staff" => Scope::Staff(staff),
                "service" => Scope::Service,
                _ => Scope::Customer,
            },
            service,
            period: if period == "week" { Period::Week } else { Period::Day },
            max,
        })
        .collect();
    let counted: Vec<Counted> = inputs
        .counted
        .into_iter()
        .map(|(staff, service, customer, start)| Counted { staff, service, customer, start })
        .collect();
    let caps = (!caps.is_empty())
        .then(|| Caps::new(tenant.zone.clone(), q.service_id, q.customer, caps, &counted))
        .filter(|c| !c.is_empty());
    let busy = inputs
        .busy
        .into_iter()
        .map(|(staff, service, start, end, any_staff)| Busy { staff, service, start, end, any_staff })
        .collect();
    let strategy = Strategy::parse(&tenant_row.strategy)
        .ok_or_else(|| DomainError::Internal(format!("unknown staff strategy {}", tenant_row.strategy)))?;

    let service = Service {
        duration: q.duration.unwrap_or(service.duration * MICROS_PER_MINUTE),
        buffer_before: service.buffer_before * MICROS_PER_MINUTE,
        buffer_after: service.buffer_after * MICROS_PER_MINUTE,
    };
    Ok(Model {
        tenant_id,
        tenant,
        service,
        staff,
        holidays,
        clocks,
        shared: Shared { pool, caps },
        terms,
        strategy,
        busy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::convert::PG_EPOCH_OFFSET;

    #[test]
    fn instants_outside_years_1_to_9999_are_refused_not_wrapped() {
        assert_eq!(in_engine_range(0), Some(0));
        assert_eq!(in_engine_range(MIN_MICROS), Some(MIN_MICROS));
        assert_eq!(in_engine_range(MIN_MICROS - 1), None);
        assert_eq!(in_engine_range(MAX_MICROS), None);
        // Postgres's last instant (294276-12-31 23:59:59 UTC) overflowed the old unchecked sum.
        assert!(convert::pg_micros_to_unix(9_223_371_331_199_000_000).map_or(true, |t| in_engine_range(t).is_none()));
        assert!(convert::pg_micros_to_unix(i64::MAX).is_err());
        assert_eq!(convert::pg_micros_to_unix(0).ok(), Some(PG_EPOCH_OFFSET));
    }

    /// The tenant-less variant keeps no tenant parameter and its staff lookup across tenants;
    /// the tenant-qualified one filters the staff lookup (a rename in the SQL file would
    /// otherwise silently turn the replacement into a no-op).
    #[test]
    fn inputs_sql_variants() {
        assert_eq!(INPUTS_SQL.matches(STAFF_OF_TENANT).count(), 1);
        let without = inputs_sql_without_tenant();
        assert!(!without.contains(STAFF_OF_TENANT));
        assert!(without.contains("'staff_tenant', (SELECT f.tenant_id FROM booking.staff f WHERE f.id = $2)"));
        // Every table the query reads is filtered by the tenant itself (Citus prunes shards on
        // a table's own distribution column, not through joins).
        for table in [
            "booking.services s WHERE s.tenant_id = $8",
            "ss.tenant_id = $8",
            "f.tenant_id = $8",
            "s.tenant_id = $8 AND s.is_active",
            "o.tenant_id = $8",
            "x.tenant_id = $8",
            "a.tenant_id = $8",
            "h.tenant_id = $8",
        ] {
            assert!(INPUTS_SQL.contains(table), "{table}");
        }
    }
}
