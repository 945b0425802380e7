-- Every input of one availability question, read at once (src/availability/model.rs, prepared
-- once per backend). See INPUTS_SQL there for the parameters. Every table is filtered by the
-- tenant ($8) itself, not only through a join: on Citus that is what makes the whole read one
-- router query on the shard group holding the tenant (a join alone would not prune shards).
WITH svc AS (
    SELECT s.id, s.tenant_id, s.duration_minutes AS duration, s.buffer_before_minutes AS buffer_before,
           s.buffer_after_minutes AS buffer_after, s.is_active
    FROM booking.services s WHERE s.tenant_id = $8 AND s.id = $1
), now AS (
    SELECT booking.clock_now() AS t
), span AS (
    -- Every appointment or time off that a slot on these local dates (any zone is within 14
    -- hours of UTC) could touch, buffers and the tenant's turnover included; the longest length
    -- a staff member of the tenant has for the service counts too.
    SELECT tstzrange(($3::date - 3)::timestamp AT TIME ZONE 'UTC',
                     ($4::date + 3)::timestamp AT TIME ZONE 'UTC'
                     + make_interval(mins => greatest(svc.duration, $7, coalesce((
                           SELECT max(ss.duration_minutes) FROM booking.staff_services ss
                           WHERE ss.tenant_id = $8 AND ss.service_id = svc.id), 0))
                         + svc.buffer_after + t.buffer_time_minutes)) AS r
    FROM svc JOIN booking.tenants t ON t.id = svc.tenant_id AND t.id = $8
), st AS (
    -- Each staff member's minimum notice and advance limit for this service: their own policy,
    -- else the service's, else the tenant's, else a global one, else the builtin (as
    -- booking.policy_value reads them; read here rather than by calling it: on Citus this
    -- statement is shipped to the worker, where a function reading tables inside it would be a
    -- nested distributed query). With their own length of the service and their terms for
    -- "any staff" bookings (staff_services).
    SELECT f.id, f.timezone,
           f.is_active AND svc.is_active AND ss.staff_id IS NOT NULL AS offers,
           ss.duration_minutes, coalesce(ss.weight, 1) AS weight, coalesce(ss.priority, 0) AS priority,
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
    LEFT JOIN booking.staff_services ss ON ss.tenant_id = $8 AND ss.staff_id = f.id AND ss.service_id = svc.id
    WHERE f.tenant_id = $8 AND ($2::uuid IS NULL OR f.id = $2)
), req AS (
    -- The resources the service needs: each requirement with the resources that may meet it
    -- (a group's members, or the one named), active ones only.
    SELECT r.id, coalesce(g.name, x.name) AS label, r.quantity,
           coalesce(CASE WHEN r.resource_id IS NOT NULL THEN
                             ARRAY(SELECT x.id WHERE x.is_active)
                         ELSE ARRAY(SELECT m.resource_id FROM booking.resource_group_members m
                                    JOIN booking.resources y ON y.tenant_id = $8 AND y.id = m.resource_id AND y.is_active
                                    WHERE m.tenant_id = $8 AND m.group_id = r.group_id) END, '{}') AS members
    FROM booking.service_requirements r
    LEFT JOIN booking.resource_groups g ON g.tenant_id = $8 AND g.id = r.group_id
    LEFT JOIN booking.resources x ON x.tenant_id = $8 AND x.id = r.resource_id
    WHERE r.tenant_id = $8 AND r.service_id = $1
), res AS (
    SELECT x.id, x.name, x.position, x.opening_hours
    FROM booking.resources x
    WHERE x.tenant_id = $8 AND x.id IN (SELECT unnest(req.members) FROM req)
), cap AS (
    -- The caps that can limit this booking; a customer's only when the question names one.
    SELECT c.id, c.scope, c.staff_id, c.service_id, c.period, c.max_bookings
    FROM booking.booking_caps c
    WHERE c.tenant_id = $8 AND (c.service_id IS NULL OR c.service_id = $1) AND (c.scope <> 'customer' OR $10::uuid IS NOT NULL)
), weeks AS (
    -- What the caps count: whole weeks around the dates (any zone is within a day of UTC).
    SELECT tstzrange(($3::date - 8)::timestamp AT TIME ZONE 'UTC', ($4::date + 9)::timestamp AT TIME ZONE 'UTC') AS r
), strategy AS (
    SELECT coalesce((SELECT b.staff_strategy FROM booking.booking_settings b WHERE b.tenant_id = $8), 'least_busy_day') AS name
), weighed AS (
    -- What the tenant's "any staff" strategy weighs: the days (least busy that day), the weeks
    -- (that week) or the calendar months (round robin) around the dates; nothing for a fixed
    -- order.
    SELECT CASE strategy.name
               WHEN 'least_busy_day' THEN tstzrange(($3::date - 1)::timestamp AT TIME ZONE 'UTC', ($4::date + 2)::timestamp AT TIME ZONE 'UTC')
               WHEN 'least_busy_week' THEN weeks.r
               WHEN 'round_robin' THEN tstzrange((date_trunc('month', $3::date) - interval '1 day')::timestamp AT TIME ZONE 'UTC',
                                                 (date_trunc('month', $4::date) + interval '1 month 1 day')::timestamp AT TIME ZONE 'UTC')
               ELSE 'empty'::tstzrange END AS r
    FROM strategy, weeks
)
SELECT json_build_object(
    'service', (SELECT row_to_json(svc) FROM svc),
    'tenant', (SELECT json_build_object('timezone', t.timezone, 'opening_hours', t.opening_hours,
                                        'buffer', t.buffer_time_minutes, 'interval', t.slot_interval_minutes,
                                        'strategy', (SELECT strategy.name FROM strategy))
               FROM booking.tenants t JOIN svc ON t.id = svc.tenant_id WHERE t.id = $8),
    'staff_tenant', (SELECT f.tenant_id FROM booking.staff f WHERE f.id = $2 AND f.tenant_id = $8),
    'now', (extract(epoch FROM (SELECT now.t FROM now)) * 1000000)::int8,
    'staff', coalesce((SELECT json_agg(json_build_array(st.id, st.timezone, st.offers, st.notice_hours, st.advance_days,
                                                        st.duration_minutes, st.weight, st.priority))
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
    -- rather than by time across all staff. Live holds block their staff member like
    -- appointments (an expired one no longer does, whether or not it was removed yet).
    'blocked', coalesce((SELECT json_agg(json_build_array(a.staff_id,
                             (extract(epoch FROM lower(a.blocked)) * 1000000)::int8 + (NOT lower_inc(a.blocked))::int,
                             (extract(epoch FROM upper(a.blocked)) * 1000000)::int8 + upper_inc(a.blocked)::int))
                         FROM st, span, LATERAL (
                             SELECT a.staff_id, a.blocked FROM booking.appointments a
                             WHERE a.tenant_id = $8 AND a.staff_id = st.id
                               AND a.status IN ('pending', 'confirmed', 'active')
                               AND a.blocked && span.r
                               AND a.id IS DISTINCT FROM $5
                             UNION ALL
                             SELECT h.staff_id, h.blocked FROM booking.assignments h
                             WHERE h.tenant_id = $8 AND h.staff_id = st.id AND h.live AND h.hold_id IS NOT NULL
                               AND h.blocked && span.r AND h.expires_at > (SELECT now.t FROM now)
                               AND h.hold_id IS DISTINCT FROM $9
                             OFFSET 0) a), '[]'),
    'holidays', coalesce((SELECT json_agg(json_build_array(h.name, h.date, h.is_recurring, h.recurring_month,
                              h.recurring_day, h.affects_all_staff, h.affected_staff_ids))
                          FROM booking.holidays h JOIN svc ON h.tenant_id = svc.tenant_id
                          WHERE h.tenant_id = $8 AND (h.is_recurring OR h.date BETWEEN $3::date - 3 AND $4::date + 3)), '[]'),
    'requirements', coalesce((SELECT json_agg(json_build_array(req.id, req.label, req.quantity, req.members) ORDER BY req.id)
                              FROM req), '[]'),
    'resources', coalesce((SELECT json_agg(json_build_array(res.id, res.name, res.position, res.opening_hours,
        coalesce((SELECT json_agg(json_build_array(
                      (extract(epoch FROM lower(c.period)) * 1000000)::int8 + (NOT lower_inc(c.period))::int,
                      (extract(epoch FROM upper(c.period)) * 1000000)::int8 + upper_inc(c.period)::int))
                  FROM booking.resource_closures c, span
                  WHERE c.tenant_id = $8 AND c.resource_id = res.id AND c.period && span.r), '[]'),
        coalesce((SELECT json_agg(json_build_array(
                      (extract(epoch FROM lower(a.blocked)) * 1000000)::int8 + (NOT lower_inc(a.blocked))::int,
                      (extract(epoch FROM upper(a.blocked)) * 1000000)::int8 + upper_inc(a.blocked)::int))
                  FROM booking.assignments a, span
                  WHERE a.tenant_id = $8 AND a.resource_id = res.id AND a.live
                    -- "blocked && span" for these finite [) ranges, written so that the btree of
                    -- live resource claims by their end (assignments_live_resource_idx) searches
                    -- it: a resource's claims that end after the span starts are its bounded
                    -- future, where the exclusion constraint's gist index reads many pages.
                    AND upper(a.blocked) > lower(span.r) AND lower(a.blocked) < upper(span.r)
                    AND (a.expires_at IS NULL OR a.expires_at > (SELECT now.t FROM now))
                    AND coalesce(a.appointment_id <> $5, true) AND coalesce(a.hold_id <> $9, true)), '[]')))
                           FROM res), '[]'),
    -- What the appointment or hold being changed holds now: a move keeps it where it can.
    'held', coalesce((SELECT json_agg(json_build_array(a.requirement_id, a.resource_id))
                      FROM booking.assignments a
                      WHERE a.tenant_id = $8 AND a.resource_id IS NOT NULL AND a.requirement_id IS NOT NULL
                        AND (a.appointment_id = $5 OR a.hold_id = $9)), '[]'),
    'caps', coalesce((SELECT json_agg(json_build_array(cap.id, cap.scope, cap.staff_id, cap.service_id, cap.period,
                                                       cap.max_bookings)) FROM cap), '[]'),
    -- What counts against the caps: bookings that are not cancelled or expired, and live holds.
    'counted', CASE WHEN EXISTS (SELECT 1 FROM cap) THEN coalesce((
        SELECT json_agg(json_build_array(x.staff_id, x.service_id, x.customer_id, (extract(epoch FROM x.starts_at) * 1000000)::int8))
        FROM (SELECT a.staff_id, a.service_id, a.customer_id, a.starts_at FROM booking.appointments a, weeks
              WHERE a.tenant_id = $8 AND a.starts_at <@ weeks.r AND a.status NOT IN ('cancelled', 'expired')
                AND a.id IS DISTINCT FROM $5
              UNION ALL
              SELECT h.staff_id, h.service_id, h.customer_id, h.starts_at FROM booking.holds h, weeks
              WHERE h.tenant_id = $8 AND h.starts_at <@ weeks.r AND h.expires_at > (SELECT now.t FROM now)
                AND h.id IS DISTINCT FROM $9) x), '[]') ELSE '[]' END,
    -- What makes a staff member busy, for the "any staff" strategies.
    'busy', CASE WHEN $11 THEN coalesce((
        SELECT json_agg(json_build_array(x.staff_id, x.service_id, (extract(epoch FROM x.starts_at) * 1000000)::int8,
                                         (extract(epoch FROM x.ends_at) * 1000000)::int8, x.any_staff))
        FROM st, weighed, LATERAL (
            SELECT a.staff_id, a.service_id, a.starts_at, a.ends_at, a.staff_choice IS NOT NULL AS any_staff
            FROM booking.appointments a
            WHERE a.tenant_id = $8 AND a.staff_id = st.id AND a.starts_at <@ weighed.r
              AND a.status NOT IN ('cancelled', 'expired', 'no_show') AND a.id IS DISTINCT FROM $5
            UNION ALL
            SELECT h.staff_id, h.service_id, h.starts_at, h.ends_at, h.staff_choice IS NOT NULL
            FROM booking.holds h
            WHERE h.tenant_id = $8 AND h.staff_id = st.id AND h.starts_at <@ weighed.r
              AND h.expires_at > (SELECT now.t FROM now) AND h.id IS DISTINCT FROM $9
            OFFSET 0) x), '[]') ELSE '[]' END
)::text
