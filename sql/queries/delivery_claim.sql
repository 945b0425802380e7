-- The delivery worker's claim: up to $1 due deliveries, no endpoint beyond its max_in_flight
-- (counting what it is sending already), an endpoint whose circuit is open not at all, and one
-- whose cool-down ended (failures >= $2, the breaker threshold) one at a time, as a probe.
-- Returns what the worker needs to send each: the endpoint, its live secrets (newest first),
-- and for email and Slack the template and its placeholders' values.
WITH ep AS (
    SELECT e.id,
           CASE WHEN $2 > 0 AND e.consecutive_failures >= $2 THEN 1 ELSE e.max_in_flight END
             - (SELECT count(*) FROM booking_admin.deliveries s WHERE s.endpoint_id = e.id AND s.status = 'sending') AS room
    FROM booking_admin.delivery_endpoints e
    WHERE e.enabled AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= now())
), picked AS (
    SELECT d.id
    FROM ep CROSS JOIN LATERAL (
        SELECT d.id FROM booking_admin.deliveries d
        WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT greatest(ep.room, 0)
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT $1
)
UPDATE booking_admin.deliveries d
SET status = 'sending', attempts = d.attempts + 1, updated_at = now()
FROM picked, booking_admin.delivery_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.attempts, d.message_id, d.event_type, d.payload,
    to_char(d.event_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    d.tenant_id::text, d.event_id::text, (extract(epoch FROM d.horizon_from) * 1000)::int8,
    e.channel, e.url, e.timeout_ms,
    ARRAY(SELECT s.secret FROM booking_admin.delivery_secrets s
          WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now()) ORDER BY s.created_at DESC),
    CASE WHEN e.channel <> 'webhook' THEN booking_admin.delivery_context(d.tenant_id, d.event_type, d.payload) END,
    CASE WHEN e.channel <> 'webhook' THEN (
        SELECT jsonb_build_object('subject', t.subject, 'body_text', t.body_text, 'body_html', t.body_html)
        FROM booking_admin.message_templates t
        WHERE t.event_type = d.event_type AND (t.tenant_id = d.tenant_id OR t.tenant_id IS NULL)
        ORDER BY t.tenant_id NULLS LAST LIMIT 1) END
