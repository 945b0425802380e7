-- Every input of one availability question, read at once (src/availability/api.rs, prepared
-- once per backend). See INPUTS_SQL there for the parameters. Every table is filtered by the
-- tenant ($8) itself, not only through a join: on Citus that is what makes the whole read one
-- router query on the shard group holding the tenant (a join alone would not prune shards).
WITH svc AS (
    SELECT s.id, s.tenant_id, s.duration_minutes AS duration, s.buffer_before_minutes AS buffer_before,
           s.buffer_after_minutes AS buffer_after, s.is_active
    FROM booking.services s WHERE s.tenant_id = $8 AND s.id = $1
), span AS (
    -- Every appointment or time off that a slot on these local dates (any zone is within 14
    -- hours of UTC) could touch, buffers and the tenant's turnover included.
    SELECT tstzrange(($3::date - 3)::timestamp AT TIME ZONE 'UTC',
                     ($4::date + 3)::timestamp AT TIME ZONE 'UTC'
                     + make_interval(mins => greatest(svc.duration, $7) + svc.buffer_after + t.buffer_time_minutes)) AS r
    FROM svc JOIN booking.tenants t ON t.id = svc.tenant_id AND t.id = $8
), st AS (
    -- Each staff member's minimum notice and advance limit for this service: their own policy,
    -- else the service's, else the tenant's, else a global one, else the builtin (as
    -- booking.policy_value reads them; read here rather than by calling it: on Citus this
    -- statement is shipped to the worker, where a function reading tables inside it would be a
    -- nested distributed query).
    SELECT f.id, f.timezone,
           f.is_active AND svc.is_active AND EXISTS (
               SELECT 1 FROM booking.staff_services ss
               WHERE ss.tenant_id = $8 AND ss.staff_id = f.id AND ss.service_id = svc.id) AS offers,
           coalesce(
               (SELECT p.policy_value FROM booking.booking_policies p
                WHERE p.tenant_id = $8 AND p.policy_key = 'minimum_booking_notice_hours'
                  AND (p.staff_id = f.id OR p.service_id = svc.id OR (p.staff_id IS NULL AND p.service_id IS NULL))
                ORDER BY p.staff_id IS NULL, p.service_id IS NULL LIMIT 1),
               (SELECT g.policy_value FROM booking.global_policies g WHERE g.policy_key = 'minimum_booking_notice_hours' ORDER BY g.is_builtin LIMIT 1),
               '0') AS notice_hours,
           coalesce(
               (SELECT p.policy_value FROM booking.booking_policies p
                WHERE p.tenant_id = $8 AND p.policy_key = 'advance_booking_limit_days'
                  AND (p.staff_id = f.id OR p.service_id = svc.id OR (p.staff_id IS NULL AND p.service_id IS NULL))
                ORDER BY p.staff_id IS NULL, p.service_id IS NULL LIMIT 1),
               (SELECT g.policy_value FROM booking.global_policies g WHERE g.policy_key = 'advance_booking_limit_days' ORDER BY g.is_builtin LIMIT 1),
               '36500') AS advance_days
    FROM booking.staff f JOIN svc ON f.tenant_id = svc.tenant_id
    WHERE f.tenant_id = $8 AND ($2::uuid IS NULL OR f.id = $2)
)
SELECT json_build_object(
    'service', (SELECT row_to_json(svc) FROM svc),
    'tenant', (SELECT json_build_object('timezone', t.timezone, 'opening_hours', t.opening_hours,
                                        'buffer', t.buffer_time_minutes, 'interval', t.slot_interval_minutes)
               FROM booking.tenants t JOIN svc ON t.id = svc.tenant_id WHERE t.id = $8),
    'staff_tenant', (SELECT f.tenant_id FROM booking.staff f WHERE f.id = $2 AND f.tenant_id = $8),
    'now', (extract(epoch FROM booking.clock_now()) * 1000000)::int8,
    'staff', coalesce((SELECT json_agg(json_build_array(st.id, st.timezone, st.offers, st.notice_hours, st.advance_days))
                       FROM st WHERE st.offers OR $6), '[]'),
    'schedules', coalesce((SELECT json_agg(json_build_array(s.staff_id, s.day_of_week,
                               extract(epoch FROM s.start_time)::int, extract(epoch FROM s.end_time)::int, s.timezone))
                           FROM booking.staff_schedules s JOIN st ON st.id = s.staff_id
                           WHERE s.tenant_id = $8 AND s.is_active), '[]'),
    'overrides', coalesce((SELECT json_agg(json_build_array(o.staff_id, o.date,
                               extract(epoch FROM o.start_time)::int, extract(epoch FROM o.end_time)::int, o.is_available))
                           FROM booking.schedule_overrides o JOIN st ON st.id = o.staff_id
                           WHERE o.tenant_id = $8 AND o.date BETWEEN $3::date - 3 AND $4::date + 3), '[]'),
    -- Ranges are read as half-open [lower, upper), whatever bounds they were written with.
    'time_off', coalesce((SELECT json_agg(json_build_array(x.staff_id,
                              (extract(epoch FROM lower(x.period)) * 1000000)::int8 + (NOT lower_inc(x.period))::int,
                              (extract(epoch FROM upper(x.period)) * 1000000)::int8 + upper_inc(x.period)::int, x.reason))
                          FROM st, span, LATERAL (
                              SELECT x.staff_id, x.period, x.reason FROM booking.staff_time_off x
                              WHERE x.tenant_id = $8 AND x.staff_id = st.id AND x.period && span.r
                              OFFSET 0) x), '[]'),
    -- LATERAL per staff member (OFFSET 0 keeps the planner from flattening it), so that even the
    -- cached generic plan searches the exclusion constraint's index by (staff_id, blocked)
    -- rather than by time across all staff.
    'blocked', coalesce((SELECT json_agg(json_build_array(a.staff_id,
                             (extract(epoch FROM lower(a.blocked)) * 1000000)::int8 + (NOT lower_inc(a.blocked))::int,
                             (extract(epoch FROM upper(a.blocked)) * 1000000)::int8 + upper_inc(a.blocked)::int))
                         FROM st, span, LATERAL (
                             SELECT a.staff_id, a.blocked FROM booking.appointments a
                             WHERE a.tenant_id = $8 AND a.staff_id = st.id
                               AND a.status IN ('pending', 'confirmed', 'active')
                               AND a.blocked && span.r
                               AND a.id IS DISTINCT FROM $5
                             OFFSET 0) a), '[]'),
    'holidays', coalesce((SELECT json_agg(json_build_array(h.name, h.date, h.is_recurring, h.recurring_month,
                              h.recurring_day, h.affects_all_staff, h.affected_staff_ids))
                          FROM booking.holidays h JOIN svc ON h.tenant_id = svc.tenant_id
                          WHERE h.tenant_id = $8 AND (h.is_recurring OR h.date BETWEEN $3::date - 3 AND $4::date + 3)), '[]')
)::text
