-- Customers waiting for a slot; a freed slot is offered to the best matching entry.

CREATE TABLE booking.waitlist (
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    customer_id          uuid NOT NULL,
    service_id           uuid NOT NULL,
    staff_id             uuid,
    preferred_start_date date,
    preferred_end_date   date,
    preferred_times      time[] NOT NULL DEFAULT '{}',
    preferred_days       integer[] NOT NULL DEFAULT '{}' CHECK (preferred_days <@ '{0,1,2,3,4,5,6}'),
    priority             integer NOT NULL DEFAULT 0,
    status               text NOT NULL DEFAULT 'waiting'
                         CHECK (status IN ('waiting', 'notified', 'booked', 'expired', 'cancelled')),
    notes                text,
    notified_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (preferred_end_date IS NULL OR preferred_start_date IS NULL OR preferred_start_date <= preferred_end_date),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES booking.customers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX waitlist_match_idx ON booking.waitlist (service_id, priority DESC, created_at) WHERE status = 'waiting';
CREATE INDEX waitlist_id_idx ON booking.waitlist (id);
CREATE INDEX waitlist_customer_idx ON booking.waitlist (customer_id);
-- The foreign keys' side (waitlist_match_idx covers waiting entries only).
CREATE INDEX waitlist_service_idx ON booking.waitlist (service_id);
CREATE INDEX waitlist_staff_idx ON booking.waitlist (staff_id);
COMMENT ON TABLE booking.waitlist IS
    'preferred_days as extract(dow) (0 = Sunday); preferred_times are local start times, matched within 30 minutes; higher priority first, then oldest.';
CREATE TRIGGER waitlist_touch BEFORE UPDATE ON booking.waitlist FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('booking.waitlist', '');

-- One row per (entry, freed slot) offered, so no entry is told twice about the same slot.
CREATE TABLE booking.waitlist_notifications (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    waitlist_id uuid NOT NULL,
    staff_id    uuid NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    event_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, waitlist_id) REFERENCES booking.waitlist (tenant_id, id) ON DELETE CASCADE,
    UNIQUE (tenant_id, waitlist_id, staff_id, starts_at)
);
SELECT pg_catalog.pg_extension_config_dump('booking.waitlist_notifications', '');

CREATE POLICY waitlist_read ON booking.waitlist FOR SELECT
    USING ((SELECT booking.caller_is_operator())
           OR customer_id = ANY ((SELECT booking_internal.caller_customer_ids())::uuid[])
           OR tenant_id = ANY ((SELECT booking_internal.caller_staff_tenant_ids())::uuid[]));
GRANT SELECT ON booking.waitlist TO PUBLIC;

-- Adds an entry: {customer_id, service_id, staff_id?, preferred_start_date?, preferred_end_date?,
-- preferred_times? ["10:00", ...], preferred_days? [1, 2, ...], priority? (the tenant's staff
-- and operators only), notes?}.
CREATE FUNCTION booking_internal.add_to_waitlist(p_entry jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_customer booking.customers;
    v_service booking.services;
    v_row booking.waitlist;
    v_times time[];
    v_days integer[];
BEGIN
    IF p_entry IS NULL OR jsonb_typeof(p_entry) <> 'object' THEN
        RAISE EXCEPTION 'p_entry must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF p_entry ->> 'customer_id' IS NULL OR p_entry ->> 'service_id' IS NULL THEN
        RAISE EXCEPTION 'p_entry needs customer_id and service_id' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_customer FROM booking.customers WHERE id = (p_entry ->> 'customer_id')::uuid;
    IF NOT FOUND OR NOT booking.caller_may_act_for(v_customer.tenant_id, v_customer.id) THEN
        PERFORM booking.refuse('booking.waitlist_add', 'customer', p_entry ->> 'customer_id', v_customer.tenant_id, 'PT404',
                               format('customer %s does not exist', p_entry ->> 'customer_id'));
    END IF;
    SELECT * INTO v_service FROM booking.services WHERE id = (p_entry ->> 'service_id')::uuid AND tenant_id = v_customer.tenant_id;
    IF NOT FOUND OR NOT (v_service.is_active OR booking.caller_is_insider(v_customer.tenant_id)) THEN
        PERFORM booking.refuse('booking.waitlist_add', 'service', p_entry ->> 'service_id', v_customer.tenant_id, 'PT404',
                               format('service %s does not exist for this customer''s tenant', p_entry ->> 'service_id'));
    END IF;
    -- The queue's order is the tenant's to set: a customer's entry gets the default priority.
    IF p_entry ->> 'priority' IS NOT NULL AND NOT booking.caller_is_insider(v_customer.tenant_id) THEN
        PERFORM booking.refuse('booking.waitlist_add', 'waitlist', NULL, v_customer.tenant_id, '42501',
                               'only the tenant''s staff may set a waitlist priority');
    END IF;
    -- The arrays as values first: Citus routes an insert of values, not one with subqueries.
    v_times := coalesce(ARRAY(SELECT jsonb_array_elements_text(p_entry -> 'preferred_times')::time), '{}');
    v_days := coalesce(ARRAY(SELECT jsonb_array_elements_text(p_entry -> 'preferred_days')::int), '{}');
    INSERT INTO booking.waitlist (tenant_id, customer_id, service_id, staff_id, preferred_start_date, preferred_end_date,
                                  preferred_times, preferred_days, priority, notes)
    VALUES (v_customer.tenant_id, v_customer.id, v_service.id, (p_entry ->> 'staff_id')::uuid,
            (p_entry ->> 'preferred_start_date')::date, (p_entry ->> 'preferred_end_date')::date,
            v_times, v_days, coalesce((p_entry ->> 'priority')::int, 0), p_entry ->> 'notes')
    RETURNING * INTO v_row;
    RETURN to_jsonb(v_row);
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'staff member % does not exist for this tenant', p_entry ->> 'staff_id' USING ERRCODE = 'PT404';
END $$;

-- Changes the preferences, priority or notes of an entry (keys as in add_to_waitlist; status
-- may be set back to 'waiting' or to 'cancelled').
CREATE FUNCTION booking_internal.update_waitlist_entry(p_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_row booking.waitlist;
    v_unknown text;
BEGIN
    IF p_id IS NULL OR p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION 'p_id and a JSON object of changes are required' USING ERRCODE = '22023';
    END IF;
    SELECT k INTO v_unknown FROM jsonb_object_keys(p_changes) k
    WHERE k NOT IN ('staff_id', 'preferred_start_date', 'preferred_end_date', 'preferred_times', 'preferred_days',
                    'priority', 'notes', 'status')
    LIMIT 1;
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'waitlist field "%" cannot be changed', v_unknown USING ERRCODE = '22023';
    END IF;
    IF p_changes ? 'status' AND p_changes ->> 'status' NOT IN ('waiting', 'cancelled') THEN
        RAISE EXCEPTION 'status can only be set to waiting or cancelled' USING ERRCODE = '22023';
    END IF;
    -- Locked by its full key (Citus locks rows only in a statement routed to one tenant).
    SELECT * INTO v_row FROM booking.waitlist
    WHERE tenant_id = (SELECT w.tenant_id FROM booking.waitlist w WHERE w.id = p_id) AND id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT booking.caller_may_act_for(v_row.tenant_id, v_row.customer_id) THEN
        PERFORM booking.refuse('booking.waitlist_update', 'waitlist', p_id::text, v_row.tenant_id, 'PT404',
                               format('waitlist entry %s does not exist', p_id));
    END IF;
    IF p_changes ->> 'priority' IS NOT NULL AND (p_changes ->> 'priority')::int IS DISTINCT FROM v_row.priority
       AND NOT booking.caller_is_insider(v_row.tenant_id) THEN
        PERFORM booking.refuse('booking.waitlist_update', 'waitlist', p_id::text, v_row.tenant_id, '42501',
                               'only the tenant''s staff may set a waitlist priority');
    END IF;
    -- Values first and the row by its full key: Citus routes such an update to the tenant's
    -- shard, and refuses subqueries in it.
    IF p_changes ? 'preferred_times' THEN
        v_row.preferred_times := coalesce(ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'preferred_times')::time), '{}');
    END IF;
    IF p_changes ? 'preferred_days' THEN
        v_row.preferred_days := coalesce(ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'preferred_days')::int), '{}');
    END IF;
    UPDATE booking.waitlist w SET
        staff_id = CASE WHEN p_changes ? 'staff_id' THEN (p_changes ->> 'staff_id')::uuid ELSE w.staff_id END,
        preferred_start_date = CASE WHEN p_changes ? 'preferred_start_date' THEN (p_changes ->> 'preferred_start_date')::date ELSE w.preferred_start_date END,
        preferred_end_date = CASE WHEN p_changes ? 'preferred_end_date' THEN (p_changes ->> 'preferred_end_date')::date ELSE w.preferred_end_date END,
        preferred_times = v_row.preferred_times,
        preferred_days = v_row.preferred_days,
        priority = coalesce((p_changes ->> 'priority')::int, w.priority),
        notes = CASE WHEN p_changes ? 'notes' THEN p_changes ->> 'notes' ELSE w.notes END,
        status = coalesce(p_changes ->> 'status', w.status)
    WHERE w.tenant_id = v_row.tenant_id AND w.id = p_id
    RETURNING * INTO v_row;
    RETURN to_jsonb(v_row);
END $$;

CREATE FUNCTION booking_internal.remove_from_waitlist(p_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking_internal.update_waitlist_entry(p_id, '{"status": "cancelled"}') IS NOT NULL
$$;

-- The caller's visible entries (row-level security applies), best first.
CREATE FUNCTION booking.list_waitlist(p_service_id uuid DEFAULT NULL, p_status text DEFAULT 'waiting')
RETURNS SETOF booking.waitlist
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT * FROM booking.waitlist w
    WHERE (p_service_id IS NULL OR w.service_id = p_service_id)
      AND (p_status IS NULL OR w.status = p_status)
    ORDER BY w.priority DESC, w.created_at
$$;

-- Offers a freed slot (what appointment `p_freed` occupied) to the best waiting entry: same
-- service, the staff member if the entry names one, the local date within the entry's range, a
-- preferred weekday and a preferred time (within 30 minutes) when the entry has any. Only slots
-- starting within `waitlist_notification_hours` from now and still bookable are offered.
-- Called by cancel and reschedule in their own transaction; returns the entries notified.
CREATE FUNCTION booking.offer_freed_slot(p_freed booking.appointments) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_now timestamptz := booking.clock_now();
    v_horizon numeric := (booking.policy_value(p_freed.tenant_id, 'waitlist_notification_hours', p_freed.service_id, p_freed.staff_id))::numeric;
    v_local timestamp;
    v_entry booking.waitlist;
    v_event uuid;
BEGIN
    IF p_freed.starts_at <= v_now OR p_freed.starts_at > v_now + make_interval(secs => v_horizon * 3600) THEN
        RETURN 0;
    END IF;
    IF NOT (booking.tenant_slot_violations(p_freed.tenant_id, p_freed.staff_id, p_freed.service_id, p_freed.starts_at) ->> 'valid')::boolean THEN
        RETURN 0;
    END IF;
    SELECT p_freed.starts_at AT TIME ZONE s.timezone INTO v_local FROM booking.staff s
    WHERE s.tenant_id = p_freed.tenant_id AND s.id = p_freed.staff_id;
    SELECT w.* INTO v_entry
    FROM booking.waitlist w
    WHERE w.tenant_id = p_freed.tenant_id
      AND w.status = 'waiting'
      AND w.service_id = p_freed.service_id
      AND (w.staff_id IS NULL OR w.staff_id = p_freed.staff_id)
      AND v_local::date BETWEEN coalesce(w.preferred_start_date, '-infinity') AND coalesce(w.preferred_end_date, 'infinity')
      AND (cardinality(w.preferred_days) = 0 OR extract(dow FROM v_local)::int = ANY (w.preferred_days))
      AND (cardinality(w.preferred_times) = 0 OR EXISTS (
              SELECT 1 FROM unnest(w.preferred_times) t
              WHERE abs(extract(epoch FROM (v_local::time - t))) <= 1800))
      AND NOT EXISTS (SELECT 1 FROM booking.waitlist_notifications n
                      WHERE n.tenant_id = p_freed.tenant_id AND n.waitlist_id = w.id AND n.staff_id = p_freed.staff_id AND n.starts_at = p_freed.starts_at)
    ORDER BY w.priority DESC, w.created_at, w.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE booking.waitlist SET status = 'notified', notified_at = v_now WHERE tenant_id = v_entry.tenant_id AND id = v_entry.id;
    v_event := booking.emit_event(p_freed.tenant_id, 'waitlist.notified', jsonb_build_object(
        'waitlist_id', v_entry.id, 'customer_id', v_entry.customer_id, 'service_id', p_freed.service_id,
        'staff_id', p_freed.staff_id, 'starts_at', p_freed.starts_at, 'ends_at', p_freed.ends_at));
    INSERT INTO booking.waitlist_notifications (tenant_id, waitlist_id, staff_id, starts_at, ends_at, event_id)
    VALUES (p_freed.tenant_id, v_entry.id, p_freed.staff_id, p_freed.starts_at, p_freed.ends_at, v_event);
    RETURN 1;
END $$;
REVOKE ALL ON FUNCTION booking.offer_freed_slot(booking.appointments) FROM PUBLIC;

-- Waitlist sweep: slots freed (cancelled, or rescheduled away) in the last lookback_hours
-- (default 48) that are still free are offered again, so customers who joined the waitlist after
-- a slot was freed hear of it too. booking.offer_freed_slot applies the matching rules and
-- never tells an entry about the same slot twice.
CREATE FUNCTION booking_admin.op_waitlist_sweep(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    r record;
    v_freed booking.appointments;
    v_notified integer := 0;
BEGIN
    FOR r IN
        SELECT e.payload, a AS appointment
        FROM booking.events e
        JOIN booking.appointments a ON a.tenant_id = e.tenant_id AND a.id = (e.payload ->> 'appointment_id')::uuid
        WHERE e.event_type IN ('booking.cancelled', 'booking.rescheduled')
          AND e.created_at > now() - make_interval(hours => coalesce((p_settings ->> 'lookback_hours')::int, 48))
        ORDER BY e.created_at
    LOOP
        v_freed := r.appointment;
        v_freed.starts_at := coalesce(r.payload ->> 'old_starts_at', r.payload ->> 'starts_at')::timestamptz;
        v_freed.ends_at := coalesce(r.payload ->> 'old_ends_at', r.payload ->> 'ends_at')::timestamptz;
        v_notified := v_notified + booking.offer_freed_slot(v_freed);
    END LOOP;
    RETURN v_notified;
END $$;

CREATE FUNCTION booking_admin.handle_waitlist_notify(p_payload jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object('notified', booking_admin.op_waitlist_sweep(p_payload))
$$;

INSERT INTO booking_admin.job_handlers (handler, kind, function, description) VALUES
    ('waitlist_notify', 'function', 'booking_admin.handle_waitlist_notify', 'Offer still-free slots freed in the last lookback_hours (48) to the waitlist');
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('waitlist-sweep', 'Offer slots freed recently and still free to the waitlist', 'booking_admin.op_waitlist_sweep', '{"lookback_hours": 48}', 300000, 3, 30000);

-- The waitlist's conversion over the entries created in the last p_window (of one tenant, or
-- all): how many there were, were offered a slot (notified at least once), and booked a slot
-- they were offered (the booking sets the entry 'booked'). conversion_rate = booked / entries;
-- offer_conversion_rate = booked / notified. NULL rates: no entries (no offers).
CREATE FUNCTION booking_admin.waitlist_conversion(p_window interval DEFAULT '30 days', p_tenant_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' THEN
        RAISE EXCEPTION 'the window must be positive' USING ERRCODE = '22023';
    END IF;
    SELECT jsonb_build_object(
               'window', p_window, 'tenant_id', p_tenant_id,
               'entries', count(*), 'waiting', count(*) FILTER (WHERE w.status = 'waiting'),
               'notified', count(*) FILTER (WHERE w.notified_at IS NOT NULL),
               'booked', count(*) FILTER (WHERE w.status = 'booked'),
               'cancelled', count(*) FILTER (WHERE w.status = 'cancelled'),
               'expired', count(*) FILTER (WHERE w.status = 'expired'),
               'conversion_rate', round(count(*) FILTER (WHERE w.status = 'booked')::numeric / nullif(count(*), 0), 4),
               'offer_conversion_rate', round(count(*) FILTER (WHERE w.status = 'booked')::numeric
                                              / nullif(count(*) FILTER (WHERE w.notified_at IS NOT NULL), 0), 4))
    INTO v
    FROM booking.waitlist w
    WHERE w.created_at > now() - p_window AND (p_tenant_id IS NULL OR w.tenant_id = p_tenant_id);
    RETURN v;
END $$;
