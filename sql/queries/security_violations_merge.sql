-- One rule's findings merged into security_violations: $1 the rule, $2 [{key, details}]; new ones inserted, vanished ones resolved. Returns [inserted, resolved].
WITH found AS (
    SELECT e->>'key' AS object_key, e->'details' AS details,
           CASE WHEN e->'details'->>'tenant_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                THEN (e->'details'->>'tenant_id')::uuid END AS tenant_id
    FROM jsonb_array_elements($2) e
), ins AS (
    INSERT INTO booking_admin.security_violations (rule_id, tenant_id, object_key, violation_details, severity, detected_at)
    SELECT DISTINCT ON (f.object_key) $1, f.tenant_id, f.object_key, f.details, r.severity, booking.clock_now()
    FROM found f, booking_admin.security_rules r WHERE r.id = $1
    ON CONFLICT (rule_id, object_key) WHERE status <> 'resolved'
    DO UPDATE SET violation_details = EXCLUDED.violation_details
    RETURNING (xmax = 0) AS inserted
), res AS (
    UPDATE booking_admin.security_violations v SET status = 'resolved', resolved_at = booking.clock_now()
    WHERE v.rule_id = $1 AND v.status <> 'resolved' AND v.object_key NOT IN (SELECT object_key FROM found)
    RETURNING 1
)
SELECT json_build_array((SELECT count(*) FROM ins WHERE inserted), (SELECT count(*) FROM res))::text
