-- Runs after every other object exists.

-- Every table in the exposed schema has row-level security, including tables added later:
-- without a policy a table is readable only by its owner and through the extension's functions.
-- Partitioned tables too (their policies apply to reads through them), and their partitions
-- (partition-maintenance gives the partitions it creates the same).
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind IN ('r', 'p') LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    END LOOP;
END $$;


-- Applications (PostgREST's anon and authenticated, any login role) may call only what an
-- untrusted caller must: every other function of the schema is for the extension itself, its
-- SECURITY DEFINER functions (which run as the owner) and the roles granted below. Granted to
-- PUBLIC rather than to anon/authenticated so that it works on a plain PostgreSQL without
-- Supabase's roles too.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- Row-level security policies and CHECK constraints call these as the querying role.
    booking.jwt_claims(), booking.caller_user_id(), booking.caller_is_operator(), booking.caller_customer_ids(),
    booking.caller_staff_tenant_ids(), booking.caller_may_act_for(uuid, uuid), booking.caller_is_insider(uuid),
    booking.caller_is_staff_of(uuid), booking.caller_is_customer(uuid, uuid),
    booking.clock_now(), booking.is_valid_timezone(text), booking.is_valid_opening_hours(jsonb),
    booking.is_within_opening_hours(jsonb, timestamp), booking.is_single_select(text), booking.request_context(),
    -- The booking page: public profile, slots (get_available_slots is inlined into the caller's
    -- query, so the two functions it calls must be executable too), slot checks.
    booking.get_booking_page(uuid), booking.require_bookable(uuid, uuid),
    booking.available_slot_arrays(uuid, date, date, uuid), booking.get_available_slots(uuid, date, date, uuid),
    booking.rpc_get_available_slots_enhanced(date, uuid, uuid),
    booking.rpc_validate_appointment_slot(uuid, uuid, timestamptz, timestamptz, uuid),
    booking.validate_appointment_timing(uuid, uuid, timestamptz),
    -- Customers: sign-up, bookings, waitlist. Each checks its caller.
    booking.register_customer(uuid, text, text, text),
    booking.create_booking_idempotent(text, jsonb), booking.reschedule_appointment(uuid, timestamptz, text),
    booking.create_tenant_booking(uuid, text, jsonb), booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text),
    booking.cancel_tenant_appointment(uuid, uuid, text, text),
    booking.get_tenant_available_slots(uuid, date, uuid, uuid),
    booking.cancel_appointment(uuid, text, text),
    booking.add_to_waitlist(jsonb), booking.update_waitlist_entry(uuid, jsonb), booking.remove_from_waitlist(uuid),
    booking.list_waitlist(uuid, text),
    -- The tenant's staff running the day (customers get 42501, others PT404).
    booking.confirm_appointment(uuid), booking.check_in_appointment(uuid), booking.complete_appointment(uuid),
    booking.mark_no_show(uuid),
    -- The slot store (each checks its caller; generate_availability_slots is for the tenant's people).
    booking.find_optimal_slots(uuid, date, date, uuid, integer), booking.generate_availability_slots(uuid, date, date),
    booking.book_slot(uuid, uuid, timestamptz, uuid, text, text), booking.release_slot(uuid, text, text)
TO PUBLIC;

-- What Supabase's trusted roles get, granted to whichever of them exist (the roles are not the
-- extension's: on a plain PostgreSQL there are none). service_role is Supabase's back end
-- (BYPASSRLS): it manages tenants, staff, services, schedules and customers directly, writes
-- application audit entries and uses the rate limiter. booking_operator (created by the DBA)
-- may do the latter two as well. Run it again after creating either role later.
CREATE FUNCTION booking_admin.grant_api_roles() RETURNS text[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_granted text[] := '{}';
BEGIN
    IF to_regrole('service_role') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA booking TO service_role;
        -- The slot store is written by its triggers only: a direct write would make it wrong.
        REVOKE INSERT, UPDATE, DELETE ON booking.availability_slots, booking.availability_slot_days FROM service_role;
        GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid),
            booking.check_rate_limit(text, text, integer, integer), booking.check_rate_limit_json(text, text, integer, integer)
        TO service_role;
        v_granted := v_granted || 'service_role'::text;
    END IF;
    IF to_regrole('booking_operator') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid),
            booking.check_rate_limit(text, text, integer, integer), booking.check_rate_limit_json(text, text, integer, integer)
        TO booking_operator;
        v_granted := v_granted || 'booking_operator'::text;
    END IF;
    RETURN v_granted;
END $$;
SELECT booking_admin.grant_api_roles();

-- Operators' functions are not for PUBLIC: grant EXECUTE (or membership in a role that has it)
-- to the operators who need them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;
