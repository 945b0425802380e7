-- booking_engine 0.1.0 -> 0.1.1 (ALTER EXTENSION booking_engine UPDATE).
\echo Use "ALTER EXTENSION booking_engine UPDATE TO '0.1.1'" to load this file. \quit

-- admin_sql_status tells whether a runner will take a pending queued statement (will_run);
-- the definition is the one sql/admin.sql creates in a fresh install.
CREATE OR REPLACE FUNCTION booking_admin.admin_sql_status(p_audit_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb;
    job booking_admin.jobs;
BEGIN
    SELECT to_jsonb(a) INTO doc FROM booking_admin.admin_audit a WHERE a.id = p_audit_id;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'no admin statement with audit id %', coalesce(p_audit_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF doc ->> 'job_id' IS NULL THEN
        RETURN doc;
    END IF;
    -- A queued statement ends when its job does.
    SELECT * INTO job FROM booking_admin.jobs j WHERE j.id = (doc ->> 'job_id')::uuid;
    IF NOT FOUND THEN
        RETURN doc || jsonb_build_object('outcome', 'failed', 'outcome_detail',
            'its job is gone: the enqueuing transaction rolled back, or job retention removed it');
    END IF;
    -- A pending job says whether a runner will take it (false: no worker serves this database,
    -- see worker_status()).
    RETURN doc || jsonb_build_object(
        'will_run', CASE WHEN job.status IN ('pending', 'failed', 'running')
                         THEN (booking_admin.worker_status() ->> 'will_run')::boolean END,
        'outcome', CASE job.status WHEN 'completed' THEN 'succeeded' WHEN 'dead' THEN 'failed' ELSE 'pending' END,
        'outcome_detail', job.error_message,
        'finished_at', job.completed_at,
        'job', jsonb_build_object('status', job.status, 'retry_count', job.retry_count, 'started_at', job.started_at));
END $$;

-- Runners of every database have the same names: a running job's runner is alive only if it
-- is connected to this database.
CREATE OR REPLACE FUNCTION booking_admin.recover_stale_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
    n integer := 0;
BEGIN
    FOR v IN
        SELECT j.* FROM booking_admin.jobs j
        WHERE j.status = 'running'
          AND (j.locked_at < pg_postmaster_start_time()
               OR CASE WHEN j.locked_by LIKE 'booking_engine runner %'
                       THEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = j.locked_pid
                                        AND a.backend_type = j.locked_by AND a.datname = current_database())
                       ELSE j.heartbeat_at < clock_timestamp() - make_interval(secs => j.timeout_ms / 1000.0 + 5) END)
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM booking_admin.record_failure(v, format('worker %s (pid %s) died or stopped answering', v.locked_by, v.locked_pid));
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
