-- booking_engine's own objects pass its own security lints: every exposed table has row-level
-- security, every SECURITY DEFINER function pins its search_path, no booking_admin function is
-- executable by PUBLIC. And the lints are not blind: an unprotected table is caught.
SELECT booking_admin.init_default_security_rules() AS rules_installed;
SELECT rule_name, severity FROM booking_admin.security_rules ORDER BY rule_name;
SELECT booking_admin.evaluate_security_rules() - 'errors' AS fresh_database, booking_admin.evaluate_security_rules() -> 'errors' AS errors;
SELECT count(*) AS open_violations FROM booking_admin.security_violations WHERE status = 'open';

CREATE TABLE booking.lint_probe (id int);
CREATE FUNCTION booking.lint_probe_fn() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
SELECT (booking_admin.evaluate_security_rules() ->> 'violations_found')::int AS found_after_adding_open_objects;
SELECT r.rule_name FROM booking_admin.security_violations v JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE v.status = 'open' ORDER BY 1;
DROP TABLE booking.lint_probe;
DROP FUNCTION booking.lint_probe_fn();
SELECT (booking_admin.evaluate_security_rules() ->> 'violations_resolved')::int AS resolved_after_removing_them;

-- The scans are scheduled maintenance operations, runnable by hand as well.
SELECT job_name, delay_ms, enabled FROM booking_admin.scheduler_job_info
WHERE job_name IN ('security-evaluate', 'pii-scan') ORDER BY job_name;
SELECT r -> 'success' AS success, r -> 'data' -> 'status' AS status, r -> 'data' -> 'processedCount' AS violations
FROM booking_admin.run_maintenance('security-evaluate') r;
CREATE TABLE public.signups (id int, contact text);
INSERT INTO public.signups SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 20) g;
SELECT r -> 'success' AS success, r -> 'data' -> 'processedCount' AS pii_columns
FROM booking_admin.run_maintenance('pii-scan') r;
SELECT table_name, column_name, data_type FROM booking_admin.pii_data_registry WHERE table_name = 'public.signups';
