-- Every bookable slot, as rows. A plain SQL function, so that the planner inlines it into the
-- caller's query; the work (and the SECURITY DEFINER read) is in available_slot_arrays.
CREATE FUNCTION booking.get_available_slots(service_id uuid, from_date date, to_date date, staff_id uuid DEFAULT NULL)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz)
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT s.staff_id, s.starts_at, s.ends_at
    FROM booking.available_slot_arrays($1, $2, $3, $4) a,
         unnest(a.staff_ids, a.starts, a.ends) WITH ORDINALITY AS s (staff_id, starts_at, ends_at, n)
    ORDER BY s.n
$$;
COMMENT ON FUNCTION booking.get_available_slots(uuid, date, date, uuid) IS
    'Bookable slots for a service between two local dates, ordered by starts_at, staff_id.';

-- The seed-004 RPC for one day, as JSON for Supabase/PostgREST callers.
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
