-- A runner's claim ($1 runner name, $2 batch size) of jobs whose handler is registered here,
-- with what it needs to run each, and why a job must not run at all (recorded as its failure):
-- a handler function that does not resolve, or a role the enqueuer could not act as. Functions
-- are resolved once per handler and roles checked once per (runs as, enqueued by) pair, not
-- once per job: a batch is typically one handler and one pair. A job whose payload asks to
-- respect the freeze calendar ("respect_freeze": true, the sandbox's index changes) comes with
-- the end of the freeze in force for it, if any: the runner puts it back until then.
WITH h AS (
    SELECT handler, kind, function,
           -- A name, not an oid, is stored (see job_handlers.function); textcat is strict, so no
           -- function means no lookup.
           pg_catalog.to_regprocedure(pg_catalog.textcat(function, '(jsonb)'))::oid::regproc::text AS name
    FROM booking_admin.job_handlers
), j AS (
    SELECT * FROM booking_admin.claim_jobs($1, $2::int, ARRAY(SELECT handler FROM h))
), pairs AS (
    SELECT p.created_by, p.enqueued_by,
           CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = p.created_by)
                  OR NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = p.enqueued_by)
                THEN format('42501: refused: the role the job runs as (%s) or that enqueued it (%s) no longer exists',
                            p.created_by::oid, p.enqueued_by::oid)
                WHEN NOT pg_catalog.pg_has_role(p.enqueued_by, p.created_by, 'MEMBER')
                THEN format('42501: refused: %s enqueued the job but cannot act as %s', p.enqueued_by, p.created_by)
           END AS refusal
    FROM (SELECT DISTINCT created_by, enqueued_by FROM j) p
)
SELECT j.id, h.kind = 'top_level', h.name, j.payload, j.timeout_ms, j.created_by::oid, j.name, j.handler,
       CASE WHEN h.kind = 'function' AND h.name IS NULL
            THEN format('42883: handler function %s(jsonb) does not exist', h.function)
            ELSE pairs.refusal
       END,
       CASE WHEN j.payload -> 'respect_freeze' = 'true'
            THEN (booking_admin.freeze_state(j.tenant_id) ->> 'until')::timestamptz::text END
FROM j JOIN h USING (handler) JOIN pairs USING (created_by, enqueued_by)
ORDER BY j.priority, j.scheduled_at
