//! In-database tests of the writer: a record handed over is committed by the writer worker in a
//! transaction of its own, so the test's transaction (which never commits) sees it from its
//! next statement; what cannot be queued is refused with its SQLSTATE. The records go to the
//! sink registered as "security audit" (the writer itself knows no sink by name).

#[pgrx::pg_schema]
mod tests {
    use std::time::{Duration, Instant};

    use pgrx::prelude::*;
    use serde_json::{json, Value};

    use crate::errors::DomainError;
    use crate::writer::{self, queue, sinks, Sink};

    fn audit() -> &'static Sink {
        sinks().into_iter().find(|s| s.name == "security audit").expect("the audit sink is registered")
    }

    fn row(id: uuid::Uuid, action: &str) -> Value {
        // The audit log's row, as jsonb_populate_recordset reads it: NOT NULL columns included.
        json!({"id": id, "action": action, "resource_type": "pg_test", "success": false,
               "failure_reason": "writer test", "sensitive_data_accessed": false, "created_at": "2026-03-01T00:00:00Z"})
    }

    fn written(id: uuid::Uuid) -> bool {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM booking_admin.security_audit_log WHERE id = $1)",
            &[crate::pg::convert::to_pg_uuid(id).into()],
        )
        .unwrap()
        .unwrap_or(false)
    }

    #[pg_test]
    fn a_record_waited_for_is_committed_before_the_call_returns() {
        let id = uuid::Uuid::new_v4();
        assert!(!written(id));
        writer::submit_and_wait(audit(), &row(id, "pg_test.wait"), Duration::from_secs(15)).unwrap();
        assert!(written(id), "committed by the writer, visible to this transaction's next statement");
    }

    #[pg_test]
    fn a_record_handed_over_is_written_without_anyone_waiting() {
        let id = uuid::Uuid::new_v4();
        writer::submit(audit(), &row(id, "pg_test.submit")).unwrap();
        let started = Instant::now();
        while !written(id) {
            assert!(started.elapsed() < Duration::from_secs(15), "the writer did not write the record");
            Spi::run("SELECT pg_sleep(0.02)").unwrap();
        }
    }

    #[pg_test]
    fn what_cannot_be_queued_is_refused() {
        let big = json!({"id": uuid::Uuid::new_v4(), "action": "x".repeat(queue::LARGE_BYTES)});
        let too_large = writer::submit(audit(), &big).unwrap_err();
        assert!(matches!(too_large, DomainError::Internal(ref m) if m.contains("largest slot")), "{too_large}");
        static STRAY: Sink = Sink::new("stray", "SELECT 1");
        let stray = writer::submit(&STRAY, &json!({})).unwrap_err();
        assert!(matches!(stray, DomainError::Internal(ref m) if m.contains("never registered")), "{stray}");
    }

    #[pg_test]
    fn the_queue_reports_its_capacity_and_the_sinks_their_order() {
        let (_, capacity, _) = writer::stats().expect("preloaded");
        assert_eq!(capacity, queue::SMALL_SLOTS + queue::LARGE_SLOTS);
        let names: Vec<&str> = sinks().iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["security audit", "admin attempt", "admin outcome"],
            "a batch writes an attempt before its outcome"
        );
    }
}
