//! Security over real connections: the rate limiter under concurrent clients, durable audit
//! entries, and what an application role may and may not do with the audit log.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::connect;
use uuid::Uuid;

/// Polls until the writer has written entry `id` (it writes outside the caller's
/// transaction, shortly after).
fn await_entry(c: &mut postgres::Client, id: Uuid) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let n: i64 =
            c.query_one("SELECT count(*) FROM booking_admin.security_audit_log WHERE id = $1", &[&id]).unwrap().get(0);
        if n == 1 {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sixteen_concurrent_clients_get_exactly_max_requests() {
    let identifier = format!("client-{}", Uuid::new_v4());
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (identifier, barrier) = (identifier.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect();
                let stmt = c.prepare("SELECT booking.check_rate_limit($1, 'api', 100, 900)").unwrap();
                barrier.wait();
                (0..25).filter(|_| c.query_one(&stmt, &[&identifier]).unwrap().get::<_, bool>(0)).count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 100, "400 requests from 16 clients, limit 100");
    let mut c = connect();
    let text: String =
        c.query_one("SELECT booking.check_rate_limit_json($1, 'api', 100, 900)::text", &[&identifier]).unwrap().get(0);
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status["allowed"].as_bool(), status["remaining"].as_i64()), (Some(false), Some(0)));
}

#[test]
fn a_failure_entry_survives_the_callers_rollback_and_a_success_does_not() {
    let mut c = connect();
    let mut tx = c.transaction().unwrap();
    let failed: Uuid = tx
        .query_one("SELECT booking.log_security_event('login', 'auth', 'it@example.com', false, 'wrong password')", &[])
        .unwrap()
        .get(0);
    let succeeded: Uuid =
        tx.query_one("SELECT booking.log_security_event('login', 'auth', 'it@example.com', true)", &[]).unwrap().get(0);
    tx.rollback().unwrap();
    assert!(await_entry(&mut c, failed), "the failed login is recorded although its transaction rolled back");
    let n: i64 = c
        .query_one("SELECT count(*) FROM booking_admin.security_audit_log WHERE id = $1", &[&succeeded])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a success stands or falls with its transaction");
}

/// The tests that change the audit log's catalog row (grants, a CHECK constraint) take turns:
/// GRANT and ALTER TABLE running at once on one table fail with "tuple concurrently updated".
static AUDIT_LOG_DDL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn an_application_role_appends_but_never_rewrites_the_audit_log() {
    let _ddl = AUDIT_LOG_DDL.lock().unwrap_or_else(|e| e.into_inner());
    let mut admin = connect();
    let role = format!("it_app_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             -- Even a role someone granted too much cannot rewrite the trail.
             GRANT USAGE ON SCHEMA booking_admin TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON booking_admin.security_audit_log TO {role};
             -- A trusted back end: untrusted roles may not write audit entries at all.
             GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid) TO {role};"
        ))
        .unwrap();
    let mut app = postgres::Client::connect(&format!("{} user={role}", crate::common::dsn()), postgres::NoTls).unwrap();
    let id: Uuid = app
        .query_one("SELECT booking.log_security_event('customer.exported', 'customer', 'c-1', true, NULL, true)", &[])
        .unwrap()
        .get(0);
    let db_user: String =
        app.query_one("SELECT db_user FROM booking_admin.security_audit_log WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(db_user, role);
    app.execute(
        "INSERT INTO booking_admin.security_audit_log (action, resource_type, success) VALUES ('note', 'app', true)",
        &[],
    )
    .unwrap();
    for statement in [
        "UPDATE booking_admin.security_audit_log SET success = false",
        "DELETE FROM booking_admin.security_audit_log",
        "TRUNCATE booking_admin.security_audit_log",
    ] {
        let err = app.execute(statement, &[]).unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{statement}");
    }
    // Operators' functions are not executable by an application role.
    let err = app.query_one("SELECT booking_admin.compliance_report()", &[]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    let err = app.query_one("SELECT booking.audit_event('x', 'y')", &[]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    drop(app);
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON booking_admin.security_audit_log FROM {role}; REVOKE ALL ON SCHEMA booking_admin FROM {role};
             REVOKE ALL ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid) FROM {role};
             DROP ROLE {role};"
        ))
        .unwrap();
}

#[test]
fn a_failed_admin_call_is_recorded_even_when_rolled_back() {
    let mut c = connect();
    let marker = format!("it-{}", Uuid::new_v4());
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&format!("SET LOCAL request.headers = '{{\"x-request-id\": \"{marker}\"}}'")).unwrap();
    assert!(tx.query_one("SELECT booking_admin.scan_pii(-5)", &[]).is_err());
    tx.rollback().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = c
            .query(
                "SELECT resource_id, success, failure_reason FROM booking_admin.security_audit_log WHERE request_id = $1",
                &[&marker],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            assert_eq!(r.get::<_, String>(0), "booking_admin.scan_pii");
            assert!(!r.get::<_, bool>(1));
            assert!(r.get::<_, String>(2).contains("sample_rows"));
            break;
        }
        assert!(Instant::now() < deadline, "no audit entry for the failed call");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_entry_the_table_refuses_does_not_hold_back_the_others() {
    let _ddl = AUDIT_LOG_DDL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = connect();
    let poison = format!("poison_{}", Uuid::new_v4().simple());
    c.batch_execute(&format!(
        "ALTER TABLE booking_admin.security_audit_log ADD CONSTRAINT it_{poison} CHECK (action <> '{poison}')"
    ))
    .unwrap();
    let mut tx = c.transaction().unwrap();
    let refused: Uuid =
        tx.query_one("SELECT booking.log_security_event($1, 'test', NULL, false)", &[&poison]).unwrap().get(0);
    let kept: Uuid =
        tx.query_one("SELECT booking.log_security_event('after-poison', 'test', NULL, false)", &[]).unwrap().get(0);
    tx.rollback().unwrap();
    assert!(await_entry(&mut c, kept), "the good entry of the same batch is written");
    c.batch_execute(&format!("ALTER TABLE booking_admin.security_audit_log DROP CONSTRAINT it_{poison}")).unwrap();
    let n: i64 =
        c.query_one("SELECT count(*) FROM booking_admin.security_audit_log WHERE id = $1", &[&refused]).unwrap().get(0);
    assert_eq!(n, 0);
    // The writer is still working.
    let later: Uuid =
        c.query_one("SELECT booking.log_security_event('after-poison', 'test', NULL, false)", &[]).unwrap().get(0);
    assert!(await_entry(&mut c, later));
}

#[test]
fn a_role_refused_at_the_booking_admin_schema_is_recorded() {
    let mut admin = connect();
    let role = format!("it_outsider_{}", Uuid::new_v4().simple());
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN")).unwrap();
    let mut outsider =
        postgres::Client::connect(&format!("{} user={role}", crate::common::dsn()), postgres::NoTls).unwrap();
    let err = outsider.query_one("SELECT booking_admin.evaluate_security_rules()", &[]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    drop(outsider);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin
            .query(
                "SELECT success, failure_reason FROM booking_admin.security_audit_log
                 WHERE db_user = $1 AND resource_type = 'booking_admin_function'",
                &[&role],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            assert!(!r.get::<_, bool>(0));
            let reason: String = r.get(1);
            assert!(reason.contains("permission denied for schema booking_admin"), "{reason}");
            assert!(reason.contains("evaluate_security_rules"), "the statement is kept: {reason}");
            break;
        }
        assert!(Instant::now() < deadline, "no audit entry for the refused statement");
        thread::sleep(Duration::from_millis(50));
    }
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}
