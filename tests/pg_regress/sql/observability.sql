-- Observability: recording at commit, the SQL readers, bad input, the health report.
CREATE FUNCTION pg_temp.scans() RETURNS float8 LANGUAGE sql AS $$
    SELECT coalesce(sum(value), 0) FROM booking_admin.metrics() WHERE metric = 'booking_pii_scans_total'
$$;
SELECT pg_temp.scans() AS before \gset
-- Counted when the transaction commits, not before, and never when it rolls back.
BEGIN;
SELECT booking_admin.metrics_record('booking_pii_scans', '{}', 2);
SELECT pg_temp.scans() - :before AS inside_the_transaction;
COMMIT;
SELECT pg_temp.scans() - :before AS after_commit;
BEGIN;
SELECT booking_admin.metrics_record('booking_pii_scans', '{}', 5);
ROLLBACK;
SELECT pg_temp.scans() - :before AS after_rollback;
-- A subtransaction rolled back forgets its counts; the rest of the transaction keeps its own.
BEGIN;
SELECT booking_admin.metrics_record('booking_pii_scans', '{}', 1);
SAVEPOINT s;
SELECT booking_admin.metrics_record('booking_pii_scans', '{}', 10);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pg_temp.scans() - :before AS after_savepoint_rollback;

-- Bad input: clear errors, never XX000.
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('no_such_metric', '{}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('booking_jobs', '{pending}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('booking_events', '{a,b}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('booking_events', '{a}', -1)$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('booking_events', '{a}', 1.5)$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_record('booking_events', '{a}', 'NaN')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_text('json')$$);
SELECT booking_admin.metrics_record('booking_events', NULL) IS NULL AS strict_on_null;

-- The exposition: HELP and TYPE for every metric, OpenMetrics ends with # EOF.
SELECT count(*) FILTER (WHERE line LIKE '# TYPE booking_%') AS types,
       count(*) FILTER (WHERE line LIKE '# HELP booking_%') AS helps
FROM regexp_split_to_table(booking_admin.metrics_text(), E'\n') line;
SELECT right(booking_admin.metrics_text('openmetrics'), 6) = E'# EOF\n' AS openmetrics_eof,
       position('# EOF' IN booking_admin.metrics_text()) = 0 AS prometheus_no_eof;
-- The SQL gauges of this database answered.
SELECT value FROM booking_admin.metrics() WHERE metric = 'booking_metrics_sql_up';
SELECT labels ->> 'status' AS status FROM booking_admin.metrics() WHERE metric = 'booking_jobs' ORDER BY 1;

-- The health report: every component has a status, the overall one is the worst.
SELECT jsonb_object_keys(booking_admin.health() -> 'components') AS component ORDER BY 1;
SELECT h ->> 'status' IN ('ok', 'warning', 'critical') AS overall_known,
       NOT EXISTS (SELECT FROM jsonb_each(h -> 'components') c WHERE c.value ->> 'status' NOT IN ('ok', 'warning', 'critical'))
           AS components_known
FROM booking_admin.health() h;

-- Who may call what: PUBLIC nothing, booking_operator the readers only.
SELECT p.proname, has_function_privilege('booking_operator', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p WHERE p.pronamespace = 'booking_admin'::regnamespace
  AND p.proname IN ('metrics', 'metrics_text', 'metrics_record', 'health', 'dashboard_data', 'metrics_on_event')
ORDER BY 1;
