-- Remediations: a security rule may name an action. A violation of such a rule gets a proposal
-- with a dry run (nothing changes); an operator approves, rejects or reverts each one; every
-- step is audited. Blocking a client in the rate limiter (with an expiry), deleting personal
-- data past its retention, revoking a grant found too broad. The clock is fixed.
SET booking_engine.now = '2026-03-02 10:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';
SELECT booking_admin.init_default_security_rules() AS rules;
SELECT rule_name, remediation_action, remediation_settings FROM booking_admin.security_rules
WHERE remediation_action IS NOT NULL ORDER BY rule_name;
-- Only the rules under test run.
UPDATE booking_admin.security_rules SET is_active = rule_name IN ('excessive_failed_logins', 'data_retention_violation',
                                                                  'lint_public_execute_on_admin');

-- Six failed logins from one address in the quarter hour; personal data past a 30-day
-- retention; a booking_admin function anyone may run.
INSERT INTO booking_admin.security_audit_log (action, resource_type, resource_id, ip_address, success, created_at)
SELECT 'login', 'auth', 'eve@example.com', '198.51.100.7', false, '2026-03-02 09:50+01'::timestamptz + make_interval(mins => i)
FROM generate_series(1, 6) i;
CREATE SCHEMA remediation_demo;
CREATE TABLE remediation_demo.contacts (id int PRIMARY KEY, email text, created_at timestamptz NOT NULL);
INSERT INTO remediation_demo.contacts VALUES (1, 'old@example.com', '2026-01-01'), (2, 'older@example.com', '2025-12-01'),
                                             (3, 'new@example.com', '2026-02-25');
INSERT INTO booking_admin.pii_data_registry (table_name, column_name, data_type, compliance_level, retention_days)
VALUES ('remediation_demo.contacts', 'email', 'email', 'confidential', 30);
CREATE FUNCTION booking_admin.remediation_demo_open() RETURNS int LANGUAGE sql AS 'SELECT 1';
GRANT EXECUTE ON FUNCTION booking_admin.remediation_demo_open() TO PUBLIC;

-- The evaluation proposes one remediation per violation, each a dry run: nothing is done yet.
SELECT booking_admin.evaluate_security_rules() - 'violations_resolved' - 'errors' AS evaluation;
SELECT rule_name, action, status, plan, dry_run FROM booking_admin.security_remediations ORDER BY rule_name, plan;
SELECT count(*) AS rows_still_there FROM remediation_demo.contacts;
SELECT booking.check_rate_limit('198.51.100.7', 'login', 100, 60) AS address_not_blocked_yet;
-- A second evaluation proposes nothing new for the same violations.
SELECT booking_admin.evaluate_security_rules() -> 'remediations_proposed' AS proposed_again;

-- The dry run again, as things stand now.
SELECT booking_admin.preview_remediation(id) - 'id' - 'target' AS preview
FROM booking_admin.security_remediations WHERE action = 'delete_expired_pii';

-- Approved: the address is refused in every bucket of the rate limiter until the block ends.
SELECT r ->> 'status' AS status, r -> 'result' ->> 'blocked_until' AS blocked_until
FROM booking_admin.security_remediations m, booking_admin.approve_remediation(m.id, 'brute force from one address') r
WHERE m.target ->> 'identifier' = '198.51.100.7';
SELECT booking.check_rate_limit('198.51.100.7', 'login', 100, 60) AS login_allowed,
       booking.check_rate_limit('198.51.100.7', 'api', 100, 60) AS api_allowed,
       booking.check_rate_limit('203.0.113.1', 'login', 100, 60) AS others_allowed;
SELECT booking.check_rate_limit_json('198.51.100.7', 'api', 100, 60) - 'bucket' AS blocked;
SELECT booking_admin.client_blocked_until('198.51.100.7') AS blocked_until;
-- Reverted by an operator: the address is let through at once.
SELECT r ->> 'status' AS status
FROM booking_admin.security_remediations m, booking_admin.revert_remediation(m.id, 'a customer behind a shared address') r
WHERE m.target ->> 'identifier' = '198.51.100.7';
SELECT booking.check_rate_limit('198.51.100.7', 'login', 100, 60) AS allowed_again;
SELECT regress.sqlstate_of(format('SELECT booking_admin.revert_remediation(%L)', id))
FROM booking_admin.security_remediations WHERE target ->> 'identifier' = '198.51.100.7';

-- Personal data past its retention: deleted on approval; there is no undoing it.
SELECT r ->> 'status' AS status, r -> 'result' AS result
FROM booking_admin.security_remediations m, booking_admin.approve_remediation(m.id) r
WHERE m.action = 'delete_expired_pii';
SELECT id, email FROM remediation_demo.contacts;
SELECT regress.sqlstate_of(format('SELECT booking_admin.revert_remediation(%L)', id))
FROM booking_admin.security_remediations WHERE action = 'delete_expired_pii';

-- A grant too broad: revoked on approval, granted again on revert.
SELECT r ->> 'status' AS status, r -> 'result' ->> 'revert' AS revert
FROM booking_admin.security_remediations m, booking_admin.approve_remediation(m.id) r
WHERE m.action = 'revoke_grant' AND m.target ->> 'object' = 'booking_admin.remediation_demo_open()';
SELECT has_function_privilege('public', 'booking_admin.remediation_demo_open()', 'EXECUTE') AS public_may_run;
SELECT r ->> 'status' AS status
FROM booking_admin.security_remediations m, booking_admin.revert_remediation(m.id) r
WHERE m.action = 'revoke_grant' AND m.target ->> 'object' = 'booking_admin.remediation_demo_open()';
SELECT has_function_privilege('public', 'booking_admin.remediation_demo_open()', 'EXECUTE') AS public_may_run_again;

-- Rejected proposals stay on record; a decided one cannot be decided again.
SELECT booking_admin.evaluate_security_rules() -> 'remediations_proposed' AS proposed;
SELECT r ->> 'status' AS status, r ->> 'note' AS note
FROM booking_admin.security_remediations m, booking_admin.reject_remediation(m.id, 'on purpose for the demo') r
WHERE m.status = 'proposed';
SELECT regress.sqlstate_of(format('SELECT booking_admin.approve_remediation(%L)', id))
FROM booking_admin.security_remediations WHERE status = 'rejected' LIMIT 1;
SELECT regress.sqlstate_of($$SELECT booking_admin.approve_remediation('00000000-0000-0000-0000-0000000000ff')$$);

-- A finding that does not name what its action needs is recorded as failed, with the reason.
INSERT INTO booking_admin.security_rules (rule_name, rule_type, severity, condition_sql, remediation_text, remediation_action)
VALUES ('needs_a_block', 'test', 'low', $$SELECT 'x' AS object$$, 'Block something.', 'block_client');
SELECT booking_admin.evaluate_security_rules() -> 'remediations_proposed' AS proposed;
SELECT status, result ->> 'sqlstate' AS sqlstate, left(result ->> 'error', 40) AS error
FROM booking_admin.security_remediations WHERE rule_name = 'needs_a_block';

-- Blocks expire on their own: another address fails six times, its block is approved for
-- the rule's hour; past it, the client-blocks operation marks it expired.
INSERT INTO booking_admin.security_audit_log (action, resource_type, resource_id, ip_address, success, created_at)
SELECT 'login', 'auth', 'eve@example.com', '198.51.100.9', false, '2026-03-02 09:55+01'::timestamptz + make_interval(mins => i)
FROM generate_series(1, 6) i;
SELECT booking_admin.evaluate_security_rules() -> 'remediations_proposed' AS proposed;
SELECT r ->> 'status' AS status, r ->> 'expires_at' AS expires_at
FROM booking_admin.security_remediations m, booking_admin.approve_remediation(m.id) r
WHERE m.target ->> 'identifier' = '198.51.100.9' AND m.status = 'proposed';
SELECT booking_admin.client_blocked_until('198.51.100.9') AS blocked_until;
SET booking_engine.now = '2026-03-02 11:30+01';
SELECT booking_admin.client_blocked_until('198.51.100.9') AS past_its_end;
SELECT booking_admin.run_maintenance('client-blocks') ->> 'success' AS expired_by_the_scheduler;
SELECT target ->> 'identifier' AS identifier, status FROM booking_admin.security_remediations
WHERE action = 'block_client' ORDER BY identifier;

-- Every step is in the audit log.
SELECT action, success, count(*) FROM booking_admin.security_audit_log
WHERE resource_type = 'security_remediation' GROUP BY 1, 2 ORDER BY 1, 2;
-- Only operators decide.
CREATE ROLE remediation_stranger;
GRANT USAGE ON SCHEMA booking_admin TO remediation_stranger;
GRANT EXECUTE ON FUNCTION booking_admin.approve_remediation(uuid, text) TO remediation_stranger;
SET SESSION AUTHORIZATION remediation_stranger;
SELECT regress.sqlstate_of($$SELECT booking_admin.approve_remediation('00000000-0000-0000-0000-0000000000ff')$$);
RESET SESSION AUTHORIZATION;
REVOKE ALL ON FUNCTION booking_admin.approve_remediation(uuid, text) FROM remediation_stranger;
REVOKE ALL ON SCHEMA booking_admin FROM remediation_stranger;
DROP ROLE remediation_stranger;
DROP FUNCTION booking_admin.remediation_demo_open();
DROP SCHEMA remediation_demo CASCADE;
