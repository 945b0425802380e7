-- Observability (src/metrics): what the booking domain counts, where it happens, and the
-- health report. Counts are taken by triggers at the one place each outcome is written and
-- reach shared memory when the transaction commits (booking_admin.metrics_record): a booking
-- rolled back is never counted.

-- Every create, reschedule and cancel ends in booking.finish_operation, which moves its
-- operation from pending to completed or failed: one count per outcome, with the refusal code.
CREATE FUNCTION booking_admin.metrics_on_operation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_outcome text := CASE NEW.status WHEN 'completed' THEN 'succeeded' ELSE 'refused' END;
BEGIN
    PERFORM booking_admin.metrics_record('booking_operations', ARRAY[NEW.operation_type, v_outcome,
        CASE WHEN NEW.status = 'failed'
             THEN coalesce(NEW.result ->> 'code', NEW.result -> 'details' -> 0 ->> 'code', 'unknown') ELSE '' END]);
    IF current_setting('booking_engine.metrics_tenant_labels')::boolean THEN
        PERFORM booking_admin.metrics_record('booking_tenant_operations',
                                             ARRAY[NEW.tenant_id::text, NEW.operation_type, v_outcome]);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER booking_operations_metrics AFTER UPDATE OF status ON booking.booking_operations
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status IN ('completed', 'failed'))
    EXECUTE FUNCTION booking_admin.metrics_on_operation();

-- Every booking change writes an event: created, rescheduled, cancelled, waitlist offers,
-- conflicts, the maintenance transitions.
CREATE FUNCTION booking_admin.metrics_on_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.metrics_record('booking_events', ARRAY[NEW.event_type]);
    RETURN NULL;
END $$;
CREATE TRIGGER events_metrics AFTER INSERT ON booking.events
    FOR EACH ROW EXECUTE FUNCTION booking_admin.metrics_on_event();

-- A job attempt ends when its runner (or an external worker, or the stale-job recovery) moves
-- it out of running.
CREATE FUNCTION booking_admin.metrics_on_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.metrics_record('booking_jobs_processed', ARRAY[NEW.handler, NEW.status]);
    IF NEW.started_at IS NOT NULL THEN
        PERFORM booking_admin.metrics_record('booking_job_duration_seconds', ARRAY[NEW.handler],
            greatest(extract(epoch FROM clock_timestamp() - NEW.started_at), 0)::float8);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_metrics AFTER UPDATE OF status ON booking_admin.jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'dead'))
    EXECUTE FUNCTION booking_admin.metrics_on_job();

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

-- What the dashboard page shows beside the metrics: today's bookings and refusals (since
-- midnight in the session's time zone, by when they were made), backlogs, open violations, the health report.
CREATE FUNCTION booking_admin.dashboard_data() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        'generated_at', clock_timestamp(),
        'health', booking_admin.health(),
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
        'cache_hit_ratio', (SELECT round(coalesce(blks_hit::numeric / nullif(blks_hit + blks_read, 0), 1), 4)
                            FROM pg_stat_database WHERE datname = current_database()))
$$;

GRANT EXECUTE ON FUNCTION booking_admin.metrics(), booking_admin.metrics_text(text), booking_admin.health(),
    booking_admin.dashboard_data()
TO booking_operator;
