//! What bookings, moves and holds ask of the engine (sql/resources.sql, sql/booking.sql): for
//! one start time, whether it can be booked and with whom and what: the staff member named, or
//! every free one in the order of the tenant's "any staff" strategy, each with the resources it
//! would take and the caps it counts against. And the "any staff" slots: one per start time,
//! with how many staff members are free.

use chrono::{Days, NaiveDate};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid as PgUuid};
use serde_json::{json, Value};
use uuid::Uuid;

use super::api::{caller_sees_private, check_range};
use super::engine::{available_slots, Calendar, Rule};
use super::model::{from_micros, load_model, to_micros, Model, Query};
use super::strategy::{any_staff_slots, rank, Free};
use super::zone::Micros;
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{require, to_naive_date, to_uuid};

fn iso(t: Micros) -> DomainResult<String> {
    chrono::DateTime::from_timestamp_micros(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .ok_or_else(|| DomainError::DatetimeOverflow(format!("instant {t} µs is out of range")))
}

fn calendar<'a>(m: &'a Model, i: usize, first: NaiveDate, last: NaiveDate) -> Calendar<'a> {
    Calendar::new(&m.tenant, &m.service, &m.staff[i], &m.holidays, &m.clocks[i], first, last).with_shared(&m.shared)
}

/// `{"code", "message"}` of each rule in `rules` that staff member `i` breaks at `start`; the
/// private reasons (time off, holiday names) only for the tenant's own people.
fn explained(
    m: &Model,
    i: usize,
    first: NaiveDate,
    last: NaiveDate,
    start: Micros,
    rules: &[Rule],
) -> DomainResult<Vec<Value>> {
    let cal = calendar(m, i, first, last);
    let mut v = cal.explain(start, false);
    if v.iter().any(|v| matches!(v.rule, Rule::Holiday | Rule::TimeOff)) && caller_sees_private(m.tenant_id)? {
        v = cal.explain(start, true);
    }
    Ok(v.into_iter()
        .filter(|v| rules.contains(&v.rule))
        .map(|v| json!({"code": v.rule.code(), "message": v.message}))
        .collect())
}

/// The plan of one booking: see `tenant_booking_plan`.
#[allow(clippy::too_many_arguments)]
fn plan(
    tenant: Uuid,
    service: Uuid,
    staff: Option<Uuid>,
    start: Micros,
    end: Option<Micros>,
    customer: Option<Uuid>,
    exclude_appointment: Option<Uuid>,
    exclude_hold: Option<Uuid>,
    resources_only: bool,
) -> DomainResult<Value> {
    let duration = match end {
        Some(e) if e <= start => {
            return Err(DomainError::InvalidParameter("p_ends_at must be after p_starts_at".into()))
        }
        e => e.map(|e| e - start),
    };
    let day = chrono::DateTime::from_timestamp_micros(start)
        .ok_or_else(|| DomainError::DatetimeOverflow("p_starts_at is out of range".into()))?
        .date_naive();
    let (first, last) = (day - Days::new(1), day + Days::new(1));
    let m = load_model(&Query {
        tenant_id: Some(tenant),
        service_id: service,
        staff_id: staff,
        from: first,
        to: last,
        exclude_appointment,
        include_non_offering: staff.is_some(),
        duration,
        exclude_hold,
        customer,
        any_staff: staff.is_none(),
    })?;
    let all: Vec<Rule> = Rule::ALL.to_vec();
    // The staff members who may take it, in the order they would.
    let (order, violations): (Vec<usize>, Vec<Value>) = if staff.is_some() {
        let rules = if resources_only { vec![Rule::ResourceUnavailable] } else { all };
        let v = explained(&m, 0, first, last, start, &rules)?;
        (if v.is_empty() { vec![0] } else { vec![] }, v)
    } else {
        let broken: Vec<Vec<Rule>> =
            (0..m.staff.len()).map(|i| calendar(&m, i, first, last).violations(start)).collect();
        let free: Vec<Free> = (0..m.staff.len())
            .filter(|&i| broken[i].is_empty())
            .map(|i| Free { id: m.staff[i].id, zone: &m.staff[i].zone, terms: m.terms[i] })
            .collect();
        let ranked = rank(m.strategy, &free, &m.busy, service, start, &m.tenant.zone);
        let order: Vec<usize> =
            ranked.into_iter().filter_map(|k| m.staff.iter().position(|s| s.id == free[k].id)).collect();
        let violations = if !order.is_empty() {
            Vec::new()
        } else if m.staff.is_empty() {
            vec![json!({"code": Rule::ServiceNotOffered.code(), "message": "No staff member offers this service"})]
        } else {
            // What every staff member breaks (outside business hours, a holiday, the notice, a
            // customer's cap), else that nobody who takes "any staff" bookings is free.
            let common: Vec<Rule> = all.iter().copied().filter(|r| broken.iter().all(|b| b.contains(r))).collect();
            let mut v = explained(&m, 0, first, last, start, &common)?;
            if v.is_empty() {
                v.push(json!({"code": "no_staff_free", "message": "No staff member is free for this service at this time"}));
            }
            v
        };
        (order, violations)
    };
    let mut locks: Vec<(Uuid, Uuid, NaiveDate)> = Vec::new();
    let mut candidates = Vec::with_capacity(order.len());
    for &i in &order {
        let cal = calendar(&m, i, first, last);
        let resources = cal.resources_at(start).map_err(|label| {
            DomainError::Internal(format!("{label}: the engine offered a start whose resources it cannot assign"))
        })?;
        locks.extend(cal.cap_keys(start));
        let blocked = cal.blocked_range(start);
        candidates.push(json!({
            "staff_id": m.staff[i].id,
            "ends_at": iso(start + cal.duration())?,
            "blocked": format!("[{},{})", iso(blocked.start)?, iso(blocked.end)?),
            "resources": resources.iter().map(|(q, r)| json!({"requirement_id": q, "resource_id": r})).collect::<Vec<_>>(),
        }));
    }
    locks.sort_unstable();
    locks.dedup();
    Ok(json!({
        "valid": violations.is_empty(),
        "violations": violations,
        "strategy": staff.is_none().then_some(m.strategy.name()),
        "free_staff": candidates.len(),
        "candidates": candidates,
        "locks": locks.iter().map(|(c, s, d)| json!([c, s, d.to_string()])).collect::<Vec<_>>(),
    }))
}

/// Whether a booking of `p_service_id` at `p_starts_at` (until `p_ends_at`, default: the staff
/// member's length of the service) can be made, with `p_staff_id` or (NULL) any staff member,
/// for `p_customer_id` (their caps; NULL: none), leaving out an appointment being moved and a
/// hold being turned into the booking:
/// `{"valid", "violations": [{"code", "message"}], "strategy" (any staff), "free_staff",
/// "candidates": [{"staff_id", "ends_at", "blocked", "resources": [{"requirement_id",
/// "resource_id"}]}],
/// "locks": [[cap_id, subject_id, period_start]]}`: the candidates in the order the booking
/// tries them (the strategy's), each with the resources it would take; the locks of every cap a
/// candidate counts against, sorted (the booking locks them before it counts).
/// `p_resources_only` (a staff member named): only whether the resources can be assigned, the
/// other rules aside (an existing appointment given its resources). Internal: the booking and
/// hold functions call it after their own caller checks.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
#[allow(clippy::too_many_arguments)]
pub fn tenant_booking_plan(
    p_tenant_id: Option<PgUuid>,
    p_service_id: Option<PgUuid>,
    p_staff_id: Option<PgUuid>,
    p_starts_at: Option<TimestampWithTimeZone>,
    p_ends_at: Option<TimestampWithTimeZone>,
    p_customer_id: Option<PgUuid>,
    p_exclude_appointment_id: Option<PgUuid>,
    p_exclude_hold_id: Option<PgUuid>,
    p_resources_only: default!(Option<bool>, "false"),
) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
    Ok(JsonB(plan(
        to_uuid(require(p_tenant_id, "p_tenant_id")?),
        to_uuid(require(p_service_id, "p_service_id")?),
        p_staff_id.map(to_uuid),
        to_micros(require(p_starts_at, "p_starts_at")?)?,
        p_ends_at.map(to_micros).transpose()?,
        p_customer_id.map(to_uuid),
        p_exclude_appointment_id.map(to_uuid),
        p_exclude_hold_id.map(to_uuid),
        p_resources_only.unwrap_or(false) && p_staff_id.is_some(),
    )?))
}

type AnyStaffArrays = (Vec<TimestampWithTimeZone>, Vec<TimestampWithTimeZone>, Vec<i32>);

/// The "any staff" slots of a service between two local dates (inclusive; each staff member's
/// dates, as `get_available_slots`): one per start time at which a staff member who takes "any
/// staff" bookings is free, with the end with the one the tenant's strategy would choose as of
/// now and how many are free, as three parallel arrays. `p_customer_id`: their caps apply too.
/// `p_tenant_id` NULL: the service's tenant. Internal: the SQL functions check the caller first.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
#[allow(clippy::type_complexity)]
pub fn any_staff_slot_arrays(
    p_tenant_id: Option<PgUuid>,
    p_service_id: Option<PgUuid>,
    p_from: Option<Date>,
    p_to: Option<Date>,
    p_customer_id: Option<PgUuid>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(starts, Vec<TimestampWithTimeZone>),
            name!(ends, Vec<TimestampWithTimeZone>),
            name!(staff_free, Vec<i32>),
        ),
    >,
    pgrx::pg_sys::panic::ErrorReport,
> {
    let from = to_naive_date(require(p_from, "p_from")?, "p_from")?;
    let to = to_naive_date(require(p_to, "p_to")?, "p_to")?;
    check_range(from, to)?;
    let service = to_uuid(require(p_service_id, "p_service_id")?);
    let mut q = Query::slots(p_tenant_id.map(to_uuid), service, None, from, to);
    q.customer = p_customer_id.map(to_uuid);
    q.any_staff = true;
    let m = load_model(&q)?;
    let slots = available_slots(&m.tenant, &m.service, &m.staff, &m.holidays, &m.clocks, &m.shared, from, to);
    let staff: Vec<Free> =
        m.staff.iter().zip(&m.terms).map(|(s, t)| Free { id: s.id, zone: &s.zone, terms: *t }).collect();
    let any = any_staff_slots(m.strategy, &slots, &staff, &m.busy, service, &m.tenant.zone);
    let arrays: AnyStaffArrays = (
        any.iter().map(|a| from_micros(a.start)).collect::<DomainResult<_>>()?,
        any.iter().map(|a| from_micros(a.end)).collect::<DomainResult<_>>()?,
        any.iter().map(|a| a.free as i32).collect(),
    );
    Ok(TableIterator::once(arrays))
}
