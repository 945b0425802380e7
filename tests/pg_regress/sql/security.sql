-- Security automation: rate limiting, the audit log, PII discovery, the rule engine.
-- The clock is fixed (Monday 2 March 2026, 10:00 in Zurich) so that windows are reproducible.
SET booking_engine.now = '2026-03-02 10:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';

-- Open violations of one rule, as their objects.
CREATE FUNCTION pg_temp.open_violations(p_rule text, p_like text DEFAULT '%') RETURNS TABLE (object text, severity text)
LANGUAGE sql AS $$
    SELECT v.object_key, v.severity FROM booking_admin.security_violations v
    JOIN booking_admin.security_rules r ON r.id = v.rule_id
    WHERE r.rule_name = p_rule AND v.status <> 'resolved' AND v.object_key LIKE p_like
    ORDER BY 1
$$;

------------------------------------------------------------------------------------------
-- Rate limiting
------------------------------------------------------------------------------------------
-- the usual auth limit: 5 per 15 minutes, then refused.
SELECT string_agg(booking.check_rate_limit('198.51.100.1', 'auth', 5, 900)::text, ' ') FROM generate_series(1, 7);
-- Another identifier and another bucket count apart.
SELECT booking.check_rate_limit('198.51.100.2', 'auth', 5, 900), booking.check_rate_limit('198.51.100.1', 'api', 5, 900);
-- The JSON variant: what is left and when the window ends.
SELECT booking.check_rate_limit_json('198.51.100.3', 'auth', 5, 900);
SELECT booking.check_rate_limit_json('198.51.100.3');
-- Once the window is over, the identifier starts again.
SET booking_engine.now = '2026-03-02 10:15:00+01';
SELECT booking.check_rate_limit('198.51.100.1', 'auth', 5, 900);
SET booking_engine.now = '2026-03-02 10:00+01';
SELECT regress.sqlstate_of($$SELECT booking.check_rate_limit(NULL)$$);
SELECT regress.sqlstate_of($$SELECT booking.check_rate_limit('x', 'api', -1)$$);
SELECT regress.sqlstate_of($$SELECT booking.check_rate_limit('x', 'api', 10, 0)$$);
SELECT regress.sqlstate_of($$SELECT booking.check_rate_limit('', 'api')$$);
-- max_requests 0 refuses everything.
SELECT booking.check_rate_limit('198.51.100.4', 'api', 0);

------------------------------------------------------------------------------------------
-- Audit log
------------------------------------------------------------------------------------------
-- Identity, tenant, MFA state, address, user agent and request id come from the request.
SET request.jwt.claims = '{"sub": "6f1c2a4e-8b9d-4c3e-9f00-112233445566", "role": "authenticated", "aal": "aal1",
                           "app_metadata": {"tenant_id": "a0000000-0000-0000-0000-000000000001"}}';
SET request.headers = '{"x-forwarded-for": "203.0.113.9, 10.0.0.1", "user-agent": "regress-agent/1.0", "x-request-id": "req-0001"}';
SELECT booking.request_context();
SELECT booking.log_security_event('customer.viewed', 'customer', 'c-17', true, NULL, true) IS NOT NULL AS logged;
SELECT tenant_id, user_id, db_user, action, resource_type, resource_id, ip_address, user_agent, request_id, success,
       sensitive_data_accessed, mfa, created_at
FROM booking_admin.security_audit_log WHERE action = 'customer.viewed';
-- A direct insert gets the same context.
INSERT INTO booking_admin.security_audit_log (action, resource_type, success) VALUES ('export', 'report', true);
SELECT ip_address, request_id, mfa FROM booking_admin.security_audit_log WHERE action = 'export';
-- The address is what the outermost trusted proxy saw (booking_engine.trusted_proxies, default 1:
-- the last x-forwarded-for entry above); entries left of it are the client's own words. With no
-- trusted proxy the headers are ignored (this session's Unix socket has no address).
SET booking_engine.trusted_proxies = 2;
SELECT booking.request_context() ->> 'ip_address' AS behind_two_proxies;
SET booking_engine.trusted_proxies = 0;
SELECT booking.request_context() ->> 'ip_address' AS no_trusted_proxy;
RESET booking_engine.trusted_proxies;
-- Only a superuser may change it, or a session could choose its own audited address.
CREATE ROLE regress_security_app;
SET ROLE regress_security_app;
SELECT regress.sqlstate_of($$SET booking_engine.trusted_proxies = 5$$);
RESET ROLE;
DROP ROLE regress_security_app;
RESET request.jwt.claims;
RESET request.headers;
-- The extension's own kinds of entries cannot be forged through the application entry point.
SELECT regress.sqlstate_of($$SELECT booking.log_security_event('booking.created', 'appointment')$$);
SELECT regress.sqlstate_of($$SELECT booking.log_security_event('call', 'booking_admin_function')$$);
SELECT regress.sqlstate_of($$SELECT booking.log_security_event(NULL, 'auth')$$);
SELECT regress.sqlstate_of($$SELECT booking.log_security_event(repeat('x', 256), 'auth')$$);
-- Nobody alters the trail, its owner included.
SELECT regress.sqlstate_of($$UPDATE booking_admin.security_audit_log SET success = NOT success$$);
SELECT regress.sqlstate_of($$DELETE FROM booking_admin.security_audit_log$$);
SELECT regress.sqlstate_of($$TRUNCATE booking_admin.security_audit_log$$);
-- A failure survives the caller's rollback.
BEGIN;
SELECT booking.log_security_event('login', 'auth', 'mallory@example.com', false, 'wrong password') AS failed_id \gset
ROLLBACK;
SELECT regress.await_audit(format('id = %L', :'failed_id'));
SELECT action, resource_id, success, failure_reason, created_at FROM booking_admin.security_audit_log WHERE id = :'failed_id';
-- Every booking_admin call is recorded on its own, failed ones too, even when rolled back.
BEGIN;
SELECT regress.sqlstate_of($$SELECT booking_admin.scan_pii(0)$$);
ROLLBACK;
SELECT regress.await_audit($$resource_id = 'booking_admin.scan_pii' AND NOT success$$);
SELECT action, resource_type, resource_id, success, failure_reason FROM booking_admin.security_audit_log
WHERE resource_id = 'booking_admin.scan_pii' AND NOT success;

------------------------------------------------------------------------------------------
-- PII discovery, measured on a generated table with known truth
------------------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.luhn_check_digit(payload text) RETURNS int LANGUAGE sql AS $$
    SELECT (10 - sum(CASE WHEN i % 2 = 1 THEN (CASE WHEN d * 2 > 9 THEN d * 2 - 9 ELSE d * 2 END) ELSE d END) % 10) % 10
    FROM (SELECT i, substr(reverse(payload), i, 1)::int AS d FROM generate_series(1, length(payload)) i) s
$$;
CREATE TABLE public.pii_truth AS
SELECT i AS id,
       (ARRAY['Anna', 'Ben', 'Carla', 'David', 'Eva', 'Fritz', 'Gina', 'Hans'])[1 + i % 8] || ' ' ||
       (ARRAY['Muster', 'Keller', 'Weber', 'Huber', 'Meier', 'Schmid'])[1 + i % 6] AS full_name,
       'user' || i || '@example' || (i % 7) || '.com' AS email,
       CASE WHEN i % 2 = 0
            THEN '+41 7' || (i % 10) || ' ' || lpad((i * 7919 % 1000)::text, 3, '0') || ' ' || lpad((i % 100)::text, 2, '0') || ' ' || lpad((i * 13 % 100)::text, 2, '0')
            ELSE '0' || (44 + i % 10) || ' ' || lpad((i * 31 % 1000)::text, 3, '0') || ' ' || lpad((i % 100)::text, 2, '0') || ' ' || lpad((i * 17 % 100)::text, 2, '0')
       END AS phone,
       p.payload || pg_temp.luhn_check_digit(p.payload) AS card_number,
       p.payload || (pg_temp.luhn_check_digit(p.payload) + 1) % 10 AS order_ref,
       'DE' || lpad((98 - (b.bban || '131400')::numeric % 97)::text, 2, '0') || b.bban AS iban,
       'Called on 2026-03-0' || (1 + i % 9) || ' about order ' || i || ', write to me at user' || i || '@example.com' AS notes,
       (ARRAY['new', 'active', 'closed'])[1 + i % 3] AS status
FROM generate_series(1, 1000) i,
     LATERAL (SELECT '4' || lpad((i::int8 * 104729 % 100000000000000)::text, 14, '0') AS payload) p,
     LATERAL (SELECT lpad((i::numeric * 7777777777 % 1000000000000000000)::text, 18, '0') AS bban) b;
-- Value level: every cell, against the kind its column holds (names cannot be checked by value).
WITH cells AS (
    SELECT c.col, c.value, booking_admin.classify_pii_value(c.value) AS predicted,
           CASE c.col WHEN 'email' THEN 'email' WHEN 'phone' THEN 'phone' WHEN 'card_number' THEN 'payment_card'
                      WHEN 'iban' THEN 'iban' END AS truth
    FROM public.pii_truth t,
         LATERAL (VALUES ('full_name', t.full_name), ('email', t.email), ('phone', t.phone), ('card_number', t.card_number),
                         ('order_ref', t.order_ref), ('iban', t.iban), ('notes', t.notes), ('status', t.status)) c (col, value)
)
SELECT count(*) AS cells,
       round(count(*) FILTER (WHERE predicted = truth)::numeric / nullif(count(*) FILTER (WHERE predicted IS NOT NULL), 0), 3) AS value_precision,
       round(count(*) FILTER (WHERE predicted = truth)::numeric / nullif(count(*) FILTER (WHERE truth IS NOT NULL), 0), 3) AS value_recall
FROM cells;
SELECT booking_admin.scan_pii(1000) - 'tables_scanned' - 'columns_scanned' - 'pii_columns_found' - 'new_columns' = '{}' AS shape_ok;
SELECT column_name, data_type, compliance_level, is_encrypted FROM booking_admin.get_pii_registry()
WHERE table_name = 'public.pii_truth' ORDER BY column_name;
-- Column level: precision and recall of the scan against the table's truth.
WITH truth (column_name) AS (VALUES ('full_name'), ('email'), ('phone'), ('card_number'), ('iban')),
     found AS (SELECT column_name FROM booking_admin.pii_data_registry WHERE table_name = 'public.pii_truth')
SELECT round((SELECT count(*) FROM found JOIN truth USING (column_name))::numeric / (SELECT count(*) FROM found), 3) AS column_precision,
       round((SELECT count(*) FROM found JOIN truth USING (column_name))::numeric / (SELECT count(*) FROM truth), 3) AS column_recall;

-- Encrypted columns: bytea, and pgcrypto ciphertext stored as text.
CREATE TABLE public.patients (
    id serial PRIMARY KEY,
    email text,
    phone_ciphertext text,
    iban bytea,
    created_at timestamptz NOT NULL DEFAULT booking.clock_now()
);
INSERT INTO public.patients (email, phone_ciphertext, iban)
SELECT 'patient' || i || '@example.org',
       '-----BEGIN PGP MESSAGE-----' || chr(10) || chr(10) || 'ww0EBwMC' || md5(i::text) || chr(10) || '-----END PGP MESSAGE-----',
       decode(md5(i::text), 'hex')
FROM generate_series(1, 20) i;
SELECT (booking_admin.scan_pii())->'new_columns' AS new_columns;
-- The scan read personal data: its automatic audit entry says so.
SELECT regress.await_audit($$resource_id = 'booking_admin.scan_pii' AND success AND sensitive_data_accessed$$);
SELECT column_name, data_type, encryption_method, is_encrypted FROM booking_admin.get_pii_registry()
WHERE table_name = 'public.patients' ORDER BY column_name;
-- An operator's choices survive later scans.
UPDATE booking_admin.pii_data_registry SET compliance_level = 'restricted', retention_days = 30
WHERE table_name = 'public.patients' AND column_name = 'email';
SELECT (booking_admin.scan_pii())->'new_columns' AS new_columns;
SELECT column_name, compliance_level, retention_days, operator_set FROM booking_admin.pii_data_registry
WHERE table_name = 'public.patients' AND column_name = 'email';
SELECT regress.sqlstate_of($$SELECT booking_admin.scan_pii(0)$$);

------------------------------------------------------------------------------------------
-- Rule engine: each default rule fires on data made for it and resolves when fixed
------------------------------------------------------------------------------------------
SET booking_engine.exposed_schemas = 'exposed_test';
SELECT booking_admin.init_default_security_rules() AS installed;
SELECT booking_admin.init_default_security_rules() AS installed_again;
SELECT rule_name, rule_type, severity FROM booking_admin.security_rules ORDER BY rule_name;

-- Data for every rule.
CREATE SCHEMA exposed_test;
CREATE TABLE exposed_test.open_table (id int);
CREATE FUNCTION public.definer_without_path() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
CREATE FUNCTION booking_admin.leaky() RETURNS int LANGUAGE sql AS 'SELECT 1';
INSERT INTO public.patients (email, created_at) VALUES ('old@example.org', '2026-01-01 12:00+01');
INSERT INTO booking.tenants (id, name, timezone, opening_hours) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'Security salon', 'Europe/Zurich',
     '{"1": {"is_open": true, "start_time": "09:00", "end_time": "18:00"}}');
INSERT INTO booking_admin.security_audit_log (tenant_id, action, resource_type, resource_id, success, sensitive_data_accessed, created_at) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'customer.viewed', 'customer', 'early', true, true, '2026-03-02 06:30+01'),
    ('a0000000-0000-0000-0000-000000000001', 'customer.viewed', 'customer', 'in hours', true, true, '2026-03-02 09:30+01');
INSERT INTO booking_admin.security_audit_log (action, resource_type, resource_id, ip_address, success, created_at)
SELECT 'login', 'auth', 'eve@example.com', '198.51.100.7', false, '2026-03-02 09:50+01'::timestamptz + make_interval(mins => i)
FROM generate_series(1, 5) i;
INSERT INTO booking_admin.security_audit_log (action, resource_type, resource_id, db_user, success, mfa, created_at)
VALUES ('call', 'booking_admin_function', 'booking_admin.scan_pii', 'ops', true, false, '2026-03-02 08:00+01');

SELECT booking_admin.evaluate_security_rules() - 'violations_found' - 'new_violations' - 'violations_resolved' AS evaluation;
SELECT * FROM pg_temp.open_violations('unencrypted_pii', 'public.%');
SELECT * FROM pg_temp.open_violations('excessive_failed_logins');
SELECT v.severity, v.violation_details->>'function' AS function, v.violation_details->>'db_user' AS db_user
FROM booking_admin.security_violations v JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE r.rule_name = 'privileged_action_without_mfa' AND v.status = 'open';
SELECT * FROM pg_temp.open_violations('data_retention_violation');
SELECT v.severity, v.violation_details->>'resource_id' AS resource, v.violation_details->>'timezone' AS timezone
FROM booking_admin.security_violations v JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE r.rule_name = 'off_hours_sensitive_access' AND v.status = 'open';
SELECT * FROM pg_temp.open_violations('lint_rls_disabled');
SELECT * FROM pg_temp.open_violations('lint_security_definer_search_path', 'public.%');
SELECT * FROM pg_temp.open_violations('lint_public_execute_on_admin');
-- booking_engine's own functions pass the function lints.
SELECT count(*) AS own_functions_flagged FROM booking_admin.security_violations v
JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE r.rule_name IN ('lint_security_definer_search_path', 'lint_public_execute_on_admin')
  AND (v.object_key LIKE 'booking.%' OR v.object_key LIKE 'booking_admin.%' OR v.object_key LIKE 'booking_internal.%')
  AND v.object_key <> 'booking_admin.leaky()';

-- Evaluating again finds the same violations and opens none twice.
SELECT (booking_admin.evaluate_security_rules())->'new_violations' AS new_violations;
SELECT count(*) AS open_rows, count(DISTINCT (rule_id, object_key)) AS distinct_objects
FROM booking_admin.security_violations WHERE status <> 'resolved';

-- Fix everything.
UPDATE booking_admin.pii_data_registry SET encryption_method = 'pgcrypto'
WHERE table_name = 'public.pii_truth' OR (table_name = 'public.patients' AND encryption_method IS NULL);
DELETE FROM public.patients WHERE created_at < '2026-02-01';
ALTER TABLE exposed_test.open_table ENABLE ROW LEVEL SECURITY;
ALTER FUNCTION public.definer_without_path() SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION booking_admin.leaky() FROM PUBLIC;
-- Failed logins, admin calls without MFA and off-hours reads age out of their windows.
SET booking_engine.now = '2026-03-10 10:00+01';
SELECT (booking_admin.evaluate_security_rules())->'errors' AS errors;
SELECT r.rule_name, count(*) FILTER (WHERE v.status = 'resolved') AS resolved
FROM booking_admin.security_violations v JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE v.object_key NOT LIKE 'booking.%' AND v.object_key NOT LIKE 'booking_admin.%' OR v.object_key = 'booking_admin.leaky()'
GROUP BY r.rule_name ORDER BY r.rule_name;
SELECT count(*) AS still_open FROM booking_admin.security_violations v
WHERE v.status <> 'resolved' AND (v.object_key LIKE 'public.%' OR v.object_key LIKE 'exposed_test.%'
                                  OR v.object_key LIKE 'ip:%' OR v.object_key LIKE 'user:%' OR v.object_key = 'booking_admin.leaky()');
SET booking_engine.now = '2026-03-02 10:00+01';

------------------------------------------------------------------------------------------
-- Rules that try to do harm are refused or stopped, change nothing, and do not stop others
------------------------------------------------------------------------------------------
CREATE TABLE public.victim (x int);
INSERT INTO public.victim VALUES (1);
CREATE FUNCTION public.side_effect() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.victim VALUES (666);
    RETURN 1;
END $$;
CREATE SEQUENCE public.rule_seq;
-- Refused when stored: not exactly one plain SELECT.
SELECT regress.sqlstate_of(format($q$INSERT INTO booking_admin.security_rules (rule_name, rule_type, severity, condition_sql, remediation_text)
                                     VALUES ('bad', 'test', 'low', %L, 'none')$q$, s)) AS refused
FROM (VALUES ('INSERT INTO public.victim VALUES (2)'), ('DELETE FROM public.victim'),
             ('SELECT 1; DELETE FROM public.victim'), ('WITH d AS (DELETE FROM public.victim RETURNING *) SELECT * FROM d'),
             ('SELECT * INTO public.copy FROM public.victim'), ('SELECT * FROM public.victim FOR UPDATE'),
             ('SELEC 1')) v (s);
-- Accepted as SELECTs, stopped when run.
UPDATE booking_admin.security_rules SET is_active = false;
SET booking_engine.rule_timeout_ms = 200;
INSERT INTO booking_admin.security_rules (rule_name, rule_type, severity, condition_sql, remediation_text) VALUES
    ('harm_side_effect', 'test', 'low', 'SELECT public.side_effect() AS object', 'none'),
    ('harm_sequence', 'test', 'low', 'SELECT nextval(''public.rule_seq'') AS object', 'none'),
    ('harm_sleep', 'test', 'low', 'SELECT pg_sleep(0.1) FROM generate_series(1, 1000)', 'none'),
    ('harm_error', 'test', 'low', 'SELECT 1 / 0 AS object', 'none'),
    ('harmless', 'test', 'low', 'SELECT ''still evaluated'' AS object', 'none');
SELECT jsonb_pretty(booking_admin.evaluate_security_rules());
SELECT * FROM public.victim;
SELECT nextval('public.rule_seq') AS next_value_is_still_1;
SHOW transaction_read_only;
SELECT * FROM pg_temp.open_violations('harmless');

------------------------------------------------------------------------------------------
-- Compliance report
------------------------------------------------------------------------------------------
SELECT jsonb_object_keys(booking_admin.compliance_report()) AS key ORDER BY 1;
SELECT r->'open_violations'->'by_severity' ? 'critical' AS has_severities,
       (r->>'encryption_coverage_pct')::numeric BETWEEN 0 AND 100 AS coverage_is_a_percentage,
       (r->'audit'->>'total')::int > 0 AS audit_counted
FROM booking_admin.compliance_report() r;

-- Operators' functions are not for PUBLIC.
SELECT count(*) AS public_executable FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'booking_admin' AND has_function_privilege('public', p.oid, 'EXECUTE');
