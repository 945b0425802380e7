-- The delivery worker's claim: due deliveries, up to $1 in all and $3 per endpoint, of enabled
-- endpoints whose circuit is closed (or whose cool-down ended: failures >= $2, the breaker
-- threshold, makes the endpoint half-open, and then only one is claimed), skipping the
-- endpoints in $4 (those whose claimed deliveries the worker is still working through, or whose
-- circuit it has just seen open). Claimed deliveries are `sending` until the worker records them
-- (or hands them back unsent: delivery_unclaim.sql); it sends each endpoint's at most
-- `max_in_flight` at a time, returned here with what the worker needs to send each: the
-- endpoint and its failures in a row, its live secrets (newest first), for email, SMS and Slack
-- the template and its placeholders' values, for SMS the provider's settings and credentials
-- and whether the number opted out, and the trace context the attempt continues.
WITH ep AS (
    SELECT e.id, $2 > 0 AND e.consecutive_failures >= $2 AS half_open
    FROM booking_admin.delivery_endpoints e
    WHERE e.enabled AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= now()) AND e.id <> ALL ($4)
), picked AS (
    -- A half-open endpoint gets one delivery, its probe: a retry when one is due (a receiver
    -- that fails only first attempts recovers; a stream of new messages would otherwise always
    -- be the oldest due and the probe always a first attempt), else the oldest due.
    SELECT d.id
    FROM ep CROSS JOIN LATERAL (
        SELECT d.id FROM booking_admin.deliveries d
        WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY ep.half_open AND d.attempts = 0, d.next_attempt_at
        LIMIT CASE WHEN ep.half_open THEN 1 ELSE $3 END
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT $1
), keys AS (
    -- Each endpoint's live secrets once, not once per claimed delivery.
    SELECT s.endpoint_id, array_agg(s.secret ORDER BY s.created_at DESC) AS secrets
    FROM booking_admin.delivery_secrets s JOIN ep ON ep.id = s.endpoint_id
    WHERE s.expires_at IS NULL OR s.expires_at > now()
    GROUP BY s.endpoint_id
), claimed AS (
    UPDATE booking_admin.deliveries d
    SET status = 'sending', attempts = d.attempts + 1, updated_at = now()
    FROM picked, booking_admin.delivery_endpoints e LEFT JOIN keys k ON k.endpoint_id = e.id
    WHERE d.id = picked.id AND e.id = d.endpoint_id
    RETURNING d.id, d.endpoint_id, d.attempts AS attempt, d.message_id, d.event_type, d.payload,
        to_char(d.event_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
        d.tenant_id::text AS tenant_id, d.event_id::text AS event_id,
        (extract(epoch FROM d.horizon_from) * 1000)::int8 AS horizon_from_ms,
        e.channel, e.url, e.timeout_ms,
        CASE WHEN $2 > 0 AND e.consecutive_failures >= $2 THEN 1 ELSE e.max_in_flight END AS in_flight_limit,
        e.consecutive_failures AS failures,
        coalesce(k.secrets, '{}') AS secrets,
        CASE WHEN e.channel <> 'webhook' THEN booking_admin.delivery_context(d.tenant_id, d.event_type, d.payload) END
            AS context,
        -- A reminder rule's own template (fan_out_reminders put it in the payload), else the
        -- tenant's for the event type, else the default.
        CASE WHEN e.channel <> 'webhook' THEN coalesce(
            CASE WHEN d.event_type = 'booking.reminder' THEN d.payload -> 'template' END, (
            SELECT jsonb_build_object('subject', t.subject, 'body_text', t.body_text, 'body_html', t.body_html)
            FROM booking_admin.message_templates t
            WHERE t.event_type = d.event_type AND (t.tenant_id = d.tenant_id OR t.tenant_id IS NULL)
            ORDER BY t.tenant_id NULLS LAST LIMIT 1)) END AS template,
        CASE WHEN e.channel = 'sms' THEN e.settings || jsonb_strip_nulls(jsonb_build_object(
            'password', (SELECT c.password FROM booking_admin.delivery_credentials c WHERE c.endpoint_id = e.id),
            'token', (SELECT c.token FROM booking_admin.delivery_credentials c WHERE c.endpoint_id = e.id))) END AS sms,
        d.traceparent, d.tracestate
)
SELECT c.*,
    c.channel = 'sms' AND coalesce(booking_admin.sms_opted_out(c.tenant_id::uuid, c.context ->> 'recipient_phone'), false)
        AS opted_out
FROM claimed c
