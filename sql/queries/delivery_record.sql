-- The delivery worker records a batch of finished attempts ($1: a JSON array, one object per
-- attempt, with the decision already taken by src/delivery/policy.rs): the ledger rows, each
-- delivery's new state (with whom it went to and an SMS provider's message id), and each
-- endpoint's circuit breaker. $2 is the breaker threshold (failures in a row; 0: never open),
-- $3 booking_engine.delivery_disable_after in seconds.
-- The breaker: a success closes it; each failure counted ("breaker": "fail") adds one, and at
-- the threshold the endpoint gets no attempts for 30 s, doubling with each further failure up
-- to 10 min, after which one probe is let through (half-open). An endpoint failing without a
-- success for longer than $3, or answering 410 Gone, is disabled with the reason.
WITH r AS (
    SELECT * FROM jsonb_to_recordset($1) AS r(
        id uuid, endpoint_id uuid, attempt int, started_ms float8, finished_ms float8, duration_ms float8,
        status_code int, error text, excerpt text, outcome text, next_attempt_ms float8, breaker text,
        recipient text, provider_message_id text)
), ledger AS (
    INSERT INTO booking_admin.delivery_attempts
        (delivery_id, endpoint_id, attempt, started_at, duration_ms, status_code, error, response_excerpt, outcome)
    SELECT r.id, r.endpoint_id, r.attempt, to_timestamp(r.started_ms / 1000), r.duration_ms, r.status_code, r.error,
           r.excerpt, r.outcome
    FROM r JOIN booking_admin.deliveries d ON d.id = r.id
), deliveries AS (
    UPDATE booking_admin.deliveries d SET
        status = CASE r.outcome WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'pending' ELSE 'dead' END,
        next_attempt_at = CASE WHEN r.outcome = 'retry' THEN to_timestamp(r.next_attempt_ms / 1000) ELSE d.next_attempt_at END,
        delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() ELSE d.delivered_at END,
        last_status_code = r.status_code, last_error = r.error, updated_at = now(),
        recipient = coalesce(r.recipient, d.recipient),
        provider_message_id = coalesce(r.provider_message_id, d.provider_message_id)
    FROM r WHERE d.id = r.id AND d.status = 'sending'
), per_endpoint AS (
    SELECT r.endpoint_id, bool_or(r.outcome = 'gone') AS gone,
           max(r.finished_ms) FILTER (WHERE r.breaker = 'ok') AS last_ok_ms
    FROM r GROUP BY r.endpoint_id
), tally AS (
    SELECT p.endpoint_id, p.gone, p.last_ok_ms,
           count(*) FILTER (WHERE r.breaker = 'fail' AND r.finished_ms > coalesce(p.last_ok_ms, 0)) AS fails,
           min(r.started_ms) FILTER (WHERE r.breaker = 'fail' AND r.finished_ms > coalesce(p.last_ok_ms, 0)) AS first_fail_ms
    FROM per_endpoint p JOIN r ON r.endpoint_id = p.endpoint_id
    GROUP BY p.endpoint_id, p.gone, p.last_ok_ms
), next_state AS (
    SELECT t.endpoint_id, t.gone,
           CASE WHEN t.last_ok_ms IS NULL THEN e.consecutive_failures ELSE 0 END + t.fails AS failures,
           CASE WHEN t.fails = 0 THEN CASE WHEN t.last_ok_ms IS NULL THEN e.failing_since END
                ELSE coalesce(CASE WHEN t.last_ok_ms IS NULL THEN e.failing_since END, to_timestamp(t.first_fail_ms / 1000)) END
               AS failing_since
    FROM tally t JOIN booking_admin.delivery_endpoints e ON e.id = t.endpoint_id
)
UPDATE booking_admin.delivery_endpoints e SET
    consecutive_failures = n.failures,
    failing_since = n.failing_since,
    circuit_open_until = CASE WHEN $2 > 0 AND n.failures >= $2
        THEN now() + make_interval(secs => least(30 * 2 ^ least(n.failures - $2, 10), 600)) END,
    enabled = e.enabled AND NOT n.gone AND NOT coalesce(n.failing_since < now() - make_interval(secs => $3), false),
    disabled_reason = CASE
        WHEN NOT e.enabled THEN e.disabled_reason
        WHEN n.gone THEN 'the receiver answered 410 Gone'
        WHEN n.failing_since < now() - make_interval(secs => $3)
            THEN 'failing without a success since ' || n.failing_since || ' (booking_engine.delivery_disable_after)'
        ELSE e.disabled_reason END,
    disabled_at = CASE WHEN e.enabled AND (n.gone OR n.failing_since < now() - make_interval(secs => $3)) THEN now()
                       ELSE e.disabled_at END,
    updated_at = now()
FROM next_state n WHERE e.id = n.endpoint_id
