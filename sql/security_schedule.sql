-- The security scans run on the maintenance scheduler: rule evaluation every hour, PII discovery
-- every day (configure_scheduler_job changes either, or turns it off).
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
