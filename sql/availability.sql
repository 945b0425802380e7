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
