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

-- Supabase splinter's lints, applied to the extension's own objects (every object that belongs
-- to booking_engine, so new ones are checked as they come). Each lint is a view listing what it
-- finds next to the reason it is accepted; a finding without a reason reads UNEXPECTED. To
-- accept a new finding, add it with its reason to the VALUES list and regenerate this file's
-- expected output.
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.oid::regprocedure::text AS function, p.prosecdef, p.proconfig
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine';
CREATE TEMP VIEW ext_tables AS
SELECT c.oid FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine'
WHERE c.relkind IN ('r', 'p');

-- splinter 0028/0029: SECURITY DEFINER functions that PUBLIC (or Supabase's anon or
-- authenticated, where they exist) may execute, and what each one exposes.
CREATE TEMP VIEW lint_definer_executable AS
SELECT f.function, coalesce(x.exposes, 'UNEXPECTED') AS exposes
FROM ext_functions f
LEFT JOIN (VALUES
    ('booking.available_slot_arrays(uuid,date,date,uuid)', 'free slots of a service: times and staff ids, no customer data'),
    ('booking.rpc_validate_appointment_slot(uuid,uuid,timestamp with time zone,timestamp with time zone,uuid)', 'which availability rules a proposed slot breaks (reasons only for the tenant''s people), no customer data'),
    ('booking.require_bookable(uuid,uuid)', 'whether a service (and staff member) is bookable: PT404 otherwise, the same for unknown and hidden'),
    ('booking.get_booking_page(uuid)', 'a tenant''s public booking page: name, hours, active services with prices, active staff names'),
    ('booking.register_customer(uuid,text,text,text)', 'creates or returns the caller''s own customer record (its user id from the JWT), rate-limited'),
    ('booking.confirm_appointment(uuid)', 'a staff step on an appointment of the caller''s tenant (PT404/42501 otherwise)'),
    ('booking.check_in_appointment(uuid)', 'a staff step on an appointment of the caller''s tenant (PT404/42501 otherwise)'),
    ('booking.complete_appointment(uuid)', 'a staff step on an appointment of the caller''s tenant (PT404/42501 otherwise)'),
    ('booking.mark_no_show(uuid)', 'a staff step on an appointment of the caller''s tenant (PT404/42501 otherwise)'),
    ('booking.caller_customer_ids()', 'the caller''s own customer ids (row-level security helper)'),
    ('booking.caller_staff_tenant_ids()', 'the caller''s own staff tenants (row-level security helper)'),
    ('booking.caller_is_staff_of(uuid)', 'whether the caller is active staff of one tenant (caller check helper)'),
    ('booking.caller_is_customer(uuid,uuid)', 'whether the caller is this customer of one tenant (caller check helper)'),
    ('booking.create_tenant_booking(uuid,text,jsonb)', 'books within one tenant for a customer the caller may act for'),
    ('booking.get_tenant_available_slots(uuid,date,uuid,uuid)', 'free slots of one tenant''s service: times and staff ids, no customer data'),
    ('booking.reschedule_tenant_appointment(uuid,uuid,timestamp with time zone,text)', 'moves an appointment of the tenant the caller may act for'),
    ('booking.cancel_tenant_appointment(uuid,uuid,text,text)', 'cancels an appointment of the tenant the caller may act for'),
    ('booking.create_booking_idempotent(text,jsonb)', 'books for a customer the caller may act for (42501 otherwise)'),
    ('booking.reschedule_appointment(uuid,timestamp with time zone,text)', 'moves an appointment the caller may act for'),
    ('booking.cancel_appointment(uuid,text,text)', 'cancels an appointment the caller may act for'),
    ('booking.add_to_waitlist(jsonb)', 'adds a waitlist entry for a customer the caller may act for'),
    ('booking.update_waitlist_entry(uuid,jsonb)', 'changes an entry the caller may act for'),
    ('booking.remove_from_waitlist(uuid)', 'removes an entry the caller may act for'),
    ('booking.find_optimal_slots(uuid,date,date,uuid,integer)', 'the best free slots of a service with their scores: times and staff ids, no customer data'),
    ('booking.generate_availability_slots(uuid,date,date)', 'recomputes a staff member''s stored slots, for the tenant''s own people (PT404 otherwise); returns a count')
) x(function, exposes) USING (function)
WHERE f.prosecdef
  AND (has_function_privilege('public', f.oid, 'EXECUTE')
       OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname IN ('anon', 'authenticated')
                  AND has_function_privilege(r.oid, f.oid, 'EXECUTE')));

-- splinter 0011: functions whose search_path is the caller's. SECURITY DEFINER ones never are
-- (lint_security_definer_search_path above); each other one says why it may follow the
-- caller's path.
CREATE TEMP VIEW lint_search_path AS
SELECT f.function, coalesce(x.why, 'UNEXPECTED') AS why
FROM ext_functions f
LEFT JOIN (VALUES
    ('runs no query', ARRAY['booking.check_rate_limit(text,text,integer,integer)',
                            'booking.check_rate_limit_json(text,text,integer,integer)', 'booking.clock_now()',
                            'booking.is_single_select(text)', 'booking.is_valid_freeze_windows(jsonb)',
                            'booking.is_valid_opening_hours(jsonb)', 'booking.is_valid_timezone(text)',
                            'booking.is_within_opening_hours(jsonb,timestamp without time zone)', 'booking.request_context()',
                            'booking_admin.classify_pii_value(text)', 'booking_admin.wake_workers_at_commit()',
                            'booking.metrics_record(text,text[],double precision)', 'booking_admin.check_alert_rule(text,text)',
                            'booking_admin.retry_delay_ms(integer,double precision,integer,integer,double precision)', 'booking_admin.random_uuids(integer)',
                            'booking.verify_webhook_signature(text,text,text,text,text,integer)',
                            'booking_admin.check_endpoint_url(text,text)', 'booking_admin.check_template(text)',
                            'booking_admin.check_webhook_secret(text)', 'booking_admin.generate_webhook_secret()',
                            'booking.wake_delivery_at_commit()', 'booking.delivery_wanted_at_commit()']),
    ('SQL function kept inlinable; names only qualified objects', ARRAY['booking.get_available_slots(uuid,date,date,uuid)',
                            'booking.status_transition_allowed(text,text)', 'booking.appointment_json(booking.appointments)',
                            'booking.policy_failure(text,text,uuid,jsonb)']),
    ('reads only pg_catalog, qualified', ARRAY['booking_admin.worker_status()']),
    ('resolves the caller''s statement or tables with the caller''s search_path, as the caller would',
                      ARRAY['booking_admin.execute_admin_sql(text,boolean)', 'booking_admin.check_admin_sql(text,boolean)',
                            'booking_admin.execute_explain_query(text,boolean)', 'booking_admin.analyze_query(text)',
                            'booking_admin.perform_tuning_cycle()', 'booking_admin.rollback_tuning_action(bigint)',
                            'booking_admin.scan_pii(integer)', 'booking_admin.evaluate_security_rules()'])
) x(why, functions) ON f.function = ANY (x.functions)
WHERE NOT f.prosecdef
  AND NOT EXISTS (SELECT FROM unnest(f.proconfig) c WHERE c LIKE 'search\_path=%');

-- splinter 0018: reg* columns, which pg_upgrade refuses (regclass, regrole and regtype it keeps).
CREATE TEMP VIEW lint_reg_columns AS
SELECT a.attrelid::regclass::text AS table_name, a.attname, a.atttypid::regtype AS type
FROM ext_tables t JOIN pg_attribute a ON a.attrelid = t.oid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid IN ('regproc'::regtype, 'regprocedure'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
                     'regconfig'::regtype, 'regdictionary'::regtype, 'regnamespace'::regtype, 'regcollation'::regtype);

-- splinter 0001: foreign keys without an index on the referencing side. Covered: a valid,
-- non-partial index led by the key's columns, or (the composite (tenant_id, id) keys) led by
-- the key's id column, which is unique on its own.
CREATE TEMP VIEW lint_unindexed_foreign_keys AS
SELECT c.conrelid::regclass::text AS table_name, c.conname
FROM ext_tables t JOIN pg_constraint c ON c.conrelid = t.oid
WHERE c.contype = 'f'
  AND NOT EXISTS (
      SELECT FROM pg_index i
      WHERE i.indrelid = c.conrelid AND i.indisvalid
        -- A partial index serves when it leaves out only rows that reference nothing (NULL in
        -- a referencing column), which the foreign key never looks up.
        AND (i.indpred IS NULL OR pg_get_expr(i.indpred, i.indrelid) IN (
                SELECT format('(%s IS NOT NULL)', quote_ident(a.attname)) FROM pg_attribute a
                WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)))
        AND ((i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
             OR i.indkey[0] = ANY (c.conkey)
                AND i.indkey[0] <> ALL (SELECT a.attnum FROM pg_attribute a
                                        WHERE a.attrelid = c.conrelid AND a.attname = 'tenant_id')));

SELECT * FROM lint_definer_executable ORDER BY function;
SELECT * FROM lint_search_path ORDER BY why, function;
SELECT * FROM lint_reg_columns ORDER BY table_name, attname;
SELECT * FROM lint_unindexed_foreign_keys ORDER BY table_name, conname;

-- And they are not blind: an extension table with a regproc column and an unindexed foreign
-- key, and extension functions without a search_path or executable by PUBLIC as definer.
CREATE TABLE booking.lint_probe (tenant_id uuid REFERENCES booking.tenants (id), f regproc);
CREATE FUNCTION booking.lint_probe_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION booking.lint_probe_definer() RETURNS int LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS 'SELECT 1';
ALTER EXTENSION booking_engine ADD TABLE booking.lint_probe;
ALTER EXTENSION booking_engine ADD FUNCTION booking.lint_probe_fn();
ALTER EXTENSION booking_engine ADD FUNCTION booking.lint_probe_definer();
SELECT * FROM lint_definer_executable WHERE function LIKE '%lint_probe%';
SELECT * FROM lint_search_path WHERE function LIKE '%lint_probe%';
SELECT * FROM lint_reg_columns WHERE table_name LIKE '%lint_probe%';
SELECT * FROM lint_unindexed_foreign_keys WHERE table_name LIKE '%lint_probe%';
ALTER EXTENSION booking_engine DROP TABLE booking.lint_probe;
ALTER EXTENSION booking_engine DROP FUNCTION booking.lint_probe_fn();
ALTER EXTENSION booking_engine DROP FUNCTION booking.lint_probe_definer();
DROP TABLE booking.lint_probe;
DROP FUNCTION booking.lint_probe_fn();
DROP FUNCTION booking.lint_probe_definer();
