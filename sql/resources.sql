-- Bookable resources, "any staff", holds and caps (docs/resources.md).
--
-- Resources (rooms, chairs, equipment) have their own weekly hours and closures and belong to
-- groups; a service requires resources (rows of service_requirements: "n of group G" or "this
-- resource"). Every claim on a staff member or a resource is a row of booking.assignments,
-- owned by an appointment or a hold, with exclusion constraints like the appointments' own:
-- the database refuses two live claims on one staff member or resource whose blocked ranges
-- overlap, whatever wrote them. An appointment's staff claim follows the appointment (trigger
-- below); its resource claims are chosen by the engine in the booking transaction
-- (booking.place), moved by a reschedule, released (live = false) by a cancellation.
--
-- A hold reserves a slot (staff member and resources) during checkout for the tenant's
-- hold_minutes: its claims are live rows of the same table until it is turned into a booking
-- with its token, released, or removed after it expired (by the next booking or hold that meets
-- it, or the expire-holds sweep). Reads ignore an expired hold at once.
--
-- Caps limit bookings per staff member, service or customer and day or week; a booking locks a
-- row of cap_locks per cap it counts against (one per cap, subject and period) before the
-- engine counts, so that two bookings of one full period are counted one after the other.
--
-- On Citus every table here is distributed by tenant_id with the others; the functions that
-- read them with arguments are PL/pgSQL and filter every statement by the tenant.

CREATE TABLE booking.resources (
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    kind          text NOT NULL DEFAULT 'other' CHECK (kind IN ('room', 'chair', 'equipment', 'other')),
    description   text,
    -- Weekly hours in the tenant's zone, as tenants.opening_hours; NULL: whenever the tenant is open.
    opening_hours jsonb CHECK (opening_hours IS NULL OR booking.is_valid_opening_hours(opening_hours)),
    -- The order resources are assigned in (lowest first, then id).
    position      integer NOT NULL DEFAULT 0,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
COMMENT ON TABLE booking.resources IS
    'Bookable resources (rooms, chairs, equipment): a service that requires them is bookable only when they are free; an inactive one is never assigned.';
CREATE TRIGGER resources_touch BEFORE UPDATE ON booking.resources FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();

CREATE TABLE booking.resource_groups (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TRIGGER resource_groups_touch BEFORE UPDATE ON booking.resource_groups FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();

CREATE TABLE booking.resource_group_members (
    tenant_id   uuid NOT NULL,
    group_id    uuid NOT NULL,
    resource_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, group_id, resource_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES booking.resource_groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, resource_id) REFERENCES booking.resources (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX resource_group_members_resource_idx ON booking.resource_group_members (resource_id);

CREATE TABLE booking.resource_closures (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    resource_id uuid NOT NULL,
    period      tstzrange NOT NULL CHECK (NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, resource_id) REFERENCES booking.resources (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX resource_closures_period_idx ON booking.resource_closures USING gist (tenant_id, resource_id, period);

-- What a service needs: each row "quantity of group G" or "resource R" (quantity 1); all of a
-- service's rows at once, with distinct resources.
CREATE TABLE booking.service_requirements (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    service_id  uuid NOT NULL,
    group_id    uuid,
    resource_id uuid,
    quantity    integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 20),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT service_requirements_one_kind CHECK (num_nonnulls(group_id, resource_id) = 1),
    CONSTRAINT service_requirements_one_of_a_resource CHECK (resource_id IS NULL OR quantity = 1),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES booking.resource_groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, resource_id) REFERENCES booking.resources (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX service_requirements_service_idx ON booking.service_requirements (tenant_id, service_id);
CREATE INDEX service_requirements_group_idx ON booking.service_requirements (group_id) WHERE (group_id IS NOT NULL);
CREATE INDEX service_requirements_resource_idx ON booking.service_requirements (resource_id) WHERE (resource_id IS NOT NULL);

-- Per tenant (a missing row: the defaults): how "any staff" bookings choose, how long a hold
-- lasts.
CREATE TABLE booking.booking_settings (
    tenant_id      uuid PRIMARY KEY REFERENCES booking.tenants (id) ON DELETE CASCADE,
    staff_strategy text NOT NULL DEFAULT 'least_busy_day'
                   CHECK (staff_strategy IN ('least_busy_day', 'least_busy_week', 'round_robin', 'priority')),
    hold_minutes   integer NOT NULL DEFAULT 10 CHECK (hold_minutes BETWEEN 1 AND 120),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER booking_settings_touch BEFORE UPDATE ON booking.booking_settings FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();

-- At most max_bookings bookings per period (the tenant's local day, or Monday-Sunday week):
-- of each staff member (scope staff, staff_id NULL) or one (staff_id), of one service together
-- (scope service), or of each customer (scope customer); service_id: only that service's
-- bookings count and are limited.
CREATE TABLE booking.booking_caps (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    scope        text NOT NULL CHECK (scope IN ('staff', 'service', 'customer')),
    staff_id     uuid,
    service_id   uuid,
    period       text NOT NULL CHECK (period IN ('day', 'week')),
    max_bookings integer NOT NULL CHECK (max_bookings BETWEEN 0 AND 10000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT booking_caps_service_scope_names_it CHECK (scope <> 'service' OR service_id IS NOT NULL),
    CONSTRAINT booking_caps_staff_only_for_staff CHECK (staff_id IS NULL OR scope = 'staff'),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX booking_caps_staff_idx ON booking.booking_caps (staff_id) WHERE (staff_id IS NOT NULL);
CREATE INDEX booking_caps_service_idx ON booking.booking_caps (service_id) WHERE (service_id IS NOT NULL);

-- One row per cap, subject (the staff member, service or customer) and period a booking counted
-- against: the booking locks it before the engine counts (a row lock, which holds on Citus too,
-- where an advisory lock would be per node). Under REPEATABLE READ a second booking of the same
-- period fails with 40001 instead of counting from a stale snapshot.
CREATE TABLE booking.cap_locks (
    tenant_id    uuid NOT NULL,
    cap_id       uuid NOT NULL,
    subject_id   uuid NOT NULL,
    period_start date NOT NULL,
    version      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, cap_id, subject_id, period_start),
    FOREIGN KEY (tenant_id, cap_id) REFERENCES booking.booking_caps (tenant_id, id) ON DELETE CASCADE
);

-- A slot reserved during checkout: its staff member and resources are claimed (assignments)
-- until expires_at. Only the SHA-256 of its token's secret is kept.
CREATE TABLE booking.holds (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL,
    service_id   uuid NOT NULL,
    staff_id     uuid NOT NULL,
    -- Whom it is for (a signed-in customer's own record, or the tenant's people's choice); NULL:
    -- anyone who books with the token.
    customer_id  uuid,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    -- The price the booking will have (the staff member's or the service's, when held).
    price        numeric(12, 2) NOT NULL CHECK (price >= 0),
    staff_choice jsonb,
    token_hash   bytea NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- Who made it: the signed-in user, and the client the rate limit counted.
    created_by   uuid,
    client       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, customer_id) REFERENCES booking.customers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX holds_expires_idx ON booking.holds (expires_at);
CREATE INDEX holds_service_idx ON booking.holds (service_id);
CREATE INDEX holds_staff_idx ON booking.holds (staff_id);
CREATE INDEX holds_customer_idx ON booking.holds (customer_id) WHERE (customer_id IS NOT NULL);
COMMENT ON TABLE booking.holds IS
    'Slots reserved during checkout until expires_at (the tenant''s hold_minutes): their claims block the staff member and resources for everyone else; booked with the token (create_tenant_booking, "hold_token").';

-- Every claim on a staff member or a resource: owned by an appointment or a hold (and, later,
-- anything else that occupies them), live while its owner is (an appointment pending,
-- confirmed or active; a hold until it is removed). The exclusion constraints refuse two live
-- claims of one staff member or resource with overlapping blocked ranges.
CREATE TABLE booking.assignments (
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL,
    appointment_id uuid,
    hold_id        uuid,
    staff_id       uuid,
    resource_id    uuid,
    -- The service requirement a resource meets.
    requirement_id uuid,
    blocked        tstzrange NOT NULL,
    live           boolean NOT NULL DEFAULT true,
    -- A hold's claims: when the hold lapses (reads ignore them from then on); NULL: an
    -- appointment's.
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assignments_one_owner CHECK (num_nonnulls(appointment_id, hold_id) = 1),
    CONSTRAINT assignments_one_claim CHECK (num_nonnulls(staff_id, resource_id) = 1),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, appointment_id) REFERENCES booking.appointments (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, hold_id) REFERENCES booking.holds (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, resource_id) REFERENCES booking.resources (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT assignments_no_double_staff
        EXCLUDE USING gist (tenant_id WITH =, staff_id WITH =, blocked WITH &&) WHERE (live AND staff_id IS NOT NULL),
    CONSTRAINT assignments_no_double_resource
        EXCLUDE USING gist (tenant_id WITH =, resource_id WITH =, blocked WITH &&) WHERE (live AND resource_id IS NOT NULL)
);
CREATE INDEX assignments_appointment_idx ON booking.assignments (appointment_id) WHERE (appointment_id IS NOT NULL);
CREATE INDEX assignments_hold_idx ON booking.assignments (hold_id) WHERE (hold_id IS NOT NULL);
CREATE INDEX assignments_resource_idx ON booking.assignments (resource_id) WHERE (resource_id IS NOT NULL);
-- What the engine reads of a resource: its live claims that end after a given instant (its
-- future, which the booking horizon bounds, while its past grows). The exclusion constraint's
-- gist index answers the same question reading many more pages.
CREATE INDEX assignments_live_resource_idx ON booking.assignments (tenant_id, resource_id, upper(blocked))
    WHERE (live AND resource_id IS NOT NULL);
COMMENT ON TABLE booking.assignments IS
    'Claims on staff members and resources by appointments and holds; two live claims of one staff member or resource never overlap (exclusion constraints).';

-- The users' data (pg_dump keeps it). Of the assignments only the resources of appointments:
-- an appointment's staff claim is made again by its trigger as it is restored, and holds are
-- transient.
SELECT pg_catalog.pg_extension_config_dump('booking.resources', '');
SELECT pg_catalog.pg_extension_config_dump('booking.resource_groups', '');
SELECT pg_catalog.pg_extension_config_dump('booking.resource_group_members', '');
SELECT pg_catalog.pg_extension_config_dump('booking.resource_closures', '');
SELECT pg_catalog.pg_extension_config_dump('booking.service_requirements', '');
SELECT pg_catalog.pg_extension_config_dump('booking.booking_settings', '');
SELECT pg_catalog.pg_extension_config_dump('booking.booking_caps', '');
SELECT pg_catalog.pg_extension_config_dump('booking.assignments', 'WHERE resource_id IS NOT NULL AND appointment_id IS NOT NULL');

-- An appointment's staff claim follows it: made with it, moved and released with it (its
-- resource claims move and go live or not with it too). Row by row, each statement on the
-- appointment's own tenant (on Citus, its colocated shard). SECURITY DEFINER: whoever may write
-- an appointment keeps its claims, which no application may write.
CREATE FUNCTION booking.assignments_follow_appointment() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO booking.assignments (tenant_id, appointment_id, staff_id, blocked, live)
        VALUES (NEW.tenant_id, NEW.id, NEW.staff_id, NEW.blocked, NEW.status IN ('pending', 'confirmed', 'active'));
    ELSE
        UPDATE booking.assignments a
        SET blocked = NEW.blocked, live = NEW.status IN ('pending', 'confirmed', 'active'),
            staff_id = CASE WHEN a.staff_id IS NOT NULL THEN NEW.staff_id END
        WHERE a.tenant_id = NEW.tenant_id AND a.appointment_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER assignments_follow_insert AFTER INSERT ON booking.appointments
    FOR EACH ROW EXECUTE FUNCTION booking.assignments_follow_appointment();
CREATE TRIGGER assignments_follow_update AFTER UPDATE OF staff_id, starts_at, ends_at, service_id, status ON booking.appointments
    FOR EACH ROW
    WHEN ((OLD.staff_id, OLD.blocked, OLD.status IN ('pending', 'confirmed', 'active'))
          IS DISTINCT FROM (NEW.staff_id, NEW.blocked, NEW.status IN ('pending', 'confirmed', 'active')))
    EXECUTE FUNCTION booking.assignments_follow_appointment();

-- Locks the caps' count rows a booking counts against (p_keys: [[cap_id, subject_id,
-- period_start], ...], sorted, so that two bookings lock shared rows in one order), one routed
-- statement each.
CREATE FUNCTION booking.lock_caps(p_tenant_id uuid, p_keys jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    k jsonb;
BEGIN
    FOR k IN SELECT e FROM jsonb_array_elements(p_keys) e ORDER BY e ->> 0, e ->> 1, e ->> 2 LOOP
        INSERT INTO booking.cap_locks AS l (tenant_id, cap_id, subject_id, period_start)
        VALUES (p_tenant_id, (k ->> 0)::uuid, (k ->> 1)::uuid, (k ->> 2)::date)
        ON CONFLICT (tenant_id, cap_id, subject_id, period_start) DO UPDATE SET version = l.version + 1;
    END LOOP;
END $$;

-- Claims resources (p_resources: [{resource_id, requirement_id}]) for an appointment or a hold.
CREATE FUNCTION booking.claim_resources(p_tenant_id uuid, p_appointment_id uuid, p_hold_id uuid, p_resources jsonb,
                                        p_blocked tstzrange, p_expires_at timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    r jsonb;
BEGIN
    FOR r IN SELECT e FROM jsonb_array_elements(p_resources) e LOOP
        INSERT INTO booking.assignments (tenant_id, appointment_id, hold_id, resource_id, requirement_id, blocked, expires_at)
        VALUES (p_tenant_id, p_appointment_id, p_hold_id, (r ->> 'resource_id')::uuid, (r ->> 'requirement_id')::uuid,
                p_blocked, p_expires_at);
    END LOOP;
END $$;

-- Removes the expired holds whose claims are in the way of a claim on p_staff_id or
-- p_resources over p_blocked. Reads ignore them already; the constraints still see them until
-- they are gone. Returns how many went.
CREATE FUNCTION booking.clear_expired_holds(p_tenant_id uuid, p_blocked tstzrange, p_staff_id uuid, p_resources uuid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM booking.holds h
    WHERE h.tenant_id = p_tenant_id AND h.expires_at <= booking.clock_now()
      AND h.id IN (SELECT a.hold_id FROM booking.assignments a
                   WHERE a.tenant_id = p_tenant_id AND a.hold_id IS NOT NULL AND a.live AND a.blocked && p_blocked
                     AND (a.staff_id = p_staff_id OR a.resource_id = ANY (p_resources)));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Places an appointment ('appointment': a new booking, from p_hold_id's hold when given), a
-- hold ('hold') or an existing appointment at a new time ('move') or anew on its resources
-- ('assign'), as the engine plans it (booking.tenant_booking_plan): with p_staff_id, or (NULL)
-- the first staff member the tenant's strategy chooses, and the resources the engine assigns.
-- Before it counts, the caps the candidates count against are locked; then the first candidate
-- is written in a subtransaction. When the database refuses the write (another transaction
-- claimed the staff member or a resource first), expired holds in the way are removed and the
-- write tried again, or the engine is asked again with what has committed since (READ
-- COMMITTED: a fresh snapshot), up to three times. p_values: the row's other values (status,
-- price, notes, staff_choice for appointments; hold_id, token_hash, expires_at, client,
-- created_by for holds). Returns {"outcome": "placed", "row": the appointment or hold}, or
-- {"outcome": "refused" (the rules) | "conflict" (a race lost), "violations"}.
CREATE FUNCTION booking.place(p_kind text, p_tenant_id uuid, p_service_id uuid, p_staff_id uuid, p_starts_at timestamptz,
                              p_ends_at timestamptz, p_customer_id uuid, p_appointment_id uuid, p_hold_id uuid, p_values jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_plan jsonb;
    v_cand jsonb;
    v_last jsonb;
    v_locked jsonb := '[]';
    v_conflicts integer := 0;
    v_staff uuid;
    v_blocked tstzrange;
    v_choice jsonb;
    v_appt booking.appointments;
    v_hold booking.holds;
BEGIN
    FOR v_round IN 1..20 LOOP
        v_plan := booking.tenant_booking_plan(p_tenant_id, p_service_id, p_staff_id, p_starts_at, p_ends_at, p_customer_id,
                                              p_appointment_id, p_hold_id, p_kind = 'assign');
        IF NOT (v_plan ->> 'valid')::boolean THEN
            RETURN jsonb_build_object('outcome', CASE WHEN v_conflicts = 0 THEN 'refused' ELSE 'conflict' END,
                                      'violations', v_plan -> 'violations');
        END IF;
        IF NOT v_locked @> (v_plan -> 'locks') THEN
            -- The engine counted before the locks: it counts again, after them.
            PERFORM booking.lock_caps(p_tenant_id, v_plan -> 'locks');
            v_locked := v_locked || (v_plan -> 'locks');
            CONTINUE;
        END IF;
        v_cand := v_plan -> 'candidates' -> 0;
        -- The same answer again comes from the same snapshot (REPEATABLE READ): the race is lost.
        EXIT WHEN v_cand = v_last;
        v_staff := (v_cand ->> 'staff_id')::uuid;
        v_blocked := (v_cand ->> 'blocked')::tstzrange;
        v_choice := coalesce(nullif(p_values -> 'staff_choice', 'null'), CASE WHEN p_staff_id IS NULL THEN
                        jsonb_build_object('strategy', v_plan -> 'strategy', 'free_staff', v_plan -> 'free_staff') END);
        BEGIN
            IF p_kind = 'appointment' THEN
                IF p_hold_id IS NOT NULL THEN
                    DELETE FROM booking.holds h WHERE h.tenant_id = p_tenant_id AND h.id = p_hold_id;
                END IF;
                INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, ends_at, status,
                                                  price, notes, staff_choice)
                VALUES (p_tenant_id, v_staff, p_service_id, p_customer_id, p_starts_at, (v_cand ->> 'ends_at')::timestamptz,
                        p_values ->> 'status',
                        coalesce((p_values ->> 'price')::numeric, booking.staff_price(p_tenant_id, v_staff, p_service_id)),
                        p_values ->> 'notes', v_choice)
                RETURNING * INTO v_appt;
                PERFORM booking.claim_resources(p_tenant_id, v_appt.id, NULL, v_cand -> 'resources', v_appt.blocked, NULL);
                RETURN jsonb_build_object('outcome', 'placed', 'row', to_jsonb(v_appt));
            ELSIF p_kind = 'hold' THEN
                INSERT INTO booking.holds (tenant_id, id, service_id, staff_id, customer_id, starts_at, ends_at, price,
                                           staff_choice, token_hash, expires_at, created_by, client)
                VALUES (p_tenant_id, (p_values ->> 'hold_id')::uuid, p_service_id, v_staff, p_customer_id, p_starts_at,
                        (v_cand ->> 'ends_at')::timestamptz, booking.staff_price(p_tenant_id, v_staff, p_service_id),
                        v_choice, decode(p_values ->> 'token_hash', 'hex'), (p_values ->> 'expires_at')::timestamptz,
                        (p_values ->> 'created_by')::uuid, p_values ->> 'client')
                RETURNING * INTO v_hold;
                INSERT INTO booking.assignments (tenant_id, hold_id, staff_id, blocked, expires_at)
                VALUES (p_tenant_id, v_hold.id, v_staff, v_blocked, v_hold.expires_at);
                PERFORM booking.claim_resources(p_tenant_id, NULL, v_hold.id, v_cand -> 'resources', v_blocked, v_hold.expires_at);
                RETURN jsonb_build_object('outcome', 'placed', 'row', to_jsonb(v_hold));
            ELSE
                -- A move or a new assignment: the old resource claims go, the appointment moves
                -- (its staff claim with it), the new ones are made.
                DELETE FROM booking.assignments a
                WHERE a.tenant_id = p_tenant_id AND a.appointment_id = p_appointment_id AND a.resource_id IS NOT NULL;
                IF p_kind = 'move' THEN
                    UPDATE booking.appointments a
                    SET starts_at = p_starts_at, ends_at = (v_cand ->> 'ends_at')::timestamptz, reschedule_count = a.reschedule_count + 1
                    WHERE a.tenant_id = p_tenant_id AND a.id = p_appointment_id
                    RETURNING * INTO v_appt;
                ELSE
                    SELECT * INTO v_appt FROM booking.appointments a WHERE a.tenant_id = p_tenant_id AND a.id = p_appointment_id;
                END IF;
                PERFORM booking.claim_resources(p_tenant_id, v_appt.id, NULL, v_cand -> 'resources', v_appt.blocked, NULL);
                RETURN jsonb_build_object('outcome', 'placed', 'row', to_jsonb(v_appt));
            END IF;
        EXCEPTION WHEN exclusion_violation THEN
            IF booking.clear_expired_holds(p_tenant_id, v_blocked, v_staff,
                   ARRAY(SELECT (r ->> 'resource_id')::uuid FROM jsonb_array_elements(v_cand -> 'resources') r)) > 0 THEN
                CONTINUE;
            END IF;
            v_conflicts := v_conflicts + 1;
            v_last := v_cand;
            EXIT WHEN v_conflicts >= 3;
        END;
    END LOOP;
    RETURN jsonb_build_object('outcome', 'conflict', 'violations', jsonb_build_array(jsonb_build_object(
        'code', 'conflict', 'message', 'Time slot conflicts with another appointment')));
END $$;
REVOKE ALL ON FUNCTION booking.place(text, uuid, uuid, uuid, timestamptz, timestamptz, uuid, uuid, uuid, jsonb) FROM PUBLIC;

-- A staff member's price of a service: their own, else the service's.
CREATE FUNCTION booking.staff_price(p_tenant_id uuid, p_staff_id uuid, p_service_id uuid) RETURNS numeric
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN (SELECT coalesce(ss.price, s.price) FROM booking.services s
            LEFT JOIN booking.staff_services ss ON ss.tenant_id = p_tenant_id AND ss.staff_id = p_staff_id AND ss.service_id = s.id
            WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id);
END $$;

-- The resources an appointment or a hold holds: [{resource_id, name, requirement_id}].
CREATE FUNCTION booking.claimed_resources(p_tenant_id uuid, p_appointment_id uuid, p_hold_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('resource_id', a.resource_id, 'name', r.name, 'requirement_id', a.requirement_id)
                         ORDER BY r.position, r.id)
        FROM booking.assignments a JOIN booking.resources r ON r.tenant_id = p_tenant_id AND r.id = a.resource_id
        WHERE a.tenant_id = p_tenant_id AND a.resource_id IS NOT NULL
          AND (a.appointment_id = p_appointment_id OR a.hold_id = p_hold_id)), '[]');
END $$;

-- A hold as its maker sees it: never its token's hash.
CREATE FUNCTION booking.hold_json(p_hold booking.holds) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN to_jsonb(p_hold) - 'token_hash' - 'client' - 'created_by'
        || jsonb_build_object('resources', booking.claimed_resources(p_hold.tenant_id, NULL, p_hold.id));
END $$;

-- Holds a slot during checkout: p_hold {service_id, starts_at (required), staff_id (NULL: any
-- staff member, chosen as a booking would be), customer_id (whom it is for: the caller's own
-- record, or any of the tenant's customers for its people)}. Anyone may hold what they may book
-- (anon included); callers outside the tenant are rate-limited per client (the signed-in user,
-- else the address): booking_engine.hold_rate_limit per 10 minutes, PT429 beyond. Returns
-- {"success": true, "hold": {...}, "token"} (the token shown this once: book with it as
-- p_booking.hold_token, or release it) or, when the slot cannot be held, {"success": false,
-- "code": "slot_unavailable" | "conflict", "error", "details"}. PT404 (audited) for a tenant,
-- service, staff member or customer the caller may not see; 22023 bad input.
CREATE FUNCTION booking_internal.create_hold(p_tenant_id uuid, p_hold jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    c jsonb;
    v_role text;
    v_client text;
    v_service booking.services;
    v_staff booking.staff;
    v_customer booking.customers;
    v_starts timestamptz;
    v_id uuid := gen_random_uuid();
    v_token text;
    v_hash bytea;
    v_minutes integer;
    v_placed jsonb;
    v_hold booking.holds;
BEGIN
    IF p_tenant_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    c := booking_internal.check_fields(p_hold, 'p_hold', ARRAY['service_id', 'staff_id', 'starts_at', 'customer_id'],
                                       ARRAY['service_id', 'starts_at']);
    v_role := booking_internal.caller_tenant_role(p_tenant_id);
    IF v_role IS NULL THEN
        -- Every attempt counts, refused ones too: a client cannot probe or hold the calendar
        -- faster than this.
        v_client := coalesce('user:' || booking.caller_user_id(), 'ip:' || (booking.request_context() ->> 'ip_address'), 'anonymous');
        IF NOT booking.check_rate_limit(v_client, 'create_hold', (booking_internal.tenant_limits() ->> 'hold_rate_limit')::int, 600) THEN
            PERFORM booking.refuse('booking.hold', 'hold', NULL, p_tenant_id, 'PT429',
                                   'too many holds from this client; try again in a few minutes');
        END IF;
    END IF;
    SELECT * INTO v_service FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = (c ->> 'service_id')::uuid;
    IF NOT FOUND OR NOT (v_service.is_active OR v_role IS NOT NULL) THEN
        PERFORM booking.refuse('booking.hold', 'service', c ->> 'service_id', p_tenant_id, 'PT404',
                               format('service %s does not exist', c ->> 'service_id'));
    END IF;
    IF c ->> 'staff_id' IS NOT NULL THEN
        SELECT * INTO v_staff FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.id = (c ->> 'staff_id')::uuid;
        IF NOT FOUND OR NOT (v_staff.is_active OR v_role IS NOT NULL) THEN
            PERFORM booking.refuse('booking.hold', 'staff', c ->> 'staff_id', p_tenant_id, 'PT404',
                                   format('staff member %s does not exist', c ->> 'staff_id'));
        END IF;
    END IF;
    IF c ->> 'customer_id' IS NOT NULL THEN
        SELECT * INTO v_customer FROM booking.customers k WHERE k.tenant_id = p_tenant_id AND k.id = (c ->> 'customer_id')::uuid;
        IF NOT FOUND OR NOT booking.caller_may_act_for(p_tenant_id, v_customer.id) THEN
            PERFORM booking.refuse('booking.hold', 'customer', c ->> 'customer_id', p_tenant_id, 'PT404',
                                   format('customer %s does not exist', c ->> 'customer_id'));
        END IF;
    END IF;
    v_starts := (c ->> 'starts_at')::timestamptz;
    IF NOT isfinite(v_starts) THEN
        RAISE EXCEPTION 'starts_at must be finite' USING ERRCODE = '22008';
    END IF;
    v_minutes := coalesce((SELECT b.hold_minutes FROM booking.booking_settings b WHERE b.tenant_id = p_tenant_id), 10);
    SELECT t.token, t.token_hash INTO v_token, v_hash FROM booking_internal.new_hold_token(p_tenant_id, v_id) t;
    v_placed := booking.place('hold', p_tenant_id, v_service.id, v_staff.id, v_starts, NULL, v_customer.id, NULL, NULL,
        jsonb_build_object('hold_id', v_id, 'token_hash', encode(v_hash, 'hex'),
                           'expires_at', booking.clock_now() + make_interval(mins => v_minutes),
                           'created_by', booking.caller_user_id(), 'client', v_client));
    IF v_placed ->> 'outcome' <> 'placed' THEN
        PERFORM booking.audit_event('booking.hold', 'hold', NULL, false, v_placed ->> 'outcome', false, p_tenant_id);
        RETURN booking.policy_failure(CASE v_placed ->> 'outcome' WHEN 'conflict' THEN 'conflict' ELSE 'slot_unavailable' END,
            CASE v_placed ->> 'outcome' WHEN 'conflict' THEN 'Time slot conflicts with another appointment'
                 ELSE 'The slot cannot be held' END, NULL, v_placed -> 'violations') - 'operation_id';
    END IF;
    v_hold := jsonb_populate_record(NULL::booking.holds, v_placed -> 'row');
    PERFORM booking.audit_event('booking.hold', 'hold', v_hold.id::text, true, NULL, false, p_tenant_id);
    RETURN jsonb_build_object('success', true, 'token', v_token, 'hold', booking.hold_json(v_hold));
END $$;

-- The hold a token names, locked, or PT404 (audited under p_action) for a token that names
-- none (malformed, unknown, a wrong secret, another tenant's when p_tenant_id is given).
CREATE FUNCTION booking.hold_for_token(p_token text, p_tenant_id uuid, p_action text) RETURNS booking.holds
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_parsed record;
    v_hold booking.holds;
BEGIN
    SELECT * INTO v_parsed FROM booking_internal.parse_hold_token(coalesce(p_token, '')) t;
    IF FOUND AND (p_tenant_id IS NULL OR v_parsed.tenant_id = p_tenant_id) THEN
        SELECT * INTO v_hold FROM booking.holds h WHERE h.tenant_id = v_parsed.tenant_id AND h.id = v_parsed.hold_id FOR UPDATE;
    END IF;
    IF v_hold.id IS NULL OR NOT booking_internal.same_token_hash(v_hold.token_hash, v_parsed.secret_hash) THEN
        PERFORM booking.refuse(p_action, 'hold', NULL, coalesce(p_tenant_id, v_parsed.tenant_id), 'PT404', 'the hold does not exist');
    END IF;
    RETURN v_hold;
END $$;
REVOKE ALL ON FUNCTION booking.hold_for_token(text, uuid, text) FROM PUBLIC;

-- Releases a hold by its token (the checkout was abandoned): its slot is free at once. PT404 for
-- a token that names no hold.
CREATE FUNCTION booking_internal.release_hold(p_token text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_hold booking.holds := booking.hold_for_token(p_token, NULL, 'booking.hold_release');
BEGIN
    DELETE FROM booking.holds h WHERE h.tenant_id = v_hold.tenant_id AND h.id = v_hold.id;
    PERFORM booking.audit_event('booking.hold_release', 'hold', v_hold.id::text, true, NULL, false, v_hold.tenant_id);
    RETURN true;
END $$;

-- The "any staff" slots of one day of one tenant's service: [{starts_at, ends_at, staff_free}],
-- by start: one per start time at which a staff member who takes "any staff" bookings is free
-- (ends_at: with the one the tenant's strategy would choose as of now). p_customer_id: their
-- own caps apply too (the caller's own record, or any of the tenant's for its people; PT404
-- otherwise). PT404 for a service the caller may not see. On Citus a distributed function.
CREATE FUNCTION booking_internal.get_tenant_any_staff_slots(p_tenant_id uuid, p_date date, p_service_id uuid,
                                                            p_customer_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    PERFORM booking.require_any_staff_question(p_tenant_id, p_service_id, p_customer_id);
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('starts_at', s.starts_at, 'ends_at', s.ends_at, 'staff_free', s.staff_free)
                                      ORDER BY s.n), '[]'::jsonb)
            FROM booking.any_staff_slot_arrays(p_tenant_id, p_service_id, p_date, p_date, p_customer_id) a,
                 unnest(a.starts, a.ends, a.staff_free) WITH ORDINALITY AS s (starts_at, ends_at, staff_free, n));
END $$;

-- The same over a range of dates, as rows, for a service of any tenant (looked up by id).
CREATE FUNCTION booking_internal.get_any_staff_slots(p_service_id uuid, p_from date, p_to date, p_customer_id uuid DEFAULT NULL)
RETURNS TABLE (starts_at timestamptz, ends_at timestamptz, staff_free integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
BEGIN
    SELECT s.tenant_id INTO v_tenant FROM booking.services s WHERE s.id = p_service_id;
    PERFORM booking.require_any_staff_question(v_tenant, p_service_id, p_customer_id);
    RETURN QUERY
        SELECT s.starts_at, s.ends_at, s.staff_free
        FROM booking.any_staff_slot_arrays(v_tenant, p_service_id, p_from, p_to, p_customer_id) a,
             unnest(a.starts, a.ends, a.staff_free) WITH ORDINALITY AS s (starts_at, ends_at, staff_free, n)
        ORDER BY s.n;
END $$;

-- The checks of an "any staff" slot question: 22023 NULL arguments; PT404 a service the caller
-- may not see, or a customer they may not act for.
CREATE FUNCTION booking.require_any_staff_question(p_tenant_id uuid, p_service_id uuid, p_customer_id uuid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_service_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id and p_service_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_tenant_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM booking.services s
        WHERE s.tenant_id = p_tenant_id AND s.id = p_service_id AND (s.is_active OR booking.caller_is_insider(p_tenant_id))) THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'PT404';
    END IF;
    IF p_customer_id IS NOT NULL AND NOT (
        EXISTS (SELECT 1 FROM booking.customers k WHERE k.tenant_id = p_tenant_id AND k.id = p_customer_id)
        AND booking.caller_may_act_for(p_tenant_id, p_customer_id)) THEN
        RAISE EXCEPTION 'customer % does not exist', p_customer_id USING ERRCODE = 'PT404';
    END IF;
END $$;

-- The expire-holds sweep: removes the holds past their expiry (reads ignore them already; the
-- slot store counts them until they are gone), tenant by tenant, and the caps' lock rows of
-- periods that ended more than a week ago.
CREATE FUNCTION booking_admin.op_expire_holds(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_now timestamptz := booking.clock_now();
    n integer := 0;
    k integer;
BEGIN
    FOR v_tenant IN SELECT DISTINCT h.tenant_id FROM booking.holds h WHERE h.expires_at <= v_now LOOP
        DELETE FROM booking.holds h WHERE h.tenant_id = v_tenant AND h.expires_at <= v_now;
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    DELETE FROM booking.cap_locks l WHERE l.period_start < (v_now - interval '15 days')::date;
    RETURN n;
END $$;
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('expire-holds', 'Remove holds past their expiry', 'booking_admin.op_expire_holds', '{}', 60000, 3, 30000);
