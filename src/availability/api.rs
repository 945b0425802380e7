//! SQL-facing adapters of the availability engine: check arguments, read every input in one
//! query (`model`), hand them to the pure core, return rows or JSON.

use std::ffi::CString;

use chrono::{Days, NaiveDate};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid as PgUuid};
use serde_json::json;
use uuid::Uuid;

use super::engine::{available_slots, Calendar, Rule};
use super::model::{from_micros, load_model, to_micros, Query};
use super::opening_hours;
use super::zone::Micros;
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{require, to_naive_date, to_pg_uuid, to_uuid};
use crate::telemetry::{self, Change, Metric, LATENCY};

/// The latency of the slot functions, by function (the dashboard shows it).
pub static SLOT_QUERIES: Metric = Metric::histogram(
    "booking_slot_query_duration_seconds",
    &["function"],
    LATENCY,
    20,
    "Time to compute available slots, by SQL function; observed at commit.",
);

/// Longest span one call may cover; keeps a single call's work and result bounded.
pub const MAX_RANGE_DAYS: i64 = 366;

pub(super) fn check_range(from: NaiveDate, to: NaiveDate) -> DomainResult<()> {
    if from > to {
        return Err(DomainError::InvalidParameter(format!("from_date {from} is after to_date {to}")));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(DomainError::InvalidParameter(format!(
            "date range of {days} days is longer than the maximum of {MAX_RANGE_DAYS}"
        )));
    }
    Ok(())
}

/// The SECURITY DEFINER side of `booking.get_available_slots` (sql/availability.sql), in the
/// schema no API exposes; `booking.available_slot_arrays` is its entry point (sql/api.sql).
#[pgrx::pg_schema]
pub mod booking_internal {
    use pgrx::prelude::*;
    use pgrx::Uuid as PgUuid;

    /// Bookable slots for a service between two local dates (inclusive), for one staff member
    /// or all who offer it, ordered by start then staff id, as three parallel arrays in one row.
    /// `booking.get_available_slots` unnests them: arrays leave the function several times
    /// faster than rows returned one call at a time. SECURITY DEFINER so that a booking page can
    /// show availability without reading other customers' appointments.
    #[pg_extern(stable, security_definer, parallel_restricted)]
    #[search_path(pg_catalog, @extschema@, pg_temp)]
    // pgrx reads the result columns' names from this signature, so it cannot be an alias.
    #[allow(clippy::type_complexity)]
    pub fn available_slot_arrays(
        service_id: Option<PgUuid>,
        from_date: Option<Date>,
        to_date: Option<Date>,
        staff_id: default!(Option<PgUuid>, "NULL"),
    ) -> Result<
        TableIterator<
            'static,
            (
                name!(staff_ids, Vec<PgUuid>),
                name!(starts, Vec<TimestampWithTimeZone>),
                name!(ends, Vec<TimestampWithTimeZone>),
            ),
        >,
        pgrx::pg_sys::panic::ErrorReport,
    > {
        Ok(TableIterator::once(super::slot_arrays(None, service_id, from_date, to_date, staff_id)?))
    }
}

/// `available_slot_arrays` of one tenant's service: every read filtered by the tenant, so that
/// on Citus it is one router query on the worker holding the tenant. A service of another
/// tenant does not exist here (P0002 from the engine, PT404 from the SQL callers' checks).
#[pg_extern(stable, security_definer, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
#[allow(clippy::type_complexity)]
pub fn tenant_slot_arrays(
    p_tenant_id: Option<PgUuid>,
    service_id: Option<PgUuid>,
    from_date: Option<Date>,
    to_date: Option<Date>,
    staff_id: default!(Option<PgUuid>, "NULL"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(staff_ids, Vec<PgUuid>),
            name!(starts, Vec<TimestampWithTimeZone>),
            name!(ends, Vec<TimestampWithTimeZone>),
        ),
    >,
    pgrx::pg_sys::panic::ErrorReport,
> {
    let tenant = to_uuid(require(p_tenant_id, "p_tenant_id")?);
    Ok(TableIterator::once(slot_arrays(Some(tenant), service_id, from_date, to_date, staff_id)?))
}

type SlotArrays = (Vec<PgUuid>, Vec<TimestampWithTimeZone>, Vec<TimestampWithTimeZone>);

fn slot_arrays(
    tenant_id: Option<Uuid>,
    service_id: Option<PgUuid>,
    from_date: Option<Date>,
    to_date: Option<Date>,
    staff_id: Option<PgUuid>,
) -> DomainResult<SlotArrays> {
    // Recorded at commit through src/telemetry: the slot query latency of the dashboard and /metrics.
    let started = std::time::Instant::now();
    let function = if tenant_id.is_some() { "tenant_slots" } else { "available_slots" };
    let service_id = to_uuid(require(service_id, "service_id")?);
    let from = to_naive_date(require(from_date, "from_date")?, "from_date")?;
    let to = to_naive_date(require(to_date, "to_date")?, "to_date")?;
    check_range(from, to)?;
    let model = load_model(&Query::slots(tenant_id, service_id, staff_id.map(to_uuid), from, to))?;
    let slots = available_slots(
        &model.tenant,
        &model.service,
        &model.staff,
        &model.holidays,
        &model.clocks,
        &model.shared,
        from,
        to,
    );
    let staff_ids = slots.iter().map(|s| to_pg_uuid(s.staff)).collect();
    let starts = slots.iter().map(|s| from_micros(s.start)).collect::<DomainResult<_>>()?;
    let ends = slots.iter().map(|s| from_micros(s.end)).collect::<DomainResult<_>>()?;
    telemetry::at_commit(&SLOT_QUERIES, &[function], Change::Observe(started.elapsed().as_secs_f64()));
    Ok((staff_ids, starts, ends))
}

/// Whether the caller is one of the tenant's own people (an operator or its active staff), who
/// may read why a staff member is away.
pub(super) fn caller_sees_private(tenant_id: Uuid) -> DomainResult<bool> {
    Ok(Spi::get_one_with_args::<bool>("SELECT booking.caller_is_insider($1)", &[to_pg_uuid(tenant_id).into()])?
        .unwrap_or(false))
}

/// Checks every availability rule for one proposed booking and says which ones fail.
/// `duration` overrides the service's (a booking with an explicit end); `exclude_appointment`
/// leaves that appointment out (its own old slot when rescheduling).
pub fn explain_timing(
    tenant_id: Option<Uuid>,
    staff_id: Uuid,
    service_id: Uuid,
    starts_at: Micros,
    duration: Option<Micros>,
    exclude_appointment: Option<Uuid>,
) -> DomainResult<serde_json::Value> {
    let day = chrono::DateTime::from_timestamp_micros(starts_at)
        .ok_or_else(|| DomainError::DatetimeOverflow("starts_at is out of range".into()))?
        .date_naive();
    let (first, last) = (day - Days::new(1), day + Days::new(1));
    let model = load_model(&Query {
        tenant_id,
        service_id,
        staff_id: Some(staff_id),
        from: first,
        to: last,
        exclude_appointment,
        include_non_offering: true,
        duration,
        exclude_hold: None,
        customer: None,
        any_staff: false,
    })?;
    let cal =
        Calendar::new(&model.tenant, &model.service, &model.staff[0], &model.holidays, &model.clocks[0], first, last)
            .with_shared(&model.shared);
    // Who is asking matters only when a staff member is away: most checks skip the query.
    let mut explained = cal.explain(starts_at, false);
    if explained.iter().any(|v| matches!(v.rule, Rule::Holiday | Rule::TimeOff))
        && caller_sees_private(model.tenant_id)?
    {
        explained = cal.explain(starts_at, true);
    }
    let violations: Vec<serde_json::Value> =
        explained.into_iter().map(|v| json!({"code": v.rule.code(), "message": v.message})).collect();
    Ok(json!({"valid": violations.is_empty(), "violations": violations}))
}

/// `{"valid": bool, "violations": [{"code", "message"}]}` for booking `service_id` with
/// `staff_id` from `p_starts_at` to `p_ends_at` (default: start + the service's duration),
/// leaving `p_exclude_appointment_id` out of the conflict check. Internal: applications call
/// `booking.validate_appointment_timing` / `booking.rpc_validate_appointment_slot` (sql/
/// availability.sql), which first answer PT404 for what the caller may not see; Rust cannot
/// raise that SQLSTATE.
#[pg_extern(stable, security_definer, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
pub fn slot_violations(
    p_staff_id: Option<PgUuid>,
    p_service_id: Option<PgUuid>,
    p_starts_at: Option<TimestampWithTimeZone>,
    p_ends_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    p_exclude_appointment_id: default!(Option<PgUuid>, "NULL"),
) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
    Ok(JsonB(violations(None, p_staff_id, p_service_id, p_starts_at, p_ends_at, p_exclude_appointment_id)?))
}

/// `slot_violations` within one tenant: every read filtered by the tenant (one router query on
/// Citus); a staff member or service of another tenant does not exist here.
#[pg_extern(stable, security_definer, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
pub fn tenant_slot_violations(
    p_tenant_id: Option<PgUuid>,
    p_staff_id: Option<PgUuid>,
    p_service_id: Option<PgUuid>,
    p_starts_at: Option<TimestampWithTimeZone>,
    p_ends_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    p_exclude_appointment_id: default!(Option<PgUuid>, "NULL"),
) -> Result<JsonB, pgrx::pg_sys::panic::ErrorReport> {
    let tenant = to_uuid(require(p_tenant_id, "p_tenant_id")?);
    Ok(JsonB(violations(Some(tenant), p_staff_id, p_service_id, p_starts_at, p_ends_at, p_exclude_appointment_id)?))
}

fn violations(
    tenant_id: Option<Uuid>,
    p_staff_id: Option<PgUuid>,
    p_service_id: Option<PgUuid>,
    p_starts_at: Option<TimestampWithTimeZone>,
    p_ends_at: Option<TimestampWithTimeZone>,
    p_exclude_appointment_id: Option<PgUuid>,
) -> DomainResult<serde_json::Value> {
    let staff_id = to_uuid(require(p_staff_id, "p_staff_id")?);
    let service_id = to_uuid(require(p_service_id, "p_service_id")?);
    let starts_at = to_micros(require(p_starts_at, "p_starts_at")?)?;
    let duration = match p_ends_at {
        Some(end) => {
            let end = to_micros(end)?;
            if end <= starts_at {
                return Err(DomainError::InvalidParameter("p_ends_at must be after p_starts_at".into()));
            }
            Some(end - starts_at)
        }
        None => None,
    };
    explain_timing(tenant_id, staff_id, service_id, starts_at, duration, p_exclude_appointment_id.map(to_uuid))
}

/// Whether Postgres knows the time zone name (an IANA name such as 'Europe/Zurich', or 'UTC').
#[pg_extern(stable, strict, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn is_valid_timezone(name: &str) -> bool {
    // SAFETY: pg_tzset reads a NUL-terminated name and returns NULL for an unknown zone.
    CString::new(name).is_ok_and(|c| !unsafe { pg_sys::pg_tzset(c.as_ptr()) }.is_null())
}

/// Whether a document has the `tenants.opening_hours` shape; used by its CHECK constraint.
#[pg_extern(immutable, strict, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn is_valid_opening_hours(doc: crate::pg::json_doc::JsonDoc) -> bool {
    doc.0.is_ok_and(|d| opening_hours::parse(&d).is_ok())
}
