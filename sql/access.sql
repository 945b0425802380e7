-- Who is calling. Behind PostgREST/Supabase the identity is the request's JWT claims
-- (`request.jwt.claims`: `sub` = the auth user, `role`); claims are trusted as PostgREST sets
-- them. A direct connection without claims is identified by its login role (session_user:
-- inside a SECURITY DEFINER function current_user is the owner, not the caller).
--
-- Operators see and change everything: a JWT with role 'service_role', or a login role that is
-- a superuser or a member of the role `booking_operator` (created by the extension when missing,
-- see operator.sql: GRANT booking_operator TO app_backend;).

-- PL/pgSQL rather than SQL: these run in every booking call, and PL/pgSQL keeps its plans for
-- the session while a SQL function with a SET clause is planned anew on each call.
CREATE FUNCTION booking.jwt_claims() RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN nullif(current_setting('request.jwt.claims', true), '')::jsonb;
END $$;

-- The auth user id (`sub`) when it is a uuid, else NULL.
CREATE FUNCTION booking.caller_user_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sub text := booking.jwt_claims() ->> 'sub';
BEGIN
    IF v_sub ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN v_sub::uuid;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION booking.caller_is_operator() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_claims jsonb := booking.jwt_claims();
BEGIN
    IF v_claims IS NOT NULL THEN
        RETURN coalesce(v_claims ->> 'role' = 'service_role', false);
    END IF;
    -- pg_has_role counts a superuser as a member of every role.
    RETURN coalesce(pg_has_role(session_user, to_regrole('booking_operator'), 'MEMBER'), false)
        OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user);
END $$;

-- A tenant's members: the signed-in users who run it, each with one role (see sql/tenants.sql
-- for how they join and what each role may do). owner > manager > receptionist > staff. A member
-- who works appointments is also a booking.staff row whose user_id is theirs: the staff row is
-- the calendar, the membership the rights.
CREATE TABLE booking.tenant_members (
    tenant_id  uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    role       text NOT NULL CHECK (role IN ('owner', 'manager', 'receptionist', 'staff')),
    -- The member who invited them (NULL: the tenant's creator, or an operator).
    invited_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
-- A user's tenants (booking.my_tenants, the caller helpers below).
CREATE INDEX tenant_members_user_idx ON booking.tenant_members (user_id);
CREATE TRIGGER tenant_members_touch BEFORE UPDATE ON booking.tenant_members
    FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('booking.tenant_members', '');

-- The customer records and the tenants (as staff or member) of the calling auth user. SECURITY
-- DEFINER: row-level security policies call them (through their entry points in booking), and
-- the caller cannot read these tables itself.
CREATE FUNCTION booking_internal.caller_customer_ids() RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN (SELECT coalesce(array_agg(c.id), '{}') FROM booking.customers c
            WHERE c.user_id = booking.caller_user_id());
END $$;

CREATE FUNCTION booking_internal.caller_staff_tenant_ids() RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid := booking.caller_user_id();
BEGIN
    RETURN (SELECT coalesce(array_agg(DISTINCT x.tenant_id), '{}')
            FROM (SELECT s.tenant_id FROM booking.staff s WHERE s.user_id = v_user AND s.is_active
                  UNION ALL
                  SELECT m.tenant_id FROM booking.tenant_members m WHERE m.user_id = v_user) x);
END $$;

-- Whether the signed-in caller is active staff of this tenant / is this customer of this
-- tenant. Each reads the one tenant's rows only (a router query on Citus, where the lists
-- above would read every shard).
CREATE FUNCTION booking_internal.caller_is_staff_of(p_tenant_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid := booking.caller_user_id();
BEGIN
    RETURN v_user IS NOT NULL AND EXISTS (
        SELECT 1 FROM booking.staff s WHERE s.tenant_id = p_tenant_id AND s.user_id = v_user AND s.is_active);
END $$;

CREATE FUNCTION booking_internal.caller_is_customer(p_tenant_id uuid, p_customer_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid := booking.caller_user_id();
BEGIN
    RETURN v_user IS NOT NULL AND EXISTS (
        SELECT 1 FROM booking.customers c WHERE c.tenant_id = p_tenant_id AND c.id = p_customer_id AND c.user_id = v_user);
END $$;

-- The caller's role in a tenant: 'operator', the member's role, 'staff' for an active staff row
-- linked to the caller without a membership (tenants managed by service_role), else NULL. One
-- tenant's rows only (a router query on Citus).
CREATE FUNCTION booking_internal.caller_tenant_role(p_tenant_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid;
BEGIN
    IF booking.caller_is_operator() THEN
        RETURN 'operator';
    END IF;
    v_user := booking.caller_user_id();
    IF v_user IS NULL OR p_tenant_id IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN coalesce(
        (SELECT m.role FROM booking.tenant_members m WHERE m.tenant_id = p_tenant_id AND m.user_id = v_user),
        (SELECT 'staff' FROM booking.staff s WHERE s.tenant_id = p_tenant_id AND s.user_id = v_user AND s.is_active LIMIT 1));
END $$;

-- Whether the caller may act on a row of this tenant and customer: operators always, the
-- tenant's people, and the customer themself.
CREATE FUNCTION booking.caller_may_act_for(p_tenant_id uuid, p_customer_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN booking.caller_is_insider(p_tenant_id)
        OR booking_internal.caller_is_customer(p_tenant_id, p_customer_id);
END $$;

-- The tenant's own people: operators, its members and its active staff. They see private details
-- (time-off reasons), book for any of its customers, set waitlist priorities, and run the day
-- (confirm, check in, complete); all but receptionists also set a booking's price and length.
CREATE FUNCTION booking.caller_is_insider(p_tenant_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN booking_internal.caller_tenant_role(p_tenant_id) IS NOT NULL;
END $$;

-- Refuses a call on behalf of the caller: the refusal goes into the security audit log (as a
-- failure, through the durable queue, so it survives the rollback the error causes, with the
-- caller's identity and request id), then the error is raised. Application-facing functions use
-- PT404 (PostgREST: HTTP 404) both for what does not exist and for what the caller may not see,
-- so that the answer does not tell which; 42501 only when the caller sees the object but may not
-- do this to it.
CREATE FUNCTION booking.refuse(p_action text, p_resource_type text, p_resource_id text, p_tenant_id uuid,
                               p_sqlstate text, p_message text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    PERFORM booking.audit_event(p_action, p_resource_type, p_resource_id, false,
                                p_sqlstate || ': ' || p_message, false, p_tenant_id);
    RAISE EXCEPTION USING MESSAGE = p_message, ERRCODE = p_sqlstate;
END $$;

-- A booking page may read the tenant's services, and customers their own data; writes go
-- through the functions, which check the caller.
CREATE POLICY services_public_read ON booking.services FOR SELECT USING (is_active);
GRANT SELECT ON booking.services TO PUBLIC;

CREATE POLICY customers_read ON booking.customers FOR SELECT
    USING ((SELECT booking.caller_is_operator())
           OR id = ANY ((SELECT booking_internal.caller_customer_ids())::uuid[])
           OR tenant_id = ANY ((SELECT booking_internal.caller_staff_tenant_ids())::uuid[]));
GRANT SELECT ON booking.customers TO PUBLIC;

CREATE POLICY appointments_read ON booking.appointments FOR SELECT
    USING ((SELECT booking.caller_is_operator())
           OR customer_id = ANY ((SELECT booking_internal.caller_customer_ids())::uuid[])
           OR tenant_id = ANY ((SELECT booking_internal.caller_staff_tenant_ids())::uuid[]));
GRANT SELECT ON booking.appointments TO PUBLIC;
