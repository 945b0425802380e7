-- Outbound delivery: every committed booking.events row fans out to the endpoints subscribed to
-- its type (signed webhooks, Slack, email, SMS). The events table is the outbox: the delivery worker
-- (src/delivery/worker.rs) expands new events into deliveries (fan_out_events), sends them,
-- records every attempt, and retries on a schedule. A rolled-back change wrote no event and
-- sends nothing; a committed one is never lost.
--
-- Operators manage it (superusers, booking_operator members, service_role JWTs); nothing here
-- is for PUBLIC. Secrets live in a table no role but the extension's owner can read: they are
-- shown once, when created or rotated.

-- The event types an endpoint may subscribe to (a feature that emits a new type adds its row).
CREATE TABLE booking_admin.delivery_event_types (
    event_type  text PRIMARY KEY CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
    description text NOT NULL
);
INSERT INTO booking_admin.delivery_event_types (event_type, description) VALUES
    ('booking.created', 'A booking was created'),
    ('booking.rescheduled', 'A booking moved to another time'),
    ('booking.cancelled', 'A booking was cancelled'),
    ('booking.confirmed', 'Staff confirmed a booking'),
    ('booking.checked_in', 'The customer checked in'),
    ('booking.completed', 'A booking was completed'),
    ('booking.no_show', 'The customer did not come'),
    ('booking.activated', 'The scheduler started a confirmed booking at its time'),
    ('booking.expired', 'The scheduler expired a pending booking'),
    ('waitlist.notified', 'A freed slot was offered to a waitlist entry'),
    ('conflict.detected', 'A booking lost a race for its slot'),
    ('alert.firing', 'An alert rule started firing'),
    ('alert.resolved', 'A firing alert resolved'),
    ('booking.reminder', 'A reminder rule fell due for an appointment (sql/reminders.sql)'),
    ('staff.agenda', 'A staff member''s agenda of the day (sql/reminders.sql)');

CREATE TABLE booking_admin.delivery_endpoints (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: every tenant's events (a global endpoint).
    tenant_id            uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    channel              text NOT NULL CHECK (channel IN ('webhook', 'slack', 'email', 'sms')),
    -- webhook and slack: the http(s) URL; email: 'mailto:address' for a fixed recipient, or
    -- NULL for the customer of each event; sms: the provider's API URL (each message goes to the
    -- customer's phone).
    url                  text,
    event_types          text[] NOT NULL CHECK (cardinality(event_types) > 0),
    description          text NOT NULL DEFAULT '',
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    disabled_at          timestamptz,
    max_in_flight        integer NOT NULL DEFAULT 4 CHECK (max_in_flight BETWEEN 1 AND 64),
    timeout_ms           integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 100 AND 120000),
    -- The circuit breaker: failures in a row, since when, and until when no attempt is made.
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz,
    circuit_open_until   timestamptz,
    -- Since when the endpoint is enabled: it receives the events created from then on.
    enabled_at           timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- sms: {"provider": "twilio" | "json", "from": the sender, "username"}; the password or
    -- token is in booking_admin.delivery_credentials.
    settings             jsonb NOT NULL DEFAULT '{}',
    CHECK (channel = 'email' OR url IS NOT NULL),
    CHECK (enabled OR disabled_reason IS NOT NULL),
    CHECK ((channel = 'sms') = (settings ? 'provider'))
);
CREATE INDEX delivery_endpoints_tenant_idx ON booking_admin.delivery_endpoints (tenant_id);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_endpoints', '');

-- Signing keys: several at once while a secret rotates (each message carries one signature per
-- key until the old one expires). No grants: read only by the extension's functions.
CREATE TABLE booking_admin.delivery_secrets (
    endpoint_id uuid NOT NULL REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    PRIMARY KEY (endpoint_id, secret)
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_secrets', '');

-- What an SMS endpoint authenticates to its provider with: a basic-auth password or a bearer
-- token. No grants, like the secrets: written once (create, update), never read back.
CREATE TABLE booking_admin.delivery_credentials (
    endpoint_id uuid PRIMARY KEY REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    password    text,
    token       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_credentials', '');

-- Partitioned by week of creation (sql/partitions.sql): retention drops whole weeks, once
-- every delivery of the week is delivered or dead.
CREATE TABLE booking_admin.deliveries (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    endpoint_id      uuid NOT NULL REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    tenant_id        uuid,
    -- The booking.events row (NULL for a test event).
    event_id         uuid,
    -- webhook-id: the same on every attempt and replay, the receiver's idempotency key.
    message_id       text NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    event_created_at timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Retries stop once this plus booking_engine.delivery_retry_horizon has passed (a replay
    -- starts it again).
    horizon_from     timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- The event's W3C trace context: every attempt is a span of its trace, and the webhook's
    -- traceparent header continues it.
    traceparent      text,
    tracestate       text,
    -- Whom it went to (the address or number the worker used), and for SMS the provider's id of
    -- the message and the last delivery receipt for it (booking.sms_inbound).
    recipient           text,
    provider_message_id text,
    receipt_status      text,
    receipt_at          timestamptz
) PARTITION BY RANGE (created_at);
-- The key and the indexes are the partitions' (sql/partitions.sql), each week's copied from the
-- default partition's. Only the indexes the worker and the API need: the due ones per endpoint,
-- and per endpoint by creation (replays, statistics, the endpoint's cascade). Finding what a
-- stopped worker was sending is a scan, once per worker start.
CREATE TABLE booking_admin.deliveries_default PARTITION OF booking_admin.deliveries (
    CONSTRAINT deliveries_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX deliveries_due_idx ON booking_admin.deliveries_default (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint_created_idx ON booking_admin.deliveries_default (endpoint_id, created_at);
-- A receipt finds its message.
CREATE INDEX deliveries_provider_message_idx ON booking_admin.deliveries_default (endpoint_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('booking_admin.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.deliveries_default', '');

-- The attempts ledger: one row per attempt, whatever its outcome. Partitioned by week of the
-- attempt; its deliveries are found by delivery_id (no foreign key: a referenced partition
-- could not be dropped in O(1)), and an endpoint's deletion removes its attempts as it removes
-- its deliveries.
CREATE TABLE booking_admin.delivery_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    delivery_id      uuid NOT NULL,
    endpoint_id      uuid NOT NULL REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    status_code      integer,
    error            text,
    response_excerpt text,
    -- delivered, retry, dead, gone (410: endpoint disabled), interrupted (the worker stopped),
    -- suppressed (not sent: the recipient opted out).
    outcome          text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'gone', 'interrupted', 'suppressed'))
) PARTITION BY RANGE (started_at);
CREATE TABLE booking_admin.delivery_attempts_default PARTITION OF booking_admin.delivery_attempts (
    CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX delivery_attempts_delivery_idx ON booking_admin.delivery_attempts_default (delivery_id);
CREATE INDEX delivery_attempts_endpoint_started_idx ON booking_admin.delivery_attempts_default (endpoint_id, started_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_attempts_default', '');

-- Message templates for email (and the text of Slack messages). tenant_id NULL: the defaults.
CREATE TABLE booking_admin.message_templates (
    tenant_id  uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    event_type text NOT NULL REFERENCES booking_admin.delivery_event_types (event_type),
    subject    text NOT NULL,
    body_text  text NOT NULL,
    body_html  text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (tenant_id, event_type)
);
-- For the foreign key: a removed event type finds its templates without a scan.
CREATE INDEX message_templates_event_type_idx ON booking_admin.message_templates (event_type);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.message_templates', 'WHERE tenant_id IS NOT NULL');
INSERT INTO booking_admin.message_templates (tenant_id, event_type, subject, body_text, body_html) VALUES
    (NULL, 'booking.created', 'Your booking at {{tenant_name}} on {{date_local}}',
     E'Hello {{customer_name}},\n\nyour {{service_name}} with {{staff_name}} is booked for {{starts_at_local}} ({{time_zone}}).\n\n{{tenant_name}}',
     '<p>Hello {{customer_name}},</p><p>your <b>{{service_name}}</b> with {{staff_name}} is booked for <b>{{starts_at_local}}</b> ({{time_zone}}).</p><p>{{tenant_name}}</p>'),
    (NULL, 'booking.rescheduled', 'Your booking at {{tenant_name}} moved to {{date_local}}',
     E'Hello {{customer_name}},\n\nyour {{service_name}} with {{staff_name}} now starts at {{starts_at_local}} ({{time_zone}}).\n\n{{tenant_name}}',
     '<p>Hello {{customer_name}},</p><p>your <b>{{service_name}}</b> with {{staff_name}} now starts at <b>{{starts_at_local}}</b> ({{time_zone}}).</p><p>{{tenant_name}}</p>'),
    (NULL, 'booking.cancelled', 'Your booking at {{tenant_name}} on {{date_local}} is cancelled',
     E'Hello {{customer_name}},\n\nyour {{service_name}} on {{starts_at_local}} ({{time_zone}}) is cancelled. {{reason}}\n\n{{tenant_name}}',
     '<p>Hello {{customer_name}},</p><p>your <b>{{service_name}}</b> on {{starts_at_local}} ({{time_zone}}) is cancelled. {{reason}}</p><p>{{tenant_name}}</p>'),
    (NULL, 'waitlist.notified', 'A slot opened at {{tenant_name}}: {{starts_at_local}}',
     E'Hello {{customer_name}},\n\na {{service_name}} slot with {{staff_name}} is free on {{starts_at_local}} ({{time_zone}}). Book it before someone else does.\n\n{{tenant_name}}',
     '<p>Hello {{customer_name}},</p><p>a <b>{{service_name}}</b> slot with {{staff_name}} is free on <b>{{starts_at_local}}</b> ({{time_zone}}). Book it before someone else does.</p><p>{{tenant_name}}</p>'),
    -- Short enough for one text message: SMS sends the plain-text body.
    (NULL, 'booking.reminder', 'Reminder: {{service_name}} at {{tenant_name}}, {{starts_at_local}}',
     'Reminder from {{tenant_name}}: your {{service_name}} with {{staff_name}} is on {{starts_at_local}} ({{time_zone}}).',
     '<p>Hello {{customer_name}},</p><p>a reminder of your <b>{{service_name}}</b> with {{staff_name}} on <b>{{starts_at_local}}</b> ({{time_zone}}).</p><p>{{tenant_name}}</p>'),
    (NULL, 'staff.agenda', 'Your agenda for {{date_local}}: {{appointment_count}} appointments',
     E'Good morning {{staff_name}},\n\n{{agenda}}\n\n{{tenant_name}}',
     '<p>Good morning {{staff_name}},</p><pre>{{agenda}}</pre><p>{{tenant_name}}</p>');

-- The outbox's fan-out mark: NULL until the delivery worker has expanded the event into its
-- deliveries.
ALTER TABLE booking.events ADD COLUMN fanned_out_at timestamptz;
CREATE INDEX events_fan_out_idx ON booking.events_default (created_at) WHERE fanned_out_at IS NULL;

-- Fan-out, by the delivery worker, in its own transaction: the next p_limit events not yet
-- expanded, oldest first, each into one delivery per enabled endpoint subscribed to its type
-- (the exact type, 'prefix.*' or '*'; the endpoint's tenant or a global endpoint) that was
-- enabled when the event was created; then the events are marked. A booking therefore writes
-- one event, whatever the number of subscriptions, and on Citus the events written on the
-- workers are expanded on the coordinator, where the endpoints and the ledger are. Returns the
-- number of events expanded (0: none waiting).
CREATE FUNCTION booking_admin.fan_out_events(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_since timestamptz;
    v_tenants uuid[];
    v_ids uuid[];
    v_types text[];
    v_payloads jsonb[];
    v_created timestamptz[];
    v_traceparents text[];
    v_tracestates text[];
BEGIN
    -- One expansion at a time: the worker and a call by hand never expand an event twice.
    PERFORM pg_advisory_xact_lock(hashtext('booking_engine.fan_out_events'));
    SELECT min(s.enabled_at) INTO v_since FROM booking_admin.delivery_endpoints s WHERE s.enabled;
    IF v_since IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(e.tenant_id), array_agg(e.id), array_agg(e.event_type), array_agg(e.payload), array_agg(e.created_at),
           array_agg(e.traceparent), array_agg(e.tracestate)
    INTO v_tenants, v_ids, v_types, v_payloads, v_created, v_traceparents, v_tracestates
    FROM (SELECT e.tenant_id, e.id, e.event_type, e.payload, e.created_at, e.traceparent, e.tracestate FROM booking.events e
          WHERE e.fanned_out_at IS NULL AND e.created_at >= v_since
          ORDER BY e.created_at LIMIT greatest(p_limit, 1)) e;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO booking_admin.deliveries (endpoint_id, tenant_id, event_id, message_id, event_type, payload, event_created_at,
                                          traceparent, tracestate)
    SELECT s.id, e.tenant_id, e.id, 'msg_' || replace(e.id::text, '-', ''), e.event_type, e.payload, e.created_at,
           e.traceparent, e.tracestate
    FROM unnest(v_tenants, v_ids, v_types, v_payloads, v_created, v_traceparents, v_tracestates)
         AS e (tenant_id, id, event_type, payload, created_at, traceparent, tracestate)
    JOIN booking_admin.delivery_endpoints s
      ON s.enabled AND s.enabled_at <= e.created_at
     AND (s.tenant_id IS NULL OR s.tenant_id = e.tenant_id)
     AND (e.event_type = ANY (s.event_types) OR '*' = ANY (s.event_types)
          OR split_part(e.event_type, '.', 1) || '.*' = ANY (s.event_types))
     -- A reminder's email and SMS are the rule's own channels (booking_admin.fan_out_reminders):
     -- its event is for webhooks and Slack.
     AND NOT (e.event_type = 'booking.reminder' AND s.channel IN ('email', 'sms'));
    -- The tenants as constants: on Citus the update then goes to their shards only.
    EXECUTE format('UPDATE booking.events e SET fanned_out_at = %L WHERE e.tenant_id = ANY (%L::uuid[]) AND e.id = ANY (%L::uuid[])',
                   clock_timestamp(), v_tenants, v_ids);
    RETURN cardinality(v_ids);
END $$;
REVOKE ALL ON FUNCTION booking_admin.fan_out_events(integer) FROM PUBLIC;

-- A committed events statement wakes the delivery worker; it expands the events itself.
-- SECURITY DEFINER: whoever may write an event wakes the worker, without rights on the wake-up.
CREATE FUNCTION booking.wake_delivery_on_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM booking.wake_delivery_at_commit();
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION booking.wake_delivery_on_events() FROM PUBLIC;
CREATE TRIGGER events_fan_out AFTER INSERT ON booking.events
    FOR EACH STATEMENT EXECUTE FUNCTION booking.wake_delivery_on_events();

CREATE FUNCTION booking_admin.require_operator() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT booking.caller_is_operator() THEN
        RAISE EXCEPTION 'only operators manage delivery endpoints' USING ERRCODE = '42501';
    END IF;
END $$;
REVOKE ALL ON FUNCTION booking_admin.require_operator() FROM PUBLIC;

-- The endpoint API's core, in booking_internal: the operators' functions below and the tenants'
-- own (sql/tenants.sql: booking.create_tenant_endpoint, ...) run the same checks and writes;
-- each entry point checks its caller first. Not executable by PUBLIC; none of them is SECURITY
-- DEFINER (their callers are).

-- Event type patterns: each known, 'prefix.*' of a known prefix, or '*'.
CREATE FUNCTION booking_internal.check_event_types(p_types text[]) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    t text;
BEGIN
    IF p_types IS NULL OR cardinality(p_types) = 0 THEN
        RAISE EXCEPTION 'an endpoint subscribes to at least one event type' USING ERRCODE = '22023';
    END IF;
    FOREACH t IN ARRAY p_types LOOP
        IF t IS NULL OR NOT (t = '*'
            OR EXISTS (SELECT 1 FROM booking_admin.delivery_event_types k WHERE k.event_type = t)
            OR (t LIKE '%.*' AND EXISTS (SELECT 1 FROM booking_admin.delivery_event_types k
                                         WHERE split_part(k.event_type, '.', 1) = left(t, -2)))) THEN
            RAISE EXCEPTION 'unknown event type %', coalesce(quote_literal(t), 'NULL') USING ERRCODE = '22023',
                HINT = 'booking_admin.delivery_event_types lists them; ''booking.*'' and ''*'' match several';
        END IF;
    END LOOP;
    RETURN p_types;
END $$;

-- What an endpoint looks like to operators and its tenant: everything but its secrets.
CREATE FUNCTION booking_internal.endpoint_json(e booking_admin.delivery_endpoints) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(e) || jsonb_build_object('secrets', (
        SELECT count(*) FROM booking_admin.delivery_secrets s
        WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())))
$$;

-- The per-endpoint limits, checked with a clear message before the row's CHECKs.
CREATE FUNCTION booking_internal.check_endpoint_limits(p_max_in_flight text, p_timeout_ms text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_max_in_flight IS NOT NULL AND (p_max_in_flight !~ '^[0-9]{1,9}$' OR p_max_in_flight::int NOT BETWEEN 1 AND 64) THEN
        RAISE EXCEPTION 'max_in_flight is a whole number from 1 to 64, not %', p_max_in_flight USING ERRCODE = '22023';
    END IF;
    IF p_timeout_ms IS NOT NULL AND (p_timeout_ms !~ '^[0-9]{1,9}$' OR p_timeout_ms::int NOT BETWEEN 100 AND 120000) THEN
        RAISE EXCEPTION 'timeout_ms is a whole number from 100 to 120000, not %', p_timeout_ms USING ERRCODE = '22023';
    END IF;
END $$;

-- An SMS endpoint's settings from its options (NULL current: a new endpoint): the provider
-- (twilio: a form POST with basic auth; json: a JSON POST with a bearer token or basic auth),
-- the sender (an E.164 number or an alphanumeric sender id), the basic-auth user name. 22023
-- for these options on another channel, or a new SMS endpoint without provider and sender.
CREATE FUNCTION booking_internal.sms_settings(p_channel text, p_current jsonb, p_options jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v jsonb := coalesce(p_current, '{}');
BEGIN
    IF p_channel IS DISTINCT FROM 'sms' THEN
        IF coalesce(p_options, '{}') ?| ARRAY['provider', 'from', 'username', 'password', 'token'] THEN
            RAISE EXCEPTION 'provider, from, username, password and token are options of SMS endpoints' USING ERRCODE = '22023';
        END IF;
        RETURN '{}';
    END IF;
    IF p_options ? 'provider' THEN
        IF p_options ->> 'provider' IS NULL OR p_options ->> 'provider' NOT IN ('twilio', 'json') THEN
            RAISE EXCEPTION 'an SMS provider is twilio or json, not %', coalesce(p_options ->> 'provider', 'NULL') USING ERRCODE = '22023';
        END IF;
        v := v || jsonb_build_object('provider', p_options ->> 'provider');
    END IF;
    IF p_options ? 'from' THEN
        v := v || jsonb_build_object('from', booking_internal.check_sms_sender(p_options ->> 'from'));
    END IF;
    IF p_options ? 'username' THEN
        v := v || jsonb_build_object('username', p_options ->> 'username');
    END IF;
    IF NOT (v ? 'provider' AND v ? 'from') THEN
        RAISE EXCEPTION 'an SMS endpoint needs a provider (twilio or json) and a sender (from)' USING ERRCODE = '22023';
    END IF;
    RETURN v;
END $$;

-- An SMS endpoint's password or token, when its options give one.
CREATE FUNCTION booking_internal.save_sms_credentials(p_endpoint_id uuid, p_options jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_options ?| ARRAY['password', 'token'] THEN
        INSERT INTO booking_admin.delivery_credentials AS c (endpoint_id, password, token)
        VALUES (p_endpoint_id, p_options ->> 'password', p_options ->> 'token')
        ON CONFLICT (endpoint_id) DO UPDATE
            SET password = CASE WHEN p_options ? 'password' THEN excluded.password ELSE c.password END,
                token = CASE WHEN p_options ? 'token' THEN excluded.token ELSE c.token END,
                updated_at = now();
    END IF;
END $$;

-- Creates an endpoint and its first secret; returns it with the secret (shown this once).
CREATE FUNCTION booking_internal.create_endpoint(p_tenant_id uuid, p_url text, p_event_types text[], p_channel text,
                                                 p_options jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
    v_secret text;
    v_unknown text[];
BEGIN
    v_unknown := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_options, '{}')) k
                       WHERE k NOT IN ('description', 'max_in_flight', 'timeout_ms', 'secret', 'provider', 'from',
                                       'username', 'password', 'token'));
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'unknown endpoint option(s): %', array_to_string(v_unknown, ', ') USING ERRCODE = '22023',
            HINT = 'options are description, max_in_flight, timeout_ms and secret; SMS endpoints also provider, from, username, password, token';
    END IF;
    PERFORM booking_internal.check_endpoint_limits(p_options ->> 'max_in_flight', p_options ->> 'timeout_ms');
    IF p_tenant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking.tenants t WHERE t.id = p_tenant_id) THEN
        RAISE EXCEPTION 'no tenant %', p_tenant_id USING ERRCODE = 'PT404';
    END IF;
    v_secret := coalesce(p_options ->> 'secret', booking_internal.generate_webhook_secret());
    INSERT INTO booking_admin.delivery_endpoints (tenant_id, channel, url, event_types, description, max_in_flight, timeout_ms,
                                                  settings)
    VALUES (p_tenant_id, p_channel, booking_internal.check_endpoint_url(p_channel, p_url),
            booking_internal.check_event_types(p_event_types), coalesce(p_options ->> 'description', ''),
            coalesce((p_options ->> 'max_in_flight')::int, 4), coalesce((p_options ->> 'timeout_ms')::int, 10000),
            booking_internal.sms_settings(p_channel, NULL, p_options))
    RETURNING * INTO v_endpoint;
    INSERT INTO booking_admin.delivery_secrets (endpoint_id, secret)
    VALUES (v_endpoint.id, booking_internal.check_webhook_secret(v_secret));
    PERFORM booking_internal.save_sms_credentials(v_endpoint.id, p_options);
    PERFORM booking.delivery_wanted_at_commit();
    RETURN booking_internal.endpoint_json(v_endpoint) || jsonb_build_object('secret', v_secret);
END $$;

-- Changes: url, event_types, description, max_in_flight, timeout_ms, the SMS options, enabled
-- (true re-enables and closes the circuit; false needs disabled_reason). p_endpoint is the
-- locked row.
CREATE FUNCTION booking_internal.change_endpoint(p_endpoint booking_admin.delivery_endpoints, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
    v_unknown text[];
    v_enable boolean := (p_changes ->> 'enabled')::boolean;
BEGIN
    v_unknown := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_changes, '{}')) k
                       WHERE k NOT IN ('url', 'event_types', 'description', 'max_in_flight', 'timeout_ms',
                                       'enabled', 'disabled_reason', 'provider', 'from', 'username', 'password', 'token'));
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'unknown endpoint field(s): %', array_to_string(v_unknown, ', ') USING ERRCODE = '22023';
    END IF;
    PERFORM booking_internal.check_endpoint_limits(p_changes ->> 'max_in_flight', p_changes ->> 'timeout_ms');
    IF v_enable IS FALSE AND p_changes ->> 'disabled_reason' IS NULL THEN
        RAISE EXCEPTION 'disabling an endpoint needs a disabled_reason' USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.delivery_endpoints e SET
        url = CASE WHEN p_changes ? 'url' THEN booking_internal.check_endpoint_url(e.channel, p_changes ->> 'url') ELSE e.url END,
        event_types = CASE WHEN p_changes ? 'event_types'
            THEN booking_internal.check_event_types(ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'event_types')))
            ELSE e.event_types END,
        description = coalesce(p_changes ->> 'description', e.description),
        max_in_flight = coalesce((p_changes ->> 'max_in_flight')::int, e.max_in_flight),
        timeout_ms = coalesce((p_changes ->> 'timeout_ms')::int, e.timeout_ms),
        enabled = coalesce(v_enable, e.enabled),
        enabled_at = CASE WHEN v_enable AND NOT e.enabled THEN now() ELSE e.enabled_at END,
        disabled_reason = CASE v_enable WHEN true THEN NULL WHEN false THEN p_changes ->> 'disabled_reason' ELSE e.disabled_reason END,
        disabled_at = CASE v_enable WHEN true THEN NULL WHEN false THEN now() ELSE e.disabled_at END,
        consecutive_failures = CASE WHEN v_enable THEN 0 ELSE e.consecutive_failures END,
        failing_since = CASE WHEN v_enable THEN NULL ELSE e.failing_since END,
        circuit_open_until = CASE WHEN v_enable THEN NULL ELSE e.circuit_open_until END,
        settings = booking_internal.sms_settings(e.channel, e.settings, p_changes),
        updated_at = now()
    WHERE e.id = p_endpoint.id
    RETURNING * INTO v_endpoint;
    PERFORM booking_internal.save_sms_credentials(v_endpoint.id, p_changes);
    PERFORM booking.delivery_wanted_at_commit();
    RETURN booking_internal.endpoint_json(v_endpoint);
END $$;

-- A new signing key; the old ones keep signing for p_grace (receivers update in that time),
-- then expire. Returns the new secret (shown this once).
CREATE FUNCTION booking_internal.rotate_endpoint_secret(p_endpoint_id uuid, p_grace interval, p_secret text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_secret text := booking_internal.check_webhook_secret(coalesce(p_secret, booking_internal.generate_webhook_secret()));
BEGIN
    IF p_grace IS NULL OR p_grace < interval '0' OR p_grace > interval '30 days' THEN
        RAISE EXCEPTION 'the grace period is between 0 and 30 days' USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.delivery_secrets s SET expires_at = least(coalesce(s.expires_at, 'infinity'), now() + p_grace)
    WHERE s.endpoint_id = p_endpoint_id;
    DELETE FROM booking_admin.delivery_secrets s WHERE s.endpoint_id = p_endpoint_id AND s.expires_at <= now();
    INSERT INTO booking_admin.delivery_secrets (endpoint_id, secret) VALUES (p_endpoint_id, v_secret);
    RETURN v_secret;
END $$;

-- A test event to one endpoint (a webhook service's POST /webhooks/{id}/test): delivered like any
-- other, type 'webhook.test', whatever the endpoint subscribes to. Returns the delivery id.
CREATE FUNCTION booking_internal.queue_test_event(p_endpoint booking_admin.delivery_endpoints, p_payload jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid := gen_random_uuid();
    v_traceparent text;
    v_tracestate text;
BEGIN
    -- A test event continues the caller's trace, when there is one.
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    INSERT INTO booking_admin.deliveries (id, endpoint_id, tenant_id, message_id, event_type, payload, event_created_at,
                                          traceparent, tracestate)
    VALUES (v_id, p_endpoint.id, p_endpoint.tenant_id, 'msg_' || replace(v_id::text, '-', ''), 'webhook.test',
            coalesce(p_payload, jsonb_build_object('message', 'booking_engine test event')), now(), v_traceparent,
            v_tracestate);
    PERFORM booking.wake_delivery_at_commit();
    RETURN v_id;
END $$;

-- A tenant's template (NULL tenant: the default) for emails and Slack messages.
CREATE FUNCTION booking_internal.save_message_template(p_tenant_id uuid, p_event_type text, p_subject text,
                                                       p_body_text text, p_body_html text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_internal.check_event_types(ARRAY[p_event_type]);
    IF p_subject IS NULL OR p_body_text IS NULL THEN
        RAISE EXCEPTION 'a template has a subject and a plain-text body' USING ERRCODE = '22023';
    END IF;
    PERFORM booking_internal.check_template(p_subject), booking_internal.check_template(p_body_text),
            booking_internal.check_template(coalesce(p_body_html, ''));
    INSERT INTO booking_admin.message_templates AS t (tenant_id, event_type, subject, body_text, body_html)
    VALUES (p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html)
    ON CONFLICT (tenant_id, event_type) DO UPDATE
        SET subject = excluded.subject, body_text = excluded.body_text, body_html = excluded.body_html, updated_at = now();
END $$;

-- The operators' endpoint API: caller check, then the core.
CREATE FUNCTION booking_admin.create_endpoint(
    p_url text,
    p_event_types text[],
    p_tenant_id uuid DEFAULT NULL,
    p_channel text DEFAULT 'webhook',
    p_options jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.require_operator();
    RETURN booking_internal.create_endpoint(p_tenant_id, p_url, p_event_types, p_channel, p_options);
END $$;

CREATE FUNCTION booking_admin.endpoint_for_change(p_endpoint_id uuid) RETURNS booking_admin.delivery_endpoints
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
BEGIN
    PERFORM booking_admin.require_operator();
    SELECT * INTO v_endpoint FROM booking_admin.delivery_endpoints e WHERE e.id = p_endpoint_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no delivery endpoint %', coalesce(p_endpoint_id::text, 'NULL') USING ERRCODE = 'PT404';
    END IF;
    RETURN v_endpoint;
END $$;
REVOKE ALL ON FUNCTION booking_admin.endpoint_for_change(uuid) FROM PUBLIC;

CREATE FUNCTION booking_admin.update_endpoint(p_endpoint_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_internal.change_endpoint(booking_admin.endpoint_for_change(p_endpoint_id), p_changes)
$$;

CREATE FUNCTION booking_admin.disable_endpoint(p_endpoint_id uuid, p_reason text) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.update_endpoint(p_endpoint_id, jsonb_build_object('enabled', false, 'disabled_reason', p_reason))
$$;

CREATE FUNCTION booking_admin.enable_endpoint(p_endpoint_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.update_endpoint(p_endpoint_id, '{"enabled": true}')
$$;

CREATE FUNCTION booking_admin.delete_endpoint(p_endpoint_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.endpoint_for_change(p_endpoint_id);
    DELETE FROM booking_admin.delivery_endpoints e WHERE e.id = p_endpoint_id;
    RETURN true;
END $$;

CREATE FUNCTION booking_admin.rotate_endpoint_secret(p_endpoint_id uuid, p_grace interval DEFAULT '24 hours',
                                                      p_secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.endpoint_for_change(p_endpoint_id);
    RETURN booking_internal.rotate_endpoint_secret(p_endpoint_id, p_grace, p_secret);
END $$;

CREATE FUNCTION booking_admin.send_test_event(p_endpoint_id uuid, p_payload jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_internal.queue_test_event(booking_admin.endpoint_for_change(p_endpoint_id), p_payload)
$$;

-- Sends a delivery again (dead or delivered), with the same webhook-id, its retries counted
-- from now.
CREATE FUNCTION booking_admin.replay_delivery(p_delivery_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.require_operator();
    UPDATE booking_admin.deliveries d SET status = 'pending', next_attempt_at = now(), horizon_from = now(), updated_at = now()
    WHERE d.id = p_delivery_id AND d.status IN ('dead', 'delivered');
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM booking_admin.deliveries d WHERE d.id = p_delivery_id) THEN
            RAISE EXCEPTION 'delivery % is still being sent', p_delivery_id USING ERRCODE = '55000',
                HINT = 'only delivered and dead deliveries are replayed';
        END IF;
        RAISE EXCEPTION 'no delivery %', coalesce(p_delivery_id::text, 'NULL') USING ERRCODE = 'PT404';
    END IF;
    PERFORM booking.wake_delivery_at_commit();
    RETURN p_delivery_id;
END $$;

-- Sends again every dead delivery of an endpoint created in [p_from, p_to). Returns how many.
CREATE FUNCTION booking_admin.replay_failed_deliveries(p_endpoint_id uuid, p_from timestamptz DEFAULT '-infinity',
                                                        p_to timestamptz DEFAULT 'infinity') RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    PERFORM booking_admin.endpoint_for_change(p_endpoint_id);
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'the window [%, %) is empty', p_from, p_to USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.deliveries d SET status = 'pending', next_attempt_at = now(), horizon_from = now(), updated_at = now()
    WHERE d.endpoint_id = p_endpoint_id AND d.status = 'dead' AND d.created_at >= p_from AND d.created_at < p_to;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM booking.wake_delivery_at_commit();
    END IF;
    RETURN n;
END $$;

-- Per endpoint over the attempts since p_since: a webhook service's statistics.
CREATE FUNCTION booking_admin.delivery_stats(p_since timestamptz DEFAULT now() - interval '24 hours')
RETURNS TABLE (endpoint_id uuid, tenant_id uuid, channel text, url text, enabled boolean, disabled_reason text,
               pending bigint, dead bigint, attempts bigint, delivered bigint, success_rate numeric,
               p50_ms double precision, p99_ms double precision, last_error text, last_attempt_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.require_operator();
    RETURN QUERY
    SELECT e.id, e.tenant_id, e.channel, e.url, e.enabled, e.disabled_reason,
           (SELECT count(*) FROM booking_admin.deliveries d WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending')),
           (SELECT count(*) FROM booking_admin.deliveries d WHERE d.endpoint_id = e.id AND d.status = 'dead'),
           a.n, a.ok,
           CASE WHEN a.n > 0 THEN round(a.ok::numeric / a.n, 4) END,
           a.p50, a.p99,
           (SELECT coalesce(x.error, 'HTTP ' || x.status_code) FROM booking_admin.delivery_attempts x
            WHERE x.endpoint_id = e.id AND x.outcome <> 'delivered' ORDER BY x.started_at DESC LIMIT 1),
           a.last_at
    FROM booking_admin.delivery_endpoints e
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, count(*) FILTER (WHERE x.outcome = 'delivered') AS ok,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY x.duration_ms) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY x.duration_ms) AS p99,
               max(x.started_at) AS last_at
        FROM booking_admin.delivery_attempts x WHERE x.endpoint_id = e.id AND x.started_at >= p_since) a
    ORDER BY e.created_at;
END $$;

CREATE FUNCTION booking_admin.set_message_template(p_tenant_id uuid, p_event_type text, p_subject text,
                                                    p_body_text text, p_body_html text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.require_operator();
    PERFORM booking_internal.save_message_template(p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html);
END $$;

-- The values a template's placeholders take for one delivery (booking_engine.delivery's
-- worker calls it when it sends an email, an SMS or a Slack message). Times are in the
-- customer's time zone, else the staff member's, else the tenant's (a staff member's agenda: the
-- staff member's). The recipient is the payload's (a staff member's agenda) or the customer.
-- PL/pgSQL, not SQL: on a Citus coordinator its joins read distributed tables by the tenant
-- given as an argument, which Citus cannot plan in a SQL function's parameterised statement
-- ("could not create distributed plan": every claim of the delivery worker failed once an
-- email or SMS was due).
CREATE FUNCTION booking_admin.delivery_context(p_tenant_id uuid, p_event_type text, p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_context jsonb;
BEGIN
    WITH x AS (
        SELECT t.name AS tenant_name, c.name AS customer_name, c.email AS customer_email, c.phone AS customer_phone,
               sv.name AS service_name, st.name AS staff_name,
               CASE WHEN p_event_type = 'staff.agenda' THEN coalesce(st.timezone, t.timezone, 'UTC')
                    ELSE coalesce(c.timezone, st.timezone, t.timezone, 'UTC') END AS tz,
               coalesce((p_payload ->> 'starts_at')::timestamptz, a.starts_at) AS starts_at,
               coalesce((p_payload ->> 'ends_at')::timestamptz, a.ends_at) AS ends_at
        FROM (SELECT 1) one
        LEFT JOIN booking.tenants t ON t.id = p_tenant_id
        LEFT JOIN booking.appointments a ON a.tenant_id = p_tenant_id AND a.id = (p_payload ->> 'appointment_id')::uuid
        LEFT JOIN booking.customers c ON c.tenant_id = p_tenant_id AND c.id = coalesce((p_payload ->> 'customer_id')::uuid, a.customer_id)
        LEFT JOIN booking.services sv ON sv.tenant_id = p_tenant_id AND sv.id = coalesce((p_payload ->> 'service_id')::uuid, a.service_id)
        LEFT JOIN booking.staff st ON st.tenant_id = p_tenant_id AND st.id = coalesce((p_payload ->> 'staff_id')::uuid, a.staff_id)
    )
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'event_type', p_event_type, 'tenant_name', x.tenant_name, 'customer_name', x.customer_name,
        'customer_email', x.customer_email, 'customer_phone', x.customer_phone,
        'recipient_email', coalesce(p_payload ->> 'recipient_email', x.customer_email),
        'recipient_phone', coalesce(p_payload ->> 'recipient_phone', x.customer_phone),
        'service_name', x.service_name, 'staff_name', x.staff_name,
        'time_zone', x.tz,
        'starts_at_local', to_char(x.starts_at AT TIME ZONE x.tz, 'FMDay DD FMMonth YYYY, HH24:MI'),
        'ends_at_local', to_char(x.ends_at AT TIME ZONE x.tz, 'FMDay DD FMMonth YYYY, HH24:MI'),
        'date_local', coalesce(p_payload ->> 'date', to_char(x.starts_at AT TIME ZONE x.tz, 'YYYY-MM-DD')),
        'time_local', to_char(x.starts_at AT TIME ZONE x.tz, 'HH24:MI'),
        'appointment_id', p_payload ->> 'appointment_id', 'reason', p_payload ->> 'reason',
        'confirm_url', p_payload ->> 'confirm_url', 'cancel_url', p_payload ->> 'cancel_url',
        'reminder_offset', (SELECT CASE WHEN m % 60 = 0 THEN (m / 60) || CASE WHEN m = 60 THEN ' hour' ELSE ' hours' END
                                        ELSE m || CASE WHEN m = 1 THEN ' minute' ELSE ' minutes' END END
                            FROM (SELECT (p_payload ->> 'offset_minutes')::int AS m) o),
        'appointment_count', CASE WHEN jsonb_typeof(p_payload -> 'appointments') = 'array'
                                  THEN jsonb_array_length(p_payload -> 'appointments')::text END,
        -- A staff member's day: one line per appointment, in their zone.
        'agenda', CASE WHEN jsonb_typeof(p_payload -> 'appointments') = 'array' THEN (SELECT coalesce(string_agg(
                              to_char((v ->> 'starts_at')::timestamptz AT TIME ZONE x.tz, 'HH24:MI') || '-'
                              || to_char((v ->> 'ends_at')::timestamptz AT TIME ZONE x.tz, 'HH24:MI') || '  '
                              || coalesce(v ->> 'service_name', '') || '  ' || coalesce(v ->> 'customer_name', '')
                              || CASE WHEN v ->> 'status' = 'pending' THEN '  (pending)' ELSE '' END,
                              E'\n' ORDER BY (v ->> 'starts_at')::timestamptz), 'No appointments.')
                   FROM jsonb_array_elements(p_payload -> 'appointments') v) END))
    INTO v_context
    FROM x;
    RETURN v_context;
END $$;
REVOKE ALL ON FUNCTION booking_admin.delivery_context(uuid, text, jsonb) FROM PUBLIC;

-- Weekly partitions, dropped 30 days after their week once none of their deliveries is still
-- to be sent; the ledger's weeks go with them.
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, keep_while,
                                              description) VALUES
    ('booking_admin.deliveries', 'created_at', 'week', 4, '30 days', 'status IN (''pending'', ''sending'')',
     'Webhook, Slack and email deliveries'),
    ('booking_admin.delivery_attempts', 'started_at', 'week', 4, '30 days', NULL, 'The delivery attempts ledger');

-- SMS ---------------------------------------------------------------------------------------

-- Phone numbers are stored in E.164 wherever they are written (22023 otherwise): the customers'
-- here, the senders, opt-outs and callbacks below. A customer's number as people write it
-- (+41 44 668 18 00) is kept without its spaces. SECURITY DEFINER: whoever may write a
-- customer has the check, without a grant on it.
CREATE FUNCTION booking.customers_phone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.phone := booking_internal.normalize_phone(nullif(btrim(NEW.phone), ''));
    RETURN NEW;
END $$;
CREATE TRIGGER customers_phone BEFORE INSERT OR UPDATE OF phone ON booking.customers
    FOR EACH ROW WHEN (NEW.phone IS NOT NULL) EXECUTE FUNCTION booking.customers_phone();

-- Numbers that answered STOP: no more SMS from that tenant (NULL: from any tenant, for a STOP
-- to an operator's global endpoint that never wrote to that number). START and its kin remove
-- the row.
CREATE TABLE booking_admin.sms_opt_outs (
    tenant_id   uuid,
    phone       text NOT NULL CHECK (phone = booking_internal.normalize_phone(phone)),
    keyword     text NOT NULL,
    endpoint_id uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (tenant_id, phone)
);
CREATE INDEX sms_opt_outs_phone_idx ON booking_admin.sms_opt_outs (phone);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.sms_opt_outs', '');

-- Whether a number opted out of a tenant's SMS.
CREATE FUNCTION booking_admin.sms_opted_out(p_tenant_id uuid, p_phone text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM booking_admin.sms_opt_outs o
                   WHERE o.phone = p_phone AND (o.tenant_id = p_tenant_id OR o.tenant_id IS NULL))
$$;
REVOKE ALL ON FUNCTION booking_admin.sms_opted_out(uuid, text) FROM PUBLIC;

-- The callbacks already handled, by their webhook-id: a provider (or its relay) that sends one
-- again gets the first answer back.
CREATE TABLE booking_admin.sms_inbound_seen (
    endpoint_id uuid NOT NULL REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    webhook_id  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    result      jsonb,
    PRIMARY KEY (endpoint_id, webhook_id)
);
CREATE INDEX sms_inbound_seen_received_idx ON booking_admin.sms_inbound_seen (received_at);

-- The provider's callbacks, signed like our webhooks (Standard Webhooks with the endpoint's
-- secret: the webhook-id, webhook-timestamp and webhook-signature headers and the raw body):
-- a delivery receipt updates the message it names; a message from a phone that says STOP (or
-- UNSUBSCRIBE, CANCEL, END, QUIT...) stops SMS from the endpoint's tenant to that number,
-- START (or UNSTOP, YES) allows them again. Anyone may call it, as a provider does: the
-- signature is the check. Refused: PT404 an endpoint that is not an SMS endpoint, PT401 a
-- signature that does not verify (or a timestamp more than 5 minutes away), 22023 a body that
-- is neither, PT429 more than 600 callbacks a minute from one client. A webhook-id seen before
-- gets its first answer with "duplicate": true.
CREATE FUNCTION booking_internal.sms_inbound(p_endpoint_id uuid, p_webhook_id text, p_timestamp text, p_body text,
                                             p_signature text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
    v_in jsonb;
    v_tenant uuid;
    v_n integer;
    v_result jsonb;
BEGIN
    IF NOT booking.check_rate_limit(coalesce(booking.request_context() ->> 'ip_address', 'unknown'), 'sms_inbound', 600, 60) THEN
        RAISE EXCEPTION 'too many SMS callbacks from this client' USING ERRCODE = 'PT429';
    END IF;
    SELECT * INTO v_endpoint FROM booking_admin.delivery_endpoints e WHERE e.id = p_endpoint_id AND e.channel = 'sms';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no SMS endpoint %', coalesce(p_endpoint_id::text, 'NULL') USING ERRCODE = 'PT404';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking_admin.delivery_secrets s
                   WHERE s.endpoint_id = v_endpoint.id AND (s.expires_at IS NULL OR s.expires_at > now())
                     AND booking.verify_webhook_signature(s.secret, coalesce(p_webhook_id, ''), coalesce(p_timestamp, ''),
                                                          coalesce(p_body, ''), coalesce(p_signature, ''))) THEN
        RAISE EXCEPTION 'the callback''s signature does not verify with the endpoint''s secret' USING ERRCODE = 'PT401';
    END IF;
    INSERT INTO booking_admin.sms_inbound_seen (endpoint_id, webhook_id) VALUES (v_endpoint.id, p_webhook_id)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN coalesce((SELECT x.result FROM booking_admin.sms_inbound_seen x
                         WHERE x.endpoint_id = v_endpoint.id AND x.webhook_id = p_webhook_id), '{}')
               || '{"duplicate": true}';
    END IF;
    v_in := booking_internal.read_sms_inbound(p_body);
    IF v_in ->> 'kind' = 'receipt' THEN
        UPDATE booking_admin.deliveries d SET receipt_status = v_in ->> 'status', receipt_at = now(), updated_at = now()
        WHERE d.endpoint_id = v_endpoint.id AND d.provider_message_id = v_in ->> 'message_id';
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_result := v_in || jsonb_build_object('matched', v_n > 0);
    ELSE
        -- The tenant the number hears from through this endpoint: its own, or for a global
        -- endpoint the tenant of the last message it sent there.
        v_tenant := coalesce(v_endpoint.tenant_id,
            (SELECT d.tenant_id FROM booking_admin.deliveries d
             WHERE d.endpoint_id = v_endpoint.id AND d.recipient = v_in ->> 'from'
             ORDER BY d.created_at DESC LIMIT 1));
        IF v_in ->> 'keyword' = 'stop' THEN
            INSERT INTO booking_admin.sms_opt_outs (tenant_id, phone, keyword, endpoint_id)
            VALUES (v_tenant, v_in ->> 'from', 'stop', v_endpoint.id)
            ON CONFLICT (tenant_id, phone) DO NOTHING;
        ELSIF v_in ->> 'keyword' = 'start' THEN
            DELETE FROM booking_admin.sms_opt_outs o
            WHERE o.phone = v_in ->> 'from' AND (o.tenant_id = v_tenant OR o.tenant_id IS NULL);
        END IF;
        v_result := v_in || jsonb_build_object('tenant_id', v_tenant);
    END IF;
    UPDATE booking_admin.sms_inbound_seen x SET result = v_result WHERE x.endpoint_id = v_endpoint.id AND x.webhook_id = p_webhook_id;
    PERFORM booking.audit_event('delivery.sms_inbound', 'endpoint', p_endpoint_id::text, true, NULL, false, v_endpoint.tenant_id);
    RETURN v_result;
EXCEPTION WHEN OTHERS THEN
    PERFORM booking.audit_event('delivery.sms_inbound', 'endpoint', p_endpoint_id::text, false, SQLSTATE || ': ' || SQLERRM,
                                false, v_endpoint.tenant_id);
    RAISE;
END $$;

-- Callbacks' ids are kept a day (well past the signatures' 5-minute tolerance).
CREATE FUNCTION booking_admin.op_cleanup_sms_inbound(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM booking_admin.sms_inbound_seen x
    WHERE x.received_at < now() - make_interval(hours => coalesce((p_settings ->> 'retention_hours')::int, 24));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION booking_admin.op_cleanup_sms_inbound(jsonb) FROM PUBLIC;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('cleanup-sms-inbound', 'Forget SMS callbacks'' ids past the replay window', 'booking_admin.op_cleanup_sms_inbound',
     '{"retention_hours": 24}', 3600000, 3, 60000);

REVOKE ALL ON FUNCTION booking_admin.create_endpoint(text, text[], uuid, text, jsonb),
    booking_admin.update_endpoint(uuid, jsonb), booking_admin.disable_endpoint(uuid, text),
    booking_admin.enable_endpoint(uuid), booking_admin.delete_endpoint(uuid),
    booking_admin.rotate_endpoint_secret(uuid, interval, text), booking_admin.send_test_event(uuid, jsonb),
    booking_admin.replay_delivery(uuid), booking_admin.replay_failed_deliveries(uuid, timestamptz, timestamptz),
    booking_admin.delivery_stats(timestamptz), booking_admin.set_message_template(uuid, text, text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking_admin.create_endpoint(text, text[], uuid, text, jsonb),
    booking_admin.update_endpoint(uuid, jsonb), booking_admin.disable_endpoint(uuid, text),
    booking_admin.enable_endpoint(uuid), booking_admin.delete_endpoint(uuid),
    booking_admin.rotate_endpoint_secret(uuid, interval, text), booking_admin.send_test_event(uuid, jsonb),
    booking_admin.replay_delivery(uuid), booking_admin.replay_failed_deliveries(uuid, timestamptz, timestamptz),
    booking_admin.delivery_stats(timestamptz), booking_admin.set_message_template(uuid, text, text, text, text)
TO booking_operator;
-- Reading: endpoints without their secrets or credentials, the deliveries, the ledger, the
-- templates, the SMS opt-outs (which operators may also add or lift, e.g. for a customer who
-- phoned in).
GRANT SELECT ON booking_admin.delivery_endpoints, booking_admin.deliveries, booking_admin.delivery_attempts,
    booking_admin.message_templates, booking_admin.delivery_event_types, booking_admin.sms_opt_outs
TO booking_operator;
GRANT INSERT, DELETE ON booking_admin.sms_opt_outs TO booking_operator;
-- The opt-outs' CHECK, as the operator who writes one.
GRANT EXECUTE ON FUNCTION booking_internal.normalize_phone(text) TO booking_operator;
-- The Rust helpers above are building blocks of these functions, not for callers.
REVOKE ALL ON FUNCTION booking_internal.generate_webhook_secret(), booking_internal.check_webhook_secret(text),
    booking_internal.check_endpoint_url(text, text), booking_internal.check_template(text),
    booking_internal.check_sms_sender(text), booking_internal.read_sms_inbound(text),
    booking.wake_delivery_at_commit(), booking.delivery_wanted_at_commit()
FROM PUBLIC;
