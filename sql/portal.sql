-- What a booking page needs beyond slots and bookings: the tenant's public profile (services,
-- staff) and a way for a signed-in user to become the tenant's customer. Both are for anon and
-- authenticated callers behind PostgREST; they expose nothing private (no e-mail addresses, user
-- ids, time-off reasons or inactive rows).

-- The policies a booking page tells its customers.
CREATE FUNCTION booking_internal.customer_policy_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['cancellation_deadline_hours', 'reschedule_deadline_hours', 'max_reschedules',
                 'minimum_booking_notice_hours', 'advance_booking_limit_days']
$$;

-- Those policies as they apply to the whole tenant (its own, else global, else builtin).
-- PL/pgSQL, and never called inside a query on a tenant table: on Citus that query runs on a
-- shard, where this function's reads would be nested distributed queries.
CREATE FUNCTION booking_internal.customer_policies(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_object_agg(k, booking.policy_value(p_tenant_id, k))
            FROM unnest(booking_internal.customer_policy_keys()) k);
END $$;


-- {tenant: {id, name, timezone, opening_hours, slot_interval_minutes, customer_booking_status},
-- policies: {the customer-facing policies in effect for the tenant}, services: [{id, name,
-- description, duration_minutes, price, policies: {in effect for the service}}], staff: [{id,
-- name, service_ids, service_terms: [{service_id, duration_minutes, price}] (their own length and
-- price, else the service's), policies: {the staff member's own, which win over the service's}}]},
-- active services and staff only, ordered by name. PT404 for an unknown tenant. SECURITY
-- DEFINER: applications cannot read tenants and staff themselves.
CREATE FUNCTION booking_internal.get_booking_page(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant booking.tenants;
    v_keys text[] := booking_internal.customer_policy_keys();
    v_policies jsonb;
BEGIN
    SELECT * INTO v_tenant FROM booking.tenants WHERE id = p_tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % does not exist', p_tenant_id USING ERRCODE = 'PT404';
    END IF;
    v_policies := booking_internal.customer_policies(p_tenant_id);
    RETURN jsonb_build_object(
        'tenant', jsonb_build_object('id', v_tenant.id, 'name', v_tenant.name, 'timezone', v_tenant.timezone,
                                     'opening_hours', v_tenant.opening_hours,
                                     'slot_interval_minutes', v_tenant.slot_interval_minutes,
                                     'customer_booking_status', v_tenant.customer_booking_status),
        'policies', v_policies,
        -- A service's own rows over the tenant's; a staff member's own rows only (they win over
        -- the service's). Read by joining the policies, not through a function: on Citus this
        -- query runs on the tenant's shard.
        'services', coalesce((SELECT jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name, 'description', s.description,
                                                                  'duration_minutes', s.duration_minutes, 'price', s.price,
                                                                  'policies', v_policies || coalesce((
                                                                      SELECT jsonb_object_agg(p.policy_key, p.policy_value)
                                                                      FROM booking.booking_policies p
                                                                      WHERE p.tenant_id = p_tenant_id AND p.service_id = s.id
                                                                        AND p.policy_key = ANY (v_keys)), '{}'))
                                               ORDER BY s.name, s.id)
                              FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.is_active), '[]'),
        'staff', coalesce((SELECT jsonb_agg(jsonb_build_object('id', f.id, 'name', f.name, 'service_ids',
                                                               coalesce((SELECT jsonb_agg(ss.service_id ORDER BY ss.service_id)
                                                                         FROM booking.staff_services ss
                                                                         JOIN booking.services s ON s.tenant_id = p_tenant_id AND s.id = ss.service_id AND s.is_active
                                                                         WHERE ss.tenant_id = p_tenant_id AND ss.staff_id = f.id), '[]'),
                                                               -- Their length and price of each (theirs, else the service's).
                                                               'service_terms',
                                                               coalesce((SELECT jsonb_agg(jsonb_build_object(
                                                                                'service_id', ss.service_id,
                                                                                'duration_minutes', coalesce(ss.duration_minutes, s.duration_minutes),
                                                                                'price', coalesce(ss.price, s.price)) ORDER BY ss.service_id)
                                                                         FROM booking.staff_services ss
                                                                         JOIN booking.services s ON s.tenant_id = p_tenant_id AND s.id = ss.service_id AND s.is_active
                                                                         WHERE ss.tenant_id = p_tenant_id AND ss.staff_id = f.id), '[]'),
                                                               'policies', coalesce((SELECT jsonb_object_agg(p.policy_key, p.policy_value)
                                                                                     FROM booking.booking_policies p
                                                                                     WHERE p.tenant_id = p_tenant_id AND p.staff_id = f.id
                                                                                       AND p.policy_key = ANY (v_keys)), '{}'))
                                            ORDER BY f.name, f.id)
                           FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.is_active), '[]'));
END $$;

-- Makes the signed-in caller (JWT `sub`) a customer of a tenant, or returns the record they
-- already have there: {success, created, customer: {id, tenant_id, name, email, phone}}. Always
-- for the caller's own user id, never another's. 42501 without a signed-in user (PostgREST:
-- 401 for anon), PT404 for an unknown tenant, PT429 (HTTP 429) after 10 new records per user
-- and hour. Concurrent calls of one user for one tenant wait for each other (advisory lock), so
-- they create one record.
CREATE FUNCTION booking_internal.register_customer(p_tenant_id uuid, p_name text, p_email text DEFAULT NULL, p_phone text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_user uuid := booking.caller_user_id();
    v_customer booking.customers;
    v_created boolean := false;
BEGIN
    IF v_user IS NULL THEN
        PERFORM booking.refuse('booking.register_customer', 'customer', NULL, p_tenant_id, '42501',
                               'signing up as a customer needs a signed-in user (a JWT with a uuid sub)');
    END IF;
    IF p_tenant_id IS NULL OR NOT EXISTS (SELECT 1 FROM booking.tenants WHERE id = p_tenant_id) THEN
        PERFORM booking.refuse('booking.register_customer', 'tenant', p_tenant_id::text, NULL, 'PT404',
                               format('tenant %s does not exist', p_tenant_id));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('booking.register_customer:' || p_tenant_id || ':' || v_user, 0));
    SELECT * INTO v_customer FROM booking.customers WHERE tenant_id = p_tenant_id AND user_id = v_user
    ORDER BY created_at, id LIMIT 1;
    IF NOT FOUND THEN
        IF p_name IS NULL OR length(trim(p_name)) = 0 OR length(p_name) > 200 THEN
            RAISE EXCEPTION 'p_name must have 1 to 200 characters' USING ERRCODE = '22023';
        END IF;
        IF NOT booking.check_rate_limit(v_user::text, 'register_customer', 10, 3600) THEN
            PERFORM booking.refuse('booking.register_customer', 'customer', NULL, p_tenant_id, 'PT429',
                                   'too many sign-ups from this user; try again later');
        END IF;
        INSERT INTO booking.customers (tenant_id, user_id, name, email, phone)
        VALUES (p_tenant_id, v_user, trim(p_name), nullif(trim(p_email), ''), nullif(trim(p_phone), ''))
        RETURNING * INTO v_customer;
        v_created := true;
        PERFORM booking.audit_event('booking.register_customer', 'customer', v_customer.id::text, true, NULL, false, p_tenant_id);
    END IF;
    RETURN jsonb_build_object('success', true, 'created', v_created, 'customer', jsonb_build_object(
        'id', v_customer.id, 'tenant_id', v_customer.tenant_id, 'name', v_customer.name,
        'email', v_customer.email, 'phone', v_customer.phone));
END $$;
