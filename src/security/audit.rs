//! Audit entries (pure): the row an entry becomes, and its compact form for the writer
//! service's small slots, which carry the entries that must outlive the caller's transaction.

use serde_json::{json, Value};
use uuid::Uuid;

use super::context::RequestContext;

/// The writer's small slot: an entry shortened to fit never needs a large one.
pub const ENTRY_BYTES: usize = crate::writer::queue::SMALL_BYTES;

/// Where the entries that must outlive their transaction go: the writer inserts them into
/// `booking_admin.security_audit_log` with this statement.
pub static AUDIT_SINK: crate::writer::Sink =
    crate::writer::Sink::new("security audit", include_str!("../../sql/queries/writer_security_audit.sql"));

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: Uuid,
    pub context: RequestContext,
    pub tenant_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub success: bool,
    pub failure_reason: Option<String>,
    pub sensitive_data_accessed: bool,
    /// Microseconds since the Unix epoch.
    pub at: i64,
}

fn clip(s: &Option<String>, chars: usize) -> Option<String> {
    s.as_ref().map(|s| s.chars().take(chars).collect())
}

impl AuditEntry {
    /// The row as `jsonb_populate_record` reads it, long texts cut to `max_text` characters.
    fn row(&self, max_text: usize) -> Value {
        let at = chrono::DateTime::from_timestamp_micros(self.at).map(|t| t.to_rfc3339());
        let c = &self.context;
        json!({
            "id": self.id,
            "tenant_id": self.tenant_id.or(c.tenant_id),
            "user_id": c.user_id,
            "db_user": clip(&Some(c.db_user.clone()), max_text),
            "action": clip(&Some(self.action.clone()), max_text),
            "resource_type": clip(&Some(self.resource_type.clone()), max_text),
            "resource_id": clip(&self.resource_id, max_text),
            "ip_address": c.ip_address.map(|a| a.to_string()),
            "user_agent": clip(&c.user_agent, max_text),
            "request_id": clip(&c.request_id, max_text),
            "success": self.success,
            "failure_reason": clip(&self.failure_reason, max_text),
            "sensitive_data_accessed": self.sensitive_data_accessed,
            "mfa": c.mfa,
            "created_at": at,
        })
    }

    /// The full row, for a write in the caller's own transaction.
    pub fn to_row(&self) -> Value {
        self.row(usize::MAX)
    }

    /// The row in at most `ENTRY_BYTES` of JSON, shortening texts until it fits.
    pub fn compact_row(&self) -> Value {
        [usize::MAX, 200, 60, 16]
            .iter()
            .map(|&max| self.row(max))
            .find(|row| row.to_string().len() <= ENTRY_BYTES)
            .expect("16 characters per text always fit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str) -> AuditEntry {
        AuditEntry {
            id: Uuid::nil(),
            context: RequestContext { db_user: "app".into(), ..Default::default() },
            tenant_id: None,
            action: "login".into(),
            resource_type: "auth".into(),
            resource_id: None,
            success: false,
            failure_reason: Some(reason.into()),
            sensitive_data_accessed: false,
            at: 1_772_319_600_000_000,
        }
    }

    #[test]
    fn rows_fit_their_slot() {
        let short = entry("wrong password");
        let v = short.compact_row();
        assert_eq!(v["failure_reason"], "wrong password");
        assert_eq!(v["created_at"], "2026-02-28T23:00:00+00:00");
        let long = entry(&"x".repeat(5000));
        let v = long.compact_row();
        assert!(v.to_string().len() <= ENTRY_BYTES);
        assert_eq!(v["failure_reason"].as_str().unwrap().len(), 200);
        assert_eq!(long.to_row()["failure_reason"].as_str().unwrap().len(), 5000);
    }
}
