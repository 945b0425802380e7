-- The API: what PostgREST exposes from schema `booking` to browsers (anon, authenticated) and
-- what any login role calls over SQL. Every function here that needs more rights than its
-- caller has is a SECURITY INVOKER entry point calling its SECURITY DEFINER implementation in
-- booking_internal, the schema no API exposes (pg_graphql's model: graphql_public.graphql
-- calling graphql.resolve). So Supabase's advisor finds no SECURITY DEFINER function that anon
-- or authenticated may execute in an exposed schema (splinter lints 0028/0029), and every
-- function pins its search_path (0011); tests/integration/advisor.rs runs those lints.
--
-- Each entry point keeps the name, arguments, defaults and result of the function it replaced
-- in booking (0.1.0's callers keep working), has the volatility and parallel safety of its
-- implementation, and checks nothing itself: the implementation checks its caller, so calling
-- booking_internal directly over SQL gives the same answers. finalize.sql grants them.

-- Caller helpers (row-level security and the front end's "who am I here").
CREATE FUNCTION booking.caller_customer_ids() RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.caller_customer_ids() $$;

CREATE FUNCTION booking.caller_staff_tenant_ids() RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.caller_staff_tenant_ids() $$;

CREATE FUNCTION booking.caller_is_staff_of(p_tenant_id uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.caller_is_staff_of(p_tenant_id) $$;

CREATE FUNCTION booking.caller_is_customer(p_tenant_id uuid, p_customer_id uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.caller_is_customer(p_tenant_id, p_customer_id) $$;

CREATE FUNCTION booking.caller_tenant_role(p_tenant_id uuid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.caller_tenant_role(p_tenant_id) $$;

-- The booking page and sign-up.
CREATE FUNCTION booking.get_booking_page(p_tenant_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_booking_page(p_tenant_id) $$;

CREATE FUNCTION booking.register_customer(p_tenant_id uuid, p_name text, p_email text DEFAULT NULL, p_phone text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.register_customer(p_tenant_id, p_name, p_email, p_phone) $$;

-- Availability.
CREATE FUNCTION booking.require_bookable(p_service_id uuid, p_staff_id uuid DEFAULT NULL) RETURNS uuid
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.require_bookable(p_service_id, p_staff_id) $$;

CREATE FUNCTION booking.available_slot_arrays(service_id uuid, from_date date, to_date date, staff_id uuid DEFAULT NULL)
RETURNS TABLE (staff_ids uuid[], starts timestamptz[], ends timestamptz[])
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM booking_internal.available_slot_arrays($1, $2, $3, $4) $$;

CREATE FUNCTION booking.rpc_validate_appointment_slot(
    p_staff_id uuid, p_service_id uuid, p_starts_at timestamptz,
    p_ends_at timestamptz DEFAULT NULL, p_exclude_appointment_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.rpc_validate_appointment_slot(p_staff_id, p_service_id, p_starts_at, p_ends_at, p_exclude_appointment_id) $$;

CREATE FUNCTION booking.get_tenant_available_slots(p_tenant_id uuid, p_date date, p_service_id uuid, p_staff_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_tenant_available_slots(p_tenant_id, p_date, p_service_id, p_staff_id) $$;

-- "Any staff" slots, holds (sql/resources.sql).
CREATE FUNCTION booking.get_tenant_any_staff_slots(p_tenant_id uuid, p_date date, p_service_id uuid, p_customer_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_tenant_any_staff_slots(p_tenant_id, p_date, p_service_id, p_customer_id) $$;

CREATE FUNCTION booking.get_any_staff_slots(p_service_id uuid, p_from date, p_to date, p_customer_id uuid DEFAULT NULL)
RETURNS TABLE (starts_at timestamptz, ends_at timestamptz, staff_free integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM booking_internal.get_any_staff_slots(p_service_id, p_from, p_to, p_customer_id) $$;

CREATE FUNCTION booking.create_hold(p_tenant_id uuid, p_hold jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_hold(p_tenant_id, p_hold) $$;

CREATE FUNCTION booking.release_hold(p_token text) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.release_hold(p_token) $$;

-- Bookings: create, reschedule, cancel (the tenant-less ones are the tenant ones with NULL).
CREATE FUNCTION booking.create_booking_idempotent(p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_tenant_booking(NULL, p_idempotency_key, p_booking) $$;

CREATE FUNCTION booking.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_tenant_booking(p_tenant_id, p_idempotency_key, p_booking) $$;

CREATE FUNCTION booking.reschedule_appointment(p_appointment_id uuid, p_new_starts_at timestamptz, p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.reschedule_tenant_appointment(NULL, p_appointment_id, p_new_starts_at, p_idempotency_key) $$;

CREATE FUNCTION booking.reschedule_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_new_starts_at timestamptz,
                                                      p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.reschedule_tenant_appointment(p_tenant_id, p_appointment_id, p_new_starts_at, p_idempotency_key) $$;

CREATE FUNCTION booking.cancel_appointment(p_appointment_id uuid, p_reason text DEFAULT NULL, p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.cancel_tenant_appointment(NULL, p_appointment_id, p_reason, p_idempotency_key) $$;

CREATE FUNCTION booking.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.cancel_tenant_appointment(p_tenant_id, p_appointment_id, p_reason, p_idempotency_key) $$;

-- bookSlot and releaseSlot as SQL: the idempotent booking and the cancellation, nothing
-- else (they check the caller; the slot store's triggers keep the store).
CREATE FUNCTION booking.book_slot(p_staff_id uuid, p_service_id uuid, p_start_time timestamptz, p_customer_id uuid,
                                  p_idempotency_key text, p_notes text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_internal.create_tenant_booking(NULL, p_idempotency_key, jsonb_strip_nulls(jsonb_build_object(
        'staff_id', p_staff_id, 'service_id', p_service_id, 'starts_at', p_start_time, 'customer_id', p_customer_id,
        'notes', p_notes)))
$$;

CREATE FUNCTION booking.release_slot(p_appointment_id uuid, p_reason text DEFAULT NULL, p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.cancel_tenant_appointment(NULL, p_appointment_id, p_reason, p_idempotency_key) $$;

-- Running the day.
CREATE FUNCTION booking.confirm_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.confirm_appointment(p_appointment_id) $$;

CREATE FUNCTION booking.check_in_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.check_in_appointment(p_appointment_id) $$;

CREATE FUNCTION booking.complete_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.complete_appointment(p_appointment_id) $$;

CREATE FUNCTION booking.mark_no_show(p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.mark_no_show(p_appointment_id) $$;

-- The waitlist.
CREATE FUNCTION booking.add_to_waitlist(p_entry jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_to_waitlist(p_entry) $$;

CREATE FUNCTION booking.update_waitlist_entry(p_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_waitlist_entry(p_id, p_changes) $$;

CREATE FUNCTION booking.remove_from_waitlist(p_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_from_waitlist(p_id) $$;

-- The slot store's readers.
CREATE FUNCTION booking.find_optimal_slots(p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz, confidence_score numeric,
               booking_density numeric, priority_boost numeric, fit_score numeric, day_open_ratio numeric, slot_type text)
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM booking_internal.find_optimal_slots(p_service_id, p_from, p_to, p_staff_id, p_limit) $$;
COMMENT ON FUNCTION booking.find_optimal_slots(uuid, date, date, uuid, integer) IS
    'The p_limit best free slots of a service (staff local dates p_from..p_to within the horizon), by confidence_score, with its factors.';

CREATE FUNCTION booking.generate_availability_slots(p_staff_id uuid, p_start_date date, p_end_date date) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.generate_availability_slots(p_staff_id, p_start_date, p_end_date) $$;

-- A tenant's own administration (sql/tenants.sql, docs/tenants.md): each checks its caller's role.
CREATE FUNCTION booking.create_tenant(p_name text, p_timezone text DEFAULT 'UTC', p_opening_hours jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_tenant(p_name, p_timezone, p_opening_hours) $$;

CREATE FUNCTION booking.update_tenant(p_tenant_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_tenant(p_tenant_id, p_changes) $$;

CREATE FUNCTION booking.get_tenant_admin(p_tenant_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_tenant_admin(p_tenant_id) $$;

CREATE FUNCTION booking.my_tenants() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.my_tenants() $$;

CREATE FUNCTION booking.create_service(p_tenant_id uuid, p_service jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_service(p_tenant_id, p_service) $$;

CREATE FUNCTION booking.update_service(p_tenant_id uuid, p_service_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_service(p_tenant_id, p_service_id, p_changes) $$;

CREATE FUNCTION booking.add_staff(p_tenant_id uuid, p_staff jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_staff(p_tenant_id, p_staff) $$;

CREATE FUNCTION booking.update_staff(p_tenant_id uuid, p_staff_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_staff(p_tenant_id, p_staff_id, p_changes) $$;

CREATE FUNCTION booking.set_staff_schedule(p_tenant_id uuid, p_staff_id uuid, p_schedule jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_staff_schedule(p_tenant_id, p_staff_id, p_schedule) $$;

CREATE FUNCTION booking.add_schedule_override(p_tenant_id uuid, p_staff_id uuid, p_override jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_schedule_override(p_tenant_id, p_staff_id, p_override) $$;

CREATE FUNCTION booking.remove_schedule_override(p_tenant_id uuid, p_override_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_schedule_override(p_tenant_id, p_override_id) $$;

CREATE FUNCTION booking.add_holiday(p_tenant_id uuid, p_holiday jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_holiday(p_tenant_id, p_holiday) $$;

CREATE FUNCTION booking.remove_holiday(p_tenant_id uuid, p_holiday_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_holiday(p_tenant_id, p_holiday_id) $$;

CREATE FUNCTION booking.add_time_off(p_tenant_id uuid, p_staff_id uuid, p_starts_at timestamptz, p_ends_at timestamptz, p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_time_off(p_tenant_id, p_staff_id, p_starts_at, p_ends_at, p_reason) $$;

CREATE FUNCTION booking.remove_time_off(p_tenant_id uuid, p_time_off_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_time_off(p_tenant_id, p_time_off_id) $$;

CREATE FUNCTION booking.set_policy(p_tenant_id uuid, p_key text, p_value jsonb, p_service_id uuid DEFAULT NULL, p_staff_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_policy(p_tenant_id, p_key, p_value, p_service_id, p_staff_id) $$;

CREATE FUNCTION booking.set_tenant_message_template(p_tenant_id uuid, p_event_type text, p_subject text, p_body_text text, p_body_html text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_tenant_message_template(p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html) $$;

CREATE FUNCTION booking.create_tenant_endpoint(p_tenant_id uuid, p_url text, p_event_types text[], p_channel text DEFAULT 'webhook', p_options jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_tenant_endpoint(p_tenant_id, p_url, p_event_types, p_channel, p_options) $$;

CREATE FUNCTION booking.update_tenant_endpoint(p_tenant_id uuid, p_endpoint_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_tenant_endpoint(p_tenant_id, p_endpoint_id, p_changes) $$;

CREATE FUNCTION booking.delete_tenant_endpoint(p_tenant_id uuid, p_endpoint_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.delete_tenant_endpoint(p_tenant_id, p_endpoint_id) $$;

CREATE FUNCTION booking.rotate_tenant_endpoint_secret(p_tenant_id uuid, p_endpoint_id uuid, p_grace interval DEFAULT '24 hours', p_secret text DEFAULT NULL) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.rotate_tenant_endpoint_secret(p_tenant_id, p_endpoint_id, p_grace, p_secret) $$;

CREATE FUNCTION booking.send_tenant_test_event(p_tenant_id uuid, p_endpoint_id uuid, p_payload jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.send_tenant_test_event(p_tenant_id, p_endpoint_id, p_payload) $$;

CREATE FUNCTION booking.invite_member(p_tenant_id uuid, p_role text, p_email text DEFAULT NULL, p_user_id uuid DEFAULT NULL, p_staff_id uuid DEFAULT NULL, p_valid_for interval DEFAULT '7 days') RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.invite_member(p_tenant_id, p_role, p_email, p_user_id, p_staff_id, p_valid_for) $$;

CREATE FUNCTION booking.accept_invitation(p_token text) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.accept_invitation(p_token) $$;

CREATE FUNCTION booking.revoke_invitation(p_tenant_id uuid, p_invitation_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.revoke_invitation(p_tenant_id, p_invitation_id) $$;

CREATE FUNCTION booking.change_member_role(p_tenant_id uuid, p_user_id uuid, p_role text) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.change_member_role(p_tenant_id, p_user_id, p_role) $$;

CREATE FUNCTION booking.remove_member(p_tenant_id uuid, p_user_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_member(p_tenant_id, p_user_id) $$;

CREATE FUNCTION booking.create_customer(p_tenant_id uuid, p_customer jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_customer(p_tenant_id, p_customer) $$;

CREATE FUNCTION booking.list_customers(p_tenant_id uuid, p_search text DEFAULT NULL, p_limit integer DEFAULT 50) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.list_customers(p_tenant_id, p_search, p_limit) $$;

CREATE FUNCTION booking.get_agenda(p_tenant_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_agenda(p_tenant_id, p_from, p_to, p_staff_id) $$;

-- Reminders and the day's messages (sql/reminders.sql).
CREATE FUNCTION booking.set_reminder_rule(p_tenant_id uuid, p_rule jsonb, p_rule_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_reminder_rule(p_tenant_id, p_rule, p_rule_id) $$;

CREATE FUNCTION booking.delete_reminder_rule(p_tenant_id uuid, p_rule_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.delete_reminder_rule(p_tenant_id, p_rule_id) $$;

CREATE FUNCTION booking.get_reminder_settings(p_tenant_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_reminder_settings(p_tenant_id) $$;

CREATE FUNCTION booking.set_messaging_settings(p_tenant_id uuid, p_settings jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_messaging_settings(p_tenant_id, p_settings) $$;

CREATE FUNCTION booking.get_appointment_reminders(p_tenant_id uuid, p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.get_appointment_reminders(p_tenant_id, p_appointment_id) $$;

-- Signed links, for anyone holding one (the token is the check).
CREATE FUNCTION booking.confirm_appointment_by_link(p_token text) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.confirm_appointment_by_link(p_token) $$;

CREATE FUNCTION booking.cancel_appointment_by_link(p_token text, p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.cancel_appointment_by_link(p_token, p_reason) $$;

CREATE FUNCTION booking.describe_appointment_link(p_token text) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.describe_appointment_link(p_token) $$;

-- An SMS provider's callbacks (sql/delivery.sql), signed with the endpoint's secret.
CREATE FUNCTION booking.sms_inbound(p_endpoint_id uuid, p_webhook_id text, p_timestamp text, p_body text, p_signature text)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.sms_inbound(p_endpoint_id, p_webhook_id, p_timestamp, p_body, p_signature) $$;

-- Resources, "any staff" terms and caps (sql/tenants.sql, docs/resources.md): owners and managers.
CREATE FUNCTION booking.create_resource(p_tenant_id uuid, p_resource jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_resource(p_tenant_id, p_resource) $$;

CREATE FUNCTION booking.update_resource(p_tenant_id uuid, p_resource_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_resource(p_tenant_id, p_resource_id, p_changes) $$;

CREATE FUNCTION booking.add_resource_closure(p_tenant_id uuid, p_resource_id uuid, p_starts_at timestamptz, p_ends_at timestamptz,
                                             p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_resource_closure(p_tenant_id, p_resource_id, p_starts_at, p_ends_at, p_reason) $$;

CREATE FUNCTION booking.remove_resource_closure(p_tenant_id uuid, p_closure_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_resource_closure(p_tenant_id, p_closure_id) $$;

CREATE FUNCTION booking.create_resource_group(p_tenant_id uuid, p_group jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.create_resource_group(p_tenant_id, p_group) $$;

CREATE FUNCTION booking.update_resource_group(p_tenant_id uuid, p_group_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.update_resource_group(p_tenant_id, p_group_id, p_changes) $$;

CREATE FUNCTION booking.delete_resource_group(p_tenant_id uuid, p_group_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.delete_resource_group(p_tenant_id, p_group_id) $$;

CREATE FUNCTION booking.set_service_requirements(p_tenant_id uuid, p_service_id uuid, p_requirements jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_service_requirements(p_tenant_id, p_service_id, p_requirements) $$;

CREATE FUNCTION booking.set_staff_service(p_tenant_id uuid, p_staff_id uuid, p_service_id uuid, p_terms jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.set_staff_service(p_tenant_id, p_staff_id, p_service_id, p_terms) $$;

CREATE FUNCTION booking.add_booking_cap(p_tenant_id uuid, p_cap jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.add_booking_cap(p_tenant_id, p_cap) $$;

CREATE FUNCTION booking.remove_booking_cap(p_tenant_id uuid, p_cap_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.remove_booking_cap(p_tenant_id, p_cap_id) $$;

CREATE FUNCTION booking.assign_appointment_resources(p_tenant_id uuid, p_appointment_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking_internal.assign_appointment_resources(p_tenant_id, p_appointment_id) $$;
