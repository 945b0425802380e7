-- Application-facing availability functions answer PT404 (PostgREST: HTTP 404) for a service
-- or staff member that does not exist or that the caller may not see (an inactive one, outside
-- the tenant's own people), the same answer either way. Returns the service id, so that callers
-- can make the real work depend on it (it runs after the check). SECURITY DEFINER: staff rows
-- are not readable by applications.
CREATE FUNCTION booking_internal.require_bookable(p_service_id uuid, p_staff_id uuid DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_service booking.services;
    v_staff booking.staff;
    v_insider boolean;
BEGIN
    IF p_service_id IS NULL THEN
        RAISE EXCEPTION 'service_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_service FROM booking.services WHERE id = p_service_id;
    v_insider := FOUND AND booking.caller_is_insider(v_service.tenant_id);
    IF NOT FOUND OR NOT (v_service.is_active OR v_insider) THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'PT404';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        SELECT * INTO v_staff FROM booking.staff WHERE id = p_staff_id;
        -- A staff member of another tenant stays 22023 (the slot engine says which) for insiders;
        -- outsiders learn nothing about other tenants' staff.
        IF NOT FOUND OR NOT (v_insider OR (v_staff.is_active AND v_staff.tenant_id = v_service.tenant_id)) THEN
            RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
        END IF;
    END IF;
    RETURN p_service_id;
END $$;

-- The slot check: every availability rule for one proposed booking, with an optional
-- end (default: start + the service's duration) and an appointment to leave out of the conflict
-- check. Time-off reasons and holiday names only for the tenant's own people. SECURITY DEFINER
-- so that the engine (booking.slot_violations) needs no grant of its own.
CREATE FUNCTION booking_internal.rpc_validate_appointment_slot(
    p_staff_id uuid, p_service_id uuid, p_starts_at timestamptz,
    p_ends_at timestamptz DEFAULT NULL, p_exclude_appointment_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_staff_id IS NULL THEN
        RAISE EXCEPTION 'p_staff_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    RETURN booking.slot_violations(p_staff_id, booking_internal.require_bookable(p_service_id, p_staff_id), p_starts_at,
                                   p_ends_at, p_exclude_appointment_id);
END $$;

-- `{"valid": bool, "violations": [{"code", "message"}]}` for booking a service with a staff
-- member at a time.
CREATE FUNCTION booking.validate_appointment_timing(p_staff_id uuid, p_service_id uuid, p_starts_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking_internal.rpc_validate_appointment_slot(p_staff_id, p_service_id, p_starts_at)
$$;

-- Every bookable slot, as rows. The work (and the SECURITY DEFINER read) is in
-- booking_internal.available_slot_arrays; its search_path is pinned like every function's
-- (which keeps the planner from inlining it: the arrays it unnests are the cost anyway).
CREATE FUNCTION booking.get_available_slots(service_id uuid, from_date date, to_date date, staff_id uuid DEFAULT NULL)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz)
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp
AS $$
    SELECT s.staff_id, s.starts_at, s.ends_at
    FROM booking_internal.require_bookable($1, $4) v,
         booking_internal.available_slot_arrays(v, $2, $3, $4) a,
         unnest(a.staff_ids, a.starts, a.ends) WITH ORDINALITY AS s (staff_id, starts_at, ends_at, n)
    ORDER BY s.n
$$;
COMMENT ON FUNCTION booking.get_available_slots(uuid, date, date, uuid) IS
    'Bookable slots for a service between two local dates, ordered by starts_at, staff_id.';

-- The slots of one day, as JSON for Supabase/PostgREST callers.
CREATE FUNCTION booking.rpc_get_available_slots_enhanced(p_date date, p_service_id uuid, p_staff_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('staff_id', s.staff_id, 'starts_at', s.starts_at, 'ends_at', s.ends_at)
                              ORDER BY s.starts_at, s.staff_id), '[]'::jsonb)
    FROM booking.get_available_slots(p_service_id, p_date, p_date, p_staff_id) s
$$;
COMMENT ON FUNCTION booking.rpc_get_available_slots_enhanced(date, uuid, uuid) IS
    'Available slots of one day as a JSON array of {staff_id, starts_at, ends_at}.';

-- The slots of one day of one tenant's service, as rpc_get_available_slots_enhanced answers,
-- with every read filtered by the tenant: on Citus a distributed function (p_tenant_id is its
-- distribution argument) that runs entirely on the worker holding the tenant. A service or
-- staff member of another tenant does not exist here (PT404), nor one the caller may not see.
CREATE FUNCTION booking_internal.get_tenant_available_slots(p_tenant_id uuid, p_date date, p_service_id uuid, p_staff_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_service booking.services;
    v_staff booking.staff;
BEGIN
    IF p_tenant_id IS NULL OR p_service_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id and p_service_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_service FROM booking.services WHERE tenant_id = p_tenant_id AND id = p_service_id;
    IF NOT FOUND OR NOT (v_service.is_active OR booking.caller_is_insider(p_tenant_id)) THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'PT404';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        SELECT * INTO v_staff FROM booking.staff WHERE tenant_id = p_tenant_id AND id = p_staff_id;
        IF NOT FOUND OR NOT (v_staff.is_active OR booking.caller_is_insider(p_tenant_id)) THEN
            RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
        END IF;
    END IF;
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('staff_id', s.staff_id, 'starts_at', s.starts_at, 'ends_at', s.ends_at)
                                      ORDER BY s.n), '[]'::jsonb)
            FROM booking.tenant_slot_arrays(p_tenant_id, p_service_id, p_date, p_date, p_staff_id) a,
                 unnest(a.staff_ids, a.starts, a.ends) WITH ORDINALITY AS s (staff_id, starts_at, ends_at, n));
END $$;
