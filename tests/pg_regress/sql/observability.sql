-- Observability: recording at commit, the SQL readers, bad input, the health report.
CREATE FUNCTION pg_temp.scans() RETURNS float8 LANGUAGE sql AS $$
    SELECT coalesce(sum(value), 0) FROM booking_admin.metrics() WHERE metric = 'booking_pii_scans_total'
$$;
SELECT pg_temp.scans() AS before \gset
-- Counted when the transaction commits, not before, and never when it rolls back.
BEGIN;
SELECT booking.metrics_record('booking_pii_scans', '{}', 2);
SELECT pg_temp.scans() - :before AS inside_the_transaction;
COMMIT;
SELECT pg_temp.scans() - :before AS after_commit;
BEGIN;
SELECT booking.metrics_record('booking_pii_scans', '{}', 5);
ROLLBACK;
SELECT pg_temp.scans() - :before AS after_rollback;
-- A subtransaction rolled back forgets its counts; the rest of the transaction keeps its own.
BEGIN;
SELECT booking.metrics_record('booking_pii_scans', '{}', 1);
SAVEPOINT s;
SELECT booking.metrics_record('booking_pii_scans', '{}', 10);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pg_temp.scans() - :before AS after_savepoint_rollback;

-- Bad input: clear errors, never XX000.
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('no_such_metric', '{}')$$);
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('booking_jobs', '{pending}')$$);
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('booking_events', '{a,b}')$$);
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('booking_events', '{a}', -1)$$);
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('booking_events', '{a}', 1.5)$$);
SELECT regress.sqlstate_of($$SELECT booking.metrics_record('booking_events', '{a}', 'NaN')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.metrics_text('json')$$);
SELECT booking.metrics_record('booking_events', NULL) IS NULL AS strict_on_null;

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
SELECT p.oid::regproc AS function, has_function_privilege('booking_operator', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p WHERE p.pronamespace IN ('booking_admin'::regnamespace, 'booking'::regnamespace)
  AND p.proname IN ('metrics', 'metrics_text', 'metrics_record', 'health', 'dashboard_data', 'metrics_on_event')
ORDER BY p.oid::regproc::text;

-- Alert rules: bad rules are refused with clear errors.
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES ('w', 'high', 'DELETE FROM booking.tenants')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES ('w', 'high', 'SELECT 1; SELECT 2')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES ('w', 'high', 'WITH d AS (DELETE FROM booking.tenants RETURNING 1) SELECT * FROM d')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES ('w', 'high', 'SELEC 1')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity) VALUES ('w', 'high')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold) VALUES ('w', 'high', 'no_such_metric', '>', 1)$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold) VALUES ('w', 'high', 'booking_jobs', '>', 'NaN')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold) VALUES ('w', 'high', 'booking_jobs', '~', 1)$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold, for_duration) VALUES ('w', 'high', 'booking_jobs', '>', 1, '-5 minutes')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold) VALUES ('w', 'urgent', 'booking_jobs', '>', 1)$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.silence_alerts('{}', now() + interval '1 hour')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.silence_alerts('{"alertname": "x"}', now() - interval '1 hour')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.acknowledge_alert('nope')$$);

-- Rules that pass the parser but misbehave at run time are stopped by the sandbox and reported;
-- the metric rule sees the job queue gauges.
SET booking_engine.rule_timeout_ms = 200;
INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES
    ('sleeps', 'low', 'SELECT 1 AS value FROM pg_sleep(30)'),
    ('writes', 'low', 'SELECT nextval(''booking_admin.alert_history_id_seq'') AS value');
INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold, labels, annotations) VALUES
    ('no_dead_jobs', 'medium', 'booking_jobs', '=', 0, '{"team": "ops"}', '{"summary": "{{ $labels.status }} is {{ $value }}"}');
SELECT r ->> 'rules_evaluated' AS rules, r ->> 'firing' AS firing, r ->> 'notifications' AS notifications,
       jsonb_path_query_array(r -> 'errors', '$[*].rule') AS failed_rules,
       (SELECT array_agg(left(e ->> 'error', 40) ORDER BY e ->> 'rule') FROM jsonb_array_elements(r -> 'errors') e) AS why
FROM booking_admin.evaluate_alert_rules() r;
SELECT labels ->> 'status' AS status, labels ->> 'team' AS team, state, annotations ->> 'summary' AS summary
FROM booking_admin.alert_instances ORDER BY 1;
SELECT event_type, payload ->> 'rule' AS rule, payload -> 'labels' ->> 'status' AS status
FROM booking.events WHERE event_type LIKE 'alert.%' ORDER BY 3;
SELECT value FROM booking_admin.metrics() WHERE metric = 'booking_alerts_firing' AND labels ->> 'severity' = 'medium';
SELECT booking_admin.init_default_alert_rules() AS defaults_added, booking_admin.init_default_alert_rules() AS again;
-- The default rules all run (the two broken rules above removed).
DELETE FROM booking_admin.alert_rules WHERE name IN ('sleeps', 'writes');
SELECT booking_admin.evaluate_alert_rules() -> 'errors' AS errors_with_defaults;

-- The performance summary: a score 0-100 from weighted factors, optimizations, issues.
SELECT (s ->> 'health_score')::numeric BETWEEN 0 AND 100 AS score_in_range,
       (SELECT sum((f ->> 'weight')::int) FROM jsonb_array_elements(s -> 'factors') f) AS total_weight,
       (SELECT array_agg(f ->> 'factor' ORDER BY f ->> 'factor') FROM jsonb_array_elements(s -> 'factors') f) AS factors,
       jsonb_typeof(s -> 'active_optimizations') AS optimizations,
       (SELECT count(*) FROM jsonb_array_elements(s -> 'pending_issues') i
        WHERE i ->> 'kind' = 'alert' AND i ->> 'name' = 'no_dead_jobs') AS firing_alert_issues
FROM booking_admin.performance_summary() s;

-- An operator's rule runs as the operator, even when the scheduler (the owner) evaluates it.
CREATE ROLE regress_alert_operator IN ROLE booking_operator;
SET ROLE regress_alert_operator;
INSERT INTO booking_admin.alert_rules (name, severity, condition_sql) VALUES ('reads_authid', 'low', 'SELECT 1 AS value FROM pg_authid');
RESET ROLE;
SELECT run_as FROM booking_admin.alert_rules WHERE name = 'reads_authid';
SELECT left(e ->> 'error', 45) AS error FROM jsonb_array_elements(booking_admin.evaluate_alert_rules() -> 'errors') e
WHERE e ->> 'rule' = 'reads_authid';
DELETE FROM booking_admin.alert_rules WHERE name = 'reads_authid';
DROP ROLE regress_alert_operator;

-- The SLA report over a known history: snapshots every 5 minutes for an hour, one of them
-- critical; 100 operations of which 10 refused (across a restart that reset the counter);
-- slot queries whose 95th percentile falls in the 25 ms bucket.
DELETE FROM booking_admin.metrics_history;
INSERT INTO booking_admin.metrics_history (at, metric, labels, value)
SELECT clock_timestamp() - make_interval(mins => 60 - 5 * i), 'health',
       jsonb_build_object('status', CASE WHEN i = 6 THEN 'critical' ELSE 'ok' END), 1
FROM generate_series(0, 12) i;
INSERT INTO booking_admin.metrics_history (at, metric, labels, value) VALUES
    (clock_timestamp() - interval '60 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 1000),
    (clock_timestamp() - interval '30 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 1050),
    (clock_timestamp() - interval '1 minute', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 40),
    (clock_timestamp() - interval '60 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "conflict"}', 5),
    (clock_timestamp() - interval '1 minute', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "conflict"}', 15),
    (clock_timestamp() - interval '60 minutes', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "0.01"}', 0),
    (clock_timestamp() - interval '1 minute', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "0.01"}', 90),
    (clock_timestamp() - interval '60 minutes', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "0.025"}', 0),
    (clock_timestamp() - interval '1 minute', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "0.025"}', 97),
    (clock_timestamp() - interval '60 minutes', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "+Inf"}', 0),
    (clock_timestamp() - interval '1 minute', 'booking_slot_query_duration_seconds_bucket', '{"function": "f", "le": "+Inf"}', 100);
SELECT r -> 'availability' AS availability, r -> 'refusal_rate' AS refusal_rate, r -> 'slot_query_p95_ms' AS p95
FROM booking_admin.sla_report('2 hours', 0.99, 20, 0.05) r;
SELECT regress.sqlstate_of($$SELECT booking_admin.sla_report('-1 day')$$);
-- The dashboard's charts read such a history hour by hour, snapshot to snapshot: 50 bookings,
-- then 40 after a restart; 10 refusals of a series seen from the first snapshot on and 3 of one
-- that appeared since (counted from zero).
DELETE FROM booking_admin.metrics_history;
INSERT INTO booking_admin.metrics_history (at, metric, labels, value) VALUES
    (now() - interval '50 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 1000),
    (now() - interval '50 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "conflict"}', 5),
    (now() - interval '25 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 1050),
    (now() - interval '25 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "conflict"}', 15),
    (now() - interval '25 minutes', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "policy"}', 3),
    (now() - interval '1 minute', 'booking_operations_total', '{"operation": "create", "outcome": "succeeded", "code": ""}', 40),
    (now() - interval '1 minute', 'booking_operations_total', '{"operation": "create", "outcome": "refused", "code": "conflict"}', 15);
SELECT (SELECT sum(x::numeric) FROM jsonb_array_elements_text(v -> 'bookings') x) AS bookings,
       (SELECT sum(x::numeric) FROM jsonb_array_elements_text(v -> 'refusals') x) AS refusals,
       jsonb_array_length(v -> 'hours') AS hours
FROM booking_admin.dashboard_series('2 hours') v;
SELECT regress.sqlstate_of($$SELECT booking_admin.dashboard_series('32 days')$$);
SELECT booking_admin.op_snapshot_metrics('{}') > 0 AS snapshot_taken;
