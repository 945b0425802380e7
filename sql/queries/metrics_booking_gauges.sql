-- The scrape's booking gauges, where booking_engine is installed: the job queue, the
-- delivery backlog, open violations, firing alerts and the waitlist's conversion over 30 days.
-- Rows of (metric, label values, value).
SELECT 'booking_jobs', ARRAY[s.status], count(j.id)::float8
FROM unnest(ARRAY['pending', 'running', 'completed', 'failed', 'dead', 'cancelled']) s(status)
LEFT JOIN booking_admin.jobs j ON j.status = s.status GROUP BY s.status
UNION ALL
SELECT 'booking_oldest_pending_job_age_seconds', ARRAY[]::text[],
       coalesce(extract(epoch FROM clock_timestamp() - min(scheduled_at)), 0)::float8
FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= clock_timestamp()
UNION ALL
SELECT 'booking_security_violations_open', ARRAY[s.severity], count(v.id)::float8
FROM unnest(ARRAY['critical', 'high', 'medium', 'low']) s(severity)
LEFT JOIN booking_admin.security_violations v ON v.severity = s.severity AND v.status <> 'resolved'
GROUP BY s.severity
UNION ALL
SELECT 'booking_alerts_firing', ARRAY[s.severity], count(a.fingerprint)::float8
FROM unnest(ARRAY['critical', 'high', 'medium', 'low']) s(severity)
LEFT JOIN booking_admin.alert_instances a ON a.severity = s.severity AND a.state = 'firing'
GROUP BY s.severity
UNION ALL
SELECT 'booking_deliveries', ARRAY[s.status], count(d.id)::float8
FROM unnest(ARRAY['pending', 'sending', 'delivered', 'dead']) s(status)
LEFT JOIN booking_admin.deliveries d ON d.status = s.status GROUP BY s.status
UNION ALL
SELECT 'booking_oldest_pending_delivery_age_seconds', ARRAY[]::text[],
       coalesce(extract(epoch FROM clock_timestamp() - min(next_attempt_at)), 0)::float8
FROM booking_admin.deliveries WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
UNION ALL
SELECT 'booking_waitlist_conversion_ratio', ARRAY[]::text[],
       coalesce(count(*) FILTER (WHERE status = 'booked')::float8 / nullif(count(*), 0), 0)
FROM booking.waitlist WHERE created_at > now() - interval '30 days'
