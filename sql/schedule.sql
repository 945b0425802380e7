-- Operations of other features that run on the maintenance scheduler (configure_scheduler_job
-- changes or turns off any of them): the security scans, rule evaluation every hour and PII
-- discovery every day, and the auto-tuner's cycle.
CREATE FUNCTION booking_admin.op_evaluate_security_rules(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT (booking_admin.evaluate_security_rules() ->> 'violations_found')::int
$$;

CREATE FUNCTION booking_admin.op_scan_pii(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT (booking_admin.scan_pii(coalesce((p_settings ->> 'sample_rows')::int, 1000)) ->> 'pii_columns_found')::int
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('security-evaluate', 'Evaluate the active security rules', 'booking_admin.op_evaluate_security_rules', '{}', 3600000, 3, 300000),
    ('pii-scan', 'Discover PII columns by name and sampled values', 'booking_admin.op_scan_pii', '{"sample_rows": 1000}', 86400000, 3, 600000);

-- The tuner has its own switch and interval (auto_tuner_config): the scheduler asks every
-- minute, and a cycle runs when the tuner is enabled and monitoring_interval_minutes have passed
-- since the last one. Processed = the actions the cycle took or proposed.
CREATE FUNCTION booking_admin.op_auto_tune(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    cfg booking_admin.auto_tuner_config;
BEGIN
    SELECT * INTO cfg FROM booking_admin.auto_tuner_config;
    IF NOT cfg.enabled
       OR cfg.last_cycle_at > booking.clock_now() - make_interval(mins => cfg.monitoring_interval_minutes) THEN
        RETURN 0;
    END IF;
    RETURN jsonb_array_length(coalesce(booking_admin.perform_tuning_cycle() -> 'actions', '[]'));
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('auto-tune', 'Run an auto-tuner cycle when enabled and due', 'booking_admin.op_auto_tune', '{}', 60000, 3, 600000);
