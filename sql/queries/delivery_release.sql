-- At the delivery worker's start: what an earlier worker was sending when it stopped (killed,
-- crashed, the server stopped) goes back to pending, at once, with an 'interrupted' attempt in
-- the ledger. Only one delivery worker runs per database, so nothing else is sending them.
WITH s AS (
    UPDATE booking_admin.deliveries d SET status = 'pending', next_attempt_at = now(), updated_at = now()
    WHERE d.status = 'sending'
    RETURNING d.id, d.endpoint_id, d.attempts
)
INSERT INTO booking_admin.delivery_attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms, error, outcome)
SELECT s.id, s.endpoint_id, s.attempts, now(), 0, 'the delivery worker stopped during this attempt; it is sent again', 'interrupted'
FROM s
