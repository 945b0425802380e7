-- Reminders and the day's messages (docs/reminders.md).
--
-- A tenant's reminder rules say how long before an appointment its customer is reminded, on
-- which channels (email, SMS, and a booking.reminder event for webhooks), outside which quiet
-- hours, and whether a booking made inside that time is reminded at once or not at all. Each
-- (appointment, rule, start time) gets exactly one row of booking.reminders, written by the
-- appointment's own triggers in the booking's transaction: a reschedule drops the old start's
-- pending rows and arms the new start's, a cancel, no-show, completion or expiry drops them.
-- Rows of their own rather than keyed jobs: they live with the appointment (colocated on Citus,
-- where the booking and its triggers run on a worker, which cannot write the coordinator's job
-- queue), they keep what became of each reminder (sent on which channels, skipped and why,
-- dropped and why) where the tenant reads it, and a booking pays one index probe for them when
-- its tenant has no rule.
--
-- The delivery worker hands due rows to their channels (booking_admin.fan_out_reminders, in
-- the transaction that claims the deliveries): email and SMS as deliveries through the
-- tenant's email and SMS endpoints (the ledger, retries, circuit breaker and per-endpoint
-- isolation of every delivery), the event through booking.events. Messages may carry signed
-- links that let the customer confirm or cancel that one appointment without signing in.
--
-- Also here: the tenant's messaging settings (the links' page, the staff's daily agenda on a
-- cron schedule in the tenant's zone) and the owners' and managers' RPCs for all of it.

CREATE TABLE booking.reminder_rules (
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    -- NULL: every service of the tenant.
    service_id     uuid,
    name           text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- How long before the start (up to 60 days).
    offset_minutes integer NOT NULL CHECK (offset_minutes BETWEEN 1 AND 86400),
    channels       text[] NOT NULL CHECK (cardinality(channels) > 0 AND channels <@ ARRAY['email', 'sms', 'webhook']),
    -- A daily window on the customer's wall clock (their zone, else the staff member's, else the
    -- tenant's) in which nothing goes out: a reminder falling due in it waits for its end if
    -- that is still before the appointment, else it is skipped.
    quiet_start    time,
    quiet_end      time,
    -- A booking (or a reschedule) made after this rule's time has passed: send the reminder at
    -- once, or skip it.
    late_booking   text NOT NULL DEFAULT 'skip' CHECK (late_booking IN ('send', 'skip')),
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The rule's own message, {"subject", "body_text", "body_html"} (booking_internal.reminder_template);
    -- NULL: the tenant's booking.reminder template, else the default one.
    template       jsonb,
    CHECK (CASE WHEN quiet_start IS NULL THEN quiet_end IS NULL ELSE quiet_start <> quiet_end END),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE
);
-- The foreign key's side.
CREATE INDEX reminder_rules_service_idx ON booking.reminder_rules (service_id) WHERE service_id IS NOT NULL;
CREATE TRIGGER reminder_rules_touch BEFORE UPDATE ON booking.reminder_rules FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('booking.reminder_rules', '');
COMMENT ON TABLE booking.reminder_rules IS
    'A tenant''s reminders (optionally for one service): offset_minutes before the start, on channels email, sms, webhook (a booking.reminder event), outside quiet hours, late bookings sent at once or skipped.';

-- One row per (appointment, rule, start time): the primary key is the "exactly once".
CREATE TABLE booking.reminders (
    tenant_id      uuid NOT NULL,
    appointment_id uuid NOT NULL,
    rule_id        uuid NOT NULL,
    -- The start this reminder is for: a reschedule gives the new start rows of its own.
    starts_at      timestamptz NOT NULL,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    -- starts_at minus the rule's offset.
    due_at         timestamptz NOT NULL,
    -- When it goes out: due_at, the booking's time for a late booking sent at once, or the end of
    -- the customer's quiet hours.
    send_at        timestamptz NOT NULL,
    -- pending; sent (handed to its channels); skipped (booked late, or quiet hours until the
    -- start); dropped (the appointment moved, was cancelled, missed, completed or expired, or
    -- the rule changed).
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'skipped', 'dropped')),
    -- Why it was skipped, dropped or deferred: booked_late, quiet_hours, started, rescheduled,
    -- cancelled, no_show, completed, expired, active, deleted, rule_changed.
    reason         text,
    -- What each channel did with it: {"email": "queued" | "no_endpoint" | "no_address",
    -- "sms": ... | "opted_out", "webhook": "event"}.
    channels       jsonb,
    sent_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, appointment_id, rule_id, starts_at),
    FOREIGN KEY (tenant_id, appointment_id) REFERENCES booking.appointments (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, rule_id) REFERENCES booking.reminder_rules (tenant_id, id) ON DELETE CASCADE
);
-- What the delivery worker asks: the due ones.
CREATE INDEX reminders_due_idx ON booking.reminders (send_at) WHERE status = 'pending';
-- The rule's side of its foreign key, and a rule's re-arming.
CREATE INDEX reminders_rule_idx ON booking.reminders (tenant_id, rule_id);
SELECT pg_catalog.pg_extension_config_dump('booking.reminders', '');

-- A tenant's messaging settings: the page its signed links open (the token and the action are
-- added to it), and its staff's daily agenda on a cron schedule in the tenant's zone.
CREATE TABLE booking.messaging_settings (
    tenant_id       uuid PRIMARY KEY REFERENCES booking.tenants (id) ON DELETE CASCADE,
    link_base_url   text CHECK (link_base_url ~ '^https?://[^\s]+$' AND length(link_base_url) <= 500),
    agenda_cron     text CHECK (agenda_cron IS NULL OR agenda_cron = booking_admin.check_cron(agenda_cron)),
    agenda_next_at  timestamptz,
    agenda_last_at  timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('booking.messaging_settings', '');

-- The keys that sign links (src/reminders/links.rs). No grants: only the extension's owner reads
-- them. A rotated key keeps verifying the links it signed until retired_at.
CREATE TABLE booking_admin.link_keys (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.link_keys', '');

-- Links used: single use. The SHA-256 of the token, never the token.
CREATE TABLE booking_admin.link_uses (
    digest         bytea PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    appointment_id uuid NOT NULL,
    action         text NOT NULL CHECK (action IN ('confirm', 'cancel')),
    used_at        timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX link_uses_expires_idx ON booking_admin.link_uses (expires_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.link_uses', '');

-- Arming -----------------------------------------------------------------------------------

-- The appointment's reminders follow it, in the booking's own transaction. A new or moved start
-- gets one row per enabled rule of its tenant (and service); its due time already passed means
-- booked late: sent at once (at the booking's time, before the start) or skipped, as the rule
-- says. A moved start drops the old start's pending rows; an appointment that is no longer
-- pending or confirmed drops them all. Moving back to a start it had: its dropped rows are armed
-- again, sent or skipped ones are not (once per start). A row trigger with statements filtered
-- by the appointment's tenant, reading only that tenant's colocated rules and reminders (what
-- Citus allows a trigger on a worker's shard); a tenant without rules costs one index probe.
-- SECURITY DEFINER so that whoever may change an appointment (service_role, the booking
-- functions) keeps its reminders, without rights on them.
CREATE FUNCTION booking.reminders_follow_appointment() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_rules uuid[];
    v_offsets integer[];
    v_late text[];
    v_now timestamptz;
    v_armed integer;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        UPDATE booking.reminders r
        SET status = 'dropped', updated_at = now(),
            reason = CASE WHEN NEW.status IN ('pending', 'confirmed') THEN 'rescheduled' ELSE NEW.status END
        WHERE r.tenant_id = NEW.tenant_id AND r.appointment_id = NEW.id AND r.status = 'pending'
          AND (NEW.status NOT IN ('pending', 'confirmed') OR r.starts_at <> NEW.starts_at);
        IF NEW.status NOT IN ('pending', 'confirmed') OR NEW.starts_at = OLD.starts_at THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT array_agg(u.id), array_agg(u.offset_minutes), array_agg(u.late_booking)
    INTO v_rules, v_offsets, v_late
    FROM booking.reminder_rules u
    WHERE u.tenant_id = NEW.tenant_id AND u.enabled AND (u.service_id IS NULL OR u.service_id = NEW.service_id);
    IF v_rules IS NULL THEN
        RETURN NULL;
    END IF;
    v_now := booking.clock_now();
    INSERT INTO booking.reminders AS r (tenant_id, appointment_id, rule_id, starts_at, due_at, send_at, status, reason)
    SELECT NEW.tenant_id, NEW.id, x.rule, NEW.starts_at, x.due, greatest(x.due, v_now),
           CASE WHEN x.due >= v_now OR (x.late = 'send' AND NEW.starts_at > v_now) THEN 'pending' ELSE 'skipped' END,
           CASE WHEN x.due < v_now THEN 'booked_late' END
    FROM (SELECT u.rule, u.late, NEW.starts_at - make_interval(mins => u.minutes) AS due
          FROM unnest(v_rules, v_offsets, v_late) AS u (rule, minutes, late)) x
    ON CONFLICT (tenant_id, appointment_id, rule_id, starts_at) DO UPDATE
        SET status = excluded.status, reason = excluded.reason, due_at = excluded.due_at, send_at = excluded.send_at,
            channels = NULL, updated_at = excluded.updated_at
        WHERE r.status = 'dropped';
    GET DIAGNOSTICS v_armed = ROW_COUNT;
    -- One due at once (a late booking sent now) need not wait for the worker's next look.
    IF v_armed > 0 AND EXISTS (SELECT 1 FROM unnest(v_offsets) m WHERE NEW.starts_at - make_interval(mins => m) <= v_now) THEN
        PERFORM booking.wake_delivery_at_commit();
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER reminders_arm AFTER INSERT ON booking.appointments
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'confirmed'))
    EXECUTE FUNCTION booking.reminders_follow_appointment();
CREATE TRIGGER reminders_follow AFTER UPDATE OF starts_at, status ON booking.appointments
    FOR EACH ROW WHEN (OLD.starts_at IS DISTINCT FROM NEW.starts_at
                       OR (OLD.status IS DISTINCT FROM NEW.status AND NEW.status NOT IN ('pending', 'confirmed')))
    EXECUTE FUNCTION booking.reminders_follow_appointment();

-- A rule created, changed or removed: its pending rows are dropped, and the tenant's upcoming
-- appointments (of its service) get rows for it when its time is still ahead (a new rule
-- reminds existing bookings; it does not send late ones at once). Returns the rows armed.
CREATE FUNCTION booking_internal.rearm_reminder_rule(p_tenant_id uuid, p_rule_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_rule booking.reminder_rules;
    v_now timestamptz := booking.clock_now();
    n integer;
BEGIN
    UPDATE booking.reminders r SET status = 'dropped', reason = 'rule_changed', updated_at = now()
    WHERE r.tenant_id = p_tenant_id AND r.rule_id = p_rule_id AND r.status = 'pending';
    SELECT * INTO v_rule FROM booking.reminder_rules u WHERE u.tenant_id = p_tenant_id AND u.id = p_rule_id;
    IF NOT FOUND OR NOT v_rule.enabled THEN
        RETURN 0;
    END IF;
    INSERT INTO booking.reminders AS r (tenant_id, appointment_id, rule_id, starts_at, due_at, send_at)
    SELECT a.tenant_id, a.id, v_rule.id, a.starts_at, a.starts_at - make_interval(mins => v_rule.offset_minutes),
           a.starts_at - make_interval(mins => v_rule.offset_minutes)
    FROM booking.appointments a
    WHERE a.tenant_id = p_tenant_id AND a.status IN ('pending', 'confirmed')
      AND a.starts_at > v_now + make_interval(mins => v_rule.offset_minutes)
      AND (v_rule.service_id IS NULL OR a.service_id = v_rule.service_id)
    -- (No now() in DO UPDATE: Citus takes only immutable functions there; excluded's default is now.)
    ON CONFLICT (tenant_id, appointment_id, rule_id, starts_at) DO UPDATE
        SET status = 'pending', reason = NULL, due_at = excluded.due_at, send_at = excluded.send_at, channels = NULL,
            updated_at = excluded.updated_at
        WHERE r.status = 'dropped';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Links ------------------------------------------------------------------------------------

-- The key that signs new links, made on first use.
CREATE FUNCTION booking_admin.current_link_key() RETURNS booking_admin.link_keys
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.link_keys;
BEGIN
    SELECT * INTO v FROM booking_admin.link_keys k WHERE k.retired_at IS NULL ORDER BY k.id DESC LIMIT 1;
    IF NOT FOUND THEN
        PERFORM pg_advisory_xact_lock(hashtext('booking_engine.link_keys'));
        SELECT * INTO v FROM booking_admin.link_keys k WHERE k.retired_at IS NULL ORDER BY k.id DESC LIMIT 1;
        IF NOT FOUND THEN
            INSERT INTO booking_admin.link_keys (key) VALUES (booking_internal.new_link_key()) RETURNING * INTO v;
        END IF;
    END IF;
    RETURN v;
END $$;

-- A new key signs the links sent from now on; the links the old ones signed keep working for
-- p_grace (0 to 90 days; they expire with their appointments anyway). Returns the new key's id.
-- For operators (a key suspected to have leaked: p_grace '0').
CREATE FUNCTION booking_admin.rotate_link_key(p_grace interval DEFAULT '30 days') RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM booking_admin.require_operator();
    IF p_grace IS NULL OR p_grace < interval '0' OR p_grace > interval '90 days' THEN
        RAISE EXCEPTION 'the grace period is between 0 and 90 days' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('booking_engine.link_keys'));
    UPDATE booking_admin.link_keys k SET retired_at = now() + p_grace WHERE k.retired_at IS NULL OR k.retired_at > now() + p_grace;
    INSERT INTO booking_admin.link_keys (key) VALUES (booking_internal.new_link_key()) RETURNING id INTO v_id;
    PERFORM booking.audit_event('delivery.link_key_rotate', 'link_key', v_id::text, true, NULL, true, NULL);
    RETURN v_id;
END $$;

-- The URL of a link: the tenant's page with the action and the token added.
CREATE FUNCTION booking_internal.link_url(p_base text, p_action text, p_token text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_base || CASE WHEN strpos(p_base, '?') > 0 THEN '&' ELSE '?' END || 'action=' || p_action || '&token=' || p_token
$$;

-- A presented token, checked: what it allows when it is well formed (PT400 otherwise), made by
-- one of our live keys (PT403: altered, or not ours), for this action (PT403) and not expired
-- (PT410). Whether it was used is for the caller to check, under the appointment's lock.
CREATE FUNCTION booking_internal.checked_link(p_token text, p_action text)
RETURNS TABLE (key_id integer, action text, tenant_id uuid, appointment_id uuid, starts_at timestamptz,
               expires_at timestamptz, digest bytea)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v record;
    v_key bytea;
BEGIN
    SELECT * INTO v FROM booking_internal.parse_link(p_token);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an appointment link' USING ERRCODE = 'PT400';
    END IF;
    SELECT k.key INTO v_key FROM booking_admin.link_keys k
    WHERE k.id = v.key_id AND (k.retired_at IS NULL OR k.retired_at > now());
    IF v_key IS NULL OR NOT booking_internal.link_is_authentic(p_token, v_key) THEN
        RAISE EXCEPTION 'this link is not valid' USING ERRCODE = 'PT403';
    END IF;
    IF v.action <> p_action THEN
        RAISE EXCEPTION 'this link does not %', p_action USING ERRCODE = 'PT403';
    END IF;
    IF v.expires_at <= booking.clock_now() THEN
        RAISE EXCEPTION 'this link expired at %', v.expires_at USING ERRCODE = 'PT410';
    END IF;
    RETURN QUERY SELECT v.key_id, v.action, v.tenant_id, v.appointment_id, v.starts_at, v.expires_at, v.digest;
END $$;

-- Every use of a link (and every try, valid or not) counts against its client: at most
-- booking_engine.link_rate_limit (60) in 10 minutes per address (PT429 beyond; 0: no limit).
CREATE FUNCTION booking_internal.count_link_request() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_limit integer := booking_internal.link_rate_limit();
BEGIN
    IF v_limit > 0 AND NOT booking.check_rate_limit(coalesce(booking.request_context() ->> 'ip_address', 'unknown'),
                                                     'appointment_link', v_limit, 600) THEN
        RAISE EXCEPTION 'too many appointment links from this client; try again later' USING ERRCODE = 'PT429';
    END IF;
END $$;

-- Confirms (p_action confirm) or cancels the one appointment a link names, for whoever holds
-- it: a customer without an account, from the link in a reminder. Once: a used link is PT409;
-- a link for a start the appointment no longer has is PT409 too (it moved: the newer message
-- has newer links); PT404 when the appointment is gone. The change itself is the one staff or
-- the customer would make (status rules, the cancellation deadline: a refusal answers
-- "success": false and leaves the link unused). Audited, refusals included.
CREATE FUNCTION booking_internal.use_appointment_link(p_token text, p_action text, p_reason text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_link record;
    v_appt booking.appointments;
    v_result jsonb;
    v_audit text := 'booking.link_' || p_action;
    -- For the audit of a refusal: the appointment the token names, and its tenant once the
    -- token proved to be ours (a forged token's tenant is not believed).
    v_tenant uuid;
    v_appointment uuid;
BEGIN
    SELECT p.appointment_id INTO v_appointment FROM booking_internal.parse_link(p_token) p;
    PERFORM booking_internal.count_link_request();
    SELECT * INTO v_link FROM booking_internal.checked_link(p_token, p_action);
    v_tenant := v_link.tenant_id;
    SELECT * INTO v_appt FROM booking.appointments a
    WHERE a.tenant_id = v_link.tenant_id AND a.id = v_link.appointment_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'appointment % does not exist', v_link.appointment_id USING ERRCODE = 'PT404';
    END IF;
    -- Under the appointment's lock: two uses at once are one after the other, and the second
    -- finds the first's record.
    IF EXISTS (SELECT 1 FROM booking_admin.link_uses u WHERE u.digest = v_link.digest) THEN
        RAISE EXCEPTION 'this link was used already' USING ERRCODE = 'PT409';
    END IF;
    IF v_appt.starts_at <> v_link.starts_at THEN
        RAISE EXCEPTION 'the appointment moved since this link was sent' USING ERRCODE = 'PT409',
            HINT = 'the message about the new time carries links for it';
    END IF;
    v_result := CASE p_action
        WHEN 'confirm' THEN booking.confirm_locked_appointment(v_appt, v_audit)
        ELSE booking.cancel_locked_appointment(v_appt, coalesce(p_reason, 'cancelled by the customer''s link'), NULL) END;
    IF (v_result ->> 'success')::boolean THEN
        INSERT INTO booking_admin.link_uses (digest, tenant_id, appointment_id, action, expires_at)
        VALUES (v_link.digest, v_link.tenant_id, v_link.appointment_id, p_action, v_link.expires_at);
        -- The cancellation's own entry is booking.cancel's; this one says it came by a link.
        IF p_action = 'cancel' THEN
            PERFORM booking.audit_event(v_audit, 'appointment', v_appt.id::text, true, NULL, false, v_appt.tenant_id);
        END IF;
    END IF;
    RETURN v_result;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event(v_audit, 'appointment', v_appointment::text, false, SQLSTATE || ': ' || SQLERRM, false, v_tenant);
    RAISE;
END $$;

CREATE FUNCTION booking_internal.confirm_appointment_by_link(p_token text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking_internal.use_appointment_link(p_token, 'confirm', NULL);
END $$;

CREATE FUNCTION booking_internal.cancel_appointment_by_link(p_token text, p_reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF length(p_reason) > 500 THEN
        RAISE EXCEPTION 'a reason has at most 500 characters' USING ERRCODE = '22023';
    END IF;
    RETURN booking_internal.use_appointment_link(p_token, 'cancel', p_reason);
END $$;

-- What a link's page shows before the customer acts (counted like a use, changes nothing):
-- {"action", "expires_at", "used", "appointment": {"status", "starts_at", "ends_at",
-- "starts_at_local", "time_zone", "service_name", "staff_name", "tenant_name", "moved"}}.
CREATE FUNCTION booking_internal.describe_appointment_link(p_token text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_link record;
    v_doc jsonb;
BEGIN
    PERFORM booking_internal.count_link_request();
    SELECT * INTO v_link FROM booking_internal.parse_link(p_token);
    SELECT * INTO v_link FROM booking_internal.checked_link(p_token, coalesce(v_link.action, 'confirm'));
    SELECT jsonb_build_object(
               'status', a.status, 'starts_at', a.starts_at, 'ends_at', a.ends_at, 'moved', a.starts_at <> v_link.starts_at,
               'time_zone', z.tz, 'starts_at_local', to_char(a.starts_at AT TIME ZONE z.tz, 'FMDay DD FMMonth YYYY, HH24:MI'),
               'service_name', s.name, 'staff_name', f.name, 'tenant_name', t.name)
    INTO v_doc
    FROM booking.appointments a
    JOIN booking.tenants t ON t.id = a.tenant_id
    JOIN booking.services s ON s.tenant_id = a.tenant_id AND s.id = a.service_id
    JOIN booking.staff f ON f.tenant_id = a.tenant_id AND f.id = a.staff_id
    JOIN booking.customers c ON c.tenant_id = a.tenant_id AND c.id = a.customer_id
    CROSS JOIN LATERAL (SELECT coalesce(c.timezone, f.timezone, t.timezone) AS tz) z
    WHERE a.tenant_id = v_link.tenant_id AND a.id = v_link.appointment_id;
    IF v_doc IS NULL THEN
        RAISE EXCEPTION 'appointment % does not exist', v_link.appointment_id USING ERRCODE = 'PT404';
    END IF;
    RETURN jsonb_build_object('action', v_link.action, 'expires_at', v_link.expires_at,
                              'used', EXISTS (SELECT 1 FROM booking_admin.link_uses u WHERE u.digest = v_link.digest),
                              'appointment', v_doc);
END $$;

-- Hand-off --------------------------------------------------------------------------------

-- The endpoint a tenant's scheduled messages of one channel go through: its own enabled email
-- (addressed to each customer, not a fixed mailto:) or SMS endpoint, else an operator's global
-- one; the oldest when there are several. NULL: none.
CREATE FUNCTION booking_admin.channel_endpoint(p_tenant_id uuid, p_channel text) RETURNS uuid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.id FROM booking_admin.delivery_endpoints e
    WHERE e.enabled AND e.channel = p_channel AND (e.tenant_id = p_tenant_id OR e.tenant_id IS NULL)
      AND (e.channel <> 'email' OR e.url IS NULL)
    ORDER BY e.tenant_id NULLS LAST, e.created_at, e.id
    LIMIT 1
$$;

-- The delivery worker's hand-off of due reminders, at most p_limit, oldest first, tenant by
-- tenant (each tenant's rows locked and written by statements routed to its shard on Citus):
-- - an appointment that no longer has that start or is no longer pending or confirmed: dropped;
-- - one that has started (the worker was down past it): skipped (reason started);
-- - now inside the rule's quiet hours on the customer's clock: deferred to their end when that
--   is before the start, else skipped (reason quiet_hours);
-- - else sent: one delivery per email and SMS channel through the tenant's endpoint for it
--   (booking_admin.channel_endpoint), a booking.reminder event for the webhook channel, with
--   signed confirm and cancel links when the tenant has a link page. What each channel did is
--   kept with the row (no endpoint, no address, opted out).
-- In the worker's transaction with the claim: a reminder is handed off exactly once, and its
-- deliveries are sent at least once. Returns the rows handled (0: none due).
CREATE FUNCTION booking_admin.fan_out_reminders(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_now timestamptz := booking.clock_now();
    v_at timestamptz := clock_timestamp();
    v_tenants uuid[];
    v_tenant uuid;
    v_due jsonb;
    v_done jsonb;
    v_key booking_admin.link_keys;
    v_left integer := greatest(coalesce(p_limit, 1000), 1);
    v_queued integer;
    v_sent record;
    n integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('booking_engine.fan_out_reminders'));
    -- The tenants of the next due rows (without locks; each is locked below by its tenant).
    SELECT array_agg(DISTINCT d.tenant_id) INTO v_tenants
    FROM (SELECT r.tenant_id FROM booking.reminders r WHERE r.status = 'pending' AND r.send_at <= v_now
          ORDER BY r.send_at LIMIT v_left) d;
    IF v_tenants IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH v_tenant IN ARRAY v_tenants LOOP
        EXIT WHEN v_left <= 0;
        SELECT jsonb_agg(to_jsonb(q)) INTO v_due FROM (
            SELECT r.appointment_id, r.rule_id, r.starts_at, r.id AS reminder_id,
                   a.id IS NULL AS gone, a.status AS appointment_status, a.starts_at AS appointment_starts_at,
                   a.ends_at, a.customer_id, a.staff_id, a.service_id,
                   u.channels, u.offset_minutes, u.quiet_start, u.quiet_end, u.template,
                   coalesce(c.timezone, st.timezone, t.timezone, 'UTC') AS tz, c.email, c.phone, m.link_base_url
            FROM booking.reminders r
            JOIN booking.reminder_rules u ON u.tenant_id = r.tenant_id AND u.id = r.rule_id
            LEFT JOIN booking.appointments a ON a.tenant_id = r.tenant_id AND a.id = r.appointment_id
            LEFT JOIN booking.customers c ON c.tenant_id = r.tenant_id AND c.id = a.customer_id
            LEFT JOIN booking.staff st ON st.tenant_id = r.tenant_id AND st.id = a.staff_id
            LEFT JOIN booking.tenants t ON t.id = r.tenant_id
            LEFT JOIN booking.messaging_settings m ON m.tenant_id = r.tenant_id
            WHERE r.tenant_id = v_tenant AND r.status = 'pending' AND r.send_at <= v_now
            ORDER BY r.send_at
            LIMIT v_left
            FOR UPDATE OF r) q;
        CONTINUE WHEN v_due IS NULL;
        -- What becomes of each, and the payload of those sent.
        WITH x AS (
            SELECT d.*,
                   CASE WHEN d.quiet_start IS NOT NULL AND NOT d.gone
                        THEN booking_internal.quiet_hours_end(v_now, d.tz, d.quiet_start, d.quiet_end) END AS quiet_until
            FROM jsonb_to_recordset(v_due) AS d (
                appointment_id uuid, rule_id uuid, starts_at timestamptz, reminder_id uuid, gone boolean,
                appointment_status text, appointment_starts_at timestamptz, ends_at timestamptz, customer_id uuid,
                staff_id uuid, service_id uuid, channels text[], offset_minutes integer, quiet_start time, quiet_end time,
                template jsonb, tz text, email text, phone text, link_base_url text)
        ), decided AS (
            SELECT x.*,
                   CASE WHEN x.gone OR x.appointment_status NOT IN ('pending', 'confirmed')
                             OR x.appointment_starts_at <> x.starts_at THEN 'dropped'
                        -- Handed off after the start (the worker was down): no use any more.
                        WHEN x.starts_at <= v_now THEN 'skipped'
                        WHEN x.quiet_until IS NOT NULL AND x.quiet_until >= x.starts_at THEN 'skipped'
                        WHEN x.quiet_until IS NOT NULL THEN 'deferred'
                        ELSE 'sent' END AS outcome
            FROM x
        )
        SELECT jsonb_agg(jsonb_build_object(
                   'appointment_id', d.appointment_id, 'rule_id', d.rule_id, 'starts_at', d.starts_at,
                   'outcome', d.outcome, 'channels', d.channels, 'email', d.email, 'phone', d.phone, 'template', d.template,
                   'send_at', CASE WHEN d.outcome = 'deferred' THEN d.quiet_until END,
                   'reason', CASE d.outcome
                       WHEN 'dropped' THEN CASE WHEN d.gone THEN 'deleted'
                                                WHEN d.appointment_status IN ('pending', 'confirmed') THEN 'rescheduled'
                                                ELSE d.appointment_status END
                       WHEN 'sent' THEN NULL
                       ELSE CASE WHEN d.starts_at <= v_now THEN 'started' ELSE 'quiet_hours' END END,
                   'payload', CASE WHEN d.outcome = 'sent' THEN jsonb_strip_nulls(jsonb_build_object(
                       'reminder_id', d.reminder_id, 'appointment_id', d.appointment_id, 'customer_id', d.customer_id,
                       'staff_id', d.staff_id, 'service_id', d.service_id, 'starts_at', d.starts_at, 'ends_at', d.ends_at,
                       'rule_id', d.rule_id, 'offset_minutes', d.offset_minutes, 'link_base_url', d.link_base_url)) END))
        INTO v_done
        FROM decided d;
        -- Links, signed here on the coordinator (the key never travels to a worker).
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_done) e WHERE e #>> '{payload,link_base_url}' IS NOT NULL) THEN
            v_key := coalesce(v_key, booking_admin.current_link_key());
            SELECT jsonb_agg(CASE WHEN e #>> '{payload,link_base_url}' IS NULL THEN e
                                  ELSE jsonb_set(e, '{payload}', (e -> 'payload') - 'link_base_url' || jsonb_build_object(
                                      'confirm_url', booking_internal.link_url(e #>> '{payload,link_base_url}', 'confirm',
                                          booking_internal.sign_link(v_key.key, v_key.id, 'confirm', v_tenant,
                                              (e ->> 'appointment_id')::uuid, (e ->> 'starts_at')::timestamptz,
                                              (e ->> 'starts_at')::timestamptz)),
                                      'cancel_url', booking_internal.link_url(e #>> '{payload,link_base_url}', 'cancel',
                                          booking_internal.sign_link(v_key.key, v_key.id, 'cancel', v_tenant,
                                              (e ->> 'appointment_id')::uuid, (e ->> 'starts_at')::timestamptz,
                                              (e ->> 'starts_at')::timestamptz)))) END)
            INTO v_done FROM jsonb_array_elements(v_done) e;
        END IF;
        -- Each channel of each one sent: what happened.
        WITH sent AS (
            SELECT e, ch.channel,
                   CASE WHEN ch.channel = 'webhook' THEN NULL ELSE booking_admin.channel_endpoint(v_tenant, ch.channel) END AS endpoint_id
            FROM jsonb_array_elements(v_done) e, jsonb_array_elements_text(e -> 'channels') ch (channel)
            WHERE e ->> 'outcome' = 'sent'
        ), results AS (
            SELECT s.*, CASE WHEN s.channel = 'webhook' THEN 'event'
                             WHEN s.endpoint_id IS NULL THEN 'no_endpoint'
                             WHEN s.channel = 'email' AND s.e ->> 'email' IS NULL THEN 'no_address'
                             WHEN s.channel = 'sms' AND s.e ->> 'phone' IS NULL THEN 'no_address'
                             WHEN s.channel = 'sms' AND booking_admin.sms_opted_out(v_tenant, s.e ->> 'phone') THEN 'opted_out'
                             ELSE 'queued' END AS result
            FROM sent s
        ), queued AS (
            INSERT INTO booking_admin.deliveries (id, endpoint_id, tenant_id, message_id, event_type, payload, event_created_at)
            SELECT q.id, q.endpoint_id, v_tenant, 'msg_' || replace(q.id::text, '-', ''), 'booking.reminder', q.payload, v_at
            -- The rule's own template travels with its email and SMS messages (not the event).
            FROM (SELECT gen_random_uuid() AS id, r.endpoint_id,
                         (r.e -> 'payload') || jsonb_strip_nulls(jsonb_build_object('template', r.e -> 'template')) AS payload
                  FROM results r WHERE r.result = 'queued') q
            RETURNING 1
        )
        SELECT jsonb_agg(CASE WHEN o.item ->> 'outcome' = 'sent' THEN o.item || jsonb_build_object('results', (
                                  SELECT jsonb_object_agg(r.channel, r.result) FROM results r
                                  WHERE r.e ->> 'appointment_id' = o.item ->> 'appointment_id'
                                    AND r.e ->> 'rule_id' = o.item ->> 'rule_id'))
                              ELSE o.item END),
               (SELECT count(*) FROM queued)
        INTO v_done, v_queued
        FROM jsonb_array_elements(v_done) o (item);
        FOR v_sent IN SELECT e -> 'payload' AS payload FROM jsonb_array_elements(v_done) e
                      WHERE e ->> 'outcome' = 'sent' AND e -> 'channels' ? 'webhook' LOOP
            PERFORM booking.emit_event(v_tenant, 'booking.reminder', v_sent.payload);
        END LOOP;
        IF v_queued > 0 THEN
            PERFORM booking.wake_delivery_at_commit();
        END IF;
        UPDATE booking.reminders r SET
            -- (A searched CASE: Citus deparses a simple one wrongly on its way to the worker.)
            status = CASE WHEN d.outcome = 'deferred' THEN 'pending' ELSE d.outcome END,
            -- A late booking's or quiet hours' reason stays with a reminder sent after all.
            reason = coalesce(d.reason, r.reason),
            send_at = coalesce(d.send_at, r.send_at),
            channels = d.results,
            sent_at = CASE WHEN d.outcome = 'sent' THEN v_at END,
            updated_at = v_at
        FROM jsonb_to_recordset(v_done) AS d (appointment_id uuid, rule_id uuid, starts_at timestamptz, outcome text,
                                               reason text, send_at timestamptz, results jsonb)
        WHERE r.tenant_id = v_tenant AND r.appointment_id = d.appointment_id AND r.rule_id = d.rule_id
          AND r.starts_at = d.starts_at;
        v_left := v_left - jsonb_array_length(v_due);
        n := n + jsonb_array_length(v_due);
    END LOOP;
    RETURN n;
END $$;

-- In how many milliseconds the next pending reminder is due (on the extension's clock); NULL:
-- none is pending. The delivery worker sleeps no longer than that.
CREATE FUNCTION booking_admin.next_reminder_due_ms() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (extract(epoch FROM min(r.send_at) - booking.clock_now()) * 1000)::int8
    FROM booking.reminders r WHERE r.status = 'pending'
$$;

-- The staff's agenda ------------------------------------------------------------------------

-- The scheduled operation behind the tenants' agenda schedules: for each tenant whose
-- agenda_cron time has come, one staff.agenda message per active staff member with an e-mail
-- address (their pending and confirmed appointments of the tenant's local day, times on their
-- own clock) through the tenant's email endpoint, then the next time from its cron expression
-- in the tenant's zone. A tenant without an email endpoint gets none (its next time still
-- moves on). Returns the messages queued.
CREATE FUNCTION booking_admin.op_staff_agenda(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_now timestamptz := booking.clock_now();
    v_at timestamptz := clock_timestamp();
    r record;
    v_endpoint uuid;
    v_day date;
    v_staff jsonb;
    v_next timestamptz;
    v_queued integer;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT m.tenant_id, m.agenda_cron, t.timezone
        FROM booking.messaging_settings m JOIN booking.tenants t ON t.id = m.tenant_id
        WHERE m.agenda_cron IS NOT NULL AND m.agenda_next_at <= v_now
    LOOP
        v_day := (v_now AT TIME ZONE r.timezone)::date;
        v_endpoint := booking_admin.channel_endpoint(r.tenant_id, 'email');
        IF v_endpoint IS NOT NULL THEN
            SELECT jsonb_agg(jsonb_build_object('staff_id', f.id, 'recipient_email', f.email, 'date', v_day,
                       'appointments', coalesce((
                           SELECT jsonb_agg(jsonb_build_object('appointment_id', a.id, 'starts_at', a.starts_at,
                                      'ends_at', a.ends_at, 'status', a.status, 'service_name', s.name,
                                      'customer_name', c.name) ORDER BY a.starts_at)
                           FROM booking.appointments a
                           JOIN booking.services s ON s.tenant_id = a.tenant_id AND s.id = a.service_id
                           JOIN booking.customers c ON c.tenant_id = a.tenant_id AND c.id = a.customer_id
                           WHERE a.tenant_id = r.tenant_id AND a.staff_id = f.id AND a.status IN ('pending', 'confirmed')
                             AND a.starts_at >= v_day::timestamp AT TIME ZONE r.timezone
                             AND a.starts_at < (v_day + 1)::timestamp AT TIME ZONE r.timezone), '[]')))
            INTO v_staff
            FROM booking.staff f
            WHERE f.tenant_id = r.tenant_id AND f.is_active AND f.email IS NOT NULL;
            INSERT INTO booking_admin.deliveries (id, endpoint_id, tenant_id, message_id, event_type, payload, event_created_at)
            SELECT q.id, v_endpoint, r.tenant_id, 'msg_' || replace(q.id::text, '-', ''), 'staff.agenda', q.payload, v_at
            FROM (SELECT gen_random_uuid() AS id, e AS payload FROM jsonb_array_elements(coalesce(v_staff, '[]')) e) q;
            GET DIAGNOSTICS v_queued = ROW_COUNT;
            IF v_queued > 0 THEN
                PERFORM booking.wake_delivery_at_commit();
            END IF;
            n := n + v_queued;
        END IF;
        v_next := booking_admin.cron_next(r.agenda_cron, r.timezone, v_now);
        UPDATE booking.messaging_settings m SET agenda_next_at = v_next, agenda_last_at = v_now
        WHERE m.tenant_id = r.tenant_id;
    END LOOP;
    RETURN n;
END $$;

-- Finished reminders (sent, skipped, dropped) of appointments that started more than
-- retention_days (90) ago, and the single-use records of links expired a day ago.
CREATE FUNCTION booking_admin.op_cleanup_reminders(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_before timestamptz := booking.clock_now() - make_interval(days => coalesce((p_settings ->> 'retention_days')::int, 90));
    n integer;
    m integer;
BEGIN
    DELETE FROM booking.reminders r WHERE r.status <> 'pending' AND r.starts_at < v_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM booking_admin.link_uses u WHERE u.expires_at < now() - interval '1 day';
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('staff-agenda', 'Send each tenant''s staff their agenda of the day at the tenant''s agenda_cron time',
     'booking_admin.op_staff_agenda', '{}', 60000, 3, 60000),
    ('cleanup-reminders', 'Delete finished reminders past retention and expired links'' single-use records',
     'booking_admin.op_cleanup_reminders', '{"retention_days": 90}', 86400000, 3, 60000);

-- The tenants' RPCs ---------------------------------------------------------------------------

-- A rule's own template, checked like the tenants' templates: {"subject", "body_text"
-- (required), "body_html"} with known placeholders (22023 otherwise). JSON null: none.
CREATE FUNCTION booking_internal.reminder_template(p_template jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_template IS NULL OR jsonb_typeof(p_template) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_template) <> 'object' OR jsonb_typeof(p_template -> 'subject') IS DISTINCT FROM 'string'
       OR jsonb_typeof(p_template -> 'body_text') IS DISTINCT FROM 'string'
       OR jsonb_typeof(coalesce(p_template -> 'body_html', '""')) NOT IN ('string', 'null')
       OR p_template - ARRAY['subject', 'body_text', 'body_html'] <> '{}' THEN
        RAISE EXCEPTION 'p_rule.template is {"subject", "body_text", "body_html"}: two strings and an optional one'
            USING ERRCODE = '22023';
    END IF;
    PERFORM booking_internal.check_template(p_template ->> 'subject'), booking_internal.check_template(p_template ->> 'body_text'),
            booking_internal.check_template(coalesce(p_template ->> 'body_html', ''));
    RETURN jsonb_strip_nulls(p_template);
END $$;

-- A rule as its owners see it.
CREATE FUNCTION booking_internal.reminder_rule_json(p_rule booking.reminder_rules) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(p_rule) || jsonb_build_object(
        'quiet_start', to_char(p_rule.quiet_start, 'HH24:MI'), 'quiet_end', to_char(p_rule.quiet_end, 'HH24:MI'))
$$;

-- Creates a rule (p_rule_id NULL) or changes one: {"name", "service_id" (NULL: every service),
-- "offset_minutes" (required to create), "channels" (["email", "sms", "webhook"], default
-- ["email"]), "quiet_start", "quiet_end" ("22:00", "08:00"; both or neither, null to clear),
-- "late_booking" ("send" | "skip"), "enabled", "template" ({"subject", "body_text",
-- "body_html"}: the rule's own message; null: the tenant's)}. Owners and managers. The rule's reminders are
-- armed again for the tenant's upcoming appointments. Returns the rule with "armed", the
-- upcoming reminders it has now.
CREATE FUNCTION booking_internal.set_reminder_rule(p_tenant_id uuid, p_rule jsonb, p_rule_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_rule booking.reminder_rules;
    v_channels text[];
    v_armed integer;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.reminder_rule_set', '{owner,manager}');
    PERFORM booking_internal.check_fields(p_rule, 'p_rule',
        ARRAY['name', 'service_id', 'offset_minutes', 'channels', 'quiet_start', 'quiet_end', 'late_booking', 'enabled',
              'template'],
        CASE WHEN p_rule_id IS NULL THEN ARRAY['offset_minutes'] ELSE '{}' END);
    IF p_rule ? 'channels' THEN
        IF jsonb_typeof(p_rule -> 'channels') <> 'array' THEN
            RAISE EXCEPTION 'p_rule.channels is an array of email, sms, webhook' USING ERRCODE = '22023';
        END IF;
        v_channels := ARRAY(SELECT DISTINCT jsonb_array_elements_text(p_rule -> 'channels') ORDER BY 1);
        IF cardinality(v_channels) = 0 OR NOT v_channels <@ ARRAY['email', 'sms', 'webhook'] THEN
            RAISE EXCEPTION 'p_rule.channels is a non-empty array of email, sms, webhook' USING ERRCODE = '22023';
        END IF;
    END IF;
    IF p_rule ? 'offset_minutes' AND NOT coalesce((p_rule ->> 'offset_minutes') ~ '^[0-9]{1,5}$'
                                                  AND (p_rule ->> 'offset_minutes')::int BETWEEN 1 AND 86400, false) THEN
        RAISE EXCEPTION 'p_rule.offset_minutes is a whole number of minutes from 1 to 86400 (60 days)' USING ERRCODE = '22023';
    END IF;
    IF p_rule ->> 'late_booking' NOT IN ('send', 'skip') THEN
        RAISE EXCEPTION 'p_rule.late_booking is send or skip' USING ERRCODE = '22023';
    END IF;
    IF (p_rule ? 'quiet_start') <> (p_rule ? 'quiet_end') THEN
        RAISE EXCEPTION 'quiet hours need quiet_start and quiet_end together' USING ERRCODE = '22023';
    END IF;
    IF p_rule ->> 'service_id' IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM booking.services s WHERE s.tenant_id = p_tenant_id AND s.id = (p_rule ->> 'service_id')::uuid) THEN
        RAISE EXCEPTION 'service % does not exist', p_rule ->> 'service_id' USING ERRCODE = 'PT404';
    END IF;
    IF p_rule_id IS NULL THEN
        INSERT INTO booking.reminder_rules (tenant_id, service_id, name, offset_minutes, channels, quiet_start, quiet_end,
                                            late_booking, enabled, template)
        VALUES (p_tenant_id, (p_rule ->> 'service_id')::uuid, coalesce(p_rule ->> 'name', ''), (p_rule ->> 'offset_minutes')::int,
                coalesce(v_channels, ARRAY['email']), (p_rule ->> 'quiet_start')::time, (p_rule ->> 'quiet_end')::time,
                coalesce(p_rule ->> 'late_booking', 'skip'), coalesce((p_rule ->> 'enabled')::boolean, true),
                booking_internal.reminder_template(p_rule -> 'template'))
        RETURNING * INTO v_rule;
    ELSE
        UPDATE booking.reminder_rules u SET
            service_id = CASE WHEN p_rule ? 'service_id' THEN (p_rule ->> 'service_id')::uuid ELSE u.service_id END,
            name = coalesce(p_rule ->> 'name', u.name),
            offset_minutes = coalesce((p_rule ->> 'offset_minutes')::int, u.offset_minutes),
            channels = coalesce(v_channels, u.channels),
            quiet_start = CASE WHEN p_rule ? 'quiet_start' THEN (p_rule ->> 'quiet_start')::time ELSE u.quiet_start END,
            quiet_end = CASE WHEN p_rule ? 'quiet_end' THEN (p_rule ->> 'quiet_end')::time ELSE u.quiet_end END,
            late_booking = coalesce(p_rule ->> 'late_booking', u.late_booking),
            enabled = coalesce((p_rule ->> 'enabled')::boolean, u.enabled),
            template = CASE WHEN p_rule ? 'template' THEN booking_internal.reminder_template(p_rule -> 'template') ELSE u.template END
        WHERE u.tenant_id = p_tenant_id AND u.id = p_rule_id
        RETURNING * INTO v_rule;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'reminder rule % does not exist', p_rule_id USING ERRCODE = 'PT404';
        END IF;
    END IF;
    PERFORM booking_internal.rearm_reminder_rule(p_tenant_id, v_rule.id);
    SELECT count(*) INTO v_armed FROM booking.reminders r
    WHERE r.tenant_id = p_tenant_id AND r.rule_id = v_rule.id AND r.status = 'pending';
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.reminder_rule_set', 'reminder_rule', v_rule.id::text,
                                           NULL, NULL);
    RETURN booking_internal.reminder_rule_json(v_rule) || jsonb_build_object('armed', v_armed);
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.reminder_rule_set', 'reminder_rule', p_rule_id::text, false, SQLSTATE || ': ' || SQLERRM,
                                false, p_tenant_id);
    RAISE;
END $$;

-- Removes a rule and its reminders (sent ones' history with them). Owners and managers.
CREATE FUNCTION booking_internal.delete_reminder_rule(p_tenant_id uuid, p_rule_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.reminder_rule_delete', '{owner,manager}');
    DELETE FROM booking.reminder_rules u WHERE u.tenant_id = p_tenant_id AND u.id = p_rule_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reminder rule % does not exist', p_rule_id USING ERRCODE = 'PT404';
    END IF;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.reminder_rule_delete', 'reminder_rule', p_rule_id::text,
                                           NULL, NULL);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.reminder_rule_delete', 'reminder_rule', p_rule_id::text, false,
                                SQLSTATE || ': ' || SQLERRM, false, p_tenant_id);
    RAISE;
END $$;

-- The tenant's rules and messaging settings: {"rules": [...], "settings": {...}}. Owners and
-- managers.
CREATE FUNCTION booking_internal.get_reminder_settings(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    PERFORM booking_internal.require_role(p_tenant_id, 'booking.reminder_settings', '{owner,manager}');
    RETURN jsonb_build_object(
        'rules', coalesce((SELECT jsonb_agg(booking_internal.reminder_rule_json(u) ORDER BY u.offset_minutes DESC, u.created_at)
                           FROM booking.reminder_rules u WHERE u.tenant_id = p_tenant_id), '[]'),
        'settings', coalesce((SELECT to_jsonb(m) - 'tenant_id' FROM booking.messaging_settings m WHERE m.tenant_id = p_tenant_id),
                             '{}'));
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.reminder_settings', 'tenant', p_tenant_id::text, false, SQLSTATE || ': ' || SQLERRM,
                                false, p_tenant_id);
    RAISE;
END $$;

-- The tenant's messaging settings: {"link_base_url" (https://... or null), "agenda_cron" (a
-- five-field cron expression in the tenant's zone, null or '' to stop the agenda)}. Owners and
-- managers. Returns the settings with the agenda's next time.
CREATE FUNCTION booking_internal.set_messaging_settings(p_tenant_id uuid, p_settings jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    v_cron text;
    v_zone text;
    v_next timestamptz;
    v_row booking.messaging_settings;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.messaging_settings', '{owner,manager}');
    PERFORM booking_internal.check_fields(p_settings, 'p_settings', ARRAY['link_base_url', 'agenda_cron']);
    IF p_settings ->> 'link_base_url' !~ '^https?://[^\s]+$' THEN
        RAISE EXCEPTION 'link_base_url is the http(s) URL of the page the links open' USING ERRCODE = '22023';
    END IF;
    v_cron := nullif(btrim(p_settings ->> 'agenda_cron'), '');
    IF v_cron IS NOT NULL THEN
        v_cron := booking_admin.check_cron(v_cron);
    END IF;
    SELECT t.timezone INTO v_zone FROM booking.tenants t WHERE t.id = p_tenant_id;
    -- Worked out here, not in the INSERT: Citus evaluates a distributed INSERT's functions before
    -- it routes it, CASE or not.
    IF v_cron IS NOT NULL THEN
        v_next := booking_admin.cron_next(v_cron, v_zone, booking.clock_now());
    END IF;
    INSERT INTO booking.messaging_settings AS m (tenant_id, link_base_url, agenda_cron, agenda_next_at)
    VALUES (p_tenant_id, p_settings ->> 'link_base_url', v_cron, v_next)
    ON CONFLICT (tenant_id) DO UPDATE SET
        link_base_url = CASE WHEN p_settings ? 'link_base_url' THEN excluded.link_base_url ELSE m.link_base_url END,
        agenda_cron = CASE WHEN p_settings ? 'agenda_cron' THEN excluded.agenda_cron ELSE m.agenda_cron END,
        agenda_next_at = CASE WHEN p_settings ? 'agenda_cron' THEN excluded.agenda_next_at ELSE m.agenda_next_at END,
        updated_at = excluded.updated_at
    RETURNING * INTO v_row;
    PERFORM booking_internal.record_change(p_tenant_id, v_role, 'booking.messaging_settings', 'tenant', p_tenant_id::text,
                                           NULL, NULL);
    RETURN to_jsonb(v_row) - 'tenant_id';
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.messaging_settings', 'tenant', p_tenant_id::text, false, SQLSTATE || ': ' || SQLERRM,
                                false, p_tenant_id);
    RAISE;
END $$;

-- One appointment's reminders, as the tenant's people follow them: [{"rule_id", "starts_at",
-- "due_at", "send_at", "status", "reason", "channels", "sent_at"}], by start and due time.
-- Every member (staff: their own appointments' only).
CREATE FUNCTION booking_internal.get_appointment_reminders(p_tenant_id uuid, p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.reminders', '{owner,manager,receptionist,staff}');
    IF NOT EXISTS (SELECT 1 FROM booking.appointments a
                   WHERE a.tenant_id = p_tenant_id AND a.id = p_appointment_id
                     AND (v_role <> 'staff' OR a.staff_id IN (SELECT f.id FROM booking.staff f
                                                               WHERE f.tenant_id = p_tenant_id AND f.user_id = booking.caller_user_id()))) THEN
        RAISE EXCEPTION 'appointment % does not exist', p_appointment_id USING ERRCODE = 'PT404';
    END IF;
    RETURN coalesce((SELECT jsonb_agg(to_jsonb(r) - 'tenant_id' - 'appointment_id' - 'created_at' - 'updated_at'
                                      ORDER BY r.starts_at, r.due_at)
                     FROM booking.reminders r WHERE r.tenant_id = p_tenant_id AND r.appointment_id = p_appointment_id), '[]');
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('booking.reminders', 'appointment', p_appointment_id::text, false, SQLSTATE || ': ' || SQLERRM,
                                false, p_tenant_id);
    RAISE;
END $$;

REVOKE ALL ON FUNCTION booking_admin.fan_out_reminders(integer), booking_admin.next_reminder_due_ms(),
    booking_admin.current_link_key(), booking_admin.channel_endpoint(uuid, text), booking_admin.op_staff_agenda(jsonb),
    booking_admin.op_cleanup_reminders(jsonb), booking_admin.rotate_link_key(interval)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking_admin.rotate_link_key(interval) TO booking_operator;
-- Operators read the tenants' rules and reminders like the rest of their data (not the keys or
-- the links' uses).
GRANT SELECT ON booking.reminder_rules, booking.reminders, booking.messaging_settings TO booking_operator;
