//! The store's one writer: recompute locked staff-days with the availability engine and write
//! what changed. Called by the triggers and the horizon upkeep of sql/slot_store.sql, never by
//! applications (not granted).

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use pgrx::prelude::*;
use pgrx::{PgOid, Uuid as PgUuid};
use uuid::Uuid;

use super::diff::{diff, Diff, Key, Values};
use super::score::{score, Scored};
use crate::availability::facade::{from_micros, load_model, seconds_of_day, to_micros, Calendar, Micros, Query};
use crate::errors::{DomainError, DomainResult};
use crate::pg::convert::{to_naive_date, to_pg_date, to_pg_uuid, to_uuid};
use crate::pg::kept::{self, Kept};

/// Locks one tenant's staff-days that exist in the horizon, in (staff, date) order: the sort sits
/// below the row locks, so every writer (a booking's trigger, a schedule change, the horizon
/// upkeep) takes shared days in the same order and two of them cannot deadlock. (An UPDATE locks
/// in whatever order its join happens to produce.) Every statement here names its one tenant
/// ($1): on Citus it runs in a trigger on the tenant's shard, where only a query routed to that
/// tenant's (local) shards may run.
const LOCK_SQL: &str = "SELECT d.staff_id, d.date FROM booking.availability_slot_days d
    JOIN unnest($2::uuid[], $3::date[]) AS k (staff_id, date) ON d.staff_id = k.staff_id AND d.date = k.date
    WHERE d.tenant_id = $1 ORDER BY d.staff_id, d.date FOR UPDATE OF d";

/// Bumps the locked days' version: under REPEATABLE READ a concurrent writer of the same day then
/// fails with 40001 instead of writing slots computed from a stale snapshot (a lock alone would
/// let it through once this transaction commits).
const BUMP_SQL: &str = "UPDATE booking.availability_slot_days d SET version = d.version + 1
    FROM unnest($2::uuid[], $3::date[]) AS k (staff_id, date)
    WHERE d.tenant_id = $1 AND d.staff_id = k.staff_id AND d.date = k.date";

/// The services a staff member offers and the tenant's prime hours (seconds of the day).
const STAFF_SQL: &str = "SELECT coalesce((SELECT array_agg(ss.service_id ORDER BY ss.service_id)
                           FROM booking.staff_services ss WHERE ss.tenant_id = $1 AND ss.staff_id = $2), '{}'),
        coalesce((SELECT extract(epoch FROM w.prime_start)::int4 FROM booking.slot_store_settings w WHERE w.tenant_id = $1), 0),
        coalesce((SELECT extract(epoch FROM w.prime_end)::int4 FROM booking.slot_store_settings w WHERE w.tenant_id = $1), 0)";

/// The stored slots of one staff member's days, scores in basis points.
const READ_SQL: &str = "SELECT s.date, s.service_id, s.start_time, s.end_time, s.is_available,
        (s.confidence_score * 10000)::int4, (s.booking_density * 10000)::int4, (s.priority_boost * 10000)::int4,
        (s.fit_score * 10000)::int4, (s.day_open_ratio * 10000)::int4
    FROM booking.availability_slots s WHERE s.tenant_id = $1 AND s.staff_id = $2 AND s.date = ANY ($3::date[])";

const DELETE_SQL: &str = include_str!("../../sql/queries/slot_store_delete.sql");
const UPSERT_SQL: &str = include_str!("../../sql/queries/slot_store_upsert.sql");

thread_local! {
    // Prepared once per backend (src/pg/kept.rs): the booking path runs them on every change of
    // an appointment.
    static LOCK: Kept = const { RefCell::new(None) };
    static BUMP: Kept = const { RefCell::new(None) };
    static STAFF: Kept = const { RefCell::new(None) };
    static READ: Kept = const { RefCell::new(None) };
    static DELETE: Kept = const { RefCell::new(None) };
    static UPSERT: Kept = const { RefCell::new(None) };
}

/// `kept::query` with the argument types as Postgres type oids.
fn run<R>(
    kept: &'static std::thread::LocalKey<Kept>,
    sql: &str,
    types: &[pg_sys::Oid],
    args: &[pgrx::datum::DatumWithOid],
    read: impl FnOnce(pgrx::spi::SpiTupleTable) -> DomainResult<R>,
) -> DomainResult<R> {
    let oids: Vec<PgOid> = types.iter().map(|&t| PgOid::from(t)).collect();
    kept::query(kept, sql, &oids, args, read)
}

/// One tenant's locked days by staff member, for one engine run per service.
type DaysByStaff = BTreeMap<Uuid, Vec<NaiveDate>>;

fn lock_days(tenant: Uuid, staff: Vec<PgUuid>, dates: Vec<Date>) -> DomainResult<DaysByStaff> {
    let (u, d) = (pg_sys::UUIDARRAYOID, pg_sys::DATEARRAYOID);
    let types = [pg_sys::UUIDOID, u, d];
    let args = [to_pg_uuid(tenant).into(), staff.into(), dates.into()];
    let locked = run(&LOCK, LOCK_SQL, &types, &args, |rows| {
        let mut out = DaysByStaff::new();
        for row in rows {
            let (s, day) = (row.get::<PgUuid>(1)?, row.get::<Date>(2)?);
            let (Some(s), Some(day)) = (s, day) else { continue };
            out.entry(to_uuid(s)).or_default().push(to_naive_date(day, "date")?);
        }
        Ok(out)
    })?;
    run(&BUMP, BUMP_SQL, &types, &args, |_| Ok(()))?;
    Ok(locked)
}

fn values(s: &Scored) -> Values {
    (s.slot.end, s.slot.free, s.confidence, s.density, s.boost, s.fit, s.day_open)
}

/// The slots of one staff member's locked days, all services, scored.
fn compute(tenant: Uuid, staff: Uuid, days: &[NaiveDate]) -> DomainResult<Vec<(Key, Values)>> {
    let (first, last) = (days[0], days[days.len() - 1]);
    let args = [to_pg_uuid(tenant).into(), to_pg_uuid(staff).into()];
    let (services, prime_start, prime_end) =
        run(&STAFF, STAFF_SQL, &[pg_sys::UUIDOID, pg_sys::UUIDOID], &args, |rows| {
            let row = rows.first();
            Ok((
                row.get::<Vec<PgUuid>>(1)?.unwrap_or_default(),
                row.get::<i32>(2)?.unwrap_or(0),
                row.get::<i32>(3)?.unwrap_or(0),
            ))
        })?;
    let mut out = Vec::new();
    for service in services.into_iter().map(to_uuid) {
        let model = load_model(&Query::slots(Some(tenant), service, Some(staff), first, last))?;
        // Not offered (an inactive staff member or service): no slots.
        let (Some(member), Some(clock)) = (model.staff.first(), model.clocks.first()) else { continue };
        let cal = Calendar::new(&model.tenant, &model.service, member, &model.holidays, clock, first, last)
            .with_shared(&model.shared);
        let mut plan = cal.plan(first, last);
        plan.slots.retain(|c| days.binary_search(&c.date).is_ok());
        let prime = |t: Micros| {
            let s = seconds_of_day(member.zone.to_local(t).time()) as i32;
            prime_start <= s && s < prime_end
        };
        out.extend(score(&plan, prime).iter().map(|s| ((staff, s.slot.date, service, s.slot.start), values(s))));
    }
    Ok(out)
}

/// What the store holds now for one staff member's days.
fn stored(tenant: Uuid, staff: Uuid, days: &[NaiveDate]) -> DomainResult<Vec<(Key, Values)>> {
    let dates: Vec<Date> = days.iter().map(|&d| to_pg_date(d)).collect::<DomainResult<_>>()?;
    let args = [to_pg_uuid(tenant).into(), to_pg_uuid(staff).into(), dates.into()];
    let types = [pg_sys::UUIDOID, pg_sys::UUIDOID, pg_sys::DATEARRAYOID];
    run(&READ, READ_SQL, &types, &args, |rows| {
        let mut out = Vec::new();
        for row in rows {
            let missing = || DomainError::Internal("a stored slot has a NULL column".into());
            let date = to_naive_date(row.get::<Date>(1)?.ok_or_else(missing)?, "date")?;
            let service = to_uuid(row.get::<PgUuid>(2)?.ok_or_else(missing)?);
            let start = to_micros(row.get::<TimestampWithTimeZone>(3)?.ok_or_else(missing)?)?;
            let end = to_micros(row.get::<TimestampWithTimeZone>(4)?.ok_or_else(missing)?)?;
            let free = row.get::<bool>(5)?.ok_or_else(missing)?;
            let mut score = [0; 5];
            for (k, v) in score.iter_mut().enumerate() {
                *v = row.get::<i32>(6 + k)?.ok_or_else(missing)?;
            }
            let [confidence, density, boost, fit, day_open] = score;
            out.push(((staff, date, service, start), (end, free, confidence, density, boost, fit, day_open)));
        }
        Ok(out)
    })
}

fn write(tenant: Uuid, d: &Diff) -> DomainResult<()> {
    let uuids = |v: &mut dyn Iterator<Item = Uuid>| -> Vec<PgUuid> { v.map(to_pg_uuid).collect() };
    let dates = |v: &mut dyn Iterator<Item = NaiveDate>| -> DomainResult<Vec<Date>> { v.map(to_pg_date).collect() };
    let instants = |v: &mut dyn Iterator<Item = Micros>| -> DomainResult<Vec<TimestampWithTimeZone>> {
        v.map(from_micros).collect()
    };
    let (u, da, ts, b, i) = (
        pg_sys::UUIDARRAYOID,
        pg_sys::DATEARRAYOID,
        pg_sys::TIMESTAMPTZARRAYOID,
        pg_sys::BOOLARRAYOID,
        pg_sys::INT4ARRAYOID,
    );
    if !d.delete.is_empty() {
        let args = [
            to_pg_uuid(tenant).into(),
            uuids(&mut d.delete.iter().map(|k| k.0)).into(),
            dates(&mut d.delete.iter().map(|k| k.1))?.into(),
            uuids(&mut d.delete.iter().map(|k| k.2)).into(),
            instants(&mut d.delete.iter().map(|k| k.3))?.into(),
        ];
        run(&DELETE, DELETE_SQL, &[pg_sys::UUIDOID, u, da, u, ts], &args, |_| Ok(()))?;
    }
    if !d.upsert.is_empty() {
        let ints = |f: fn(&Values) -> i32| -> Vec<i32> { d.upsert.iter().map(|(_, v)| f(v)).collect() };
        let up = &d.upsert;
        let args = [
            to_pg_uuid(tenant).into(),
            uuids(&mut up.iter().map(|(k, _)| k.0)).into(),
            dates(&mut up.iter().map(|(k, _)| k.1))?.into(),
            uuids(&mut up.iter().map(|(k, _)| k.2)).into(),
            instants(&mut up.iter().map(|(k, _)| k.3))?.into(),
            instants(&mut up.iter().map(|(_, v)| v.0))?.into(),
            up.iter().map(|(_, v)| v.1).collect::<Vec<bool>>().into(),
            ints(|v| v.2).into(),
            ints(|v| v.3).into(),
            ints(|v| v.4).into(),
            ints(|v| v.5).into(),
            ints(|v| v.6).into(),
        ];
        let types = [pg_sys::UUIDOID, u, da, u, ts, ts, b, i, i, i, i, i];
        run(&UPSERT, UPSERT_SQL, &types, &args, |_| Ok(()))?;
    }
    Ok(())
}

/// Recomputes the given staff-days (parallel arrays; days outside the horizon are skipped) and
/// writes the store's difference. Locks each day's row in `availability_slot_days` until the
/// end of the transaction, so that two transactions changing one staff-day recompute it one
/// after the other, each from what the other committed; other staff-days are not touched.
/// Returns the number of slots the days now hold.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
pub fn refresh_availability_slots(
    p_tenant_ids: Option<Vec<Option<PgUuid>>>,
    p_staff_ids: Option<Vec<Option<PgUuid>>>,
    p_dates: Option<Vec<Option<Date>>>,
) -> Result<i32, pgrx::pg_sys::panic::ErrorReport> {
    let (tenants, staff, dates) =
        (p_tenant_ids.unwrap_or_default(), p_staff_ids.unwrap_or_default(), p_dates.unwrap_or_default());
    if tenants.len() != staff.len() || staff.len() != dates.len() {
        return Err(DomainError::InvalidParameter("the arrays must have the same length".into()).into());
    }
    if tenants.is_empty() {
        return Ok(0);
    }
    let null = || DomainError::InvalidParameter("the arrays must not contain NULL".into());
    let mut keys: Vec<(Uuid, Uuid, NaiveDate)> = Vec::with_capacity(dates.len());
    for ((t, s), d) in tenants.into_iter().zip(staff).zip(dates) {
        let (t, s, d) = (t.ok_or_else(null)?, s.ok_or_else(null)?, d.ok_or_else(null)?);
        keys.push((to_uuid(t), to_uuid(s), to_naive_date(d, "date")?));
    }
    keys.sort_unstable();
    keys.dedup();
    let mut slots = 0;
    // Tenant by tenant (the keys are sorted by tenant first), each tenant's days locked at once.
    for group in keys.chunk_by(|a, b| a.0 == b.0) {
        let tenant = group[0].0;
        let staff = group.iter().map(|k| to_pg_uuid(k.1)).collect();
        let dates = group.iter().map(|k| to_pg_date(k.2)).collect::<DomainResult<_>>()?;
        for (staff, days) in lock_days(tenant, staff, dates)?.iter_mut() {
            days.sort_unstable();
            let fresh = compute(tenant, *staff, days)?;
            slots += fresh.len();
            write(tenant, &diff(stored(tenant, *staff, days)?, fresh))?;
        }
    }
    Ok(i32::try_from(slots).map_err(|_| DomainError::Internal("too many slots".into()))?)
}
