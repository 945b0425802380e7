-- The freeze calendar (sql/freeze.sql): global and per-tenant windows, one-off and weekly (with a
-- season), which refuse or defer DDL through the admin sandbox, tuner changes and maintenance
-- that takes strong locks; bookings go on. The clock is fixed.
SET booking_engine.now = '2026-06-05 12:00+02';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';
SELECT regress.salon();
SELECT booking_admin.freeze_state();

-- The wedding season's Saturdays, for one tenant: May to September, all day, in its time zone.
SELECT booking_admin.add_freeze_window('wedding season Saturdays', p_days => '{6}', p_start_time => '00:00',
    p_end_time => '24:00', p_time_zone => 'Europe/Zurich', p_valid_from => '2026-05-01', p_valid_until => '2026-09-30',
    p_tenant_id => '10000000-0000-0000-0000-000000000001') IS NOT NULL AS added;
-- Friday noon: not frozen. Saturday 00:00 local: frozen until Sunday 00:00 local.
SELECT booking_admin.freeze_state() ->> 'frozen' AS friday;
SELECT booking_admin.freeze_state(p_at => '2026-06-06 00:00+02') - 'windows' AS saturday;
-- October is out of season.
SELECT booking_admin.freeze_state(p_at => '2026-10-03 12:00+02') ->> 'frozen' AS october;
-- A tenant's window freezes what concerns that tenant, and the shared tables (every tenant's
-- rows live there); another tenant's own work goes on.
SELECT booking_admin.freeze_state('10000000-0000-0000-0000-0000000000ff', '2026-06-06 12:00+02') ->> 'frozen' AS other_tenant;
SELECT booking_admin.freeze_state(NULL, '2026-06-06 12:00+02') ->> 'frozen' AS shared_tables;
-- Windows that follow one another freeze until the last ends: a global Sunday morning window
-- right after the Saturday.
SELECT booking_admin.add_freeze_window('Sunday brunch rush', p_days => '{0}', p_start_time => '00:00',
    p_end_time => '10:00', p_time_zone => 'Europe/Zurich', p_action => 'refuse') IS NOT NULL AS added;
SELECT booking_admin.freeze_state(p_at => '2026-06-06 18:00+02') ->> 'until' AS until,
       booking_admin.freeze_state(p_at => '2026-06-06 18:00+02') ->> 'action' AS action,
       jsonb_array_length(booking_admin.freeze_state(p_at => '2026-06-07 09:00+02') -> 'windows') AS windows_sunday;
SELECT description, action, days, start_time, end_time, time_zone, tenant_id IS NOT NULL AS tenant
FROM booking_admin.freeze_windows ORDER BY description;

-- Clear errors for a window that makes no sense.
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_starts_at => '2026-06-02', p_ends_at => '2026-06-01')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_days => '{7}', p_start_time => '00:00', p_end_time => '01:00')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_days => '{1}', p_start_time => '10:00', p_end_time => '09:00')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_days => '{1}', p_start_time => '09:00', p_end_time => '10:00', p_time_zone => 'Mars/Olympus')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_starts_at => '2026-06-01', p_ends_at => '2026-06-02', p_action => 'postpone')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.add_freeze_window('x', p_starts_at => '2026-06-01', p_ends_at => '2026-06-02', p_tenant_id => '10000000-0000-0000-0000-0000000000ff')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.remove_freeze_window('10000000-0000-0000-0000-0000000000ff')$$);

CREATE SCHEMA freeze_demo;
CREATE TABLE freeze_demo.visits (id bigint PRIMARY KEY, customer text);

-- Saturday (a deferring window): DDL through the sandbox is queued for the window's end, to run
-- at top level as the caller then; ANALYZE and plain VACUUM go on at once.
SET booking_engine.now = '2026-06-06 15:00+02';
SELECT booking_admin.check_admin_sql('CREATE INDEX visits_customer_idx ON freeze_demo.visits (customer)') - 'job_payload' AS check;
SELECT booking_admin.execute_admin_sql('CREATE INDEX visits_customer_idx ON freeze_demo.visits (customer)') AS deferred \gset
SELECT :'deferred'::jsonb - 'job_id' - 'audit_id' - 'will_run' - 'will_not_run_because' AS deferred;
SELECT handler, status, scheduled_at, payload ->> 'sql' AS sql, payload -> 'respect_freeze' AS respect_freeze
FROM booking_admin.jobs WHERE id = (:'deferred'::jsonb ->> 'job_id')::uuid;
SELECT to_regclass('freeze_demo.visits_customer_idx') AS index_not_built_yet;
SELECT booking_admin.execute_admin_sql('ANALYZE freeze_demo.visits') ->> 'mode' AS analyze_now;
-- Bookings go on.
SELECT regress.book('frozen-day', '40000000-0000-0000-0000-000000000001', '2026-06-08 10:00+02') ->> 'success' AS booked;

-- Sunday 09:00 (a refusing window, the brunch rush): refused with 57000, audited in the admin
-- audit and the security audit log.
SET booking_engine.now = '2026-06-07 09:00+02';
SELECT booking_admin.check_admin_sql('DROP INDEX freeze_demo.visits_pkey') - 'freeze' AS check;
SELECT regress.sqlstate_of($$SELECT booking_admin.execute_admin_sql('VACUUM FULL freeze_demo.visits', allow_vacuum_full => true)$$);
SELECT regress.await_audit($$action = 'freeze.refused' AND resource_id = 'execute_admin_sql (vacuum)'$$) AS security_audited;
SELECT statement, decision, sqlstate, outcome FROM booking_admin.admin_audit WHERE sqlstate = '57000';

-- Scheduled operations that take strong locks (respects_freeze) are deferred by the scheduler
-- and refused or deferred when run by hand.
CREATE FUNCTION public.freeze_demo_op(jsonb) RETURNS integer LANGUAGE sql AS 'SELECT 1';
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, delay_ms, respects_freeze)
VALUES ('freeze-demo', 'A strong-lock operation', 'public.freeze_demo_op', 60000, true);
SELECT regress.sqlstate_of($$SELECT booking_admin.run_maintenance('freeze-demo')$$);
SELECT booking_admin.run_maintenance('freeze-demo', 'scheduler') - 'data' AS by_the_scheduler;
SELECT next_run_at >= '2026-06-07 10:00+02' AS not_before_the_end FROM booking_admin.scheduler_job_info WHERE job_name = 'freeze-demo';
SELECT count(*) AS executions FROM booking_admin.maintenance_executions WHERE operation = 'freeze-demo';
-- Outside any window it runs.
SET booking_engine.now = '2026-06-08 12:00+02';
SELECT booking_admin.run_maintenance('freeze-demo') ->> 'success' AS runs_on_monday;

-- A queued job that respects the calendar and comes due inside a window is put back until its
-- end by the runner's claim (the claim query asks the calendar for each such job).
SET booking_engine.now = '2026-06-06 15:00+02';
SELECT (booking_admin.freeze_state(j.tenant_id) ->> 'until')::timestamptz AS runner_defers_until
FROM booking_admin.jobs j WHERE j.id = (:'deferred'::jsonb ->> 'job_id')::uuid AND j.payload -> 'respect_freeze' = 'true';

-- The auto-tuner reads the same calendar (its freeze windows moved here).
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'booking_admin' AND table_name = 'auto_tuner_config' AND column_name LIKE 'freeze%';
UPDATE booking_admin.auto_tuner_config SET enabled = true;
SELECT booking_admin.perform_tuning_cycle() ->> 'frozen_until' AS tuner_frozen_until;
