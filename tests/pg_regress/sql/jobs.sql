-- Job queue and maintenance SQL API: deterministic shapes, errors and privileges. The
-- background workers serve another database, so nothing here is claimed behind our back.
SET client_min_messages = warning;
\set VERBOSITY terse

-- Operators' functions are not for PUBLIC.
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p WHERE p.pronamespace = 'booking_admin'::regnamespace
  AND p.proname IN ('enqueue_job', 'claim_jobs', 'complete_job', 'fail_job', 'heartbeat_job', 'job_stats',
                    'dead_letter_jobs', 'process_dead_letter', 'run_maintenance', 'scheduler_status',
                    'scheduler_job', 'maintenance_history', 'configure_scheduler_job', 'worker_status',
                    'wake_workers_at_commit', 'retry_delay_ms')
ORDER BY 1;

-- Handlers shipped with the extension.
SELECT handler, kind, function FROM booking_admin.job_handlers ORDER BY handler;

-- External worker round trip.
SELECT booking_admin.enqueue_job('mail 1', 'email', '{"to": "a@example.com"}', 3) IS NOT NULL AS enqueued;
UPDATE booking_admin.jobs SET id = '00000000-0000-0000-0000-0000000000a1' WHERE name = 'mail 1';
SELECT booking_admin.enqueue_job('mail 2', 'email', '{"to": "b@example.com"}', 7, p_max_retries => 0) IS NOT NULL AS enqueued;
SELECT name, status, locked_by FROM booking_admin.claim_jobs('mailer-1', 1, ARRAY['email']);
SELECT booking_admin.complete_job(id, '{"sent": true}') FROM booking_admin.jobs WHERE name = 'mail 1';
SELECT name, status, locked_by FROM booking_admin.claim_jobs('mailer-1', 5);
SELECT booking_admin.fail_job(id, 'mailbox full') FROM booking_admin.jobs WHERE name = 'mail 2';
SELECT name, status, retry_count, result, error_message, jsonb_array_length(last_errors) AS errors
FROM booking_admin.jobs ORDER BY name;
SELECT booking_admin.job_stats()->'by_status' AS by_status;
SELECT name FROM booking_admin.dead_letter_jobs(10, 0);
SELECT booking_admin.process_dead_letter('delete', 10);
SELECT booking_admin.process_dead_letter('archive', 10);
SELECT booking_admin.complete_job('00000000-0000-0000-0000-0000000000a1', NULL);
SELECT booking_admin.heartbeat_job('00000000-0000-0000-0000-0000000000ff');
SELECT booking_admin.enqueue_job(NULL, 'email');

-- Maintenance: the response shape of seed 001, and the history.
SELECT r->'success' AS success, r->'message' AS message,
       r->'data'->'operation' AS operation, r->'data'->'description' AS description,
       r->'data'->'status' AS status, r->'data'->'processedCount' AS processed,
       r->'data'->'errorMessage' AS error, jsonb_typeof(r->'data'->'executionTimeMs') AS time_type,
       r->'data'->>'executedAt' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$' AS iso_time
FROM booking_admin.run_maintenance('update-expired') r;
SELECT operation, status, processed_count, triggered_by FROM booking_admin.maintenance_history(5, 0);
SELECT booking_admin.run_maintenance('reindex-everything');
SELECT booking_admin.scheduler_job('nope');
SELECT booking_admin.configure_scheduler_job('activate-due', 10);
SELECT j->'job_name' AS job, j->'delay_ms' AS delay_ms, j->'enabled' AS enabled
FROM booking_admin.configure_scheduler_job('activate-due', 15000, p_enabled => false) j;
SELECT jsonb_array_length(booking_admin.scheduler_status()->'jobs') AS jobs;

-- A new scheduled operation is one row naming its function.
CREATE FUNCTION public.count_tenants(settings jsonb) RETURNS integer LANGUAGE sql AS $$ SELECT count(*)::int FROM booking.tenants $$;
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, delay_ms)
VALUES ('count-tenants', 'Count tenants', 'public.count_tenants', 60000);
SELECT r->'success' AS success, r->'data'->'processedCount' AS processed FROM booking_admin.run_maintenance('count-tenants') r;
-- A failing operation is recorded as FAILED and retried sooner.
CREATE FUNCTION public.broken_op(settings jsonb) RETURNS integer LANGUAGE sql AS $$ SELECT 1 / 0 $$;
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, delay_ms)
VALUES ('broken', 'Always fails', 'public.broken_op', 60000);
SELECT r->'success' AS success, r->'message' AS message, r->'data'->'status' AS status, r->'data'->'errorMessage' AS error
FROM booking_admin.run_maintenance('broken') r;
SELECT status, consecutive_failures, last_error, next_run_at < clock_timestamp() + interval '2 seconds' AS retry_soon
FROM booking_admin.scheduler_job_info WHERE job_name = 'broken';
