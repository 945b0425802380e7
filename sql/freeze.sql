-- The freeze calendar: windows ("the wedding season Saturdays", "Black Friday") during which
-- nothing risky happens to the database. Inside a window, DDL through the admin sandbox, the
-- auto-tuner's changes and maintenance that takes strong locks are refused or deferred to the
-- window's end; bookings go on (nothing on the booking path asks the calendar).
--
-- A window is global (tenant_id NULL) or a tenant's. The tables are shared by every tenant,
-- so an operation on them (DDL, a strong lock) is frozen by any tenant's window as well as by a
-- global one; an operation that concerns one tenant only (a job enqueued for that tenant) is
-- frozen by that tenant's windows and the global ones.
--
-- 'refuse' windows refuse what an operator asks for now (SQLSTATE 57000, audited); 'defer'
-- windows queue it to run when the window ends. What runs on its own schedule (the scheduler's
-- operations, queued jobs, the tuner) is always deferred: there is nobody to refuse.

CREATE TABLE booking_admin.freeze_windows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200),
    action      text NOT NULL DEFAULT 'defer' CHECK (action IN ('refuse', 'defer')),
    -- A one-off window: [starts_at, ends_at).
    starts_at   timestamptz,
    ends_at     timestamptz,
    -- A weekly window: on these local weekdays (0 = Sunday .. 6) from start_time to end_time
    -- ('24:00' is midnight at the day's end) in time_zone, on the local dates from valid_from to
    -- valid_until (both included; NULL: no bound).
    days        integer[] CHECK (days <@ '{0,1,2,3,4,5,6}' AND cardinality(days) > 0),
    start_time  time,
    end_time    time,
    time_zone   text NOT NULL DEFAULT 'UTC' CHECK (booking.is_valid_timezone(time_zone)),
    valid_from  date,
    valid_until date,
    created_by  text NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_at IS NOT NULL AND ends_at > starts_at AND days IS NULL AND start_time IS NULL AND end_time IS NULL
           OR days IS NOT NULL AND start_time < end_time AND starts_at IS NULL AND ends_at IS NULL),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until)
);
CREATE INDEX freeze_windows_tenant_idx ON booking_admin.freeze_windows (tenant_id);
COMMENT ON TABLE booking_admin.freeze_windows IS
    'The freeze calendar: one-off [starts_at, ends_at) or weekly (days, start_time, end_time in time_zone, between valid_from and valid_until) windows, global (tenant_id NULL) or a tenant''s, that refuse or defer DDL, tuner changes and strong-lock maintenance.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.freeze_windows', '');

-- The windows in force at p_at for an operation on the shared tables (p_tenant_id NULL: every
-- window) or concerning one tenant (the global windows and that tenant's), each with the end
-- of its current occurrence.
CREATE FUNCTION booking_admin.freeze_windows_at(p_at timestamptz, p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (id uuid, tenant_id uuid, description text, action text, ends_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.id, w.tenant_id, w.description, w.action,
           CASE WHEN w.days IS NULL THEN w.ends_at
                ELSE ((l.at::date + w.end_time) AT TIME ZONE w.time_zone) END
    FROM booking_admin.freeze_windows w
    CROSS JOIN LATERAL (SELECT p_at AT TIME ZONE w.time_zone AS at) l
    WHERE (p_tenant_id IS NULL OR w.tenant_id IS NULL OR w.tenant_id = p_tenant_id)
      AND CASE WHEN w.days IS NULL THEN p_at >= w.starts_at AND p_at < w.ends_at
               ELSE extract(dow FROM l.at)::int = ANY (w.days)
                    AND l.at::time >= w.start_time AND (l.at::time < w.end_time OR w.end_time = '24:00')
                    AND (w.valid_from IS NULL OR l.at::date >= w.valid_from)
                    AND (w.valid_until IS NULL OR l.at::date <= w.valid_until) END
$$;

-- Whether an operation is frozen now: {"frozen": false} or {"frozen": true, "action",
-- "until", "windows": [{id, tenant_id, description, action}]}. "until" is when the freeze
-- ends: the end of the windows in force, followed through the windows that begin as others
-- end (a Saturday window then a Sunday one freeze until Sunday's end). "action" is 'refuse'
-- when any window in force refuses.
CREATE FUNCTION booking_admin.freeze_state(p_tenant_id uuid DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := coalesce(p_at, booking.clock_now());
    v_until timestamptz;
    v_next timestamptz;
    v_windows jsonb;
    v_refuse boolean;
BEGIN
    SELECT max(w.ends_at), jsonb_agg(jsonb_build_object('id', w.id, 'tenant_id', w.tenant_id, 'description', w.description,
                                                         'action', w.action) ORDER BY w.ends_at, w.id),
           bool_or(w.action = 'refuse')
    INTO v_until, v_windows, v_refuse
    FROM booking_admin.freeze_windows_at(v_at, p_tenant_id) w;
    IF v_until IS NULL THEN
        RETURN jsonb_build_object('frozen', false);
    END IF;
    -- Back-to-back windows: at most a year of them, which also ends a calendar frozen for ever.
    FOR i IN 1..366 LOOP
        SELECT max(w.ends_at) INTO v_next FROM booking_admin.freeze_windows_at(v_until, p_tenant_id) w;
        EXIT WHEN v_next IS NULL OR v_next <= v_until;
        v_until := v_next;
    END LOOP;
    RETURN jsonb_build_object('frozen', true, 'action', CASE WHEN v_refuse THEN 'refuse' ELSE 'defer' END,
                              'until', v_until, 'windows', v_windows);
END $$;

-- What an operator-initiated operation does under the calendar: returns NULL (go on) or the
-- instant to defer it to; raises 57000 (with the windows in the detail) when a window in force
-- refuses, after recording the refusal in the audit log (it survives the error's rollback).
-- p_what names the operation in the error and the audit entry.
CREATE FUNCTION booking_admin.freeze_gate(p_what text, p_tenant_id uuid DEFAULT NULL) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v jsonb := booking_admin.freeze_state(p_tenant_id);
    v_reason text;
BEGIN
    IF NOT (v ->> 'frozen')::boolean THEN
        RETURN NULL;
    END IF;
    IF v ->> 'action' = 'refuse' THEN
        v_reason := format('%s is refused inside a freeze window until %s (%s)', p_what, v ->> 'until',
                           (SELECT string_agg(w ->> 'description', '; ') FROM jsonb_array_elements(v -> 'windows') w));
        PERFORM booking.audit_event('freeze.refused', 'freeze_window', p_what, false, v_reason, false, p_tenant_id);
        RAISE EXCEPTION '%', v_reason USING ERRCODE = '57000', DETAIL = (v -> 'windows')::text,
            HINT = 'Wait for the window to end, or remove the window (booking_admin.freeze_windows) if it no longer applies.';
    END IF;
    RETURN (v ->> 'until')::timestamptz;
END $$;

-- The calendar, managed by operators (the table is theirs to edit too; these check the
-- arguments with clear errors).
CREATE FUNCTION booking_admin.add_freeze_window(
    p_description text,
    p_starts_at timestamptz DEFAULT NULL,
    p_ends_at timestamptz DEFAULT NULL,
    p_days integer[] DEFAULT NULL,
    p_start_time time DEFAULT NULL,
    p_end_time time DEFAULT NULL,
    p_time_zone text DEFAULT 'UTC',
    p_valid_from date DEFAULT NULL,
    p_valid_until date DEFAULT NULL,
    p_action text DEFAULT 'defer',
    p_tenant_id uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_description IS NULL OR length(p_description) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a freeze window needs a description of 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF p_action IS NULL OR p_action NOT IN ('refuse', 'defer') THEN
        RAISE EXCEPTION 'action must be ''refuse'' or ''defer'', not %', coalesce(quote_literal(p_action), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF (p_starts_at IS NULL) = (p_days IS NULL) THEN
        RAISE EXCEPTION 'give either p_starts_at and p_ends_at (a one-off window) or p_days, p_start_time and p_end_time (a weekly one)'
            USING ERRCODE = '22023';
    END IF;
    IF p_starts_at IS NOT NULL AND (p_ends_at IS NULL OR p_ends_at <= p_starts_at) THEN
        RAISE EXCEPTION 'a one-off window ends after it starts' USING ERRCODE = '22023';
    END IF;
    IF p_days IS NOT NULL AND (cardinality(p_days) = 0 OR NOT p_days <@ '{0,1,2,3,4,5,6}' OR array_position(p_days, NULL) IS NOT NULL
                               OR p_start_time IS NULL OR p_end_time IS NULL OR p_start_time >= p_end_time) THEN
        RAISE EXCEPTION 'a weekly window has days 0 (Sunday) .. 6 and a start time before its end time (''24:00'' for midnight)'
            USING ERRCODE = '22023';
    END IF;
    IF p_time_zone IS NULL OR NOT booking.is_valid_timezone(p_time_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', coalesce(quote_literal(p_time_zone), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF p_valid_from > p_valid_until THEN
        RAISE EXCEPTION 'valid_from is after valid_until' USING ERRCODE = '22023';
    END IF;
    INSERT INTO booking_admin.freeze_windows (tenant_id, description, action, starts_at, ends_at, days, start_time, end_time,
                                              time_zone, valid_from, valid_until)
    VALUES (p_tenant_id, p_description, p_action, p_starts_at, p_ends_at, p_days, p_start_time, p_end_time, p_time_zone,
            p_valid_from, p_valid_until)
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'tenant % does not exist', p_tenant_id USING ERRCODE = 'P0002';
END $$;

CREATE FUNCTION booking_admin.remove_freeze_window(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM booking_admin.freeze_windows w WHERE w.id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no freeze window %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END $$;

-- A job put back in the queue without counting an attempt: a runner found it frozen. At least 5
-- seconds ahead: where booking_engine.now holds the calendar's clock still, the window's end
-- may already be past on the real clock the queue runs by, and the job must not spin.
CREATE FUNCTION booking_admin.defer_job(p_id uuid, p_until timestamptz) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    UPDATE booking_admin.jobs
    SET status = 'pending', scheduled_at = greatest(p_until, clock_timestamp() + interval '5 seconds'),
        started_at = NULL, locked_by = NULL, locked_pid = NULL,
        locked_at = NULL, heartbeat_at = NULL, updated_at = now(),
        error_message = format('deferred by the freeze calendar until %s', p_until)
    WHERE id = p_id AND status = 'running'
$$;
