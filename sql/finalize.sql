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
-- Supabase's roles too. The documented list (docs/supabase.md and
-- docs/tenants.md) is compared with the catalog by tests/integration/postgrest.rs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- Row-level security policies, CHECK constraints and front ends call these as the caller.
    booking.jwt_claims(), booking.caller_user_id(), booking.caller_is_operator(), booking.caller_customer_ids(),
    booking.caller_staff_tenant_ids(), booking.caller_may_act_for(uuid, uuid), booking.caller_is_insider(uuid),
    booking.caller_is_staff_of(uuid), booking.caller_is_customer(uuid, uuid), booking.caller_tenant_role(uuid),
    booking.clock_now(), booking.is_valid_timezone(text), booking.is_valid_opening_hours(jsonb),
    booking.is_within_opening_hours(jsonb, timestamp), booking.is_single_select(text), booking.request_context(),
    -- The booking page: public profile, slots (get_available_slots, its building blocks), slot checks.
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
    -- "Any staff" slots and holds (anon included; each checks its caller, holds are rate-limited).
    booking.get_tenant_any_staff_slots(uuid, date, uuid, uuid), booking.get_any_staff_slots(uuid, date, date, uuid),
    booking.create_hold(uuid, jsonb), booking.release_hold(text),
    booking.add_to_waitlist(jsonb), booking.update_waitlist_entry(uuid, jsonb), booking.remove_from_waitlist(uuid),
    booking.list_waitlist(uuid, text),
    -- The tenant's staff running the day (customers get 42501, others PT404).
    booking.confirm_appointment(uuid), booking.check_in_appointment(uuid), booking.complete_appointment(uuid),
    booking.mark_no_show(uuid),
    -- The slot store (each checks its caller; generate_availability_slots is for the tenant's people).
    booking.find_optimal_slots(uuid, date, date, uuid, integer), booking.generate_availability_slots(uuid, date, date),
    booking.book_slot(uuid, uuid, timestamptz, uuid, text, text), booking.release_slot(uuid, text, text),
    -- A tenant's own administration (each checks the caller's role in the tenant).
    booking.create_tenant(text, text, jsonb), booking.update_tenant(uuid, jsonb), booking.get_tenant_admin(uuid),
    booking.my_tenants(), booking.create_service(uuid, jsonb), booking.update_service(uuid, uuid, jsonb),
    booking.add_staff(uuid, jsonb), booking.update_staff(uuid, uuid, jsonb),
    booking.set_staff_schedule(uuid, uuid, jsonb), booking.add_schedule_override(uuid, uuid, jsonb),
    booking.remove_schedule_override(uuid, uuid), booking.add_holiday(uuid, jsonb),
    booking.remove_holiday(uuid, uuid), booking.add_time_off(uuid, uuid, timestamptz, timestamptz, text),
    booking.remove_time_off(uuid, uuid), booking.set_policy(uuid, text, jsonb, uuid, uuid),
    booking.set_tenant_message_template(uuid, text, text, text, text),
    booking.create_tenant_endpoint(uuid, text, text[], text, jsonb),
    booking.update_tenant_endpoint(uuid, uuid, jsonb), booking.delete_tenant_endpoint(uuid, uuid),
    booking.rotate_tenant_endpoint_secret(uuid, uuid, interval, text),
    booking.send_tenant_test_event(uuid, uuid, jsonb), booking.invite_member(uuid, text, text, uuid, uuid, interval),
    booking.accept_invitation(text), booking.revoke_invitation(uuid, uuid),
    booking.change_member_role(uuid, uuid, text), booking.remove_member(uuid, uuid),
    booking.create_customer(uuid, jsonb), booking.list_customers(uuid, text, integer),
    booking.get_agenda(uuid, date, date, uuid),
    -- Reminders: the tenant's rules and settings (owners, managers), an appointment's reminders
    -- (members); signed links and an SMS provider's callbacks (anyone: the token or signature
    -- is the check).
    booking.set_reminder_rule(uuid, jsonb, uuid), booking.delete_reminder_rule(uuid, uuid),
    booking.get_reminder_settings(uuid), booking.set_messaging_settings(uuid, jsonb),
    booking.get_appointment_reminders(uuid, uuid), booking.confirm_appointment_by_link(text),
    booking.cancel_appointment_by_link(text, text), booking.describe_appointment_link(text),
    booking.sms_inbound(uuid, text, text, text, text),
    booking.create_resource(uuid, jsonb), booking.update_resource(uuid, uuid, jsonb),
    booking.add_resource_closure(uuid, uuid, timestamptz, timestamptz, text), booking.remove_resource_closure(uuid, uuid),
    booking.create_resource_group(uuid, jsonb), booking.update_resource_group(uuid, uuid, jsonb),
    booking.delete_resource_group(uuid, uuid), booking.set_service_requirements(uuid, uuid, jsonb),
    booking.set_staff_service(uuid, uuid, uuid, jsonb), booking.add_booking_cap(uuid, jsonb), booking.remove_booking_cap(uuid, uuid),
    booking.assign_appointment_resources(uuid, uuid)
TO PUBLIC;

-- The entry points above run as their caller, who therefore needs EXECUTE on the
-- implementations they call, and on nothing else in booking_internal (the rest is the
-- extension's own: the SECURITY DEFINER functions call it as the owner).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    booking_internal.caller_customer_ids(), booking_internal.caller_staff_tenant_ids(),
    booking_internal.caller_is_staff_of(uuid), booking_internal.caller_is_customer(uuid, uuid),
    booking_internal.caller_tenant_role(uuid),
    booking_internal.get_booking_page(uuid), booking_internal.register_customer(uuid, text, text, text),
    booking_internal.require_bookable(uuid, uuid), booking_internal.available_slot_arrays(uuid, date, date, uuid),
    booking_internal.rpc_validate_appointment_slot(uuid, uuid, timestamptz, timestamptz, uuid),
    booking_internal.get_tenant_available_slots(uuid, date, uuid, uuid),
    booking_internal.create_tenant_booking(uuid, text, jsonb),
    booking_internal.reschedule_tenant_appointment(uuid, uuid, timestamptz, text),
    booking_internal.cancel_tenant_appointment(uuid, uuid, text, text),
    booking_internal.confirm_appointment(uuid), booking_internal.check_in_appointment(uuid),
    booking_internal.complete_appointment(uuid), booking_internal.mark_no_show(uuid),
    booking_internal.add_to_waitlist(jsonb), booking_internal.update_waitlist_entry(uuid, jsonb),
    booking_internal.remove_from_waitlist(uuid),
    booking_internal.find_optimal_slots(uuid, date, date, uuid, integer),
    booking_internal.generate_availability_slots(uuid, date, date),
    booking_internal.create_tenant(text, text, jsonb), booking_internal.update_tenant(uuid, jsonb),
    booking_internal.get_tenant_admin(uuid), booking_internal.my_tenants(),
    booking_internal.create_service(uuid, jsonb), booking_internal.update_service(uuid, uuid, jsonb),
    booking_internal.add_staff(uuid, jsonb), booking_internal.update_staff(uuid, uuid, jsonb),
    booking_internal.set_staff_schedule(uuid, uuid, jsonb),
    booking_internal.add_schedule_override(uuid, uuid, jsonb), booking_internal.remove_schedule_override(uuid, uuid),
    booking_internal.add_holiday(uuid, jsonb), booking_internal.remove_holiday(uuid, uuid),
    booking_internal.add_time_off(uuid, uuid, timestamptz, timestamptz, text),
    booking_internal.remove_time_off(uuid, uuid), booking_internal.set_policy(uuid, text, jsonb, uuid, uuid),
    booking_internal.set_tenant_message_template(uuid, text, text, text, text),
    booking_internal.create_tenant_endpoint(uuid, text, text[], text, jsonb),
    booking_internal.update_tenant_endpoint(uuid, uuid, jsonb), booking_internal.delete_tenant_endpoint(uuid, uuid),
    booking_internal.rotate_tenant_endpoint_secret(uuid, uuid, interval, text),
    booking_internal.send_tenant_test_event(uuid, uuid, jsonb),
    booking_internal.invite_member(uuid, text, text, uuid, uuid, interval), booking_internal.accept_invitation(text),
    booking_internal.revoke_invitation(uuid, uuid), booking_internal.change_member_role(uuid, uuid, text),
    booking_internal.remove_member(uuid, uuid), booking_internal.create_customer(uuid, jsonb),
    booking_internal.list_customers(uuid, text, integer), booking_internal.get_agenda(uuid, date, date, uuid),
    booking_internal.set_reminder_rule(uuid, jsonb, uuid), booking_internal.delete_reminder_rule(uuid, uuid),
    booking_internal.get_reminder_settings(uuid), booking_internal.set_messaging_settings(uuid, jsonb),
    booking_internal.get_appointment_reminders(uuid, uuid), booking_internal.confirm_appointment_by_link(text),
    booking_internal.cancel_appointment_by_link(text, text), booking_internal.describe_appointment_link(text),
    booking_internal.sms_inbound(uuid, text, text, text, text),
    booking_internal.get_tenant_any_staff_slots(uuid, date, uuid, uuid), booking_internal.get_any_staff_slots(uuid, date, date, uuid),
    booking_internal.create_hold(uuid, jsonb), booking_internal.release_hold(text),
    booking_internal.create_resource(uuid, jsonb), booking_internal.update_resource(uuid, uuid, jsonb),
    booking_internal.add_resource_closure(uuid, uuid, timestamptz, timestamptz, text),
    booking_internal.remove_resource_closure(uuid, uuid), booking_internal.create_resource_group(uuid, jsonb),
    booking_internal.update_resource_group(uuid, uuid, jsonb), booking_internal.delete_resource_group(uuid, uuid),
    booking_internal.set_service_requirements(uuid, uuid, jsonb), booking_internal.set_staff_service(uuid, uuid, uuid, jsonb),
    booking_internal.add_booking_cap(uuid, jsonb), booking_internal.remove_booking_cap(uuid, uuid),
    booking_internal.assign_appointment_resources(uuid, uuid)
TO PUBLIC;

-- What Supabase's trusted roles get, granted to whichever of them exist (the roles are not the
-- extension's: on a plain PostgreSQL there are none). booking_operator (operator.sql) may write
-- application audit entries and use the rate limiter. service_role is Supabase's back end
-- (BYPASSRLS), which the functions treat as an operator (booking.caller_is_operator): it
-- manages tenants, staff, services, schedules and customers directly, and it is made a member
-- of booking_operator, as Supabase users expect of their service key. Supabase creates its
-- roles NOINHERIT, so the membership alone would let service_role only SET ROLE: it also gets
-- booking_operator's grants directly, read from the catalog so that they never drift apart.
-- Run it again after creating either role later (as the extension's owner).
CREATE FUNCTION booking_admin.grant_api_roles() RETURNS text[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_granted text[] := '{}';
    v_grant text;
BEGIN
    IF to_regrole('booking_operator') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid),
            booking.check_rate_limit(text, text, integer, integer), booking.check_rate_limit_json(text, text, integer, integer),
            booking.rate_limit_status(text, text, integer, integer)
        TO booking_operator;
        v_granted := v_granted || 'booking_operator'::text;
    END IF;
    IF to_regrole('service_role') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA booking TO service_role;
        -- The slot store is written by its triggers only: a direct write would make it wrong.
        REVOKE INSERT, UPDATE, DELETE ON booking.availability_slots, booking.availability_slot_days FROM service_role;
        IF to_regrole('booking_operator') IS NOT NULL THEN
            IF NOT pg_has_role('service_role', 'booking_operator', 'MEMBER') THEN
                GRANT booking_operator TO service_role;
            END IF;
            FOR v_grant IN
                SELECT format('GRANT USAGE ON SCHEMA %I TO service_role', n.nspname)
                FROM pg_namespace n, aclexplode(n.nspacl) a
                WHERE n.nspname IN ('booking', 'booking_admin') AND a.grantee = 'booking_operator'::regrole
                UNION ALL
                SELECT format('GRANT %s ON FUNCTION %s TO service_role', a.privilege_type, p.oid::regprocedure)
                FROM pg_proc p, aclexplode(p.proacl) a
                WHERE p.pronamespace IN ('booking'::regnamespace, 'booking_admin'::regnamespace)
                  AND a.grantee = 'booking_operator'::regrole
                UNION ALL
                SELECT format('GRANT %s ON %s TO service_role', a.privilege_type, c.oid::regclass)
                FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.relnamespace = 'booking_admin'::regnamespace AND a.grantee = 'booking_operator'::regrole
                UNION ALL
                SELECT format('GRANT %s (%I) ON %s TO service_role', a.privilege_type, t.attname, t.attrelid::regclass)
                FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
                WHERE c.relnamespace = 'booking_admin'::regnamespace AND a.grantee = 'booking_operator'::regrole
            LOOP
                EXECUTE v_grant;
            END LOOP;
        END IF;
        v_granted := v_granted || 'service_role'::text;
    END IF;
    RETURN v_granted;
END $$;
SELECT booking_admin.grant_api_roles();

-- Operators' functions are not for PUBLIC: grant EXECUTE (or membership in a role that has it)
-- to the operators who need them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;
