-- Job queue and maintenance SQL API: deterministic shapes, errors and privileges. The
-- background workers serve another database, so nothing here is claimed behind our back.
SET client_min_messages = warning;
\set VERBOSITY terse

-- Operators' functions are not for PUBLIC.
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p WHERE p.pronamespace = 'booking_admin'::regnamespace
  AND p.proname IN ('enqueue_job', 'claim_jobs', 'complete_job', 'fail_job', 'heartbeat_job', 'job_stats',
                    'enqueue_jobs', 'random_uuids', 'complete_jobs', 'fail_jobs', 'complete_and_claim_jobs',
                    'lock_leased_jobs',
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

-- Maintenance: the response shape of run_maintenance, and the history.
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

-- Bulk enqueue: ids in the array's order; a unique key already queued (or repeated in the
-- array) gives that job's id; defaults as enqueue_job's; priorities and run_at respected.
DELETE FROM booking_admin.jobs;
SELECT booking_admin.enqueue_job('sms old', 'sms', p_unique_key => 'sms:1') AS old_id \gset
SELECT ids[1] <> ids[2] AS distinct_ids, ids[2] = :'old_id' AS existing_key_gives_its_job, ids[3] = ids[4] AS repeated_key_once,
       cardinality(ids) AS n
FROM booking_admin.enqueue_jobs('[
    {"name": "sms a", "handler": "sms", "payload": {"to": "+41"}, "priority": 1},
    {"name": "sms dup", "handler": "sms", "unique_key": "sms:1"},
    {"name": "sms b", "handler": "sms", "unique_key": "sms:2", "priority": 2, "max_retries": 0, "timeout_ms": 500},
    {"name": "sms b again", "handler": "sms", "unique_key": "sms:2"},
    {"name": "sms later", "handler": "sms", "run_at": "2999-01-01T00:00:00Z", "priority": 0}]') ids;
SELECT name, priority, payload, max_retries, retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
       unique_key, status, scheduled_at > now() AS future, created_by = current_user::regrole AS mine
FROM booking_admin.jobs ORDER BY priority, name;
-- Due jobs only, in priority order; the future one stays.
SELECT name FROM booking_admin.claim_jobs('texter', 10, ARRAY['sms']) ORDER BY priority, scheduled_at;
SELECT booking_admin.enqueue_jobs('[]') AS nothing;
-- Malformed input: the whole array is refused, nothing is queued.
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('{"name": "x", "handler": "sms"}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs(NULL)$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('[{"name": "ok", "handler": "sms"}, {"name": "no handler"}]')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('[{"name": "typo", "handler": "sms", "runat": "2030-01-01"}]')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('[{"name": "ok", "handler": "sms"}, 42]')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('[{"name": "bad", "handler": "sms", "priority": "high"}]')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.enqueue_jobs('[{"name": "bad", "handler": "sms", "max_retries": -1}]')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.random_uuids(-1)$$);
SELECT count(*) AS still_four FROM booking_admin.jobs;

-- Batch calls of an external worker: complete and fail what it holds, one round trip for the
-- outcomes and the next claim.
DELETE FROM booking_admin.jobs;
SELECT cardinality(booking_admin.enqueue_jobs('[{"name": "p1", "handler": "pay"}, {"name": "p2", "handler": "pay"},
    {"name": "p3", "handler": "pay", "max_retries": 0}, {"name": "p4", "handler": "pay"}, {"name": "p5", "handler": "pay"}]')) AS queued;
UPDATE booking_admin.jobs SET priority = substr(name, 2)::int;
CREATE TEMP TABLE held AS SELECT id, name FROM booking_admin.complete_and_claim_jobs('payer-1', 3, ARRAY['pay']);
SELECT name FROM held ORDER BY name;
-- Not this worker's, not running, unknown, repeated, NULL, or results not one per id: refused
-- whole, nothing recorded.
SELECT regress.sqlstate_of(format('SELECT booking_admin.complete_jobs(%L, %L)', 'payer-2', (SELECT array_agg(id) FROM held)));
SELECT regress.sqlstate_of(format('SELECT booking_admin.complete_jobs(%L, %L)', 'payer-1',
    (SELECT array_agg(id) FROM held) || (SELECT id FROM booking_admin.jobs WHERE name = 'p5')));
SELECT regress.sqlstate_of(format('SELECT booking_admin.fail_jobs(%L, %L)', 'payer-1',
    (SELECT array_agg(id) FROM held) || '00000000-0000-0000-0000-0000000000ff'::uuid));
SELECT regress.sqlstate_of(format('SELECT booking_admin.complete_jobs(%L, %L)', 'payer-1', (SELECT array_agg(id) || array_agg(id) FROM held)));
SELECT regress.sqlstate_of(format('SELECT booking_admin.complete_jobs(%L, %L)', 'payer-1', (SELECT array_agg(id) || NULL::uuid FROM held)));
SELECT regress.sqlstate_of(format('SELECT booking_admin.complete_jobs(%L, %L, %L)', 'payer-1', (SELECT array_agg(id) FROM held), ARRAY['{}'::jsonb]));
SELECT regress.sqlstate_of($$SELECT booking_admin.fail_jobs(NULL, '{}')$$);
SELECT count(*) AS still_running FROM booking_admin.jobs WHERE status = 'running';
-- p1 and p2 succeed with results, p3 fails (no retries left: dead), and the next batch comes back.
SELECT name FROM booking_admin.complete_and_claim_jobs('payer-1', 10, ARRAY['pay'],
    (SELECT array_agg(id ORDER BY name) FROM held WHERE name IN ('p1', 'p2')), ARRAY['{"charged": 1}', '{"charged": 2}']::jsonb[],
    (SELECT array_agg(id) FROM held WHERE name = 'p3'), ARRAY['card declined']) ORDER BY name;
SELECT name, status, result, error_message, retry_count, locked_by FROM booking_admin.jobs ORDER BY name;
SELECT booking_admin.complete_jobs('payer-1', (SELECT array_agg(id ORDER BY name) FROM booking_admin.jobs WHERE name = 'p4')) AS completed,
       booking_admin.fail_jobs('payer-1', (SELECT array_agg(id) FROM booking_admin.jobs WHERE name = 'p5')) AS failed;
SELECT name, status, result, error_message FROM booking_admin.jobs WHERE name IN ('p4', 'p5') ORDER BY name;
-- A claim of 0 records outcomes only.
SELECT count(*) AS claimed FROM booking_admin.complete_and_claim_jobs('payer-1', 0);
