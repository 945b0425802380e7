//! Who is asking: identity, client address, user agent, request id and MFA state, read from
//! what PostgREST puts in `request.jwt.claims` and `request.headers`, else from the session.
//!
//! Both GUCs can be set by any session, so these fields describe what the request claimed;
//! they are as trustworthy as the gateway that sets them.

use std::net::IpAddr;

use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What the session itself knows when no gateway headers are there.
#[derive(Debug, Default, Clone)]
pub struct Session {
    pub db_user: String,
    /// The client's address; None for a Unix-socket connection.
    pub client_addr: Option<String>,
    pub application_name: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub user_id: Option<Uuid>,
    pub db_user: String,
    pub tenant_id: Option<Uuid>,
    pub ip_address: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// None without JWT claims; otherwise whether they show a second factor.
    pub mfa: Option<bool>,
}

/// Authentication methods (RFC 8176 `amr` values, and Supabase's `{"method": ...}` objects)
/// that count as a second factor.
const MFA_METHODS: &[&str] = &["mfa", "otp", "totp", "hwk", "swk", "sms", "webauthn", "phone"];

fn parse_object(text: Option<&str>) -> Option<Map<String, Value>> {
    match serde_json::from_str(text?.trim()).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn uuid_of(v: Option<&Value>) -> Option<Uuid> {
    v.and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn mfa_of(claims: &Map<String, Value>) -> bool {
    let aal2 = claims.get("aal").and_then(Value::as_str).is_some_and(|a| a == "aal2" || a == "aal3");
    let amr = claims.get("amr").and_then(Value::as_array).is_some_and(|methods| {
        methods.iter().any(|m| {
            let method = m.as_str().or_else(|| m.get("method").and_then(Value::as_str)).unwrap_or("");
            MFA_METHODS.contains(&method.to_ascii_lowercase().as_str())
        })
    });
    aal2 || amr
}

/// The client's address behind `trusted` proxies. Every proxy appends the address it saw to
/// `X-Forwarded-For`, so only the last `trusted` entries were written by proxies we trust; the
/// leftmost of those is the address the outermost trusted proxy saw, i.e. the client. Entries
/// further left came from the client itself. A shorter list than `trusted` means fewer proxies
/// than configured: its first entry was still written by one of them. `X-Real-IP` (one address,
/// set by the nearest proxy) is the fallback; with no trusted proxy both headers are ignored.
pub fn client_ip(forwarded_for: Option<&str>, real_ip: Option<&str>, trusted: usize) -> Option<IpAddr> {
    if trusted == 0 {
        return None;
    }
    let entries: Vec<&str> = forwarded_for.map(|f| f.split(',').map(str::trim).collect()).unwrap_or_default();
    if entries.iter().any(|e| !e.is_empty()) {
        return entries[entries.len().saturating_sub(trusted)].parse().ok();
    }
    real_ip.and_then(|r| r.trim().parse().ok())
}

pub fn from_request(
    claims: Option<&str>,
    headers: Option<&str>,
    session: &Session,
    trusted_proxies: usize,
) -> RequestContext {
    let claims = parse_object(claims);
    let headers = parse_object(headers).unwrap_or_default();
    let header = |name: &str| non_empty(headers.get(name).and_then(Value::as_str));
    let tenant = claims.as_ref().and_then(|c| {
        uuid_of(c.get("tenant_id")).or_else(|| uuid_of(c.get("app_metadata").and_then(|m| m.get("tenant_id"))))
    });
    RequestContext {
        user_id: claims.as_ref().and_then(|c| uuid_of(c.get("sub"))),
        db_user: session.db_user.clone(),
        tenant_id: tenant,
        ip_address: client_ip(header("x-forwarded-for").as_deref(), header("x-real-ip").as_deref(), trusted_proxies)
            .or_else(|| session.client_addr.as_deref().and_then(|a| a.parse().ok())),
        user_agent: header("user-agent").or_else(|| non_empty(session.application_name.as_deref())),
        request_id: header("x-request-id").or_else(|| header("x-correlation-id")),
        mfa: claims.as_ref().map(mfa_of),
    }
}

impl RequestContext {
    pub fn to_json(&self) -> Value {
        json!({
            "user_id": self.user_id,
            "db_user": self.db_user,
            "tenant_id": self.tenant_id,
            "ip_address": self.ip_address.map(|a| a.to_string()),
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "mfa": self.mfa,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session { db_user: "app".into(), client_addr: Some("10.0.0.9".into()), application_name: Some("psql".into()) }
    }

    #[test]
    fn postgrest_request_wins_over_the_session() {
        let c = from_request(
            Some(
                r#"{"sub": "6f1c2a4e-8b9d-4c3e-9f00-112233445566", "role": "authenticated", "aal": "aal1",
                     "amr": [{"method": "password", "timestamp": 1}], "app_metadata": {"tenant_id": "00000000-0000-0000-0000-0000000000a1"}}"#,
            ),
            Some(
                r#"{"x-forwarded-for": "203.0.113.7, 10.0.0.1", "user-agent": "Mozilla/5.0", "x-request-id": "req-42"}"#,
            ),
            &session(),
            2,
        );
        assert_eq!(c.user_id, Some(Uuid::parse_str("6f1c2a4e-8b9d-4c3e-9f00-112233445566").unwrap()));
        assert_eq!(c.tenant_id, Some(Uuid::parse_str("00000000-0000-0000-0000-0000000000a1").unwrap()));
        assert_eq!(c.ip_address, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(c.user_agent.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(c.request_id.as_deref(), Some("req-42"));
        assert_eq!(c.mfa, Some(false));
        assert_eq!(c.db_user, "app");
    }

    #[test]
    fn the_session_fills_what_the_request_leaves_out() {
        let c = from_request(None, Some("not json"), &session(), 1);
        assert_eq!(c.user_id, None);
        assert_eq!(c.mfa, None, "no claims: MFA unknown, not false");
        assert_eq!(c.ip_address, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(c.user_agent.as_deref(), Some("psql"));
        assert_eq!(c.request_id, None);
        let local = from_request(Some(""), Some(r#"{"x-forwarded-for": "garbage"}"#), &Session::default(), 1);
        assert_eq!(local.ip_address, None);
        assert_eq!(local.user_agent, None);
    }

    #[test]
    fn the_client_address_is_what_the_outermost_trusted_proxy_saw() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The client wrote 192.0.2.66 itself; the one trusted proxy appended what it saw.
        assert_eq!(client_ip(Some("192.0.2.66, 203.0.113.10"), None, 1), ip("203.0.113.10"));
        // Two trusted proxies: the second from the right is the client.
        assert_eq!(client_ip(Some("192.0.2.66, 203.0.113.10, 10.0.0.2"), None, 2), ip("203.0.113.10"));
        // Fewer entries than proxies: the first was still written by a trusted proxy.
        assert_eq!(client_ip(Some("203.0.113.10"), None, 3), ip("203.0.113.10"));
        // No trusted proxy: the headers are anyone's, and ignored.
        assert_eq!(client_ip(Some("192.0.2.66"), Some("192.0.2.67"), 0), None);
        // X-Real-IP only without X-Forwarded-For; an unreadable trusted entry is no address.
        assert_eq!(client_ip(None, Some(" 198.51.100.4 "), 1), ip("198.51.100.4"));
        assert_eq!(client_ip(Some(" , "), Some("198.51.100.4"), 1), ip("198.51.100.4"));
        assert_eq!(client_ip(Some("192.0.2.66, garbage"), Some("198.51.100.4"), 1), None);
        let c = from_request(None, Some(r#"{"x-forwarded-for": "192.0.2.66, 203.0.113.10"}"#), &session(), 0);
        assert_eq!(c.ip_address, ip("10.0.0.9"), "the session's own peer when no proxy is trusted");
    }

    #[test]
    fn second_factors() {
        let mfa = |claims: &str| from_request(Some(claims), None, &Session::default(), 1).mfa;
        assert_eq!(mfa(r#"{"aal": "aal2"}"#), Some(true));
        assert_eq!(mfa(r#"{"amr": ["pwd", "otp"]}"#), Some(true));
        assert_eq!(mfa(r#"{"amr": [{"method": "totp"}]}"#), Some(true));
        assert_eq!(mfa(r#"{"amr": ["pwd"], "sub": "not-a-uuid"}"#), Some(false));
    }
}
