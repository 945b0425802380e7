-- A tenant runs itself from the front end: a signed-in user creates a tenant and
-- becomes its owner, invites members, and the members administer the tenant over RPC with the
-- rights of their role (booking.tenant_members, sql/access.sql):
--
--   owner         everything below, members of every role (owners included), the tenant itself
--   manager       profile and settings, services and prices, staff and their services, every
--                 staff member's hours, overrides and time off, holidays, policies, message
--                 templates, delivery endpoints; invites and changes receptionists and staff
--   receptionist  books, reschedules and cancels for any customer of the tenant, adds
--                 customers, runs the day (confirm, check in, complete, no-show), reads the
--                 agenda; no prices, schedules or members
--   staff         their own agenda; their own weekly hours, overrides and time off where the
--                 tenant allows it (tenants.staff_manage_own_schedule); runs the day
--
-- Operators (service_role, booking_operator members, superusers) may do all of it.
--
-- Why RPCs and not row-level-security-guarded writes PostgREST could make directly: every
-- write goes through the same tables, constraints and triggers as an operator's direct write
-- (so it is validated exactly as those are), plus checks a policy cannot express with a clear
-- SQLSTATE (the last owner, roles below one's own, quotas); each function is the one place a
-- change is audited with its caller and announced as an event (and so delivered); and Citus
-- refuses row-level security policies with subqueries on distributed tables, which a "caller's
-- role in this row's tenant" policy needs. Each function runs as the extension's owner
-- (SECURITY DEFINER, in booking_internal, behind a SECURITY INVOKER entry point in booking:
-- sql/api.sql), checks its caller first, and reads and writes only the named tenant's rows
-- (router queries on Citus). Every error a call ends in (a refusal, bad input) is audited with
-- the caller by the function's exception handler and survives the rollback:
-- PT404 for a tenant or object the caller may not see (the same as one that does not exist),
-- 42501 for one of the tenant's people whose role does not allow the change, and PT403, PT409,
-- PT410, PT429 where the issue is the request's state (see docs/tenants.md).

-- Invitations: a single-use token, shown once to the member who invites, accepted by the
-- invited user (by user id, or by the e-mail address of their JWT). Only the SHA-256 of the
-- token's secret is kept (src/tenants/token.rs).
CREATE TABLE booking.tenant_invitations (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'manager', 'receptionist', 'staff')),
    -- Who may accept it: this user, or (without a user id) a user whose JWT carries this e-mail
    -- address (kept lower-case).
    email       text CHECK (email = lower(email)),
    user_id     uuid,
    -- The staff row the new member's user is linked to when they accept.
    staff_id    uuid,
    token_hash  bytea NOT NULL,
    invited_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    revoked_at  timestamptz,
    CHECK (email IS NOT NULL OR user_id IS NOT NULL),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
-- The foreign key's side.
CREATE INDEX tenant_invitations_staff_idx ON booking.tenant_invitations (staff_id) WHERE staff_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('booking.tenant_invitations', '');

-- Administrative changes are events like bookings' (delivered to the tenant's endpoints).
INSERT INTO booking_admin.delivery_event_types (event_type, description) VALUES
    ('tenant.created', 'A signed-in user created a tenant'),
    ('tenant.updated', 'The tenant''s profile or settings changed'),
    ('service.created', 'A service was added'),
    ('service.updated', 'A service changed (price, length, buffers, activity, ...)'),
    ('staff.created', 'A staff member was added'),
    ('staff.updated', 'A staff member changed (name, contact, time zone, services)'),
    ('staff.deactivated', 'A staff member was deactivated'),
    ('schedule.updated', 'Working time changed: weekly hours, a day override or a holiday'),
    ('time_off.created', 'A staff member''s time off was entered'),
    ('time_off.deleted', 'A staff member''s time off was removed'),
    ('policy.updated', 'A tenant, service or staff policy was set or removed'),
    ('member.invited', 'Someone was invited to the tenant'),
    ('member.joined', 'An invited user accepted and became a member'),
    ('member.role_changed', 'A member''s role changed'),
    ('member.removed', 'A member left or was removed'),
    ('resource.created', 'A bookable resource (room, chair, equipment) was added'),
    ('resource.updated', 'A resource changed (name, hours, activity), or a closure was added or removed'),
    ('resource_group.updated', 'A resource group was created, changed or deleted'),
    ('booking_cap.updated', 'A booking cap was added or removed');

-- Ranks of the roles (operators above all).
CREATE FUNCTION booking_internal.role_rank(p_role text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_role WHEN 'operator' THEN 5 WHEN 'owner' THEN 4 WHEN 'manager' THEN 3
                       WHEN 'receptionist' THEN 2 WHEN 'staff' THEN 1 ELSE 0 END
$$;

-- Whether a member with role p_actor may give or take away p_role: only roles below their own,
-- except that owners (and operators) may appoint and demote owners too (co-owners, a handover).
CREATE FUNCTION booking_internal.may_assign(p_actor text, p_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_actor IN ('operator', 'owner')
        OR (p_actor = 'manager' AND booking_internal.role_rank(p_role) < booking_internal.role_rank(p_actor))
$$;

-- The caller's role in the tenant when it is one of p_roles (operators always pass); refused
-- otherwise: PT404 when the tenant does not exist or the caller is none of its people, 42501
-- when the caller is one of them without the role. (Every function below that a caller calls
-- audits its refusals in its exception handler, whatever raised them.)
CREATE FUNCTION booking_internal.require_role(p_tenant_id uuid, p_action text, p_roles text[]) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    IF p_tenant_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    v_role := booking_internal.caller_tenant_role(p_tenant_id);
    IF v_role IS NULL OR NOT EXISTS (SELECT 1 FROM booking.tenants t WHERE t.id = p_tenant_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('tenant %s does not exist', p_tenant_id);
    END IF;
    IF v_role <> 'operator' AND NOT v_role = ANY (p_roles) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('%s is for the tenant''s %s; the caller is its %s', p_action, array_to_string(p_roles, ', '), v_role);
    END IF;
    RETURN v_role;
END $$;

-- The staff member (of the tenant, locked) whose hours or time off the caller changes: owners
-- and managers change anyone's, a staff member their own where the tenant allows it. Refused
-- with PT404 for an unknown tenant or staff member, 42501 otherwise. Returns the caller's role.
CREATE FUNCTION booking_internal.require_schedule_editor(p_tenant_id uuid, p_staff_id uuid, p_action text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text := booking_internal.require_role(p_tenant_id, p_action, '{owner,manager,receptionist,staff}');
    v_staff booking.staff;
BEGIN
    SELECT * INTO v_staff FROM booking.staff s WHERE s.tenant_id = p_tenant_id AND s.id = p_staff_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', p_staff_id);
    END IF;
    IF v_role IN ('operator', 'owner', 'manager') THEN
        RETURN v_role;
    END IF;
    IF v_staff.user_id IS NOT DISTINCT FROM booking.caller_user_id() THEN
        IF (SELECT t.staff_manage_own_schedule FROM booking.tenants t WHERE t.id = p_tenant_id) THEN
            RETURN v_role;
        END IF;
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'this tenant does not let staff change their own hours and time off (staff_manage_own_schedule)';
    END IF;
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only the tenant''s owners and managers change another staff member''s hours and time off';
END $$;

-- The one audit point and the one event point of every administrative change: a successful
-- audit entry (with the caller's identity and request), and, when p_event is given, an event
-- carrying the acting user and role (delivered like booking events).
CREATE FUNCTION booking_internal.record_change(p_tenant_id uuid, p_role text, p_action text, p_resource_type text,
                                               p_resource_id text, p_event text, p_payload jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    PERFORM booking.audit_event(p_action, p_resource_type, p_resource_id, true, NULL, false, p_tenant_id);
    IF p_event IS NOT NULL THEN
        PERFORM booking.emit_event(p_tenant_id, p_event, coalesce(p_payload, '{}') || jsonb_build_object(
            'actor', jsonb_build_object('user_id', booking.caller_user_id(), 'role', p_role)));
    END IF;
END $$;

-- p_doc, a JSON object of at most the allowed fields and all the required ones (22023 naming
-- the first that is not).
CREATE FUNCTION booking_internal.check_fields(p_doc jsonb, p_name text, p_allowed text[], p_required text[] DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_field text;
BEGIN
    IF p_doc IS NULL OR jsonb_typeof(p_doc) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', p_name USING ERRCODE = '22023';
    END IF;
    SELECT k INTO v_field FROM jsonb_object_keys(p_doc) k WHERE NOT k = ANY (p_allowed) ORDER BY k LIMIT 1;
    IF v_field IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field "%" in %', v_field, p_name USING ERRCODE = '22023',
            HINT = format('the fields are %s', array_to_string(p_allowed, ', '));
    END IF;
    SELECT f INTO v_field FROM unnest(p_required) f WHERE p_doc ->> f IS NULL LIMIT 1;
    IF v_field IS NOT NULL THEN
        RAISE EXCEPTION '%.% is required', p_name, v_field USING ERRCODE = '22023';
    END IF;
    RETURN p_doc;
END $$;

-- A tenant's name, time zone and opening hours, checked with clear messages before the table's
-- own CHECKs (NULL: not given).
CREATE FUNCTION booking_internal.check_profile(p_name text, p_timezone text, p_opening_hours jsonb, p_name_given boolean)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_name_given AND (p_name IS NULL OR length(trim(p_name)) = 0 OR length(p_name) > 200) THEN
        RAISE EXCEPTION 'the tenant''s name must have 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF p_timezone IS NOT NULL AND NOT booking.is_valid_timezone(p_timezone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(p_timezone) USING ERRCODE = '22023',
            HINT = 'an IANA name such as Europe/Zurich';
    END IF;
    IF p_opening_hours IS NOT NULL AND NOT booking.is_valid_opening_hours(p_opening_hours) THEN
        RAISE EXCEPTION 'opening_hours must map weekdays "0" (Sunday) to "6" to {"is_open", "start_time", "end_time"}'
            USING ERRCODE = '22023';
    END IF;
END $$;

-- The functions below that read tenant tables with an argument are PL/pgSQL, and none is
-- called inside a query on a tenant table: Citus cannot plan a SQL function's parameters, and
-- a function called in a query that runs on a shard may not query distributed tables itself.

-- The tenant as its owners see it: every column, its slot store settings, and how "any staff"
-- bookings choose and holds last.
CREATE FUNCTION booking_internal.tenant_json(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT to_jsonb(t) || jsonb_build_object('slot_store', (
                SELECT jsonb_build_object('enabled', w.enabled, 'horizon_days', w.horizon_days,
                                          'prime_start', w.prime_start, 'prime_end', w.prime_end)
                FROM booking.slot_store_settings w WHERE w.tenant_id = p_tenant_id),
                'staff_strategy', coalesce((SELECT b.staff_strategy FROM booking.booking_settings b WHERE b.tenant_id = p_tenant_id),
                                           'least_busy_day'),
                'hold_minutes', coalesce((SELECT b.hold_minutes FROM booking.booking_settings b WHERE b.tenant_id = p_tenant_id), 10))
            FROM booking.tenants t WHERE t.id = p_tenant_id);
END $$;

-- The tenant's staff (one, or all with p_staff_id NULL) with the services each performs and
-- their own terms for them (length, price, "any staff" weight and priority).
CREATE FUNCTION booking_internal.staff_json(p_tenant_id uuid, p_staff_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_agg(to_jsonb(f) || jsonb_build_object('service_ids', coalesce((
                        SELECT jsonb_agg(ss.service_id ORDER BY ss.service_id) FROM booking.staff_services ss
                        WHERE ss.tenant_id = p_tenant_id AND ss.staff_id = f.id), '[]'),
                        'service_terms', coalesce((
                        SELECT jsonb_agg(to_jsonb(ss) - 'tenant_id' - 'staff_id' ORDER BY ss.service_id) FROM booking.staff_services ss
                        WHERE ss.tenant_id = p_tenant_id AND ss.staff_id = f.id), '[]')) ORDER BY f.name, f.id)
            FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND (p_staff_id IS NULL OR f.id = p_staff_id));
END $$;

-- The distinct ids of p_ids (a JSON array of ids; 22023 otherwise), each the id of one of the
-- tenant's services or resources (p_noun: 'service' or 'resource'; PT404 naming the first that is
-- not): what a staff member's services or a group's members are set to.
CREATE FUNCTION booking_internal.tenant_ids(p_tenant_id uuid, p_ids jsonb, p_noun text) RETURNS uuid[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids uuid[];
    v_missing uuid;
BEGIN
    IF jsonb_typeof(p_ids) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION '%_ids must be a JSON array of % ids', p_noun, p_noun USING ERRCODE = '22023';
    END IF;
    v_ids := ARRAY(SELECT DISTINCT e::uuid FROM jsonb_array_elements_text(p_ids) e);
    SELECT i INTO v_missing FROM unnest(v_ids) i
    WHERE NOT CASE p_noun
        WHEN 'service' THEN EXISTS (SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = i)
        ELSE EXISTS (SELECT 1 FROM booking.resources r WHERE r.tenant_id = p_tenant_id AND r.id = i) END
    LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('%s %s does not exist', p_noun, v_missing);
    END IF;
    RETURN v_ids;
END $$;

-- Sets which services a staff member performs (p_service_ids: a JSON array of ids of the
-- tenant's services; PT404 for another).
CREATE FUNCTION booking_internal.set_staff_services(p_tenant_id uuid, p_staff_id uuid, p_service_ids jsonb, p_action text)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_ids uuid[] := booking_internal.tenant_ids(p_tenant_id, p_service_ids, 'service');
BEGIN
    DELETE FROM booking.staff_services ss
    WHERE ss.tenant_id = p_tenant_id AND ss.staff_id = p_staff_id AND NOT ss.service_id = ANY (v_ids);
    INSERT INTO booking.staff_services (tenant_id, staff_id, service_id)
    SELECT p_tenant_id, p_staff_id, i FROM unnest(v_ids) i
    ON CONFLICT DO NOTHING;
END $$;

-- Tenants -------------------------------------------------------------------------------------

-- A signed-in user creates a tenant and becomes its owner. 42501 without a signed-in user or
-- when the operator turned self-service off (booking_engine.self_serve_tenants); PT429 after 5
-- tenants per user and day (rate limiter bucket create_tenant, counted for every attempt);
-- 22023 for a bad name, time zone or opening hours.
CREATE FUNCTION booking_internal.create_tenant(p_name text, p_timezone text DEFAULT 'UTC', p_opening_hours jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid;
    v_tenant uuid;
BEGIN
    v_user := booking.caller_user_id();
    IF v_user IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'creating a tenant needs a signed-in user (a JWT with a uuid sub)';
    END IF;
    IF NOT booking.check_rate_limit(v_user::text, 'create_tenant', 5, 86400) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT429', MESSAGE = 'too many tenants created by this user today; try again later';
    END IF;
    IF NOT (booking_internal.tenant_limits() ->> 'self_serve')::boolean THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'this server does not let users create tenants themselves (booking_engine.self_serve_tenants)';
    END IF;
    PERFORM booking_internal.check_profile(p_name, coalesce(p_timezone, 'UTC'), p_opening_hours, true);
    IF p_opening_hours IS NULL THEN
        INSERT INTO booking.tenants (name, timezone) VALUES (trim(p_name), coalesce(p_timezone, 'UTC'))
        RETURNING id INTO v_tenant;
    ELSE
        INSERT INTO booking.tenants (name, timezone, opening_hours) VALUES (trim(p_name), coalesce(p_timezone, 'UTC'), p_opening_hours)
        RETURNING id INTO v_tenant;
    END IF;
    INSERT INTO booking.tenant_members (tenant_id, user_id, role) VALUES (v_tenant, v_user, 'owner');
    PERFORM booking_internal.record_change(v_tenant, 'owner', 'booking.tenant_create', 'tenant', v_tenant::text,
                                           'tenant.created', jsonb_build_object('tenant_id', v_tenant, 'name', trim(p_name)));
    RETURN jsonb_build_object('success', true, 'role', 'owner', 'tenant', booking_internal.tenant_json(v_tenant));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.tenant_create', 'tenant', NULL, false, SQLSTATE || ': ' || SQLERRM, false, NULL);
    RAISE;
END $$;

-- Profile and settings (owners, managers): name, timezone, opening_hours,
-- slot_interval_minutes, buffer_time_minutes, customer_booking_status ('confirmed' |
-- 'pending'), staff_manage_own_schedule, slot_store_enabled, slot_store_horizon_days,
-- staff_strategy ('least_busy_day' | 'least_busy_week' | 'round_robin' | 'priority'),
-- hold_minutes (1..120).
CREATE FUNCTION booking_internal.update_tenant(p_tenant_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.tenant_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes',
    ARRAY['name', 'timezone', 'opening_hours', 'slot_interval_minutes', 'buffer_time_minutes',
          'customer_booking_status', 'staff_manage_own_schedule', 'slot_store_enabled', 'slot_store_horizon_days',
          'staff_strategy', 'hold_minutes']);
    PERFORM booking_internal.check_profile(c ->> 'name', c ->> 'timezone', c -> 'opening_hours', c ? 'name');
    IF c ? 'customer_booking_status' AND (c ->> 'customer_booking_status') IS DISTINCT FROM 'pending'
       AND (c ->> 'customer_booking_status') IS DISTINCT FROM 'confirmed' THEN
        RAISE EXCEPTION 'customer_booking_status is confirmed or pending' USING ERRCODE = '22023';
    END IF;
    UPDATE booking.tenants t SET
        name = CASE WHEN c ? 'name' THEN trim(c ->> 'name') ELSE t.name END,
        timezone = CASE WHEN c ? 'timezone' THEN c ->> 'timezone' ELSE t.timezone END,
        opening_hours = CASE WHEN c ? 'opening_hours' THEN c -> 'opening_hours' ELSE t.opening_hours END,
        slot_interval_minutes = CASE WHEN c ? 'slot_interval_minutes' THEN (c ->> 'slot_interval_minutes')::int ELSE t.slot_interval_minutes END,
        buffer_time_minutes = CASE WHEN c ? 'buffer_time_minutes' THEN (c ->> 'buffer_time_minutes')::int ELSE t.buffer_time_minutes END,
        customer_booking_status = CASE WHEN c ? 'customer_booking_status' THEN c ->> 'customer_booking_status' ELSE t.customer_booking_status END,
        staff_manage_own_schedule = CASE WHEN c ? 'staff_manage_own_schedule' THEN (c ->> 'staff_manage_own_schedule')::boolean
                                         ELSE t.staff_manage_own_schedule END
    WHERE t.id = p_tenant_id;
    IF c ? 'slot_store_enabled' OR c ? 'slot_store_horizon_days' THEN
        UPDATE booking.slot_store_settings w SET
            enabled = CASE WHEN c ? 'slot_store_enabled' THEN (c ->> 'slot_store_enabled')::boolean ELSE w.enabled END,
            horizon_days = CASE WHEN c ? 'slot_store_horizon_days' THEN (c ->> 'slot_store_horizon_days')::int ELSE w.horizon_days END
        WHERE w.tenant_id = p_tenant_id;
    END IF;
    IF c ? 'staff_strategy' OR c ? 'hold_minutes' THEN
        INSERT INTO booking.booking_settings AS b (tenant_id, staff_strategy, hold_minutes)
        VALUES (p_tenant_id, coalesce(c ->> 'staff_strategy', 'least_busy_day'), coalesce((c ->> 'hold_minutes')::int, 10))
        ON CONFLICT (tenant_id) DO UPDATE SET
            staff_strategy = CASE WHEN c ? 'staff_strategy' THEN excluded.staff_strategy ELSE b.staff_strategy END,
            hold_minutes = CASE WHEN c ? 'hold_minutes' THEN excluded.hold_minutes ELSE b.hold_minutes END;
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.tenant_update', 'tenant', p_tenant_id::text,
        'tenant.updated', jsonb_build_object('tenant_id', p_tenant_id, 'changes', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(c) k)));
    RETURN booking_internal.tenant_json(p_tenant_id);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.tenant_update', 'tenant', p_tenant_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Services ------------------------------------------------------------------------------------

-- p_service: name and duration_minutes (required), description, buffer_before_minutes,
-- buffer_after_minutes, price, is_active.
CREATE FUNCTION booking_internal.create_service(p_tenant_id uuid, p_service jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_service booking.services;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.service_create', '{owner,manager}');
    c := booking_internal.check_fields(p_service, 'p_service',
    ARRAY['name', 'description', 'duration_minutes', 'buffer_before_minutes', 'buffer_after_minutes', 'price', 'is_active'],
    ARRAY['name', 'duration_minutes']);
    INSERT INTO booking.services (tenant_id, name, description, duration_minutes, buffer_before_minutes,
                                  buffer_after_minutes, price, is_active)
    VALUES (p_tenant_id, trim(c ->> 'name'), c ->> 'description', (c ->> 'duration_minutes')::int,
            coalesce((c ->> 'buffer_before_minutes')::int, 0), coalesce((c ->> 'buffer_after_minutes')::int, 0),
            coalesce((c ->> 'price')::numeric, 0), coalesce((c ->> 'is_active')::boolean, true))
    RETURNING * INTO v_service;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.service_create', 'service', v_service.id::text,
        'service.created', jsonb_build_object('service_id', v_service.id, 'name', v_service.name, 'price', v_service.price,
                                              'duration_minutes', v_service.duration_minutes, 'is_active', v_service.is_active));
    RETURN to_jsonb(v_service);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.service_create', 'service', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The same fields, each optional.
CREATE FUNCTION booking_internal.update_service(p_tenant_id uuid, p_service_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_service booking.services;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.service_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes',
    ARRAY['name', 'description', 'duration_minutes', 'buffer_before_minutes', 'buffer_after_minutes', 'price', 'is_active']);
    UPDATE booking.services s SET
        name = CASE WHEN c ? 'name' THEN trim(c ->> 'name') ELSE s.name END,
        description = CASE WHEN c ? 'description' THEN c ->> 'description' ELSE s.description END,
        duration_minutes = CASE WHEN c ? 'duration_minutes' THEN (c ->> 'duration_minutes')::int ELSE s.duration_minutes END,
        buffer_before_minutes = CASE WHEN c ? 'buffer_before_minutes' THEN (c ->> 'buffer_before_minutes')::int ELSE s.buffer_before_minutes END,
        buffer_after_minutes = CASE WHEN c ? 'buffer_after_minutes' THEN (c ->> 'buffer_after_minutes')::int ELSE s.buffer_after_minutes END,
        price = CASE WHEN c ? 'price' THEN (c ->> 'price')::numeric ELSE s.price END,
        is_active = CASE WHEN c ? 'is_active' THEN (c ->> 'is_active')::boolean ELSE s.is_active END
    WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id
    RETURNING * INTO v_service;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('service %s does not exist', p_service_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.service_update', 'service', v_service.id::text,
        'service.updated', jsonb_build_object('service_id', v_service.id, 'changes', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(c) k),
                                              'price', v_service.price, 'duration_minutes', v_service.duration_minutes,
                                              'is_active', v_service.is_active));
    RETURN to_jsonb(v_service);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.service_update', 'service', p_service_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Staff ---------------------------------------------------------------------------------------

-- p_staff: name (required), email, timezone (default: the tenant's), is_active, service_ids,
-- user_id (only the caller's own: an owner who also works appointments; other users are linked
-- by inviting them with the staff member's id).
CREATE FUNCTION booking_internal.add_staff(p_tenant_id uuid, p_staff jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_staff booking.staff;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.staff_create', '{owner,manager}');
    c := booking_internal.check_fields(p_staff, 'p_staff',
    ARRAY['name', 'email', 'timezone', 'is_active', 'service_ids', 'user_id'], ARRAY['name']);
    IF c ? 'user_id' AND (c ->> 'user_id')::uuid IS DISTINCT FROM booking.caller_user_id() THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'a staff member is linked to another user by inviting that user (booking.invite_member with p_staff_id)';
    END IF;
    PERFORM booking_internal.check_profile(NULL, c ->> 'timezone', NULL, false);
    INSERT INTO booking.staff (tenant_id, name, email, timezone, is_active, user_id)
    VALUES (p_tenant_id, trim(c ->> 'name'), c ->> 'email', c ->> 'timezone', coalesce((c ->> 'is_active')::boolean, true),
            (c ->> 'user_id')::uuid)
    RETURNING * INTO v_staff;
    IF c ? 'service_ids' THEN
        PERFORM booking_internal.set_staff_services(p_tenant_id, v_staff.id, c -> 'service_ids', 'booking.staff_create');
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.staff_create', 'staff', v_staff.id::text,
        'staff.created', (booking_internal.staff_json(p_tenant_id, v_staff.id) -> 0) - 'email' - 'user_id'
                         - 'created_at' - 'updated_at' - 'id' || jsonb_build_object('staff_id', v_staff.id));
    RETURN booking_internal.staff_json(p_tenant_id, v_staff.id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.staff_create', 'staff', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- name, email, timezone, is_active (false: deactivated, no longer offered), service_ids.
CREATE FUNCTION booking_internal.update_staff(p_tenant_id uuid, p_staff_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_old booking.staff;
    v_new booking.staff;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.staff_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes', ARRAY['name', 'email', 'timezone', 'is_active', 'service_ids']);
    SELECT * INTO v_old FROM booking.staff s WHERE s.tenant_id = p_tenant_id AND s.id = p_staff_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', p_staff_id);
    END IF;
    PERFORM booking_internal.check_profile(NULL, c ->> 'timezone', NULL, false);
    IF c ?| ARRAY['name', 'email', 'timezone', 'is_active'] THEN
        UPDATE booking.staff s SET
            name = CASE WHEN c ? 'name' THEN trim(c ->> 'name') ELSE s.name END,
            email = CASE WHEN c ? 'email' THEN c ->> 'email' ELSE s.email END,
            timezone = CASE WHEN c ? 'timezone' THEN c ->> 'timezone' ELSE s.timezone END,
            is_active = CASE WHEN c ? 'is_active' THEN (c ->> 'is_active')::boolean ELSE s.is_active END
        WHERE s.tenant_id = p_tenant_id AND s.id = p_staff_id
        RETURNING * INTO v_new;
    ELSE
        v_new := v_old;
    END IF;
    IF c ? 'service_ids' THEN
        PERFORM booking_internal.set_staff_services(p_tenant_id, p_staff_id, c -> 'service_ids', 'booking.staff_update');
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.staff_update', 'staff', p_staff_id::text,
        CASE WHEN v_old.is_active AND NOT v_new.is_active THEN 'staff.deactivated' ELSE 'staff.updated' END,
        jsonb_build_object('staff_id', p_staff_id, 'name', v_new.name, 'is_active', v_new.is_active,
                           'changes', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(c) k)));
    RETURN booking_internal.staff_json(p_tenant_id, p_staff_id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.staff_update', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Working time --------------------------------------------------------------------------------

-- Replaces a staff member's weekly hours: p_schedule is a JSON array of {day_of_week (0 =
-- Sunday), start_time, end_time ("24:00" allowed), timezone (optional)}; several windows a
-- day, gaps are breaks; [] clears them.
CREATE FUNCTION booking_internal.set_staff_schedule(p_tenant_id uuid, p_staff_id uuid, p_schedule jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    e jsonb;
BEGIN
    v_role := booking_internal.require_schedule_editor(p_tenant_id, p_staff_id, 'booking.schedule_update');
    IF jsonb_typeof(p_schedule) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'p_schedule must be a JSON array of {day_of_week, start_time, end_time}' USING ERRCODE = '22023';
    END IF;
    FOR e IN SELECT x FROM jsonb_array_elements(p_schedule) x LOOP
        PERFORM booking_internal.check_fields(e, 'p_schedule[]', ARRAY['day_of_week', 'start_time', 'end_time', 'timezone'],
                                              ARRAY['day_of_week', 'start_time', 'end_time']);
        PERFORM booking_internal.check_profile(NULL, e ->> 'timezone', NULL, false);
    END LOOP;
    DELETE FROM booking.staff_schedules s WHERE s.tenant_id = p_tenant_id AND s.staff_id = p_staff_id;
    INSERT INTO booking.staff_schedules (tenant_id, staff_id, day_of_week, start_time, end_time, timezone)
    SELECT p_tenant_id, p_staff_id, (x ->> 'day_of_week')::int, (x ->> 'start_time')::time, (x ->> 'end_time')::time, x ->> 'timezone'
    FROM jsonb_array_elements(p_schedule) x;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.schedule_update', 'staff', p_staff_id::text,
        'schedule.updated', jsonb_build_object('staff_id', p_staff_id, 'change', 'weekly_hours', 'windows', jsonb_array_length(p_schedule)));
    RETURN jsonb_build_object('staff_id', p_staff_id, 'schedule', coalesce((
        SELECT jsonb_agg(jsonb_build_object('day_of_week', s.day_of_week, 'start_time', s.start_time, 'end_time', s.end_time,
                                            'timezone', s.timezone) ORDER BY s.day_of_week, s.start_time)
        FROM booking.staff_schedules s WHERE s.tenant_id = p_tenant_id AND s.staff_id = p_staff_id), '[]'));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.schedule_update', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- One day changed: p_override is {date (required), start_time, end_time, is_available (default
-- false: time off that day; without times, the whole day), reason}.
CREATE FUNCTION booking_internal.add_schedule_override(p_tenant_id uuid, p_staff_id uuid, p_override jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_row booking.schedule_overrides;
BEGIN
    v_role := booking_internal.require_schedule_editor(p_tenant_id, p_staff_id, 'booking.override_add');
    c := booking_internal.check_fields(p_override, 'p_override',
    ARRAY['date', 'start_time', 'end_time', 'is_available', 'reason'], ARRAY['date']);
    INSERT INTO booking.schedule_overrides (tenant_id, staff_id, date, start_time, end_time, is_available, reason)
    VALUES (p_tenant_id, p_staff_id, (c ->> 'date')::date, (c ->> 'start_time')::time, (c ->> 'end_time')::time,
            coalesce((c ->> 'is_available')::boolean, false), c ->> 'reason')
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.override_add', 'schedule_override', v_row.id::text,
        'schedule.updated', jsonb_build_object('staff_id', p_staff_id, 'change', 'override_added', 'override_id', v_row.id,
                                               'date', v_row.date, 'is_available', v_row.is_available));
    RETURN to_jsonb(v_row);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.override_add', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.remove_schedule_override(p_tenant_id uuid, p_override_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_row booking.schedule_overrides;
    v_role text;
BEGIN
    PERFORM booking_internal.require_role(p_tenant_id, 'booking.override_remove', '{owner,manager,receptionist,staff}');
    SELECT * INTO v_row FROM booking.schedule_overrides o WHERE o.tenant_id = p_tenant_id AND o.id = p_override_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('schedule override %s does not exist', p_override_id);
    END IF;
    v_role := booking_internal.require_schedule_editor(p_tenant_id, v_row.staff_id, 'booking.override_remove');
    DELETE FROM booking.schedule_overrides o WHERE o.tenant_id = p_tenant_id AND o.id = p_override_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.override_remove', 'schedule_override', p_override_id::text,
        'schedule.updated', jsonb_build_object('staff_id', v_row.staff_id, 'change', 'override_removed',
                                               'override_id', p_override_id, 'date', v_row.date));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.override_remove', 'schedule_override', p_override_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A closed day of the tenant (owners, managers): p_holiday is {name (required), date, or
-- is_recurring with recurring_month and recurring_day; type, affects_all_staff (default true),
-- affected_staff_ids, description}.
CREATE FUNCTION booking_internal.add_holiday(p_tenant_id uuid, p_holiday jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_staff uuid[];
    v_missing uuid;
    v_row booking.holidays;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.holiday_add', '{owner,manager}');
    c := booking_internal.check_fields(p_holiday, 'p_holiday',
    ARRAY['name', 'date', 'is_recurring', 'recurring_month', 'recurring_day', 'type', 'affects_all_staff',
          'affected_staff_ids', 'description'], ARRAY['name']);
    v_staff := '{}';
    IF c ? 'affected_staff_ids' THEN
        IF jsonb_typeof(c -> 'affected_staff_ids') <> 'array' THEN
            RAISE EXCEPTION 'affected_staff_ids must be a JSON array of staff ids' USING ERRCODE = '22023';
        END IF;
        v_staff := ARRAY(SELECT DISTINCT e::uuid FROM jsonb_array_elements_text(c -> 'affected_staff_ids') e);
        SELECT i INTO v_missing FROM unnest(v_staff) i
        WHERE NOT EXISTS (SELECT 1 FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = i) LIMIT 1;
        IF v_missing IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', v_missing);
        END IF;
    END IF;
    INSERT INTO booking.holidays (tenant_id, name, date, is_recurring, recurring_month, recurring_day, type,
                                  affects_all_staff, affected_staff_ids, description)
    VALUES (p_tenant_id, trim(c ->> 'name'), (c ->> 'date')::date, coalesce((c ->> 'is_recurring')::boolean, false),
            (c ->> 'recurring_month')::int, (c ->> 'recurring_day')::int, coalesce(c ->> 'type', 'public_holiday'),
            coalesce((c ->> 'affects_all_staff')::boolean, true), v_staff, c ->> 'description')
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.holiday_add', 'holiday', v_row.id::text,
        'schedule.updated', jsonb_build_object('change', 'holiday_added', 'holiday_id', v_row.id, 'date', v_row.date,
                                               'is_recurring', v_row.is_recurring));
    RETURN to_jsonb(v_row);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.holiday_add', 'holiday', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.remove_holiday(p_tenant_id uuid, p_holiday_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_row booking.holidays;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.holiday_remove', '{owner,manager}');
    DELETE FROM booking.holidays h WHERE h.tenant_id = p_tenant_id AND h.id = p_holiday_id RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('holiday %s does not exist', p_holiday_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.holiday_remove', 'holiday', p_holiday_id::text,
        'schedule.updated', jsonb_build_object('change', 'holiday_removed', 'holiday_id', p_holiday_id, 'date', v_row.date));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.holiday_remove', 'holiday', p_holiday_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Time off from p_starts_at to p_ends_at (the reason stays private: it is not in the event).
CREATE FUNCTION booking_internal.add_time_off(p_tenant_id uuid, p_staff_id uuid, p_starts_at timestamptz, p_ends_at timestamptz,
                                              p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_row booking.staff_time_off;
BEGIN
    v_role := booking_internal.require_schedule_editor(p_tenant_id, p_staff_id, 'booking.time_off_add');
    IF p_starts_at IS NULL OR p_ends_at IS NULL OR NOT isfinite(p_starts_at) OR NOT isfinite(p_ends_at) OR p_ends_at <= p_starts_at THEN
        RAISE EXCEPTION 'time off needs a finite start before its end' USING ERRCODE = '22023';
    END IF;
    INSERT INTO booking.staff_time_off (tenant_id, staff_id, period, reason)
    VALUES (p_tenant_id, p_staff_id, tstzrange(p_starts_at, p_ends_at, '[)'), p_reason)
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.time_off_add', 'time_off', v_row.id::text,
        'time_off.created', jsonb_build_object('staff_id', p_staff_id, 'time_off_id', v_row.id,
                                               'starts_at', p_starts_at, 'ends_at', p_ends_at));
    RETURN jsonb_build_object('id', v_row.id, 'staff_id', p_staff_id, 'starts_at', lower(v_row.period),
                              'ends_at', upper(v_row.period), 'reason', v_row.reason);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.time_off_add', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.remove_time_off(p_tenant_id uuid, p_time_off_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_row booking.staff_time_off;
    v_role text;
BEGIN
    PERFORM booking_internal.require_role(p_tenant_id, 'booking.time_off_remove', '{owner,manager,receptionist,staff}');
    SELECT * INTO v_row FROM booking.staff_time_off x WHERE x.tenant_id = p_tenant_id AND x.id = p_time_off_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('time off %s does not exist', p_time_off_id);
    END IF;
    v_role := booking_internal.require_schedule_editor(p_tenant_id, v_row.staff_id, 'booking.time_off_remove');
    DELETE FROM booking.staff_time_off x WHERE x.tenant_id = p_tenant_id AND x.id = p_time_off_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.time_off_remove', 'time_off', p_time_off_id::text,
        'time_off.deleted', jsonb_build_object('staff_id', v_row.staff_id, 'time_off_id', p_time_off_id,
                                               'starts_at', lower(v_row.period), 'ends_at', upper(v_row.period)));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.time_off_remove', 'time_off', p_time_off_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Policies --------------------------------------------------------------------------------------

-- Sets (p_value a JSON number; double_booking_prevention only true) or, with p_value NULL,
-- removes the tenant's own policy p_key, for the whole tenant, one service or one staff member.
CREATE FUNCTION booking_internal.set_policy(p_tenant_id uuid, p_key text, p_value jsonb,
                                            p_service_id uuid DEFAULT NULL, p_staff_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_bad boolean;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.policy_set', '{owner,manager}');
    IF p_key IS NULL OR NOT EXISTS (SELECT 1 FROM booking.global_policies g WHERE g.policy_key = p_key AND g.is_builtin) THEN
        RAISE EXCEPTION 'unknown policy %', coalesce(quote_literal(p_key), 'NULL') USING ERRCODE = '22023',
            HINT = 'booking.global_policies lists them';
    END IF;
    IF p_service_id IS NOT NULL AND p_staff_id IS NOT NULL THEN
        RAISE EXCEPTION 'a policy applies to the tenant, one service or one staff member, not both' USING ERRCODE = '22023';
    END IF;
    IF p_service_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('service %s does not exist', p_service_id);
    END IF;
    IF p_staff_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = p_staff_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', p_staff_id);
    END IF;
    IF p_value IS NULL OR p_value = 'null'::jsonb THEN
        DELETE FROM booking.booking_policies p
        WHERE p.tenant_id = p_tenant_id AND p.policy_key = p_key
          AND p.service_id IS NOT DISTINCT FROM p_service_id AND p.staff_id IS NOT DISTINCT FROM p_staff_id;
    ELSE
        v_bad := CASE WHEN p_key = 'double_booking_prevention' THEN p_value <> 'true'::jsonb
                      ELSE jsonb_typeof(p_value) <> 'number' OR (p_value)::numeric < 0 END;
        IF v_bad THEN
            RAISE EXCEPTION 'policy % takes %', p_key,
                CASE WHEN p_key = 'double_booking_prevention' THEN 'true only' ELSE 'a number of 0 or more' END
                USING ERRCODE = '22023';
        END IF;
        INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value, service_id, staff_id)
        VALUES (p_tenant_id, p_key, p_value, p_service_id, p_staff_id)
        ON CONFLICT ON CONSTRAINT booking_policies_scope_key DO UPDATE SET policy_value = excluded.policy_value;
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.policy_set', 'policy', p_key,
        'policy.updated', jsonb_build_object('key', p_key, 'value', p_value, 'service_id', p_service_id, 'staff_id', p_staff_id));
    RETURN jsonb_build_object('key', p_key, 'service_id', p_service_id, 'staff_id', p_staff_id,
                              'own_value', p_value, 'effective_value', booking.policy_value(p_tenant_id, p_key, p_service_id, p_staff_id));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.policy_set', 'policy', p_key, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Message templates and delivery endpoints --------------------------------------------------------

-- The tenant's template of one event type for emails and Slack (the same placeholders and
-- checks as booking_admin.set_message_template); a NULL subject and body removes it (the
-- default applies again).
CREATE FUNCTION booking_internal.set_tenant_message_template(p_tenant_id uuid, p_event_type text, p_subject text,
                                                             p_body_text text, p_body_html text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.template_set', '{owner,manager}');
    IF p_subject IS NULL AND p_body_text IS NULL AND p_body_html IS NULL THEN
        DELETE FROM booking_admin.message_templates m WHERE m.tenant_id = p_tenant_id AND m.event_type = p_event_type;
    ELSE
        PERFORM booking_internal.save_message_template(p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.template_set', 'message_template', p_event_type, NULL, NULL);
    RETURN coalesce((SELECT to_jsonb(m) FROM booking_admin.message_templates m WHERE m.tenant_id = p_tenant_id AND m.event_type = p_event_type),
                    jsonb_build_object('tenant_id', p_tenant_id, 'event_type', p_event_type, 'removed', true));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.template_set', 'message_template', p_event_type, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The tenant's own endpoints: the same URL rules, secrets and options as
-- booking_admin.create_endpoint, for this tenant's events only, at most
-- booking_engine.tenant_endpoint_quota of them (PT409 beyond).
CREATE FUNCTION booking_internal.create_tenant_endpoint(p_tenant_id uuid, p_url text, p_event_types text[],
                                                        p_channel text DEFAULT 'webhook', p_options jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_quota integer;
    v_endpoint jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.endpoint_create', '{owner,manager}');
    v_quota := (booking_internal.tenant_limits() ->> 'endpoint_quota')::int;
    -- Two concurrent creations must not both pass the count.
    PERFORM pg_advisory_xact_lock(hashtextextended('booking.tenant_endpoints:' || p_tenant_id, 0));
    IF (SELECT count(*) FROM booking_admin.delivery_endpoints e WHERE e.tenant_id = p_tenant_id) >= v_quota THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = format('the tenant has its %s delivery endpoints already (booking_engine.tenant_endpoint_quota)', v_quota);
    END IF;
    v_endpoint := booking_internal.create_endpoint(p_tenant_id, p_url, p_event_types, p_channel, p_options);
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.endpoint_create', 'endpoint', v_endpoint ->> 'id', NULL, NULL);
    RETURN v_endpoint;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.endpoint_create', 'endpoint', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- One of the tenant's own endpoints, locked for a change (PT404 for any other, global ones
-- included).
CREATE FUNCTION booking_internal.tenant_endpoint(p_tenant_id uuid, p_endpoint_id uuid, p_action text)
RETURNS booking_admin.delivery_endpoints
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
BEGIN
    SELECT * INTO v_endpoint FROM booking_admin.delivery_endpoints e
    WHERE e.id = p_endpoint_id AND e.tenant_id = p_tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('delivery endpoint %s does not exist', p_endpoint_id);
    END IF;
    RETURN v_endpoint;
END $$;

CREATE FUNCTION booking_internal.update_tenant_endpoint(p_tenant_id uuid, p_endpoint_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_result jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.endpoint_update', '{owner,manager}');
    v_result := booking_internal.change_endpoint(
    booking_internal.tenant_endpoint(p_tenant_id, p_endpoint_id, 'booking.endpoint_update'), p_changes);
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.endpoint_update', 'endpoint', p_endpoint_id::text, NULL, NULL);
    RETURN v_result;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.endpoint_update', 'endpoint', p_endpoint_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.delete_tenant_endpoint(p_tenant_id uuid, p_endpoint_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.endpoint_delete', '{owner,manager}');
    PERFORM booking_internal.tenant_endpoint(p_tenant_id, p_endpoint_id, 'booking.endpoint_delete');
    DELETE FROM booking_admin.delivery_endpoints e WHERE e.id = p_endpoint_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.endpoint_delete', 'endpoint', p_endpoint_id::text, NULL, NULL);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.endpoint_delete', 'endpoint', p_endpoint_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.rotate_tenant_endpoint_secret(p_tenant_id uuid, p_endpoint_id uuid,
                                                               p_grace interval DEFAULT '24 hours', p_secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_secret text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.endpoint_rotate', '{owner,manager}');
    PERFORM booking_internal.tenant_endpoint(p_tenant_id, p_endpoint_id, 'booking.endpoint_rotate');
    v_secret := booking_internal.rotate_endpoint_secret(p_endpoint_id, p_grace, p_secret);
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.endpoint_rotate', 'endpoint', p_endpoint_id::text, NULL, NULL);
    RETURN v_secret;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.endpoint_rotate', 'endpoint', p_endpoint_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.send_tenant_test_event(p_tenant_id uuid, p_endpoint_id uuid, p_payload jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_id uuid;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.endpoint_test', '{owner,manager}');
    v_id := booking_internal.queue_test_event(booking_internal.tenant_endpoint(p_tenant_id, p_endpoint_id, 'booking.endpoint_test'), p_payload);
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.endpoint_test', 'endpoint', p_endpoint_id::text, NULL, NULL);
    RETURN v_id;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.endpoint_test', 'endpoint', p_endpoint_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Members -----------------------------------------------------------------------------------------

-- Invites a user (p_user_id) or whoever signs in with an e-mail address (p_email) to the tenant
-- with p_role, optionally as staff member p_staff_id. Owners invite any role, managers
-- receptionists and staff. Returns the invitation and its token, shown this once: the front end
-- sends it to the invitee, who calls booking.accept_invitation(token) signed in. PT429 after 50
-- invitations per inviting user and hour.
CREATE FUNCTION booking_internal.invite_member(p_tenant_id uuid, p_role text, p_email text DEFAULT NULL,
                                               p_user_id uuid DEFAULT NULL, p_staff_id uuid DEFAULT NULL,
                                               p_valid_for interval DEFAULT '7 days') RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_id uuid;
    v_token text;
    v_hash bytea;
    v_invitation booking.tenant_invitations;
    v_inviter uuid;
    v_expires timestamptz;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.member_invite', '{owner,manager}');
    v_id := gen_random_uuid();
    IF p_role IS NULL OR p_role NOT IN ('owner', 'manager', 'receptionist', 'staff') THEN
        RAISE EXCEPTION 'p_role is owner, manager, receptionist or staff' USING ERRCODE = '22023';
    END IF;
    IF NOT booking_internal.may_assign(v_role, p_role) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('the caller''s role (%s) may invite only roles below it, not %s', v_role, p_role);
    END IF;
    IF p_email IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'an invitation names the invitee''s p_email or p_user_id' USING ERRCODE = '22023';
    END IF;
    IF p_email IS NOT NULL AND (length(p_email) > 320 OR p_email !~ '^[^@\s]+@[^@\s]+$') THEN
        RAISE EXCEPTION '% is not an e-mail address', quote_literal(p_email) USING ERRCODE = '22023';
    END IF;
    IF p_valid_for IS NULL OR p_valid_for < interval '1 hour' OR p_valid_for > interval '30 days' THEN
        RAISE EXCEPTION 'an invitation is valid for 1 hour to 30 days' USING ERRCODE = '22023';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        PERFORM 1 FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = p_staff_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', p_staff_id);
        END IF;
    END IF;
    IF NOT booking.check_rate_limit(coalesce(booking.caller_user_id()::text, 'tenant:' || p_tenant_id), 'invite_member', 50, 3600) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT429', MESSAGE = 'too many invitations from this user; try again later';
    END IF;
    SELECT t.token, t.token_hash INTO v_token, v_hash FROM booking_internal.new_invitation_token(p_tenant_id, v_id) t;
    -- Values, not calls, in statements on tenant tables: on Citus such a statement runs on the
    -- tenant's worker, which has neither the request's claims nor its clock setting.
    v_inviter := booking.caller_user_id();
    v_expires := booking.clock_now() + p_valid_for;
    INSERT INTO booking.tenant_invitations (id, tenant_id, role, email, user_id, staff_id, token_hash, invited_by, expires_at)
    VALUES (v_id, p_tenant_id, p_role, lower(trim(p_email)), p_user_id, p_staff_id, v_hash, v_inviter, v_expires)
    RETURNING * INTO v_invitation;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.member_invite', 'invitation', v_id::text,
        'member.invited', jsonb_build_object('invitation_id', v_id, 'role', p_role, 'email', v_invitation.email,
                                             'user_id', p_user_id, 'staff_id', p_staff_id, 'expires_at', v_invitation.expires_at));
    RETURN jsonb_build_object('invitation', to_jsonb(v_invitation) - 'token_hash', 'token', v_token);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.member_invite', 'invitation', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The signed-in user accepts an invitation: they become a member with its role (a member who
-- already has a higher one keeps it) and, when it names a staff member, that staff row is linked
-- to them. Single use. Refused (audited): 42501 without a signed-in user, PT404 for a token that
-- names no invitation (malformed, unknown, or a wrong secret), PT410 revoked or expired, PT409
-- already accepted (by anyone) or its staff member linked to someone else, PT403 an invitation
-- for another user.
CREATE FUNCTION booking_internal.accept_invitation(p_token text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid;
    v_presented record;
    v_invitation booking.tenant_invitations;
    v_invitee boolean;
    v_member booking.tenant_members;
    v_now timestamptz;
BEGIN
    v_user := booking.caller_user_id();
    IF v_user IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'accepting an invitation needs a signed-in user (a JWT with a uuid sub)';
    END IF;
    SELECT * INTO v_presented FROM booking_internal.parse_invitation_token(coalesce(p_token, ''));
    IF FOUND THEN
        SELECT * INTO v_invitation FROM booking.tenant_invitations i
        WHERE i.tenant_id = v_presented.tenant_id AND i.id = v_presented.invitation_id FOR UPDATE;
    END IF;
    IF v_invitation.id IS NULL OR NOT booking_internal.same_token_hash(v_invitation.token_hash, v_presented.secret_hash) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such invitation';
    END IF;
    IF v_invitation.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT410', MESSAGE = 'the invitation was revoked';
    END IF;
    IF v_invitation.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'the invitation was already accepted';
    END IF;
    IF v_invitation.expires_at <= booking.clock_now() THEN
        RAISE EXCEPTION USING ERRCODE = 'PT410', MESSAGE = format('the invitation expired at %s', v_invitation.expires_at);
    END IF;
    -- By user id when the invitation names one, else by the e-mail address the JWT carries.
    v_invitee := CASE WHEN v_invitation.user_id IS NOT NULL THEN v_invitation.user_id = v_user
                      ELSE lower(booking.jwt_claims() ->> 'email') IS NOT DISTINCT FROM v_invitation.email END;
    IF NOT v_invitee THEN
        RAISE EXCEPTION USING ERRCODE = 'PT403', MESSAGE = 'this invitation is for another user';
    END IF;
    INSERT INTO booking.tenant_members AS m (tenant_id, user_id, role, invited_by)
    VALUES (v_invitation.tenant_id, v_user, v_invitation.role, v_invitation.invited_by)
    ON CONFLICT (tenant_id, user_id) DO UPDATE
        SET role = CASE WHEN booking_internal.role_rank(excluded.role) > booking_internal.role_rank(m.role) THEN excluded.role ELSE m.role END
    RETURNING * INTO v_member;
    IF v_invitation.staff_id IS NOT NULL THEN
        UPDATE booking.staff f SET user_id = v_user
        WHERE f.tenant_id = v_invitation.tenant_id AND f.id = v_invitation.staff_id AND (f.user_id IS NULL OR f.user_id = v_user);
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'the invitation''s staff member is linked to another user';
        END IF;
    END IF;
    v_now := booking.clock_now();
    UPDATE booking.tenant_invitations i SET accepted_at = v_now, accepted_by = v_user
    WHERE i.tenant_id = v_invitation.tenant_id AND i.id = v_invitation.id;
    PERFORM booking_internal.record_change(v_invitation.tenant_id, v_member.role, 'booking.member_accept', 'member', v_user::text,
        'member.joined', jsonb_build_object('user_id', v_user, 'role', v_member.role, 'invitation_id', v_invitation.id,
                                            'staff_id', v_invitation.staff_id));
    RETURN jsonb_build_object('success', true, 'tenant_id', v_invitation.tenant_id,
                              'tenant_name', (SELECT t.name FROM booking.tenants t WHERE t.id = v_invitation.tenant_id),
                              'role', v_member.role, 'staff_id', v_invitation.staff_id);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.member_accept', 'invitation', v_invitation.id::text, false, SQLSTATE || ': ' || SQLERRM, false, v_invitation.tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.revoke_invitation(p_tenant_id uuid, p_invitation_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_invitation booking.tenant_invitations;
    v_now timestamptz;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.invitation_revoke', '{owner,manager}');
    SELECT * INTO v_invitation FROM booking.tenant_invitations i WHERE i.tenant_id = p_tenant_id AND i.id = p_invitation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('invitation %s does not exist', p_invitation_id);
    END IF;
    IF NOT booking_internal.may_assign(v_role, v_invitation.role) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('the caller''s role (%s) may revoke invitations only to roles below it, not %s', v_role, v_invitation.role);
    END IF;
    IF v_invitation.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'the invitation was already accepted: remove the member instead';
    END IF;
    v_now := booking.clock_now();
    UPDATE booking.tenant_invitations i SET revoked_at = coalesce(i.revoked_at, v_now)
    WHERE i.tenant_id = p_tenant_id AND i.id = p_invitation_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.invitation_revoke', 'invitation', p_invitation_id::text, NULL, NULL);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.invitation_revoke', 'invitation', p_invitation_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The tenant's members, locked: role changes and removals of one tenant happen one at a time,
-- so that two of them cannot together leave it without an owner. Returns how many owners it has.
CREATE FUNCTION booking_internal.lock_members(p_tenant_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_roles text[];
BEGIN
    v_roles := ARRAY(SELECT m.role FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id FOR UPDATE);
    RETURN (SELECT count(*) FROM unnest(v_roles) r WHERE r = 'owner');
END $$;

-- Changes a member's role: owners any member's, to any role; managers a receptionist's or staff
-- member's, to receptionist or staff. The last owner cannot be demoted (PT409).
CREATE FUNCTION booking_internal.change_member_role(p_tenant_id uuid, p_user_id uuid, p_role text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_owners integer;
    v_member booking.tenant_members;
    v_from text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.member_role', '{owner,manager}');
    v_owners := booking_internal.lock_members(p_tenant_id);
    -- Again, under the lock: a concurrent change may have just changed the caller's own role.
    v_role := booking_internal.require_role(p_tenant_id, 'booking.member_role', '{owner,manager}');
    IF p_role IS NULL OR p_role NOT IN ('owner', 'manager', 'receptionist', 'staff') THEN
        RAISE EXCEPTION 'p_role is owner, manager, receptionist or staff' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_member FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('member %s does not exist', p_user_id);
    END IF;
    v_from := v_member.role;
    IF NOT (booking_internal.may_assign(v_role, v_from) AND booking_internal.may_assign(v_role, p_role)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('the caller''s role (%s) may change only roles below it, not %s to %s', v_role, v_from, p_role);
    END IF;
    IF v_from = 'owner' AND p_role <> 'owner' AND v_owners = 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'the last owner cannot be demoted: make another member owner first';
    END IF;
    IF p_role <> v_from THEN
        UPDATE booking.tenant_members m SET role = p_role WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id
        RETURNING * INTO v_member;
        PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.member_role', 'member', p_user_id::text,
            'member.role_changed', jsonb_build_object('user_id', p_user_id, 'from', v_from, 'to', p_role));
    END IF;
    RETURN to_jsonb(v_member) || jsonb_build_object('changed', p_role <> v_from);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.member_role', 'member', p_user_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Removes a member (owners: anyone; managers: receptionists and staff), or the caller leaves
-- (p_user_id their own). The last owner can do neither (PT409). Their staff rows stay, with the
-- appointments, but are no longer linked to them.
CREATE FUNCTION booking_internal.remove_member(p_tenant_id uuid, p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_self boolean;
    v_role text;
    v_owners integer;
    v_member booking.tenant_members;
BEGIN
    v_self := p_user_id IS NOT DISTINCT FROM booking.caller_user_id();
    v_role := booking_internal.require_role(p_tenant_id, 'booking.member_remove',
        CASE WHEN v_self THEN '{owner,manager,receptionist,staff}'::text[] ELSE '{owner,manager}' END);
    v_owners := booking_internal.lock_members(p_tenant_id);
    -- Again, under the lock: a concurrent change may have just changed the caller's own role.
    v_role := booking_internal.require_role(p_tenant_id, 'booking.member_remove',
        CASE WHEN v_self THEN '{owner,manager,receptionist,staff}'::text[] ELSE '{owner,manager}' END);
    SELECT * INTO v_member FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('member %s does not exist', p_user_id);
    END IF;
    IF NOT v_self AND NOT booking_internal.may_assign(v_role, v_member.role) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('the caller''s role (%s) may remove only members of roles below it, not %s', v_role, v_member.role);
    END IF;
    IF v_member.role = 'owner' AND v_owners = 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'the last owner cannot leave: make another member owner first';
    END IF;
    DELETE FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id;
    UPDATE booking.staff f SET user_id = NULL WHERE f.tenant_id = p_tenant_id AND f.user_id = p_user_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.member_remove', 'member', p_user_id::text,
        'member.removed', jsonb_build_object('user_id', p_user_id, 'role', v_member.role, 'left', v_self));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.member_remove', 'member', p_user_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Resources, "any staff" and caps (docs/resources.md) ------------------------------------------

-- The tenant's resources (one, or all with p_resource_id NULL) with their groups and their
-- closures from yesterday on.
CREATE FUNCTION booking_internal.resource_json(p_tenant_id uuid, p_resource_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_agg(to_jsonb(r) - 'tenant_id' || jsonb_build_object(
                'group_ids', coalesce((SELECT jsonb_agg(m.group_id ORDER BY m.group_id) FROM booking.resource_group_members m
                                       WHERE m.tenant_id = p_tenant_id AND m.resource_id = r.id), '[]'),
                'closures', coalesce((SELECT jsonb_agg(jsonb_build_object('id', c.id, 'starts_at', lower(c.period),
                                                                          'ends_at', upper(c.period), 'reason', c.reason)
                                                       ORDER BY lower(c.period))
                                      FROM booking.resource_closures c
                                      WHERE c.tenant_id = p_tenant_id AND c.resource_id = r.id
                                        AND upper(c.period) >= booking.clock_now() - interval '1 day'), '[]'))
                             ORDER BY r.position, r.name, r.id)
            FROM booking.resources r WHERE r.tenant_id = p_tenant_id AND (p_resource_id IS NULL OR r.id = p_resource_id));
END $$;

-- p_resource: name (required to create), kind ('room', 'chair', 'equipment', 'other'),
-- description, opening_hours (the tenant's document shape; null: whenever the tenant is open),
-- position (the order resources are assigned in), is_active.
CREATE FUNCTION booking_internal.create_resource(p_tenant_id uuid, p_resource jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_id uuid;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_create', '{owner,manager}');
    c := booking_internal.check_fields(p_resource, 'p_resource',
        ARRAY['name', 'kind', 'description', 'opening_hours', 'position', 'is_active'], ARRAY['name']);
    PERFORM booking_internal.check_profile(c ->> 'name', NULL, nullif(c -> 'opening_hours', 'null'), true);
    INSERT INTO booking.resources (tenant_id, name, kind, description, opening_hours, position, is_active)
    VALUES (p_tenant_id, btrim(c ->> 'name'), coalesce(c ->> 'kind', 'other'), c ->> 'description',
            nullif(c -> 'opening_hours', 'null'), coalesce((c ->> 'position')::int, 0), coalesce((c ->> 'is_active')::boolean, true))
    RETURNING id INTO v_id;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_create', 'resource', v_id::text,
        'resource.created', jsonb_build_object('resource_id', v_id, 'name', btrim(c ->> 'name')));
    RETURN booking_internal.resource_json(p_tenant_id, v_id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_create', 'resource', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The same fields, each optional.
CREATE FUNCTION booking_internal.update_resource(p_tenant_id uuid, p_resource_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes',
        ARRAY['name', 'kind', 'description', 'opening_hours', 'position', 'is_active']);
    PERFORM booking_internal.check_profile(c ->> 'name', NULL, nullif(c -> 'opening_hours', 'null'), c ? 'name');
    UPDATE booking.resources r SET
        name = CASE WHEN c ? 'name' THEN btrim(c ->> 'name') ELSE r.name END,
        kind = CASE WHEN c ? 'kind' THEN c ->> 'kind' ELSE r.kind END,
        description = CASE WHEN c ? 'description' THEN c ->> 'description' ELSE r.description END,
        opening_hours = CASE WHEN c ? 'opening_hours' THEN nullif(c -> 'opening_hours', 'null') ELSE r.opening_hours END,
        position = CASE WHEN c ? 'position' THEN (c ->> 'position')::int ELSE r.position END,
        is_active = CASE WHEN c ? 'is_active' THEN (c ->> 'is_active')::boolean ELSE r.is_active END
    WHERE r.tenant_id = p_tenant_id AND r.id = p_resource_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource %s does not exist', p_resource_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_update', 'resource', p_resource_id::text,
        'resource.updated', jsonb_build_object('resource_id', p_resource_id, 'change', 'profile',
                                               'changes', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(c) k)));
    RETURN booking_internal.resource_json(p_tenant_id, p_resource_id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_update', 'resource', p_resource_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A closure (maintenance, a repair) from p_starts_at to p_ends_at: no booking may use the
-- resource then. Bookings it already has keep it (the tenant's people move them).
CREATE FUNCTION booking_internal.add_resource_closure(p_tenant_id uuid, p_resource_id uuid, p_starts_at timestamptz,
                                                      p_ends_at timestamptz, p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_row booking.resource_closures;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_closure_add', '{owner,manager}');
    IF p_starts_at IS NULL OR p_ends_at IS NULL OR NOT isfinite(p_starts_at) OR NOT isfinite(p_ends_at) OR p_ends_at <= p_starts_at THEN
        RAISE EXCEPTION 'a closure needs a finite start before its end' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.resources r WHERE r.tenant_id = p_tenant_id AND r.id = p_resource_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource %s does not exist', p_resource_id);
    END IF;
    INSERT INTO booking.resource_closures (tenant_id, resource_id, period, reason)
    VALUES (p_tenant_id, p_resource_id, tstzrange(p_starts_at, p_ends_at, '[)'), p_reason)
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_closure_add', 'resource', p_resource_id::text,
        'resource.updated', jsonb_build_object('resource_id', p_resource_id, 'change', 'closure_added', 'closure_id', v_row.id,
                                               'starts_at', p_starts_at, 'ends_at', p_ends_at));
    RETURN jsonb_build_object('id', v_row.id, 'resource_id', p_resource_id, 'starts_at', lower(v_row.period),
                              'ends_at', upper(v_row.period), 'reason', v_row.reason);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_closure_add', 'resource', p_resource_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.remove_resource_closure(p_tenant_id uuid, p_closure_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_row booking.resource_closures;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_closure_remove', '{owner,manager}');
    DELETE FROM booking.resource_closures c WHERE c.tenant_id = p_tenant_id AND c.id = p_closure_id RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('closure %s does not exist', p_closure_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_closure_remove', 'resource', v_row.resource_id::text,
        'resource.updated', jsonb_build_object('resource_id', v_row.resource_id, 'change', 'closure_removed', 'closure_id', p_closure_id));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_closure_remove', 'resource', p_closure_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A group's members become exactly p_resource_ids (a JSON array of the tenant's resources;
-- PT404 for another's).
CREATE FUNCTION booking_internal.set_group_members(p_tenant_id uuid, p_group_id uuid, p_resource_ids jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_ids uuid[] := booking_internal.tenant_ids(p_tenant_id, p_resource_ids, 'resource');
BEGIN
    DELETE FROM booking.resource_group_members m
    WHERE m.tenant_id = p_tenant_id AND m.group_id = p_group_id AND NOT m.resource_id = ANY (v_ids);
    INSERT INTO booking.resource_group_members (tenant_id, group_id, resource_id)
    SELECT p_tenant_id, p_group_id, i FROM unnest(v_ids) i
    ON CONFLICT DO NOTHING;
END $$;

CREATE FUNCTION booking_internal.resource_group_json(p_tenant_id uuid, p_group_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_agg(to_jsonb(g) - 'tenant_id' || jsonb_build_object('resource_ids', coalesce((
                SELECT jsonb_agg(m.resource_id ORDER BY m.resource_id) FROM booking.resource_group_members m
                WHERE m.tenant_id = p_tenant_id AND m.group_id = g.id), '[]')) ORDER BY g.name, g.id)
            FROM booking.resource_groups g WHERE g.tenant_id = p_tenant_id AND (p_group_id IS NULL OR g.id = p_group_id));
END $$;

-- p_group: name (required to create), description, resource_ids (exactly the members).
CREATE FUNCTION booking_internal.create_resource_group(p_tenant_id uuid, p_group jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_id uuid;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_group_create', '{owner,manager}');
    c := booking_internal.check_fields(p_group, 'p_group', ARRAY['name', 'description', 'resource_ids'], ARRAY['name']);
    PERFORM booking_internal.check_profile(c ->> 'name', NULL, NULL, true);
    INSERT INTO booking.resource_groups (tenant_id, name, description) VALUES (p_tenant_id, btrim(c ->> 'name'), c ->> 'description')
    RETURNING id INTO v_id;
    IF c ? 'resource_ids' THEN
        PERFORM booking_internal.set_group_members(p_tenant_id, v_id, c -> 'resource_ids');
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_group_create', 'resource_group', v_id::text,
        'resource_group.updated', jsonb_build_object('group_id', v_id, 'change', 'created', 'name', btrim(c ->> 'name')));
    RETURN booking_internal.resource_group_json(p_tenant_id, v_id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_group_create', 'resource_group', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.update_resource_group(p_tenant_id uuid, p_group_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_group_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes', ARRAY['name', 'description', 'resource_ids']);
    PERFORM booking_internal.check_profile(c ->> 'name', NULL, NULL, c ? 'name');
    UPDATE booking.resource_groups g SET
        name = CASE WHEN c ? 'name' THEN btrim(c ->> 'name') ELSE g.name END,
        description = CASE WHEN c ? 'description' THEN c ->> 'description' ELSE g.description END
    WHERE g.tenant_id = p_tenant_id AND g.id = p_group_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource group %s does not exist', p_group_id);
    END IF;
    IF c ? 'resource_ids' THEN
        PERFORM booking_internal.set_group_members(p_tenant_id, p_group_id, c -> 'resource_ids');
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_group_update', 'resource_group', p_group_id::text,
        'resource_group.updated', jsonb_build_object('group_id', p_group_id, 'change', 'updated',
                                                     'changes', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(c) k)));
    RETURN booking_internal.resource_group_json(p_tenant_id, p_group_id) -> 0;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_group_update', 'resource_group', p_group_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A group a service still requires is not deleted (PT409): the service would silently stop
-- needing it.
CREATE FUNCTION booking_internal.delete_resource_group(p_tenant_id uuid, p_group_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resource_group_delete', '{owner,manager}');
    IF EXISTS (SELECT 1 FROM booking.service_requirements r WHERE r.tenant_id = p_tenant_id AND r.group_id = p_group_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = 'a service requires this group: change its requirements first';
    END IF;
    DELETE FROM booking.resource_groups g WHERE g.tenant_id = p_tenant_id AND g.id = p_group_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource group %s does not exist', p_group_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resource_group_delete', 'resource_group', p_group_id::text,
        'resource_group.updated', jsonb_build_object('group_id', p_group_id, 'change', 'deleted'));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resource_group_delete', 'resource_group', p_group_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A service's requirements, as set_service_requirements takes and returns them.
CREATE FUNCTION booking_internal.requirements_json(p_tenant_id uuid, p_service_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                         'id', r.id, 'service_id', r.service_id, 'group_id', r.group_id, 'resource_id', r.resource_id,
                         'quantity', r.quantity)) ORDER BY r.service_id, r.created_at, r.id)
                     FROM booking.service_requirements r
                     WHERE r.tenant_id = p_tenant_id AND (p_service_id IS NULL OR r.service_id = p_service_id)), '[]');
END $$;

-- Replaces what a service needs: p_requirements, a JSON array of {"group_id", "quantity"
-- (default 1)} or {"resource_id"}; [] removes them all. PT404 a service, group or resource of
-- another tenant. The service's bookings made before keep what they have.
CREATE FUNCTION booking_internal.set_service_requirements(p_tenant_id uuid, p_service_id uuid, p_requirements jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    e jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.requirements_set', '{owner,manager}');
    IF NOT EXISTS (SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('service %s does not exist', p_service_id);
    END IF;
    IF jsonb_typeof(p_requirements) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'p_requirements must be a JSON array of {group_id, quantity} or {resource_id}' USING ERRCODE = '22023';
    END IF;
    DELETE FROM booking.service_requirements r WHERE r.tenant_id = p_tenant_id AND r.service_id = p_service_id;
    FOR e IN SELECT x FROM jsonb_array_elements(p_requirements) x LOOP
        PERFORM booking_internal.check_fields(e, 'p_requirements[]', ARRAY['group_id', 'resource_id', 'quantity']);
        IF (e ->> 'group_id' IS NULL) = (e ->> 'resource_id' IS NULL) THEN
            RAISE EXCEPTION 'each requirement names a group_id or a resource_id' USING ERRCODE = '22023';
        END IF;
        IF e ->> 'group_id' IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM booking.resource_groups g WHERE g.tenant_id = p_tenant_id AND g.id = (e ->> 'group_id')::uuid) THEN
            RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource group %s does not exist', e ->> 'group_id');
        END IF;
        IF e ->> 'resource_id' IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM booking.resources x WHERE x.tenant_id = p_tenant_id AND x.id = (e ->> 'resource_id')::uuid) THEN
            RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('resource %s does not exist', e ->> 'resource_id');
        END IF;
        INSERT INTO booking.service_requirements (tenant_id, service_id, group_id, resource_id, quantity)
        VALUES (p_tenant_id, p_service_id, (e ->> 'group_id')::uuid, (e ->> 'resource_id')::uuid, coalesce((e ->> 'quantity')::int, 1));
    END LOOP;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.requirements_set', 'service', p_service_id::text,
        'service.updated', jsonb_build_object('service_id', p_service_id, 'changes', jsonb_build_array('requirements'),
                                              'requirements', jsonb_array_length(p_requirements)));
    RETURN booking_internal.requirements_json(p_tenant_id, p_service_id);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.requirements_set', 'service', p_service_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A staff member's own terms for a service they perform (it is added to their services when it
-- was not): p_terms {duration_minutes, price (null: the service's), weight (0..100: weighted
-- round robin; 0: never chosen for "any staff"), priority (the priority strategy's order and
-- every strategy's tie-break, lowest first)}; a field left out keeps its value.
CREATE FUNCTION booking_internal.set_staff_service(p_tenant_id uuid, p_staff_id uuid, p_service_id uuid, p_terms jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_row booking.staff_services;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.staff_service_set', '{owner,manager}');
    c := booking_internal.check_fields(p_terms, 'p_terms', ARRAY['duration_minutes', 'price', 'weight', 'priority']);
    IF NOT EXISTS (SELECT 1 FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = p_staff_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', p_staff_id);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('service %s does not exist', p_service_id);
    END IF;
    INSERT INTO booking.staff_services AS ss (tenant_id, staff_id, service_id, duration_minutes, price, weight, priority)
    VALUES (p_tenant_id, p_staff_id, p_service_id, (c ->> 'duration_minutes')::int, (c ->> 'price')::numeric,
            coalesce((c ->> 'weight')::int, 1), coalesce((c ->> 'priority')::int, 0))
    ON CONFLICT (tenant_id, staff_id, service_id) DO UPDATE SET
        duration_minutes = CASE WHEN c ? 'duration_minutes' THEN excluded.duration_minutes ELSE ss.duration_minutes END,
        price = CASE WHEN c ? 'price' THEN excluded.price ELSE ss.price END,
        weight = CASE WHEN c ? 'weight' THEN excluded.weight ELSE ss.weight END,
        priority = CASE WHEN c ? 'priority' THEN excluded.priority ELSE ss.priority END
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.staff_service_set', 'staff', p_staff_id::text,
        'staff.updated', jsonb_build_object('staff_id', p_staff_id, 'service_id', p_service_id,
                                            'changes', jsonb_build_array('service_terms'),
                                            'duration_minutes', v_row.duration_minutes, 'price', v_row.price));
    RETURN to_jsonb(v_row) - 'tenant_id';
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.staff_service_set', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- A cap: p_cap {scope ('staff', 'service', 'customer'), period ('day', 'week'), max_bookings
-- (required), staff_id (scope staff: that staff member only), service_id (required for scope
-- service; otherwise only that service's bookings count)}. Returns the cap. PT404 a staff
-- member or service of another tenant. Bookings made before stay.
CREATE FUNCTION booking_internal.add_booking_cap(p_tenant_id uuid, p_cap jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_row booking.booking_caps;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.cap_add', '{owner,manager}');
    c := booking_internal.check_fields(p_cap, 'p_cap', ARRAY['scope', 'period', 'max_bookings', 'staff_id', 'service_id'],
                                       ARRAY['scope', 'period', 'max_bookings']);
    IF c ->> 'staff_id' IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = (c ->> 'staff_id')::uuid) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('staff member %s does not exist', c ->> 'staff_id');
    END IF;
    IF c ->> 'service_id' IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = (c ->> 'service_id')::uuid) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('service %s does not exist', c ->> 'service_id');
    END IF;
    INSERT INTO booking.booking_caps (tenant_id, scope, staff_id, service_id, period, max_bookings)
    VALUES (p_tenant_id, c ->> 'scope', (c ->> 'staff_id')::uuid, (c ->> 'service_id')::uuid, c ->> 'period',
            (c ->> 'max_bookings')::int)
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.cap_add', 'booking_cap', v_row.id::text,
        'booking_cap.updated', to_jsonb(v_row) - 'tenant_id' - 'created_at' || jsonb_build_object('change', 'added'));
    RETURN to_jsonb(v_row) - 'tenant_id';
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.cap_add', 'booking_cap', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.remove_booking_cap(p_tenant_id uuid, p_cap_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.cap_remove', '{owner,manager}');
    DELETE FROM booking.booking_caps c WHERE c.tenant_id = p_tenant_id AND c.id = p_cap_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('cap %s does not exist', p_cap_id);
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.cap_remove', 'booking_cap', p_cap_id::text,
        'booking_cap.updated', jsonb_build_object('id', p_cap_id, 'change', 'removed'));
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.cap_remove', 'booking_cap', p_cap_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Assigns an existing appointment's resources anew, as a booking would (an appointment written
-- directly, which claims its staff member only, or one whose service's requirements changed):
-- owners, managers and operators. Returns {"success", "appointment"} or, when its resources
-- cannot all be met at its time, {"success": false, "code", "error", "details"}.
CREATE FUNCTION booking_internal.assign_appointment_resources(p_tenant_id uuid, p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_appt booking.appointments;
    v_placed jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.resources_assign', '{owner,manager}');
    SELECT * INTO v_appt FROM booking.appointments a WHERE a.tenant_id = p_tenant_id AND a.id = p_appointment_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('appointment %s does not exist', p_appointment_id);
    END IF;
    IF v_appt.status NOT IN ('pending', 'confirmed', 'active') THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('a %s appointment holds no resources', v_appt.status);
    END IF;
    -- Only the resources are checked (p_kind 'assign'): the appointment stays where it is,
    -- whatever the other rules say of its time now.
    v_placed := booking.place('assign', p_tenant_id, v_appt.service_id, v_appt.staff_id, v_appt.starts_at, v_appt.ends_at,
                              NULL, v_appt.id, NULL, '{}');
    IF v_placed ->> 'outcome' <> 'placed' THEN
        RETURN booking.policy_failure('resource_unavailable', 'The appointment''s resources cannot all be assigned at its time',
                                      NULL, v_placed -> 'violations') - 'operation_id';
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.resources_assign', 'appointment', p_appointment_id::text,
        NULL, NULL);
    RETURN jsonb_build_object('success', true, 'appointment', booking.appointment_json(v_appt));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.resources_assign', 'appointment', p_appointment_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Customers and reading --------------------------------------------------------------------------

-- A customer record the tenant's people make (a phone booking): {name (required), email, phone,
-- timezone}. Owners, managers, receptionists.
CREATE FUNCTION booking_internal.create_customer(p_tenant_id uuid, p_customer jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
    v_customer booking.customers;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.customer_create', '{owner,manager,receptionist}');
    c := booking_internal.check_fields(p_customer, 'p_customer', ARRAY['name', 'email', 'phone', 'timezone'], ARRAY['name']);
    IF length(trim(c ->> 'name')) = 0 OR length(c ->> 'name') > 200 THEN
        RAISE EXCEPTION 'p_customer.name must have 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    PERFORM booking_internal.check_profile(NULL, c ->> 'timezone', NULL, false);
    INSERT INTO booking.customers (tenant_id, name, email, phone, timezone)
    VALUES (p_tenant_id, trim(c ->> 'name'), nullif(trim(c ->> 'email'), ''), nullif(trim(c ->> 'phone'), ''), c ->> 'timezone')
    RETURNING * INTO v_customer;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.customer_create', 'customer', v_customer.id::text, NULL, NULL);
    RETURN to_jsonb(v_customer);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.customer_create', 'customer', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The tenant's customers whose name, e-mail or phone contains p_search (all without), by name,
-- at most p_limit (1..500). Every role of the tenant (they book for them).
CREATE FUNCTION booking_internal.list_customers(p_tenant_id uuid, p_search text DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    PERFORM booking_internal.require_role(p_tenant_id, 'booking.customer_list', '{owner,manager,receptionist,staff}');
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 500' USING ERRCODE = '22023';
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(to_jsonb(c) - 'tenant_id' ORDER BY c.name, c.id)
        FROM (SELECT * FROM booking.customers c
              WHERE c.tenant_id = p_tenant_id
                AND (p_search IS NULL OR strpos(lower(concat_ws(' ', c.name, c.email, c.phone)), lower(p_search)) > 0)
              ORDER BY c.name, c.id LIMIT p_limit) c), '[]');
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.customer_list', 'customer', NULL, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The appointments of local dates p_from..p_to (the tenant's zone; at most 62 days): of every
-- staff member, or of p_staff_id, for owners, managers and receptionists; a staff member sees
-- their own only. Each with its customer, its resources and how its staff member was chosen.
CREATE FUNCTION booking_internal.get_agenda(p_tenant_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_staff uuid[];
    v_zone text;
    v_user uuid;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.agenda', '{owner,manager,receptionist,staff}');
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to OR p_to - p_from > 61 OR NOT isfinite(p_from) OR NOT isfinite(p_to) THEN
        RAISE EXCEPTION 'an agenda covers 1 to 62 days: p_from <= p_to' USING ERRCODE = '22023';
    END IF;
    IF v_role = 'staff' THEN
        v_user := booking.caller_user_id();
        v_staff := ARRAY(SELECT f.id FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.user_id = v_user);
        IF p_staff_id IS NOT NULL AND NOT p_staff_id = ANY (v_staff) THEN
            RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'a staff member reads their own agenda only';
        END IF;
    END IF;
    SELECT t.timezone INTO v_zone FROM booking.tenants t WHERE t.id = p_tenant_id;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', a.id, 'status', a.status, 'starts_at', a.starts_at, 'ends_at', a.ends_at,
                   'staff_id', a.staff_id, 'staff_name', f.name, 'service_id', a.service_id, 'service_name', s.name,
                   'price', a.price, 'notes', a.notes, 'checked_in_at', a.checked_in_at, 'staff_choice', a.staff_choice,
                   'customer', jsonb_build_object('id', c.id, 'name', c.name, 'email', c.email, 'phone', c.phone),
                   'resources', coalesce((SELECT jsonb_agg(jsonb_build_object('resource_id', x.resource_id, 'name', r.name)
                                                           ORDER BY r.position, r.id)
                                          FROM booking.assignments x
                                          JOIN booking.resources r ON r.tenant_id = p_tenant_id AND r.id = x.resource_id
                                          WHERE x.tenant_id = p_tenant_id AND x.appointment_id = a.id), '[]'))
                 ORDER BY a.starts_at, f.name, a.id)
        FROM booking.appointments a
        JOIN booking.staff f ON f.tenant_id = a.tenant_id AND f.id = a.staff_id
        JOIN booking.services s ON s.tenant_id = a.tenant_id AND s.id = a.service_id
        JOIN booking.customers c ON c.tenant_id = a.tenant_id AND c.id = a.customer_id
        WHERE a.tenant_id = p_tenant_id
          AND a.starts_at >= p_from::timestamp AT TIME ZONE v_zone AND a.starts_at < (p_to + 1)::timestamp AT TIME ZONE v_zone
          AND (p_staff_id IS NULL OR a.staff_id = p_staff_id)
          AND (v_role <> 'staff' OR a.staff_id = ANY (v_staff))), '[]');
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.agenda', 'staff', p_staff_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- Everything the tenant's owners and managers edit, in one read: the tenant and its settings,
-- services, staff with their services and links, weekly hours, overrides and time off from
-- yesterday on, holidays, its own policies and the effective customer-facing ones, message
-- templates, delivery endpoints (without secrets), members and open invitations, resources
-- (with their groups and closures), resource groups, services' requirements and caps.
CREATE FUNCTION booking_internal.get_tenant_admin(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_since timestamptz;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.tenant_read', '{owner,manager}');
    v_since := booking.clock_now() - interval '1 day';
    RETURN jsonb_build_object(
        'role', v_role,
        'tenant', booking_internal.tenant_json(p_tenant_id),
        'services', coalesce((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.name, s.id) FROM booking.services s
                              WHERE s.tenant_id = p_tenant_id), '[]'),
        'staff', coalesce(booking_internal.staff_json(p_tenant_id, NULL), '[]'),
        'schedules', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'tenant_id' ORDER BY x.staff_id, x.day_of_week, x.start_time)
                               FROM booking.staff_schedules x WHERE x.tenant_id = p_tenant_id), '[]'),
        'overrides', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'tenant_id' ORDER BY x.date, x.staff_id)
                               FROM booking.schedule_overrides x
                               WHERE x.tenant_id = p_tenant_id AND x.date >= (v_since AT TIME ZONE 'UTC')::date - 1), '[]'),
        'time_off', coalesce((SELECT jsonb_agg(jsonb_build_object('id', x.id, 'staff_id', x.staff_id, 'starts_at', lower(x.period),
                                                                  'ends_at', upper(x.period), 'reason', x.reason)
                                               ORDER BY lower(x.period), x.staff_id)
                              FROM booking.staff_time_off x WHERE x.tenant_id = p_tenant_id AND upper(x.period) >= v_since), '[]'),
        'holidays', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'tenant_id' ORDER BY x.is_recurring, x.date, x.recurring_month, x.recurring_day)
                              FROM booking.holidays x WHERE x.tenant_id = p_tenant_id), '[]'),
        'policies', coalesce((SELECT jsonb_agg(jsonb_build_object('key', p.policy_key, 'value', p.policy_value,
                                                                  'service_id', p.service_id, 'staff_id', p.staff_id)
                                               ORDER BY p.policy_key, p.service_id NULLS FIRST, p.staff_id NULLS FIRST)
                              FROM booking.booking_policies p WHERE p.tenant_id = p_tenant_id), '[]'),
        'effective_policies', booking_internal.customer_policies(p_tenant_id),
        'message_templates', coalesce((SELECT jsonb_agg(to_jsonb(m) ORDER BY m.event_type) FROM booking_admin.message_templates m
                                       WHERE m.tenant_id = p_tenant_id), '[]'),
        'endpoints', coalesce((SELECT jsonb_agg(booking_internal.endpoint_json(e) ORDER BY e.created_at)
                               FROM booking_admin.delivery_endpoints e WHERE e.tenant_id = p_tenant_id), '[]'),
        'members', coalesce((SELECT jsonb_agg(to_jsonb(m) - 'tenant_id' ORDER BY booking_internal.role_rank(m.role) DESC, m.created_at)
                             FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id), '[]'),
        'invitations', coalesce((SELECT jsonb_agg(to_jsonb(i) - 'token_hash' ORDER BY i.created_at)
                                 FROM booking.tenant_invitations i
                                 WHERE i.tenant_id = p_tenant_id AND i.accepted_at IS NULL AND i.revoked_at IS NULL
                                   AND i.expires_at > v_since + interval '1 day'), '[]'),
        'resources', coalesce(booking_internal.resource_json(p_tenant_id, NULL), '[]'),
        'resource_groups', coalesce(booking_internal.resource_group_json(p_tenant_id, NULL), '[]'),
        'requirements', booking_internal.requirements_json(p_tenant_id, NULL),
        'caps', coalesce((SELECT jsonb_agg(to_jsonb(c) - 'tenant_id' ORDER BY c.created_at, c.id)
                          FROM booking.booking_caps c WHERE c.tenant_id = p_tenant_id), '[]'));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.tenant_read', 'tenant', p_tenant_id::text, false, SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The signed-in caller's tenants: [{tenant_id, name, role, staff_ids}], by name (42501 without
-- a signed-in user).
CREATE FUNCTION booking_internal.my_tenants() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid;
    v_members jsonb;
    v_staff jsonb;
    v_ids uuid[];
BEGIN
    v_user := booking.caller_user_id();
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'listing one''s tenants needs a signed-in user (a JWT with a uuid sub)' USING ERRCODE = '42501';
    END IF;
    -- Two reads by user (on Citus each a query on every shard), combined as values.
    v_members := (SELECT jsonb_object_agg(m.tenant_id, m.role) FROM booking.tenant_members m WHERE m.user_id = v_user);
    v_staff := (SELECT jsonb_object_agg(x.tenant_id, x.ids)
                FROM (SELECT f.tenant_id, jsonb_agg(f.id ORDER BY f.id) AS ids FROM booking.staff f
                      WHERE f.user_id = v_user AND f.is_active GROUP BY f.tenant_id) x);
    v_ids := ARRAY(SELECT k::uuid FROM jsonb_object_keys(coalesce(v_members, '{}') || coalesce(v_staff, '{}')) k);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('tenant_id', t.id, 'name', t.name,
                                            'role', coalesce(v_members ->> t.id::text, 'staff'),
                                            'staff_ids', coalesce(v_staff -> t.id::text, '[]')) ORDER BY t.name, t.id)
        FROM booking.tenants t WHERE t.id = ANY (v_ids)), '[]');
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.my_tenants', 'tenant', NULL, false, SQLSTATE || ': ' || SQLERRM, false, NULL);
    RAISE;
END $$;
