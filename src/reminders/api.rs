//! SQL functions of reminders written in Rust: quiet hours in a customer's zone, and the signed
//! links' tokens. Not for PUBLIC (sql/reminders.sql calls them from its SECURITY DEFINER
//! functions, which hold the link keys).

#[pgrx::pg_schema]
pub mod booking_internal {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;

    use crate::availability::facade::{from_micros, load_zone, local_micros, to_micros, MICROS_PER_DAY};
    use crate::errors::DomainError;
    use crate::pg::convert::{to_pg_uuid, to_uuid};
    use crate::reminders::links::{self, Action, Link};
    use crate::reminders::quiet::quiet_until;

    fn time_of(t: Time) -> chrono::NaiveTime {
        let (h, m, s, _) = t.to_hms_micro();
        chrono::NaiveTime::from_hms_opt(u32::from(h), u32::from(m), u32::from(s)).unwrap_or_default()
    }

    /// When the quiet hours [`p_start`, `p_end`) that hold `p_at` on the wall clock of
    /// `p_timezone` end, as an instant: 08:00 on the clock that morning, whatever the clocks
    /// did in the night (a spring-forward gap gives its end). NULL when `p_at` is outside them
    /// or an argument is NULL; 22023 for an unknown zone.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn quiet_hours_end(
        p_at: Option<TimestampWithTimeZone>,
        p_timezone: Option<&str>,
        p_start: Option<Time>,
        p_end: Option<Time>,
    ) -> Result<Option<TimestampWithTimeZone>, ErrorReport> {
        let (Some(at), Some(zone), Some(start), Some(end)) = (p_at, p_timezone, p_start, p_end) else {
            return Ok(None);
        };
        let at = to_micros(at)?;
        let zone = load_zone(zone, at - 2 * MICROS_PER_DAY, at + 3 * MICROS_PER_DAY)?;
        let Some(until) = quiet_until(zone.to_local(at), time_of(start), time_of(end)) else {
            return Ok(None);
        };
        Ok(Some(from_micros(zone.earliest_at_or_after(local_micros(until)))?))
    }

    /// `booking_engine.link_rate_limit`, where its default lives.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn link_rate_limit() -> i32 {
        crate::gucs::link_rate_limit()
    }

    /// A new random key for signed links (booking_admin.link_keys).
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn new_link_key() -> Vec<u8> {
        links::new_key()
    }

    /// The token of a link that lets its holder `p_action` (confirm, cancel) the appointment
    /// starting at `p_starts_at`, until `p_expires_at`, signed with key `p_key_id`.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn sign_link(
        p_key: &[u8],
        p_key_id: i32,
        p_action: &str,
        p_tenant_id: pgrx::Uuid,
        p_appointment_id: pgrx::Uuid,
        p_starts_at: TimestampWithTimeZone,
        p_expires_at: TimestampWithTimeZone,
    ) -> Result<String, ErrorReport> {
        let action = Action::parse(p_action)
            .ok_or_else(|| DomainError::InvalidParameter(format!("a link confirms or cancels, not {p_action:?}")))?;
        let link = Link {
            key_id: u32::try_from(p_key_id)
                .map_err(|_| DomainError::InvalidParameter("a key id is positive".into()))?,
            action,
            tenant: to_uuid(p_tenant_id),
            appointment: to_uuid(p_appointment_id),
            starts_at: to_micros(p_starts_at)?,
            expires_at: to_micros(p_expires_at)?.div_euclid(1_000_000),
        };
        Ok(links::sign(p_key, &link))
    }

    /// What a token claims, taken apart without checking it: NULL for what is not a token (the
    /// caller answers that as malformed). Check it with `link_is_authentic`.
    // The result's columns must be spelled out in the signature: pgrx reads their names there.
    #[allow(clippy::type_complexity)]
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn parse_link(
        p_token: Option<&str>,
    ) -> TableIterator<
        'static,
        (
            name!(key_id, i32),
            name!(action, String),
            name!(tenant_id, pgrx::Uuid),
            name!(appointment_id, pgrx::Uuid),
            name!(starts_at, Option<TimestampWithTimeZone>),
            name!(expires_at, Option<TimestampWithTimeZone>),
            name!(digest, Vec<u8>),
        ),
    > {
        let row = p_token.and_then(links::parse).and_then(|p| {
            Some((
                i32::try_from(p.link.key_id).ok()?,
                p.link.action.as_str().to_string(),
                to_pg_uuid(p.link.tenant),
                to_pg_uuid(p.link.appointment),
                from_micros(p.link.starts_at).ok(),
                p.link.expires_at.checked_mul(1_000_000).and_then(|us| from_micros(us).ok()),
                links::digest(&p),
            ))
        });
        TableIterator::new(row)
    }

    /// Whether `p_key` made the token (its MAC, compared in constant time).
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn link_is_authentic(p_token: &str, p_key: &[u8]) -> bool {
        links::parse(p_token).is_some_and(|p| links::authentic(p_key, &p))
    }
}
