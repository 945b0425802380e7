-- A runner's claim ($1 runner name, $2 batch size) of jobs whose handler is registered here,
-- with what it needs to run each, and why a job must not run at all (recorded as its failure):
-- a handler function that does not resolve, or a role the enqueuer could not act as. Handler
-- functions are resolved once per handler, not once per job.
WITH h AS (
    SELECT handler, kind, function,
           -- A name, not an oid, is stored (see job_handlers.function); textcat is strict, so no
           -- function means no lookup.
           pg_catalog.to_regprocedure(pg_catalog.textcat(function, '(jsonb)'))::oid::regproc::text AS name
    FROM booking_admin.job_handlers
)
SELECT j.id, h.kind = 'top_level', h.name, j.payload, j.timeout_ms, j.created_by::oid, j.name, j.handler,
       CASE WHEN h.kind = 'function' AND h.name IS NULL
            THEN format('42883: handler function %s(jsonb) does not exist', h.function)
            WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = j.created_by)
              OR NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = j.enqueued_by)
            THEN format('42501: refused: the role the job runs as (%s) or that enqueued it (%s) no longer exists',
                        j.created_by::oid, j.enqueued_by::oid)
            WHEN NOT pg_catalog.pg_has_role(j.enqueued_by, j.created_by, 'MEMBER')
            THEN format('42501: refused: %s enqueued the job but cannot act as %s', j.enqueued_by, j.created_by)
       END
FROM booking_admin.claim_jobs($1, $2::int, ARRAY(SELECT handler FROM h)) j
JOIN h USING (handler)
ORDER BY j.priority, j.scheduled_at
