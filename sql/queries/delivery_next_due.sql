-- In how many ms the delivery worker has something to claim: the earliest due delivery of an
-- enabled endpoint with room (an endpoint sending at its limit wakes the worker when a send
-- finishes) and a closed circuit (or when the cool-down ends). NULL: nothing pending.
SELECT (extract(epoch FROM min(greatest(n.at, coalesce(e.circuit_open_until, n.at))) - clock_timestamp()) * 1000)::int8
FROM booking_admin.delivery_endpoints e
CROSS JOIN LATERAL (
    SELECT min(d.next_attempt_at) AS at FROM booking_admin.deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'
) n
WHERE e.enabled AND n.at IS NOT NULL
  AND (SELECT count(*) FROM booking_admin.deliveries s WHERE s.endpoint_id = e.id AND s.status = 'sending')
      < CASE WHEN $1 > 0 AND e.consecutive_failures >= $1 THEN 1 ELSE e.max_in_flight END
