-- BENCHMARK BASELINE ONLY: the availability rules of booking.get_available_slots written once
-- more in plain PL/pgSQL, the way an application developer would write the
-- rpc_get_available_slots_enhanced: loop over the staff and the days, build each day's working
-- hours with AT TIME ZONE, walk the candidate starts with generate_series and ask the tables
-- with one EXISTS query per candidate (holidays, time off, appointments).
--
-- scripts/bench.sh loads this into the benchmark database only; it is never part of the
-- extension. It must return exactly the same rows as the Rust engine (the script checks), so it
-- follows the engine's rules to the letter:
--   * tenant opening hours: opening_hours->'0'..'6' {is_open (default true), start_time,
--     end_time (24:00 allowed)}, a missing day is closed, in the tenant's zone;
--   * staff hours of a local date (staff zone): the available overrides of that date replace the
--     weekly rows (an available override without times = the whole day); otherwise the active
--     weekly rows of that weekday, each in its own zone or the staff member's, several per day
--     merged; an unavailable override without times = day off; one with times cuts them out;
--   * working windows = opening hours ∩ staff hours, merged across days (touching ranges
--     join), computed for the dates p_from - 2 .. p_to + 2;
--   * candidate starts step by slot_interval_minutes in local wall-clock time from the start of
--     each window; a local time that does not exist (spring gap) is skipped, an ambiguous one
--     is taken as `timestamp AT TIME ZONE` takes it; the walk stops at the first start whose
--     end passes the window's end;
--   * a slot's local start date (staff zone) must lie in [p_from, p_to];
--   * notice and advance limits from booking.policy_value and booking.clock_now(); the advance
--     limit counts days of 24 hours, as the engine does;
--   * holidays: whole tenant-local days, one-off or recurring (month/day), for everybody or the
--     listed staff; time off overlapping the slot; live (pending, confirmed, active)
--     appointments whose blocked range overlaps [start - buffer_before,
--     end + buffer_after + tenant buffer_time_minutes);
--   * only active staff of the service's tenant who offer the (active) service;
--   * ordered by starts_at, staff_id.
CREATE SCHEMA IF NOT EXISTS bench_baseline;

-- [p_day + p_start, p_day + p_end) read as wall-clock time in p_zone; empty when the two ends
-- fall the wrong way round (possible inside a DST gap).
CREATE OR REPLACE FUNCTION bench_baseline.local_hours(p_day date, p_start time, p_end time, p_zone text)
RETURNS tstzmultirange
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lower timestamptz := (p_day + p_start) AT TIME ZONE p_zone;
    v_upper timestamptz := (p_day + p_end) AT TIME ZONE p_zone;
BEGIN
    IF v_lower < v_upper THEN
        RETURN tstzmultirange(tstzrange(v_lower, v_upper));
    END IF;
    RETURN '{}'::tstzmultirange;
END $$;

CREATE OR REPLACE FUNCTION bench_baseline.get_available_slots(
    p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_service      booking.services;
    v_tenant       booking.tenants;
    v_staff        booking.staff;
    v_staff_tenant uuid;
    v_now          timestamptz := booking.clock_now();
    v_earliest     timestamptz;
    v_latest       timestamptz;
    v_duration     interval;
    v_before       interval;
    v_after        interval;
    v_step         interval;
    v_day          date;
    v_hours        jsonb;
    v_opening      tstzmultirange := '{}';
    v_working      tstzmultirange;
    v_day_hours    tstzmultirange;
    v_replaced     boolean;
    v_window       tstzrange;
    v_local        timestamp;
    v_start        timestamptz;
    v_end          timestamptz;
    r              record;
    v_ids          uuid[] := '{}';
    v_starts       timestamptz[] := '{}';
    v_ends         timestamptz[] := '{}';
BEGIN
    IF p_service_id IS NULL OR p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'service_id, from_date and to_date must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_from > p_to THEN
        RAISE EXCEPTION 'from_date % is after to_date %', p_from, p_to USING ERRCODE = '22023';
    END IF;
    IF p_to - p_from + 1 > 366 THEN
        RAISE EXCEPTION 'date range of % days is longer than the maximum of 366', p_to - p_from + 1 USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_service FROM booking.services s WHERE s.id = p_service_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'P0002';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        SELECT f.tenant_id INTO v_staff_tenant FROM booking.staff f WHERE f.id = p_staff_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'P0002';
        ELSIF v_staff_tenant <> v_service.tenant_id THEN
            RAISE EXCEPTION 'staff member % does not belong to the tenant of service %', p_staff_id, p_service_id
                USING ERRCODE = '22023';
        END IF;
    END IF;
    SELECT * INTO v_tenant FROM booking.tenants t WHERE t.id = v_service.tenant_id;

    v_earliest := v_now + coalesce(booking.policy_value(v_tenant.id, 'minimum_booking_notice_hours')::float8, 0)
                          * interval '1 hour';
    -- 24-hour days, not calendar days (the engine's reading of the policy).
    v_latest := v_now + coalesce(booking.policy_value(v_tenant.id, 'advance_booking_limit_days')::float8, 36500)
                        * interval '24 hours';
    v_duration := make_interval(mins => v_service.duration_minutes);
    v_before := make_interval(mins => v_service.buffer_before_minutes);
    v_after := make_interval(mins => v_service.buffer_after_minutes + v_tenant.buffer_time_minutes);
    v_step := make_interval(mins => v_tenant.slot_interval_minutes);

    -- The tenant's opening hours, one day either side of the range.
    FOR v_day IN SELECT g::date FROM generate_series((p_from - 2)::timestamp, (p_to + 2)::timestamp, interval '1 day') g LOOP
        v_hours := v_tenant.opening_hours -> extract(dow FROM v_day)::int::text;
        IF v_hours IS NOT NULL AND coalesce((v_hours ->> 'is_open')::boolean, true) THEN
            v_opening := v_opening + bench_baseline.local_hours(
                v_day, (v_hours ->> 'start_time')::time, (v_hours ->> 'end_time')::time, v_tenant.timezone);
        END IF;
    END LOOP;

    FOR v_staff IN
        SELECT f.* FROM booking.staff f
        WHERE f.tenant_id = v_service.tenant_id
          AND (p_staff_id IS NULL OR f.id = p_staff_id)
          AND f.is_active
          AND v_service.is_active
          AND EXISTS (SELECT 1 FROM booking.staff_services ss WHERE ss.staff_id = f.id AND ss.service_id = v_service.id)
        ORDER BY f.id
    LOOP
        -- The staff member's working hours, day by day.
        v_working := '{}';
        FOR v_day IN SELECT g::date FROM generate_series((p_from - 2)::timestamp, (p_to + 2)::timestamp, interval '1 day') g LOOP
            IF EXISTS (SELECT 1 FROM booking.schedule_overrides o
                       WHERE o.staff_id = v_staff.id AND o.date = v_day AND NOT o.is_available AND o.start_time IS NULL) THEN
                CONTINUE;  -- a day off
            END IF;
            v_day_hours := '{}';
            v_replaced := false;
            FOR r IN SELECT o.start_time, o.end_time FROM booking.schedule_overrides o
                     WHERE o.staff_id = v_staff.id AND o.date = v_day AND o.is_available LOOP
                v_replaced := true;
                v_day_hours := v_day_hours + bench_baseline.local_hours(
                    v_day, coalesce(r.start_time, '00:00'), coalesce(r.end_time, '24:00'), v_staff.timezone);
            END LOOP;
            IF NOT v_replaced THEN
                FOR r IN SELECT s.start_time, s.end_time, coalesce(s.timezone, v_staff.timezone) AS zone
                         FROM booking.staff_schedules s
                         WHERE s.staff_id = v_staff.id AND s.is_active AND s.day_of_week = extract(dow FROM v_day) LOOP
                    v_day_hours := v_day_hours + bench_baseline.local_hours(v_day, r.start_time, r.end_time, r.zone);
                END LOOP;
            END IF;
            FOR r IN SELECT o.start_time, o.end_time FROM booking.schedule_overrides o
                     WHERE o.staff_id = v_staff.id AND o.date = v_day AND NOT o.is_available AND o.start_time IS NOT NULL LOOP
                v_day_hours := v_day_hours - bench_baseline.local_hours(v_day, r.start_time, r.end_time, v_staff.timezone);
            END LOOP;
            v_working := v_working + v_day_hours;
        END LOOP;

        -- Walk every window in wall-clock steps and test each candidate.
        FOR v_window IN SELECT w FROM unnest(v_opening * v_working) w LOOP
            FOR v_local IN SELECT generate_series(lower(v_window) AT TIME ZONE v_staff.timezone,
                                                  upper(v_window) AT TIME ZONE v_staff.timezone, v_step) LOOP
                v_start := v_local AT TIME ZONE v_staff.timezone;
                -- Skipped by the spring-forward change: AT TIME ZONE moved it.
                CONTINUE WHEN v_start AT TIME ZONE v_staff.timezone <> v_local;
                v_end := v_start + v_duration;
                EXIT WHEN v_end > upper(v_window);
                CONTINUE WHEN (v_start AT TIME ZONE v_staff.timezone)::date NOT BETWEEN p_from AND p_to;
                CONTINUE WHEN v_start < v_earliest OR v_start > v_latest;
                -- Holiday: a whole tenant-local day that the slot touches.
                CONTINUE WHEN EXISTS (
                    SELECT 1
                    FROM booking.holidays h,
                         generate_series(((v_start AT TIME ZONE v_tenant.timezone)::date - 1)::timestamp,
                                         (v_end AT TIME ZONE v_tenant.timezone)::date::timestamp, interval '1 day') g
                    WHERE h.tenant_id = v_tenant.id
                      AND (h.affects_all_staff OR v_staff.id = ANY (h.affected_staff_ids))
                      AND CASE WHEN h.is_recurring
                               THEN h.recurring_month = extract(month FROM g) AND h.recurring_day = extract(day FROM g)
                               ELSE h.date = g::date END
                      AND tstzrange(g::date::timestamp AT TIME ZONE v_tenant.timezone,
                                    (g::date + 1)::timestamp AT TIME ZONE v_tenant.timezone) && tstzrange(v_start, v_end));
                CONTINUE WHEN EXISTS (
                    SELECT 1 FROM booking.staff_time_off x
                    WHERE x.staff_id = v_staff.id AND x.period && tstzrange(v_start, v_end));
                CONTINUE WHEN EXISTS (
                    SELECT 1 FROM booking.appointments a
                    WHERE a.staff_id = v_staff.id
                      AND a.status IN ('pending', 'confirmed', 'active')
                      AND a.blocked && tstzrange(v_start - v_before, v_end + v_after));
                v_ids := v_ids || v_staff.id;
                v_starts := v_starts || v_start;
                v_ends := v_ends || v_end;
            END LOOP;
        END LOOP;
    END LOOP;

    RETURN QUERY
        SELECT u.staff_id, u.starts_at, u.ends_at
        FROM unnest(v_ids, v_starts, v_ends) AS u(staff_id, starts_at, ends_at)
        ORDER BY u.starts_at, u.staff_id;
END $$;

COMMENT ON FUNCTION bench_baseline.get_available_slots(uuid, date, date, uuid) IS
    'Benchmark baseline only: booking.get_available_slots written in plain PL/pgSQL.';
