-- Durable job queue, in-database handlers, and the maintenance scheduler:
-- the generic machinery only. Each feature registers its own handlers and operations in its
-- own file.
-- Claiming, completing and failing are plain SQL so external workers and the in-database
-- runners share one code path; the retry delay and runner wake-up are Rust
-- (booking_admin.retry_delay_ms, booking_admin.wake_workers_at_commit).

CREATE TABLE booking_admin.job_handlers (
    handler     text PRIMARY KEY CHECK (handler ~ '^[a-z][a-z0-9_]*$'),
    kind        text NOT NULL CHECK (kind IN ('function', 'top_level')),
    -- A schema-qualified name, resolved to function(jsonb) when a job runs (text rather than
    -- regproc: pg_upgrade refuses clusters with reg* columns in user tables).
    function    text CHECK (function ~ '^([a-z_][a-z0-9_$]*|"[^"]+")\.([a-z_][a-z0-9_$]*|"[^"]+")$'),
    description text,
    -- A function handler names its SQL function; a top-level handler runs its payload's "sql".
    CHECK ((kind = 'function') = (function IS NOT NULL))
);
-- Seeded by the features (see below); like scheduler_job_info, a restore that meets a seeded
-- row updates it, so pg_dump keeps every row and an operator's own handlers survive.
CREATE TRIGGER job_handlers_restore BEFORE INSERT ON booking_admin.job_handlers
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('handler');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.job_handlers', '');
COMMENT ON TABLE booking_admin.job_handlers IS
    'Handlers the in-database runners execute: kind function calls function(payload jsonb) RETURNS jsonb in a subtransaction; kind top_level runs payload->>''sql'' as one top-level statement outside any transaction block. Jobs whose handler is not listed are left to external workers (claim_jobs).';

CREATE TABLE booking_admin.jobs (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     text NOT NULL,
    handler                  text NOT NULL,
    payload                  jsonb NOT NULL DEFAULT '{}',
    tenant_id                uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    priority                 integer NOT NULL DEFAULT 5,
    max_retries              integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    retry_delay_ms           integer NOT NULL DEFAULT 1000 CHECK (retry_delay_ms >= 0),
    retry_backoff_multiplier numeric(4, 2) NOT NULL DEFAULT 2.0 CHECK (retry_backoff_multiplier >= 1),
    max_delay_ms             integer NOT NULL DEFAULT 300000 CHECK (max_delay_ms >= 0),
    jitter                   boolean NOT NULL DEFAULT true,
    timeout_ms               integer NOT NULL DEFAULT 30000 CHECK (timeout_ms > 0),
    unique_key               text,
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'running', 'completed', 'failed', 'dead', 'cancelled')),
    scheduled_at             timestamptz NOT NULL DEFAULT now(),
    started_at               timestamptz,
    completed_at             timestamptz,
    locked_by                text,
    locked_pid               integer,
    locked_at                timestamptz,
    heartbeat_at             timestamptz,
    result                   jsonb,
    error_message            text,
    last_errors              jsonb NOT NULL DEFAULT '[]',
    retry_count              integer NOT NULL DEFAULT 0,
    -- The role the job runs as: by default whoever inserted the row; another role only if the
    -- inserter can act as it (booking_admin.jobs_identity). Never changes afterwards.
    created_by               regrole NOT NULL DEFAULT current_user::regrole,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    -- Who inserted the row, set by the database whatever the insert says.
    enqueued_by              regrole NOT NULL DEFAULT current_user::regrole,
    -- The W3C trace context of the enqueuer (enqueue_job, enqueue_jobs; NULL when tracing is
    -- off): every attempt of the job is a span of that trace.
    traceparent              text,
    tracestate               text,
    -- A running job whose key a replace took over: the job that holds the key now. The running
    -- job finishes, but is not retried.
    replaced_by              uuid
);
COMMENT ON COLUMN booking_admin.jobs.status IS
    'pending, running, completed, failed (a retry is scheduled at scheduled_at), dead (dead-letter queue), cancelled (by its key before it ran).';
COMMENT ON COLUMN booking_admin.jobs.replaced_by IS
    'Set when enqueue_job replaced this job by its key while it ran: the new job, which took the key over.';
COMMENT ON COLUMN booking_admin.jobs.last_errors IS 'Every failure so far: [{"attempt", "at", "error", "retry_at" (NULL: dead)}].';
-- What claim_jobs scans: runnable jobs in the order they run.
CREATE INDEX jobs_runnable_idx ON booking_admin.jobs (priority, scheduled_at) WHERE status IN ('pending', 'failed');
-- What an idle runner asks: when is the next retry or future job due.
CREATE INDEX jobs_scheduled_idx ON booking_admin.jobs (scheduled_at) WHERE status IN ('pending', 'failed');
CREATE INDEX jobs_running_idx ON booking_admin.jobs (heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_dead_idx ON booking_admin.jobs (updated_at) WHERE status = 'dead';
CREATE INDEX jobs_completed_idx ON booking_admin.jobs (completed_at) WHERE status = 'completed';
-- The foreign key's side: deleting a tenant finds its jobs without a scan. Partial: most jobs
-- have no tenant, and a hundred thousand equal NULL entries made every insert walk them (half
-- the cost of a bulk enqueue).
CREATE INDEX jobs_tenant_idx ON booking_admin.jobs (tenant_id) WHERE tenant_id IS NOT NULL;
-- One logical job at a time: a key is free again once its job has finished (completed or dead).
CREATE UNIQUE INDEX jobs_unique_key_idx ON booking_admin.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.jobs', '');

-- Finished jobs, out of the queue: the queue's table stays the size of its live work (what the
-- runners' claims and the unique keys' index walk), and the history of what ran is partitioned
-- by day, dropped after a week. The same columns as booking_admin.jobs; completed jobs move
-- there archive_after_minutes (60) after they finished (dead ones stay in the queue, the
-- dead-letter queue, until data_cleanup removes them).
CREATE TABLE booking_admin.job_history (
    LIKE booking_admin.jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
) PARTITION BY RANGE (completed_at);
-- The key and the index are the partitions' (sql/partitions.sql), each day's copied from the
-- default partition's.
CREATE TABLE booking_admin.job_history_default PARTITION OF booking_admin.job_history (
    CONSTRAINT job_history_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX job_history_handler_idx ON booking_admin.job_history_default (handler, completed_at);
COMMENT ON TABLE booking_admin.job_history IS
    'Completed jobs moved out of booking_admin.jobs by the archive-jobs operation, partitioned by completed_at.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.job_history', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.job_history_default', '');
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.job_history', 'completed_at', 'day', 7, '7 days', 'Completed jobs, archived out of the queue');

-- The runners execute a job as created_by, so who a job runs as is set by the database from the
-- inserting session, not by the caller: enqueued_by is always current_user, created_by may name
-- another role only if current_user can act as it (is a member of it, as SET ROLE requires),
-- neither ever changes, and what a job runs (handler, payload) may only be changed by a role
-- that could run it itself. Not SECURITY DEFINER: current_user must be the inserter. The
-- insert trigger fires only when a row names a role other than the inserter (the defaults name
-- the inserter), the update trigger only for those columns: the common enqueue and the
-- runners' status updates never pay for a PL/pgSQL call.
CREATE FUNCTION booking_admin.jobs_identity() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.enqueued_by := current_user::regrole;
        IF NOT pg_has_role(current_user, NEW.created_by, 'MEMBER') THEN
            RAISE EXCEPTION 'a job may only run as a role you can act as: % cannot act as %', current_user, NEW.created_by
                USING ERRCODE = '42501';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.created_by IS DISTINCT FROM OLD.created_by OR NEW.enqueued_by IS DISTINCT FROM OLD.enqueued_by THEN
        RAISE EXCEPTION 'the role a job runs as (created_by, enqueued_by) cannot be changed' USING ERRCODE = '42501';
    END IF;
    IF (NEW.handler, NEW.payload) IS DISTINCT FROM (OLD.handler, OLD.payload)
       AND NOT pg_has_role(current_user, OLD.created_by, 'MEMBER') THEN
        RAISE EXCEPTION 'only a role that can act as % may change the handler or payload of its job', OLD.created_by
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_identity_insert BEFORE INSERT ON booking_admin.jobs
    FOR EACH ROW
    WHEN (NEW.created_by IS DISTINCT FROM current_user::regrole OR NEW.enqueued_by IS DISTINCT FROM current_user::regrole)
    EXECUTE FUNCTION booking_admin.jobs_identity();
CREATE TRIGGER jobs_identity_update BEFORE UPDATE OF created_by, enqueued_by, handler, payload ON booking_admin.jobs
    FOR EACH ROW EXECUTE FUNCTION booking_admin.jobs_identity();

-- One job. With a p_unique_key (a job key), p_job_key_mode says what happens when a job with
-- that key is already pending, failed (awaiting a retry) or running, as graphile-worker's
-- job_key_mode does:
--   unsafe_dedupe    nothing: that job's id is returned, the new arguments are dropped;
--   replace          a pending or failed job takes the new arguments (run_at included) and
--                    starts over (retry count, errors); a running one keeps running but gives
--                    its key to a new job, and is not retried;
--   preserve_run_at  like replace, but a pending or failed job keeps its scheduled time.
CREATE FUNCTION booking_admin.enqueue_job(
    p_name text,
    p_handler text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT 5,
    p_run_at timestamptz DEFAULT now(),
    p_max_retries integer DEFAULT 3,
    p_retry_delay_ms integer DEFAULT 1000,
    p_retry_backoff_multiplier numeric DEFAULT 2.0,
    p_max_delay_ms integer DEFAULT 300000,
    p_jitter boolean DEFAULT true,
    p_timeout_ms integer DEFAULT 30000,
    p_tenant_id uuid DEFAULT NULL,
    p_unique_key text DEFAULT NULL,
    p_job_key_mode text DEFAULT 'unsafe_dedupe'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
    v_traceparent text;
    v_tracestate text;
    v_old booking_admin.jobs;
BEGIN
    IF p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'job name and handler must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_job_key_mode IS NULL OR p_job_key_mode NOT IN ('unsafe_dedupe', 'replace', 'preserve_run_at') THEN
        RAISE EXCEPTION 'job_key_mode must be unsafe_dedupe, replace or preserve_run_at, not %',
            coalesce(quote_literal(p_job_key_mode), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    -- Twice at most: a replace that finds no holder of the key inserts, and when a concurrent
    -- call inserted the key first (the insert then does nothing), it replaces that job instead.
    FOR attempt IN 1..2 LOOP
        IF p_unique_key IS NOT NULL AND p_job_key_mode <> 'unsafe_dedupe' THEN
            SELECT * INTO v_old FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
            FOR UPDATE;
            IF FOUND AND v_old.status <> 'running' THEN
                UPDATE booking_admin.jobs SET
                    name = p_name, handler = p_handler, payload = coalesce(p_payload, '{}'), tenant_id = p_tenant_id,
                    priority = coalesce(p_priority, 5),
                    scheduled_at = CASE WHEN p_job_key_mode = 'preserve_run_at' THEN scheduled_at ELSE coalesce(p_run_at, now()) END,
                    max_retries = p_max_retries, retry_delay_ms = p_retry_delay_ms,
                    retry_backoff_multiplier = p_retry_backoff_multiplier, max_delay_ms = p_max_delay_ms, jitter = p_jitter,
                    timeout_ms = p_timeout_ms, status = 'pending', retry_count = 0, error_message = NULL,
                    traceparent = v_traceparent, tracestate = v_tracestate, updated_at = now()
                WHERE id = v_old.id;
                PERFORM booking_admin.wake_workers_at_commit();
                RETURN v_old.id;
            ELSIF FOUND THEN
                -- Running: it cannot be changed under its worker. It hands its key over and will
                -- not be retried; the new job runs after it as scheduled.
                v_id := gen_random_uuid();
                UPDATE booking_admin.jobs SET unique_key = NULL, replaced_by = v_id,
                    max_retries = least(max_retries, retry_count), updated_at = now()
                WHERE id = v_old.id;
            END IF;
        END IF;
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, traceparent, tracestate)
        VALUES (coalesce(v_id, gen_random_uuid()), p_name, p_handler, coalesce(p_payload, '{}'), p_tenant_id,
                coalesce(p_priority, 5), coalesce(p_run_at, now()), p_max_retries, p_retry_delay_ms,
                p_retry_backoff_multiplier, p_max_delay_ms, p_jitter, p_timeout_ms, p_unique_key,
                v_traceparent, v_tracestate)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NOT NULL THEN
            PERFORM booking_admin.wake_workers_at_commit();
            RETURN v_id;
        END IF;
        IF p_job_key_mode = 'unsafe_dedupe' THEN
            -- The same logical job is already queued: hand back its id instead of a second copy.
            SELECT j.id INTO v_id FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed');
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job key % is being changed concurrently; retry', p_unique_key USING ERRCODE = '40001';
END $$;

-- Cancels the queued job (pending, or failed and awaiting a retry) that holds a job key: it
-- becomes cancelled, never runs, and frees the key. A running job is not interrupted: the
-- answer says so. {"cancelled": true|false, "job_id" (NULL: no job holds the key), "status"}.
CREATE FUNCTION booking_admin.cancel_job_by_key(p_unique_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
BEGIN
    IF p_unique_key IS NULL THEN
        RAISE EXCEPTION 'the job key must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v FROM booking_admin.jobs j
    WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('cancelled', false, 'job_id', NULL, 'status', NULL);
    ELSIF v.status = 'running' THEN
        RETURN jsonb_build_object('cancelled', false, 'job_id', v.id, 'status', 'running');
    END IF;
    UPDATE booking_admin.jobs SET status = 'cancelled', completed_at = clock_timestamp(),
        error_message = 'cancelled by its job key', updated_at = now()
    WHERE id = v.id;
    RETURN jsonb_build_object('cancelled', true, 'job_id', v.id, 'status', 'cancelled');
END $$;

-- Moves the queued job that holds a job key to another time (a retry's wait included) without
-- restating it; returns its id. P0002 when no job holds the key, 55000 when it is running.
CREATE FUNCTION booking_admin.reschedule_job_by_key(p_unique_key text, p_run_at timestamptz) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
BEGIN
    IF p_unique_key IS NULL OR p_run_at IS NULL OR NOT isfinite(p_run_at) THEN
        RAISE EXCEPTION 'the job key and a finite run_at are required' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v FROM booking_admin.jobs j
    WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no queued job holds the key %', p_unique_key USING ERRCODE = 'P0002';
    ELSIF v.status = 'running' THEN
        RAISE EXCEPTION 'job % (key %) is running', v.id, p_unique_key USING ERRCODE = '55000',
            HINT = 'enqueue_job with job_key_mode replace queues a new job for the key';
    END IF;
    UPDATE booking_admin.jobs SET scheduled_at = p_run_at, updated_at = now() WHERE id = v.id;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN v.id;
END $$;

-- Many jobs in one statement: a JSON array of objects whose keys are enqueue_job's arguments
-- without the p_ (name and handler required, every other key optional with enqueue_job's
-- default). Returns the jobs' ids in the array's order; an element whose unique_key is already
-- pending, running or failed (or repeats an earlier element's) gets that job's id. One insert
-- for the whole array and one wake-up, so its cost per job is the row and its indexes.
CREATE FUNCTION booking_admin.enqueue_jobs(p_jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
    v_bad bigint;
    -- The inserter, named once instead of by both column defaults of every row.
    v_me regrole := current_user::regrole;
    -- One trace context for the whole array.
    v_traceparent text;
    v_tracestate text;
BEGIN
    IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array of objects, not %', coalesce(jsonb_typeof(p_jobs), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    -- One pass over the array: ids are drawn before the insert so each element knows whether
    -- its row went in, and a malformed element (not an object, no name or handler, a key
    -- that is not one of enqueue_job's arguments: a misspelt one would silently become a
    -- default) is found on the way and refused after it, which rolls the insert back. Jobs
    -- without a unique key cannot conflict and skip ON CONFLICT's speculative insertion (a
    -- third of an insert's cost).
    WITH spec AS MATERIALIZED (
        SELECT s.id, s.name, s.handler, coalesce(s.payload, '{}') AS payload, s.tenant_id,
               coalesce(s.priority, 5) AS priority, coalesce(s.run_at, now()) AS scheduled_at,
               coalesce(s.max_retries, 3) AS max_retries, coalesce(s.retry_delay_ms, 1000) AS retry_delay_ms,
               coalesce(s.retry_backoff_multiplier, 2.0) AS retry_backoff_multiplier,
               coalesce(s.max_delay_ms, 300000) AS max_delay_ms, coalesce(s.jitter, true) AS jitter,
               coalesce(s.timeout_ms, 30000) AS timeout_ms, s.unique_key, s.ord,
               s.name IS NULL OR s.handler IS NULL
                   OR s.job - ARRAY['name', 'handler', 'payload', 'priority', 'run_at', 'max_retries', 'retry_delay_ms',
                                    'retry_backoff_multiplier', 'max_delay_ms', 'jitter', 'timeout_ms', 'tenant_id',
                                    'unique_key'] <> '{}' AS bad
        -- Side by side, element n, its fields and its id: no join, no per-element function call.
        FROM ROWS FROM (
                 jsonb_array_elements(p_jobs),
                 jsonb_to_recordset(p_jobs) AS (
                     name text, handler text, payload jsonb, priority integer, run_at timestamptz,
                     max_retries integer, retry_delay_ms integer, retry_backoff_multiplier numeric,
                     max_delay_ms integer, jitter boolean, timeout_ms integer, tenant_id uuid, unique_key text),
                 unnest(booking_admin.random_uuids(jsonb_array_length(p_jobs)))
             ) WITH ORDINALITY AS s(job, name, handler, payload, priority, run_at, max_retries, retry_delay_ms,
                                    retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, tenant_id,
                                    unique_key, id, ord)
    ), unkeyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NULL AND NOT bad
    ), keyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NOT NULL AND NOT bad ORDER BY ord
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id
    )
    SELECT array_agg(CASE WHEN spec.unique_key IS NULL OR keyed.id IS NOT NULL THEN spec.id END ORDER BY spec.ord),
           array_agg(spec.unique_key ORDER BY spec.ord) FILTER (WHERE spec.unique_key IS NOT NULL AND keyed.id IS NULL),
           min(spec.ord) FILTER (WHERE spec.bad)
    INTO v_ids, v_keys, v_bad
    FROM spec LEFT JOIN keyed ON keyed.id = spec.id;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'job % has no name or handler, or a key that is not one of enqueue_job''s arguments: %',
            v_bad, left((p_jobs->(v_bad::int - 1))::text, 200) USING ERRCODE = '22023';
    END IF;
    IF v_keys IS NOT NULL THEN
        -- The same logical jobs are already queued (by someone else, or earlier in this array):
        -- a new statement sees them, and their ids fill the gaps in order.
        SELECT array_agg(coalesce(i.id, (SELECT j.id FROM booking_admin.jobs j
                                         WHERE j.unique_key = v_keys[i.gap] AND j.status IN ('pending', 'running', 'failed')))
                         ORDER BY i.ord)
        INTO v_ids
        FROM (SELECT u.id, u.ord, count(*) FILTER (WHERE u.id IS NULL) OVER (ORDER BY u.ord) AS gap
              FROM unnest(v_ids) WITH ORDINALITY u(id, ord)) i;
    END IF;
    IF cardinality(v_keys) IS DISTINCT FROM cardinality(v_ids) THEN
        PERFORM booking_admin.wake_workers_at_commit();
    END IF;
    RETURN coalesce(v_ids, '{}');
END $$;

-- For external workers and the in-database runners alike.
CREATE FUNCTION booking_admin.claim_jobs(p_worker_id text, p_batch_size integer, p_handlers text[] DEFAULT NULL)
RETURNS SETOF booking_admin.jobs
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH picked AS (
        SELECT j.id FROM booking_admin.jobs j
        WHERE j.status IN ('pending', 'failed') AND j.scheduled_at <= now()
          AND (p_handlers IS NULL OR j.handler = ANY (p_handlers))
        ORDER BY j.priority, j.scheduled_at
        LIMIT greatest(p_batch_size, 0)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE booking_admin.jobs j
    SET status = 'running', locked_by = p_worker_id, locked_pid = pg_backend_pid(), locked_at = now(),
        heartbeat_at = now(), started_at = clock_timestamp(), updated_at = now()
    -- By primary key, whatever the table's statistics say: joined to picked, a freshly filled
    -- queue (not analyzed yet) was read whole by every claim.
    WHERE j.id = ANY (ARRAY(SELECT picked.id FROM picked))
    RETURNING j.*
$$;

-- A running job's row, locked, or the documented error for an unknown or finished one.
CREATE FUNCTION booking_admin.running_job(p_id uuid) RETURNS booking_admin.jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
BEGIN
    SELECT * INTO v FROM booking_admin.jobs WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002';
    END IF;
    IF v.status <> 'running' THEN
        RAISE EXCEPTION 'job % is %, not running', p_id, v.status USING ERRCODE = '55000',
            HINT = 'Its worker took too long and it was put back in the queue, or it was already finished.';
    END IF;
    RETURN v;
END $$;

-- Completes the given running jobs at once (the in-database runners record a whole batch with
-- one call); jobs no longer running are skipped. Returns how many were completed.
CREATE FUNCTION booking_admin.record_completions(p_ids uuid[], p_results jsonb[]) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH done AS (
        UPDATE booking_admin.jobs j
        SET status = 'completed', completed_at = clock_timestamp(), result = r.result, error_message = NULL,
            locked_by = NULL, locked_pid = NULL, updated_at = now()
        FROM unnest(p_ids, p_results) AS r(id, result)
        WHERE j.id = r.id AND j.status = 'running'
        RETURNING 1
    )
    SELECT count(*)::integer FROM done
$$;

CREATE FUNCTION booking_admin.complete_job(p_id uuid, p_result jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.running_job(p_id);
    PERFORM booking_admin.record_completions(ARRAY[p_id], ARRAY[p_result]);
END $$;

-- One failed attempt: retry after the backoff, or dead after max_retries. Also used for jobs
-- whose worker died (booking_admin.recover_stale_jobs).
CREATE FUNCTION booking_admin.record_failure(v booking_admin.jobs, p_error text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_dead boolean := v.retry_count >= v.max_retries;
    v_now timestamptz := clock_timestamp();
    v_retry_at timestamptz := CASE WHEN NOT v_dead THEN v_now + make_interval(secs => booking_admin.retry_delay_ms(
                                  v.retry_delay_ms, v.retry_backoff_multiplier::float8, v.retry_count,
                                  v.max_delay_ms, CASE WHEN v.jitter THEN random() END) / 1000.0) END;
BEGIN
    UPDATE booking_admin.jobs
    SET status = CASE WHEN v_dead THEN 'dead' ELSE 'failed' END,
        retry_count = v.retry_count + 1,
        scheduled_at = coalesce(v_retry_at, v.scheduled_at),
        completed_at = CASE WHEN v_dead THEN v_now END,
        error_message = p_error,
        last_errors = last_errors || jsonb_build_object('attempt', v.retry_count + 1, 'at', v_now, 'error', p_error,
                                                        'retry_at', v_retry_at),
        locked_by = NULL, locked_pid = NULL, updated_at = now()
    WHERE id = v.id;
    RETURN CASE WHEN v_dead THEN 'dead' ELSE 'failed' END;
END $$;

CREATE FUNCTION booking_admin.fail_job(p_id uuid, p_error text) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.record_failure(booking_admin.running_job(p_id), coalesce(p_error, 'failed'))
$$;

CREATE FUNCTION booking_admin.heartbeat_job(p_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.running_job(p_id);
    UPDATE booking_admin.jobs SET heartbeat_at = clock_timestamp() WHERE id = p_id;
END $$;

-- An external worker's batch calls: the given jobs, locked, must be running under its name, else
-- nothing is recorded and the first offending id is named: 22023 for NULL arguments, a NULL or
-- repeated id, or results/errors not matching the ids one to one; P0002 for an unknown id;
-- 55000 for a job that is not running or that another worker holds (its lease expired and it
-- was claimed again, or it was already finished).
CREATE FUNCTION booking_admin.lock_leased_jobs(p_worker_id text, p_ids uuid[], p_values anyarray) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
    v record;
BEGIN
    IF p_worker_id IS NULL OR p_ids IS NULL THEN
        RAISE EXCEPTION 'worker id and job ids must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_values IS NOT NULL AND cardinality(p_values) <> cardinality(p_ids) THEN
        RAISE EXCEPTION '% job ids but % results or errors', cardinality(p_ids), cardinality(p_values)
            USING ERRCODE = '22023';
    END IF;
    PERFORM FROM booking_admin.jobs j
    WHERE j.id = ANY (p_ids) AND j.status = 'running' AND j.locked_by = p_worker_id
    FOR UPDATE;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = cardinality(p_ids) THEN
        RETURN;
    END IF;
    SELECT u.id, u.ord, j.status, j.locked_by, count(*) OVER (PARTITION BY u.id) AS copies INTO v
    FROM unnest(p_ids) WITH ORDINALITY u(id, ord) LEFT JOIN booking_admin.jobs j ON j.id = u.id
    ORDER BY coalesce(u.id IS NOT NULL AND j.status = 'running' AND j.locked_by = p_worker_id
                      AND count(*) OVER (PARTITION BY u.id) = 1, false), u.ord
    LIMIT 1;
    IF v.id IS NULL OR v.copies > 1 THEN
        RAISE EXCEPTION 'job id % (at %) is NULL or given more than once', coalesce(v.id::text, 'NULL'), v.ord
            USING ERRCODE = '22023';
    ELSIF v.status IS NULL THEN
        RAISE EXCEPTION 'job % does not exist', v.id USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION 'job % is %, not running under worker %', v.id,
        CASE WHEN v.status = 'running' THEN 'held by ' || coalesce(v.locked_by, 'nobody') ELSE v.status END, p_worker_id
        USING ERRCODE = '55000',
              HINT = 'Its worker took too long and it was put back in the queue, or it was already finished.';
END $$;

-- Completes a batch of this worker's running jobs in one call (results: one per id, or NULL
-- for none); returns how many. Errors: booking_admin.lock_leased_jobs.
CREATE FUNCTION booking_admin.complete_jobs(p_worker_id text, p_ids uuid[], p_results jsonb[] DEFAULT NULL)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.lock_leased_jobs(p_worker_id, p_ids, p_results);
    SELECT booking_admin.record_completions(p_ids, p_results);
$$;

-- Records one failed attempt for each of a batch of this worker's running jobs (errors: one per
-- id, or NULL for 'failed'); returns each job's new status ('failed' or 'dead') in the ids'
-- order. Errors: booking_admin.lock_leased_jobs.
CREATE FUNCTION booking_admin.fail_jobs(p_worker_id text, p_ids uuid[], p_errors text[] DEFAULT NULL)
RETURNS text[]
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.lock_leased_jobs(p_worker_id, p_ids, p_errors);
    SELECT coalesce(array_agg(booking_admin.record_failure(j, coalesce(e.error, 'failed')) ORDER BY e.ord), '{}')
    FROM unnest(p_ids, p_errors) WITH ORDINALITY e(id, error, ord) JOIN booking_admin.jobs j ON j.id = e.id;
$$;

-- An external worker's one round trip per batch: records the previous batch's outcomes
-- (complete_jobs, fail_jobs; empty or NULL arrays record nothing) and claims the next batch
-- (claim_jobs), in one transaction. Same errors as those three; on an error nothing is
-- recorded and nothing claimed.
CREATE FUNCTION booking_admin.complete_and_claim_jobs(
    p_worker_id text,
    p_batch_size integer,
    p_handlers text[] DEFAULT NULL,
    p_completed uuid[] DEFAULT NULL,
    p_results jsonb[] DEFAULT NULL,
    p_failed uuid[] DEFAULT NULL,
    p_errors text[] DEFAULT NULL
) RETURNS SETOF booking_admin.jobs
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.complete_jobs(p_worker_id, p_completed, p_results) WHERE cardinality(p_completed) > 0;
    SELECT booking_admin.fail_jobs(p_worker_id, p_failed, p_errors) WHERE cardinality(p_failed) > 0;
    SELECT * FROM booking_admin.claim_jobs(p_worker_id, p_batch_size, p_handlers);
$$;

-- Running jobs whose worker is gone: the server restarted since the claim, an in-database
-- runner's process has exited, or an external worker's heartbeat is older than the job's
-- timeout (plus a 5-second grace for the gap between heartbeats). In-database runners do not
-- heartbeat: they enforce each job's timeout themselves, and a job waiting its turn in a batch
-- must not be taken away from a live runner. Each recovery counts as a failed attempt, so a job
-- that kills its worker ends up dead instead of running forever.
CREATE FUNCTION booking_admin.recover_stale_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
    n integer := 0;
BEGIN
    -- pg_stat_activity is read once per transaction and kept: read earlier in the caller's
    -- transaction (the scheduler asks whether a restore is running), it would not show a runner
    -- that started since and has claimed a job this statement sees, and that job would be
    -- declared dead. A fresh read shows every runner that claimed what this statement sees.
    PERFORM pg_stat_clear_snapshot();
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

-- How long each completed job ran, in the queue and in the history.
CREATE FUNCTION booking_admin.completed_job_durations(OUT ms float8) RETURNS SETOF float8
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT extract(epoch FROM completed_at - started_at)::float8 * 1000 FROM booking_admin.jobs WHERE status = 'completed'
    UNION ALL
    SELECT extract(epoch FROM completed_at - started_at)::float8 * 1000 FROM booking_admin.job_history
$$;

CREATE FUNCTION booking_admin.job_stats() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        -- Completed jobs are counted in the queue and in the history they move to.
        'by_status', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM booking_admin.jobs j WHERE j.status = s)
                                                 + CASE WHEN s = 'completed' THEN (SELECT count(*) FROM booking_admin.job_history) ELSE 0 END)
                      FROM unnest(ARRAY['pending', 'running', 'completed', 'failed', 'dead', 'cancelled']) s),
        'avg_duration_ms', (SELECT round(avg(d.ms)::numeric, 1) FROM booking_admin.completed_job_durations() d),
        'p95_duration_ms', (SELECT round((percentile_cont(0.95) WITHIN GROUP (ORDER BY d.ms))::numeric, 1)
                            FROM booking_admin.completed_job_durations() d),
        'oldest_pending_age_ms', (SELECT round((extract(epoch FROM now() - min(scheduled_at)) * 1000)::numeric)
                                  FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= now()))
$$;

CREATE FUNCTION booking_admin.dead_letter_jobs(p_limit integer DEFAULT 50, p_offset integer DEFAULT 0)
RETURNS SETOF booking_admin.jobs
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT * FROM booking_admin.jobs WHERE status = 'dead'
    ORDER BY updated_at DESC, id
    LIMIT greatest(coalesce(p_limit, 50), 0) OFFSET greatest(coalesce(p_offset, 0), 0)
$$;

CREATE FUNCTION booking_admin.process_dead_letter(p_action text, p_batch_size integer DEFAULT 100) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('retry', 'delete') THEN
        RAISE EXCEPTION 'action must be ''retry'' or ''delete'', not %', coalesce(quote_literal(p_action), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF p_action = 'retry' THEN
        WITH batch AS (SELECT id FROM booking_admin.jobs WHERE status = 'dead' ORDER BY updated_at, id
                       LIMIT p_batch_size FOR UPDATE SKIP LOCKED)
        UPDATE booking_admin.jobs j
        SET status = 'pending', retry_count = 0, scheduled_at = now(), completed_at = NULL, updated_at = now()
        FROM batch WHERE j.id = batch.id;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            PERFORM booking_admin.wake_workers_at_commit();
        END IF;
        RETURN jsonb_build_object('requeued', n, 'deleted', 0);
    END IF;
    WITH batch AS (SELECT id FROM booking_admin.jobs WHERE status = 'dead' ORDER BY updated_at, id
                   LIMIT p_batch_size FOR UPDATE SKIP LOCKED)
    DELETE FROM booking_admin.jobs j USING batch WHERE j.id = batch.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN jsonb_build_object('requeued', 0, 'deleted', n);
END $$;

-- Built-in handlers ---------------------------------------------------------------------------

-- Retention: completed and cancelled jobs older than completed_jobs_days (default 7), dead ones
-- older than dead_jobs_days (30), and maintenance history older than history_days (30). (Each
-- feature keeps its own data: expired idempotency records are booking's, see sql/booking.sql.)
CREATE FUNCTION booking_admin.handle_data_cleanup(p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_jobs integer;
    v_cancelled integer;
    v_dead integer;
    v_history integer;
BEGIN
    DELETE FROM booking_admin.jobs WHERE status = 'completed'
        AND completed_at < now() - make_interval(days => coalesce((p_payload->>'completed_jobs_days')::int, 7));
    GET DIAGNOSTICS v_jobs = ROW_COUNT;
    DELETE FROM booking_admin.jobs WHERE status = 'cancelled'
        AND completed_at < now() - make_interval(days => coalesce((p_payload->>'completed_jobs_days')::int, 7));
    GET DIAGNOSTICS v_cancelled = ROW_COUNT;
    DELETE FROM booking_admin.jobs WHERE status = 'dead'
        AND updated_at < now() - make_interval(days => coalesce((p_payload->>'dead_jobs_days')::int, 30));
    GET DIAGNOSTICS v_dead = ROW_COUNT;
    DELETE FROM booking_admin.maintenance_executions
    WHERE executed_at < now() - make_interval(days => coalesce((p_payload->>'history_days')::int, 30));
    GET DIAGNOSTICS v_history = ROW_COUNT;
    RETURN jsonb_build_object('completed_jobs', v_jobs, 'cancelled_jobs', v_cancelled, 'dead_jobs', v_dead,
                              'maintenance_history', v_history);
END $$;

-- Every feature registers its handlers and scheduled operations the same way, with a plain
-- INSERT at the end of its own SQL file (after this file in the install order): the queue and
-- the scheduler know no feature.
INSERT INTO booking_admin.job_handlers (handler, kind, function, description) VALUES
    ('data_cleanup', 'function', 'booking_admin.handle_data_cleanup', 'Retention of old jobs and maintenance history'),
    ('top_level_sql', 'top_level', NULL, 'payload {"sql": "..."}: one statement run at top level outside a transaction block (VACUUM, CREATE INDEX CONCURRENTLY, ...)');

-- Maintenance scheduler ------------------------------------------------------------------------

CREATE TABLE booking_admin.scheduler_job_info (
    job_name             text PRIMARY KEY,
    description          text NOT NULL,
    -- function(settings jsonb) RETURNS integer, schema-qualified, resolved when it runs (text:
    -- pg_upgrade refuses reg* columns in user tables).
    function             text NOT NULL CHECK (function ~ '^([a-z_][a-z0-9_$]*|"[^"]+")\.([a-z_][a-z0-9_$]*|"[^"]+")$'),
    settings             jsonb NOT NULL DEFAULT '{}',
    -- Every delay_ms after the last run, unless cron is set; also the longest wait before a
    -- failed run is retried.
    delay_ms             integer NOT NULL DEFAULT 60000 CHECK (delay_ms >= 100),
    max_retries          integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    timeout_ms           integer NOT NULL DEFAULT 30000 CHECK (timeout_ms > 0),
    enabled              boolean NOT NULL DEFAULT true,
    status               text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'failed')),
    last_run_at          timestamptz,
    next_run_at          timestamptz NOT NULL DEFAULT now(),
    last_duration_ms     integer,
    last_error           text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    run_count            bigint NOT NULL DEFAULT 0,
    server_instance      text,
    -- The operation takes strong locks: inside a freeze window (sql/freeze.sql) the scheduler
    -- defers it to the window's end, and a manual run is refused or deferred.
    respects_freeze      boolean NOT NULL DEFAULT false,
    -- A five-field cron expression read on the wall clock of `timezone` (src/jobs/cron.rs):
    -- the operation runs at each of its times instead of every delay_ms. Its times follow the
    -- extension's clock (booking_admin.scheduler_clock()), so booking_engine.now moves them.
    cron                 text CHECK (cron IS NULL OR cron = booking_admin.check_cron(cron)),
    timezone             text NOT NULL DEFAULT 'UTC' CHECK (booking.is_valid_timezone(timezone))
);
COMMENT ON TABLE booking_admin.scheduler_job_info IS
    'One row per scheduled operation: function(settings jsonb) RETURNS integer (rows processed) is called every delay_ms, or at the times of its cron expression in its time zone. Insert a row to schedule a new operation.';
-- The extension seeds the builtin operations itself. pg_dump keeps every row, and a restore
-- that meets a seeded row updates it instead of failing on the duplicate name, so an operator's
-- changes to builtin operations survive a dump and restore.
CREATE TRIGGER scheduler_job_info_restore BEFORE INSERT ON booking_admin.scheduler_job_info
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('job_name');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.scheduler_job_info', '');

-- The clock cron schedules follow: booking_engine.now when it is set (tests and demos move it),
-- else the real time. Interval schedules keep the server's clock: a fixed booking_engine.now
-- must not stop the maintenance every database needs.
CREATE FUNCTION booking_admin.scheduler_clock() RETURNS timestamptz
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('booking_engine.now', true), '')::timestamptz, clock_timestamp())
$$;

-- A cron schedule set or changed takes effect at once: the next run is its next time from now.
CREATE FUNCTION booking_admin.scheduler_job_cron() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.cron IS NOT NULL THEN
        NEW.cron := booking_admin.check_cron(NEW.cron);
        NEW.next_run_at := coalesce(booking_admin.cron_next(NEW.cron, NEW.timezone, booking_admin.scheduler_clock()), 'infinity');
    ELSIF TG_OP = 'UPDATE' AND OLD.cron IS NOT NULL THEN
        -- Back to an interval, from the server's clock.
        NEW.next_run_at := clock_timestamp() + make_interval(secs => NEW.delay_ms / 1000.0);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER scheduler_job_info_cron BEFORE INSERT OR UPDATE OF cron, timezone ON booking_admin.scheduler_job_info
    FOR EACH ROW EXECUTE FUNCTION booking_admin.scheduler_job_cron();

-- The operations due now, in the order they fell due: the scheduler worker's question each
-- round (interval schedules on the server's clock, cron schedules on scheduler_clock()).
CREATE FUNCTION booking_admin.due_operations() RETURNS TABLE (job_name text, timeout_ms integer)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.job_name, j.timeout_ms FROM booking_admin.scheduler_job_info j
    WHERE j.enabled
      AND j.next_run_at <= CASE WHEN j.cron IS NULL THEN clock_timestamp() ELSE booking_admin.scheduler_clock() END
    ORDER BY j.next_run_at, j.job_name
$$;

-- Milliseconds until the next operation falls due (NULL: none is enabled).
CREATE FUNCTION booking_admin.scheduler_wait_ms() RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (extract(epoch FROM min(j.next_run_at - CASE WHEN j.cron IS NULL THEN clock_timestamp()
                                                        ELSE booking_admin.scheduler_clock() END)) * 1000)::int8
    FROM booking_admin.scheduler_job_info j WHERE j.enabled
$$;

CREATE TABLE booking_admin.maintenance_executions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation         text NOT NULL,
    executed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    status            text NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    processed_count   integer NOT NULL DEFAULT 0,
    error_message     text,
    execution_time_ms integer NOT NULL,
    triggered_by      text NOT NULL CHECK (triggered_by IN ('scheduler', 'manual'))
);
CREATE INDEX maintenance_executions_executed_idx ON booking_admin.maintenance_executions (executed_at DESC);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.maintenance_executions', '');

-- settings.retention_days and settings.max_records bound the execution history.
CREATE FUNCTION booking_admin.op_cleanup_history(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
    m integer;
BEGIN
    DELETE FROM booking_admin.maintenance_executions
    WHERE executed_at < booking.clock_now() - make_interval(days => coalesce((p_settings->>'retention_days')::int, 30));
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM booking_admin.maintenance_executions WHERE id IN (
        SELECT id FROM booking_admin.maintenance_executions ORDER BY executed_at DESC, id DESC
        OFFSET coalesce((p_settings->>'max_records')::int, 10000));
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('cleanup-history', 'Delete old maintenance history', 'booking_admin.op_cleanup_history', '{"retention_days": 30, "max_records": 10000}', 86400000, 3, 30000);

-- Partition maintenance (sql/partitions.sql), for every feature's partitioned tables: every 10
-- minutes, which also spreads the rows of a large default partition over several short runs.
CREATE FUNCTION booking_admin.op_maintain_partitions(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(jsonb_array_length(t -> 'created') + jsonb_array_length(t -> 'dropped')), 0)::integer
    FROM jsonb_array_elements(booking_admin.maintain_partitions() -> 'tables') t
    WHERE t ? 'created'
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('partition-maintenance', 'Create partitions ahead, move rows out of default partitions, drop partitions past retention',
     'booking_admin.op_maintain_partitions', '{}', 600000, 3, 300000);

-- settings: archive_after_minutes (60), batch_size (10000 jobs per run, oldest first).
CREATE FUNCTION booking_admin.op_archive_jobs(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_columns text;
    n integer;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_columns
    FROM pg_attribute a WHERE a.attrelid = 'booking_admin.job_history'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format(
        'WITH moved AS (
             DELETE FROM booking_admin.jobs j
             WHERE j.id IN (SELECT o.id FROM booking_admin.jobs o
                            WHERE o.status = ''completed'' AND o.completed_at < clock_timestamp() - $1
                            ORDER BY o.completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING %s)
         INSERT INTO booking_admin.job_history (%s) SELECT %s FROM moved', v_columns, v_columns, v_columns)
    USING make_interval(mins => coalesce((p_settings ->> 'archive_after_minutes')::int, 60)),
          coalesce((p_settings ->> 'batch_size')::int, 10000);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('archive-jobs', 'Move completed jobs from the queue into the partitioned job history', 'booking_admin.op_archive_jobs',
     '{"archive_after_minutes": 60, "batch_size": 10000}', 60000, 3, 60000);

CREATE FUNCTION booking_admin.maintenance_json(e booking_admin.maintenance_executions, p_description text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'operation', e.operation, 'description', p_description,
        'executedAt', to_char(e.executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'status', e.status, 'processedCount', e.processed_count, 'errorMessage', e.error_message,
        'executionTimeMs', e.execution_time_ms)
$$;

-- Runs one operation now, recorded in maintenance_executions. Holds a transaction-level
-- advisory lock per operation, so a manual run and the scheduler never overlap.
CREATE FUNCTION booking_admin.run_maintenance(p_operation text, p_triggered_by text DEFAULT 'manual') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    j booking_admin.scheduler_job_info;
    e booking_admin.maintenance_executions;
    v_function regprocedure;
    v_started timestamptz := clock_timestamp();
    v_count integer := 0;
    v_error text;
    v_until timestamptz;
BEGIN
    IF p_triggered_by IS NULL OR p_triggered_by NOT IN ('scheduler', 'manual') THEN
        RAISE EXCEPTION 'triggered_by must be ''scheduler'' or ''manual''' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO j FROM booking_admin.scheduler_job_info WHERE job_name = p_operation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown maintenance operation %', coalesce(quote_literal(p_operation), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'One of: ' || (SELECT string_agg(job_name, ', ' ORDER BY job_name) FROM booking_admin.scheduler_job_info);
    END IF;
    IF j.respects_freeze THEN
        -- The scheduler has nobody to refuse: it defers. A manual run meets the window's action.
        v_until := CASE WHEN p_triggered_by = 'scheduler'
                        THEN (booking_admin.freeze_state(NULL) ->> 'until')::timestamptz
                        ELSE booking_admin.freeze_gate(format('maintenance operation %s', p_operation)) END;
        IF v_until IS NOT NULL THEN
            -- At least 5 seconds ahead, as booking_admin.defer_job (a held clock must not spin it).
            UPDATE booking_admin.scheduler_job_info SET next_run_at = greatest(v_until, clock_timestamp() + interval '5 seconds')
            WHERE job_name = p_operation;
            RETURN jsonb_build_object('success', false, 'deferred_until', v_until,
                                      'message', format('Operation %s is deferred by a freeze window until %s', p_operation, v_until),
                                      'data', NULL);
        END IF;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('booking_engine.maintenance'), hashtext(p_operation)) THEN
        RETURN jsonb_build_object('success', false, 'message', format('Operation %s is already running', p_operation),
                                  'data', NULL);
    END IF;
    BEGIN
        v_function := to_regprocedure(j.function || '(jsonb)');
        IF v_function IS NULL THEN
            RAISE EXCEPTION 'function %(jsonb) does not exist', j.function USING ERRCODE = '42883';
        END IF;
        EXECUTE format('SELECT %s($1)', v_function::oid::regproc) INTO v_count USING j.settings;
    EXCEPTION WHEN query_canceled OR others THEN
        v_error := SQLERRM;
    END;
    INSERT INTO booking_admin.maintenance_executions (operation, executed_at, status, processed_count, error_message,
                                                      execution_time_ms, triggered_by)
    VALUES (p_operation, v_started, CASE WHEN v_error IS NULL THEN 'SUCCESS' ELSE 'FAILED' END,
            coalesce(v_count, 0), v_error,
            round(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer, p_triggered_by)
    RETURNING * INTO e;
    UPDATE booking_admin.scheduler_job_info
    SET status = CASE WHEN v_error IS NULL THEN 'idle' ELSE 'failed' END,
        last_run_at = v_started, last_duration_ms = e.execution_time_ms, last_error = v_error,
        consecutive_failures = CASE WHEN v_error IS NULL THEN 0 ELSE consecutive_failures + 1 END,
        run_count = run_count + 1,
        server_instance = coalesce(inet_server_addr()::text, 'local') || ':' || current_setting('port'),
        -- A failure is retried sooner, with backoff, up to max_retries times in a row; then the
        -- next time of its cron schedule, or its delay.
        next_run_at = CASE
            WHEN v_error IS NOT NULL AND consecutive_failures < max_retries
            THEN CASE WHEN cron IS NULL THEN clock_timestamp() ELSE booking_admin.scheduler_clock() END
                 + make_interval(secs => booking_admin.retry_delay_ms(1000, 2, consecutive_failures, delay_ms, NULL) / 1000.0)
            WHEN cron IS NOT NULL
            THEN coalesce(booking_admin.cron_next(cron, timezone, booking_admin.scheduler_clock()), 'infinity')
            ELSE clock_timestamp() + make_interval(secs => delay_ms / 1000.0) END
    WHERE job_name = p_operation;
    RETURN jsonb_build_object(
        'success', v_error IS NULL,
        'message', CASE WHEN v_error IS NULL THEN 'Operation completed successfully' ELSE 'Operation failed' END,
        'data', booking_admin.maintenance_json(e, j.description));
END $$;

CREATE FUNCTION booking_admin.scheduler_job(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT to_jsonb(j) INTO v
    FROM booking_admin.scheduler_job_info j WHERE j.job_name = p_name;
    IF v IS NULL THEN
        RAISE EXCEPTION 'unknown scheduler job %', coalesce(quote_literal(p_name), 'NULL') USING ERRCODE = 'P0002';
    END IF;
    RETURN v;
END $$;

CREATE FUNCTION booking_admin.scheduler_status() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        'workers', booking_admin.worker_status(),
        'jobs', coalesce((SELECT jsonb_agg(booking_admin.scheduler_job(job_name) ORDER BY job_name)
                          FROM booking_admin.scheduler_job_info), '[]'))
$$;

CREATE FUNCTION booking_admin.maintenance_history(p_limit integer DEFAULT 50, p_offset integer DEFAULT 0)
RETURNS SETOF booking_admin.maintenance_executions
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT * FROM booking_admin.maintenance_executions
    ORDER BY executed_at DESC, id DESC
    LIMIT greatest(coalesce(p_limit, 50), 0) OFFSET greatest(coalesce(p_offset, 0), 0)
$$;

-- NULL leaves a setting as it is. The scheduler reads the table every loop, so a change takes
-- effect at its next wake-up; the worker is woken at commit. p_cron sets a cron schedule (in
-- p_timezone, or the operation's zone), '' returns the operation to its delay.
CREATE FUNCTION booking_admin.configure_scheduler_job(p_name text, p_delay_ms integer DEFAULT NULL,
                                                      p_max_retries integer DEFAULT NULL,
                                                      p_timeout_ms integer DEFAULT NULL,
                                                      p_enabled boolean DEFAULT NULL,
                                                      p_cron text DEFAULT NULL,
                                                      p_timezone text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    IF p_delay_ms < 100 OR p_max_retries < 0 OR p_timeout_ms < 1 THEN
        RAISE EXCEPTION 'delay_ms must be at least 100, max_retries at least 0, timeout_ms at least 1'
            USING ERRCODE = '22023';
    END IF;
    IF p_timezone IS NOT NULL AND NOT booking.is_valid_timezone(p_timezone) THEN
        RAISE EXCEPTION 'time zone "%" not recognized', p_timezone USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.scheduler_job_info
    SET delay_ms = coalesce(p_delay_ms, delay_ms),
        max_retries = coalesce(p_max_retries, max_retries),
        timeout_ms = coalesce(p_timeout_ms, timeout_ms),
        enabled = coalesce(p_enabled, enabled),
        -- (The cron trigger sets the next run of a cron schedule.)
        cron = CASE WHEN p_cron IS NULL THEN cron ELSE nullif(btrim(p_cron), '') END,
        timezone = coalesce(p_timezone, timezone),
        -- A shorter delay applies from now, not after the old, longer wait.
        next_run_at = CASE WHEN cron IS NULL AND p_cron IS NULL
                           THEN least(next_run_at, clock_timestamp() + make_interval(secs => coalesce(p_delay_ms, delay_ms) / 1000.0))
                           ELSE next_run_at END
    WHERE job_name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown scheduler job %', coalesce(quote_literal(p_name), 'NULL') USING ERRCODE = 'P0002';
    END IF;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN booking_admin.scheduler_job(p_name);
END $$;
