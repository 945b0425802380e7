-- In how many ms the delivery worker has something to claim: the earliest due delivery of an
-- enabled endpoint not in $1 (those whose claimed deliveries the worker is still working
-- through: a finished send wakes it) whose circuit is closed, or when its cool-down ends.
-- NULL: nothing pending.
SELECT (extract(epoch FROM min(greatest(n.at, coalesce(e.circuit_open_until, n.at))) - clock_timestamp()) * 1000)::int8
FROM booking_admin.delivery_endpoints e
CROSS JOIN LATERAL (
    SELECT min(d.next_attempt_at) AS at FROM booking_admin.deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'
) n
WHERE e.enabled AND n.at IS NOT NULL AND e.id <> ALL ($1)
