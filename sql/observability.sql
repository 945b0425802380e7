-- Observability (src/metrics): what the booking domain counts, where it happens, and the
-- health report. Counts are taken by triggers at the one place each outcome is written and
-- reach shared memory when the transaction commits (booking.metrics_record): a booking
-- rolled back is never counted.

-- Every create, reschedule and cancel ends in booking.finish_operation, which moves its
-- operation from pending to completed or failed: one count per outcome, with the refusal code.
CREATE FUNCTION booking.metrics_on_operation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_outcome text := CASE NEW.status WHEN 'completed' THEN 'succeeded' ELSE 'refused' END;
BEGIN
    PERFORM booking.metrics_record('booking_operations', ARRAY[NEW.operation_type, v_outcome,
        CASE WHEN NEW.status = 'failed'
             THEN coalesce(NEW.result ->> 'code', NEW.result -> 'details' -> 0 ->> 'code', 'unknown') ELSE '' END]);
    IF current_setting('booking_engine.metrics_tenant_labels')::boolean THEN
        PERFORM booking.metrics_record('booking_tenant_operations',
                                             ARRAY[NEW.tenant_id::text, NEW.operation_type, v_outcome]);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER booking_operations_metrics AFTER UPDATE OF status ON booking.booking_operations
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status IN ('completed', 'failed'))
    EXECUTE FUNCTION booking.metrics_on_operation();

-- Every booking change writes an event: created, rescheduled, cancelled, waitlist offers,
-- conflicts, the maintenance transitions.
CREATE FUNCTION booking.metrics_on_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking.metrics_record('booking_events', ARRAY[NEW.event_type]);
    RETURN NULL;
END $$;
CREATE TRIGGER events_metrics AFTER INSERT ON booking.events
    FOR EACH ROW EXECUTE FUNCTION booking.metrics_on_event();

-- A job attempt ends when its runner (or an external worker, or the stale-job recovery) moves
-- it out of running.
CREATE FUNCTION booking.metrics_on_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking.metrics_record('booking_jobs_processed', ARRAY[NEW.handler, NEW.status]);
    IF NEW.started_at IS NOT NULL THEN
        PERFORM booking.metrics_record('booking_job_duration_seconds', ARRAY[NEW.handler],
            greatest(extract(epoch FROM clock_timestamp() - NEW.started_at), 0)::float8);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_metrics AFTER UPDATE OF status ON booking_admin.jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'dead'))
    EXECUTE FUNCTION booking.metrics_on_job();

-- The health report: each component's state and the overall one (the worst). Thresholds:
-- job queue warning when the oldest due job waits over 60 s, critical over 600 s; delivery
-- backlog (undispatched events) warning over 300 s; connections warning above 80 % of
-- max_connections, critical above 95 %; wraparound warning when age(datfrozenxid) passes
-- 1 billion, critical at 1.5 billion (Postgres stops at about 2.1 billion).
CREATE FUNCTION booking_admin.health() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_components jsonb := '{}';
    v_workers jsonb := booking_admin.worker_status();
    v_oldest float8;
    v_dead bigint;
    v_undispatched bigint;
    v_undispatched_age float8;
    v_used bigint;
    v_max bigint := current_setting('max_connections')::bigint;
    v_xid_age bigint;
    v_rank jsonb := '{"ok": 0, "warning": 1, "critical": 2}';
    v_worst text := 'ok';
    v_state text;
    v_key text;
BEGIN
    v_components := v_components || jsonb_build_object('database', jsonb_build_object(
        'status', 'ok', 'version', current_setting('server_version'),
        'uptime_seconds', round(extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()))));
    v_components := v_components || jsonb_build_object('workers', jsonb_build_object(
        'status', CASE WHEN v_workers ->> 'state' = 'running' THEN 'ok'
                       WHEN (v_workers ->> 'will_run')::boolean THEN 'warning' ELSE 'critical' END,
        'state', v_workers ->> 'state', 'reason', v_workers ->> 'reason',
        'running', jsonb_array_length(coalesce(v_workers -> 'workers', '[]')), 'enabled', v_workers -> 'enabled'));
    SELECT coalesce(extract(epoch FROM clock_timestamp() - min(scheduled_at)), 0) INTO v_oldest
    FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= clock_timestamp();
    v_components := v_components || jsonb_build_object('job_queue', jsonb_build_object(
        'status', CASE WHEN v_oldest > 600 THEN 'critical' WHEN v_oldest > 60 THEN 'warning' ELSE 'ok' END,
        'oldest_due_seconds', round(v_oldest::numeric, 1)));
    SELECT count(*) INTO v_dead FROM booking_admin.jobs WHERE status = 'dead';
    v_components := v_components || jsonb_build_object('dead_letters', jsonb_build_object(
        'status', CASE WHEN v_dead > 0 THEN 'warning' ELSE 'ok' END, 'count', v_dead));
    SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)
    INTO v_undispatched, v_undispatched_age FROM booking.events WHERE dispatched_at IS NULL;
    v_components := v_components || jsonb_build_object('delivery_backlog', jsonb_build_object(
        'status', CASE WHEN v_undispatched_age > 300 THEN 'warning' ELSE 'ok' END,
        'undispatched_events', v_undispatched, 'oldest_seconds', round(v_undispatched_age::numeric, 1)));
    SELECT count(*) INTO v_used FROM pg_stat_activity WHERE backend_type = 'client backend';
    v_components := v_components || jsonb_build_object('connections', jsonb_build_object(
        'status', CASE WHEN v_used > 0.95 * v_max THEN 'critical' WHEN v_used > 0.8 * v_max THEN 'warning' ELSE 'ok' END,
        'used', v_used, 'max', v_max));
    SELECT age(datfrozenxid) INTO v_xid_age FROM pg_database WHERE datname = current_database();
    v_components := v_components || jsonb_build_object('wraparound', jsonb_build_object(
        'status', CASE WHEN v_xid_age > 1500000000 THEN 'critical' WHEN v_xid_age > 1000000000 THEN 'warning' ELSE 'ok' END,
        'xid_age', v_xid_age));
    FOR v_key, v_state IN SELECT key, value ->> 'status' FROM jsonb_each(v_components) LOOP
        IF (v_rank ->> v_state)::int > (v_rank ->> v_worst)::int THEN
            v_worst := v_state;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('status', v_worst, 'checked_at', clock_timestamp(), 'components', v_components);
END $$;


-- Alert rules (see docs/observability.md, "Alert rules"): a condition that is either a read-only SELECT
-- run in the security rules' sandbox (every row it returns is one alert instance; its columns
-- become labels, a column named value the value) or a metric sample compared with a
-- threshold. Instances go pending -> firing -> resolved (src/metrics/alerts.rs); firing and
-- resolved are notified through booking.events (alert.firing, alert.resolved).
CREATE TABLE booking_admin.alert_rules (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    severity        text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    condition_sql   text,
    metric          text,
    operator        text CHECK (operator IN ('>', '>=', '<', '<=', '=', '!=')),
    threshold       float8,
    for_duration    interval NOT NULL DEFAULT '0',
    keep_firing_for interval NOT NULL DEFAULT '0',
    repeat_interval interval NOT NULL DEFAULT '4 hours',
    labels          jsonb NOT NULL DEFAULT '{}',
    annotations     jsonb NOT NULL DEFAULT '{}',
    enabled         boolean NOT NULL DEFAULT true,
    -- condition_sql runs as this role: whoever last wrote the rule (set by alert_rules_check),
    -- so an operator's rule reads what the operator may read, even when the scheduler runs it.
    run_as          regrole NOT NULL DEFAULT current_user::regrole,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.alert_rules', '');

CREATE TABLE booking_admin.alert_instances (
    fingerprint      text PRIMARY KEY,
    rule_id          uuid NOT NULL REFERENCES booking_admin.alert_rules (id) ON DELETE CASCADE,
    rule_name        text NOT NULL,
    severity         text NOT NULL,
    labels           jsonb NOT NULL,
    annotations      jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    value            float8,
    active_since     timestamptz NOT NULL,
    started_at       timestamptz,
    resolved_at      timestamptz,
    last_notified_at timestamptz,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    ack_note         text,
    -- The lifecycle's own state (src/metrics/alerts.rs Instance); the columns above mirror it.
    instance         jsonb NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_instances_rule_idx ON booking_admin.alert_instances (rule_id);

CREATE TABLE booking_admin.alert_silences (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Label -> value; an instance is silenced when all of them match (alertname and severity
    -- are labels too).
    matchers   jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'object' AND matchers <> '{}'),
    starts_at  timestamptz NOT NULL DEFAULT now(),
    ends_at    timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT current_user,
    comment    text,
    CHECK (ends_at > starts_at)
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.alert_silences', '');

CREATE TABLE booking_admin.alert_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint text NOT NULL,
    rule_name   text NOT NULL,
    event       text NOT NULL CHECK (event IN ('pending', 'firing', 'resolved', 'inactive', 'notified_firing',
                                               'notified_resolved', 'acknowledged')),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    value       float8,
    labels      jsonb NOT NULL DEFAULT '{}',
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_history_at_idx ON booking_admin.alert_history (at);
CREATE INDEX alert_history_fingerprint_idx ON booking_admin.alert_history (fingerprint, at);

-- Clear errors for a rule before it is stored: 22023 for the shape and durations, 2F003 or
-- 42601 for a condition that is not one plain SELECT, 22023 for an unknown metric. Runs as the
-- writer (not SECURITY DEFINER), who becomes the role the condition runs as.
CREATE FUNCTION booking_admin.alert_rules_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    IF (NEW.condition_sql IS NULL) = (NEW.metric IS NULL) THEN
        RAISE EXCEPTION 'alert rule %: give either condition_sql or metric (with operator and threshold)', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF NEW.metric IS NOT NULL AND (NEW.operator IS NULL OR NEW.threshold IS NULL
                                   OR NEW.threshold IN ('NaN', 'Infinity', '-Infinity')) THEN
        RAISE EXCEPTION 'alert rule %: a metric rule needs an operator and a finite threshold', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF NEW.for_duration < '0' OR NEW.keep_firing_for < '0' OR NEW.repeat_interval <= '0' THEN
        RAISE EXCEPTION 'alert rule %: for_duration and keep_firing_for must not be negative, repeat_interval must be positive', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(NEW.labels) <> 'object' OR jsonb_typeof(NEW.annotations) <> 'object' THEN
        RAISE EXCEPTION 'alert rule %: labels and annotations must be JSON objects', NEW.name USING ERRCODE = '22023';
    END IF;
    PERFORM booking_admin.check_alert_rule(NEW.condition_sql, NEW.metric);
    NEW.run_as := current_user::regrole;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER alert_rules_check BEFORE INSERT OR UPDATE ON booking_admin.alert_rules
    FOR EACH ROW EXECUTE FUNCTION booking_admin.alert_rules_check();

-- Stores one instance's next state (decided in src/metrics/alert_api.rs), keeps the history,
-- and writes the notification as a booking.events row of the operations tenant (the fixed id
-- below, created on first use: booking.events rows belong to a tenant, alerts to none).
CREATE FUNCTION booking_admin.alert_apply(p_doc jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    i jsonb := p_doc -> 'instance';
    v_fp text := p_doc ->> 'fingerprint';
    v_state text := i ->> 'state';
    v_ops uuid := '00000000-0000-0000-0000-000000000000';
    v_row booking_admin.alert_instances;
BEGIN
    IF i IS NULL OR jsonb_typeof(i) = 'null' THEN
        DELETE FROM booking_admin.alert_instances WHERE fingerprint = v_fp;
        IF p_doc ->> 'previous' = 'pending' THEN
            INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
            VALUES (v_fp, p_doc ->> 'rule', 'inactive', (p_doc ->> 'value')::float8, p_doc -> 'labels');
        END IF;
        RETURN;
    END IF;
    INSERT INTO booking_admin.alert_instances AS a (fingerprint, rule_id, rule_name, severity, labels, annotations, state,
        value, active_since, started_at, resolved_at, last_notified_at, instance, updated_at)
    VALUES (v_fp, (p_doc ->> 'rule_id')::uuid, p_doc ->> 'rule', p_doc ->> 'severity', p_doc -> 'labels',
        p_doc -> 'annotations', v_state, (i ->> 'value')::float8, to_timestamp((i ->> 'active_since')::float8),
        to_timestamp((i ->> 'fired_at')::float8), to_timestamp((i ->> 'resolved_at')::float8),
        to_timestamp((i ->> 'last_notified')::float8), i, clock_timestamp())
    ON CONFLICT (fingerprint) DO UPDATE SET
        state = excluded.state, value = excluded.value, annotations = excluded.annotations,
        active_since = excluded.active_since, started_at = excluded.started_at, resolved_at = excluded.resolved_at,
        last_notified_at = excluded.last_notified_at, instance = excluded.instance, updated_at = excluded.updated_at
    RETURNING * INTO v_row;
    IF v_state IS DISTINCT FROM p_doc ->> 'previous' THEN
        INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
        VALUES (v_fp, v_row.rule_name, v_state, v_row.value, v_row.labels);
    END IF;
    IF p_doc ->> 'notify' IS NOT NULL THEN
        INSERT INTO booking.tenants (id, name) VALUES (v_ops, 'booking_engine operations') ON CONFLICT (id) DO NOTHING;
        PERFORM booking.emit_event(v_ops, 'alert.' || (p_doc ->> 'notify'), jsonb_build_object(
            'rule', v_row.rule_name, 'severity', v_row.severity, 'state', v_state, 'labels', v_row.labels,
            'annotations', v_row.annotations, 'fingerprint', v_fp, 'value', v_row.value,
            'started_at', v_row.started_at, 'resolved_at', v_row.resolved_at));
        INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
        VALUES (v_fp, v_row.rule_name, 'notified_' || (p_doc ->> 'notify'), v_row.value, v_row.labels);
    END IF;
END $$;

-- Acknowledges a firing or pending instance: who, when, a note. Mutes its reminders (not its
-- resolve notification) until it resolves.
CREATE FUNCTION booking_admin.acknowledge_alert(p_fingerprint text, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_row booking_admin.alert_instances;
BEGIN
    UPDATE booking_admin.alert_instances
    SET acknowledged_by = session_user, acknowledged_at = clock_timestamp(), ack_note = p_note,
        instance = jsonb_set(instance, '{acknowledged}', 'true'), updated_at = clock_timestamp()
    WHERE fingerprint = p_fingerprint AND state <> 'resolved'
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pending or firing alert with fingerprint %', coalesce(p_fingerprint, 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels, details)
    VALUES (v_row.fingerprint, v_row.rule_name, 'acknowledged', v_row.value, v_row.labels,
            jsonb_build_object('by', v_row.acknowledged_by, 'note', p_note));
    RETURN to_jsonb(v_row) - 'instance';
END $$;

-- Resolves a pending or firing instance by hand (who, a note): resolved at once, with a resolve
-- notification when its firing was notified and no silence matches it. Its condition is not
-- touched: if it still holds, the next evaluation starts a new instance (pending, then firing).
CREATE FUNCTION booking_admin.resolve_alert(p_fingerprint text, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_row booking_admin.alert_instances;
    v_now float8 := extract(epoch FROM clock_timestamp());
    v_notify boolean;
BEGIN
    SELECT * INTO v_row FROM booking_admin.alert_instances
    WHERE fingerprint = p_fingerprint AND state <> 'resolved' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pending or firing alert with fingerprint %', coalesce(p_fingerprint, 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    v_notify := coalesce((v_row.instance ->> 'notified_firing')::boolean, false) AND NOT EXISTS (
        SELECT 1 FROM booking_admin.alert_silences s
        WHERE clock_timestamp() >= s.starts_at AND clock_timestamp() < s.ends_at
          AND (v_row.labels || jsonb_build_object('alertname', v_row.rule_name, 'severity', v_row.severity)) @> s.matchers);
    PERFORM booking_admin.alert_apply(jsonb_build_object(
        'fingerprint', v_row.fingerprint, 'rule', v_row.rule_name, 'rule_id', v_row.rule_id, 'severity', v_row.severity,
        'labels', v_row.labels, 'annotations', v_row.annotations, 'previous', v_row.state, 'value', v_row.value,
        'instance', v_row.instance || jsonb_build_object('state', 'resolved', 'resolved_at', v_now)
                    || CASE WHEN v_notify THEN jsonb_build_object('last_notified', v_now) ELSE '{}' END,
        'notify', CASE WHEN v_notify THEN 'resolved' END));
    UPDATE booking_admin.alert_history SET details = jsonb_build_object('by', session_user, 'note', p_note, 'manual', true)
    WHERE id = (SELECT max(h.id) FROM booking_admin.alert_history h WHERE h.fingerprint = p_fingerprint AND h.event = 'resolved');
    SELECT * INTO v_row FROM booking_admin.alert_instances WHERE fingerprint = p_fingerprint;
    RETURN to_jsonb(v_row) - 'instance';
END $$;

-- Silences instances whose labels match every matcher until p_until: they change state but
-- notify nothing (a firing instance still firing when the silence ends is notified then).
CREATE FUNCTION booking_admin.silence_alerts(p_matchers jsonb, p_until timestamptz, p_comment text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_matchers IS NULL OR jsonb_typeof(p_matchers) <> 'object' OR p_matchers = '{}'
       OR EXISTS (SELECT FROM jsonb_each(p_matchers) m WHERE jsonb_typeof(m.value) <> 'string') THEN
        RAISE EXCEPTION 'p_matchers must be a non-empty JSON object of label names to string values'
            USING ERRCODE = '22023';
    END IF;
    IF p_until IS NULL OR p_until <= clock_timestamp() THEN
        RAISE EXCEPTION 'p_until must be in the future' USING ERRCODE = '22023';
    END IF;
    INSERT INTO booking_admin.alert_silences (matchers, starts_at, ends_at, created_by, comment)
    VALUES (p_matchers, clock_timestamp(), p_until, session_user, p_comment) RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- The default alert rules. Inserted on request (existing names are
-- left as they are); returns how many were added.
CREATE FUNCTION booking_admin.init_default_alert_rules() RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH added AS (
        INSERT INTO booking_admin.alert_rules (name, severity, condition_sql, metric, operator, threshold,
                                               for_duration, annotations) VALUES
        ('dead_letters_present', 'high',
         'SELECT handler, count(*) AS value FROM booking_admin.jobs WHERE status = ''dead'' GROUP BY handler',
         NULL, NULL, NULL, '0', '{"summary": "{{ $value }} dead {{ $labels.handler }} jobs"}'),
        ('job_queue_backlog', 'high',
         'SELECT extract(epoch FROM clock_timestamp() - min(scheduled_at)) AS value FROM booking_admin.jobs
          WHERE status IN (''pending'', ''failed'') AND scheduled_at <= clock_timestamp()
          HAVING min(scheduled_at) < clock_timestamp() - interval ''5 minutes''',
         NULL, NULL, NULL, '2 minutes', '{"summary": "the oldest due job waits for {{ $value }} s"}'),
        ('delivery_backlog', 'medium',
         'SELECT count(*) AS value FROM booking.events WHERE dispatched_at IS NULL
          HAVING min(created_at) < clock_timestamp() - interval ''10 minutes''',
         NULL, NULL, NULL, '5 minutes', '{"summary": "{{ $value }} events wait for delivery"}'),
        ('booking_refusals_high', 'medium',
         'SELECT count(*) FILTER (WHERE status = ''failed'')::float8 / count(*) AS value FROM booking.booking_operations
          WHERE created_at > clock_timestamp() - interval ''15 minutes'' HAVING count(*) >= 20
             AND count(*) FILTER (WHERE status = ''failed'') > 0.5 * count(*)',
         NULL, NULL, NULL, '10 minutes', '{"summary": "{{ $value }} of recent booking operations were refused"}'),
        ('connection_saturation', 'critical',
         'SELECT count(*)::float8 / current_setting(''max_connections'')::float8 AS value FROM pg_stat_activity
          WHERE backend_type = ''client backend''
          HAVING count(*) > 0.9 * current_setting(''max_connections'')::int',
         NULL, NULL, NULL, '2 minutes', '{"summary": "{{ $value }} of max_connections in use"}'),
        ('cache_hit_ratio_low', 'low', NULL, 'booking_pg_cache_hit_ratio', '<', 0.9, '30 minutes',
         '{"summary": "cache hit ratio {{ $value }}"}'),
        ('long_transaction', 'medium', NULL, 'booking_pg_longest_transaction_seconds', '>', 600, '0',
         '{"summary": "a transaction has been open for {{ $value }} s"}'),
        ('critical_security_violations', 'critical', NULL, 'booking_security_violations_open', '>', 0, '0',
         '{"summary": "{{ $value }} open {{ $labels.severity }} security violations"}'),
        ('metrics_dropped', 'low', NULL, 'booking_metrics_dropped_total', '>', 0, '0',
         '{"summary": "{{ $labels.metric }} reached its series cap"}'),
        ('host_cpu_high', 'high', NULL, 'booking_host_cpu_usage_ratio', '>', 0.8, '5 minutes',
         '{"summary": "the server''s CPU has been {{ $value }} busy for 5 minutes"}'),
        ('host_memory_high', 'high', NULL, 'booking_host_memory_used_ratio', '>', 0.9, '5 minutes',
         '{"summary": "{{ $value }} of the server''s memory is in use"}'),
        ('host_disk_high', 'critical', NULL, 'booking_host_disk_used_ratio', '>', 0.9, '0',
         '{"summary": "the file system of the data directory is {{ $value }} full"}')
        ON CONFLICT (name) DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::int FROM added
$$;

-- Scheduled: evaluate every 15 seconds, and keep 30 days of history.
CREATE FUNCTION booking_admin.op_evaluate_alert_rules(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    DELETE FROM booking_admin.alert_history
    WHERE at < clock_timestamp() - make_interval(days => coalesce((p_settings ->> 'retention_days')::int, 30));
    RETURN (booking_admin.evaluate_alert_rules() ->> 'notifications')::int;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('evaluate-alerts', 'Evaluate the alert rules and notify firing and resolved alerts', 'booking_admin.op_evaluate_alert_rules',
     '{"retention_days": 30}', 15000, 3, 60000);

GRANT SELECT, INSERT, UPDATE, DELETE ON booking_admin.alert_rules TO booking_operator;
GRANT SELECT ON booking_admin.alert_instances, booking_admin.alert_silences, booking_admin.alert_history TO booking_operator;
GRANT DELETE ON booking_admin.alert_silences TO booking_operator;
GRANT EXECUTE ON FUNCTION booking_admin.acknowledge_alert(text, text), booking_admin.resolve_alert(text, text),
    booking_admin.silence_alerts(jsonb, timestamptz, text),
    booking_admin.init_default_alert_rules(), booking_admin.check_alert_rule(text, text)
TO booking_operator;

-- The extension's own rates over time, for the SLA report and the dashboard's charts: the
-- scheduler's metrics-snapshot operation keeps, every 5 minutes, the booking operation
-- counters, the slot query latency histogram, the job and delivery attempt counters, the
-- delivery backlog and the health status. Partitioned by day, kept a week and a day (the
-- dashboard's longest chart is a week).
CREATE TABLE booking_admin.metrics_history (
    at     timestamptz NOT NULL,
    metric text NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}',
    value  float8 NOT NULL
) PARTITION BY RANGE (at);
CREATE TABLE booking_admin.metrics_history_default PARTITION OF booking_admin.metrics_history DEFAULT;
CREATE INDEX metrics_history_metric_at_idx ON booking_admin.metrics_history_default (metric, at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.metrics_history_default', '');
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.metrics_history', 'at', 'day', 7, '8 days', 'The extension''s own rates (metrics-snapshot)');

CREATE FUNCTION booking_admin.op_snapshot_metrics(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    n integer;
BEGIN
    INSERT INTO booking_admin.metrics_history (at, metric, labels, value)
    SELECT v_at, m.metric, m.labels, m.value FROM booking_admin.metrics() m
    WHERE m.metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket',
                       'booking_jobs_processed_total', 'booking_delivery_attempts_total', 'booking_deliveries',
                       'booking_waitlist_conversion_ratio')
    UNION ALL
    SELECT v_at, 'health', jsonb_build_object('status', booking_admin.health() ->> 'status'), 1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('metrics-snapshot', 'Keep booking, job and delivery counters, slot latency, the delivery backlog and health over time',
     'booking_admin.op_snapshot_metrics', '{}', 300000, 3, 60000);

-- The SLA over a window, against the operator's targets: availability (the share of the window
-- covered by snapshots whose health was not critical; a gap longer than twice the snapshot
-- interval counts as down), the booking refusal rate, and the p95 slot query latency (the
-- upper bound of the bucket holding the 95th percentile of the window's queries). Counter
-- increases are summed snapshot to snapshot; a counter that went down was reset by a restart
-- and counts from zero.
CREATE FUNCTION booking_admin.sla_report(p_window interval DEFAULT '1 day', p_availability_target float8 DEFAULT 0.999,
                                         p_p95_target_ms float8 DEFAULT 250, p_refusal_rate_target float8 DEFAULT 0.05)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_from timestamptz := clock_timestamp() - p_window;
    v_interval float8 := coalesce((SELECT delay_ms FROM booking_admin.scheduler_job_info WHERE job_name = 'metrics-snapshot'),
                                  300000) / 1000.0;
    v_up float8;
    v_covered float8;
    v_total float8;
    v_refused float8;
    v_p95 float8;
    v_availability float8;
BEGIN
    IF p_window IS NULL OR p_window <= '0' OR p_availability_target NOT BETWEEN 0 AND 1
       OR p_refusal_rate_target NOT BETWEEN 0 AND 1 OR p_p95_target_ms <= 0 THEN
        RAISE EXCEPTION 'sla_report: the window must be positive, the availability and refusal targets between 0 and 1, the latency target positive'
            USING ERRCODE = '22023';
    END IF;
    -- Each health snapshot covers the time to the next one, at most twice the interval.
    SELECT sum(span) FILTER (WHERE status <> 'critical'), sum(span) INTO v_up, v_covered FROM (
        SELECT labels ->> 'status' AS status,
               least(extract(epoch FROM coalesce(lead(at) OVER (ORDER BY at), clock_timestamp()) - at), 2 * v_interval) AS span
        FROM booking_admin.metrics_history WHERE metric = 'health' AND at >= v_from) h;
    v_availability := CASE WHEN v_covered > 0
                           THEN v_up / greatest(extract(epoch FROM clock_timestamp() - (SELECT min(at) FROM booking_admin.metrics_history
                                                   WHERE metric = 'health' AND at >= v_from)), v_covered) END;
    WITH s AS (
        SELECT metric, labels, value, lag(value) OVER (PARTITION BY metric, labels ORDER BY at) AS prev
        FROM booking_admin.metrics_history
        WHERE metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket') AND at >= v_from),
    d AS (
        SELECT metric, labels,
               sum(CASE WHEN prev IS NULL THEN 0 WHEN value >= prev THEN value - prev ELSE value END) AS delta
        FROM s GROUP BY metric, labels),
    buckets AS (
        SELECT (labels ->> 'le') AS le, sum(delta) AS n FROM d
        WHERE metric = 'booking_slot_query_duration_seconds_bucket' GROUP BY labels ->> 'le')
    SELECT (SELECT sum(delta) FROM d WHERE metric = 'booking_operations_total'),
           (SELECT sum(delta) FROM d WHERE metric = 'booking_operations_total' AND labels ->> 'outcome' = 'refused'),
           (SELECT min(le::float8) FROM buckets WHERE n >= 0.95 * (SELECT n FROM buckets WHERE le = '+Inf')
                                                  AND (SELECT n FROM buckets WHERE le = '+Inf') > 0)
    INTO v_total, v_refused, v_p95;
    RETURN jsonb_build_object(
        'window', p_window, 'from', v_from, 'to', clock_timestamp(),
        'availability', jsonb_build_object('value', round(v_availability::numeric, 4), 'target', p_availability_target,
                                           'met', v_availability >= p_availability_target),
        'refusal_rate', jsonb_build_object('value', round((v_refused / nullif(v_total, 0))::numeric, 5),
                                           'target', p_refusal_rate_target, 'operations', coalesce(v_total, 0),
                                           'met', coalesce(v_refused / nullif(v_total, 0), 0) <= p_refusal_rate_target),
        'slot_query_p95_ms', jsonb_build_object('value', v_p95 * 1000, 'target', p_p95_target_ms,
                                                'met', coalesce(v_p95 * 1000 <= p_p95_target_ms, true)));
END $$;

-- The performance summary: an overall health score 0-100 and the factors that make it
-- (each scored 0..1 between a good and a bad value, weighted), the auto-tuner's active
-- optimizations, and the pending issues, from the statistics functions of sql/admin.sql.
CREATE FUNCTION booking_admin.performance_summary() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_conn record;
    v_health jsonb := booking_admin.health();
    v_factors jsonb;
    v_dead numeric;
    v_unused bigint;
    v_score numeric;
BEGIN
    SELECT * INTO v_conn FROM booking_admin.get_connection_stats();
    SELECT coalesce(max(dead_tuple_ratio), 0) INTO v_dead FROM booking_admin.get_table_vacuum_stats() WHERE n_live_tup >= 1000;
    SELECT count(*) INTO v_unused FROM booking_admin.get_index_stats() WHERE unused;
    -- name, weight, value, good, bad: the score falls linearly from good to bad.
    WITH f(name, weight, value, good, bad) AS (VALUES
        ('cache_hit_ratio', 25, coalesce(booking_admin.get_cache_hit_ratio(), 1), 0.99, 0.80),
        ('index_hit_ratio', 15, coalesce(booking_admin.get_index_hit_ratio(), 1), 0.99, 0.80),
        ('connection_utilisation', 15, coalesce(v_conn.used_ratio, 0), 0.70, 0.95),
        ('max_dead_tuple_ratio', 15, v_dead, 0.10, 0.50),
        ('unused_indexes', 10, v_unused::numeric, 0, 10),
        ('oldest_transaction_seconds', 10, coalesce(extract(epoch FROM v_conn.oldest_xact_age), 0), 60, 600),
        ('health', 10, CASE v_health ->> 'status' WHEN 'ok' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, 0, 2))
    SELECT jsonb_agg(jsonb_build_object('factor', name, 'weight', weight, 'value', round(value, 4),
               'score', round(greatest(0, least(1, (value - bad) / (good - bad))), 3)) ORDER BY weight DESC, name)
    INTO v_factors FROM f;
    SELECT round(sum((e ->> 'weight')::numeric * (e ->> 'score')::numeric)) INTO v_score FROM jsonb_array_elements(v_factors) e;
    RETURN jsonb_build_object(
        'health_score', v_score,
        'factors', v_factors,
        'active_optimizations', (SELECT coalesce(jsonb_agg(jsonb_build_object('index', t.index_name, 'table', t.table_name,
                                     'applied_at', t.applied_at, 'reason', t.reason) ORDER BY t.applied_at), '[]')
                                 FROM booking_admin.tuning_actions t WHERE t.status = 'applied'),
        'pending_issues', (
            SELECT coalesce(jsonb_agg(i ORDER BY i ->> 'kind', i ->> 'name'), '[]') FROM (
                SELECT jsonb_build_object('kind', 'health', 'name', c.key, 'status', c.value ->> 'status') AS i
                FROM jsonb_each(v_health -> 'components') c WHERE c.value ->> 'status' <> 'ok'
                UNION ALL
                SELECT jsonb_build_object('kind', 'alert', 'name', a.rule_name, 'severity', a.severity, 'since', a.started_at)
                FROM booking_admin.alert_instances a WHERE a.state = 'firing'
                UNION ALL
                SELECT jsonb_build_object('kind', 'security_violations', 'name', v.severity, 'open', count(*))
                FROM booking_admin.security_violations v WHERE v.status <> 'resolved' GROUP BY v.severity
                UNION ALL
                SELECT jsonb_build_object('kind', 'index', 'name', x.index_name, 'table', x.table_name,
                                          'problem', CASE WHEN x.duplicate_of IS NOT NULL THEN 'duplicate of ' || x.duplicate_of ELSE 'unused' END)
                FROM booking_admin.get_index_stats() x WHERE x.unused OR x.duplicate_of IS NOT NULL
                UNION ALL
                SELECT jsonb_build_object('kind', 'vacuum', 'name', t.table_name, 'dead_tuple_ratio', t.dead_tuple_ratio)
                FROM booking_admin.get_table_vacuum_stats() t WHERE t.autovacuum_due) s));
END $$;

-- What the dashboard page shows beside the metrics: today's bookings and refusals (since
-- midnight in the session's time zone, by when they were made), backlogs, open violations, the
-- health report, the waitlist's conversion over 30 days.
CREATE FUNCTION booking_admin.dashboard_data() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        'generated_at', clock_timestamp(),
        'health', booking_admin.health(),
        'health_score', booking_admin.performance_summary() -> 'health_score',
        'bookings_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.operation_type = 'create' AND o.status = 'completed'
                             AND o.created_at >= date_trunc('day', now())),
        'refusals_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.status = 'failed' AND o.created_at >= date_trunc('day', now())),
        'jobs', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
                    (SELECT status, count(*) n FROM booking_admin.jobs GROUP BY status) j),
        'undispatched_events', (SELECT count(*) FROM booking.events WHERE dispatched_at IS NULL),
        'violations', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM
                    (SELECT severity, count(*) n FROM booking_admin.security_violations
                     WHERE status <> 'resolved' GROUP BY severity) v),
        'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', a.rule_name, 'severity', a.severity,
                        'started_at', a.started_at, 'fingerprint', a.fingerprint,
                        'acknowledged', a.acknowledged_at IS NOT NULL) ORDER BY a.started_at), '[]')
                   FROM booking_admin.alert_instances a WHERE a.state = 'firing'),
        'cache_hit_ratio', (SELECT round(coalesce(blks_hit::numeric / nullif(blks_hit + blks_read, 0), 1), 4)
                            FROM pg_stat_database WHERE datname = current_database()),
        'waitlist_conversion', (booking_admin.waitlist_conversion('30 days') ->> 'conversion_rate')::numeric)
$$;

-- The dashboard's charts over the last p_window, hour by hour (UTC hours; "hours" are their
-- starts, in epoch seconds): from the extension's own rates (metrics_history, the increases of
-- its counters between snapshots, a counter that went down or a series that appeared counting
-- from zero) bookings and refusals, the slot queries' latency buckets (cumulative counts per
-- upper bound, for percentiles), job attempts and delivery attempts by outcome, the delivery
-- backlog (the most pending deliveries seen in the hour); from the health history the
-- database's size (the hour's last capture); and the top queries of the window with their time
-- per hour. Each series has one value per hour (NULL: no snapshot that hour).
CREATE FUNCTION booking_admin.dashboard_series(p_window interval DEFAULT '1 day') RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Small data, and estimates of set-returning functions high enough to make JIT compile for
-- most of a second: the page is served under booking_engine.metrics_sql_timeout_ms.
SET jit = off
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_to timestamptz := date_trunc('hour', clock_timestamp()) + interval '1 hour';
    v_from timestamptz;
    v jsonb;
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_window > interval '31 days' THEN
        RAISE EXCEPTION 'the window is positive and at most 31 days' USING ERRCODE = '22023';
    END IF;
    v_from := v_to - date_trunc('hour', p_window + interval '59 minutes');
    WITH hours AS (
        SELECT h FROM generate_series(v_from, v_to - interval '1 hour', interval '1 hour') h
    ), s AS (
        SELECT m.at, m.metric, m.labels, m.value,
               lag(m.value) OVER (PARTITION BY m.metric, m.labels ORDER BY m.at) AS prev,
               min(m.at) OVER () AS first_at
        FROM booking_admin.metrics_history m
        WHERE m.at >= v_from - interval '1 hour' AND m.at < v_to
          AND m.metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket',
                           'booking_jobs_processed_total', 'booking_delivery_attempts_total', 'booking_deliveries')
    ), d AS (
        SELECT date_trunc('hour', s.at) AS h, s.metric, s.labels, s.value,
               -- A series first seen after the first snapshot read is a counter that began since
               -- (the worker creates a series at its first count): it counts from zero.
               CASE WHEN s.prev IS NULL AND s.at = s.first_at THEN NULL WHEN s.prev IS NULL THEN s.value
                    WHEN s.value >= s.prev THEN s.value - s.prev ELSE s.value END AS delta
        FROM s WHERE s.at >= v_from
    ), per_hour AS (
        SELECT d.h,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_operations_total' AND d.labels ->> 'operation' = 'create'
                                    AND d.labels ->> 'outcome' = 'succeeded') AS bookings,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_operations_total' AND d.labels ->> 'outcome' = 'refused') AS refusals,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_jobs_processed_total' AND d.labels ->> 'outcome' = 'completed') AS jobs_completed,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_jobs_processed_total' AND d.labels ->> 'outcome' IN ('failed', 'dead')) AS jobs_failed,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_delivery_attempts_total' AND d.labels ->> 'outcome' = 'delivered') AS delivered,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_delivery_attempts_total' AND d.labels ->> 'outcome' <> 'delivered') AS delivery_failures,
               max(d.value) FILTER (WHERE d.metric = 'booking_deliveries' AND d.labels ->> 'status' = 'pending') AS backlog,
               bool_or(true) AS snapshot
        FROM d GROUP BY d.h
    ), latency AS (
        SELECT x.h, jsonb_agg(jsonb_build_array(x.le, x.n) ORDER BY x.le_num) AS buckets
        FROM (SELECT d.h, d.labels ->> 'le' AS le,
                     CASE WHEN d.labels ->> 'le' = '+Inf' THEN 'infinity'::float8 ELSE (d.labels ->> 'le')::float8 END AS le_num,
                     sum(d.delta) AS n
              FROM d WHERE d.metric = 'booking_slot_query_duration_seconds_bucket' AND d.delta IS NOT NULL
              GROUP BY 1, 2, 3) x
        GROUP BY x.h
    ), size AS (
        SELECT DISTINCT ON (date_trunc('hour', h.captured_at)) date_trunc('hour', h.captured_at) AS h, h.database_bytes
        FROM booking_admin.history_database_stats h
        WHERE h.captured_at >= v_from AND h.captured_at < v_to
        ORDER BY date_trunc('hour', h.captured_at), h.captured_at DESC
    )
    SELECT jsonb_build_object(
        'window', p_window, 'from', v_from, 'to', v_to,
        'hours', jsonb_agg(extract(epoch FROM hours.h)::bigint ORDER BY hours.h),
        'bookings', jsonb_agg(p.bookings ORDER BY hours.h),
        'refusals', jsonb_agg(p.refusals ORDER BY hours.h),
        'jobs_completed', jsonb_agg(p.jobs_completed ORDER BY hours.h),
        'jobs_failed', jsonb_agg(p.jobs_failed ORDER BY hours.h),
        'delivered', jsonb_agg(p.delivered ORDER BY hours.h),
        'delivery_failures', jsonb_agg(p.delivery_failures ORDER BY hours.h),
        'delivery_backlog', jsonb_agg(p.backlog ORDER BY hours.h),
        'latency_buckets', jsonb_agg(l.buckets ORDER BY hours.h),
        'database_bytes', jsonb_agg(z.database_bytes ORDER BY hours.h))
    INTO v
    FROM hours
    LEFT JOIN per_hour p ON p.h = hours.h
    LEFT JOIN latency l ON l.h = hours.h
    LEFT JOIN size z ON z.h = hours.h;
    RETURN v || jsonb_build_object('top_queries', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'queryid', q.queryid, 'query', left(q.query, 200), 'calls', q.calls, 'total_ms', round(q.total_ms::numeric, 1),
                   'mean_ms', round(q.mean_ms::numeric, 3), 'trend', q.trend,
                   'hourly', (SELECT jsonb_agg((SELECT (e ->> 1)::float8 FROM jsonb_array_elements(q.hourly) e
                                                WHERE (e ->> 0)::timestamptz = hh.h) ORDER BY hh.h)
                              FROM generate_series(v_from, v_to - interval '1 hour', interval '1 hour') hh(h)))
               ORDER BY q.total_ms DESC)
        FROM booking_admin.top_queries(p_window, 5) q), '[]'));
END $$;

GRANT EXECUTE ON FUNCTION booking_admin.metrics(), booking_admin.metrics_text(text), booking_admin.health(),
    booking_admin.dashboard_data(), booking_admin.dashboard_series(interval), booking_admin.performance_summary(),
    booking_admin.sla_report(interval, float8, float8, float8)
TO booking_operator;
GRANT SELECT ON booking_admin.metrics_history TO booking_operator;
