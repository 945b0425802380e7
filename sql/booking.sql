-- The booking lifecycle: idempotent create, reschedule and cancel under the tenant's policies.
--
-- Idempotency works as payment APIs do: the first call with a key runs and its result is
-- stored; a later call with the same key and the same request gets that result back with
-- "replayed": true; the same key with another request fails with SQLSTATE PT422 (PostgREST
-- answers HTTP 422). Two concurrent calls with one key meet on the unique index: the second
-- waits for the first to commit and then replays its result. Input that fails validation
-- raises an error, which rolls the operation row back, so the key can be used again.

CREATE TABLE booking.booking_operations (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    operation_type  text NOT NULL CHECK (operation_type IN ('create', 'reschedule', 'cancel')),
    request_hash    text NOT NULL,
    request         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    result          jsonb,
    error_message   text,
    appointment_id  uuid,
    customer_id     uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, idempotency_key)
) WITH (fillfactor = 90);
-- Only the retention clean-up searches by expiry. Nothing else is indexed, so that recording an
-- operation's outcome is a HOT update (fillfactor leaves the room for it).
CREATE INDEX booking_operations_expires_idx ON booking.booking_operations (expires_at);
CREATE TRIGGER booking_operations_touch BEFORE UPDATE ON booking.booking_operations
    FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('booking.booking_operations', '');

CREATE POLICY booking_operations_read ON booking.booking_operations FOR SELECT
    USING ((SELECT booking.caller_is_operator())
           OR customer_id = ANY ((SELECT booking_internal.caller_customer_ids())::uuid[])
           OR tenant_id = ANY ((SELECT booking_internal.caller_staff_tenant_ids())::uuid[]));
GRANT SELECT ON booking.booking_operations TO PUBLIC;

-- The only status changes an appointment may make; everything else is refused (SQLSTATE 55000).
CREATE FUNCTION booking.status_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (p_from, p_to) IN (
        ('pending', 'confirmed'), ('pending', 'cancelled'), ('pending', 'expired'),
        ('confirmed', 'active'), ('confirmed', 'cancelled'), ('confirmed', 'no_show'),
        -- Appointments become active when their start passes; one nobody checked in to is a no-show.
        ('active', 'completed'), ('active', 'no_show'))
$$;

CREATE FUNCTION booking.check_status_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT booking.status_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'appointment % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER appointments_status_transition BEFORE UPDATE OF status ON booking.appointments
    FOR EACH ROW EXECUTE FUNCTION booking.check_status_transition();

-- Starts an idempotent operation. Returns the new operation's id, or NULL and the stored
-- result (marked replayed) when the key was already used for the same request.
CREATE FUNCTION booking.begin_operation(
    p_tenant_id uuid, p_key text, p_type text, p_request jsonb, p_customer_id uuid,
    OUT operation_id uuid, OUT replayed_result jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_hash text := encode(sha256(convert_to(p_request::text, 'UTF8')), 'hex');
    v_op booking.booking_operations;
    v_now timestamptz := now();
    v_expires timestamptz := v_now + interval '24 hours';
    v_new_id uuid;
BEGIN
    IF p_key IS NULL OR length(p_key) = 0 OR length(p_key) > 255 THEN
        RAISE EXCEPTION 'the idempotency key must be 1 to 255 characters' USING ERRCODE = '22023';
    END IF;
    -- A new key, or an expired one starting over, gets a fresh pending operation; a live key
    -- returns nothing here and is looked at below.
    -- The new id and the times are computed here, not in DO UPDATE: Citus ships the statement
    -- to the tenant's shard and refuses non-immutable functions in that clause.
    v_new_id := gen_random_uuid();
    INSERT INTO booking.booking_operations AS o (tenant_id, idempotency_key, operation_type, request_hash, request, customer_id)
    VALUES (p_tenant_id, p_key, p_type, v_hash, p_request, p_customer_id)
    ON CONFLICT (tenant_id, idempotency_key) DO UPDATE
        SET id = v_new_id, operation_type = excluded.operation_type, request_hash = excluded.request_hash,
            request = excluded.request, customer_id = excluded.customer_id, status = 'pending', result = NULL,
            error_message = NULL, appointment_id = NULL, created_at = v_now, expires_at = v_expires
        WHERE o.expires_at < v_now
    RETURNING o.id INTO operation_id;
    IF operation_id IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_op FROM booking.booking_operations o WHERE o.tenant_id = p_tenant_id AND o.idempotency_key = p_key;
    IF NOT FOUND THEN
        -- Deleted by the retention clean-up between our insert attempt and this read.
        RAISE EXCEPTION 'idempotency key "%" was released while in use; retry', p_key USING ERRCODE = '40001';
    END IF;
    IF v_op.request_hash <> v_hash OR v_op.operation_type <> p_type THEN
        RAISE EXCEPTION 'idempotency key "%" was already used with a different request', p_key
            USING ERRCODE = 'PT422',
                  DETAIL = format('The key belongs to a %s operation created at %s.', v_op.operation_type, v_op.created_at),
                  HINT = 'Use a new idempotency key for a new request.';
    END IF;
    IF v_op.status = 'pending' THEN
        RAISE EXCEPTION 'idempotency key "%" is in use by an operation of this same transaction', p_key
            USING ERRCODE = '55006';
    END IF;
    replayed_result := v_op.result || '{"replayed": true}';
END $$;
REVOKE ALL ON FUNCTION booking.begin_operation(uuid, text, text, jsonb, uuid) FROM PUBLIC;

-- Every outcome of a create, reschedule or cancel passes here: it is recorded in the operation
-- (when there is one) and in the security audit log (a refusal there survives a rollback), and
-- returned to the caller.
CREATE FUNCTION booking.finish_operation(
    p_action text, p_tenant_id uuid, p_operation_id uuid, p_result jsonb, p_appointment_id uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_success boolean := (p_result ->> 'success')::boolean;
BEGIN
    IF p_operation_id IS NOT NULL THEN
        UPDATE booking.booking_operations SET
            status = CASE WHEN v_success THEN 'completed' ELSE 'failed' END,
            result = p_result,
            error_message = p_result ->> 'error',
            appointment_id = coalesce(p_appointment_id, appointment_id)
        WHERE tenant_id = p_tenant_id AND id = p_operation_id;
    END IF;
    PERFORM booking.audit_event(p_action, 'appointment', p_appointment_id::text, v_success,
                                p_result ->> 'error', false, p_tenant_id);
    -- The operation's span (opened by its function) ends here with its outcome; a business
    -- refusal is an outcome, not an error.
    IF booking_internal.tracing() THEN
        PERFORM booking_internal.trace_end(p_action, jsonb_build_object(
            'booking.tenant_id', p_tenant_id, 'booking.operation_id', p_operation_id,
            'booking.appointment_id', p_appointment_id,
            'booking.outcome', CASE WHEN v_success THEN 'succeeded'
                                    ELSE coalesce(p_result ->> 'code', p_result -> 'details' -> 0 ->> 'code', 'refused') END));
    END IF;
    RETURN p_result || '{"replayed": false}';
END $$;
REVOKE ALL ON FUNCTION booking.finish_operation(text, uuid, uuid, jsonb, uuid) FROM PUBLIC;

-- An appointment as its booking functions return it: every column but the blocked range, and
-- the resources it holds ([{resource_id, name, requirement_id}]).
CREATE FUNCTION booking.appointment_json(a booking.appointments) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN to_jsonb(a) - 'blocked' || jsonb_build_object('resources', booking.claimed_resources(a.tenant_id, a.id, NULL));
END $$;

CREATE FUNCTION booking.policy_failure(p_code text, p_error text, p_operation_id uuid, p_details jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('success', false, 'code', p_code, 'error', p_error,
                              'details', p_details, 'operation_id', p_operation_id)
$$;

-- The status a new booking starts with: what the tenant's people ask for (default confirmed);
-- for a customer (p_role NULL) the tenant's customer_booking_status, and a customer asking for
-- 'confirmed' where the tenant confirms bookings itself is refused (22023, audited).
CREATE FUNCTION booking.new_booking_status(p_tenant_id uuid, p_role text, p_status text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_status IS NOT NULL AND p_status NOT IN ('pending', 'confirmed') THEN
        RAISE EXCEPTION 'p_booking.status must be pending or confirmed' USING ERRCODE = '22023';
    END IF;
    IF p_role IS NULL AND coalesce(p_status, 'confirmed') = 'confirmed'
       AND (SELECT t.customer_booking_status FROM booking.tenants t WHERE t.id = p_tenant_id) = 'pending' THEN
        IF p_status = 'confirmed' THEN
            PERFORM booking.refuse('booking.create', 'appointment', NULL, p_tenant_id, '22023',
                                   'this tenant confirms bookings itself: a customer''s booking starts as pending');
        END IF;
        RETURN 'pending';
    END IF;
    RETURN coalesce(p_status, 'confirmed');
END $$;
REVOKE ALL ON FUNCTION booking.new_booking_status(uuid, text, text) FROM PUBLIC;

-- What a new booking's placement (booking.place) ends in: the appointment, its event and the
-- operation's result; or a broken rule; or a race lost, with a conflict.detected event.
-- p_request: the canonical request (its staff, service, customer and times name the conflict).
CREATE FUNCTION booking.booking_outcome(p_tenant_id uuid, p_operation_id uuid, p_placed jsonb, p_request jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments;
BEGIN
    IF p_placed ->> 'outcome' = 'refused' THEN
        RETURN booking.finish_operation('booking.create', p_tenant_id, p_operation_id, jsonb_build_object(
            'success', false, 'error', 'Appointment violates booking rules',
            'details', p_placed -> 'violations', 'operation_id', p_operation_id), NULL);
    ELSIF p_placed ->> 'outcome' = 'conflict' THEN
        PERFORM booking.emit_event(p_tenant_id, 'conflict.detected', jsonb_build_object(
            'staff_id', p_request -> 'staff_id', 'service_id', p_request -> 'service_id', 'customer_id', p_request -> 'customer_id',
            'starts_at', p_request -> 'starts_at', 'ends_at', p_request -> 'ends_at', 'hold_id', p_request -> 'hold_id',
            'operation_id', p_operation_id));
        RETURN booking.finish_operation('booking.create', p_tenant_id, p_operation_id, jsonb_build_object(
            'success', false, 'error', 'Time slot conflicts with another appointment',
            'details', jsonb_build_array(jsonb_build_object('code', 'conflict',
                'message', 'Time slot conflicts with another appointment')),
            'operation_id', p_operation_id), NULL);
    END IF;
    v_appt := jsonb_populate_record(NULL::booking.appointments, p_placed -> 'row');
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.created', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'service_id', v_appt.service_id, 'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at));
    -- A slot the waitlist offered this customer, booked: the entry converted
    -- (booking_admin.waitlist_conversion counts them).
    UPDATE booking.waitlist w SET status = 'booked'
    WHERE w.tenant_id = v_appt.tenant_id AND w.customer_id = v_appt.customer_id AND w.service_id = v_appt.service_id
      AND w.status = 'notified'
      AND EXISTS (SELECT 1 FROM booking.waitlist_notifications n
                  WHERE n.tenant_id = w.tenant_id AND n.waitlist_id = w.id AND n.staff_id = v_appt.staff_id
                    AND n.starts_at = v_appt.starts_at);
    RETURN booking.finish_operation('booking.create', p_tenant_id, p_operation_id, jsonb_build_object(
        'success', true, 'operation_id', p_operation_id, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
REVOKE ALL ON FUNCTION booking.booking_outcome(uuid, uuid, jsonb, jsonb) FROM PUBLIC;

-- Books an appointment within one tenant (the implementation of booking.create_tenant_booking
-- and, with p_tenant_id NULL, of booking.create_booking_idempotent; sql/api.sql). p_booking:
-- {customer_id, service_id, starts_at, staff_id?, ends_at?, price?, notes?, status? ('pending' |
-- 'confirmed')}, or {hold_token, customer_id, notes?, status?} to book a hold
-- (booking.book_hold). Without staff_id, any staff member: the engine chooses by the tenant's
-- strategy among those free and records how (appointments.staff_choice). ends_at and price
-- default to the staff member's own for the service, else the service's; only the tenant's
-- people other than receptionists may set others (and, with any staff member, may set them at
-- all). status defaults to 'confirmed' when the tenant's people book, and to the tenant's
-- customer_booking_status (confirmed unless the tenant wants to confirm bookings itself) when a
-- customer books; a customer asking for 'confirmed' where the tenant confirms itself is
-- refused. The resources the service needs are assigned in the same transaction
-- (booking.place). Every row it reads or writes is the tenant's, looked up by the tenant too, so
-- that on Citus the call runs entirely on the worker holding the tenant. A service, staff
-- member or customer of another tenant does not exist here (PT404). p_tenant_id NULL: the
-- service's tenant.
CREATE FUNCTION booking_internal.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_staff booking.staff;
    v_service booking.services;
    v_customer booking.customers;
    v_starts timestamptz;
    v_ends timestamptz;
    v_price numeric;
    -- The staff member's length and price of the service (theirs, else the service's).
    v_minutes integer;
    v_list_price numeric;
    v_status text;
    -- The caller's role in the service's tenant (NULL: a customer or an anonymous caller).
    v_role text;
    v_request jsonb;
    v_op uuid;
    v_replay jsonb;
    v_missing text;
    -- Tracing: the operation is a span (ended in finish_operation, or by the rollback of an
    -- error), the write a child span.
    v_traced boolean := booking_internal.tracing();
    v_placed jsonb;
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.create', jsonb_build_object('booking.tenant_id', p_tenant_id));
    END IF;
    IF p_booking IS NULL OR jsonb_typeof(p_booking) <> 'object' THEN
        RAISE EXCEPTION 'p_booking must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF p_booking ? 'hold_token' THEN
        RETURN booking.book_hold(p_tenant_id, p_idempotency_key, p_booking);
    END IF;
    SELECT f INTO v_missing FROM unnest(ARRAY['customer_id', 'service_id', 'starts_at']) f
    WHERE p_booking ->> f IS NULL LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_booking.% is required', v_missing USING ERRCODE = '22023';
    END IF;
    IF p_booking ->> 'status' IS NOT NULL AND p_booking ->> 'status' NOT IN ('pending', 'confirmed') THEN
        RAISE EXCEPTION 'p_booking.status must be pending or confirmed' USING ERRCODE = '22023';
    END IF;
    -- What the caller may not see is PT404 whether it exists or not (refusals are audited).
    -- (OR and AND stop at the first operand that decides them: the caller checks below run only
    -- when their answer matters.)
    -- Each lookup is by the tenant when there is one (a router query on Citus), else by id.
    IF p_tenant_id IS NULL THEN
        SELECT * INTO v_service FROM booking.services WHERE id = (p_booking ->> 'service_id')::uuid;
    ELSE
        SELECT * INTO v_service FROM booking.services WHERE tenant_id = p_tenant_id AND id = (p_booking ->> 'service_id')::uuid;
    END IF;
    IF FOUND THEN
        v_role := booking_internal.caller_tenant_role(v_service.tenant_id);
    END IF;
    IF NOT FOUND OR NOT (v_service.is_active OR v_role IS NOT NULL) THEN
        PERFORM booking.refuse('booking.create', 'service', p_booking ->> 'service_id', v_service.tenant_id, 'PT404',
                               format('service %s does not exist', p_booking ->> 'service_id'));
    END IF;
    -- Without a staff member: any staff member, whom the engine chooses below.
    IF p_booking ->> 'staff_id' IS NOT NULL THEN
        IF p_tenant_id IS NULL THEN
            SELECT * INTO v_staff FROM booking.staff WHERE id = (p_booking ->> 'staff_id')::uuid;
        ELSE
            SELECT * INTO v_staff FROM booking.staff WHERE tenant_id = p_tenant_id AND id = (p_booking ->> 'staff_id')::uuid;
        END IF;
        IF NOT FOUND OR NOT ((v_staff.tenant_id = v_service.tenant_id AND (v_staff.is_active OR v_role IS NOT NULL))
                             OR v_role = 'operator') THEN
            PERFORM booking.refuse('booking.create', 'staff', p_booking ->> 'staff_id', v_service.tenant_id, 'PT404',
                                   format('staff member %s does not exist', p_booking ->> 'staff_id'));
        END IF;
    END IF;
    IF p_tenant_id IS NULL THEN
        SELECT * INTO v_customer FROM booking.customers WHERE id = (p_booking ->> 'customer_id')::uuid;
    ELSE
        SELECT * INTO v_customer FROM booking.customers WHERE tenant_id = p_tenant_id AND id = (p_booking ->> 'customer_id')::uuid;
    END IF;
    IF NOT FOUND OR NOT booking.caller_may_act_for(v_customer.tenant_id, v_customer.id) THEN
        PERFORM booking.refuse('booking.create', 'customer', p_booking ->> 'customer_id', v_service.tenant_id, 'PT404',
                               format('customer %s does not exist', p_booking ->> 'customer_id'));
    END IF;
    IF v_staff.tenant_id <> v_service.tenant_id OR v_customer.tenant_id <> v_service.tenant_id THEN
        RAISE EXCEPTION 'customer, staff member and service belong to different tenants' USING ERRCODE = '22023';
    END IF;
    v_starts := (p_booking ->> 'starts_at')::timestamptz;
    v_ends := (p_booking ->> 'ends_at')::timestamptz;
    v_price := (p_booking ->> 'price')::numeric;
    IF NOT isfinite(v_starts) OR NOT isfinite(v_ends) THEN
        RAISE EXCEPTION 'starts_at and ends_at must be finite' USING ERRCODE = '22008';
    END IF;
    IF v_ends <= v_starts THEN
        RAISE EXCEPTION 'ends_at must be after starts_at' USING ERRCODE = '22023';
    END IF;
    IF v_price < 0 THEN
        RAISE EXCEPTION 'price must not be negative' USING ERRCODE = '22023';
    END IF;
    -- Length and price are the staff member's for customers, anonymous callers and
    -- receptionists: only the tenant's other people may book a different end or price. A
    -- mismatch is refused, never ignored, so a client learns its request was not what it will
    -- get. With any staff member they follow whoever is chosen, so such callers send neither.
    IF v_staff.id IS NOT NULL THEN
        SELECT coalesce(ss.duration_minutes, v_service.duration_minutes), coalesce(ss.price, v_service.price)
        INTO v_minutes, v_list_price
        FROM booking.staff_services ss
        WHERE ss.tenant_id = v_service.tenant_id AND ss.staff_id = v_staff.id AND ss.service_id = v_service.id;
        v_minutes := coalesce(v_minutes, v_service.duration_minutes);
        v_list_price := coalesce(v_list_price, v_service.price);
        v_ends := coalesce(v_ends, v_starts + make_interval(mins => v_minutes));
        v_price := coalesce(v_price, v_list_price);
        IF v_ends <> v_starts + make_interval(mins => v_minutes) AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
            PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                                   format('ends_at must be starts_at + the staff member''s %s minutes for the service; only the tenant''s staff may set another end',
                                          v_minutes));
        END IF;
        IF v_price <> v_list_price AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
            PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                                   format('price must be the staff member''s price %s for the service; only the tenant''s staff may set another price',
                                          v_list_price));
        END IF;
    ELSIF (v_ends IS NOT NULL OR v_price IS NOT NULL) AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               'with any staff member the length and price are the chosen staff member''s: leave ends_at and price out');
    END IF;
    v_status := booking.new_booking_status(v_service.tenant_id, v_role, p_booking ->> 'status');

    -- The canonical request: the same booking however its JSON was spelled (any staff member:
    -- staff_id null, and the end and price those of whoever is chosen unless given).
    v_request := jsonb_build_object(
        'customer_id', v_customer.id, 'staff_id', v_staff.id, 'service_id', v_service.id,
        'starts_at', to_char(v_starts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'ends_at', to_char(v_ends AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'price', trim_scale(v_price), 'notes', p_booking ->> 'notes', 'status', v_status);
    SELECT b.operation_id, b.replayed_result INTO v_op, v_replay
    FROM booking.begin_operation(v_service.tenant_id, p_idempotency_key, 'create', v_request, v_customer.id) b;
    IF v_replay IS NOT NULL THEN
        IF v_traced THEN
            PERFORM booking_internal.trace_end('booking.create', '{"booking.outcome": "replayed"}');
        END IF;
        RETURN v_replay;
    END IF;

    -- The engine and the write: what the caller may see was checked above. Validation cannot
    -- see a booking another transaction is making right now; the exclusion constraints can, and
    -- decide who wins (booking.place).
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.write', jsonb_build_object('booking.staff_id', v_staff.id,
                                          'booking.service_id', v_service.id));
    END IF;
    v_placed := booking.place('appointment', v_service.tenant_id, v_service.id, v_staff.id, v_starts, v_ends, v_customer.id, NULL, NULL,
                              jsonb_build_object('status', v_status, 'price', v_price, 'notes', p_booking ->> 'notes'));
    IF v_traced THEN
        PERFORM booking_internal.trace_end('booking.write', jsonb_build_object('booking.appointment_id', v_placed -> 'row' ->> 'id',
                                        'booking.conflict', v_placed ->> 'outcome' = 'conflict'));
    END IF;
    RETURN booking.booking_outcome(v_service.tenant_id, v_op, v_placed, v_request);
END $$;

-- Books a hold (create_tenant_booking with p_booking.hold_token): {hold_token, customer_id,
-- notes?, status?}. The hold names the service, staff member, times, resources and price; the
-- customer must be one the caller may act for (and the hold's, when it was made for one:
-- 22023 otherwise). Idempotent like any booking (the request is the hold's id, customer, notes
-- and status, so a replay answers after the hold is gone). PT404 (audited) for a token that
-- names no hold of this tenant, PT410 for an expired one. The hold's claims become the
-- appointment's in one transaction: nobody can take the slot between the two.
CREATE FUNCTION booking.book_hold(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    c jsonb;
    v_parsed record;
    v_tenant uuid;
    v_customer booking.customers;
    v_role text;
    v_status text;
    v_request jsonb;
    v_op uuid;
    v_replay jsonb;
    v_hold booking.holds;
BEGIN
    c := booking_internal.check_fields(p_booking, 'p_booking', ARRAY['hold_token', 'customer_id', 'notes', 'status'],
                                       ARRAY['hold_token', 'customer_id']);
    SELECT * INTO v_parsed FROM booking_internal.parse_hold_token(c ->> 'hold_token') t;
    v_tenant := coalesce(p_tenant_id, v_parsed.tenant_id);
    IF NOT FOUND OR v_parsed.tenant_id <> v_tenant THEN
        PERFORM booking.refuse('booking.create', 'hold', NULL, p_tenant_id, 'PT404', 'the hold does not exist');
    END IF;
    SELECT * INTO v_customer FROM booking.customers k WHERE k.tenant_id = v_tenant AND k.id = (c ->> 'customer_id')::uuid;
    IF NOT FOUND OR NOT booking.caller_may_act_for(v_tenant, v_customer.id) THEN
        PERFORM booking.refuse('booking.create', 'customer', c ->> 'customer_id', v_tenant, 'PT404',
                               format('customer %s does not exist', c ->> 'customer_id'));
    END IF;
    v_role := booking_internal.caller_tenant_role(v_tenant);
    v_status := booking.new_booking_status(v_tenant, v_role, c ->> 'status');
    v_request := jsonb_build_object('hold_id', v_parsed.hold_id, 'customer_id', v_customer.id, 'notes', c ->> 'notes',
                                    'status', v_status);
    SELECT b.operation_id, b.replayed_result INTO v_op, v_replay
    FROM booking.begin_operation(v_tenant, p_idempotency_key, 'create', v_request, v_customer.id) b;
    IF v_replay IS NOT NULL THEN
        RETURN v_replay;
    END IF;
    v_hold := booking.hold_for_token(c ->> 'hold_token', v_tenant, 'booking.create');
    IF v_hold.expires_at <= booking.clock_now() THEN
        PERFORM booking.refuse('booking.create', 'hold', v_hold.id::text, v_tenant, 'PT410',
                               format('the hold expired at %s', v_hold.expires_at));
    END IF;
    IF v_hold.customer_id IS DISTINCT FROM v_customer.id AND v_hold.customer_id IS NOT NULL THEN
        PERFORM booking.refuse('booking.create', 'hold', v_hold.id::text, v_tenant, '22023',
                               'the hold was made for another customer');
    END IF;
    v_request := v_request || jsonb_build_object('staff_id', v_hold.staff_id, 'service_id', v_hold.service_id,
                                                 'starts_at', v_hold.starts_at, 'ends_at', v_hold.ends_at);
    RETURN booking.booking_outcome(v_tenant, v_op,
        booking.place('appointment', v_tenant, v_hold.service_id, v_hold.staff_id, v_hold.starts_at, v_hold.ends_at,
                      v_customer.id, NULL, v_hold.id,
                      jsonb_build_object('status', v_status, 'price', v_hold.price, 'notes', c ->> 'notes',
                                         'staff_choice', v_hold.staff_choice)),
        v_request);
END $$;
REVOKE ALL ON FUNCTION booking.book_hold(uuid, text, jsonb) FROM PUBLIC;

-- Loads an appointment for a change by the caller, locked, or raises.
-- An appointment the caller may not see is PT404, as one that does not exist; with
-- p_staff_only, one the caller sees (their own) but may not change this way is 42501. Both
-- refusals are audited under p_action.
CREATE FUNCTION booking.appointment_for_change(p_appointment_id uuid, p_action text, p_staff_only boolean DEFAULT false,
                                               p_tenant_id uuid DEFAULT NULL)
RETURNS booking.appointments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments;
    v_tenant uuid;
BEGIN
    IF p_appointment_id IS NULL THEN
        RAISE EXCEPTION 'p_appointment_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    -- Locked by its full key: Citus locks rows only in a statement routed to one tenant, so
    -- without the tenant it is looked up first (on a cluster, on every shard).
    v_tenant := coalesce(p_tenant_id, (SELECT a.tenant_id FROM booking.appointments a WHERE a.id = p_appointment_id));
    SELECT * INTO v_appt FROM booking.appointments WHERE tenant_id = v_tenant AND id = p_appointment_id FOR UPDATE;
    IF NOT FOUND OR NOT booking.caller_may_act_for(v_appt.tenant_id, v_appt.customer_id) THEN
        PERFORM booking.refuse(p_action, 'appointment', p_appointment_id::text, v_appt.tenant_id, 'PT404',
                               format('appointment %s does not exist', p_appointment_id));
    END IF;
    IF p_staff_only AND NOT booking.caller_is_insider(v_appt.tenant_id) THEN
        PERFORM booking.refuse(p_action, 'appointment', p_appointment_id::text, v_appt.tenant_id, '42501',
                               format('only the tenant''s staff may %s an appointment', split_part(p_action, '.', 2)));
    END IF;
    RETURN v_appt;
END $$;
REVOKE ALL ON FUNCTION booking.appointment_for_change(uuid, text, boolean, uuid) FROM PUBLIC;

-- The common start of a change to an existing appointment: claim the idempotency key (if any),
-- then refuse a status that cannot change or a policy deadline that has passed. Returns the
-- operation (NULL without a key) and, when the change must not go ahead, the result to return.
CREATE FUNCTION booking.start_change(
    p_appt booking.appointments, p_key text, p_type text, p_request jsonb,
    p_action text, p_past_tense text, p_deadline_policy text,
    OUT operation_id uuid, OUT early_result jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_hours numeric := (booking.policy_value(p_appt.tenant_id, p_deadline_policy, p_appt.service_id, p_appt.staff_id))::numeric;
    v_deadline timestamptz := p_appt.starts_at - make_interval(secs => v_hours * 3600);
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT b.operation_id, b.replayed_result INTO operation_id, early_result
        FROM booking.begin_operation(p_appt.tenant_id, p_key, p_type, p_request, p_appt.customer_id) b;
        IF early_result IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    IF p_appt.status NOT IN ('pending', 'confirmed') THEN
        early_result := booking.finish_operation('booking.' || p_type, p_appt.tenant_id, operation_id, booking.policy_failure('invalid_status',
            format('A %s appointment cannot be %s', p_appt.status, p_past_tense), operation_id,
            jsonb_build_object('status', p_appt.status)), p_appt.id);
    ELSIF booking.clock_now() > v_deadline THEN
        early_result := booking.finish_operation('booking.' || p_type, p_appt.tenant_id, operation_id, booking.policy_failure(p_deadline_policy || '_passed',
            format('%s is possible until %s hours before the appointment (%s policy): the deadline was %s',
                   p_action, trim_scale(v_hours), p_deadline_policy, v_deadline),
            operation_id, jsonb_build_object('policy', p_deadline_policy, 'hours', v_hours, 'deadline', v_deadline)), p_appt.id);
    END IF;
END $$;
REVOKE ALL ON FUNCTION booking.start_change(booking.appointments, text, text, jsonb, text, text, text) FROM PUBLIC;

-- Moves an appointment within one tenant (behind booking.reschedule_tenant_appointment and,
-- with p_tenant_id NULL, booking.reschedule_appointment): an appointment of another tenant does
-- not exist here (PT404). p_tenant_id NULL: the appointment's own tenant.
CREATE FUNCTION booking_internal.reschedule_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_new_starts_at timestamptz,
                                                      p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_old booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.reschedule', false, p_tenant_id);
    v_new booking.appointments;
    v_new_ends timestamptz;
    v_max numeric := (booking.policy_value(v_old.tenant_id, 'max_reschedules', v_old.service_id, v_old.staff_id))::numeric;
    v_op uuid;
    v_early jsonb;
    v_traced boolean := booking_internal.tracing();
    v_placed jsonb;
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.reschedule', jsonb_build_object('booking.tenant_id', v_old.tenant_id,
                                          'booking.appointment_id', v_old.id));
    END IF;
    IF p_new_starts_at IS NULL OR NOT isfinite(p_new_starts_at) THEN
        RAISE EXCEPTION 'p_new_starts_at must be a finite timestamp' USING ERRCODE = '22023';
    END IF;
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_old, p_idempotency_key, 'reschedule',
        jsonb_build_object('appointment_id', v_old.id,
                           'new_starts_at', to_char(p_new_starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
        'Rescheduling', 'rescheduled', 'reschedule_deadline_hours') c;
    IF v_early IS NOT NULL THEN
        -- A replay (finish_operation ended the span of any other early result).
        IF v_traced THEN
            PERFORM booking_internal.trace_end('booking.reschedule', '{"booking.outcome": "replayed"}');
        END IF;
        RETURN v_early;
    END IF;
    IF v_old.reschedule_count >= v_max THEN
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('max_reschedules_reached',
            format('The appointment was already rescheduled %s times, the most the max_reschedules policy allows (%s)',
                   v_old.reschedule_count, trim_scale(v_max)),
            v_op, jsonb_build_object('policy', 'max_reschedules', 'limit', v_max)), v_old.id);
    END IF;
    v_new_ends := p_new_starts_at + (v_old.ends_at - v_old.starts_at);
    -- The engine with the appointment's own old slot and resources left out; the move keeps its
    -- staff member, and its resources where they are free.
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.write');
    END IF;
    v_placed := booking.place('move', v_old.tenant_id, v_old.service_id, v_old.staff_id, p_new_starts_at, v_new_ends,
                              v_old.customer_id, v_old.id, NULL, '{}');
    IF v_traced THEN
        PERFORM booking_internal.trace_end('booking.write', jsonb_build_object('booking.conflict', v_placed ->> 'outcome' = 'conflict'));
    END IF;
    IF v_placed ->> 'outcome' = 'refused' THEN
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('slot_unavailable',
            'The new time violates booking rules', v_op, v_placed -> 'violations'), v_old.id);
    ELSIF v_placed ->> 'outcome' = 'conflict' THEN
        PERFORM booking.emit_event(v_old.tenant_id, 'conflict.detected', jsonb_build_object(
            'appointment_id', v_old.id, 'staff_id', v_old.staff_id, 'starts_at', p_new_starts_at, 'ends_at', v_new_ends));
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('conflict',
            'Time slot conflicts with another appointment', v_op), v_old.id);
    END IF;
    v_new := jsonb_populate_record(NULL::booking.appointments, v_placed -> 'row');
    PERFORM booking.emit_event(v_new.tenant_id, 'booking.rescheduled', jsonb_build_object(
        'appointment_id', v_new.id, 'customer_id', v_new.customer_id, 'staff_id', v_new.staff_id,
        'old_starts_at', v_old.starts_at, 'old_ends_at', v_old.ends_at,
        'starts_at', v_new.starts_at, 'ends_at', v_new.ends_at, 'reschedule_count', v_new.reschedule_count));
    PERFORM booking.offer_freed_slot(v_old);
    RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_new)), v_new.id);
END $$;

-- Cancels an appointment within one tenant (behind booking.cancel_tenant_appointment and, with
-- p_tenant_id NULL, booking.cancel_appointment); PT404 for another tenant's appointment.
CREATE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking.cancel_locked_appointment(
        booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id), p_reason, p_idempotency_key);
END $$;

-- The cancellation of an appointment the caller may cancel, already locked: the policy checks,
-- the change, its event and the waitlist offer. Behind cancel_tenant_appointment and a signed
-- cancel link (sql/reminders.sql).
CREATE FUNCTION booking.cancel_locked_appointment(p_appt booking.appointments, p_reason text, p_idempotency_key text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := p_appt;
    v_op uuid;
    v_early jsonb;
    v_traced boolean := booking_internal.tracing();
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.cancel', jsonb_build_object('booking.tenant_id', v_appt.tenant_id,
                                          'booking.appointment_id', v_appt.id));
    END IF;
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_appt, p_idempotency_key, 'cancel',
        jsonb_build_object('appointment_id', v_appt.id, 'reason', p_reason),
        'Cancelling', 'cancelled', 'cancellation_deadline_hours') c;
    IF v_early IS NOT NULL THEN
        IF v_traced THEN
            PERFORM booking_internal.trace_end('booking.cancel', '{"booking.outcome": "replayed"}');
        END IF;
        RETURN v_early;
    END IF;
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.write');
    END IF;
    UPDATE booking.appointments
    SET status = 'cancelled', cancelled_at = now(), cancellation_reason = p_reason
    WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id
    RETURNING * INTO v_appt;
    IF v_traced THEN
        PERFORM booking_internal.trace_end('booking.write');
    END IF;
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.cancelled', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at, 'reason', p_reason));
    PERFORM booking.offer_freed_slot(v_appt);
    RETURN booking.finish_operation('booking.cancel', v_appt.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
REVOKE ALL ON FUNCTION booking.cancel_locked_appointment(booking.appointments, text, text) FROM PUBLIC;

-- Running the day: the tenant's staff (and operators) confirm pending bookings, check customers
-- in, complete appointments and mark no-shows. Each is idempotent (doing it again answers
-- success with "changed": false), moves the status only as booking.status_transition_allowed
-- permits, writes an event like the maintenance transitions ({appointment_id, from, to,
-- starts_at, ends_at}) and is audited; a customer is refused with 42501 on their own
-- appointment, anyone else with PT404. A status that does not allow the step is a business
-- refusal: {"success": false, "code": ..., "error": ...}.
CREATE FUNCTION booking.staff_step_result(p_action text, p_appt booking.appointments, p_changed boolean,
                                          p_from text, p_event text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_changed THEN
        PERFORM booking.emit_event(p_appt.tenant_id, p_event, jsonb_build_object(
            'appointment_id', p_appt.id, 'from', p_from, 'to', p_appt.status,
            'starts_at', p_appt.starts_at, 'ends_at', p_appt.ends_at, 'checked_in_at', p_appt.checked_in_at));
    END IF;
    RETURN booking.finish_operation(p_action, p_appt.tenant_id, NULL, jsonb_build_object(
        'success', true, 'changed', p_changed, 'appointment', booking.appointment_json(p_appt)), p_appt.id);
END $$;
REVOKE ALL ON FUNCTION booking.staff_step_result(text, booking.appointments, boolean, text, text) FROM PUBLIC;

CREATE FUNCTION booking.staff_step_refused(p_action text, p_appt booking.appointments, p_code text, p_error text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking.finish_operation(p_action, p_appt.tenant_id, NULL,
        booking.policy_failure(p_code, p_error, NULL, jsonb_build_object('status', p_appt.status)), p_appt.id)
$$;
REVOKE ALL ON FUNCTION booking.staff_step_refused(text, booking.appointments, text, text) FROM PUBLIC;

-- pending -> confirmed. Already confirmed (or further on: active, completed): unchanged.
CREATE FUNCTION booking_internal.confirm_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking.confirm_locked_appointment(booking.appointment_for_change(p_appointment_id, 'booking.confirm', true),
                                              'booking.confirm');
END $$;

-- The confirmation of a locked appointment, audited as p_action: behind confirm_appointment and
-- a signed confirm link (sql/reminders.sql).
CREATE FUNCTION booking.confirm_locked_appointment(p_appt booking.appointments, p_action text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := p_appt;
BEGIN
    IF v_appt.status IN ('confirmed', 'active', 'completed') THEN
        RETURN booking.staff_step_result(p_action, v_appt, false, v_appt.status, NULL);
    ELSIF v_appt.status <> 'pending' THEN
        RETURN booking.staff_step_refused(p_action, v_appt, 'invalid_status',
                                          format('A %s appointment cannot be confirmed', v_appt.status));
    END IF;
    UPDATE booking.appointments SET status = 'confirmed' WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id RETURNING * INTO v_appt;
    RETURN booking.staff_step_result(p_action, v_appt, true, 'pending', 'booking.confirmed');
END $$;
REVOKE ALL ON FUNCTION booking.confirm_locked_appointment(booking.appointments, text) FROM PUBLIC;

-- Records the customer's arrival (checked_in_at), which keeps the no-show sweep away. For
-- confirmed and active appointments; the status itself moves on with the clock (activate-due).
CREATE FUNCTION booking_internal.check_in_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.check_in', true);
BEGIN
    IF v_appt.checked_in_at IS NOT NULL AND v_appt.status IN ('confirmed', 'active', 'completed') THEN
        RETURN booking.staff_step_result('booking.check_in', v_appt, false, v_appt.status, NULL);
    ELSIF v_appt.status NOT IN ('confirmed', 'active') THEN
        RETURN booking.staff_step_refused('booking.check_in', v_appt, 'invalid_status',
                                          format('A %s appointment cannot be checked in', v_appt.status));
    END IF;
    UPDATE booking.appointments SET checked_in_at = booking.clock_now() WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id RETURNING * INTO v_appt;
    RETURN booking.staff_step_result('booking.check_in', v_appt, true, v_appt.status, 'booking.checked_in');
END $$;

-- active -> completed, or early: a checked-in confirmed appointment goes confirmed -> active ->
-- completed (the two steps the transition rules allow).
CREATE FUNCTION booking_internal.complete_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.complete', true);
    v_from text := v_appt.status;
BEGIN
    IF v_appt.status = 'completed' THEN
        RETURN booking.staff_step_result('booking.complete', v_appt, false, v_from, NULL);
    ELSIF v_appt.status = 'confirmed' AND v_appt.checked_in_at IS NULL THEN
        RETURN booking.staff_step_refused('booking.complete', v_appt, 'not_checked_in',
                                          'A confirmed appointment can be completed once the customer is checked in');
    ELSIF v_appt.status NOT IN ('confirmed', 'active') THEN
        RETURN booking.staff_step_refused('booking.complete', v_appt, 'invalid_status',
                                          format('A %s appointment cannot be completed', v_appt.status));
    END IF;
    IF v_appt.status = 'confirmed' THEN
        UPDATE booking.appointments SET status = 'active' WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id;
    END IF;
    UPDATE booking.appointments SET status = 'completed' WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id RETURNING * INTO v_appt;
    RETURN booking.staff_step_result('booking.complete', v_appt, true, v_from, 'booking.completed');
END $$;

-- confirmed/active -> no_show, once the appointment has started and only without a check-in.
CREATE FUNCTION booking_internal.mark_no_show(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.no_show', true);
    v_from text := v_appt.status;
BEGIN
    IF v_appt.status = 'no_show' THEN
        RETURN booking.staff_step_result('booking.no_show', v_appt, false, v_from, NULL);
    ELSIF v_appt.status NOT IN ('confirmed', 'active') THEN
        RETURN booking.staff_step_refused('booking.no_show', v_appt, 'invalid_status',
                                          format('A %s appointment cannot be marked as a no-show', v_appt.status));
    ELSIF v_appt.checked_in_at IS NOT NULL THEN
        RETURN booking.staff_step_refused('booking.no_show', v_appt, 'checked_in',
                                          'The customer was checked in: not a no-show');
    ELSIF booking.clock_now() < v_appt.starts_at THEN
        RETURN booking.staff_step_refused('booking.no_show', v_appt, 'not_started',
                                          'An appointment that has not started is not a no-show yet');
    END IF;
    UPDATE booking.appointments SET status = 'no_show' WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id RETURNING * INTO v_appt;
    RETURN booking.staff_step_result('booking.no_show', v_appt, true, v_from, 'booking.no_show');
END $$;

-- Scheduled operations of the booking lifecycle ---------------------------------------------

-- One appointment status transition, with one event per changed row. Tenant by tenant: the
-- tenants with due rows are found first (without locks), then each tenant's rows are locked,
-- changed and announced by statements filtered by that tenant. On Citus (where this runs on the
-- coordinator's scheduler) each of those is routed to the one shard holding the tenant, which
-- is how Citus allows row locks and an insert per changed row.
CREATE FUNCTION booking_admin.transition_appointments(p_from text[], p_to text, p_due_before timestamptz,
                                                      p_by_end boolean, p_unchecked_only boolean, p_event text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    r record;
    n integer := 0;
BEGIN
    FOR v_tenant IN
        SELECT DISTINCT a.tenant_id FROM booking.appointments a
        WHERE a.status = ANY (p_from)
          AND CASE WHEN p_by_end THEN a.ends_at ELSE a.starts_at END <= p_due_before
          AND (NOT p_unchecked_only OR a.checked_in_at IS NULL)
    LOOP
        FOR r IN
            WITH due AS (
                SELECT a.id, a.status FROM booking.appointments a
                WHERE a.tenant_id = v_tenant
                  AND a.status = ANY (p_from)
                  AND CASE WHEN p_by_end THEN a.ends_at ELSE a.starts_at END <= p_due_before
                  AND (NOT p_unchecked_only OR a.checked_in_at IS NULL)
                FOR UPDATE
            )
            UPDATE booking.appointments a SET status = p_to FROM due WHERE a.tenant_id = v_tenant AND a.id = due.id
            RETURNING a.id, a.starts_at, a.ends_at, due.status AS old_status
        LOOP
            PERFORM booking.emit_event(v_tenant, p_event, jsonb_build_object(
                'appointment_id', r.id, 'from', r.old_status, 'to', p_to, 'starts_at', r.starts_at, 'ends_at', r.ends_at));
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION booking_admin.op_activate_due(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.transition_appointments('{confirmed}', 'active', booking.clock_now(), false, false, 'booking.activated')
$$;

CREATE FUNCTION booking_admin.op_update_completed(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.transition_appointments('{active}', 'completed', booking.clock_now(), true, false, 'booking.completed')
$$;

CREATE FUNCTION booking_admin.op_update_expired(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.transition_appointments('{pending}', 'expired', booking.clock_now(), false, false, 'booking.expired')
$$;

-- settings.grace_minutes (default 15): how long after the start an appointment without
-- check-in waits before it counts as a no-show. Active ones count too: activate-due turns every
-- started appointment active, checked in or not.
CREATE FUNCTION booking_admin.op_cancel_no_shows(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.transition_appointments('{confirmed,active}', 'no_show',
        booking.clock_now() - make_interval(mins => coalesce((p_settings->>'grace_minutes')::int, 15)),
        false, true, 'booking.no_show')
$$;

-- Idempotency records past their expiry can no longer be replayed: delete them.
CREATE FUNCTION booking_admin.op_expire_booking_operations(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM booking.booking_operations WHERE expires_at < booking.clock_now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('activate-due', 'Activate confirmed bookings whose start has passed', 'booking_admin.op_activate_due', '{}', 30000, 3, 30000),
    ('update-completed', 'Complete active bookings whose end has passed', 'booking_admin.op_update_completed', '{}', 30000, 3, 30000),
    ('update-expired', 'Update expired bookings', 'booking_admin.op_update_expired', '{}', 30000, 3, 30000),
    ('cancel-no-shows', 'Mark confirmed bookings without check-in as no-shows', 'booking_admin.op_cancel_no_shows', '{"grace_minutes": 15}', 60000, 3, 30000),
    ('expire-booking-operations', 'Delete idempotency records past their expiry', 'booking_admin.op_expire_booking_operations', '{}', 3600000, 3, 30000);
