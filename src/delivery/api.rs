//! SQL functions of outbound delivery written in Rust: the checks the SQL API (sql/delivery.sql)
//! applies before it saves anything, the wake-ups, and the signature verification for
//! receivers that are Postgres too.

// In booking_internal: the operators' endpoint API (booking_admin) and the tenants' own
// (booking.create_tenant_endpoint, ...) share them, and a booking_admin function called from a
// tenant's request would be audited as an operator's call.
#[pgrx::pg_schema]
pub mod booking_internal {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;

    use crate::delivery::{hosts, settings, signature, sms, template};
    use crate::errors::DomainError;

    /// A new random `whsec_` secret.
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn generate_webhook_secret() -> String {
        signature::generate_secret()
    }

    /// The secret when it is a valid `whsec_` secret; 22023 otherwise.
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_webhook_secret(secret: Option<&str>) -> Result<String, ErrorReport> {
        let s = secret.ok_or_else(|| DomainError::InvalidParameter("the secret must not be NULL".into()))?;
        signature::parse_secret(s).map_err(|e| DomainError::InvalidParameter(e.0))?;
        Ok(s.to_string())
    }

    /// The endpoint's URL when the channel and URL are acceptable: webhook and slack need an
    /// http(s) URL whose host passes booking_engine.delivery_allowed_hosts/denied_hosts; email
    /// takes NULL (the customer of each event) or `mailto:address`. 22023 otherwise.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_endpoint_url(channel: Option<&str>, url: Option<&str>) -> Result<Option<String>, ErrorReport> {
        let bad = |m: String| -> ErrorReport { DomainError::InvalidParameter(m).into() };
        match channel {
            Some("webhook" | "slack" | "sms") => {
                let url = url.ok_or_else(|| bad("a webhook, slack or sms endpoint needs a URL".into()))?;
                let rules = settings::host_rules().map_err(|e| ErrorReport::from(DomainError::NotReady(e)))?;
                hosts::check_url(url, &rules).map_err(bad)?;
                Ok(Some(url.trim().to_string()))
            }
            Some("email") => match url {
                None => Ok(None),
                Some(u) => {
                    let addr = u.strip_prefix("mailto:").ok_or_else(|| {
                        bad(format!("an email endpoint's address is 'mailto:someone@example.com' or NULL, not {u:?}"))
                    })?;
                    addr.parse::<lettre::Address>()
                        .map_err(|e| bad(format!("{addr:?} is not an email address: {e}")))?;
                    Ok(Some(u.to_string()))
                }
            },
            Some(other) => Err(bad(format!("unknown channel \"{other}\": webhook, slack, email or sms"))),
            None => Err(bad("the channel must not be NULL: webhook, slack, email or sms".into())),
        }
    }

    /// A phone number in E.164 (spaces, dots, dashes and parentheses dropped); NULL stays NULL,
    /// anything else is 22023. Every phone number the extension stores passes here.
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn normalize_phone(p_phone: Option<&str>) -> Result<Option<String>, ErrorReport> {
        p_phone.map(|p| sms::normalize_phone(p).map_err(|e| DomainError::InvalidParameter(e).into())).transpose()
    }

    /// An SMS endpoint's sender: an E.164 number or an alphanumeric sender id; 22023 otherwise.
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_sms_sender(p_sender: Option<&str>) -> Result<String, ErrorReport> {
        let s =
            p_sender.ok_or_else(|| DomainError::InvalidParameter("an SMS endpoint needs a sender (from)".into()))?;
        Ok(sms::normalize_sender(s).map_err(DomainError::InvalidParameter)?)
    }

    /// What an SMS provider's callback says: `{"kind": "receipt", "message_id", "status"}` or
    /// `{"kind": "message", "from", "keyword": "stop" | "start" | "other"}`; 22023 for a body
    /// that is neither (or not JSON).
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn read_sms_inbound(p_body: Option<&str>) -> Result<pgrx::JsonB, ErrorReport> {
        let bad = |m: String| -> ErrorReport { DomainError::InvalidParameter(m).into() };
        let doc: serde_json::Value = serde_json::from_str(p_body.unwrap_or(""))
            .map_err(|e| bad(format!("the callback's body is not JSON: {e}")))?;
        Ok(pgrx::JsonB(match sms::inbound(&doc).map_err(bad)? {
            sms::Inbound::Receipt { message_id, status } => {
                serde_json::json!({"kind": "receipt", "message_id": message_id, "status": status})
            }
            sms::Inbound::Message { from, keyword } => {
                serde_json::json!({"kind": "message", "from": from, "keyword": keyword.as_str()})
            }
        }))
    }

    /// Checks a message template's placeholders (22023 for an unknown or unclosed one).
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_template(template: Option<&str>) -> Result<(), ErrorReport> {
        template::placeholders(template.unwrap_or("")).map_err(DomainError::InvalidParameter)?;
        Ok(())
    }
}

// In the extension's schema, booking.
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::delivery::signature::{verify, Unverified};
use crate::errors::DomainError;

/// Verifies a Standard Webhooks message as a receiver must: true when some `v1` signature
/// of `signature` (the webhook-signature header) is the HMAC-SHA256 of
/// `msg_id.timestamp.body` with `secret`, and `timestamp` (webhook-timestamp) is within
/// `tolerance_seconds` of now. False otherwise; 22023 for a malformed secret.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
pub fn verify_webhook_signature(
    secret: Option<&str>,
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    body: Option<&str>,
    signature: Option<&str>,
    tolerance_seconds: default!(Option<i32>, 300),
) -> Result<bool, ErrorReport> {
    let (Some(secret), Some(msg_id), Some(ts), Some(body), Some(sig), Some(tolerance)) =
        (secret, msg_id, timestamp, body, signature, tolerance_seconds)
    else {
        return Err(DomainError::InvalidParameter("no argument may be NULL".into()).into());
    };
    let now = (crate::pg::convert::wall_clock_micros() / 1_000_000) as i64;
    match verify(secret, msg_id, ts, body.as_bytes(), sig, now, i64::from(tolerance.max(0))) {
        Ok(()) => Ok(true),
        Err(Unverified::Secret(e)) => Err(DomainError::InvalidParameter(e.0).into()),
        Err(Unverified::Timestamp(_) | Unverified::NoMatch) => Ok(false),
    }
}

fn wake_delivery() {
    crate::launcher::wake(&super::worker::DELIVERY);
}

fn delivery_wanted_here() {
    crate::launcher::want(crate::pg::catalog::my_database_oid(), &super::worker::DELIVERY, true);
}

/// Wakes the database's delivery worker when the current transaction commits. In schema
/// booking, like the fan-out trigger that calls it: every booking_admin call is audited, and a
/// booking must not cost an audit entry for its wake-up.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn wake_delivery_at_commit() {
    if crate::pg::preload::preloaded() {
        crate::pg::xact::at_commit(wake_delivery);
    }
}

/// An endpoint was enabled: once the transaction commits, the launcher starts the database's
/// delivery worker without waiting for the probe's next round.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn delivery_wanted_at_commit() {
    if crate::pg::preload::preloaded() {
        crate::pg::xact::at_commit(delivery_wanted_here);
    }
}
