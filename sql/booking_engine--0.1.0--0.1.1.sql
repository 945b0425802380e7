-- booking_engine 0.1.0 -> 0.1.1 (ALTER EXTENSION booking_engine UPDATE).
\echo Use "ALTER EXTENSION booking_engine UPDATE TO '0.1.1'" to load this file. \quit

-- admin_sql_status tells whether a runner will take a pending queued statement (will_run);
-- the definition is the one sql/admin.sql creates in a fresh install.
CREATE OR REPLACE FUNCTION booking_admin.admin_sql_status(p_audit_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb;
    job booking_admin.jobs;
BEGIN
    SELECT to_jsonb(a) INTO doc FROM booking_admin.admin_audit a WHERE a.id = p_audit_id;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'no admin statement with audit id %', coalesce(p_audit_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF doc ->> 'job_id' IS NULL THEN
        RETURN doc;
    END IF;
    -- A queued statement ends when its job does.
    SELECT * INTO job FROM booking_admin.jobs j WHERE j.id = (doc ->> 'job_id')::uuid;
    IF NOT FOUND THEN
        RETURN doc || jsonb_build_object('outcome', 'failed', 'outcome_detail',
            'its job is gone: the enqueuing transaction rolled back, or job retention removed it');
    END IF;
    -- A pending job says whether a runner will take it (false: no worker serves this database,
    -- see worker_status()).
    RETURN doc || jsonb_build_object(
        'will_run', CASE WHEN job.status IN ('pending', 'failed', 'running')
                         THEN (booking_admin.worker_status() ->> 'will_run')::boolean END,
        'outcome', CASE job.status WHEN 'completed' THEN 'succeeded' WHEN 'dead' THEN 'failed' ELSE 'pending' END,
        'outcome_detail', job.error_message,
        'finished_at', job.completed_at,
        'job', jsonb_build_object('status', job.status, 'retry_count', job.retry_count, 'started_at', job.started_at));
END $$;

-- Runners of every database have the same names: a running job's runner is alive only if it
-- is connected to this database.
CREATE OR REPLACE FUNCTION booking_admin.recover_stale_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
    n integer := 0;
BEGIN
    FOR v IN
        SELECT j.* FROM booking_admin.jobs j
        WHERE j.status = 'running'
          AND (j.locked_at < pg_postmaster_start_time()
               OR CASE WHEN j.locked_by LIKE 'booking_engine runner %'
                       THEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = j.locked_pid
                                        AND a.backend_type = j.locked_by AND a.datname = current_database())
                       ELSE j.heartbeat_at < clock_timestamp() - make_interval(secs => j.timeout_ms / 1000.0 + 5) END)
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM booking_admin.record_failure(v, format('worker %s (pid %s) died or stopped answering', v.locked_by, v.locked_pid));
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Outbound delivery (webhooks, Slack, email). The definitions are sql/delivery.sql's
-- and the Rust functions pgrx generates for src/delivery/api.rs.
ALTER TABLE booking.customers ADD COLUMN timezone text CHECK (timezone IS NULL OR booking.is_valid_timezone(timezone));

-- booking_engine::delivery::api::verify_webhook_signature
CREATE  FUNCTION booking."verify_webhook_signature"(
	"secret" TEXT, /* Option < & str > */
	"msg_id" TEXT, /* Option < & str > */
	"timestamp" TEXT, /* Option < & str > */
	"body" TEXT, /* Option < & str > */
	"signature" TEXT, /* Option < & str > */
	"tolerance_seconds" INT DEFAULT 300 /* Option < i32 > */
) RETURNS bool /* Result < bool, ErrorReport > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_webhook_signature_wrapper';
-- As finalize.sql leaves every function of the schema that is not for applications.
REVOKE ALL ON FUNCTION booking.verify_webhook_signature(text, text, text, text, text, integer) FROM PUBLIC;

-- booking_engine::delivery::api::wake_delivery_at_commit
CREATE  FUNCTION booking."wake_delivery_at_commit"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'wake_delivery_at_commit_wrapper';

-- booking_engine::delivery::api::booking_admin::check_template
CREATE  FUNCTION booking_admin."check_template"(
	"template" TEXT /* Option < & str > */
) RETURNS VOID /* Result < (), ErrorReport > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_template_wrapper';

-- booking_engine::delivery::api::delivery_wanted_at_commit
CREATE  FUNCTION booking."delivery_wanted_at_commit"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'delivery_wanted_at_commit_wrapper';

-- booking_engine::delivery::api::booking_admin::generate_webhook_secret
CREATE  FUNCTION booking_admin."generate_webhook_secret"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'generate_webhook_secret_wrapper';

-- booking_engine::delivery::api::booking_admin::check_webhook_secret
CREATE  FUNCTION booking_admin."check_webhook_secret"(
	"secret" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_webhook_secret_wrapper';

-- booking_engine::delivery::api::booking_admin::check_endpoint_url
CREATE  FUNCTION booking_admin."check_endpoint_url"(
	"channel" TEXT, /* Option < & str > */
	"url" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < Option < String > , ErrorReport > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_endpoint_url_wrapper';

-- Outbound delivery: every committed booking.events row fans out to the endpoints subscribed to
-- its type (signed webhooks, Slack, email). The events table is the outbox: the delivery worker
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
    ('alert.resolved', 'A firing alert resolved');

CREATE TABLE booking_admin.delivery_endpoints (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: every tenant's events (a global endpoint).
    tenant_id            uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    channel              text NOT NULL CHECK (channel IN ('webhook', 'slack', 'email')),
    -- webhook and slack: the http(s) URL; email: 'mailto:address' for a fixed recipient, or
    -- NULL for the customer of each event.
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
    CHECK (channel = 'email' OR url IS NOT NULL),
    CHECK (enabled OR disabled_reason IS NOT NULL)
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

CREATE TABLE booking_admin.deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
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
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Only the indexes the worker and the API need: the due ones per endpoint, and per endpoint by
-- creation (replays, statistics, the endpoint's cascade). Finding what a stopped worker was
-- sending is a scan, once per worker start.
CREATE INDEX deliveries_due_idx ON booking_admin.deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint_created_idx ON booking_admin.deliveries (endpoint_id, created_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.deliveries', '');

-- The attempts ledger: one row per attempt, whatever its outcome.
CREATE TABLE booking_admin.delivery_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES booking_admin.deliveries (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    status_code      integer,
    error            text,
    response_excerpt text,
    -- delivered, retry, dead, gone (410: endpoint disabled), interrupted (the worker stopped).
    outcome          text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'gone', 'interrupted'))
);
CREATE INDEX delivery_attempts_delivery_idx ON booking_admin.delivery_attempts (delivery_id);
CREATE INDEX delivery_attempts_endpoint_started_idx ON booking_admin.delivery_attempts (endpoint_id, started_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_attempts', '');

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
     '<p>Hello {{customer_name}},</p><p>a <b>{{service_name}}</b> slot with {{staff_name}} is free on <b>{{starts_at_local}}</b> ({{time_zone}}). Book it before someone else does.</p><p>{{tenant_name}}</p>');

-- The outbox's fan-out mark: NULL until the delivery worker has expanded the event into its
-- deliveries.
-- Upgrade: the events that exist were fanned out when they were written; they count as expanded
-- (a default for the rows that exist, none for new ones, and no table rewrite).
ALTER TABLE booking.events ADD COLUMN fanned_out_at timestamptz DEFAULT '-infinity';
ALTER TABLE booking.events ALTER COLUMN fanned_out_at DROP DEFAULT;
CREATE INDEX events_fan_out_idx ON booking.events (created_at) WHERE fanned_out_at IS NULL;

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
BEGIN
    -- One expansion at a time: the worker and a call by hand never expand an event twice.
    PERFORM pg_advisory_xact_lock(hashtext('booking_engine.fan_out_events'));
    SELECT min(s.enabled_at) INTO v_since FROM booking_admin.delivery_endpoints s WHERE s.enabled;
    IF v_since IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(e.tenant_id), array_agg(e.id), array_agg(e.event_type), array_agg(e.payload), array_agg(e.created_at)
    INTO v_tenants, v_ids, v_types, v_payloads, v_created
    FROM (SELECT e.tenant_id, e.id, e.event_type, e.payload, e.created_at FROM booking.events e
          WHERE e.fanned_out_at IS NULL AND e.created_at >= v_since
          ORDER BY e.created_at LIMIT greatest(p_limit, 1)) e;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO booking_admin.deliveries (endpoint_id, tenant_id, event_id, message_id, event_type, payload, event_created_at)
    SELECT s.id, e.tenant_id, e.id, 'msg_' || replace(e.id::text, '-', ''), e.event_type, e.payload, e.created_at
    FROM unnest(v_tenants, v_ids, v_types, v_payloads, v_created) AS e (tenant_id, id, event_type, payload, created_at)
    JOIN booking_admin.delivery_endpoints s
      ON s.enabled AND s.enabled_at <= e.created_at
     AND (s.tenant_id IS NULL OR s.tenant_id = e.tenant_id)
     AND (e.event_type = ANY (s.event_types) OR '*' = ANY (s.event_types)
          OR split_part(e.event_type, '.', 1) || '.*' = ANY (s.event_types));
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

-- Event type patterns: each known, 'prefix.*' of a known prefix, or '*'.
CREATE FUNCTION booking_admin.check_event_types(p_types text[]) RETURNS text[]
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
REVOKE ALL ON FUNCTION booking_admin.check_event_types(text[]) FROM PUBLIC;

-- What an endpoint looks like to operators: everything but its secrets.
CREATE FUNCTION booking_admin.endpoint_json(e booking_admin.delivery_endpoints) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(e) || jsonb_build_object('secrets', (
        SELECT count(*) FROM booking_admin.delivery_secrets s
        WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())))
$$;
REVOKE ALL ON FUNCTION booking_admin.endpoint_json(booking_admin.delivery_endpoints) FROM PUBLIC;

-- The per-endpoint limits, checked with a clear message before the row's CHECKs.
CREATE FUNCTION booking_admin.check_endpoint_limits(p_max_in_flight text, p_timeout_ms text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_max_in_flight IS NOT NULL AND (p_max_in_flight !~ '^[0-9]{1,9}$' OR p_max_in_flight::int NOT BETWEEN 1 AND 64) THEN
        RAISE EXCEPTION 'max_in_flight is a whole number from 1 to 64, not %', p_max_in_flight USING ERRCODE = '22023';
    END IF;
    IF p_timeout_ms IS NOT NULL AND (p_timeout_ms !~ '^[0-9]{1,9}$' OR p_timeout_ms::int NOT BETWEEN 100 AND 120000) THEN
        RAISE EXCEPTION 'timeout_ms is a whole number from 100 to 120000, not %', p_timeout_ms USING ERRCODE = '22023';
    END IF;
END $$;
REVOKE ALL ON FUNCTION booking_admin.check_endpoint_limits(text, text) FROM PUBLIC;

CREATE FUNCTION booking_admin.create_endpoint(
    p_url text,
    p_event_types text[],
    p_tenant_id uuid DEFAULT NULL,
    p_channel text DEFAULT 'webhook',
    p_options jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
    v_secret text;
    v_unknown text[];
BEGIN
    PERFORM booking_admin.require_operator();
    v_unknown := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_options, '{}')) k
                       WHERE k NOT IN ('description', 'max_in_flight', 'timeout_ms', 'secret'));
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'unknown endpoint option(s): %', array_to_string(v_unknown, ', ') USING ERRCODE = '22023',
            HINT = 'options are description, max_in_flight, timeout_ms and secret';
    END IF;
    PERFORM booking_admin.check_endpoint_limits(p_options ->> 'max_in_flight', p_options ->> 'timeout_ms');
    IF p_tenant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking.tenants t WHERE t.id = p_tenant_id) THEN
        RAISE EXCEPTION 'no tenant %', p_tenant_id USING ERRCODE = 'PT404';
    END IF;
    v_secret := coalesce(p_options ->> 'secret', booking_admin.generate_webhook_secret());
    INSERT INTO booking_admin.delivery_endpoints (tenant_id, channel, url, event_types, description, max_in_flight, timeout_ms)
    VALUES (p_tenant_id, p_channel, booking_admin.check_endpoint_url(p_channel, p_url),
            booking_admin.check_event_types(p_event_types), coalesce(p_options ->> 'description', ''),
            coalesce((p_options ->> 'max_in_flight')::int, 4), coalesce((p_options ->> 'timeout_ms')::int, 10000))
    RETURNING * INTO v_endpoint;
    INSERT INTO booking_admin.delivery_secrets (endpoint_id, secret)
    VALUES (v_endpoint.id, booking_admin.check_webhook_secret(v_secret));
    PERFORM booking.delivery_wanted_at_commit();
    -- The secret is shown this once.
    RETURN booking_admin.endpoint_json(v_endpoint) || jsonb_build_object('secret', v_secret);
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

-- Changes: url, event_types, description, max_in_flight, timeout_ms, enabled (true re-enables
-- and closes the circuit; false needs disabled_reason).
CREATE FUNCTION booking_admin.update_endpoint(p_endpoint_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints := booking_admin.endpoint_for_change(p_endpoint_id);
    v_unknown text[];
    v_enable boolean := (p_changes ->> 'enabled')::boolean;
BEGIN
    v_unknown := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_changes, '{}')) k
                       WHERE k NOT IN ('url', 'event_types', 'description', 'max_in_flight', 'timeout_ms',
                                       'enabled', 'disabled_reason'));
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'unknown endpoint field(s): %', array_to_string(v_unknown, ', ') USING ERRCODE = '22023';
    END IF;
    PERFORM booking_admin.check_endpoint_limits(p_changes ->> 'max_in_flight', p_changes ->> 'timeout_ms');
    IF v_enable IS FALSE AND p_changes ->> 'disabled_reason' IS NULL THEN
        RAISE EXCEPTION 'disabling an endpoint needs a disabled_reason' USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.delivery_endpoints e SET
        url = CASE WHEN p_changes ? 'url' THEN booking_admin.check_endpoint_url(e.channel, p_changes ->> 'url') ELSE e.url END,
        event_types = CASE WHEN p_changes ? 'event_types'
            THEN booking_admin.check_event_types(ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'event_types')))
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
        updated_at = now()
    WHERE e.id = v_endpoint.id
    RETURNING * INTO v_endpoint;
    PERFORM booking.delivery_wanted_at_commit();
    RETURN booking_admin.endpoint_json(v_endpoint);
END $$;

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

-- A new signing key; the old ones keep signing for p_grace (receivers update in that time),
-- then expire. Returns the new secret (shown this once).
CREATE FUNCTION booking_admin.rotate_endpoint_secret(p_endpoint_id uuid, p_grace interval DEFAULT '24 hours',
                                                      p_secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_secret text := booking_admin.check_webhook_secret(coalesce(p_secret, booking_admin.generate_webhook_secret()));
BEGIN
    PERFORM booking_admin.endpoint_for_change(p_endpoint_id);
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
CREATE FUNCTION booking_admin.send_test_event(p_endpoint_id uuid, p_payload jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints := booking_admin.endpoint_for_change(p_endpoint_id);
    v_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO booking_admin.deliveries (id, endpoint_id, tenant_id, message_id, event_type, payload, event_created_at)
    VALUES (v_id, v_endpoint.id, v_endpoint.tenant_id, 'msg_' || replace(v_id::text, '-', ''), 'webhook.test',
            coalesce(p_payload, jsonb_build_object('message', 'booking_engine test event')), now());
    PERFORM booking.wake_delivery_at_commit();
    RETURN v_id;
END $$;

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
    PERFORM booking_admin.check_event_types(ARRAY[p_event_type]);
    IF p_subject IS NULL OR p_body_text IS NULL THEN
        RAISE EXCEPTION 'a template has a subject and a plain-text body' USING ERRCODE = '22023';
    END IF;
    PERFORM booking_admin.check_template(p_subject), booking_admin.check_template(p_body_text),
            booking_admin.check_template(coalesce(p_body_html, ''));
    INSERT INTO booking_admin.message_templates AS t (tenant_id, event_type, subject, body_text, body_html)
    VALUES (p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html)
    ON CONFLICT (tenant_id, event_type) DO UPDATE
        SET subject = excluded.subject, body_text = excluded.body_text, body_html = excluded.body_html, updated_at = now();
END $$;

-- The values a template's placeholders take for one delivery (booking_engine.delivery's
-- worker calls it when it sends an email or a Slack message). Times are in the customer's time
-- zone, else the staff member's, else the tenant's.
CREATE FUNCTION booking_admin.delivery_context(p_tenant_id uuid, p_event_type text, p_payload jsonb) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH x AS (
        SELECT t.name AS tenant_name, c.name AS customer_name, c.email AS customer_email, sv.name AS service_name,
               st.name AS staff_name, coalesce(c.timezone, st.timezone, t.timezone, 'UTC') AS tz,
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
        'customer_email', x.customer_email, 'service_name', x.service_name, 'staff_name', x.staff_name,
        'time_zone', x.tz,
        'starts_at_local', to_char(x.starts_at AT TIME ZONE x.tz, 'FMDay DD FMMonth YYYY, HH24:MI'),
        'ends_at_local', to_char(x.ends_at AT TIME ZONE x.tz, 'FMDay DD FMMonth YYYY, HH24:MI'),
        'date_local', to_char(x.starts_at AT TIME ZONE x.tz, 'YYYY-MM-DD'),
        'time_local', to_char(x.starts_at AT TIME ZONE x.tz, 'HH24:MI'),
        'appointment_id', p_payload ->> 'appointment_id', 'reason', p_payload ->> 'reason'))
    FROM x
$$;
REVOKE ALL ON FUNCTION booking_admin.delivery_context(uuid, text, jsonb) FROM PUBLIC;

-- Deliveries finished (delivered or dead) longer ago than retention_days (default 30) are
-- deleted with their attempts.
CREATE FUNCTION booking_admin.op_cleanup_deliveries(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM booking_admin.deliveries d
    WHERE d.status IN ('delivered', 'dead')
      AND d.updated_at < now() - make_interval(days => coalesce((p_settings ->> 'retention_days')::int, 30));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION booking_admin.op_cleanup_deliveries(jsonb) FROM PUBLIC;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('cleanup-deliveries', 'Delete finished deliveries and their attempts past retention', 'booking_admin.op_cleanup_deliveries',
     '{"retention_days": 30}', 86400000, 3, 60000);

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
-- Reading: endpoints without their secrets, the deliveries, the ledger, the templates.
GRANT SELECT ON booking_admin.delivery_endpoints, booking_admin.deliveries, booking_admin.delivery_attempts,
    booking_admin.message_templates, booking_admin.delivery_event_types
TO booking_operator;
-- The Rust helpers above are building blocks of these functions, not for callers.
REVOKE ALL ON FUNCTION booking_admin.generate_webhook_secret(), booking_admin.check_webhook_secret(text),
    booking_admin.check_endpoint_url(text, text), booking_admin.check_template(text),
    booking.wake_delivery_at_commit(), booking.delivery_wanted_at_commit()
FROM PUBLIC;

-- Observability (metrics at commit, /metrics worker, health, alert rules, dashboard)
-- The functions implemented in Rust, as a fresh install creates them:
CREATE FUNCTION booking."metrics_record"(
	"p_metric" TEXT, /* & str */
	"p_labels" TEXT[], /* Vec < Option < String > > */
	"p_value" double precision DEFAULT 1.0 /* f64 */
) RETURNS VOID /* Result < (), ErrorReport > */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'metrics_record_wrapper';
CREATE FUNCTION booking_admin."metrics"() RETURNS TABLE (
	"metric" TEXT,  /* String */
	"labels" jsonb,  /* JsonB */
	"value" double precision  /* f64 */
)
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'metrics_wrapper';
CREATE FUNCTION booking_admin."metrics_text"(
	"p_format" TEXT DEFAULT 'prometheus' /* & str */
) RETURNS TEXT /* Result < String, ErrorReport > */
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'metrics_text_wrapper';
CREATE FUNCTION booking_admin."evaluate_alert_rules"() RETURNS jsonb /* Result < JsonB, ErrorReport > */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'evaluate_alert_rules_wrapper';
CREATE FUNCTION booking_admin."check_alert_rule"(
	"condition_sql" TEXT, /* Option < & str > */
	"metric" TEXT /* Option < & str > */
) RETURNS bool /* Result < bool, ErrorReport > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_alert_rule_wrapper';

-- sql/observability.sql, as a fresh install runs it:
-- Observability (src/metrics): what the booking domain counts, where it happens, and the
-- health report. Counts are taken by triggers at the one place each outcome is written and
-- reach shared memory when the transaction commits (booking.metrics_record): a booking
-- rolled back is never counted.

-- Every create, reschedule and cancel ends in booking.finish_operation, which moves its
-- operation from pending to completed or failed: one count per outcome, with the refusal code.
CREATE FUNCTION booking.metrics_on_operation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_outcome text := CASE NEW.status WHEN 'completed' THEN 'succeeded' ELSE 'refused' END;
BEGIN
    PERFORM booking.metrics_record('booking_operations', ARRAY[NEW.operation_type, v_outcome,
        CASE WHEN NEW.status = 'failed'
             THEN coalesce(NEW.result ->> 'code', NEW.result -> 'details' -> 0 ->> 'code', 'unknown') ELSE '' END]);
    IF current_setting('booking_engine.metrics_tenant_labels')::boolean THEN
        PERFORM booking.metrics_record('booking_tenant_operations',
                                             ARRAY[NEW.tenant_id::text, NEW.operation_type, v_outcome]);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER booking_operations_metrics AFTER UPDATE OF status ON booking.booking_operations
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status IN ('completed', 'failed'))
    EXECUTE FUNCTION booking.metrics_on_operation();

-- Every booking change writes an event: created, rescheduled, cancelled, waitlist offers,
-- conflicts, the maintenance transitions.
CREATE FUNCTION booking.metrics_on_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking.metrics_record('booking_events', ARRAY[NEW.event_type]);
    RETURN NULL;
END $$;
CREATE TRIGGER events_metrics AFTER INSERT ON booking.events
    FOR EACH ROW EXECUTE FUNCTION booking.metrics_on_event();

-- A job attempt ends when its runner (or an external worker, or the stale-job recovery) moves
-- it out of running.
CREATE FUNCTION booking.metrics_on_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking.metrics_record('booking_jobs_processed', ARRAY[NEW.handler, NEW.status]);
    IF NEW.started_at IS NOT NULL THEN
        PERFORM booking.metrics_record('booking_job_duration_seconds', ARRAY[NEW.handler],
            greatest(extract(epoch FROM clock_timestamp() - NEW.started_at), 0)::float8);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_metrics AFTER UPDATE OF status ON booking_admin.jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'dead'))
    EXECUTE FUNCTION booking.metrics_on_job();

-- The health report: each component's state and the overall one (the worst). Thresholds:
-- job queue warning when the oldest due job waits over 60 s, critical over 600 s; delivery
-- backlog (undispatched events) warning over 300 s; connections warning above 80 % of
-- max_connections, critical above 95 %; wraparound warning when age(datfrozenxid) passes
-- 1 billion, critical at 1.5 billion (Postgres stops at about 2.1 billion).
CREATE FUNCTION booking_admin.health() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_components jsonb := '{}';
    v_workers jsonb := booking_admin.worker_status();
    v_oldest float8;
    v_dead bigint;
    v_undispatched bigint;
    v_undispatched_age float8;
    v_used bigint;
    v_max bigint := current_setting('max_connections')::bigint;
    v_xid_age bigint;
    v_rank jsonb := '{"ok": 0, "warning": 1, "critical": 2}';
    v_worst text := 'ok';
    v_state text;
    v_key text;
BEGIN
    v_components := v_components || jsonb_build_object('database', jsonb_build_object(
        'status', 'ok', 'version', current_setting('server_version'),
        'uptime_seconds', round(extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()))));
    v_components := v_components || jsonb_build_object('workers', jsonb_build_object(
        'status', CASE WHEN v_workers ->> 'state' = 'running' THEN 'ok'
                       WHEN (v_workers ->> 'will_run')::boolean THEN 'warning' ELSE 'critical' END,
        'state', v_workers ->> 'state', 'reason', v_workers ->> 'reason',
        'running', jsonb_array_length(coalesce(v_workers -> 'workers', '[]')), 'enabled', v_workers -> 'enabled'));
    SELECT coalesce(extract(epoch FROM clock_timestamp() - min(scheduled_at)), 0) INTO v_oldest
    FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= clock_timestamp();
    v_components := v_components || jsonb_build_object('job_queue', jsonb_build_object(
        'status', CASE WHEN v_oldest > 600 THEN 'critical' WHEN v_oldest > 60 THEN 'warning' ELSE 'ok' END,
        'oldest_due_seconds', round(v_oldest::numeric, 1)));
    SELECT count(*) INTO v_dead FROM booking_admin.jobs WHERE status = 'dead';
    v_components := v_components || jsonb_build_object('dead_letters', jsonb_build_object(
        'status', CASE WHEN v_dead > 0 THEN 'warning' ELSE 'ok' END, 'count', v_dead));
    SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)
    INTO v_undispatched, v_undispatched_age FROM booking.events WHERE dispatched_at IS NULL;
    v_components := v_components || jsonb_build_object('delivery_backlog', jsonb_build_object(
        'status', CASE WHEN v_undispatched_age > 300 THEN 'warning' ELSE 'ok' END,
        'undispatched_events', v_undispatched, 'oldest_seconds', round(v_undispatched_age::numeric, 1)));
    SELECT count(*) INTO v_used FROM pg_stat_activity WHERE backend_type = 'client backend';
    v_components := v_components || jsonb_build_object('connections', jsonb_build_object(
        'status', CASE WHEN v_used > 0.95 * v_max THEN 'critical' WHEN v_used > 0.8 * v_max THEN 'warning' ELSE 'ok' END,
        'used', v_used, 'max', v_max));
    SELECT age(datfrozenxid) INTO v_xid_age FROM pg_database WHERE datname = current_database();
    v_components := v_components || jsonb_build_object('wraparound', jsonb_build_object(
        'status', CASE WHEN v_xid_age > 1500000000 THEN 'critical' WHEN v_xid_age > 1000000000 THEN 'warning' ELSE 'ok' END,
        'xid_age', v_xid_age));
    FOR v_key, v_state IN SELECT key, value ->> 'status' FROM jsonb_each(v_components) LOOP
        IF (v_rank ->> v_state)::int > (v_rank ->> v_worst)::int THEN
            v_worst := v_state;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('status', v_worst, 'checked_at', clock_timestamp(), 'components', v_components);
END $$;


-- Alert rules (see docs/observability.md, "Alert rules"): a condition that is either a read-only SELECT
-- run in the security rules' sandbox (every row it returns is one alert instance; its columns
-- become labels, a column named value the value) or a metric sample compared with a
-- threshold. Instances go pending -> firing -> resolved (src/metrics/alerts.rs); firing and
-- resolved are notified through booking.events (alert.firing, alert.resolved).
CREATE TABLE booking_admin.alert_rules (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    severity        text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    condition_sql   text,
    metric          text,
    operator        text CHECK (operator IN ('>', '>=', '<', '<=', '=', '!=')),
    threshold       float8,
    for_duration    interval NOT NULL DEFAULT '0',
    keep_firing_for interval NOT NULL DEFAULT '0',
    repeat_interval interval NOT NULL DEFAULT '4 hours',
    labels          jsonb NOT NULL DEFAULT '{}',
    annotations     jsonb NOT NULL DEFAULT '{}',
    enabled         boolean NOT NULL DEFAULT true,
    -- condition_sql runs as this role: whoever last wrote the rule (set by alert_rules_check),
    -- so an operator's rule reads what the operator may read, even when the scheduler runs it.
    run_as          regrole NOT NULL DEFAULT current_user::regrole,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.alert_rules', '');

CREATE TABLE booking_admin.alert_instances (
    fingerprint      text PRIMARY KEY,
    rule_id          uuid NOT NULL REFERENCES booking_admin.alert_rules (id) ON DELETE CASCADE,
    rule_name        text NOT NULL,
    severity         text NOT NULL,
    labels           jsonb NOT NULL,
    annotations      jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    value            float8,
    active_since     timestamptz NOT NULL,
    started_at       timestamptz,
    resolved_at      timestamptz,
    last_notified_at timestamptz,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    ack_note         text,
    -- The lifecycle's own state (src/metrics/alerts.rs Instance); the columns above mirror it.
    instance         jsonb NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_instances_rule_idx ON booking_admin.alert_instances (rule_id);

CREATE TABLE booking_admin.alert_silences (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Label -> value; an instance is silenced when all of them match (alertname and severity
    -- are labels too).
    matchers   jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'object' AND matchers <> '{}'),
    starts_at  timestamptz NOT NULL DEFAULT now(),
    ends_at    timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT current_user,
    comment    text,
    CHECK (ends_at > starts_at)
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.alert_silences', '');

CREATE TABLE booking_admin.alert_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint text NOT NULL,
    rule_name   text NOT NULL,
    event       text NOT NULL CHECK (event IN ('pending', 'firing', 'resolved', 'inactive', 'notified_firing',
                                               'notified_resolved', 'acknowledged')),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    value       float8,
    labels      jsonb NOT NULL DEFAULT '{}',
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_history_at_idx ON booking_admin.alert_history (at);
CREATE INDEX alert_history_fingerprint_idx ON booking_admin.alert_history (fingerprint, at);

-- Clear errors for a rule before it is stored: 22023 for the shape and durations, 2F003 or
-- 42601 for a condition that is not one plain SELECT, 22023 for an unknown metric. Runs as the
-- writer (not SECURITY DEFINER), who becomes the role the condition runs as.
CREATE FUNCTION booking_admin.alert_rules_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    IF (NEW.condition_sql IS NULL) = (NEW.metric IS NULL) THEN
        RAISE EXCEPTION 'alert rule %: give either condition_sql or metric (with operator and threshold)', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF NEW.metric IS NOT NULL AND (NEW.operator IS NULL OR NEW.threshold IS NULL
                                   OR NEW.threshold IN ('NaN', 'Infinity', '-Infinity')) THEN
        RAISE EXCEPTION 'alert rule %: a metric rule needs an operator and a finite threshold', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF NEW.for_duration < '0' OR NEW.keep_firing_for < '0' OR NEW.repeat_interval <= '0' THEN
        RAISE EXCEPTION 'alert rule %: for_duration and keep_firing_for must not be negative, repeat_interval must be positive', NEW.name
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(NEW.labels) <> 'object' OR jsonb_typeof(NEW.annotations) <> 'object' THEN
        RAISE EXCEPTION 'alert rule %: labels and annotations must be JSON objects', NEW.name USING ERRCODE = '22023';
    END IF;
    PERFORM booking_admin.check_alert_rule(NEW.condition_sql, NEW.metric);
    NEW.run_as := current_user::regrole;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER alert_rules_check BEFORE INSERT OR UPDATE ON booking_admin.alert_rules
    FOR EACH ROW EXECUTE FUNCTION booking_admin.alert_rules_check();

-- Stores one instance's next state (decided in src/metrics/alert_api.rs), keeps the history,
-- and writes the notification as a booking.events row of the operations tenant (the fixed id
-- below, created on first use: booking.events rows belong to a tenant, alerts to none).
CREATE FUNCTION booking_admin.alert_apply(p_doc jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    i jsonb := p_doc -> 'instance';
    v_fp text := p_doc ->> 'fingerprint';
    v_state text := i ->> 'state';
    v_ops uuid := '00000000-0000-0000-0000-000000000000';
    v_row booking_admin.alert_instances;
BEGIN
    IF i IS NULL OR jsonb_typeof(i) = 'null' THEN
        DELETE FROM booking_admin.alert_instances WHERE fingerprint = v_fp;
        IF p_doc ->> 'previous' = 'pending' THEN
            INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
            VALUES (v_fp, p_doc ->> 'rule', 'inactive', (p_doc ->> 'value')::float8, p_doc -> 'labels');
        END IF;
        RETURN;
    END IF;
    INSERT INTO booking_admin.alert_instances AS a (fingerprint, rule_id, rule_name, severity, labels, annotations, state,
        value, active_since, started_at, resolved_at, last_notified_at, instance, updated_at)
    VALUES (v_fp, (p_doc ->> 'rule_id')::uuid, p_doc ->> 'rule', p_doc ->> 'severity', p_doc -> 'labels',
        p_doc -> 'annotations', v_state, (i ->> 'value')::float8, to_timestamp((i ->> 'active_since')::float8),
        to_timestamp((i ->> 'fired_at')::float8), to_timestamp((i ->> 'resolved_at')::float8),
        to_timestamp((i ->> 'last_notified')::float8), i, clock_timestamp())
    ON CONFLICT (fingerprint) DO UPDATE SET
        state = excluded.state, value = excluded.value, annotations = excluded.annotations,
        active_since = excluded.active_since, started_at = excluded.started_at, resolved_at = excluded.resolved_at,
        last_notified_at = excluded.last_notified_at, instance = excluded.instance, updated_at = excluded.updated_at
    RETURNING * INTO v_row;
    IF v_state IS DISTINCT FROM p_doc ->> 'previous' THEN
        INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
        VALUES (v_fp, v_row.rule_name, v_state, v_row.value, v_row.labels);
    END IF;
    IF p_doc ->> 'notify' IS NOT NULL THEN
        INSERT INTO booking.tenants (id, name) VALUES (v_ops, 'booking_engine operations') ON CONFLICT (id) DO NOTHING;
        PERFORM booking.emit_event(v_ops, 'alert.' || (p_doc ->> 'notify'), jsonb_build_object(
            'rule', v_row.rule_name, 'severity', v_row.severity, 'state', v_state, 'labels', v_row.labels,
            'annotations', v_row.annotations, 'fingerprint', v_fp, 'value', v_row.value,
            'started_at', v_row.started_at, 'resolved_at', v_row.resolved_at));
        INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels)
        VALUES (v_fp, v_row.rule_name, 'notified_' || (p_doc ->> 'notify'), v_row.value, v_row.labels);
    END IF;
END $$;

-- Acknowledges a firing or pending instance: who, when, a note. Mutes its reminders (not its
-- resolve notification) until it resolves.
CREATE FUNCTION booking_admin.acknowledge_alert(p_fingerprint text, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_row booking_admin.alert_instances;
BEGIN
    UPDATE booking_admin.alert_instances
    SET acknowledged_by = session_user, acknowledged_at = clock_timestamp(), ack_note = p_note,
        instance = jsonb_set(instance, '{acknowledged}', 'true'), updated_at = clock_timestamp()
    WHERE fingerprint = p_fingerprint AND state <> 'resolved'
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pending or firing alert with fingerprint %', coalesce(p_fingerprint, 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO booking_admin.alert_history (fingerprint, rule_name, event, value, labels, details)
    VALUES (v_row.fingerprint, v_row.rule_name, 'acknowledged', v_row.value, v_row.labels,
            jsonb_build_object('by', v_row.acknowledged_by, 'note', p_note));
    RETURN to_jsonb(v_row) - 'instance';
END $$;

-- Resolves a pending or firing instance by hand (who, a note): resolved at once, with a resolve
-- notification when its firing was notified and no silence matches it. Its condition is not
-- touched: if it still holds, the next evaluation starts a new instance (pending, then firing).
CREATE FUNCTION booking_admin.resolve_alert(p_fingerprint text, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_row booking_admin.alert_instances;
    v_now float8 := extract(epoch FROM clock_timestamp());
    v_notify boolean;
BEGIN
    SELECT * INTO v_row FROM booking_admin.alert_instances
    WHERE fingerprint = p_fingerprint AND state <> 'resolved' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pending or firing alert with fingerprint %', coalesce(p_fingerprint, 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    v_notify := coalesce((v_row.instance ->> 'notified_firing')::boolean, false) AND NOT EXISTS (
        SELECT 1 FROM booking_admin.alert_silences s
        WHERE clock_timestamp() >= s.starts_at AND clock_timestamp() < s.ends_at
          AND (v_row.labels || jsonb_build_object('alertname', v_row.rule_name, 'severity', v_row.severity)) @> s.matchers);
    PERFORM booking_admin.alert_apply(jsonb_build_object(
        'fingerprint', v_row.fingerprint, 'rule', v_row.rule_name, 'rule_id', v_row.rule_id, 'severity', v_row.severity,
        'labels', v_row.labels, 'annotations', v_row.annotations, 'previous', v_row.state, 'value', v_row.value,
        'instance', v_row.instance || jsonb_build_object('state', 'resolved', 'resolved_at', v_now)
                    || CASE WHEN v_notify THEN jsonb_build_object('last_notified', v_now) ELSE '{}' END,
        'notify', CASE WHEN v_notify THEN 'resolved' END));
    UPDATE booking_admin.alert_history SET details = jsonb_build_object('by', session_user, 'note', p_note, 'manual', true)
    WHERE id = (SELECT max(h.id) FROM booking_admin.alert_history h WHERE h.fingerprint = p_fingerprint AND h.event = 'resolved');
    SELECT * INTO v_row FROM booking_admin.alert_instances WHERE fingerprint = p_fingerprint;
    RETURN to_jsonb(v_row) - 'instance';
END $$;

-- Silences instances whose labels match every matcher until p_until: they change state but
-- notify nothing (a firing instance still firing when the silence ends is notified then).
CREATE FUNCTION booking_admin.silence_alerts(p_matchers jsonb, p_until timestamptz, p_comment text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_matchers IS NULL OR jsonb_typeof(p_matchers) <> 'object' OR p_matchers = '{}'
       OR EXISTS (SELECT FROM jsonb_each(p_matchers) m WHERE jsonb_typeof(m.value) <> 'string') THEN
        RAISE EXCEPTION 'p_matchers must be a non-empty JSON object of label names to string values'
            USING ERRCODE = '22023';
    END IF;
    IF p_until IS NULL OR p_until <= clock_timestamp() THEN
        RAISE EXCEPTION 'p_until must be in the future' USING ERRCODE = '22023';
    END IF;
    INSERT INTO booking_admin.alert_silences (matchers, starts_at, ends_at, created_by, comment)
    VALUES (p_matchers, clock_timestamp(), p_until, session_user, p_comment) RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- The default alert rules. Inserted on request (existing names are
-- left as they are); returns how many were added.
CREATE FUNCTION booking_admin.init_default_alert_rules() RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH added AS (
        INSERT INTO booking_admin.alert_rules (name, severity, condition_sql, metric, operator, threshold,
                                               for_duration, annotations) VALUES
        ('dead_letters_present', 'high',
         'SELECT handler, count(*) AS value FROM booking_admin.jobs WHERE status = ''dead'' GROUP BY handler',
         NULL, NULL, NULL, '0', '{"summary": "{{ $value }} dead {{ $labels.handler }} jobs"}'),
        ('job_queue_backlog', 'high',
         'SELECT extract(epoch FROM clock_timestamp() - min(scheduled_at)) AS value FROM booking_admin.jobs
          WHERE status IN (''pending'', ''failed'') AND scheduled_at <= clock_timestamp()
          HAVING min(scheduled_at) < clock_timestamp() - interval ''5 minutes''',
         NULL, NULL, NULL, '2 minutes', '{"summary": "the oldest due job waits for {{ $value }} s"}'),
        ('delivery_backlog', 'medium',
         'SELECT count(*) AS value FROM booking.events WHERE dispatched_at IS NULL
          HAVING min(created_at) < clock_timestamp() - interval ''10 minutes''',
         NULL, NULL, NULL, '5 minutes', '{"summary": "{{ $value }} events wait for delivery"}'),
        ('booking_refusals_high', 'medium',
         'SELECT count(*) FILTER (WHERE status = ''failed'')::float8 / count(*) AS value FROM booking.booking_operations
          WHERE created_at > clock_timestamp() - interval ''15 minutes'' HAVING count(*) >= 20
             AND count(*) FILTER (WHERE status = ''failed'') > 0.5 * count(*)',
         NULL, NULL, NULL, '10 minutes', '{"summary": "{{ $value }} of recent booking operations were refused"}'),
        ('connection_saturation', 'critical',
         'SELECT count(*)::float8 / current_setting(''max_connections'')::float8 AS value FROM pg_stat_activity
          WHERE backend_type = ''client backend''
          HAVING count(*) > 0.9 * current_setting(''max_connections'')::int',
         NULL, NULL, NULL, '2 minutes', '{"summary": "{{ $value }} of max_connections in use"}'),
        ('cache_hit_ratio_low', 'low', NULL, 'booking_pg_cache_hit_ratio', '<', 0.9, '30 minutes',
         '{"summary": "cache hit ratio {{ $value }}"}'),
        ('long_transaction', 'medium', NULL, 'booking_pg_longest_transaction_seconds', '>', 600, '0',
         '{"summary": "a transaction has been open for {{ $value }} s"}'),
        ('critical_security_violations', 'critical', NULL, 'booking_security_violations_open', '>', 0, '0',
         '{"summary": "{{ $value }} open {{ $labels.severity }} security violations"}'),
        ('metrics_dropped', 'low', NULL, 'booking_metrics_dropped_total', '>', 0, '0',
         '{"summary": "{{ $labels.metric }} reached its series cap"}')
        ON CONFLICT (name) DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::int FROM added
$$;

-- Scheduled: evaluate every 15 seconds, and keep 30 days of history.
CREATE FUNCTION booking_admin.op_evaluate_alert_rules(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    DELETE FROM booking_admin.alert_history
    WHERE at < clock_timestamp() - make_interval(days => coalesce((p_settings ->> 'retention_days')::int, 30));
    RETURN (booking_admin.evaluate_alert_rules() ->> 'notifications')::int;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('evaluate-alerts', 'Evaluate the alert rules and notify firing and resolved alerts', 'booking_admin.op_evaluate_alert_rules',
     '{"retention_days": 30}', 15000, 3, 60000);

GRANT SELECT, INSERT, UPDATE, DELETE ON booking_admin.alert_rules TO booking_operator;
GRANT SELECT ON booking_admin.alert_instances, booking_admin.alert_silences, booking_admin.alert_history TO booking_operator;
GRANT DELETE ON booking_admin.alert_silences TO booking_operator;
GRANT EXECUTE ON FUNCTION booking_admin.acknowledge_alert(text, text), booking_admin.resolve_alert(text, text),
    booking_admin.silence_alerts(jsonb, timestamptz, text),
    booking_admin.init_default_alert_rules(), booking_admin.check_alert_rule(text, text)
TO booking_operator;

-- The SLA report needs history: the scheduler's metrics-snapshot operation keeps the
-- booking operation counters, the slot query latency histogram and the health status every
-- 5 minutes (settings.retention_days of them, default 7).
CREATE TABLE booking_admin.metrics_history (
    at     timestamptz NOT NULL,
    metric text NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}',
    value  float8 NOT NULL
);
CREATE INDEX metrics_history_metric_at_idx ON booking_admin.metrics_history (metric, at);

CREATE FUNCTION booking_admin.op_snapshot_metrics(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    n integer;
BEGIN
    DELETE FROM booking_admin.metrics_history
    WHERE at < v_at - make_interval(days => coalesce((p_settings ->> 'retention_days')::int, 7));
    INSERT INTO booking_admin.metrics_history (at, metric, labels, value)
    SELECT v_at, m.metric, m.labels, m.value FROM booking_admin.metrics() m
    WHERE m.metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket')
    UNION ALL
    SELECT v_at, 'health', jsonb_build_object('status', booking_admin.health() ->> 'status'), 1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('metrics-snapshot', 'Keep booking counters, slot latency and health for the SLA report', 'booking_admin.op_snapshot_metrics',
     '{"retention_days": 7}', 300000, 3, 60000);

-- The SLA over a window, against the operator's targets: availability (the share of the window
-- covered by snapshots whose health was not critical; a gap longer than twice the snapshot
-- interval counts as down), the booking refusal rate, and the p95 slot query latency (the
-- upper bound of the bucket holding the 95th percentile of the window's queries). Counter
-- increases are summed snapshot to snapshot; a counter that went down was reset by a restart
-- and counts from zero.
CREATE FUNCTION booking_admin.sla_report(p_window interval DEFAULT '1 day', p_availability_target float8 DEFAULT 0.999,
                                         p_p95_target_ms float8 DEFAULT 250, p_refusal_rate_target float8 DEFAULT 0.05)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_from timestamptz := clock_timestamp() - p_window;
    v_interval float8 := coalesce((SELECT delay_ms FROM booking_admin.scheduler_job_info WHERE job_name = 'metrics-snapshot'),
                                  300000) / 1000.0;
    v_up float8;
    v_covered float8;
    v_total float8;
    v_refused float8;
    v_p95 float8;
    v_availability float8;
BEGIN
    IF p_window IS NULL OR p_window <= '0' OR p_availability_target NOT BETWEEN 0 AND 1
       OR p_refusal_rate_target NOT BETWEEN 0 AND 1 OR p_p95_target_ms <= 0 THEN
        RAISE EXCEPTION 'sla_report: the window must be positive, the availability and refusal targets between 0 and 1, the latency target positive'
            USING ERRCODE = '22023';
    END IF;
    -- Each health snapshot covers the time to the next one, at most twice the interval.
    SELECT sum(span) FILTER (WHERE status <> 'critical'), sum(span) INTO v_up, v_covered FROM (
        SELECT labels ->> 'status' AS status,
               least(extract(epoch FROM coalesce(lead(at) OVER (ORDER BY at), clock_timestamp()) - at), 2 * v_interval) AS span
        FROM booking_admin.metrics_history WHERE metric = 'health' AND at >= v_from) h;
    v_availability := CASE WHEN v_covered > 0
                           THEN v_up / greatest(extract(epoch FROM clock_timestamp() - (SELECT min(at) FROM booking_admin.metrics_history
                                                   WHERE metric = 'health' AND at >= v_from)), v_covered) END;
    WITH s AS (
        SELECT metric, labels, value, lag(value) OVER (PARTITION BY metric, labels ORDER BY at) AS prev
        FROM booking_admin.metrics_history
        WHERE metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket') AND at >= v_from),
    d AS (
        SELECT metric, labels,
               sum(CASE WHEN prev IS NULL THEN 0 WHEN value >= prev THEN value - prev ELSE value END) AS delta
        FROM s GROUP BY metric, labels),
    buckets AS (
        SELECT (labels ->> 'le') AS le, sum(delta) AS n FROM d
        WHERE metric = 'booking_slot_query_duration_seconds_bucket' GROUP BY labels ->> 'le')
    SELECT (SELECT sum(delta) FROM d WHERE metric = 'booking_operations_total'),
           (SELECT sum(delta) FROM d WHERE metric = 'booking_operations_total' AND labels ->> 'outcome' = 'refused'),
           (SELECT min(le::float8) FROM buckets WHERE n >= 0.95 * (SELECT n FROM buckets WHERE le = '+Inf')
                                                  AND (SELECT n FROM buckets WHERE le = '+Inf') > 0)
    INTO v_total, v_refused, v_p95;
    RETURN jsonb_build_object(
        'window', p_window, 'from', v_from, 'to', clock_timestamp(),
        'availability', jsonb_build_object('value', round(v_availability::numeric, 4), 'target', p_availability_target,
                                           'met', v_availability >= p_availability_target),
        'refusal_rate', jsonb_build_object('value', round((v_refused / nullif(v_total, 0))::numeric, 5),
                                           'target', p_refusal_rate_target, 'operations', coalesce(v_total, 0),
                                           'met', coalesce(v_refused / nullif(v_total, 0), 0) <= p_refusal_rate_target),
        'slot_query_p95_ms', jsonb_build_object('value', v_p95 * 1000, 'target', p_p95_target_ms,
                                                'met', coalesce(v_p95 * 1000 <= p_p95_target_ms, true)));
END $$;

-- The performance summary: an overall health score 0-100 and the factors that make it
-- (each scored 0..1 between a good and a bad value, weighted), the auto-tuner's active
-- optimizations, and the pending issues, from the statistics functions of sql/admin.sql.
CREATE FUNCTION booking_admin.performance_summary() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_conn record;
    v_health jsonb := booking_admin.health();
    v_factors jsonb;
    v_dead numeric;
    v_unused bigint;
    v_score numeric;
BEGIN
    SELECT * INTO v_conn FROM booking_admin.get_connection_stats();
    SELECT coalesce(max(dead_tuple_ratio), 0) INTO v_dead FROM booking_admin.get_table_vacuum_stats() WHERE n_live_tup >= 1000;
    SELECT count(*) INTO v_unused FROM booking_admin.get_index_stats() WHERE unused;
    -- name, weight, value, good, bad: the score falls linearly from good to bad.
    WITH f(name, weight, value, good, bad) AS (VALUES
        ('cache_hit_ratio', 25, coalesce(booking_admin.get_cache_hit_ratio(), 1), 0.99, 0.80),
        ('index_hit_ratio', 15, coalesce(booking_admin.get_index_hit_ratio(), 1), 0.99, 0.80),
        ('connection_utilisation', 15, coalesce(v_conn.used_ratio, 0), 0.70, 0.95),
        ('max_dead_tuple_ratio', 15, v_dead, 0.10, 0.50),
        ('unused_indexes', 10, v_unused::numeric, 0, 10),
        ('oldest_transaction_seconds', 10, coalesce(extract(epoch FROM v_conn.oldest_xact_age), 0), 60, 600),
        ('health', 10, CASE v_health ->> 'status' WHEN 'ok' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, 0, 2))
    SELECT jsonb_agg(jsonb_build_object('factor', name, 'weight', weight, 'value', round(value, 4),
               'score', round(greatest(0, least(1, (value - bad) / (good - bad))), 3)) ORDER BY weight DESC, name)
    INTO v_factors FROM f;
    SELECT round(sum((e ->> 'weight')::numeric * (e ->> 'score')::numeric)) INTO v_score FROM jsonb_array_elements(v_factors) e;
    RETURN jsonb_build_object(
        'health_score', v_score,
        'factors', v_factors,
        'active_optimizations', (SELECT coalesce(jsonb_agg(jsonb_build_object('index', t.index_name, 'table', t.table_name,
                                     'applied_at', t.applied_at, 'reason', t.reason) ORDER BY t.applied_at), '[]')
                                 FROM booking_admin.tuning_actions t WHERE t.status = 'applied'),
        'pending_issues', (
            SELECT coalesce(jsonb_agg(i ORDER BY i ->> 'kind', i ->> 'name'), '[]') FROM (
                SELECT jsonb_build_object('kind', 'health', 'name', c.key, 'status', c.value ->> 'status') AS i
                FROM jsonb_each(v_health -> 'components') c WHERE c.value ->> 'status' <> 'ok'
                UNION ALL
                SELECT jsonb_build_object('kind', 'alert', 'name', a.rule_name, 'severity', a.severity, 'since', a.started_at)
                FROM booking_admin.alert_instances a WHERE a.state = 'firing'
                UNION ALL
                SELECT jsonb_build_object('kind', 'security_violations', 'name', v.severity, 'open', count(*))
                FROM booking_admin.security_violations v WHERE v.status <> 'resolved' GROUP BY v.severity
                UNION ALL
                SELECT jsonb_build_object('kind', 'index', 'name', x.index_name, 'table', x.table_name,
                                          'problem', CASE WHEN x.duplicate_of IS NOT NULL THEN 'duplicate of ' || x.duplicate_of ELSE 'unused' END)
                FROM booking_admin.get_index_stats() x WHERE x.unused OR x.duplicate_of IS NOT NULL
                UNION ALL
                SELECT jsonb_build_object('kind', 'vacuum', 'name', t.table_name, 'dead_tuple_ratio', t.dead_tuple_ratio)
                FROM booking_admin.get_table_vacuum_stats() t WHERE t.autovacuum_due) s));
END $$;

-- What the dashboard page shows beside the metrics: today's bookings and refusals (since
-- midnight in the session's time zone, by when they were made), backlogs, open violations, the health report.
CREATE FUNCTION booking_admin.dashboard_data() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        'generated_at', clock_timestamp(),
        'health', booking_admin.health(),
        'health_score', booking_admin.performance_summary() -> 'health_score',
        'bookings_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.operation_type = 'create' AND o.status = 'completed'
                             AND o.created_at >= date_trunc('day', now())),
        'refusals_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.status = 'failed' AND o.created_at >= date_trunc('day', now())),
        'jobs', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
                    (SELECT status, count(*) n FROM booking_admin.jobs GROUP BY status) j),
        'undispatched_events', (SELECT count(*) FROM booking.events WHERE dispatched_at IS NULL),
        'violations', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM
                    (SELECT severity, count(*) n FROM booking_admin.security_violations
                     WHERE status <> 'resolved' GROUP BY severity) v),
        'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', a.rule_name, 'severity', a.severity,
                        'started_at', a.started_at, 'fingerprint', a.fingerprint,
                        'acknowledged', a.acknowledged_at IS NOT NULL) ORDER BY a.started_at), '[]')
                   FROM booking_admin.alert_instances a WHERE a.state = 'firing'),
        'cache_hit_ratio', (SELECT round(coalesce(blks_hit::numeric / nullif(blks_hit + blks_read, 0), 1), 4)
                            FROM pg_stat_database WHERE datname = current_database()))
$$;

GRANT EXECUTE ON FUNCTION booking_admin.metrics(), booking_admin.metrics_text(text), booking_admin.health(),
    booking_admin.dashboard_data(), booking_admin.performance_summary(),
    booking_admin.sla_report(interval, float8, float8, float8)
TO booking_operator;
GRANT SELECT ON booking_admin.metrics_history TO booking_operator;

-- A fresh install's finalize.sql revokes PUBLIC's EXECUTE on every booking and booking_admin function.
REVOKE ALL ON FUNCTION booking.metrics_record(text, text[], double precision), booking_admin.metrics(),
    booking_admin.metrics_text(text), booking_admin.evaluate_alert_rules(), booking_admin.check_alert_rule(text, text),
    booking.metrics_on_operation(), booking.metrics_on_event(), booking.metrics_on_job(),
    booking_admin.health(), booking_admin.alert_rules_check(), booking_admin.alert_apply(jsonb),
    booking_admin.acknowledge_alert(text, text), booking_admin.resolve_alert(text, text),
    booking_admin.silence_alerts(jsonb, timestamptz, text),
    booking_admin.init_default_alert_rules(), booking_admin.op_evaluate_alert_rules(jsonb),
    booking_admin.performance_summary(), booking_admin.dashboard_data(),
    booking_admin.op_snapshot_metrics(jsonb), booking_admin.sla_report(interval, float8, float8, float8)
FROM PUBLIC;
-- Jobs in bulk (bulk enqueue, batch calls for external workers, claims by primary key)

DROP INDEX booking_admin.jobs_tenant_idx;
-- The foreign key's side: deleting a tenant finds its jobs without a scan. Partial: most jobs
-- have no tenant, and a hundred thousand equal NULL entries made every insert walk them (half
-- the cost of a bulk enqueue).
CREATE INDEX jobs_tenant_idx ON booking_admin.jobs (tenant_id) WHERE tenant_id IS NOT NULL;

-- Generated by pgrx in a fresh install (src/jobs/api.rs).
CREATE  FUNCTION booking_admin."random_uuids"(
	"n" INT /* i32 */
) RETURNS uuid[] /* Result < Vec < pgrx :: Uuid > , ErrorReport > */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'random_uuids_wrapper';

-- Many jobs in one statement: a JSON array of objects whose keys are enqueue_job's arguments
-- without the p_ (name and handler required, every other key optional with enqueue_job's
-- default). Returns the jobs' ids in the array's order; an element whose unique_key is already
-- pending, running or failed (or repeats an earlier element's) gets that job's id. One insert
-- for the whole array and one wake-up, so its cost per job is the row and its indexes.
CREATE FUNCTION booking_admin.enqueue_jobs(p_jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
    v_bad bigint;
    -- The inserter, named once instead of by both column defaults of every row.
    v_me regrole := current_user::regrole;
BEGIN
    IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array of objects, not %', coalesce(jsonb_typeof(p_jobs), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- One pass over the array: ids are drawn before the insert so each element knows whether
    -- its row went in, and a malformed element (not an object, no name or handler, a key
    -- that is not one of enqueue_job's arguments: a misspelt one would silently become a
    -- default) is found on the way and refused after it, which rolls the insert back. Jobs
    -- without a unique key cannot conflict and skip ON CONFLICT's speculative insertion (a
    -- third of an insert's cost).
    WITH spec AS MATERIALIZED (
        SELECT s.id, s.name, s.handler, coalesce(s.payload, '{}') AS payload, s.tenant_id,
               coalesce(s.priority, 5) AS priority, coalesce(s.run_at, now()) AS scheduled_at,
               coalesce(s.max_retries, 3) AS max_retries, coalesce(s.retry_delay_ms, 1000) AS retry_delay_ms,
               coalesce(s.retry_backoff_multiplier, 2.0) AS retry_backoff_multiplier,
               coalesce(s.max_delay_ms, 300000) AS max_delay_ms, coalesce(s.jitter, true) AS jitter,
               coalesce(s.timeout_ms, 30000) AS timeout_ms, s.unique_key, s.ord,
               s.name IS NULL OR s.handler IS NULL
                   OR s.job - ARRAY['name', 'handler', 'payload', 'priority', 'run_at', 'max_retries', 'retry_delay_ms',
                                    'retry_backoff_multiplier', 'max_delay_ms', 'jitter', 'timeout_ms', 'tenant_id',
                                    'unique_key'] <> '{}' AS bad
        -- Side by side, element n, its fields and its id: no join, no per-element function call.
        FROM ROWS FROM (
                 jsonb_array_elements(p_jobs),
                 jsonb_to_recordset(p_jobs) AS (
                     name text, handler text, payload jsonb, priority integer, run_at timestamptz,
                     max_retries integer, retry_delay_ms integer, retry_backoff_multiplier numeric,
                     max_delay_ms integer, jitter boolean, timeout_ms integer, tenant_id uuid, unique_key text),
                 unnest(booking_admin.random_uuids(jsonb_array_length(p_jobs)))
             ) WITH ORDINALITY AS s(job, name, handler, payload, priority, run_at, max_retries, retry_delay_ms,
                                    retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, tenant_id,
                                    unique_key, id, ord)
    ), unkeyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me
        FROM spec WHERE unique_key IS NULL AND NOT bad
    ), keyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me
        FROM spec WHERE unique_key IS NOT NULL AND NOT bad ORDER BY ord
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id
    )
    SELECT array_agg(CASE WHEN spec.unique_key IS NULL OR keyed.id IS NOT NULL THEN spec.id END ORDER BY spec.ord),
           array_agg(spec.unique_key ORDER BY spec.ord) FILTER (WHERE spec.unique_key IS NOT NULL AND keyed.id IS NULL),
           min(spec.ord) FILTER (WHERE spec.bad)
    INTO v_ids, v_keys, v_bad
    FROM spec LEFT JOIN keyed ON keyed.id = spec.id;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'job % has no name or handler, or a key that is not one of enqueue_job''s arguments: %',
            v_bad, left((p_jobs->(v_bad::int - 1))::text, 200) USING ERRCODE = '22023';
    END IF;
    IF v_keys IS NOT NULL THEN
        -- The same logical jobs are already queued (by someone else, or earlier in this array):
        -- a new statement sees them, and their ids fill the gaps in order.
        SELECT array_agg(coalesce(i.id, (SELECT j.id FROM booking_admin.jobs j
                                         WHERE j.unique_key = v_keys[i.gap] AND j.status IN ('pending', 'running', 'failed')))
                         ORDER BY i.ord)
        INTO v_ids
        FROM (SELECT u.id, u.ord, count(*) FILTER (WHERE u.id IS NULL) OVER (ORDER BY u.ord) AS gap
              FROM unnest(v_ids) WITH ORDINALITY u(id, ord)) i;
    END IF;
    IF cardinality(v_keys) IS DISTINCT FROM cardinality(v_ids) THEN
        PERFORM booking_admin.wake_workers_at_commit();
    END IF;
    RETURN coalesce(v_ids, '{}');
END $$;

-- For external workers and the in-database runners alike.
CREATE OR REPLACE FUNCTION booking_admin.claim_jobs(p_worker_id text, p_batch_size integer, p_handlers text[] DEFAULT NULL)
RETURNS SETOF booking_admin.jobs
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH picked AS (
        SELECT j.id FROM booking_admin.jobs j
        WHERE j.status IN ('pending', 'failed') AND j.scheduled_at <= now()
          AND (p_handlers IS NULL OR j.handler = ANY (p_handlers))
        ORDER BY j.priority, j.scheduled_at
        LIMIT greatest(p_batch_size, 0)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE booking_admin.jobs j
    SET status = 'running', locked_by = p_worker_id, locked_pid = pg_backend_pid(), locked_at = now(),
        heartbeat_at = now(), started_at = clock_timestamp(), updated_at = now()
    -- By primary key, whatever the table's statistics say: joined to picked, a freshly filled
    -- queue (not analyzed yet) was read whole by every claim.
    WHERE j.id = ANY (ARRAY(SELECT picked.id FROM picked))
    RETURNING j.*
$$;

-- An external worker's batch calls: the given jobs, locked, must be running under its name, else
-- nothing is recorded and the first offending id is named: 22023 for NULL arguments, a NULL or
-- repeated id, or results/errors not matching the ids one to one; P0002 for an unknown id;
-- 55000 for a job that is not running or that another worker holds (its lease expired and it
-- was claimed again, or it was already finished).
CREATE FUNCTION booking_admin.lock_leased_jobs(p_worker_id text, p_ids uuid[], p_values anyarray) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    n integer;
    v record;
BEGIN
    IF p_worker_id IS NULL OR p_ids IS NULL THEN
        RAISE EXCEPTION 'worker id and job ids must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_values IS NOT NULL AND cardinality(p_values) <> cardinality(p_ids) THEN
        RAISE EXCEPTION '% job ids but % results or errors', cardinality(p_ids), cardinality(p_values)
            USING ERRCODE = '22023';
    END IF;
    PERFORM FROM booking_admin.jobs j
    WHERE j.id = ANY (p_ids) AND j.status = 'running' AND j.locked_by = p_worker_id
    FOR UPDATE;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = cardinality(p_ids) THEN
        RETURN;
    END IF;
    SELECT u.id, u.ord, j.status, j.locked_by, count(*) OVER (PARTITION BY u.id) AS copies INTO v
    FROM unnest(p_ids) WITH ORDINALITY u(id, ord) LEFT JOIN booking_admin.jobs j ON j.id = u.id
    ORDER BY coalesce(u.id IS NOT NULL AND j.status = 'running' AND j.locked_by = p_worker_id
                      AND count(*) OVER (PARTITION BY u.id) = 1, false), u.ord
    LIMIT 1;
    IF v.id IS NULL OR v.copies > 1 THEN
        RAISE EXCEPTION 'job id % (at %) is NULL or given more than once', coalesce(v.id::text, 'NULL'), v.ord
            USING ERRCODE = '22023';
    ELSIF v.status IS NULL THEN
        RAISE EXCEPTION 'job % does not exist', v.id USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION 'job % is %, not running under worker %', v.id,
        CASE WHEN v.status = 'running' THEN 'held by ' || coalesce(v.locked_by, 'nobody') ELSE v.status END, p_worker_id
        USING ERRCODE = '55000',
              HINT = 'Its worker took too long and it was put back in the queue, or it was already finished.';
END $$;

-- Completes a batch of this worker's running jobs in one call (results: one per id, or NULL
-- for none); returns how many. Errors: booking_admin.lock_leased_jobs.
CREATE FUNCTION booking_admin.complete_jobs(p_worker_id text, p_ids uuid[], p_results jsonb[] DEFAULT NULL)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.lock_leased_jobs(p_worker_id, p_ids, p_results);
    SELECT booking_admin.record_completions(p_ids, p_results);
$$;

-- Records one failed attempt for each of a batch of this worker's running jobs (errors: one per
-- id, or NULL for 'failed'); returns each job's new status ('failed' or 'dead') in the ids'
-- order. Errors: booking_admin.lock_leased_jobs.
CREATE FUNCTION booking_admin.fail_jobs(p_worker_id text, p_ids uuid[], p_errors text[] DEFAULT NULL)
RETURNS text[]
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.lock_leased_jobs(p_worker_id, p_ids, p_errors);
    SELECT coalesce(array_agg(booking_admin.record_failure(j, coalesce(e.error, 'failed')) ORDER BY e.ord), '{}')
    FROM unnest(p_ids, p_errors) WITH ORDINALITY e(id, error, ord) JOIN booking_admin.jobs j ON j.id = e.id;
$$;

-- An external worker's one round trip per batch: records the previous batch's outcomes
-- (complete_jobs, fail_jobs; empty or NULL arrays record nothing) and claims the next batch
-- (claim_jobs), in one transaction. Same errors as those three; on an error nothing is
-- recorded and nothing claimed.
CREATE FUNCTION booking_admin.complete_and_claim_jobs(
    p_worker_id text,
    p_batch_size integer,
    p_handlers text[] DEFAULT NULL,
    p_completed uuid[] DEFAULT NULL,
    p_results jsonb[] DEFAULT NULL,
    p_failed uuid[] DEFAULT NULL,
    p_errors text[] DEFAULT NULL
) RETURNS SETOF booking_admin.jobs
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT booking_admin.complete_jobs(p_worker_id, p_completed, p_results) WHERE cardinality(p_completed) > 0;
    SELECT booking_admin.fail_jobs(p_worker_id, p_failed, p_errors) WHERE cardinality(p_failed) > 0;
    SELECT * FROM booking_admin.claim_jobs(p_worker_id, p_batch_size, p_handlers);
$$;

REVOKE ALL ON FUNCTION booking_admin.random_uuids(integer), booking_admin.enqueue_jobs(jsonb),
    booking_admin.lock_leased_jobs(text, uuid[], anyarray), booking_admin.complete_jobs(text, uuid[], jsonb[]),
    booking_admin.fail_jobs(text, uuid[], text[]),
    booking_admin.complete_and_claim_jobs(text, integer, text[], uuid[], jsonb[], uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking_admin.enqueue_jobs(jsonb), booking_admin.random_uuids(integer) TO booking_operator;
-- The slot store
-- booking.availability_slots and its horizon, settings, triggers, reads and wrappers: the
-- Rust writer first, then sql/slot_store.sql as a fresh install runs it, then what
-- sql/finalize.sql does for the new objects.
CREATE FUNCTION booking.refresh_availability_slots(
	"p_tenant_ids" uuid[],
	"p_staff_ids" uuid[],
	"p_dates" date[]
) RETURNS INT
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'refresh_availability_slots_wrapper';

-- The slot store: booking.availability_slots holds every slot the availability
-- engine offers, per staff member, service and start time, over a horizon of days per tenant,
-- with taken slots kept as is_available = false and every slot ranked. It is kept exact in the
-- transaction that changes an input: statement-level triggers on every input table (below)
-- work out which staff-days the change touches, from their transition tables, and hand them to
-- booking.refresh_availability_slots (Rust, src/slot_store/api.rs), which locks those days'
-- rows in availability_slot_days, recomputes them with the engine and writes the difference.
-- The rules that depend on "now" (minimum notice, advance limit) are applied when the store is
-- read (booking.availability_slots_now), so the stored rows never go stale as time passes.

-- Per tenant: the horizon and the prime hours of the ranking, plus the tenant's own notice and
-- advance policies, kept here by triggers so that reads apply them with one join (the global
-- and builtin values are read by the view itself, once per query).
CREATE TABLE booking.slot_store_settings (
    tenant_id    uuid PRIMARY KEY REFERENCES booking.tenants (id) ON DELETE CASCADE,
    -- Off by default: keeping the store exact costs every write of an input (a booking about
    -- 2.5 ms more, see docs/benchmarks.md), so a tenant whose front end reads slots from the
    -- table turns it on; the others pay nothing.
    enabled      boolean NOT NULL DEFAULT false,
    horizon_days integer NOT NULL DEFAULT 60
                 CONSTRAINT slot_store_horizon_days_between_1_and_366 CHECK (horizon_days BETWEEN 1 AND 366),
    prime_start  time NOT NULL DEFAULT '10:00',
    prime_end    time NOT NULL DEFAULT '14:00',
    -- NULL: the tenant has no policy of its own (the global or builtin one applies).
    min_notice   interval,
    max_advance  interval,
    CONSTRAINT slot_store_prime_hours_in_order CHECK (prime_start <= prime_end)
);
COMMENT ON TABLE booking.slot_store_settings IS
    'Slot store per tenant: enabled (off by default), horizon_days (1..366) of slots kept from each staff member''s today, prime hours (staff local time) that boost a slot''s confidence; min_notice and max_advance mirror the tenant''s own policies, NULL when it has none (maintained, not set).';

-- The settings are the users' (pg_dump keeps them); a restore that meets the row the tenant's
-- trigger already made updates it. The store itself is derived: a restore rebuilds it as the
-- inputs load.
SELECT pg_catalog.pg_extension_config_dump('booking.slot_store_settings', '');
CREATE TRIGGER slot_store_settings_restore BEFORE INSERT ON booking.slot_store_settings
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('tenant_id');

-- One row per staff member and local date in the horizon: the horizon itself, and the lock a
-- recomputation of that staff-day takes (so that unrelated staff-days never wait on each other).
CREATE TABLE booking.availability_slot_days (
    tenant_id uuid NOT NULL,
    staff_id  uuid NOT NULL,
    date      date NOT NULL,
    version   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, staff_id, date),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX availability_slot_days_staff_idx ON booking.availability_slot_days (staff_id, date);
COMMENT ON TABLE booking.availability_slot_days IS
    'The slot store''s horizon, one row per staff member and local date; its row lock serialises recomputations of that staff-day.';

CREATE TABLE booking.availability_slots (
    tenant_id        uuid NOT NULL,
    staff_id         uuid NOT NULL,
    date             date NOT NULL,
    service_id       uuid NOT NULL,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    slot_type        text NOT NULL CHECK (slot_type IN ('regular', 'prime')),
    is_available     boolean NOT NULL,
    confidence_score numeric(5, 4) NOT NULL,
    booking_density  numeric(5, 4) NOT NULL,
    priority_boost   numeric(5, 4) NOT NULL,
    fit_score        numeric(5, 4) NOT NULL,
    day_open_ratio   numeric(5, 4) NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, staff_id, date, service_id, start_time),
    FOREIGN KEY (tenant_id, staff_id, date) REFERENCES booking.availability_slot_days (tenant_id, staff_id, date) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE
) WITH (fillfactor = 80);  -- room for HOT updates: a booking rewrites its day's scores in place
-- PostgREST's read: one staff member (and service), a time range, ordered by rank.
CREATE INDEX availability_slots_staff_start_idx ON booking.availability_slots (staff_id, service_id, start_time);
CREATE INDEX availability_slots_service_date_idx ON booking.availability_slots (service_id, date);
COMMENT ON TABLE booking.availability_slots IS
    'Every slot the availability engine offers within the horizon (staff local date), exact at every commit; is_available false: taken by a booking. Minimum notice and advance limit are not applied here: read booking.availability_slots_now.';
COMMENT ON COLUMN booking.availability_slots.confidence_score IS
    '0.35 fit + 0.25 day_open_ratio + 0.20 (1 - booking_density) + priority_boost; 0 for a taken slot.';

-- On Citus every trigger below also runs on a worker, inside the statement that changes a shard
-- of its table. There a query may reach only shards of one tenant on the same node: Citus runs
-- such a query locally, but refuses one that fans out to other shards or nodes, and one that
-- joins a transition table with a distributed table. So every function here reads a trigger's
-- transition tables on their own (into arrays), then works tenant by tenant, each statement
-- filtered by one tenant_id (a router query). The golden file citus_rules checks the triggers
-- for this shape.

-- Whether the tenant's store is on. PL/pgSQL, as every function here that reads a distributed
-- table with an argument: Citus cannot plan a SQL function's parameters.
CREATE FUNCTION booking.slot_store_is_on(p_tenant_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT w.enabled FROM booking.slot_store_settings w WHERE w.tenant_id = p_tenant_id), false);
END $$;

-- The tenant's own notice and advance policies (NULL: none of its own), as the engine counts
-- them: exact hours and 24-hour days.
CREATE FUNCTION booking.slot_store_settings_policies() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    NEW.min_notice := (SELECT make_interval(secs => p.policy_value::text::float8 * 3600) FROM booking.booking_policies p
                       WHERE p.tenant_id = NEW.tenant_id AND p.policy_key = 'minimum_booking_notice_hours');
    NEW.max_advance := (SELECT make_interval(secs => p.policy_value::text::float8 * 86400) FROM booking.booking_policies p
                        WHERE p.tenant_id = NEW.tenant_id AND p.policy_key = 'advance_booking_limit_days');
    RETURN NEW;
END $$;
CREATE TRIGGER slot_store_settings_policies BEFORE INSERT OR UPDATE ON booking.slot_store_settings
    FOR EACH ROW EXECUTE FUNCTION booking.slot_store_settings_policies();

-- How far from a booked or blocked range a slot's availability or score can change: a slot
-- conflicts within its length and buffers, its fit looks one more such length away, its
-- density an hour.
CREATE FUNCTION booking.slot_store_reach(p_tenant_id uuid) RETURNS interval
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN make_interval(mins => 2 * coalesce((SELECT max(s.duration_minutes + s.buffer_before_minutes + s.buffer_after_minutes)
                                               FROM booking.services s WHERE s.tenant_id = p_tenant_id), 0)
                                 + 2 * coalesce((SELECT t.buffer_time_minutes FROM booking.tenants t WHERE t.id = p_tenant_id), 0)
                                 + 60);
END $$;

-- Recomputes the staff-days of the horizon between two local dates per staff member (NULL:
-- unbounded), of the tenants whose store is on. Parallel arrays, one element per staff member.
CREATE FUNCTION booking.slot_store_touch_dates(p_tenant_ids uuid[], p_staff_ids uuid[], p_from date[], p_to date[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    n integer := 0;
BEGIN
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenant_ids) t WHERE t IS NOT NULL LOOP
        CONTINUE WHEN NOT booking.slot_store_is_on(v_tenant);
        n := n + (SELECT booking.refresh_availability_slots(array_agg(d.tenant_id), array_agg(d.staff_id), array_agg(d.date))
                  FROM (SELECT DISTINCT d.tenant_id, d.staff_id, d.date
                        FROM booking.availability_slot_days d
                        JOIN unnest(p_tenant_ids, p_staff_ids, p_from, p_to) AS c (tenant_id, staff_id, first, last)
                          ON c.tenant_id = v_tenant AND d.staff_id = c.staff_id
                         AND d.date >= coalesce(c.first, '-infinity') AND d.date <= coalesce(c.last, 'infinity')
                        WHERE d.tenant_id = v_tenant) d);
    END LOOP;
    RETURN n;
END $$;

-- Recomputes the staff-days whose slots a range of time (an appointment's blocked range, a
-- time off) can affect: the staff member's local dates from the range's start to its end,
-- widened by the tenant's reach.
CREATE FUNCTION booking.slot_store_touch_spans(p_tenant_ids uuid[], p_staff_ids uuid[], p_spans tstzrange[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_reach interval;
    v_staff uuid[];
    v_from date[];
    v_to date[];
    n integer := 0;
BEGIN
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenant_ids) t WHERE t IS NOT NULL LOOP
        CONTINUE WHEN NOT booking.slot_store_is_on(v_tenant);
        v_reach := booking.slot_store_reach(v_tenant);
        SELECT array_agg(c.staff_id), array_agg(((lower(c.span) - v_reach) AT TIME ZONE f.timezone)::date),
               array_agg(((upper(c.span) + v_reach) AT TIME ZONE f.timezone)::date)
        INTO v_staff, v_from, v_to
        FROM booking.staff f
        JOIN unnest(p_tenant_ids, p_staff_ids, p_spans) AS c (tenant_id, staff_id, span)
          ON c.tenant_id = v_tenant AND f.id = c.staff_id
        WHERE f.tenant_id = v_tenant;
        n := n + booking.slot_store_touch_dates(array_fill(v_tenant, ARRAY[coalesce(cardinality(v_staff), 0)]), v_staff, v_from, v_to);
    END LOOP;
    RETURN n;
END $$;

-- Every staff member's horizon (of the given tenants; NULL: every tenant whose store is on)
-- runs from their local today for the tenant's horizon_days (none while the store is off):
-- adds the missing days and computes their slots, and drops the days before today and beyond
-- the horizon (their slots go with them). Returns the number of slots the added days hold.
CREATE FUNCTION booking.slot_store_extend(p_tenant_ids uuid[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_days integer;
    v_now timestamptz := booking.clock_now();
    v_staff uuid[];
    v_dates date[];
    n integer := 0;
BEGIN
    FOR v_tenant IN
        SELECT DISTINCT t FROM unnest(coalesce(p_tenant_ids,
            (SELECT array_agg(w.tenant_id) FROM booking.slot_store_settings w WHERE w.enabled))) t
        WHERE t IS NOT NULL
    LOOP
        v_days := coalesce((SELECT w.horizon_days FROM booking.slot_store_settings w
                            WHERE w.tenant_id = v_tenant AND w.enabled), 0);
        -- Locked first in (staff, date) order, the order every writer of days locks in
        -- (src/slot_store/api.rs): a DELETE alone locks in scan order and could deadlock with a
        -- booking recomputing the same days.
        PERFORM FROM booking.availability_slot_days d
        JOIN booking.staff f ON f.tenant_id = v_tenant AND f.id = d.staff_id
        WHERE d.tenant_id = v_tenant
          AND (d.date < (v_now AT TIME ZONE f.timezone)::date OR d.date >= (v_now AT TIME ZONE f.timezone)::date + v_days)
        ORDER BY d.staff_id, d.date FOR UPDATE OF d;
        DELETE FROM booking.availability_slot_days d
        USING booking.staff f
        WHERE d.tenant_id = v_tenant AND f.tenant_id = v_tenant AND f.id = d.staff_id
          AND (d.date < (v_now AT TIME ZONE f.timezone)::date OR d.date >= (v_now AT TIME ZONE f.timezone)::date + v_days);
        CONTINUE WHEN v_days = 0;
        WITH added AS (
            INSERT INTO booking.availability_slot_days (tenant_id, staff_id, date)
            SELECT f.tenant_id, f.id, (v_now AT TIME ZONE f.timezone)::date + g.n
            FROM booking.staff f, generate_series(0, v_days - 1) AS g (n)
            WHERE f.tenant_id = v_tenant
            ON CONFLICT DO NOTHING
            RETURNING staff_id, date
        )
        SELECT array_agg(a.staff_id), array_agg(a.date) INTO v_staff, v_dates FROM added a;
        n := n + booking.refresh_availability_slots(array_fill(v_tenant, ARRAY[coalesce(cardinality(v_staff), 0)]), v_staff, v_dates);
    END LOOP;
    RETURN n;
END $$;

-- Triggers: one statement-level trigger per input table and event, with transition tables;
-- each works out the touched staff-days set-based and recomputes them in one call per tenant.
-- SECURITY DEFINER so that whoever may change an input (service_role, the booking functions)
-- keeps the store, which no application may write; a trigger function cannot be called directly.

CREATE FUNCTION booking.slot_store_on_appointments() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
    v_spans tstzrange[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.tenant_id), array_agg(n.staff_id), array_agg(n.blocked) INTO v_tenants, v_staff, v_spans
        FROM n WHERE n.status IN ('pending', 'confirmed', 'active');
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.tenant_id), array_agg(o.staff_id), array_agg(o.blocked) INTO v_tenants, v_staff, v_spans
        FROM o WHERE o.status IN ('pending', 'confirmed', 'active');
    ELSE
        -- Only a change of what the appointment blocks matters: confirming or checking in
        -- (live to live) recomputes nothing.
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id), array_agg(c.blocked) INTO v_tenants, v_staff, v_spans
        FROM n JOIN o ON o.tenant_id = n.tenant_id AND o.id = n.id,
             LATERAL (VALUES (n.tenant_id, n.staff_id, n.blocked, n.status IN ('pending', 'confirmed', 'active')),
                             (o.tenant_id, o.staff_id, o.blocked, o.status IN ('pending', 'confirmed', 'active')))
                 AS c (tenant_id, staff_id, blocked, live)
        WHERE c.live
          AND ((n.status IN ('pending', 'confirmed', 'active')) IS DISTINCT FROM (o.status IN ('pending', 'confirmed', 'active'))
               OR n.blocked IS DISTINCT FROM o.blocked OR n.staff_id IS DISTINCT FROM o.staff_id);
    END IF;
    PERFORM booking.slot_store_touch_spans(v_tenants, v_staff, v_spans);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.appointments REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_appointments();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.appointments REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_appointments();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.appointments REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_appointments();

CREATE FUNCTION booking.slot_store_on_time_off() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
    v_spans tstzrange[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.tenant_id), array_agg(n.staff_id), array_agg(n.period) INTO v_tenants, v_staff, v_spans FROM n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.tenant_id), array_agg(o.staff_id), array_agg(o.period) INTO v_tenants, v_staff, v_spans FROM o;
    ELSE
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id), array_agg(c.period) INTO v_tenants, v_staff, v_spans
        FROM (SELECT n.tenant_id, n.staff_id, n.period FROM n UNION ALL SELECT o.tenant_id, o.staff_id, o.period FROM o) c;
    END IF;
    PERFORM booking.slot_store_touch_spans(v_tenants, v_staff, v_spans);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.staff_time_off REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_time_off();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.staff_time_off REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_time_off();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.staff_time_off REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_time_off();

-- An override changes a day's working windows, and a window that runs past midnight into the
-- next day's carries the slot grid with it: from the day before to the end of the horizon.
CREATE FUNCTION booking.slot_store_on_overrides() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
    v_from date[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.tenant_id), array_agg(n.staff_id), array_agg(n.date - 1) INTO v_tenants, v_staff, v_from FROM n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.tenant_id), array_agg(o.staff_id), array_agg(o.date - 1) INTO v_tenants, v_staff, v_from FROM o;
    ELSE
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id), array_agg(c.date - 1) INTO v_tenants, v_staff, v_from
        FROM (SELECT n.tenant_id, n.staff_id, n.date FROM n UNION ALL SELECT o.tenant_id, o.staff_id, o.date FROM o) c;
    END IF;
    PERFORM booking.slot_store_touch_dates(v_tenants, v_staff, v_from, array_fill(NULL::date, ARRAY[coalesce(cardinality(v_from), 0)]));
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.schedule_overrides REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_overrides();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.schedule_overrides REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_overrides();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.schedule_overrides REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_overrides();

-- Weekly schedules and the services a staff member offers: the staff member's whole horizon.
CREATE FUNCTION booking.slot_store_on_staff_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id) INTO v_tenants, v_staff FROM (SELECT DISTINCT n.tenant_id, n.staff_id FROM n) c;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id) INTO v_tenants, v_staff FROM (SELECT DISTINCT o.tenant_id, o.staff_id FROM o) c;
    ELSE
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id) INTO v_tenants, v_staff
        FROM (SELECT n.tenant_id, n.staff_id FROM n UNION SELECT o.tenant_id, o.staff_id FROM o) c;
    END IF;
    PERFORM booking.slot_store_touch_dates(v_tenants, v_staff, NULL, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.staff_schedules REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.staff_schedules REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.staff_schedules REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.staff_services REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.staff_services REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.staff_services REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff_rows();

-- A new staff member gets a horizon; a change of time zone moves it (their today) and every
-- slot's date, a change of is_active offers or withdraws all their slots.
CREATE FUNCTION booking.slot_store_on_staff() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT n.tenant_id) INTO v_tenants FROM n;
        PERFORM booking.slot_store_extend(v_tenants);
    ELSE
        SELECT array_agg(n.tenant_id), array_agg(n.id) INTO v_tenants, v_staff
        FROM n JOIN o ON o.tenant_id = n.tenant_id AND o.id = n.id
        WHERE (n.timezone, n.is_active) IS DISTINCT FROM (o.timezone, o.is_active);
        IF v_tenants IS NOT NULL THEN
            PERFORM booking.slot_store_extend(v_tenants);
            PERFORM booking.slot_store_touch_dates(v_tenants, v_staff, NULL, NULL);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.staff REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.staff REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_staff();

-- The staff members of one tenant among p_tenant_ids (every one, or those offering one of the
-- services in p_service_ids), as the parallel arrays the touch functions take.
CREATE FUNCTION booking.slot_store_staff_of(p_tenant_ids uuid[], p_service_ids uuid[] DEFAULT NULL,
                                            OUT tenant_ids uuid[], OUT staff_ids uuid[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_staff uuid[];
BEGIN
    tenant_ids := '{}';
    staff_ids := '{}';
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenant_ids) t WHERE t IS NOT NULL LOOP
        IF p_service_ids IS NULL THEN
            v_staff := ARRAY(SELECT f.id FROM booking.staff f WHERE f.tenant_id = v_tenant);
        ELSE
            v_staff := ARRAY(SELECT DISTINCT ss.staff_id FROM booking.staff_services ss
                             WHERE ss.tenant_id = v_tenant AND ss.service_id = ANY (p_service_ids));
        END IF;
        tenant_ids := tenant_ids || array_fill(v_tenant, ARRAY[coalesce(cardinality(v_staff), 0)]);
        staff_ids := staff_ids || v_staff;
    END LOOP;
END $$;

-- A service's length, buffers or activity: the horizon of every staff member offering it.
CREATE FUNCTION booking.slot_store_on_services() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_services uuid[];
    v_staff record;
BEGIN
    SELECT array_agg(n.tenant_id), array_agg(n.id) INTO v_tenants, v_services
    FROM n JOIN o ON o.tenant_id = n.tenant_id AND o.id = n.id
    WHERE (n.duration_minutes, n.buffer_before_minutes, n.buffer_after_minutes, n.is_active)
          IS DISTINCT FROM (o.duration_minutes, o.buffer_before_minutes, o.buffer_after_minutes, o.is_active);
    IF v_tenants IS NOT NULL THEN
        v_staff := booking.slot_store_staff_of(v_tenants, v_services);
        PERFORM booking.slot_store_touch_dates(v_staff.tenant_ids, v_staff.staff_ids, NULL, NULL);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.services REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_services();

-- A new tenant gets its settings row; a change of its time zone, opening hours, turnover or
-- slot interval recomputes every staff member's horizon.
CREATE FUNCTION booking.slot_store_on_tenants() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_tenants uuid[];
    v_staff record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Row by row: each insert is routed to its tenant's shard.
        FOR v_tenant IN SELECT n.id FROM n LOOP
            INSERT INTO booking.slot_store_settings (tenant_id) VALUES (v_tenant) ON CONFLICT DO NOTHING;
        END LOOP;
    ELSE
        SELECT array_agg(n.id) INTO v_tenants
        FROM n JOIN o ON o.id = n.id
        WHERE (n.timezone, n.opening_hours, n.buffer_time_minutes, n.slot_interval_minutes)
              IS DISTINCT FROM (o.timezone, o.opening_hours, o.buffer_time_minutes, o.slot_interval_minutes);
        IF v_tenants IS NOT NULL THEN
            v_staff := booking.slot_store_staff_of(v_tenants);
            PERFORM booking.slot_store_touch_dates(v_staff.tenant_ids, v_staff.staff_ids, NULL, NULL);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.tenants REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenants();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.tenants REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenants();

-- Holidays are days in the tenant's zone, which may be a day away from a staff member's: a
-- one-off holiday recomputes two days either side of it, a yearly one the whole horizon, of the
-- staff it affects.
CREATE FUNCTION booking.slot_store_on_holidays() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_rows booking.holidays[];
    v_tenant uuid;
    v_tenants uuid[] := '{}';
    v_staff uuid[] := '{}';
    v_from date[] := '{}';
    v_to date[] := '{}';
    h booking.holidays;
    v_member uuid;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_rows := ARRAY(SELECT n FROM n);
    ELSIF TG_OP = 'DELETE' THEN
        v_rows := ARRAY(SELECT o FROM o);
    ELSE
        v_rows := ARRAY(SELECT n FROM n UNION ALL SELECT o FROM o);
    END IF;
    FOREACH h IN ARRAY v_rows LOOP
        FOR v_member IN
            SELECT f.id FROM booking.staff f
            WHERE f.tenant_id = h.tenant_id AND (h.affects_all_staff OR f.id = ANY (h.affected_staff_ids))
        LOOP
            v_tenants := v_tenants || h.tenant_id;
            v_staff := v_staff || v_member;
            v_from := v_from || CASE WHEN NOT h.is_recurring THEN h.date - 2 END;
            v_to := v_to || CASE WHEN NOT h.is_recurring THEN h.date + 2 END;
        END LOOP;
    END LOOP;
    PERFORM booking.slot_store_touch_dates(v_tenants, v_staff, v_from, v_to);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.holidays REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_holidays();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.holidays REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_holidays();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.holidays REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_holidays();

-- Settings: turning the store on or off or a new horizon length moves the horizon, new prime
-- hours rescore every slot.
CREATE FUNCTION booking.slot_store_on_settings() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff record;
BEGIN
    SELECT array_agg(n.tenant_id) INTO v_tenants
    FROM n JOIN o ON o.tenant_id = n.tenant_id
    WHERE n.horizon_days <> o.horizon_days OR n.enabled <> o.enabled;
    IF v_tenants IS NOT NULL THEN
        PERFORM booking.slot_store_extend(v_tenants);
    END IF;
    SELECT array_agg(n.tenant_id) INTO v_tenants
    FROM n JOIN o ON o.tenant_id = n.tenant_id
    WHERE (n.prime_start, n.prime_end) IS DISTINCT FROM (o.prime_start, o.prime_end);
    IF v_tenants IS NOT NULL THEN
        v_staff := booking.slot_store_staff_of(v_tenants);
        PERFORM booking.slot_store_touch_dates(v_staff.tenant_ids, v_staff.staff_ids, NULL, NULL);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.slot_store_settings REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_settings();

-- A tenant's own notice or advance policy changed: its settings row reads them again (its
-- BEFORE trigger does). Global and builtin policies are read by the view at query time.
CREATE FUNCTION booking.slot_store_on_policies() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_tenants uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_tenants := ARRAY(SELECT DISTINCT n.tenant_id FROM n);
    ELSIF TG_OP = 'DELETE' THEN
        v_tenants := ARRAY(SELECT DISTINCT o.tenant_id FROM o);
    ELSE
        v_tenants := ARRAY(SELECT n.tenant_id FROM n UNION SELECT o.tenant_id FROM o);
    END IF;
    -- Tenant by tenant: each update is routed to its tenant's shard.
    FOREACH v_tenant IN ARRAY v_tenants LOOP
        UPDATE booking.slot_store_settings w SET min_notice = w.min_notice WHERE w.tenant_id = v_tenant;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_policies_insert AFTER INSERT ON booking.booking_policies REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_policies();
CREATE TRIGGER slot_store_policies_update AFTER UPDATE ON booking.booking_policies REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_policies();
CREATE TRIGGER slot_store_policies_delete AFTER DELETE ON booking.booking_policies REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_policies();

-- The store as applications read it (PostgREST: GET /availability_slots_now?staff_id=eq.…&
-- is_available=is.true&order=confidence_score.desc): is_available also applies the minimum
-- notice and advance limit as of now: the tenant's own (kept on its settings row), else the
-- global or builtin one, as the engine counts them (exact hours, 24-hour days), read once per
-- query from the reference table on the node that runs it.
CREATE VIEW booking.availability_slots_now WITH (security_invoker = true) AS
SELECT s.tenant_id, s.staff_id, s.service_id, s.date, s.start_time, s.end_time, s.slot_type,
       s.is_available AND s.start_time >= booking.clock_now() + coalesce(w.min_notice, g.min_notice)
                      AND s.start_time <= booking.clock_now() + coalesce(w.max_advance, g.max_advance) AS is_available,
       s.confidence_score, s.booking_density, s.priority_boost, s.fit_score, s.day_open_ratio, s.created_at
FROM booking.availability_slots s
JOIN booking.slot_store_settings w ON w.tenant_id = s.tenant_id
CROSS JOIN (
    SELECT make_interval(secs => coalesce((SELECT p.policy_value::text::float8 FROM booking.global_policies p
                                           WHERE p.policy_key = 'minimum_booking_notice_hours'
                                           ORDER BY p.is_builtin LIMIT 1), 0) * 3600) AS min_notice,
           make_interval(secs => coalesce((SELECT p.policy_value::text::float8 FROM booking.global_policies p
                                           WHERE p.policy_key = 'advance_booking_limit_days'
                                           ORDER BY p.is_builtin LIMIT 1), 36500) * 86400) AS max_advance
) g;
COMMENT ON VIEW booking.availability_slots_now IS
    'The slot store with is_available as of now (minimum notice, advance limit): its available rows of a service are exactly booking.get_available_slots.';

-- The staff local dates the store holds for a tenant.
CREATE FUNCTION booking.slot_store_horizon(p_tenant_id uuid, p_staff_id uuid DEFAULT NULL) RETURNS daterange
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN (SELECT daterange(min(d.date), max(d.date), '[]') FROM booking.availability_slot_days d
            WHERE d.tenant_id = p_tenant_id AND (p_staff_id IS NULL OR d.staff_id = p_staff_id));
END $$;

-- 22023 unless from..to (staff local dates) lies within the horizon.
CREATE FUNCTION booking.slot_store_check_range(p_tenant_id uuid, p_staff_id uuid, p_from date, p_to date) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_horizon daterange := booking.slot_store_horizon(p_tenant_id, p_staff_id);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM booking.slot_store_settings w WHERE w.tenant_id = p_tenant_id AND w.enabled) THEN
        RAISE EXCEPTION 'the slot store is off for this tenant' USING ERRCODE = '55000',
            HINT = 'UPDATE booking.slot_store_settings SET enabled = true WHERE tenant_id = …; get_available_slots works either way';
    END IF;
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'the dates must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_from > p_to THEN
        RAISE EXCEPTION 'from date % is after to date %', p_from, p_to USING ERRCODE = '22023';
    END IF;
    IF v_horizon IS NULL OR NOT v_horizon @> daterange(p_from, p_to, '[]') THEN
        RAISE EXCEPTION 'dates % to % are outside the slot horizon (%)', p_from, p_to,
                        coalesce(lower(v_horizon) || ' to ' || (upper(v_horizon) - 1), 'empty')
            USING ERRCODE = '22023',
                  HINT = 'The store holds slots from today for booking.slot_store_settings.horizon_days days.';
    END IF;
END $$;

-- The best slots of a service between two staff local dates: free as of now, highest
-- confidence first, with the factors of the score.
CREATE FUNCTION booking.find_optimal_slots(p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz, confidence_score numeric,
               booking_density numeric, priority_boost numeric, fit_score numeric, day_open_ratio numeric, slot_type text)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_tenant uuid;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    -- PT404 for a service or staff member the caller may not see, whether it exists or not.
    PERFORM booking.require_bookable(p_service_id, p_staff_id);
    SELECT s.tenant_id INTO v_tenant FROM booking.services s WHERE s.id = p_service_id;
    PERFORM booking.slot_store_check_range(v_tenant, NULL, p_from, p_to);
    RETURN QUERY
        SELECT v.staff_id, v.start_time, v.end_time, v.confidence_score, v.booking_density, v.priority_boost,
               v.fit_score, v.day_open_ratio, v.slot_type
        FROM booking.availability_slots_now v
        WHERE v.service_id = p_service_id AND v.date BETWEEN p_from AND p_to AND v.is_available
          AND (p_staff_id IS NULL OR v.staff_id = p_staff_id)
        ORDER BY v.confidence_score DESC, v.start_time, v.staff_id
        LIMIT p_limit;
END $$;
COMMENT ON FUNCTION booking.find_optimal_slots(uuid, date, date, uuid, integer) IS
    'The p_limit best free slots of a service (staff local dates p_from..p_to within the horizon), by confidence_score, with its factors.';

-- An explicit regeneration, for the tenant's own people: recomputes a staff member's
-- days from p_start_date to p_end_date (within the horizon) and returns how many slots they
-- hold. The store is exact without it; it repairs nothing that is not already right.
CREATE FUNCTION booking.generate_availability_slots(p_staff_id uuid, p_start_date date, p_end_date date) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_staff booking.staff;
BEGIN
    IF p_staff_id IS NULL THEN
        RAISE EXCEPTION 'p_staff_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_staff FROM booking.staff WHERE id = p_staff_id;
    IF NOT FOUND OR NOT booking.caller_is_insider(v_staff.tenant_id) THEN
        RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
    END IF;
    PERFORM booking.slot_store_check_range(v_staff.tenant_id, p_staff_id, p_start_date, p_end_date);
    PERFORM booking.slot_store_touch_dates(ARRAY[v_staff.tenant_id], ARRAY[p_staff_id], ARRAY[p_start_date], ARRAY[p_end_date]);
    RETURN (SELECT count(*) FROM booking.availability_slots s
            WHERE s.tenant_id = v_staff.tenant_id AND s.staff_id = p_staff_id AND s.date BETWEEN p_start_date AND p_end_date);
END $$;

-- bookSlot and releaseSlot as SQL: the idempotent booking and the cancellation, nothing
-- else (they check the caller; the triggers keep the store).
CREATE FUNCTION booking.book_slot(p_staff_id uuid, p_service_id uuid, p_start_time timestamptz, p_customer_id uuid,
                                  p_idempotency_key text, p_notes text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking.create_booking_idempotent(p_idempotency_key, jsonb_strip_nulls(jsonb_build_object(
        'staff_id', p_staff_id, 'service_id', p_service_id, 'starts_at', p_start_time, 'customer_id', p_customer_id,
        'notes', p_notes)))
$$;

CREATE FUNCTION booking.release_slot(p_appointment_id uuid, p_reason text DEFAULT NULL, p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking.cancel_appointment(p_appointment_id, p_reason, p_idempotency_key)
$$;

-- Horizon upkeep: hourly, so that each time zone's new day is added within the hour after its
-- midnight (a run with nothing to add or drop reads the staff list and writes nothing).
CREATE FUNCTION booking_admin.op_extend_slot_horizon(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking.slot_store_extend(NULL)
$$;
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('extend-slot-horizon', 'Add the slot store''s new days and drop past ones', 'booking_admin.op_extend_slot_horizon', '{}', 3600000, 3, 300000);

-- Anyone may read the store (it holds what get_available_slots tells anyone: slots of active
-- staff offering active services) and the settings; only the triggers write them.
CREATE POLICY availability_slots_public_read ON booking.availability_slots FOR SELECT USING (true);
CREATE POLICY slot_store_settings_public_read ON booking.slot_store_settings FOR SELECT USING (true);
-- The global and builtin policies are what every booking page tells (deadlines, notice,
-- advance limit): the view above reads them as its caller.
CREATE POLICY global_policies_public_read ON booking.global_policies FOR SELECT USING (true);
GRANT SELECT ON booking.global_policies TO PUBLIC;
GRANT SELECT ON booking.availability_slots, booking.slot_store_settings, booking.availability_slots_now TO PUBLIC;

-- Existing tenants (an upgrade) get their settings and horizon.
INSERT INTO booking.slot_store_settings (tenant_id) SELECT t.id FROM booking.tenants t ON CONFLICT DO NOTHING;
SELECT booking.slot_store_extend(NULL);

ALTER TABLE booking.slot_store_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.availability_slot_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.availability_slots ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON FUNCTION booking.refresh_availability_slots(uuid[], uuid[], date[]),
    booking.slot_store_settings_policies(), booking.slot_store_reach(uuid),
    booking.slot_store_touch_dates(uuid[], uuid[], date[], date[]), booking.slot_store_touch_spans(uuid[], uuid[], tstzrange[]),
    booking.slot_store_extend(uuid[]), booking.slot_store_on_appointments(), booking.slot_store_on_time_off(),
    booking.slot_store_on_overrides(), booking.slot_store_on_staff_rows(), booking.slot_store_on_staff(),
    booking.slot_store_on_services(), booking.slot_store_on_tenants(), booking.slot_store_on_holidays(),
    booking.slot_store_on_settings(), booking.slot_store_on_policies(), booking.slot_store_horizon(uuid, uuid),
    booking.slot_store_is_on(uuid), booking.slot_store_staff_of(uuid[], uuid[]),
    booking.slot_store_check_range(uuid, uuid, date, date), booking.find_optimal_slots(uuid, date, date, uuid, integer),
    booking.generate_availability_slots(uuid, date, date), booking.book_slot(uuid, uuid, timestamptz, uuid, text, text),
    booking.release_slot(uuid, text, text), booking_admin.op_extend_slot_horizon(jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    booking.find_optimal_slots(uuid, date, date, uuid, integer), booking.generate_availability_slots(uuid, date, date),
    booking.book_slot(uuid, uuid, timestamptz, uuid, text, text), booking.release_slot(uuid, text, text)
TO PUBLIC;
CREATE OR REPLACE FUNCTION booking_admin.grant_api_roles() RETURNS text[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_granted text[] := '{}';
BEGIN
    IF to_regrole('service_role') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA booking TO service_role;
        -- The slot store is written by its triggers only: a direct write would make it wrong.
        REVOKE INSERT, UPDATE, DELETE ON booking.availability_slots, booking.availability_slot_days FROM service_role;
        GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid),
            booking.check_rate_limit(text, text, integer, integer), booking.check_rate_limit_json(text, text, integer, integer)
        TO service_role;
        v_granted := v_granted || 'service_role'::text;
    END IF;
    IF to_regrole('booking_operator') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION booking.log_security_event(text, text, text, boolean, text, boolean, uuid),
            booking.check_rate_limit(text, text, integer, integer), booking.check_rate_limit_json(text, text, integer, integer)
        TO booking_operator;
        v_granted := v_granted || 'booking_operator'::text;
    END IF;
    RETURN v_granted;
END $$;
SELECT booking_admin.grant_api_roles();
-- The store's tables are distributed by tenant like the others.
CREATE OR REPLACE FUNCTION booking_admin.citus_layout(OUT kind text, OUT object text, OUT distribution_argument text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('reference', 'booking.global_policies', NULL),
           ('distributed', 'booking.tenants', 'id'),
           ('distributed', 'booking.staff', 'tenant_id'),
           ('distributed', 'booking.services', 'tenant_id'),
           ('distributed', 'booking.customers', 'tenant_id'),
           ('distributed', 'booking.staff_services', 'tenant_id'),
           ('distributed', 'booking.staff_schedules', 'tenant_id'),
           ('distributed', 'booking.schedule_overrides', 'tenant_id'),
           ('distributed', 'booking.staff_time_off', 'tenant_id'),
           ('distributed', 'booking.holidays', 'tenant_id'),
           ('distributed', 'booking.booking_policies', 'tenant_id'),
           ('distributed', 'booking.appointments', 'tenant_id'),
           ('distributed', 'booking.booking_operations', 'tenant_id'),
           ('distributed', 'booking.events', 'tenant_id'),
           ('distributed', 'booking.waitlist', 'tenant_id'),
           ('distributed', 'booking.waitlist_notifications', 'tenant_id'),
           ('distributed', 'booking.slot_store_settings', 'tenant_id'),
           ('distributed', 'booking.availability_slot_days', 'tenant_id'),
           ('distributed', 'booking.availability_slots', 'tenant_id'),
           ('function', 'booking.create_tenant_booking(uuid, text, jsonb)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_available_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text)', 'p_tenant_id'),
           ('function', 'booking.cancel_tenant_appointment(uuid, uuid, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_booking_page(uuid)', 'p_tenant_id'),
           ('function', 'booking.register_customer(uuid, text, text, text)', 'p_tenant_id')
$$;
-- The Citus level in every CI run: distribute_tables and what the delivery worker asks of it.
-- Whether distribute_tables has distributed this database (Citus installed, booking.events a
-- Citus table). The delivery worker asks: events written on the workers cannot wake it.
CREATE FUNCTION booking_admin.is_distributed() RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_distributed boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    -- Through EXECUTE: Citus's catalog exists only where Citus is installed.
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = ''booking.events''::regclass)'
        INTO v_distributed;
    RETURN v_distributed;
END $$;
REVOKE ALL ON FUNCTION booking_admin.is_distributed() FROM PUBLIC;

-- Distributes the schema as above; returns {"reference_tables", "distributed_tables",
-- "distributed_functions", "newly_distributed"}. Idempotent: what is already a Citus table is
-- left alone (functions are registered again, which Citus accepts). Errors: 0A000 where Citus is
-- not installed, 55000 on a node that is not the coordinator. Needs a superuser (Citus's own
-- functions do); not for PUBLIC.
CREATE OR REPLACE FUNCTION booking_admin.distribute_tables() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, booking_admin, pg_temp AS $$
DECLARE
    r record;
    v_is_coordinator boolean;
    v_exists boolean;
    v_new text[] := '{}';
    v_reference text[] := '{}';
    v_distributed text[] := '{}';
    v_functions text[] := '{}';
    v_attempt integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database: there is nothing to distribute'
            USING ERRCODE = '0A000',
                  HINT = 'On a Citus coordinator: CREATE EXTENSION citus, add the workers (citus_add_node), CREATE EXTENSION booking_engine, then call this.';
    END IF;
    -- Citus's catalog is read through EXECUTE: this function must compile without Citus too.
    EXECUTE 'SELECT citus_is_coordinator()' INTO v_is_coordinator;
    IF NOT v_is_coordinator THEN
        RAISE EXCEPTION 'booking_admin.distribute_tables() must run on the Citus coordinator' USING ERRCODE = '55000';
    END IF;
    -- Our triggers read and write only their own row's tenant (schema.sql), which is what Citus
    -- asks of a trigger on a distributed table before it allows one.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    -- Tables with foreign keys to a reference table are created in one transaction with it:
    -- Citus needs sequential shard access for that.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    -- Every table up front, in one order: the coordinator's scheduler may be reading some of
    -- them, and taking them one by one below could deadlock with it. A try that waits too
    -- long or deadlocks is rolled back (its locks released) and made again.
    FOR v_attempt IN 1..30 LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '2s', true);
            EXECUTE 'LOCK TABLE booking_admin.jobs, ' || (
                SELECT string_agg(l.object, ', ') FROM booking_admin.citus_layout() l WHERE l.kind <> 'function')
                || ' IN ACCESS EXCLUSIVE MODE';
            EXIT;
        EXCEPTION WHEN deadlock_detected OR lock_not_available THEN
            IF v_attempt = 30 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '0', true);
    -- The coordinator's local tables cannot keep a foreign key to a distributed table.
    ALTER TABLE booking_admin.jobs DROP CONSTRAINT IF EXISTS jobs_tenant_id_fkey;
    ALTER TABLE booking_admin.delivery_endpoints DROP CONSTRAINT IF EXISTS delivery_endpoints_tenant_id_fkey;
    ALTER TABLE booking_admin.message_templates DROP CONSTRAINT IF EXISTS message_templates_tenant_id_fkey;
    -- Citus refuses row-level security policies with subqueries on distributed tables, and a
    -- policy's caller lookup would be a nested distributed query on the worker anyway. The
    -- read policies go; row-level security stays enabled, so these tables are readable only
    -- by their owner and BYPASSRLS roles (Supabase's service_role): applications read through
    -- the functions, which check their caller. Fails closed, never open.
    DROP POLICY IF EXISTS customers_read ON booking.customers;
    DROP POLICY IF EXISTS appointments_read ON booking.appointments;
    DROP POLICY IF EXISTS booking_operations_read ON booking.booking_operations;
    DROP POLICY IF EXISTS waitlist_read ON booking.waitlist;

    FOR r IN SELECT * FROM booking_admin.citus_layout() LOOP
        IF r.kind IN ('reference', 'distributed') THEN
            EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::regclass)'
                INTO v_exists USING r.object;
            IF NOT v_exists THEN
                IF r.kind = 'reference' THEN
                    EXECUTE format('SELECT create_reference_table(%L)', r.object);
                ELSIF r.object = 'booking.tenants' THEN
                    EXECUTE format('SELECT create_distributed_table(%L, %L)', r.object, r.distribution_argument);
                ELSE
                    EXECUTE format('SELECT create_distributed_table(%L, %L, colocate_with => %L)',
                                   r.object, r.distribution_argument, 'booking.tenants');
                END IF;
                v_new := v_new || r.object;
            END IF;
            IF r.kind = 'reference' THEN
                v_reference := v_reference || r.object;
            ELSE
                v_distributed := v_distributed || r.object;
            END IF;
        ELSE
            EXECUTE format('SELECT create_distributed_function(%L, %L, colocate_with => %L)',
                           r.object, r.distribution_argument, 'booking.tenants');
            v_functions := v_functions || r.object;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('reference_tables', to_jsonb(v_reference), 'distributed_tables', to_jsonb(v_distributed),
                              'distributed_functions', to_jsonb(v_functions), 'newly_distributed', to_jsonb(v_new));
END $$;

-- Functions of 0.1.0 that Citus refused (subqueries in an insert, an update not routed by tenant).
CREATE OR REPLACE FUNCTION booking.add_to_waitlist(p_entry jsonb) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking.update_waitlist_entry(p_id uuid, p_changes jsonb) RETURNS jsonb
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

-- Tenants that run themselves over RPC, and an API that passes Supabase's Security Advisor.
-- The implementations of the application functions move to booking_internal (dropped from
-- booking and created there; the caller helpers, which row-level security policies use, are
-- moved so that the policies follow), schema booking gets SECURITY INVOKER entry points of the
-- same names and signatures (sql/api.sql), every function pins its search_path, and the new
-- members, invitations, self-administration functions and scoped policies are created as
-- sql/access.sql, sql/tenants.sql, sql/schema.sql, sql/portal.sql and sql/delivery.sql do. On a
-- Citus cluster run SELECT booking_admin.distribute_tables() again afterwards: it distributes
-- the new tables and registers the entry points as the distributed functions.
CREATE SCHEMA booking_internal;
REVOKE ALL ON SCHEMA booking_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA booking_internal TO PUBLIC;

-- Tables.
ALTER TABLE booking.tenants
    ADD COLUMN customer_booking_status text NOT NULL DEFAULT 'confirmed' CHECK (customer_booking_status IN ('pending', 'confirmed')),
    ADD COLUMN staff_manage_own_schedule boolean NOT NULL DEFAULT false;
ALTER TABLE booking.booking_policies
    ADD COLUMN service_id uuid,
    ADD COLUMN staff_id uuid,
    ADD CONSTRAINT booking_policies_one_scope CHECK (service_id IS NULL OR staff_id IS NULL),
    DROP CONSTRAINT booking_policies_tenant_id_policy_key_key,
    ADD CONSTRAINT booking_policies_scope_key UNIQUE NULLS NOT DISTINCT (tenant_id, policy_key, service_id, staff_id),
    ADD FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE,
    ADD FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE;
CREATE INDEX booking_policies_service_idx ON booking.booking_policies (service_id) WHERE service_id IS NOT NULL;
CREATE INDEX booking_policies_staff_idx ON booking.booking_policies (staff_id) WHERE staff_id IS NOT NULL;
COMMENT ON TABLE booking.booking_policies IS
    'A tenant''s own policies, for the whole tenant, one service (service_id) or one staff member (staff_id). Precedence for a booking of a staff member and service: the staff member''s row, the service''s, the tenant''s, a global row (booking.global_policies), the builtin default.';
ALTER TABLE booking.slot_store_settings ADD COLUMN policy_overrides jsonb NOT NULL DEFAULT '{}';
COMMENT ON TABLE booking.slot_store_settings IS
    'Slot store per tenant: enabled (off by default), horizon_days (1..366) of slots kept from each staff member''s today, prime hours (staff local time) that boost a slot''s confidence; min_notice and max_advance mirror the tenant''s own policies, NULL when it has none, policy_overrides its staff members'' and services'' (maintained, not set).';

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
ALTER TABLE booking.tenant_members ENABLE ROW LEVEL SECURITY;

-- The caller helpers move with the row-level security policies that use them.
ALTER FUNCTION booking.caller_customer_ids() SET SCHEMA booking_internal;
ALTER FUNCTION booking.caller_staff_tenant_ids() SET SCHEMA booking_internal;
ALTER FUNCTION booking.caller_is_staff_of(uuid) SET SCHEMA booking_internal;
ALTER FUNCTION booking.caller_is_customer(uuid, uuid) SET SCHEMA booking_internal;

-- The other implementations, and the functions whose signature changes, are made anew.
DROP FUNCTION booking.create_booking_idempotent(text, jsonb), booking.create_tenant_booking(uuid, text, jsonb),
    booking.reschedule_appointment(uuid, timestamptz, text), booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text),
    booking.cancel_appointment(uuid, text, text), booking.cancel_tenant_appointment(uuid, uuid, text, text),
    booking.confirm_appointment(uuid), booking.check_in_appointment(uuid), booking.complete_appointment(uuid),
    booking.mark_no_show(uuid), booking.add_to_waitlist(jsonb), booking.update_waitlist_entry(uuid, jsonb),
    booking.remove_from_waitlist(uuid), booking.require_bookable(uuid, uuid),
    booking.rpc_validate_appointment_slot(uuid, uuid, timestamptz, timestamptz, uuid),
    booking.get_tenant_available_slots(uuid, date, uuid, uuid), booking.find_optimal_slots(uuid, date, date, uuid, integer),
    booking.generate_availability_slots(uuid, date, date), booking.book_slot(uuid, uuid, timestamptz, uuid, text, text),
    booking.release_slot(uuid, text, text), booking.get_booking_page(uuid), booking.register_customer(uuid, text, text, text),
    booking.available_slot_arrays(uuid, date, date, uuid), booking.policy_value(uuid, text),
    booking_admin.execute_admin_sql(text, boolean), booking_admin.check_admin_sql(text, boolean),
    booking_admin.execute_explain_query(text, boolean), booking_admin.analyze_query(text),
    booking_admin.perform_tuning_cycle(), booking_admin.evaluate_security_rules(),
    booking_admin.check_event_types(text[]), booking_admin.endpoint_json(booking_admin.delivery_endpoints),
    booking_admin.check_endpoint_limits(text, text), booking_admin.generate_webhook_secret(),
    booking_admin.check_webhook_secret(text), booking_admin.check_endpoint_url(text, text), booking_admin.check_template(text);

-- Functions in Rust, as pgrx creates them in a fresh install.
CREATE  FUNCTION booking_internal."available_slot_arrays"(
	"service_id" uuid, /* Option < PgUuid > */
	"from_date" date, /* Option < Date > */
	"to_date" date, /* Option < Date > */
	"staff_id" uuid DEFAULT NULL /* Option < PgUuid > */
) RETURNS TABLE (
	"staff_ids" uuid[],  /* Vec < PgUuid > */
	"starts" timestamp with time zone[],  /* Vec < TimestampWithTimeZone > */
	"ends" timestamp with time zone[]  /* Vec < TimestampWithTimeZone > */
)
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'available_slot_arrays_wrapper';

CREATE  FUNCTION booking_internal."new_invitation_token"(
	"p_tenant_id" uuid, /* PgUuid */
	"p_invitation_id" uuid /* PgUuid */
) RETURNS TABLE (
	"token" TEXT,  /* String */
	"token_hash" bytea  /* Vec < u8 > */
)
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'new_invitation_token_wrapper';

CREATE  FUNCTION booking_internal."parse_invitation_token"(
	"p_token" TEXT /* & str */
) RETURNS TABLE (
	"tenant_id" uuid,  /* PgUuid */
	"invitation_id" uuid,  /* PgUuid */
	"secret_hash" bytea  /* Vec < u8 > */
)
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_invitation_token_wrapper';

CREATE  FUNCTION booking_internal."same_token_hash"(
	"p_stored" bytea, /* & [u8] */
	"p_presented" bytea /* & [u8] */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'same_token_hash_wrapper';

CREATE  FUNCTION booking_internal."tenant_limits"() RETURNS jsonb /* JsonB */
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tenant_limits_wrapper';

CREATE  FUNCTION "rate_limit_status"(
	"identifier" TEXT, /* Option < String > */
	"bucket" TEXT DEFAULT 'api', /* Option < String > */
	"max_requests" INT DEFAULT 100, /* Option < i32 > */
	"window_seconds" INT DEFAULT 900 /* Option < i32 > */
) RETURNS jsonb /* Result < JsonB, Report > */
VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rate_limit_status_wrapper';

CREATE  FUNCTION booking_admin."execute_admin_sql"(
	"sql_text" TEXT, /* Option < & str > */
	"allow_vacuum_full" bool DEFAULT false, /* Option < bool > */
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, pgrx :: pg_sys :: panic :: ErrorReport > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'execute_admin_sql_wrapper';

CREATE  FUNCTION booking_admin."check_admin_sql"(
	"sql_text" TEXT, /* Option < & str > */
	"allow_vacuum_full" bool DEFAULT false, /* Option < bool > */
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, pgrx :: pg_sys :: panic :: ErrorReport > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_admin_sql_wrapper';

CREATE  FUNCTION booking_admin."execute_explain_query"(
	"sql" TEXT, /* Option < & str > */
	"analyze" bool DEFAULT false, /* Option < bool > */
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, ErrorReport > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'execute_explain_query_wrapper';

CREATE  FUNCTION booking_admin."analyze_query"(
	"sql" TEXT, /* Option < & str > */
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, ErrorReport > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'analyze_query_wrapper';

CREATE  FUNCTION booking_admin."perform_tuning_cycle"(
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, ErrorReport > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'perform_tuning_cycle_wrapper';

CREATE  FUNCTION booking_admin."evaluate_security_rules"(
	"p_search_path" TEXT DEFAULT current_setting('search_path') /* Option < & str > */
) RETURNS jsonb /* Result < JsonB, Report > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'evaluate_security_rules_wrapper';

CREATE  FUNCTION booking_internal."generate_webhook_secret"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'generate_webhook_secret_wrapper';

CREATE  FUNCTION booking_internal."check_webhook_secret"(
	"secret" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_webhook_secret_wrapper';

CREATE  FUNCTION booking_internal."check_endpoint_url"(
	"channel" TEXT, /* Option < & str > */
	"url" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < Option < String > , ErrorReport > */
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_endpoint_url_wrapper';

CREATE  FUNCTION booking_internal."check_template"(
	"template" TEXT /* Option < & str > */
) RETURNS VOID /* Result < (), ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_template_wrapper';

-- Every other Rust function pins its search_path too.
ALTER FUNCTION booking.clock_now() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.is_valid_timezone(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.is_valid_opening_hours(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.is_valid_freeze_windows(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.check_rate_limit(text, text, integer, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.check_rate_limit_json(text, text, integer, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.request_context() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.is_within_opening_hours(jsonb, timestamp) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.is_single_select(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.classify_pii_value(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.metrics_record(text, text[], double precision) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.check_alert_rule(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.retry_delay_ms(integer, double precision, integer, integer, double precision) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.random_uuids(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.wake_workers_at_commit() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.worker_status() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.verify_webhook_signature(text, text, text, text, text, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.wake_delivery_at_commit() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking.delivery_wanted_at_commit() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.scan_pii(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION booking_admin.rollback_tuning_action(bigint) SET search_path = pg_catalog, pg_temp;

-- SQL functions, as the feature files create them.
CREATE FUNCTION booking.policy_value(p_tenant_id uuid, p_key text, p_service_id uuid DEFAULT NULL, p_staff_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN coalesce(
        (SELECT p.policy_value FROM booking.booking_policies p
         WHERE p.tenant_id = p_tenant_id AND p.policy_key = p_key
           AND (p.staff_id = p_staff_id OR p.service_id = p_service_id OR (p.staff_id IS NULL AND p.service_id IS NULL))
         ORDER BY p.staff_id IS NULL, p.service_id IS NULL LIMIT 1),
        (SELECT g.policy_value FROM booking.global_policies g WHERE g.policy_key = p_key ORDER BY g.is_builtin LIMIT 1));
END $$;
CREATE OR REPLACE FUNCTION booking_internal.caller_staff_tenant_ids() RETURNS uuid[]
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
CREATE OR REPLACE FUNCTION booking.caller_may_act_for(p_tenant_id uuid, p_customer_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN booking.caller_is_insider(p_tenant_id)
        OR booking_internal.caller_is_customer(p_tenant_id, p_customer_id);
END $$;
CREATE OR REPLACE FUNCTION booking.caller_is_insider(p_tenant_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN booking_internal.caller_tenant_role(p_tenant_id) IS NOT NULL;
END $$;
CREATE OR REPLACE FUNCTION booking.status_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (p_from, p_to) IN (
        ('pending', 'confirmed'), ('pending', 'cancelled'), ('pending', 'expired'),
        ('confirmed', 'active'), ('confirmed', 'cancelled'), ('confirmed', 'no_show'),
        -- Appointments become active when their start passes; one nobody checked in to is a no-show.
        ('active', 'completed'), ('active', 'no_show'))
$$;
CREATE OR REPLACE FUNCTION booking.appointment_json(a booking.appointments) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(a) - 'blocked'
$$;
CREATE OR REPLACE FUNCTION booking.policy_failure(p_code text, p_error text, p_operation_id uuid, p_details jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('success', false, 'code', p_code, 'error', p_error,
                              'details', p_details, 'operation_id', p_operation_id)
$$;
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
    v_status text := p_booking ->> 'status';
    -- The caller's role in the service's tenant (NULL: a customer or an anonymous caller).
    v_role text;
    v_request jsonb;
    v_op uuid;
    v_replay jsonb;
    v_check jsonb;
    v_appt booking.appointments;
    v_missing text;
BEGIN
    IF p_booking IS NULL OR jsonb_typeof(p_booking) <> 'object' THEN
        RAISE EXCEPTION 'p_booking must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT f INTO v_missing FROM unnest(ARRAY['customer_id', 'staff_id', 'service_id', 'starts_at']) f
    WHERE p_booking ->> f IS NULL LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_booking.% is required', v_missing USING ERRCODE = '22023';
    END IF;
    IF v_status IS NOT NULL AND v_status NOT IN ('pending', 'confirmed') THEN
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
    v_ends := coalesce((p_booking ->> 'ends_at')::timestamptz, v_starts + make_interval(mins => v_service.duration_minutes));
    IF NOT isfinite(v_starts) OR NOT isfinite(v_ends) THEN
        RAISE EXCEPTION 'starts_at and ends_at must be finite' USING ERRCODE = '22008';
    END IF;
    IF v_ends <= v_starts THEN
        RAISE EXCEPTION 'ends_at must be after starts_at' USING ERRCODE = '22023';
    END IF;
    v_price := coalesce((p_booking ->> 'price')::numeric, v_service.price);
    IF v_price < 0 THEN
        RAISE EXCEPTION 'price must not be negative' USING ERRCODE = '22023';
    END IF;
    -- Length and price are the service's for customers, anonymous callers and receptionists:
    -- only the tenant's other people may book a different end or price. A mismatch is refused,
    -- never ignored, so a client learns its request was not what it will get.
    IF v_ends <> v_starts + make_interval(mins => v_service.duration_minutes) AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('ends_at must be starts_at + the service''s %s minutes; only the tenant''s staff may set another end',
                                      v_service.duration_minutes));
    END IF;
    IF v_price <> v_service.price AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('price must be the service''s price %s; only the tenant''s staff may set another price',
                                      v_service.price));
    END IF;
    -- A booking the tenant's people make is confirmed unless they say otherwise; a customer's
    -- starts as the tenant says (customer_booking_status), and a customer may not confirm what
    -- the tenant wants to confirm itself.
    IF v_role IS NULL AND coalesce(v_status, 'confirmed') = 'confirmed' THEN
        IF (SELECT t.customer_booking_status FROM booking.tenants t WHERE t.id = v_service.tenant_id) = 'pending' THEN
            IF v_status = 'confirmed' THEN
                PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                                       'this tenant confirms bookings itself: a customer''s booking starts as pending');
            END IF;
            v_status := 'pending';
        END IF;
    END IF;
    v_status := coalesce(v_status, 'confirmed');

    -- The canonical request: the same booking however its JSON was spelled.
    v_request := jsonb_build_object(
        'customer_id', v_customer.id, 'staff_id', v_staff.id, 'service_id', v_service.id,
        'starts_at', to_char(v_starts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'ends_at', to_char(v_ends AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'price', trim_scale(v_price), 'notes', p_booking ->> 'notes', 'status', v_status);
    SELECT b.operation_id, b.replayed_result INTO v_op, v_replay
    FROM booking.begin_operation(v_service.tenant_id, p_idempotency_key, 'create', v_request, v_customer.id) b;
    IF v_replay IS NOT NULL THEN
        RETURN v_replay;
    END IF;

    -- The engine itself: what the caller may see was checked above.
    v_check := booking.tenant_slot_violations(v_service.tenant_id, v_staff.id, v_service.id, v_starts, v_ends);
    IF NOT (v_check ->> 'valid')::boolean THEN
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Appointment violates booking rules',
            'details', v_check -> 'violations', 'operation_id', v_op), NULL);
    END IF;

    -- Validation cannot see a booking another transaction is making right now; the exclusion
    -- constraint can, and decides who wins: ON CONFLICT waits for the other transaction and, if
    -- it committed an overlapping booking, inserts nothing (no subtransaction needed).
    INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, ends_at, status, price, notes)
    VALUES (v_service.tenant_id, v_staff.id, v_service.id, v_customer.id, v_starts, v_ends, v_status, v_price, p_booking ->> 'notes')
    ON CONFLICT ON CONSTRAINT appointments_no_double_booking DO NOTHING
    RETURNING * INTO v_appt;
    IF v_appt.id IS NULL THEN
        PERFORM booking.emit_event(v_service.tenant_id, 'conflict.detected', jsonb_build_object(
            'staff_id', v_staff.id, 'service_id', v_service.id, 'customer_id', v_customer.id,
            'starts_at', v_starts, 'ends_at', v_ends, 'operation_id', v_op));
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Time slot conflicts with another appointment',
            'details', jsonb_build_array(jsonb_build_object('code', 'conflict',
                'message', 'Time slot conflicts with another appointment')),
            'operation_id', v_op), NULL);
    END IF;
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.created', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'service_id', v_appt.service_id, 'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at));
    RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
CREATE OR REPLACE FUNCTION booking.start_change(
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
    v_check jsonb;
BEGIN
    IF p_new_starts_at IS NULL OR NOT isfinite(p_new_starts_at) THEN
        RAISE EXCEPTION 'p_new_starts_at must be a finite timestamp' USING ERRCODE = '22023';
    END IF;
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_old, p_idempotency_key, 'reschedule',
        jsonb_build_object('appointment_id', v_old.id,
                           'new_starts_at', to_char(p_new_starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
        'Rescheduling', 'rescheduled', 'reschedule_deadline_hours') c;
    IF v_early IS NOT NULL THEN
        RETURN v_early;
    END IF;
    IF v_old.reschedule_count >= v_max THEN
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('max_reschedules_reached',
            format('The appointment was already rescheduled %s times, the most the max_reschedules policy allows (%s)',
                   v_old.reschedule_count, trim_scale(v_max)),
            v_op, jsonb_build_object('policy', 'max_reschedules', 'limit', v_max)), v_old.id);
    END IF;
    v_new_ends := p_new_starts_at + (v_old.ends_at - v_old.starts_at);
    v_check := booking.tenant_slot_violations(v_old.tenant_id, v_old.staff_id, v_old.service_id, p_new_starts_at, v_new_ends, v_old.id);
    IF NOT (v_check ->> 'valid')::boolean THEN
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('slot_unavailable',
            'The new time violates booking rules', v_op, v_check -> 'violations'), v_old.id);
    END IF;
    BEGIN
        UPDATE booking.appointments
        SET starts_at = p_new_starts_at, ends_at = v_new_ends, reschedule_count = reschedule_count + 1
        WHERE tenant_id = v_old.tenant_id AND id = v_old.id
        RETURNING * INTO v_new;
    EXCEPTION WHEN exclusion_violation THEN
        PERFORM booking.emit_event(v_old.tenant_id, 'conflict.detected', jsonb_build_object(
            'appointment_id', v_old.id, 'staff_id', v_old.staff_id, 'starts_at', p_new_starts_at, 'ends_at', v_new_ends));
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('conflict',
            'Time slot conflicts with another appointment', v_op), v_old.id);
    END;
    PERFORM booking.emit_event(v_new.tenant_id, 'booking.rescheduled', jsonb_build_object(
        'appointment_id', v_new.id, 'customer_id', v_new.customer_id, 'staff_id', v_new.staff_id,
        'old_starts_at', v_old.starts_at, 'old_ends_at', v_old.ends_at,
        'starts_at', v_new.starts_at, 'ends_at', v_new.ends_at, 'reschedule_count', v_new.reschedule_count));
    PERFORM booking.offer_freed_slot(v_old);
    RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_new)), v_new.id);
END $$;
CREATE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id);
    v_op uuid;
    v_early jsonb;
BEGIN
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_appt, p_idempotency_key, 'cancel',
        jsonb_build_object('appointment_id', v_appt.id, 'reason', p_reason),
        'Cancelling', 'cancelled', 'cancellation_deadline_hours') c;
    IF v_early IS NOT NULL THEN
        RETURN v_early;
    END IF;
    UPDATE booking.appointments
    SET status = 'cancelled', cancelled_at = now(), cancellation_reason = p_reason
    WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id
    RETURNING * INTO v_appt;
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.cancelled', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at, 'reason', p_reason));
    PERFORM booking.offer_freed_slot(v_appt);
    RETURN booking.finish_operation('booking.cancel', v_appt.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
CREATE FUNCTION booking_internal.confirm_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.confirm', true);
BEGIN
    IF v_appt.status IN ('confirmed', 'active', 'completed') THEN
        RETURN booking.staff_step_result('booking.confirm', v_appt, false, v_appt.status, NULL);
    ELSIF v_appt.status <> 'pending' THEN
        RETURN booking.staff_step_refused('booking.confirm', v_appt, 'invalid_status',
                                          format('A %s appointment cannot be confirmed', v_appt.status));
    END IF;
    UPDATE booking.appointments SET status = 'confirmed' WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id RETURNING * INTO v_appt;
    RETURN booking.staff_step_result('booking.confirm', v_appt, true, 'pending', 'booking.confirmed');
END $$;
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
CREATE OR REPLACE FUNCTION booking.offer_freed_slot(p_freed booking.appointments) RETURNS integer
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
CREATE FUNCTION booking_internal.require_bookable(p_service_id uuid, p_staff_id uuid DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_service booking.services;
    v_staff booking.staff;
    v_insider boolean;
BEGIN
    IF p_service_id IS NULL THEN
        RAISE EXCEPTION 'service_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_service FROM booking.services WHERE id = p_service_id;
    v_insider := FOUND AND booking.caller_is_insider(v_service.tenant_id);
    IF NOT FOUND OR NOT (v_service.is_active OR v_insider) THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'PT404';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        SELECT * INTO v_staff FROM booking.staff WHERE id = p_staff_id;
        -- A staff member of another tenant stays 22023 (the slot engine says which) for insiders;
        -- outsiders learn nothing about other tenants' staff.
        IF NOT FOUND OR NOT (v_insider OR (v_staff.is_active AND v_staff.tenant_id = v_service.tenant_id)) THEN
            RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
        END IF;
    END IF;
    RETURN p_service_id;
END $$;
CREATE FUNCTION booking_internal.rpc_validate_appointment_slot(
    p_staff_id uuid, p_service_id uuid, p_starts_at timestamptz,
    p_ends_at timestamptz DEFAULT NULL, p_exclude_appointment_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF p_staff_id IS NULL THEN
        RAISE EXCEPTION 'p_staff_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    RETURN booking.slot_violations(p_staff_id, booking_internal.require_bookable(p_service_id, p_staff_id), p_starts_at,
                                   p_ends_at, p_exclude_appointment_id);
END $$;
CREATE OR REPLACE FUNCTION booking.validate_appointment_timing(p_staff_id uuid, p_service_id uuid, p_starts_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
    SELECT booking_internal.rpc_validate_appointment_slot(p_staff_id, p_service_id, p_starts_at)
$$;
CREATE OR REPLACE FUNCTION booking.get_available_slots(service_id uuid, from_date date, to_date date, staff_id uuid DEFAULT NULL)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz)
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp
AS $$
    SELECT s.staff_id, s.starts_at, s.ends_at
    FROM booking_internal.require_bookable($1, $4) v,
         booking_internal.available_slot_arrays(v, $2, $3, $4) a,
         unnest(a.staff_ids, a.starts, a.ends) WITH ORDINALITY AS s (staff_id, starts_at, ends_at, n)
    ORDER BY s.n
$$;
CREATE FUNCTION booking_internal.get_tenant_available_slots(p_tenant_id uuid, p_date date, p_service_id uuid, p_staff_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_service booking.services;
    v_staff booking.staff;
BEGIN
    IF p_tenant_id IS NULL OR p_service_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id and p_service_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_service FROM booking.services WHERE tenant_id = p_tenant_id AND id = p_service_id;
    IF NOT FOUND OR NOT (v_service.is_active OR booking.caller_is_insider(p_tenant_id)) THEN
        RAISE EXCEPTION 'service % does not exist', p_service_id USING ERRCODE = 'PT404';
    END IF;
    IF p_staff_id IS NOT NULL THEN
        SELECT * INTO v_staff FROM booking.staff WHERE tenant_id = p_tenant_id AND id = p_staff_id;
        IF NOT FOUND OR NOT (v_staff.is_active OR booking.caller_is_insider(p_tenant_id)) THEN
            RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
        END IF;
    END IF;
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('staff_id', s.staff_id, 'starts_at', s.starts_at, 'ends_at', s.ends_at)
                                      ORDER BY s.n), '[]'::jsonb)
            FROM booking.tenant_slot_arrays(p_tenant_id, p_service_id, p_date, p_date, p_staff_id) a,
                 unnest(a.staff_ids, a.starts, a.ends) WITH ORDINALITY AS s (staff_id, starts_at, ends_at, n));
END $$;
CREATE OR REPLACE FUNCTION booking.slot_store_settings_policies() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    NEW.min_notice := (SELECT make_interval(secs => p.policy_value::text::float8 * 3600) FROM booking.booking_policies p
                       WHERE p.tenant_id = NEW.tenant_id AND p.policy_key = 'minimum_booking_notice_hours'
                         AND p.service_id IS NULL AND p.staff_id IS NULL);
    NEW.max_advance := (SELECT make_interval(secs => p.policy_value::text::float8 * 86400) FROM booking.booking_policies p
                        WHERE p.tenant_id = NEW.tenant_id AND p.policy_key = 'advance_booking_limit_days'
                          AND p.service_id IS NULL AND p.staff_id IS NULL);
    NEW.policy_overrides := coalesce((
        SELECT jsonb_object_agg(o.scope, o.rules)
        FROM (SELECT CASE WHEN p.staff_id IS NOT NULL THEN 'staff:' || p.staff_id ELSE 'service:' || p.service_id END AS scope,
                     jsonb_object_agg(CASE p.policy_key WHEN 'minimum_booking_notice_hours' THEN 'min_notice' ELSE 'max_advance' END,
                                      make_interval(secs => (p.policy_value)::text::float8
                                          * CASE p.policy_key WHEN 'minimum_booking_notice_hours' THEN 3600 ELSE 86400 END)) AS rules
              FROM booking.booking_policies p
              WHERE p.tenant_id = NEW.tenant_id AND (p.staff_id IS NOT NULL OR p.service_id IS NOT NULL)
                AND p.policy_key IN ('minimum_booking_notice_hours', 'advance_booking_limit_days')
              GROUP BY 1) o), '{}');
    RETURN NEW;
END $$;
CREATE OR REPLACE VIEW booking.availability_slots_now WITH (security_invoker = true) AS
SELECT s.tenant_id, s.staff_id, s.service_id, s.date, s.start_time, s.end_time, s.slot_type,
       s.is_available
       AND s.start_time >= g.now + coalesce(CASE WHEN w.policy_overrides <> '{}' THEN coalesce(
               (w.policy_overrides -> ('staff:' || s.staff_id) ->> 'min_notice')::interval,
               (w.policy_overrides -> ('service:' || s.service_id) ->> 'min_notice')::interval) END,
           w.min_notice, g.min_notice)
       AND s.start_time <= g.now + coalesce(CASE WHEN w.policy_overrides <> '{}' THEN coalesce(
               (w.policy_overrides -> ('staff:' || s.staff_id) ->> 'max_advance')::interval,
               (w.policy_overrides -> ('service:' || s.service_id) ->> 'max_advance')::interval) END,
           w.max_advance, g.max_advance) AS is_available,
       s.confidence_score, s.booking_density, s.priority_boost, s.fit_score, s.day_open_ratio, s.created_at
FROM booking.availability_slots s
JOIN booking.slot_store_settings w ON w.tenant_id = s.tenant_id
CROSS JOIN (
    SELECT booking.clock_now() AS now,
           make_interval(secs => coalesce((SELECT p.policy_value::text::float8 FROM booking.global_policies p
                                           WHERE p.policy_key = 'minimum_booking_notice_hours'
                                           ORDER BY p.is_builtin LIMIT 1), 0) * 3600) AS min_notice,
           make_interval(secs => coalesce((SELECT p.policy_value::text::float8 FROM booking.global_policies p
                                           WHERE p.policy_key = 'advance_booking_limit_days'
                                           ORDER BY p.is_builtin LIMIT 1), 36500) * 86400) AS max_advance
    OFFSET 0  -- kept a subquery, evaluated once
) g;
-- The store's settings row of a tenant whose store is off is not public.
ALTER POLICY slot_store_settings_public_read ON booking.slot_store_settings USING (enabled);
CREATE OR REPLACE FUNCTION booking.slot_store_check_range(p_tenant_id uuid, p_staff_id uuid, p_from date, p_to date) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_horizon daterange := booking.slot_store_horizon(p_tenant_id, p_staff_id);
BEGIN
    -- PT409 (PostgREST: 409 Conflict): the tenant's state does not allow the request; the
    -- engine's own readers answer for such a tenant.
    IF NOT EXISTS (SELECT 1 FROM booking.slot_store_settings w WHERE w.tenant_id = p_tenant_id AND w.enabled) THEN
        RAISE EXCEPTION 'the slot store is off for this tenant' USING ERRCODE = 'PT409',
            HINT = 'get_available_slots and get_tenant_available_slots answer for every tenant; the tenant''s owners turn the store on (booking.update_tenant, "slot_store_enabled")';
    END IF;
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'the dates must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_from > p_to THEN
        RAISE EXCEPTION 'from date % is after to date %', p_from, p_to USING ERRCODE = '22023';
    END IF;
    IF v_horizon IS NULL OR NOT v_horizon @> daterange(p_from, p_to, '[]') THEN
        RAISE EXCEPTION 'dates % to % are outside the slot horizon (%)', p_from, p_to,
                        coalesce(lower(v_horizon) || ' to ' || (upper(v_horizon) - 1), 'empty')
            USING ERRCODE = '22023',
                  HINT = 'The store holds slots from today for booking.slot_store_settings.horizon_days days.';
    END IF;
END $$;
CREATE FUNCTION booking_internal.find_optimal_slots(p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz, confidence_score numeric,
               booking_density numeric, priority_boost numeric, fit_score numeric, day_open_ratio numeric, slot_type text)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_tenant uuid;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    -- PT404 for a service or staff member the caller may not see, whether it exists or not.
    PERFORM booking_internal.require_bookable(p_service_id, p_staff_id);
    SELECT s.tenant_id INTO v_tenant FROM booking.services s WHERE s.id = p_service_id;
    PERFORM booking.slot_store_check_range(v_tenant, NULL, p_from, p_to);
    RETURN QUERY
        SELECT v.staff_id, v.start_time, v.end_time, v.confidence_score, v.booking_density, v.priority_boost,
               v.fit_score, v.day_open_ratio, v.slot_type
        FROM booking.availability_slots_now v
        WHERE v.service_id = p_service_id AND v.date BETWEEN p_from AND p_to AND v.is_available
          AND (p_staff_id IS NULL OR v.staff_id = p_staff_id)
        ORDER BY v.confidence_score DESC, v.start_time, v.staff_id
        LIMIT p_limit;
END $$;
CREATE FUNCTION booking_internal.generate_availability_slots(p_staff_id uuid, p_start_date date, p_end_date date) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_staff booking.staff;
BEGIN
    IF p_staff_id IS NULL THEN
        RAISE EXCEPTION 'p_staff_id must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_staff FROM booking.staff WHERE id = p_staff_id;
    IF NOT FOUND OR NOT booking.caller_is_insider(v_staff.tenant_id) THEN
        RAISE EXCEPTION 'staff member % does not exist', p_staff_id USING ERRCODE = 'PT404';
    END IF;
    PERFORM booking.slot_store_check_range(v_staff.tenant_id, p_staff_id, p_start_date, p_end_date);
    PERFORM booking.slot_store_touch_dates(ARRAY[v_staff.tenant_id], ARRAY[p_staff_id], ARRAY[p_start_date], ARRAY[p_end_date]);
    RETURN (SELECT count(*) FROM booking.availability_slots s
            WHERE s.tenant_id = v_staff.tenant_id AND s.staff_id = p_staff_id AND s.date BETWEEN p_start_date AND p_end_date);
END $$;
CREATE FUNCTION booking_internal.customer_policy_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['cancellation_deadline_hours', 'reschedule_deadline_hours', 'max_reschedules',
                 'minimum_booking_notice_hours', 'advance_booking_limit_days']
$$;
CREATE FUNCTION booking_internal.customer_policies(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_object_agg(k, booking.policy_value(p_tenant_id, k))
            FROM unnest(booking_internal.customer_policy_keys()) k);
END $$;
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
                                                               'policies', coalesce((SELECT jsonb_object_agg(p.policy_key, p.policy_value)
                                                                                     FROM booking.booking_policies p
                                                                                     WHERE p.tenant_id = p_tenant_id AND p.staff_id = f.id
                                                                                       AND p.policy_key = ANY (v_keys)), '{}'))
                                            ORDER BY f.name, f.id)
                           FROM booking.staff f WHERE f.tenant_id = p_tenant_id AND f.is_active), '[]'));
END $$;
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
                       WHERE k NOT IN ('description', 'max_in_flight', 'timeout_ms', 'secret'));
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'unknown endpoint option(s): %', array_to_string(v_unknown, ', ') USING ERRCODE = '22023',
            HINT = 'options are description, max_in_flight, timeout_ms and secret';
    END IF;
    PERFORM booking_internal.check_endpoint_limits(p_options ->> 'max_in_flight', p_options ->> 'timeout_ms');
    IF p_tenant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking.tenants t WHERE t.id = p_tenant_id) THEN
        RAISE EXCEPTION 'no tenant %', p_tenant_id USING ERRCODE = 'PT404';
    END IF;
    v_secret := coalesce(p_options ->> 'secret', booking_internal.generate_webhook_secret());
    INSERT INTO booking_admin.delivery_endpoints (tenant_id, channel, url, event_types, description, max_in_flight, timeout_ms)
    VALUES (p_tenant_id, p_channel, booking_internal.check_endpoint_url(p_channel, p_url),
            booking_internal.check_event_types(p_event_types), coalesce(p_options ->> 'description', ''),
            coalesce((p_options ->> 'max_in_flight')::int, 4), coalesce((p_options ->> 'timeout_ms')::int, 10000))
    RETURNING * INTO v_endpoint;
    INSERT INTO booking_admin.delivery_secrets (endpoint_id, secret)
    VALUES (v_endpoint.id, booking_internal.check_webhook_secret(v_secret));
    PERFORM booking.delivery_wanted_at_commit();
    RETURN booking_internal.endpoint_json(v_endpoint) || jsonb_build_object('secret', v_secret);
END $$;

-- Changes: url, event_types, description, max_in_flight, timeout_ms, enabled (true re-enables
-- and closes the circuit; false needs disabled_reason). p_endpoint is the locked row.
CREATE FUNCTION booking_internal.change_endpoint(p_endpoint booking_admin.delivery_endpoints, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_endpoint booking_admin.delivery_endpoints;
    v_unknown text[];
    v_enable boolean := (p_changes ->> 'enabled')::boolean;
BEGIN
    v_unknown := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_changes, '{}')) k
                       WHERE k NOT IN ('url', 'event_types', 'description', 'max_in_flight', 'timeout_ms',
                                       'enabled', 'disabled_reason'));
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
        updated_at = now()
    WHERE e.id = p_endpoint.id
    RETURNING * INTO v_endpoint;
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
BEGIN
    INSERT INTO booking_admin.deliveries (id, endpoint_id, tenant_id, message_id, event_type, payload, event_created_at)
    VALUES (v_id, p_endpoint.id, p_endpoint.tenant_id, 'msg_' || replace(v_id::text, '-', ''), 'webhook.test',
            coalesce(p_payload, jsonb_build_object('message', 'booking_engine test event')), now());
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

CREATE OR REPLACE FUNCTION booking_admin.create_endpoint(
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
CREATE OR REPLACE FUNCTION booking_admin.update_endpoint(p_endpoint_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_internal.change_endpoint(booking_admin.endpoint_for_change(p_endpoint_id), p_changes)
$$;
CREATE OR REPLACE FUNCTION booking_admin.rotate_endpoint_secret(p_endpoint_id uuid, p_grace interval DEFAULT '24 hours',
                                                      p_secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.endpoint_for_change(p_endpoint_id);
    RETURN booking_internal.rotate_endpoint_secret(p_endpoint_id, p_grace, p_secret);
END $$;
CREATE OR REPLACE FUNCTION booking_admin.send_test_event(p_endpoint_id uuid, p_payload jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_internal.queue_test_event(booking_admin.endpoint_for_change(p_endpoint_id), p_payload)
$$;
CREATE OR REPLACE FUNCTION booking_admin.set_message_template(p_tenant_id uuid, p_event_type text, p_subject text,
                                                    p_body_text text, p_body_html text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    PERFORM booking_admin.require_operator();
    PERFORM booking_internal.save_message_template(p_tenant_id, p_event_type, p_subject, p_body_text, p_body_html);
END $$;
CREATE OR REPLACE FUNCTION booking_admin.citus_layout(OUT kind text, OUT object text, OUT distribution_argument text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('reference', 'booking.global_policies', NULL),
           ('distributed', 'booking.tenants', 'id'),
           ('distributed', 'booking.staff', 'tenant_id'),
           ('distributed', 'booking.services', 'tenant_id'),
           ('distributed', 'booking.customers', 'tenant_id'),
           ('distributed', 'booking.staff_services', 'tenant_id'),
           ('distributed', 'booking.staff_schedules', 'tenant_id'),
           ('distributed', 'booking.schedule_overrides', 'tenant_id'),
           ('distributed', 'booking.staff_time_off', 'tenant_id'),
           ('distributed', 'booking.holidays', 'tenant_id'),
           ('distributed', 'booking.booking_policies', 'tenant_id'),
           ('distributed', 'booking.appointments', 'tenant_id'),
           ('distributed', 'booking.booking_operations', 'tenant_id'),
           ('distributed', 'booking.events', 'tenant_id'),
           ('distributed', 'booking.waitlist', 'tenant_id'),
           ('distributed', 'booking.waitlist_notifications', 'tenant_id'),
           ('distributed', 'booking.slot_store_settings', 'tenant_id'),
           ('distributed', 'booking.availability_slot_days', 'tenant_id'),
           ('distributed', 'booking.availability_slots', 'tenant_id'),
           ('distributed', 'booking.tenant_members', 'tenant_id'),
           ('distributed', 'booking.tenant_invitations', 'tenant_id'),
           ('function', 'booking.create_tenant_booking(uuid, text, jsonb)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_available_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text)', 'p_tenant_id'),
           ('function', 'booking.cancel_tenant_appointment(uuid, uuid, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_booking_page(uuid)', 'p_tenant_id'),
           ('function', 'booking.register_customer(uuid, text, text, text)', 'p_tenant_id')
$$;

-- sql/tenants.sql as a fresh install runs it.
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
    ('member.removed', 'A member left or was removed');

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

-- The tenant as its owners see it: every column, and its slot store settings.
CREATE FUNCTION booking_internal.tenant_json(p_tenant_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT to_jsonb(t) || jsonb_build_object('slot_store', (
                SELECT jsonb_build_object('enabled', w.enabled, 'horizon_days', w.horizon_days,
                                          'prime_start', w.prime_start, 'prime_end', w.prime_end)
                FROM booking.slot_store_settings w WHERE w.tenant_id = p_tenant_id))
            FROM booking.tenants t WHERE t.id = p_tenant_id);
END $$;

-- The tenant's staff (one, or all with p_staff_id NULL) with the services each performs.
CREATE FUNCTION booking_internal.staff_json(p_tenant_id uuid, p_staff_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_agg(to_jsonb(f) || jsonb_build_object('service_ids', coalesce((
                        SELECT jsonb_agg(ss.service_id ORDER BY ss.service_id) FROM booking.staff_services ss
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
-- 'pending'), staff_manage_own_schedule, slot_store_enabled, slot_store_horizon_days.
CREATE FUNCTION booking_internal.update_tenant(p_tenant_id uuid, p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_role text;
    c jsonb;
BEGIN
    v_role := booking_internal.require_role(p_tenant_id, 'booking.tenant_update', '{owner,manager}');
    c := booking_internal.check_fields(p_changes, 'p_changes',
    ARRAY['name', 'timezone', 'opening_hours', 'slot_interval_minutes', 'buffer_time_minutes',
          'customer_booking_status', 'staff_manage_own_schedule', 'slot_store_enabled', 'slot_store_horizon_days']);
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
-- their own only.
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
                   'price', a.price, 'notes', a.notes, 'checked_in_at', a.checked_in_at,
                   'customer', jsonb_build_object('id', c.id, 'name', c.name, 'email', c.email, 'phone', c.phone))
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
-- templates, delivery endpoints (without secrets), members and open invitations.
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
                                   AND i.expires_at > v_since + interval '1 day'), '[]'));
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
ALTER TABLE booking.tenant_invitations ENABLE ROW LEVEL SECURITY;

-- sql/api.sql as a fresh install runs it.
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

-- What operator.sql and finalize.sql grant.
GRANT EXECUTE ON FUNCTION booking_admin.execute_admin_sql, booking_admin.check_admin_sql, booking_admin.execute_explain_query,
    booking_admin.analyze_query TO booking_operator;
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
    booking.get_agenda(uuid, date, date, uuid)
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
    booking_internal.list_customers(uuid, text, integer), booking_internal.get_agenda(uuid, date, date, uuid)
TO PUBLIC;

CREATE OR REPLACE FUNCTION booking_admin.grant_api_roles() RETURNS text[]
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
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;

-- Health over time, the dashboard's charts, the freeze calendar, remediations, CPU/memory/disk
-- alerts, the waitlist's conversion, and the history tables partitioned by time. The definitions
-- are the feature files' (sql/partitions.sql, freeze.sql, history.sql, jobs.sql, security.sql,
-- admin.sql, delivery.sql, observability.sql, waitlist.sql, booking.sql, citus.sql, operator.sql).

-- sql/partitions.sql, as a fresh install runs it.
-- Time-partitioned history: the tables that only grow (the events outbox, the audit log,
-- deliveries and their attempts, finished jobs, the health history) are partitioned by time
-- with PostgreSQL's declarative partitioning, so that keeping them small is dropping a
-- partition (O(1), no DELETE, no bloat) and a query over a recent window reads recent
-- partitions only.
--
-- Each feature declares its tables in booking_admin.partitioned_tables at the end of its own
-- file. A table is created with a DEFAULT partition (part of the extension, so it exists from
-- the first row on); the scheduler's partition-maintenance operation then
--   1. moves rows that landed in the default partition into partitions of their own,
--   2. creates the partitions of the next `premake` intervals ahead,
--   3. drops the partitions that lie wholly past `retention` (DROP TABLE: O(1)),
-- like pg_partman's run_maintenance. The partitions it creates are ordinary tables of the
-- database (not of the extension): pg_dump keeps them with their rows.
--
-- Callers see the same table, columns and functions. The keys and indexes are the partitions',
-- not the tables': the default partition carries them under the names the tables had before
-- they were partitioned, and create_partition copies them onto each new partition. So a key
-- need not include the partition key (PostgreSQL requires it only of a partitioned table's own
-- keys), and pg_dump's copy restores: indexes of a partitioned table that belongs to the
-- extension would be cloned onto every partition as it is attached, before pg_dump creates
-- the partition's own. Nothing references these tables with a foreign key (a referenced
-- partition could not be dropped in O(1)), and ON CONFLICT names no columns on them (there is
-- no key of the table to name; DO NOTHING alone checks the partition's).

CREATE TABLE booking_admin.partitioned_tables (
    parent_table       text PRIMARY KEY,
    partition_key      text NOT NULL,
    partition_interval text NOT NULL CHECK (partition_interval IN ('day', 'week', 'month')),
    -- Intervals created ahead of the current one.
    premake            integer NOT NULL DEFAULT 3 CHECK (premake BETWEEN 1 AND 366),
    -- Partitions whose whole range is older than this are dropped; NULL keeps everything.
    retention          interval CHECK (retention > interval '0'),
    -- A row meeting this condition keeps its partition past retention (set by the feature that
    -- owns the table, e.g. deliveries still to be sent); NULL: none does.
    keep_while         text,
    description        text NOT NULL,
    last_run_at        timestamptz,
    last_result        jsonb
);
COMMENT ON TABLE booking_admin.partitioned_tables IS
    'Tables partitioned by time and their maintenance: partition_interval, premake (intervals created ahead), retention (NULL: keep). Change them with booking_admin.configure_partitions.';
CREATE TRIGGER partitioned_tables_restore BEFORE INSERT ON booking_admin.partitioned_tables
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('parent_table');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.partitioned_tables', '');

-- The interval holding p_at: [lower, upper), in UTC (weeks start on Monday).
CREATE FUNCTION booking_admin.partition_bounds(p_interval text, p_at timestamptz, OUT lower timestamptz, OUT upper timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT date_trunc(p_interval, p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           (date_trunc(p_interval, p_at AT TIME ZONE 'UTC') + ('1 ' || p_interval)::interval) AT TIME ZONE 'UTC'
$$;

-- Whether Citus manages a table (distributed or reference): its partitions are then created
-- and dropped through the coordinator only. Through EXECUTE: Citus's catalog exists only where
-- Citus is installed.
CREATE FUNCTION booking_admin.is_citus_table(p_table regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)' INTO v USING p_table;
    RETURN v;
END $$;

-- sql/citus.sql's is_distributed asks the same question of booking.events.
CREATE OR REPLACE FUNCTION booking_admin.is_distributed() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.is_citus_table('booking.events')
$$;

-- Every partition of the partitioned tables (or of one), oldest first, the default last.
CREATE FUNCTION booking_admin.partitions(p_table text DEFAULT NULL)
RETURNS TABLE (parent_table text, partition_name text, range_from timestamptz, range_to timestamptz,
               is_default boolean, row_estimate bigint, total_bytes bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.parent_table, c.oid::regclass::text, b.lower, b.upper, b.lower IS NULL AND b.upper IS NULL,
           greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
    FROM booking_admin.partitioned_tables t
    JOIN pg_inherits i ON i.inhparent = to_regclass(t.parent_table)
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \((.+)\) TO \((.+)\)') AS m) x
    CROSS JOIN LATERAL (
        SELECT CASE x.m[1] WHEN 'MINVALUE' THEN '-infinity' ELSE trim(x.m[1], '''') END::timestamptz AS lower,
               CASE x.m[2] WHEN 'MAXVALUE' THEN 'infinity' ELSE trim(x.m[2], '''') END::timestamptz AS upper) b
    WHERE p_table IS NULL OR t.parent_table = p_table
    ORDER BY t.parent_table, b.lower IS NULL, b.lower
$$;

-- What a partition needs besides what ATTACH gives it (row triggers, foreign keys, checks): the
-- default partition's keys and indexes, named after the partition (events_pkey of
-- booking.events_default becomes events_p20260101_pkey of booking.events_p20260101), the
-- parent's statement-level TRUNCATE guards (a TRUNCATE of the partition alone would not fire
-- the parent's) and its row-level security switch.
CREATE FUNCTION booking_admin.prepare_partition(p_parent regclass, p_partition regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    v_parent_name name := (SELECT relname FROM pg_class WHERE oid = p_parent);
    v_name name := (SELECT relname FROM pg_class WHERE oid = p_partition);
BEGIN
    FOR t IN
        SELECT x.indexrelid, k.oid AS constraint_oid, i.relname,
               left(v_name || CASE WHEN starts_with(i.relname, v_parent_name || '_')
                                   THEN substr(i.relname, length(v_parent_name) + 1) ELSE '_' || i.relname END, 63) AS new_name
        FROM pg_inherits h
        JOIN pg_class d ON d.oid = h.inhrelid AND pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT'
        JOIN pg_index x ON x.indrelid = d.oid
        JOIN pg_class i ON i.oid = x.indexrelid
        LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = d.oid AND k.contype IN ('p', 'u', 'x')
        WHERE h.inhparent = p_parent AND d.oid <> p_partition
        ORDER BY i.relname
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = t.new_name AND c.relnamespace =
                                  (SELECT relnamespace FROM pg_class WHERE oid = p_partition));
        IF t.constraint_oid IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', p_partition, t.new_name,
                           pg_get_constraintdef(t.constraint_oid));
        ELSE
            EXECUTE regexp_replace(pg_get_indexdef(t.indexrelid), ' INDEX \S+ ON \S+ ',
                                   format(' INDEX %I ON %s ', t.new_name, p_partition));
        END IF;
    END LOOP;
    FOR t IN
        SELECT g.tgname, pg_get_triggerdef(g.oid) AS def
        FROM pg_trigger g
        WHERE g.tgrelid = p_parent AND NOT g.tgisinternal AND g.tgtype & 1 = 0 AND g.tgtype & 32 <> 0
          AND NOT EXISTS (SELECT 1 FROM pg_trigger o WHERE o.tgrelid = p_partition AND o.tgname = g.tgname)
    LOOP
        EXECUTE replace(t.def, ' ON ' || p_parent::text || ' ', ' ON ' || p_partition::text || ' ');
    END LOOP;
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = p_parent) THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_partition);
    END IF;
END $$;

-- One partition [p_lower, p_upper) of a table, with the rows of that range the default
-- partition holds: created beside the table, filled, then attached (ATTACH takes a SHARE UPDATE
-- EXCLUSIVE lock on the table, so reads and writes go on). A range rows may be written to right
-- now (the current interval, or a past one) is attached with the table's writes held back for
-- the moment: a writer that had planned with the partitions as they were would route such a row
-- to the default partition, which ATTACH has just made refuse it. Returns its name.
CREATE FUNCTION booking_admin.create_partition(p_parent regclass, p_key text, p_lower timestamptz, p_upper timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_schema name;
    v_name text;
    v_default regclass;
    v_columns text;
    v_part regclass;
    v_rows boolean := false;
    v_guards name[];
BEGIN
    SELECT n.nspname, c.relname || '_p' || to_char(p_lower AT TIME ZONE 'UTC', 'YYYYMMDD')
    INTO v_schema, v_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_parent;
    SELECT i.inhrelid::regclass INTO v_default
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = p_parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)',
                   v_schema, v_name, p_parent);
    v_part := format('%I.%I', v_schema, v_name)::regclass;
    IF v_default IS NOT NULL AND p_lower < now() + interval '1 hour' THEN
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p_parent);
    END IF;
    IF v_default IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)', v_default, p_key, p_key)
            INTO v_rows USING p_lower, p_upper;
    END IF;
    IF v_rows THEN
        -- No row of the range may reach the default partition between the copy and the delete.
        EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', v_default);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_columns
        FROM pg_attribute a WHERE a.attrelid = p_parent AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s WHERE %I >= $1 AND %I < $2',
                       v_part, v_columns, v_columns, v_default, p_key, p_key) USING p_lower, p_upper;
        -- The rows move, none is removed: the guards against removing rows (the audit log's
        -- append-only trigger) stand aside for this one statement.
        SELECT array_agg(g.tgname) INTO v_guards FROM pg_trigger g
        WHERE g.tgrelid = v_default AND NOT g.tgisinternal AND g.tgtype & 1 = 0 AND g.tgtype & 32 <> 0 AND g.tgenabled <> 'D';
        FOR i IN 1..coalesce(cardinality(v_guards), 0) LOOP
            EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', v_default, v_guards[i]);
        END LOOP;
        EXECUTE format('DELETE FROM %s WHERE %I >= $1 AND %I < $2', v_default, p_key, p_key) USING p_lower, p_upper;
        FOR i IN 1..coalesce(cardinality(v_guards), 0) LOOP
            EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', v_default, v_guards[i]);
        END LOOP;
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', p_parent, v_part, p_lower, p_upper);
    PERFORM booking_admin.prepare_partition(p_parent, v_part);
    RETURN v_part::text;
END $$;

-- One maintenance pass (see the top of this file) over every partitioned table or one of
-- them. Inside a freeze window (booking_admin.freeze_state) only the partitions ahead are
-- created: moving rows out of the default partition and dropping partitions take strong locks
-- and wait for the window's end. Each table is maintained in a subtransaction of its own, so
-- one failure (a lock not granted within deadlock_timeout + 1 s) leaves the others done; the
-- next run retries.
-- Returns {"tables": [{table, created, moved_rows, dropped, deferred_until, error}], ...}; on a
-- Citus coordinator also {"workers": [...]}, the same pass run on every worker for the tables
-- that are local to each node (their audit log).
CREATE FUNCTION booking_admin.maintain_partitions(p_table text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cfg booking_admin.partitioned_tables;
    v_parent regclass;
    v_default regclass;
    v_freeze jsonb := booking_admin.freeze_state(NULL);
    v_frozen boolean := (v_freeze ->> 'frozen')::boolean;
    v_now timestamptz := greatest(now(), booking.clock_now());
    v_citus boolean := to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL;
    v_coordinator boolean := false;
    v_lock_timeout text := current_setting('lock_timeout');
    v_report jsonb := '[]';
    v_one jsonb;
    v_created text[];
    v_dropped text[];
    v_moved bigint;
    v_oldest timestamptz;
    v_range record;
    v_part record;
    v_keep boolean;
    v_workers jsonb;
BEGIN
    IF NOT booking.caller_is_operator() THEN
        RAISE EXCEPTION 'only operators maintain partitions' USING ERRCODE = '42501';
    END IF;
    IF p_table IS NOT NULL AND NOT EXISTS (SELECT 1 FROM booking_admin.partitioned_tables t WHERE t.parent_table = p_table) THEN
        RAISE EXCEPTION 'booking_admin.partitioned_tables has no table %', quote_literal(p_table) USING ERRCODE = '22023',
            HINT = 'One of: ' || (SELECT string_agg(parent_table, ', ' ORDER BY parent_table) FROM booking_admin.partitioned_tables);
    END IF;
    IF v_citus THEN
        EXECUTE 'SELECT citus_is_coordinator()' INTO v_coordinator;
        -- Citus's propagated DDL and data moves on a distributed table, one connection per node.
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    -- Never queue for long behind another transaction while holding what was locked so far; but
    -- a second longer than deadlock_timeout, after which a waiting lock cancels an autovacuum
    -- that holds it (a fresh partition's first analyze would otherwise win every time).
    PERFORM set_config('lock_timeout',
                       (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000 + 1000)::bigint::text, true);
    FOR cfg IN SELECT * FROM booking_admin.partitioned_tables t WHERE p_table IS NULL OR t.parent_table = p_table
               ORDER BY t.parent_table LOOP
        v_parent := to_regclass(cfg.parent_table);
        IF v_parent IS NULL OR (SELECT relkind FROM pg_class WHERE oid = v_parent) <> 'p' THEN
            CONTINUE;
        END IF;
        -- On a Citus worker, the tables Citus manages (or will, once distribute_tables has run:
        -- booking_admin.citus_layout) are partitioned by the coordinator only; a partition made
        -- here beforehand would stop Citus from creating the distributed one of that name.
        IF v_citus AND NOT v_coordinator
           AND (booking_admin.is_citus_table(v_parent)
                OR EXISTS (SELECT 1 FROM booking_admin.citus_layout() l
                           WHERE l.kind IN ('distributed', 'reference') AND l.object = cfg.parent_table)) THEN
            CONTINUE;
        END IF;
        v_created := '{}';
        v_dropped := '{}';
        v_moved := 0;
        BEGIN
            SELECT i.inhrelid::regclass INTO v_default
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = v_parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
            -- 1. The oldest interval of rows waiting in the default partition (one interval per
            -- run: a large upgraded table is spread over the next runs, each a short lock).
            IF v_default IS NOT NULL AND NOT v_frozen THEN
                EXECUTE format('SELECT min(%I) FROM %s', cfg.partition_key, v_default) INTO v_oldest;
                IF v_oldest IS NOT NULL THEN
                    SELECT * INTO v_range FROM booking_admin.partition_bounds(cfg.partition_interval, v_oldest);
                    EXECUTE format('SELECT count(*) FROM %s WHERE %I >= $1 AND %I < $2', v_default, cfg.partition_key,
                                   cfg.partition_key) INTO v_moved USING v_range.lower, v_range.upper;
                    v_created := v_created || booking_admin.create_partition(v_parent, cfg.partition_key, v_range.lower,
                                                                             v_range.upper);
                END IF;
            END IF;
            -- 2. The current interval and `premake` ahead, where no partition covers them yet
            -- (and, inside a freeze window, where the default partition holds none of their rows):
            -- the two nearest missing ones per run (the current one first), so that the first runs
            -- after an install spread their work, and their locks, over several short runs.
            FOR v_range IN
                SELECT b.lower, b.upper
                FROM generate_series(0, cfg.premake) k
                CROSS JOIN LATERAL booking_admin.partition_bounds(cfg.partition_interval,
                                                                  v_now + k * ('1 ' || cfg.partition_interval)::interval) b
                WHERE NOT EXISTS (SELECT 1 FROM booking_admin.partitions(cfg.parent_table) p
                                  WHERE NOT p.is_default AND p.range_from < b.upper AND p.range_to > b.lower)
                ORDER BY b.lower
                LIMIT 2
            LOOP
                IF v_frozen AND v_default IS NOT NULL THEN
                    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)', v_default,
                                   cfg.partition_key, cfg.partition_key) INTO v_keep USING v_range.lower, v_range.upper;
                    CONTINUE WHEN v_keep;
                END IF;
                v_created := v_created || booking_admin.create_partition(v_parent, cfg.partition_key, v_range.lower,
                                                                         v_range.upper);
            END LOOP;
            -- 3. Retention: whole partitions past it, unless a row still needs them.
            IF cfg.retention IS NOT NULL AND NOT v_frozen THEN
                FOR v_part IN
                    SELECT p.partition_name FROM booking_admin.partitions(cfg.parent_table) p
                    WHERE NOT p.is_default AND p.range_to <= booking.clock_now() - cfg.retention
                LOOP
                    v_keep := false;
                    IF cfg.keep_while IS NOT NULL THEN
                        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %s)', v_part.partition_name, cfg.keep_while)
                            INTO v_keep;
                    END IF;
                    CONTINUE WHEN v_keep;
                    EXECUTE format('DROP TABLE %s', v_part.partition_name);
                    v_dropped := v_dropped || v_part.partition_name;
                END LOOP;
            END IF;
            v_one := jsonb_build_object('table', cfg.parent_table, 'created', to_jsonb(v_created), 'moved_rows', v_moved,
                                        'dropped', to_jsonb(v_dropped));
        EXCEPTION WHEN OTHERS THEN
            v_one := jsonb_build_object('table', cfg.parent_table, 'error', SQLERRM, 'sqlstate', SQLSTATE);
        END;
        IF v_frozen THEN
            v_one := v_one || jsonb_build_object('deferred_until', v_freeze -> 'until');
        END IF;
        UPDATE booking_admin.partitioned_tables t SET last_run_at = clock_timestamp(), last_result = v_one
        WHERE t.parent_table = cfg.parent_table;
        v_report := v_report || v_one;
    END LOOP;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
    IF v_coordinator AND p_table IS NULL THEN
        -- The coordinator's scheduler is the cluster's: the workers' own tables (their audit
        -- log, written where a call runs) are maintained from here.
        EXECUTE $q$SELECT coalesce(jsonb_agg(jsonb_build_object('node', nodename || ':' || nodeport, 'success', success,
                                                              'result', result)), '[]')
                   FROM run_command_on_workers('SELECT booking_admin.maintain_partitions()')$q$ INTO v_workers;
        RETURN jsonb_build_object('tables', v_report, 'workers', v_workers);
    END IF;
    RETURN jsonb_build_object('tables', v_report);
END $$;

-- An operator's changes to one table's maintenance (NULL leaves a setting as it is; the
-- retention is removed with p_keep_forever). The interval can only change while the table has
-- no partition but its default one (partitions of two sizes could not be told apart).
CREATE FUNCTION booking_admin.configure_partitions(p_table text, p_retention interval DEFAULT NULL,
                                                   p_premake integer DEFAULT NULL, p_interval text DEFAULT NULL,
                                                   p_keep_forever boolean DEFAULT false)
RETURNS booking_admin.partitioned_tables
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.partitioned_tables;
BEGIN
    SELECT * INTO v FROM booking_admin.partitioned_tables t WHERE t.parent_table = p_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'booking_admin.partitioned_tables has no table %', coalesce(quote_literal(p_table), 'NULL')
            USING ERRCODE = 'P0002';
    END IF;
    IF p_retention <= interval '0' OR p_premake NOT BETWEEN 1 AND 366 OR p_interval NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'retention must be positive, premake between 1 and 366, the interval day, week or month'
            USING ERRCODE = '22023';
    END IF;
    IF p_interval IS DISTINCT FROM v.partition_interval AND p_interval IS NOT NULL
       AND EXISTS (SELECT 1 FROM booking_admin.partitions(p_table) p WHERE NOT p.is_default) THEN
        RAISE EXCEPTION '% already has partitions of a %: its interval cannot change', p_table, v.partition_interval
            USING ERRCODE = '55000';
    END IF;
    UPDATE booking_admin.partitioned_tables t
    SET retention = CASE WHEN p_keep_forever THEN NULL ELSE coalesce(p_retention, t.retention) END,
        premake = coalesce(p_premake, t.premake),
        partition_interval = coalesce(p_interval, t.partition_interval)
    WHERE t.parent_table = p_table
    RETURNING * INTO v;
    RETURN v;
END $$;

-- The scheduler: operations that respect the freeze calendar, partition maintenance, the job
-- history (finished jobs out of the queue) and its archiving.
ALTER TABLE booking_admin.scheduler_job_info ADD COLUMN respects_freeze boolean NOT NULL DEFAULT false;
-- Finished jobs, out of the queue: the queue's table stays the size of its live work (what the
-- runners' claims and the unique keys' index walk), and the history of what ran is partitioned
-- by day, dropped after a week. The same columns as booking_admin.jobs; completed jobs move
-- there archive_after_minutes (60) after they finished (dead ones stay in the queue, the
-- dead-letter queue, until data_cleanup removes them).
CREATE TABLE booking_admin.job_history (
    LIKE booking_admin.jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
) PARTITION BY RANGE (completed_at);
-- The key and the index are the partitions' (sql/partitions.sql), each day's copied from the
-- default partition's.
CREATE TABLE booking_admin.job_history_default PARTITION OF booking_admin.job_history (
    CONSTRAINT job_history_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX job_history_handler_idx ON booking_admin.job_history_default (handler, completed_at);
COMMENT ON TABLE booking_admin.job_history IS
    'Completed jobs moved out of booking_admin.jobs by the archive-jobs operation, partitioned by completed_at.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.job_history', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.job_history_default', '');
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.job_history', 'completed_at', 'day', 7, '7 days', 'Completed jobs, archived out of the queue');
-- How long each completed job ran, in the queue and in the history.
CREATE FUNCTION booking_admin.completed_job_durations(OUT ms float8) RETURNS SETOF float8
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT extract(epoch FROM completed_at - started_at)::float8 * 1000 FROM booking_admin.jobs WHERE status = 'completed'
    UNION ALL
    SELECT extract(epoch FROM completed_at - started_at)::float8 * 1000 FROM booking_admin.job_history
$$;
CREATE OR REPLACE FUNCTION booking_admin.job_stats() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        -- Completed jobs are counted in the queue and in the history they move to.
        'by_status', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM booking_admin.jobs j WHERE j.status = s)
                                                 + CASE WHEN s = 'completed' THEN (SELECT count(*) FROM booking_admin.job_history) ELSE 0 END)
                      FROM unnest(ARRAY['pending', 'running', 'completed', 'failed', 'dead']) s),
        'avg_duration_ms', (SELECT round(avg(d.ms)::numeric, 1) FROM booking_admin.completed_job_durations() d),
        'p95_duration_ms', (SELECT round((percentile_cont(0.95) WITHIN GROUP (ORDER BY d.ms))::numeric, 1)
                            FROM booking_admin.completed_job_durations() d),
        'oldest_pending_age_ms', (SELECT round((extract(epoch FROM now() - min(scheduled_at)) * 1000)::numeric)
                                  FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= now()))
$$;
-- Runs one operation now, recorded in maintenance_executions. Holds a transaction-level
-- advisory lock per operation, so a manual run and the scheduler never overlap.
CREATE OR REPLACE FUNCTION booking_admin.run_maintenance(p_operation text, p_triggered_by text DEFAULT 'manual') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    j booking_admin.scheduler_job_info;
    e booking_admin.maintenance_executions;
    v_function regprocedure;
    v_started timestamptz := clock_timestamp();
    v_count integer := 0;
    v_error text;
    v_until timestamptz;
BEGIN
    IF p_triggered_by IS NULL OR p_triggered_by NOT IN ('scheduler', 'manual') THEN
        RAISE EXCEPTION 'triggered_by must be ''scheduler'' or ''manual''' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO j FROM booking_admin.scheduler_job_info WHERE job_name = p_operation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown maintenance operation %', coalesce(quote_literal(p_operation), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'One of: ' || (SELECT string_agg(job_name, ', ' ORDER BY job_name) FROM booking_admin.scheduler_job_info);
    END IF;
    IF j.respects_freeze THEN
        -- The scheduler has nobody to refuse: it defers. A manual run meets the window's action.
        v_until := CASE WHEN p_triggered_by = 'scheduler'
                        THEN (booking_admin.freeze_state(NULL) ->> 'until')::timestamptz
                        ELSE booking_admin.freeze_gate(format('maintenance operation %s', p_operation)) END;
        IF v_until IS NOT NULL THEN
            -- At least 5 seconds ahead, as booking_admin.defer_job (a held clock must not spin it).
            UPDATE booking_admin.scheduler_job_info SET next_run_at = greatest(v_until, clock_timestamp() + interval '5 seconds')
            WHERE job_name = p_operation;
            RETURN jsonb_build_object('success', false, 'deferred_until', v_until,
                                      'message', format('Operation %s is deferred by a freeze window until %s', p_operation, v_until),
                                      'data', NULL);
        END IF;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('booking_engine.maintenance'), hashtext(p_operation)) THEN
        RETURN jsonb_build_object('success', false, 'message', format('Operation %s is already running', p_operation),
                                  'data', NULL);
    END IF;
    BEGIN
        v_function := to_regprocedure(j.function || '(jsonb)');
        IF v_function IS NULL THEN
            RAISE EXCEPTION 'function %(jsonb) does not exist', j.function USING ERRCODE = '42883';
        END IF;
        EXECUTE format('SELECT %s($1)', v_function::oid::regproc) INTO v_count USING j.settings;
    EXCEPTION WHEN query_canceled OR others THEN
        v_error := SQLERRM;
    END;
    INSERT INTO booking_admin.maintenance_executions (operation, executed_at, status, processed_count, error_message,
                                                      execution_time_ms, triggered_by)
    VALUES (p_operation, v_started, CASE WHEN v_error IS NULL THEN 'SUCCESS' ELSE 'FAILED' END,
            coalesce(v_count, 0), v_error,
            round(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer, p_triggered_by)
    RETURNING * INTO e;
    UPDATE booking_admin.scheduler_job_info
    SET status = CASE WHEN v_error IS NULL THEN 'idle' ELSE 'failed' END,
        last_run_at = v_started, last_duration_ms = e.execution_time_ms, last_error = v_error,
        consecutive_failures = CASE WHEN v_error IS NULL THEN 0 ELSE consecutive_failures + 1 END,
        run_count = run_count + 1,
        server_instance = coalesce(inet_server_addr()::text, 'local') || ':' || current_setting('port'),
        -- A failure is retried sooner, with backoff, up to max_retries times in a row.
        next_run_at = clock_timestamp() + make_interval(secs => (CASE
            WHEN v_error IS NOT NULL AND consecutive_failures < max_retries
            THEN booking_admin.retry_delay_ms(1000, 2, consecutive_failures, delay_ms, NULL)
            ELSE delay_ms END) / 1000.0)
    WHERE job_name = p_operation;
    RETURN jsonb_build_object(
        'success', v_error IS NULL,
        'message', CASE WHEN v_error IS NULL THEN 'Operation completed successfully' ELSE 'Operation failed' END,
        'data', booking_admin.maintenance_json(e, j.description));
END $$;
-- Partition maintenance (sql/partitions.sql), for every feature's partitioned tables: every 10
-- minutes, which also spreads the rows of a large default partition over several short runs.
CREATE FUNCTION booking_admin.op_maintain_partitions(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(jsonb_array_length(t -> 'created') + jsonb_array_length(t -> 'dropped')), 0)::integer
    FROM jsonb_array_elements(booking_admin.maintain_partitions() -> 'tables') t
    WHERE t ? 'created'
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('partition-maintenance', 'Create partitions ahead, move rows out of default partitions, drop partitions past retention',
     'booking_admin.op_maintain_partitions', '{}', 600000, 3, 300000);
-- settings: archive_after_minutes (60), batch_size (10000 jobs per run, oldest first).
CREATE FUNCTION booking_admin.op_archive_jobs(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_columns text;
    n integer;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_columns
    FROM pg_attribute a WHERE a.attrelid = 'booking_admin.job_history'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format(
        'WITH moved AS (
             DELETE FROM booking_admin.jobs j
             WHERE j.id IN (SELECT o.id FROM booking_admin.jobs o
                            WHERE o.status = ''completed'' AND o.completed_at < clock_timestamp() - $1
                            ORDER BY o.completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING %s)
         INSERT INTO booking_admin.job_history (%s) SELECT %s FROM moved', v_columns, v_columns, v_columns)
    USING make_interval(mins => coalesce((p_settings ->> 'archive_after_minutes')::int, 60)),
          coalesce((p_settings ->> 'batch_size')::int, 10000);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('archive-jobs', 'Move completed jobs from the queue into the partitioned job history', 'booking_admin.op_archive_jobs',
     '{"archive_after_minutes": 60, "batch_size": 10000}', 60000, 3, 60000);

-- sql/freeze.sql, as a fresh install runs it.
-- The freeze calendar: windows ("the wedding season Saturdays", "Black Friday") during which
-- nothing risky happens to the database. Inside a window, DDL through the admin sandbox, the
-- auto-tuner's changes and maintenance that takes strong locks are refused or deferred to the
-- window's end; bookings go on (nothing on the booking path asks the calendar).
--
-- A window is global (tenant_id NULL) or a tenant's. The tables are shared by every tenant,
-- so an operation on them (DDL, a strong lock) is frozen by any tenant's window as well as by a
-- global one; an operation that concerns one tenant only (a job enqueued for that tenant) is
-- frozen by that tenant's windows and the global ones.
--
-- 'refuse' windows refuse what an operator asks for now (SQLSTATE 57000, audited); 'defer'
-- windows queue it to run when the window ends. What runs on its own schedule (the scheduler's
-- operations, queued jobs, the tuner) is always deferred: there is nobody to refuse.

CREATE TABLE booking_admin.freeze_windows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid REFERENCES booking.tenants (id) ON DELETE CASCADE,
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200),
    action      text NOT NULL DEFAULT 'defer' CHECK (action IN ('refuse', 'defer')),
    -- A one-off window: [starts_at, ends_at).
    starts_at   timestamptz,
    ends_at     timestamptz,
    -- A weekly window: on these local weekdays (0 = Sunday .. 6) from start_time to end_time
    -- ('24:00' is midnight at the day's end) in time_zone, on the local dates from valid_from to
    -- valid_until (both included; NULL: no bound).
    days        integer[] CHECK (days <@ '{0,1,2,3,4,5,6}' AND cardinality(days) > 0),
    start_time  time,
    end_time    time,
    time_zone   text NOT NULL DEFAULT 'UTC' CHECK (booking.is_valid_timezone(time_zone)),
    valid_from  date,
    valid_until date,
    created_by  text NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_at IS NOT NULL AND ends_at > starts_at AND days IS NULL AND start_time IS NULL AND end_time IS NULL
           OR days IS NOT NULL AND start_time < end_time AND starts_at IS NULL AND ends_at IS NULL),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until)
);
CREATE INDEX freeze_windows_tenant_idx ON booking_admin.freeze_windows (tenant_id);
COMMENT ON TABLE booking_admin.freeze_windows IS
    'The freeze calendar: one-off [starts_at, ends_at) or weekly (days, start_time, end_time in time_zone, between valid_from and valid_until) windows, global (tenant_id NULL) or a tenant''s, that refuse or defer DDL, tuner changes and strong-lock maintenance.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.freeze_windows', '');

-- The windows in force at p_at for an operation on the shared tables (p_tenant_id NULL: every
-- window) or concerning one tenant (the global windows and that tenant's), each with the end
-- of its current occurrence.
CREATE FUNCTION booking_admin.freeze_windows_at(p_at timestamptz, p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (id uuid, tenant_id uuid, description text, action text, ends_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT w.id, w.tenant_id, w.description, w.action,
           CASE WHEN w.days IS NULL THEN w.ends_at
                ELSE ((l.at::date + w.end_time) AT TIME ZONE w.time_zone) END
    FROM booking_admin.freeze_windows w
    CROSS JOIN LATERAL (SELECT p_at AT TIME ZONE w.time_zone AS at) l
    WHERE (p_tenant_id IS NULL OR w.tenant_id IS NULL OR w.tenant_id = p_tenant_id)
      AND CASE WHEN w.days IS NULL THEN p_at >= w.starts_at AND p_at < w.ends_at
               ELSE extract(dow FROM l.at)::int = ANY (w.days)
                    AND l.at::time >= w.start_time AND (l.at::time < w.end_time OR w.end_time = '24:00')
                    AND (w.valid_from IS NULL OR l.at::date >= w.valid_from)
                    AND (w.valid_until IS NULL OR l.at::date <= w.valid_until) END
$$;

-- Whether an operation is frozen now: {"frozen": false} or {"frozen": true, "action",
-- "until", "windows": [{id, tenant_id, description, action}]}. "until" is when the freeze
-- ends: the end of the windows in force, followed through the windows that begin as others
-- end (a Saturday window then a Sunday one freeze until Sunday's end). "action" is 'refuse'
-- when any window in force refuses.
CREATE FUNCTION booking_admin.freeze_state(p_tenant_id uuid DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := coalesce(p_at, booking.clock_now());
    v_until timestamptz;
    v_next timestamptz;
    v_windows jsonb;
    v_refuse boolean;
BEGIN
    SELECT max(w.ends_at), jsonb_agg(jsonb_build_object('id', w.id, 'tenant_id', w.tenant_id, 'description', w.description,
                                                         'action', w.action) ORDER BY w.ends_at, w.id),
           bool_or(w.action = 'refuse')
    INTO v_until, v_windows, v_refuse
    FROM booking_admin.freeze_windows_at(v_at, p_tenant_id) w;
    IF v_until IS NULL THEN
        RETURN jsonb_build_object('frozen', false);
    END IF;
    -- Back-to-back windows: at most a year of them, which also ends a calendar frozen for ever.
    FOR i IN 1..366 LOOP
        SELECT max(w.ends_at) INTO v_next FROM booking_admin.freeze_windows_at(v_until, p_tenant_id) w;
        EXIT WHEN v_next IS NULL OR v_next <= v_until;
        v_until := v_next;
    END LOOP;
    RETURN jsonb_build_object('frozen', true, 'action', CASE WHEN v_refuse THEN 'refuse' ELSE 'defer' END,
                              'until', v_until, 'windows', v_windows);
END $$;

-- What an operator-initiated operation does under the calendar: returns NULL (go on) or the
-- instant to defer it to; raises 57000 (with the windows in the detail) when a window in force
-- refuses, after recording the refusal in the audit log (it survives the error's rollback).
-- p_what names the operation in the error and the audit entry.
CREATE FUNCTION booking_admin.freeze_gate(p_what text, p_tenant_id uuid DEFAULT NULL) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v jsonb := booking_admin.freeze_state(p_tenant_id);
    v_reason text;
BEGIN
    IF NOT (v ->> 'frozen')::boolean THEN
        RETURN NULL;
    END IF;
    IF v ->> 'action' = 'refuse' THEN
        v_reason := format('%s is refused inside a freeze window until %s (%s)', p_what, v ->> 'until',
                           (SELECT string_agg(w ->> 'description', '; ') FROM jsonb_array_elements(v -> 'windows') w));
        PERFORM booking.audit_event('freeze.refused', 'freeze_window', p_what, false, v_reason, false, p_tenant_id);
        RAISE EXCEPTION '%', v_reason USING ERRCODE = '57000', DETAIL = (v -> 'windows')::text,
            HINT = 'Wait for the window to end, or remove the window (booking_admin.freeze_windows) if it no longer applies.';
    END IF;
    RETURN (v ->> 'until')::timestamptz;
END $$;

-- The calendar, managed by operators (the table is theirs to edit too; these check the
-- arguments with clear errors).
CREATE FUNCTION booking_admin.add_freeze_window(
    p_description text,
    p_starts_at timestamptz DEFAULT NULL,
    p_ends_at timestamptz DEFAULT NULL,
    p_days integer[] DEFAULT NULL,
    p_start_time time DEFAULT NULL,
    p_end_time time DEFAULT NULL,
    p_time_zone text DEFAULT 'UTC',
    p_valid_from date DEFAULT NULL,
    p_valid_until date DEFAULT NULL,
    p_action text DEFAULT 'defer',
    p_tenant_id uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_description IS NULL OR length(p_description) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a freeze window needs a description of 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF p_action IS NULL OR p_action NOT IN ('refuse', 'defer') THEN
        RAISE EXCEPTION 'action must be ''refuse'' or ''defer'', not %', coalesce(quote_literal(p_action), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF (p_starts_at IS NULL) = (p_days IS NULL) THEN
        RAISE EXCEPTION 'give either p_starts_at and p_ends_at (a one-off window) or p_days, p_start_time and p_end_time (a weekly one)'
            USING ERRCODE = '22023';
    END IF;
    IF p_starts_at IS NOT NULL AND (p_ends_at IS NULL OR p_ends_at <= p_starts_at) THEN
        RAISE EXCEPTION 'a one-off window ends after it starts' USING ERRCODE = '22023';
    END IF;
    IF p_days IS NOT NULL AND (cardinality(p_days) = 0 OR NOT p_days <@ '{0,1,2,3,4,5,6}' OR array_position(p_days, NULL) IS NOT NULL
                               OR p_start_time IS NULL OR p_end_time IS NULL OR p_start_time >= p_end_time) THEN
        RAISE EXCEPTION 'a weekly window has days 0 (Sunday) .. 6 and a start time before its end time (''24:00'' for midnight)'
            USING ERRCODE = '22023';
    END IF;
    IF p_time_zone IS NULL OR NOT booking.is_valid_timezone(p_time_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', coalesce(quote_literal(p_time_zone), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF p_valid_from > p_valid_until THEN
        RAISE EXCEPTION 'valid_from is after valid_until' USING ERRCODE = '22023';
    END IF;
    INSERT INTO booking_admin.freeze_windows (tenant_id, description, action, starts_at, ends_at, days, start_time, end_time,
                                              time_zone, valid_from, valid_until)
    VALUES (p_tenant_id, p_description, p_action, p_starts_at, p_ends_at, p_days, p_start_time, p_end_time, p_time_zone,
            p_valid_from, p_valid_until)
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'tenant % does not exist', p_tenant_id USING ERRCODE = 'P0002';
END $$;

CREATE FUNCTION booking_admin.remove_freeze_window(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM booking_admin.freeze_windows w WHERE w.id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no freeze window %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END $$;

-- A job put back in the queue without counting an attempt: a runner found it frozen. At least 5
-- seconds ahead: where booking_engine.now holds the calendar's clock still, the window's end
-- may already be past on the real clock the queue runs by, and the job must not spin.
CREATE FUNCTION booking_admin.defer_job(p_id uuid, p_until timestamptz) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    UPDATE booking_admin.jobs
    SET status = 'pending', scheduled_at = greatest(p_until, clock_timestamp() + interval '5 seconds'),
        started_at = NULL, locked_by = NULL, locked_pid = NULL,
        locked_at = NULL, heartbeat_at = NULL, updated_at = now(),
        error_message = format('deferred by the freeze calendar until %s', p_until)
    WHERE id = p_id AND status = 'running'
$$;

-- booking.events, partitioned by month. Its rows are not copied: the table itself becomes the
-- default partition of the new partitioned table (ATTACH, no rewrite), keeping its key and
-- indexes (a fresh install's default partition has the same), and the scheduler's
-- partition-maintenance then moves them into monthly partitions, one month per run. On a Citus
-- cluster, undistribute booking.events before the update and run distribute_tables() after it.
DROP TRIGGER events_metrics ON booking.events;
DROP TRIGGER events_fan_out ON booking.events;
ALTER TABLE booking.events RENAME TO events_default;
COMMENT ON TABLE booking.events_default IS NULL;
-- Out of the way while the new table takes these names (constraint names are chosen unique in
-- the schema), then back: ATTACH matches a partition's constraints to its table's by name.
ALTER TABLE booking.events_default RENAME CONSTRAINT events_event_type_check TO events_event_type_check_old;
ALTER TABLE booking.events_default RENAME CONSTRAINT events_tenant_id_fkey TO events_tenant_id_fkey_old;
CREATE TABLE booking.events (
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    event_type    text NOT NULL CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
    payload       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz,
    fanned_out_at timestamptz
) PARTITION BY RANGE (created_at);
ALTER TABLE booking.events_default RENAME CONSTRAINT events_event_type_check_old TO events_event_type_check;
ALTER TABLE booking.events_default RENAME CONSTRAINT events_tenant_id_fkey_old TO events_tenant_id_fkey;
COMMENT ON TABLE booking.events IS
    'Outbox of booking.created, booking.rescheduled, booking.cancelled, waitlist.notified, conflict.detected and the maintenance transitions; NOTIFY booking_events carries {"id", "type"}.';
SELECT pg_catalog.pg_extension_config_dump('booking.events', '');
CREATE TRIGGER events_metrics AFTER INSERT ON booking.events
    FOR EACH ROW EXECUTE FUNCTION booking.metrics_on_event();
CREATE TRIGGER events_fan_out AFTER INSERT ON booking.events
    FOR EACH STATEMENT EXECUTE FUNCTION booking.wake_delivery_on_events();
ALTER TABLE booking.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.events ATTACH PARTITION booking.events_default DEFAULT;
-- Monthly partitions, kept a year: the outbox is read while its events are new (dispatch, the
-- delivery fan-out, the waitlist sweep's 48 hours).
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking.events', 'created_at', 'month', 3, '365 days', 'The outbox of booking changes');

-- The audit log, partitioned by month the same way: the table becomes the default partition
-- (keeping its key, its indexes and its append-only guard, which every partition carries).
DROP TRIGGER security_audit_fill ON booking_admin.security_audit_log;
ALTER TABLE booking_admin.security_audit_log RENAME TO security_audit_log_default;
COMMENT ON TABLE booking_admin.security_audit_log_default IS NULL;
COMMENT ON COLUMN booking_admin.security_audit_log_default.db_user IS NULL;
ALTER TABLE booking_admin.security_audit_log_default RENAME CONSTRAINT security_audit_log_action_check TO security_audit_log_action_check_old;
ALTER TABLE booking_admin.security_audit_log_default RENAME CONSTRAINT security_audit_log_resource_type_check TO security_audit_log_resource_type_check_old;
CREATE TABLE booking_admin.security_audit_log (
    id                      uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               uuid,
    user_id                 uuid,
    db_user                 text,
    action                  text NOT NULL CHECK (length(action) BETWEEN 1 AND 255),
    resource_type           text NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 255),
    resource_id             text,
    ip_address              inet,
    user_agent              text,
    request_id              text,
    success                 boolean NOT NULL,
    failure_reason          text,
    sensitive_data_accessed boolean NOT NULL DEFAULT false,
    mfa                     boolean,
    created_at              timestamptz NOT NULL DEFAULT booking.clock_now()
) PARTITION BY RANGE (created_at);
ALTER TABLE booking_admin.security_audit_log_default RENAME CONSTRAINT security_audit_log_action_check_old TO security_audit_log_action_check;
ALTER TABLE booking_admin.security_audit_log_default RENAME CONSTRAINT security_audit_log_resource_type_check_old TO security_audit_log_resource_type_check;
COMMENT ON TABLE booking_admin.security_audit_log IS
    'Append-only audit trail. Context columns left NULL on insert are filled from the request (request.jwt.claims, request.headers) or the session. mfa: NULL without JWT claims.';
COMMENT ON COLUMN booking_admin.security_audit_log.db_user IS 'The database role the session acted as (outside SECURITY DEFINER functions).';
CREATE TRIGGER security_audit_fill BEFORE INSERT ON booking_admin.security_audit_log
    FOR EACH ROW EXECUTE FUNCTION booking.security_audit_fill();
CREATE TRIGGER security_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON booking_admin.security_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION booking.security_audit_append_only();
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_audit_log', '');
ALTER TABLE booking_admin.security_audit_log ATTACH PARTITION booking_admin.security_audit_log_default DEFAULT;
-- Monthly partitions of the audit log, kept a year.
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.security_audit_log', 'created_at', 'month', 3, '365 days', 'The security audit trail');

-- Remediations: the actions rules may name, the proposals and their decisions; the rate
-- limiter's blocks (Rust, src/security/api.rs).
ALTER TABLE booking_admin.security_rules
    ADD COLUMN remediation_action text CHECK (remediation_action IN ('block_client', 'delete_expired_pii', 'revoke_grant')),
    ADD COLUMN remediation_settings jsonb NOT NULL DEFAULT '{}';
-- booking_engine::security::api::booking_admin::block_client
CREATE  FUNCTION booking_admin."block_client"(
	"p_identifier" TEXT, /* Option < String > */
	"p_until" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS bool /* Result < bool, Report > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'block_client_wrapper';
-- booking_engine::security::api::booking_admin::unblock_client
CREATE  FUNCTION booking_admin."unblock_client"(
	"p_identifier" TEXT /* Option < String > */
) RETURNS bool /* Result < bool, Report > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unblock_client_wrapper';
-- booking_engine::security::api::booking_admin::client_blocked_until
CREATE  FUNCTION booking_admin."client_blocked_until"(
	"p_identifier" TEXT /* Option < String > */
) RETURNS timestamp with time zone /* Result < Option < TimestampWithTimeZone > , Report > */
VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'client_blocked_until_wrapper';
-- The five seed rules and the database lints; existing rules (an operator may have changed
-- them) are left alone. Returns how many were added.
CREATE OR REPLACE FUNCTION booking_admin.init_default_security_rules() RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
    WITH ins AS (
        INSERT INTO booking_admin.security_rules (rule_name, rule_type, severity, condition_sql, remediation_text,
                                                  remediation_action, remediation_settings)
        VALUES
        ('unencrypted_pii', 'data_protection', 'high',
         $r$SELECT r.table_name || '.' || r.column_name AS object, r.table_name, r.column_name, r.data_type, r.compliance_level
            FROM booking_admin.get_pii_registry() r
            WHERE NOT r.is_encrypted AND r.compliance_level IN ('confidential', 'restricted')$r$,
         'Encrypt the column (pgcrypto or bytea ciphertext) or lower its compliance level if it is not personal data.',
         NULL, '{}'),
        ('excessive_failed_logins', 'authentication', 'medium',
         $r$SELECT k.object, k.kind, k.value, count(*) AS failures, max(a.created_at) AS last_failure
            FROM booking_admin.security_audit_log a
            CROSS JOIN LATERAL (VALUES ('ip:' || host(a.ip_address), 'ip', host(a.ip_address)),
                                       ('user:' || a.resource_id, 'user', a.resource_id)) k (object, kind, value)
            WHERE a.action = 'login' AND NOT a.success AND k.value IS NOT NULL
              AND a.created_at > booking.clock_now() - interval '15 minutes' AND a.created_at <= booking.clock_now()
            GROUP BY k.object, k.kind, k.value HAVING count(*) >= 5$r$,
         'Block the IP address or lock the account for a while, and check whether the attempts come from an attack.',
         'block_client', '{"block_for": "1 hour"}'),
        ('privileged_action_without_mfa', 'access_control', 'critical',
         $r$SELECT a.id::text AS object, a.id AS audit_id, a.tenant_id, a.user_id, a.db_user, a.resource_id AS function, a.created_at
            FROM booking_admin.security_audit_log a
            WHERE a.resource_type = 'booking_admin_function' AND a.mfa = false
              AND a.created_at > booking.clock_now() - interval '24 hours'$r$,
         'Require a second factor (aal2) for operators before granting them booking_admin functions.',
         NULL, '{}'),
        ('data_retention_violation', 'data_retention', 'medium',
         $r$SELECT o.table_name AS object, o.retention_days, o.overdue_rows FROM booking_admin.retention_overdue() o$r$,
         'Archive or delete the rows older than the registry''s retention_days.',
         'delete_expired_pii', '{}'),
        ('off_hours_sensitive_access', 'monitoring', 'medium',
         $r$SELECT a.id::text AS object, a.id AS audit_id, a.tenant_id, a.user_id, a.db_user, a.action, a.resource_type,
                   a.resource_id, a.created_at, t.timezone
            FROM booking_admin.security_audit_log a JOIN booking.tenants t ON t.id = a.tenant_id
            WHERE a.sensitive_data_accessed AND a.created_at > booking.clock_now() - interval '7 days'
              AND NOT booking.is_within_opening_hours(t.opening_hours, a.created_at AT TIME ZONE t.timezone)$r$,
         'Review the business reason for reading personal data outside opening hours.',
         NULL, '{}'),
        ('lint_rls_disabled', 'lint', 'high',
         $r$SELECT format('%I.%I', n.nspname, c.relname) AS object, n.nspname AS schema, c.relname AS table_name
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
              AND n.nspname = ANY (string_to_array(replace(current_setting('booking_engine.exposed_schemas'), ' ', ''), ','))$r$,
         'ALTER TABLE ... ENABLE ROW LEVEL SECURITY and add policies, or stop exposing the schema.',
         NULL, '{}'),
        ('lint_security_definer_search_path', 'lint', 'high',
         $r$SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS object,
                   n.nspname AS schema, p.proname AS function
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')$r$,
         'ALTER FUNCTION ... SET search_path = pg_catalog, <schema>, pg_temp.',
         NULL, '{}'),
        ('lint_public_execute_on_admin', 'lint', 'critical',
         $r$SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS object,
                   p.proname AS function, 'FUNCTION' AS object_type, 'EXECUTE' AS privilege, 'PUBLIC' AS grantee
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'booking_admin' AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')$r$,
         'REVOKE EXECUTE ON FUNCTION ... FROM PUBLIC and grant it to operator roles only.',
         'revoke_grant', '{}')
        ON CONFLICT (rule_name) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM ins
$$;
-- The default rules an earlier version inserted get their actions (an operator's own rules, and
-- rules an operator changed, are left alone).
UPDATE booking_admin.security_rules SET remediation_action = 'block_client', remediation_settings = '{"block_for": "1 hour"}'
WHERE rule_name = 'excessive_failed_logins' AND remediation_action IS NULL;
UPDATE booking_admin.security_rules SET remediation_action = 'delete_expired_pii'
WHERE rule_name = 'data_retention_violation' AND remediation_action IS NULL;
UPDATE booking_admin.security_rules
SET remediation_action = 'revoke_grant',
    condition_sql = replace(condition_sql, 'p.proname AS function
', 'p.proname AS function, ''FUNCTION'' AS object_type, ''EXECUTE'' AS privilege, ''PUBLIC'' AS grantee
')
WHERE rule_name = 'lint_public_execute_on_admin' AND remediation_action IS NULL;
-- Remediations ----------------------------------------------------------------------------------

-- What may be done about a violation, one row per action: proposed (a dry run says what it
-- would do) when a rule naming an action finds a violation, carried out only when an operator
-- approves it, undone where that is possible. Every step is audited (security_audit_log,
-- resource type 'security_remediation').
--   block_client        the rate limiter refuses the identifier (an address or user id, the
--                       violation's kind and value) in every bucket until expires_at
--                       (settings.block_for, default 1 hour); reverted by unblocking
--   delete_expired_pii  deletes the rows of a registered table older than the PII registry's
--                       retention_days (by created_at); cannot be undone
--   revoke_grant        REVOKE privilege ON object_type object FROM grantee (the violation's
--                       columns of those names); reverted by granting it again
CREATE TABLE booking_admin.security_remediations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    violation_id uuid REFERENCES booking_admin.security_violations (id) ON DELETE SET NULL,
    rule_name    text NOT NULL,
    tenant_id    uuid,
    action       text NOT NULL CHECK (action IN ('block_client', 'delete_expired_pii', 'revoke_grant')),
    -- The violation's details when it was proposed, and what the action resolved them to.
    details      jsonb NOT NULL,
    target       jsonb NOT NULL,
    plan         text NOT NULL,
    dry_run      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'proposed'
                 CHECK (status IN ('proposed', 'applied', 'failed', 'rejected', 'reverted', 'expired')),
    proposed_at  timestamptz NOT NULL DEFAULT booking.clock_now(),
    decided_by   text,
    decided_at   timestamptz,
    note         text,
    applied_at   timestamptz,
    expires_at   timestamptz,
    result       jsonb,
    reverted_by  text,
    reverted_at  timestamptz
);
-- One proposal per violation and action.
CREATE UNIQUE INDEX security_remediations_violation_idx ON booking_admin.security_remediations (violation_id, action);
CREATE INDEX security_remediations_open_idx ON booking_admin.security_remediations (status, expires_at)
    WHERE status IN ('proposed', 'applied');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.security_remediations', '');

-- What an action would do to a violation's details, now: {target, plan, dry_run}, or raises
-- 22023 when the details do not name what the action needs. The dry run reads, never writes.
CREATE FUNCTION booking_admin.remediation_plan(p_action text, p_details jsonb, p_settings jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_identifier text;
    v_kind text;
    v_for interval;
    v_table regclass;
    v_days integer;
    v_rows bigint;
    v_type text;
    v_object text;
    v_privilege text;
    v_grantee text;
    v_has boolean;
BEGIN
    IF p_action = 'block_client' THEN
        v_kind := coalesce(p_details ->> 'kind', CASE WHEN p_details ? 'ip_address' THEN 'ip' WHEN p_details ? 'user_id' THEN 'user' END);
        v_identifier := coalesce(p_details ->> 'value', p_details ->> 'ip_address', p_details ->> 'user_id');
        IF v_identifier IS NULL OR v_kind NOT IN ('ip', 'user') THEN
            RAISE EXCEPTION 'block_client needs the violation''s kind (ip or user) and value, or an ip_address or user_id'
                USING ERRCODE = '22023';
        END IF;
        -- Checked as an interval, kept as written (a plan reads the same whatever IntervalStyle).
        v_for := coalesce(p_settings ->> 'block_for', '1 hour')::interval;
        RETURN jsonb_build_object(
            'target', jsonb_build_object('kind', v_kind, 'identifier', v_identifier,
                                         'block_for', coalesce(p_settings ->> 'block_for', '1 hour')),
            'plan', format('block %s %s in the rate limiter for %s', v_kind, v_identifier,
                           coalesce(p_settings ->> 'block_for', '1 hour')),
            'dry_run', jsonb_build_object('blocked_now', booking_admin.client_blocked_until(v_identifier) IS NOT NULL));
    ELSIF p_action = 'delete_expired_pii' THEN
        -- The table and its retention from the registry as it is now, not from the finding.
        SELECT to_regclass(r.table_name), min(r.retention_days) INTO v_table, v_days
        FROM booking_admin.pii_data_registry r
        WHERE r.table_name = p_details ->> 'object' AND r.retention_days IS NOT NULL
        GROUP BY r.table_name;
        IF v_table IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_table AND a.attname = 'created_at'
                                                                         AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'delete_expired_pii needs a table of the PII registry with a retention and a created_at column, not %',
                coalesce(quote_literal(p_details ->> 'object'), 'NULL') USING ERRCODE = '22023';
        END IF;
        EXECUTE format('SELECT count(*) FROM %s WHERE created_at < $1', v_table)
            INTO v_rows USING booking.clock_now() - make_interval(days => v_days);
        RETURN jsonb_build_object(
            'target', jsonb_build_object('table', v_table::text, 'retention_days', v_days),
            'plan', format('DELETE FROM %s WHERE created_at < now() - %s days (the registry''s retention); it cannot be undone',
                           v_table, v_days),
            'dry_run', jsonb_build_object('rows', v_rows));
    ELSIF p_action = 'revoke_grant' THEN
        v_type := upper(p_details ->> 'object_type');
        v_object := p_details ->> 'object';
        v_privilege := upper(p_details ->> 'privilege');
        v_grantee := p_details ->> 'grantee';
        IF v_type NOT IN ('FUNCTION', 'TABLE', 'SCHEMA', 'SEQUENCE') OR v_object IS NULL OR v_grantee IS NULL
           OR v_privilege NOT IN ('EXECUTE', 'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER',
                                  'USAGE', 'CREATE', 'ALL') THEN
            RAISE EXCEPTION 'revoke_grant needs the violation''s object_type (function, table, schema, sequence), object, privilege and grantee'
                USING ERRCODE = '22023';
        END IF;
        -- The object and grantee resolved (and quoted) by the catalog: the finding's text is not run.
        v_object := CASE v_type WHEN 'FUNCTION' THEN to_regprocedure(v_object)::text
                                WHEN 'SCHEMA' THEN to_regnamespace(v_object)::text
                                ELSE to_regclass(v_object)::text END;
        v_grantee := CASE WHEN upper(v_grantee) = 'PUBLIC' THEN 'PUBLIC' ELSE to_regrole(v_grantee)::text END;
        IF v_object IS NULL OR v_grantee IS NULL THEN
            RAISE EXCEPTION 'revoke_grant: % % or grantee % does not exist', lower(v_type), p_details ->> 'object',
                p_details ->> 'grantee' USING ERRCODE = '22023';
        END IF;
        v_has := CASE WHEN v_privilege = 'ALL' THEN NULL
                      WHEN v_type = 'FUNCTION' THEN has_function_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                           v_object::regprocedure, v_privilege)
                      WHEN v_type = 'SCHEMA' THEN has_schema_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                       v_object, v_privilege)
                      WHEN v_type = 'SEQUENCE' THEN has_sequence_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END,
                                                                           v_object, v_privilege)
                      ELSE has_table_privilege(CASE v_grantee WHEN 'PUBLIC' THEN 'public' ELSE v_grantee END, v_object, v_privilege) END;
        RETURN jsonb_build_object(
            'target', jsonb_build_object('object_type', v_type, 'object', v_object, 'privilege', v_privilege, 'grantee', v_grantee),
            'plan', format('REVOKE %s ON %s %s FROM %s', v_privilege, v_type, v_object, v_grantee),
            'dry_run', jsonb_build_object('granted_now', v_has,
                                          'revert', format('GRANT %s ON %s %s TO %s', v_privilege, v_type, v_object, v_grantee)));
    END IF;
    RAISE EXCEPTION 'unknown remediation action %', coalesce(quote_literal(p_action), 'NULL') USING ERRCODE = '22023';
END $$;

-- A proposal for every open violation of a rule that names an action and has none yet; a
-- violation whose details do not fit the action gets a 'failed' row saying why. Called at the
-- end of every rule evaluation. Returns how many were proposed.
CREATE FUNCTION booking_admin.propose_remediations() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_plan jsonb;
    n integer := 0;
BEGIN
    FOR r IN
        SELECT v.id, v.tenant_id, v.violation_details, s.rule_name, s.remediation_action, s.remediation_settings
        FROM booking_admin.security_violations v
        JOIN booking_admin.security_rules s ON s.id = v.rule_id
        WHERE v.status <> 'resolved' AND s.remediation_action IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM booking_admin.security_remediations m
                          WHERE m.violation_id = v.id AND m.action = s.remediation_action)
    LOOP
        BEGIN
            v_plan := booking_admin.remediation_plan(r.remediation_action, r.violation_details, r.remediation_settings);
            INSERT INTO booking_admin.security_remediations (violation_id, rule_name, tenant_id, action, details, target, plan,
                                                            dry_run)
            VALUES (r.id, r.rule_name, r.tenant_id, r.remediation_action, r.violation_details, v_plan -> 'target',
                    v_plan ->> 'plan', v_plan -> 'dry_run');
            n := n + 1;
        EXCEPTION WHEN invalid_parameter_value THEN
            INSERT INTO booking_admin.security_remediations (violation_id, rule_name, tenant_id, action, details, target, plan,
                                                            dry_run, status, result)
            VALUES (r.id, r.rule_name, r.tenant_id, r.remediation_action, r.violation_details, '{}', 'none: ' || SQLERRM, '{}',
                    'failed', jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE));
        END;
    END LOOP;
    RETURN n;
END $$;

-- One remediation, locked, in one of the given states, or the documented error: 42501 for a
-- caller who is not an operator, P0002 for an unknown id, 55000 for one in another state.
CREATE FUNCTION booking_admin.remediation_in(p_id uuid, p_states text[]) RETURNS booking_admin.security_remediations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations;
BEGIN
    IF NOT booking.caller_is_operator() THEN
        RAISE EXCEPTION 'only operators decide remediations' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v FROM booking_admin.security_remediations m WHERE m.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no remediation %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF NOT v.status = ANY (p_states) THEN
        RAISE EXCEPTION 'remediation % is %, not %', p_id, v.status, array_to_string(p_states, ' or ') USING ERRCODE = '55000';
    END IF;
    RETURN v;
END $$;

-- The dry run again, as things are now: what approving would do (nothing is changed; audited).
CREATE FUNCTION booking_admin.preview_remediation(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations :=
        booking_admin.remediation_in(p_id, ARRAY['proposed', 'applied', 'failed', 'rejected', 'reverted', 'expired']);
    v_plan jsonb;
BEGIN
    v_plan := booking_admin.remediation_plan(v.action, v.details, coalesce(
        (SELECT r.remediation_settings FROM booking_admin.security_rules r WHERE r.rule_name = v.rule_name), '{}'));
    PERFORM booking.audit_event('remediation.dry_run', 'security_remediation', p_id::text, true, NULL,
                                v.action = 'delete_expired_pii', v.tenant_id);
    RETURN jsonb_build_object('id', v.id, 'action', v.action, 'status', v.status) || v_plan;
END $$;

-- Carries out a proposed remediation: an operator's decision, run with the extension owner's
-- rights (what runs was found by a rule and resolved against the catalog, both the owner's;
-- the operator chooses only whether). Returns the remediation; a failure is recorded (status
-- failed, the error in result) and audited, not raised. Operators only (42501).
CREATE FUNCTION booking_admin.approve_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['proposed']);
    v_rows bigint;
    v_until timestamptz;
    v_error text;
    v_result jsonb;
BEGIN
    BEGIN
        IF v.action = 'block_client' THEN
            v_until := booking.clock_now() + (v.target ->> 'block_for')::interval;
            PERFORM booking_admin.block_client(v.target ->> 'identifier', v_until);
            v_result := jsonb_build_object('blocked_until', v_until);
        ELSIF v.action = 'delete_expired_pii' THEN
            EXECUTE format('DELETE FROM %s WHERE created_at < $1', (v.target ->> 'table')::regclass)
                USING booking.clock_now() - make_interval(days => (v.target ->> 'retention_days')::int);
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_result := jsonb_build_object('deleted_rows', v_rows);
        ELSE
            EXECUTE v.plan;
            v_result := jsonb_build_object('revert', v.dry_run ->> 'revert');
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_error := SQLSTATE || ': ' || SQLERRM;
    END;
    UPDATE booking_admin.security_remediations m SET
        status = CASE WHEN v_error IS NULL THEN 'applied' ELSE 'failed' END,
        decided_by = session_user, decided_at = booking.clock_now(), note = p_note,
        applied_at = CASE WHEN v_error IS NULL THEN booking.clock_now() END, expires_at = v_until,
        result = coalesce(v_result, jsonb_build_object('error', v_error))
    WHERE m.id = p_id
    RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.apply', 'security_remediation', p_id::text, v_error IS NULL, v_error,
                                v.action = 'delete_expired_pii', v.tenant_id);
    RETURN to_jsonb(v);
END $$;

CREATE FUNCTION booking_admin.reject_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['proposed']);
BEGIN
    UPDATE booking_admin.security_remediations m
    SET status = 'rejected', decided_by = session_user, decided_at = booking.clock_now(), note = p_note
    WHERE m.id = p_id RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.reject', 'security_remediation', p_id::text, true, p_note, false, v.tenant_id);
    RETURN to_jsonb(v);
END $$;

-- Undoes an applied block (unblocked at once) or revoke (granted again). A deletion cannot be
-- undone: 55000.
CREATE FUNCTION booking_admin.revert_remediation(p_id uuid, p_note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v booking_admin.security_remediations := booking_admin.remediation_in(p_id, ARRAY['applied']);
BEGIN
    IF v.action = 'delete_expired_pii' THEN
        RAISE EXCEPTION 'remediation % deleted rows: it cannot be undone', p_id USING ERRCODE = '55000',
            HINT = 'Restore the rows from a backup if they are needed.';
    END IF;
    IF v.action = 'block_client' THEN
        PERFORM booking_admin.unblock_client(v.target ->> 'identifier');
    ELSE
        EXECUTE v.dry_run ->> 'revert';
    END IF;
    UPDATE booking_admin.security_remediations m
    SET status = 'reverted', reverted_by = session_user, reverted_at = booking.clock_now(),
        note = coalesce(p_note, m.note)
    WHERE m.id = p_id RETURNING * INTO v;
    PERFORM booking.audit_event('remediation.revert', 'security_remediation', p_id::text, true, p_note, false, v.tenant_id);
    RETURN to_jsonb(v);
END $$;

-- Applied blocks: the ones past their expiry become 'expired' (audited); the live ones are
-- handed to the rate limiter again (its memory does not survive a restart). Every minute.
CREATE FUNCTION booking_admin.op_client_blocks(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN
        UPDATE booking_admin.security_remediations m SET status = 'expired'
        WHERE m.action = 'block_client' AND m.status = 'applied' AND m.expires_at <= booking.clock_now()
        RETURNING m.id, m.tenant_id, m.target
    LOOP
        PERFORM booking_admin.unblock_client(r.target ->> 'identifier');
        PERFORM booking.audit_event('remediation.expire', 'security_remediation', r.id::text, true, NULL, false, r.tenant_id);
        n := n + 1;
    END LOOP;
    FOR r IN
        SELECT m.target ->> 'identifier' AS identifier, m.expires_at FROM booking_admin.security_remediations m
        WHERE m.action = 'block_client' AND m.status = 'applied'
    LOOP
        PERFORM booking_admin.block_client(r.identifier, r.expires_at);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('client-blocks', 'Expire remediation blocks and keep the live ones in the rate limiter', 'booking_admin.op_client_blocks',
     '{}', 60000, 3, 30000);

-- The auto-tuner's freeze windows join the freeze calendar: each becomes a global weekly
-- window that defers, in the tuner's time zone.
INSERT INTO booking_admin.freeze_windows (description, action, days, start_time, end_time, time_zone)
SELECT 'auto-tuner freeze window', 'defer', ARRAY(SELECT jsonb_array_elements_text(w -> 'days')::int),
       (w ->> 'start')::time, (w ->> 'end')::time, c.freeze_timezone
FROM booking_admin.auto_tuner_config c, jsonb_array_elements(c.freeze_windows) w;
ALTER TABLE booking_admin.auto_tuner_config DROP COLUMN freeze_windows, DROP COLUMN freeze_timezone;
DROP FUNCTION booking.is_valid_freeze_windows(jsonb);
COMMENT ON TABLE booking_admin.auto_tuner_config IS
    'The auto-tuner''s settings (one row). It applies and rolls back nothing inside a window of the freeze calendar (booking_admin.freeze_windows).';
-- The tuner builds its indexes concurrently through the queued path: an action is 'applying'
-- while its job runs.
ALTER TABLE booking_admin.tuning_actions ADD COLUMN job_id uuid,
    DROP CONSTRAINT tuning_actions_status_check,
    ADD CONSTRAINT tuning_actions_status_check CHECK (status IN ('proposed', 'applying', 'applied', 'rolled_back', 'skipped'));
-- How one execute_admin_sql attempt ended, by the audit_id it returned (or that its error
-- was recorded under): the audit row as a document.
-- VOLATILE: the writer commits rows during the caller's statement, which a STABLE function's
-- snapshot would not see.
CREATE OR REPLACE FUNCTION booking_admin.admin_sql_status(p_audit_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb;
    job record;
BEGIN
    SELECT to_jsonb(a) INTO doc FROM booking_admin.admin_audit a WHERE a.id = p_audit_id;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'no admin statement with audit id %', coalesce(p_audit_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF doc ->> 'job_id' IS NULL THEN
        RETURN doc;
    END IF;
    -- A queued statement ends when its job does (a completed job may have moved to the history).
    SELECT j.status, j.retry_count, j.started_at, j.error_message, j.completed_at INTO job
    FROM booking_admin.jobs j WHERE j.id = (doc ->> 'job_id')::uuid;
    IF NOT FOUND THEN
        SELECT j.status, j.retry_count, j.started_at, j.error_message, j.completed_at INTO job
        FROM booking_admin.job_history j WHERE j.id = (doc ->> 'job_id')::uuid;
    END IF;
    IF job.status IS NULL THEN
        RETURN doc || jsonb_build_object('outcome', 'failed', 'outcome_detail',
            'its job is gone: the enqueuing transaction rolled back, or job retention removed it');
    END IF;
    -- A pending job says whether a runner will take it (false: no worker serves this database,
    -- see worker_status()).
    RETURN doc || jsonb_build_object(
        'will_run', CASE WHEN job.status IN ('pending', 'failed', 'running')
                         THEN (booking_admin.worker_status() ->> 'will_run')::boolean END,
        'outcome', CASE job.status WHEN 'completed' THEN 'succeeded' WHEN 'dead' THEN 'failed' ELSE 'pending' END,
        'outcome_detail', job.error_message,
        'finished_at', job.completed_at,
        'job', jsonb_build_object('status', job.status, 'retry_count', job.retry_count, 'started_at', job.started_at));
END $$;
-- The tuner's concurrent builds, settled: an action whose job completed and whose index is valid
-- is applied (from now on, by the tuner's clock: its monitoring interval counts from here); one
-- whose job died, or whose index was left invalid (a CREATE INDEX CONCURRENTLY that failed
-- leaves one behind), is skipped with the reason and the invalid index dropped through the
-- sandbox. Returns {"applied": n, "failed": n}.
CREATE FUNCTION booking_admin.settle_tuning_actions() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a record;
    v_applied integer := 0;
    v_failed integer := 0;
BEGIN
    FOR a IN
        SELECT t.id, t.index_name, t.rollback_sql, j.status AS job_status, j.error_message,
               (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(t.index_name)) AS valid
        FROM booking_admin.tuning_actions t
        LEFT JOIN LATERAL (
            SELECT q.status, q.error_message FROM booking_admin.jobs q WHERE q.id = t.job_id
            UNION ALL
            SELECT h.status, h.error_message FROM booking_admin.job_history h WHERE h.id = t.job_id
            LIMIT 1) j ON true
        WHERE t.status = 'applying'
        FOR UPDATE OF t
    LOOP
        IF a.job_status = 'completed' AND a.valid THEN
            UPDATE booking_admin.tuning_actions SET status = 'applied', applied_at = booking.clock_now() WHERE id = a.id;
            v_applied := v_applied + 1;
        ELSIF a.job_status IS NULL OR a.job_status IN ('completed', 'dead') THEN
            IF a.valid IS NOT NULL THEN
                PERFORM booking_admin.execute_admin_sql(a.rollback_sql);
            END IF;
            UPDATE booking_admin.tuning_actions
            SET status = 'skipped',
                status_reason = coalesce('the concurrent build failed: ' || a.error_message,
                                         'the concurrent build left no valid index (its job is gone or the index invalid)')
            WHERE id = a.id;
            v_failed := v_failed + 1;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('applied', v_applied, 'failed', v_failed);
END $$;

-- sql/history.sql, as a fresh install runs it.
-- Database health over time. The scheduler's capture-history operation keeps, every 5 minutes,
-- what pg_stat_statements, pg_stat_database and pg_stat_activity say (as deltas where they are
-- counters) and, every hour, the size and use of every relation and the headroom of every
-- sequence. The tables are partitioned by day (sql/partitions.sql; their indexes are the
-- default partition's, copied to each day's) and dropped past their retention. The functions
-- below answer a DBA's questions over a window: which queries take the time and how that
-- moves, which relations grow fastest, which sequences run out, which indexes nobody uses,
-- which are duplicates, and who blocks whom now. (PgHero keeps and asks the same; here it is
-- the database's own.)

-- One row per query (of this database) and capture: what it did since the previous capture.
CREATE TABLE booking_admin.history_query_stats (
    captured_at      timestamptz NOT NULL,
    queryid          bigint NOT NULL,
    role_name        text NOT NULL,
    toplevel         boolean NOT NULL,
    calls            bigint NOT NULL,
    total_ms         float8 NOT NULL,
    rows             bigint NOT NULL,
    shared_blks_hit  bigint NOT NULL,
    shared_blks_read bigint NOT NULL
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_query_stats_default PARTITION OF booking_admin.history_query_stats DEFAULT;
CREATE INDEX history_query_stats_query_idx ON booking_admin.history_query_stats_default (queryid, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_query_stats_default', '');

-- The text of each query seen (pg_stat_statements's normalised text), once per queryid.
CREATE TABLE booking_admin.history_query_texts (
    queryid      bigint PRIMARY KEY,
    query        text NOT NULL,
    last_seen_at timestamptz NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_query_texts', '');

-- pg_stat_statements's counters at the last capture, the base of the next deltas.
CREATE TABLE booking_admin.history_query_state (
    userid      oid NOT NULL,
    queryid     bigint NOT NULL,
    toplevel    boolean NOT NULL,
    calls       bigint NOT NULL,
    total_ms    float8 NOT NULL,
    rows        bigint NOT NULL,
    blks_hit    bigint NOT NULL,
    blks_read   bigint NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (userid, queryid, toplevel)
);

-- One row per capture: the database's size, its sessions by state, and pg_stat_database's
-- counters as they stand (a chart takes their differences).
CREATE TABLE booking_admin.history_database_stats (
    captured_at         timestamptz NOT NULL,
    database_bytes      bigint NOT NULL,
    connections         jsonb NOT NULL,
    total_connections   integer NOT NULL,
    max_connections     integer NOT NULL,
    waiting_on_locks    integer NOT NULL,
    xact_commit         bigint NOT NULL,
    xact_rollback       bigint NOT NULL,
    blks_hit            bigint NOT NULL,
    blks_read           bigint NOT NULL,
    deadlocks           bigint NOT NULL,
    temp_bytes          bigint NOT NULL,
    stats_reset         timestamptz
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_database_stats_default PARTITION OF booking_admin.history_database_stats DEFAULT;
CREATE INDEX history_database_stats_at_idx ON booking_admin.history_database_stats_default (captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_database_stats_default', '');

-- Every user table and index (and its use) at each space capture.
CREATE TABLE booking_admin.history_relation_stats (
    captured_at   timestamptz NOT NULL,
    relid         oid NOT NULL,
    schema_name   name NOT NULL,
    relation_name name NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('table', 'index')),
    table_name    name NOT NULL,
    total_bytes   bigint NOT NULL,
    row_estimate  bigint NOT NULL,
    seq_scan      bigint,
    idx_scan      bigint,
    n_tup_ins     bigint,
    n_tup_upd     bigint,
    n_tup_del     bigint,
    n_dead_tup    bigint
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_relation_stats_default PARTITION OF booking_admin.history_relation_stats DEFAULT;
CREATE INDEX history_relation_stats_relid_idx ON booking_admin.history_relation_stats_default (relid, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_relation_stats_default', '');

-- Every sequence at each space capture, with the largest value its column can hold.
CREATE TABLE booking_admin.history_sequence_stats (
    captured_at   timestamptz NOT NULL,
    sequence_name text NOT NULL,
    column_name   text,
    last_value    bigint,
    max_value     bigint NOT NULL
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_sequence_stats_default PARTITION OF booking_admin.history_sequence_stats DEFAULT;
CREATE INDEX history_sequence_stats_name_idx ON booking_admin.history_sequence_stats_default (sequence_name, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_sequence_stats_default', '');

INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description) VALUES
    ('booking_admin.history_query_stats', 'captured_at', 'day', 7, '14 days', 'Query statistics over time (pg_stat_statements deltas)'),
    ('booking_admin.history_database_stats', 'captured_at', 'day', 7, '30 days', 'Database size, sessions by state, transaction counters'),
    ('booking_admin.history_relation_stats', 'captured_at', 'day', 7, '30 days', 'Table and index sizes and use'),
    ('booking_admin.history_sequence_stats', 'captured_at', 'day', 7, '30 days', 'Sequence headroom');

-- The sequences of this database, each with the largest value it may still hand out: its own
-- maximum, or less when the column it feeds is smaller (an integer column on a bigint sequence
-- fails at 2147483647, as PgHero warns).
CREATE FUNCTION booking_admin.sequence_headroom()
RETURNS TABLE (sequence_name text, column_name text, last_value bigint, max_value bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%I.%I', s.schemaname, s.sequencename), col.name, s.last_value,
           least(s.max_value, coalesce(col.type_max, s.max_value))
    FROM pg_sequences s
    LEFT JOIN LATERAL (
        SELECT format('%s.%I', d.refobjid::regclass, a.attname) AS name,
               CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 END AS type_max
        FROM pg_depend d
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LIMIT 1) col ON true
    WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
$$;

-- One capture: query deltas and the database row always, relations and sequences when the
-- last space capture is older than p_space_every. Returns the rows written.
CREATE FUNCTION booking_admin.capture_history(p_space_every interval DEFAULT '1 hour') RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    v_schema name;
    v_first boolean;
    v_reset boolean := false;
    n integer := 0;
    m integer;
BEGIN
    SELECT ns.nspname INTO v_schema
    FROM pg_extension e JOIN pg_namespace ns ON ns.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements';
    IF v_schema IS NOT NULL THEN
        v_first := NOT EXISTS (SELECT 1 FROM booking_admin.history_query_state);
        -- A reset since the last capture: the counters start again from zero.
        EXECUTE format('SELECT coalesce((SELECT stats_reset FROM %I.pg_stat_statements_info) > (SELECT max(captured_at) FROM booking_admin.history_query_state), false)',
                       v_schema) INTO v_reset;
        EXECUTE format($q$
            WITH cur AS (
                SELECT s.userid, s.queryid, s.toplevel, s.query, s.calls, s.total_exec_time AS total_ms, s.rows,
                       s.shared_blks_hit AS blks_hit, s.shared_blks_read AS blks_read
                FROM %I.pg_stat_statements s
                WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NOT NULL
            ), d AS (
                -- A counter that went down was reset: all of it is new.
                SELECT c.*,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.calls ELSE c.calls - p.calls END AS d_calls,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.total_ms ELSE c.total_ms - p.total_ms END AS d_ms,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.rows ELSE c.rows - p.rows END AS d_rows,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.blks_hit ELSE c.blks_hit - p.blks_hit END AS d_hit,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.blks_read ELSE c.blks_read - p.blks_read END AS d_read
                FROM cur c LEFT JOIN booking_admin.history_query_state p USING (userid, queryid, toplevel)
            ), rows_in AS (
                INSERT INTO booking_admin.history_query_stats (captured_at, queryid, role_name, toplevel, calls, total_ms, rows,
                                                               shared_blks_hit, shared_blks_read)
                SELECT $1, d.queryid, pg_get_userbyid(d.userid), d.toplevel, d.d_calls, d.d_ms, d.d_rows, d.d_hit, d.d_read
                FROM d WHERE d.d_calls > 0 AND NOT $3
                RETURNING 1
            ), texts AS (
                INSERT INTO booking_admin.history_query_texts AS t (queryid, query, last_seen_at)
                SELECT DISTINCT ON (d.queryid) d.queryid, d.query, $1 FROM d WHERE d.d_calls > 0 AND NOT $3
                ORDER BY d.queryid
                ON CONFLICT (queryid) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
            ), state AS (
                INSERT INTO booking_admin.history_query_state AS s (userid, queryid, toplevel, calls, total_ms, rows, blks_hit,
                                                                  blks_read, captured_at)
                SELECT c.userid, c.queryid, c.toplevel, c.calls, c.total_ms, c.rows, c.blks_hit, c.blks_read, $1 FROM cur c
                ON CONFLICT (userid, queryid, toplevel) DO UPDATE SET
                    calls = EXCLUDED.calls, total_ms = EXCLUDED.total_ms, rows = EXCLUDED.rows, blks_hit = EXCLUDED.blks_hit,
                    blks_read = EXCLUDED.blks_read, captured_at = EXCLUDED.captured_at
            )
            SELECT count(*)::int FROM rows_in$q$, v_schema) INTO m USING v_at, v_reset, v_first;
        n := n + m;
        -- Entries pg_stat_statements evicted since, and texts no capture has seen for a month.
        DELETE FROM booking_admin.history_query_state WHERE captured_at < v_at;
        DELETE FROM booking_admin.history_query_texts WHERE last_seen_at < v_at - interval '31 days';
    END IF;
    INSERT INTO booking_admin.history_database_stats (captured_at, database_bytes, connections, total_connections,
        max_connections, waiting_on_locks, xact_commit, xact_rollback, blks_hit, blks_read, deadlocks, temp_bytes, stats_reset)
    SELECT v_at, pg_database_size(d.datid),
           coalesce((SELECT jsonb_object_agg(k, c) FROM (SELECT coalesce(a.state, 'unknown') AS k, count(*) AS c
                                                        FROM pg_stat_activity a WHERE a.backend_type = 'client backend'
                                                        GROUP BY 1) x), '{}'),
           (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend'),
           current_setting('max_connections')::int,
           (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.wait_event_type = 'Lock'),
           d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.deadlocks, d.temp_bytes, d.stats_reset
    FROM pg_stat_database d WHERE d.datname = current_database();
    n := n + 1;
    IF NOT EXISTS (SELECT 1 FROM booking_admin.history_relation_stats WHERE captured_at > v_at - p_space_every) THEN
        INSERT INTO booking_admin.history_relation_stats (captured_at, relid, schema_name, relation_name, kind, table_name,
            total_bytes, row_estimate, seq_scan, idx_scan, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup)
        SELECT v_at, s.relid, s.schemaname, s.relname, 'table', s.relname, pg_total_relation_size(s.relid),
               greatest(c.reltuples, 0)::bigint, s.seq_scan, s.idx_scan, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_dead_tup
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        UNION ALL
        SELECT v_at, i.indexrelid, i.schemaname, i.indexrelname, 'index', i.relname, pg_relation_size(i.indexrelid),
               greatest(c.reltuples, 0)::bigint, NULL, i.idx_scan, NULL, NULL, NULL, NULL
        FROM pg_stat_user_indexes i JOIN pg_class c ON c.oid = i.indexrelid;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
        INSERT INTO booking_admin.history_sequence_stats (captured_at, sequence_name, column_name, last_value, max_value)
        SELECT v_at, h.sequence_name, h.column_name, h.last_value, h.max_value FROM booking_admin.sequence_headroom() h;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    RETURN n;
END $$;

CREATE FUNCTION booking_admin.op_capture_history(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.capture_history(make_interval(mins => coalesce((p_settings ->> 'space_every_minutes')::int, 60)))
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('capture-history', 'Keep query statistics, database size and sessions (and hourly, relation sizes and sequences) over time',
     'booking_admin.op_capture_history', '{"space_every_minutes": 60}', 300000, 3, 60000);

-- The DBA's questions ---------------------------------------------------------------------------

-- The queries that took the most time over the last p_window, with their share of the window's
-- total, and their trend: the time they took in the window before it (same length) and the
-- ratio of the two (NULL when they did not run then). The hourly series is for charts.
CREATE FUNCTION booking_admin.top_queries(p_window interval DEFAULT '1 day', p_limit integer DEFAULT 10)
RETURNS TABLE (queryid bigint, query text, calls bigint, total_ms float8, mean_ms float8, share numeric, rows bigint,
               cache_hit_ratio numeric, previous_total_ms float8, trend numeric, hourly jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_to timestamptz := clock_timestamp();
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'the window must be positive and the limit between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH w AS (
        SELECT h.queryid, sum(h.calls)::bigint AS calls, sum(h.total_ms) AS total_ms, sum(h.rows)::bigint AS rows,
               sum(h.shared_blks_hit) AS hit, sum(h.shared_blks_read) AS rd
        FROM booking_admin.history_query_stats h
        WHERE h.captured_at > v_to - p_window AND h.captured_at <= v_to
        GROUP BY h.queryid
    ), prev AS (
        SELECT h.queryid, sum(h.total_ms) AS total_ms
        FROM booking_admin.history_query_stats h
        WHERE h.captured_at > v_to - 2 * p_window AND h.captured_at <= v_to - p_window
        GROUP BY h.queryid
    ), top AS (
        SELECT w.*, w.total_ms / nullif(sum(w.total_ms) OVER (), 0) AS share FROM w ORDER BY w.total_ms DESC, w.queryid LIMIT p_limit
    )
    SELECT top.queryid, t.query, top.calls, top.total_ms, top.total_ms / nullif(top.calls, 0),
           round(top.share::numeric, 4), top.rows,
           round((top.hit / nullif(top.hit + top.rd, 0))::numeric, 4),
           prev.total_ms, round((top.total_ms / nullif(prev.total_ms, 0))::numeric, 2),
           (SELECT jsonb_agg(jsonb_build_array(x.hour, round(x.ms::numeric, 3)) ORDER BY x.hour)
            FROM (SELECT date_trunc('hour', h.captured_at) AS hour, sum(h.total_ms) AS ms
                  FROM booking_admin.history_query_stats h
                  WHERE h.queryid = top.queryid AND h.captured_at > v_to - p_window AND h.captured_at <= v_to
                  GROUP BY 1) x)
    FROM top
    LEFT JOIN prev ON prev.queryid = top.queryid
    LEFT JOIN booking_admin.history_query_texts t ON t.queryid = top.queryid
    ORDER BY top.total_ms DESC, top.queryid;
END $$;

-- The relations that grew the most between the first and the last space capture of the window.
CREATE FUNCTION booking_admin.growing_relations(p_window interval DEFAULT '7 days', p_limit integer DEFAULT 10)
RETURNS TABLE (schema_name name, relation_name name, kind text, table_name name, bytes_then bigint, bytes_now bigint,
               growth_bytes bigint, growth_bytes_per_day bigint, rows_then bigint, rows_now bigint,
               observed_from timestamptz, observed_to timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'the window must be positive and the limit between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH r AS (
        SELECT h.relid, h.schema_name, h.relation_name, h.kind, h.table_name,
               first_value(h.total_bytes) OVER w AS b0, last_value(h.total_bytes) OVER w AS b1,
               first_value(h.row_estimate) OVER w AS r0, last_value(h.row_estimate) OVER w AS r1,
               first_value(h.captured_at) OVER w AS t0, last_value(h.captured_at) OVER w AS t1,
               row_number() OVER (PARTITION BY h.relid ORDER BY h.captured_at DESC) AS latest
        FROM booking_admin.history_relation_stats h
        WHERE h.captured_at > clock_timestamp() - p_window
        WINDOW w AS (PARTITION BY h.relid ORDER BY h.captured_at ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    )
    SELECT r.schema_name, r.relation_name, r.kind, r.table_name, r.b0, r.b1, r.b1 - r.b0,
           CASE WHEN r.t1 > r.t0 THEN ((r.b1 - r.b0) / (extract(epoch FROM r.t1 - r.t0) / 86400))::bigint END,
           r.r0, r.r1, r.t0, r.t1
    FROM r WHERE r.latest = 1
    ORDER BY r.b1 - r.b0 DESC, r.b1 DESC, r.relation_name
    LIMIT p_limit;
END $$;

-- Sequences that have used more than p_threshold of what they may hand out, with their pace
-- over the last week of captures and the days left at that pace.
CREATE FUNCTION booking_admin.sequences_near_exhaustion(p_threshold numeric DEFAULT 0.5)
RETURNS TABLE (sequence_name text, column_name text, last_value bigint, max_value bigint, used_ratio numeric,
               per_day numeric, days_left numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_threshold IS NULL OR p_threshold NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'the threshold is a share between 0 and 1' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH pace AS (
        SELECT h.sequence_name,
               (max(h.last_value) - min(h.last_value))::numeric
                   / nullif(extract(epoch FROM max(h.captured_at) - min(h.captured_at)) / 86400, 0) AS per_day
        FROM booking_admin.history_sequence_stats h
        WHERE h.captured_at > clock_timestamp() - interval '7 days'
        GROUP BY h.sequence_name
    )
    SELECT s.sequence_name, s.column_name, s.last_value, s.max_value,
           round(coalesce(s.last_value, 0)::numeric / s.max_value, 4), round(p.per_day, 1),
           round((s.max_value - coalesce(s.last_value, 0)) / nullif(p.per_day, 0), 1)
    FROM booking_admin.sequence_headroom() s
    LEFT JOIN pace p ON p.sequence_name = s.sequence_name
    WHERE coalesce(s.last_value, 0)::numeric / s.max_value >= p_threshold
    ORDER BY coalesce(s.last_value, 0)::numeric / s.max_value DESC, s.sequence_name;
END $$;

-- Indexes no scan used during the window (the sum of the increases of idx_scan between space
-- captures; a counter that went down was reset), with the span they were observed over (from
-- their first to their last capture in the window: judge "unused" by it). Unique and primary
-- key indexes are left out: they enforce something.
CREATE FUNCTION booking_admin.unused_indexes(p_window interval DEFAULT '7 days')
RETURNS TABLE (schema_name name, table_name name, index_name name, index_bytes bigint, scans bigint,
               observed_from timestamptz, observed_to timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' THEN
        RAISE EXCEPTION 'the window must be positive' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH s AS (
        SELECT h.relid, h.schema_name, h.table_name, h.relation_name, h.total_bytes, h.captured_at, h.idx_scan,
               lag(h.idx_scan) OVER (PARTITION BY h.relid ORDER BY h.captured_at) AS prev
        FROM booking_admin.history_relation_stats h
        WHERE h.kind = 'index' AND h.captured_at > clock_timestamp() - p_window
    ), u AS (
        SELECT s.relid, max(s.schema_name)::name AS schema_name, max(s.table_name)::name AS table_name,
               max(s.relation_name)::name AS index_name, (array_agg(s.total_bytes ORDER BY s.captured_at DESC))[1] AS bytes,
               sum(CASE WHEN s.prev IS NULL THEN 0 WHEN s.idx_scan >= s.prev THEN s.idx_scan - s.prev ELSE s.idx_scan END)::bigint AS scans,
               min(s.captured_at) AS t0, max(s.captured_at) AS t1
        FROM s GROUP BY s.relid
    )
    SELECT u.schema_name, u.table_name, u.index_name, u.bytes, u.scans, u.t0, u.t1
    FROM u JOIN pg_index i ON i.indexrelid = u.relid
    WHERE u.scans = 0 AND NOT i.indisunique AND NOT i.indisprimary AND u.t1 > u.t0
    ORDER BY u.bytes DESC, u.schema_name, u.table_name, u.index_name;
END $$;

-- Indexes another index of the same table makes redundant (booking_admin.get_index_stats's
-- rule), with both definitions and what dropping this one saves.
CREATE FUNCTION booking_admin.duplicate_indexes()
RETURNS TABLE (schema_name name, table_name name, index_name name, duplicate_of name, index_bytes bigint,
               definition text, kept_definition text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.schema_name, s.table_name, s.index_name, s.duplicate_of, s.index_bytes,
           pg_get_indexdef(format('%I.%I', s.schema_name, s.index_name)::regclass),
           pg_get_indexdef(format('%I.%I', s.schema_name, s.duplicate_of)::regclass)
    FROM booking_admin.get_index_stats() s
    WHERE s.duplicate_of IS NOT NULL
    ORDER BY s.index_bytes DESC, s.schema_name, s.table_name, s.index_name
$$;

-- Who blocks whom now: every session waiting for a lock and every session it waits for, as a
-- tree from the sessions that block without waiting (root_pid, depth, path).
CREATE FUNCTION booking_admin.blocking_tree()
RETURNS TABLE (pid integer, blocked_by integer[], root_pid integer, depth integer, path integer[], usename name,
               application_name text, state text, wait_event_type text, wait_event text, xact_age interval,
               query_age interval, query text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE a AS (
        SELECT s.pid, pg_blocking_pids(s.pid) AS blocked_by, s.usename, s.application_name, s.state, s.wait_event_type,
               s.wait_event, clock_timestamp() - s.xact_start AS xact_age, clock_timestamp() - s.query_start AS query_age,
               left(s.query, 500) AS query
        FROM pg_stat_activity s WHERE s.pid <> pg_backend_pid()
    ), involved AS (
        SELECT * FROM a
        WHERE cardinality(a.blocked_by) > 0 OR a.pid IN (SELECT unnest(b.blocked_by) FROM a b)
    ), tree AS (
        SELECT i.pid, i.pid AS root_pid, 0 AS depth, ARRAY[i.pid] AS path FROM involved i WHERE cardinality(i.blocked_by) = 0
        UNION ALL
        SELECT i.pid, t.root_pid, t.depth + 1, t.path || i.pid
        FROM tree t JOIN involved i ON t.pid = ANY (i.blocked_by)
        WHERE NOT i.pid = ANY (t.path) AND t.depth < 50
    )
    SELECT i.pid, i.blocked_by, t.root_pid, t.depth, t.path, i.usename, i.application_name, i.state, i.wait_event_type,
           i.wait_event, i.xact_age, i.query_age, i.query
    FROM tree t JOIN involved i ON i.pid = t.pid
    ORDER BY t.root_pid, t.path
$$;

-- The database's size and sessions over the window, one row per capture (charts).
CREATE FUNCTION booking_admin.database_history(p_window interval DEFAULT '1 day')
RETURNS TABLE (captured_at timestamptz, database_bytes bigint, connections jsonb, total_connections integer,
               waiting_on_locks integer, commits bigint, rollbacks bigint, cache_hit_ratio numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT h.captured_at, h.database_bytes, h.connections, h.total_connections, h.waiting_on_locks,
           CASE WHEN lag(h.xact_commit) OVER w <= h.xact_commit THEN h.xact_commit - lag(h.xact_commit) OVER w END,
           CASE WHEN lag(h.xact_rollback) OVER w <= h.xact_rollback THEN h.xact_rollback - lag(h.xact_rollback) OVER w END,
           CASE WHEN lag(h.blks_hit) OVER w <= h.blks_hit AND lag(h.blks_read) OVER w <= h.blks_read
                THEN round(((h.blks_hit - lag(h.blks_hit) OVER w)::numeric
                            / nullif(h.blks_hit - lag(h.blks_hit) OVER w + h.blks_read - lag(h.blks_read) OVER w, 0)), 4) END
    FROM booking_admin.history_database_stats h
    WHERE h.captured_at > clock_timestamp() - p_window
    WINDOW w AS (ORDER BY h.captured_at)
    ORDER BY h.captured_at
$$;

-- Deliveries and their attempts (new in this version: nothing to keep), created partitioned.
ALTER EXTENSION booking_engine DROP TABLE booking_admin.delivery_attempts;
ALTER EXTENSION booking_engine DROP TABLE booking_admin.deliveries;
DROP TABLE booking_admin.delivery_attempts, booking_admin.deliveries;
DROP FUNCTION booking_admin.op_cleanup_deliveries(jsonb);
DELETE FROM booking_admin.scheduler_job_info WHERE job_name = 'cleanup-deliveries';
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
    updated_at       timestamptz NOT NULL DEFAULT now()
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
    -- delivered, retry, dead, gone (410: endpoint disabled), interrupted (the worker stopped).
    outcome          text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'gone', 'interrupted'))
) PARTITION BY RANGE (started_at);
CREATE TABLE booking_admin.delivery_attempts_default PARTITION OF booking_admin.delivery_attempts (
    CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id)
) DEFAULT;
CREATE INDEX delivery_attempts_delivery_idx ON booking_admin.delivery_attempts_default (delivery_id);
CREATE INDEX delivery_attempts_endpoint_started_idx ON booking_admin.delivery_attempts_default (endpoint_id, started_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_attempts_default', '');
-- Weekly partitions, dropped 30 days after their week once none of their deliveries is still
-- to be sent; the ledger's weeks go with them.
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, keep_while,
                                              description) VALUES
    ('booking_admin.deliveries', 'created_at', 'week', 4, '30 days', 'status IN (''pending'', ''sending'')',
     'Webhook, Slack and email deliveries'),
    ('booking_admin.delivery_attempts', 'started_at', 'week', 4, '30 days', NULL, 'The delivery attempts ledger');
GRANT SELECT ON booking_admin.deliveries, booking_admin.delivery_attempts TO booking_operator;

-- The extension's own rates over time, partitioned by day (new in this version: created again).
ALTER EXTENSION booking_engine DROP TABLE booking_admin.metrics_history;
DROP TABLE booking_admin.metrics_history;
CREATE TABLE booking_admin.metrics_history (
    at     timestamptz NOT NULL,
    metric text NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}',
    value  float8 NOT NULL
) PARTITION BY RANGE (at);
CREATE TABLE booking_admin.metrics_history_default PARTITION OF booking_admin.metrics_history DEFAULT;
CREATE INDEX metrics_history_metric_at_idx ON booking_admin.metrics_history_default (metric, at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.metrics_history_default', '');
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking_admin.metrics_history', 'at', 'day', 7, '8 days', 'The extension''s own rates (metrics-snapshot)');
GRANT SELECT ON booking_admin.metrics_history TO booking_operator;
CREATE OR REPLACE FUNCTION booking_admin.op_snapshot_metrics(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    n integer;
BEGIN
    INSERT INTO booking_admin.metrics_history (at, metric, labels, value)
    SELECT v_at, m.metric, m.labels, m.value FROM booking_admin.metrics() m
    WHERE m.metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket',
                       'booking_jobs_processed_total', 'booking_delivery_attempts_total', 'booking_deliveries',
                       'booking_waitlist_conversion_ratio')
    UNION ALL
    SELECT v_at, 'health', jsonb_build_object('status', booking_admin.health() ->> 'status'), 1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
UPDATE booking_admin.scheduler_job_info
SET description = 'Keep booking, job and delivery counters, slot latency, the delivery backlog and health over time',
    settings = '{}'
WHERE job_name = 'metrics-snapshot';
-- The default alert rules. Inserted on request (existing names are
-- left as they are); returns how many were added.
CREATE OR REPLACE FUNCTION booking_admin.init_default_alert_rules() RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    WITH added AS (
        INSERT INTO booking_admin.alert_rules (name, severity, condition_sql, metric, operator, threshold,
                                               for_duration, annotations) VALUES
        ('dead_letters_present', 'high',
         'SELECT handler, count(*) AS value FROM booking_admin.jobs WHERE status = ''dead'' GROUP BY handler',
         NULL, NULL, NULL, '0', '{"summary": "{{ $value }} dead {{ $labels.handler }} jobs"}'),
        ('job_queue_backlog', 'high',
         'SELECT extract(epoch FROM clock_timestamp() - min(scheduled_at)) AS value FROM booking_admin.jobs
          WHERE status IN (''pending'', ''failed'') AND scheduled_at <= clock_timestamp()
          HAVING min(scheduled_at) < clock_timestamp() - interval ''5 minutes''',
         NULL, NULL, NULL, '2 minutes', '{"summary": "the oldest due job waits for {{ $value }} s"}'),
        ('delivery_backlog', 'medium',
         'SELECT count(*) AS value FROM booking.events WHERE dispatched_at IS NULL
          HAVING min(created_at) < clock_timestamp() - interval ''10 minutes''',
         NULL, NULL, NULL, '5 minutes', '{"summary": "{{ $value }} events wait for delivery"}'),
        ('booking_refusals_high', 'medium',
         'SELECT count(*) FILTER (WHERE status = ''failed'')::float8 / count(*) AS value FROM booking.booking_operations
          WHERE created_at > clock_timestamp() - interval ''15 minutes'' HAVING count(*) >= 20
             AND count(*) FILTER (WHERE status = ''failed'') > 0.5 * count(*)',
         NULL, NULL, NULL, '10 minutes', '{"summary": "{{ $value }} of recent booking operations were refused"}'),
        ('connection_saturation', 'critical',
         'SELECT count(*)::float8 / current_setting(''max_connections'')::float8 AS value FROM pg_stat_activity
          WHERE backend_type = ''client backend''
          HAVING count(*) > 0.9 * current_setting(''max_connections'')::int',
         NULL, NULL, NULL, '2 minutes', '{"summary": "{{ $value }} of max_connections in use"}'),
        ('cache_hit_ratio_low', 'low', NULL, 'booking_pg_cache_hit_ratio', '<', 0.9, '30 minutes',
         '{"summary": "cache hit ratio {{ $value }}"}'),
        ('long_transaction', 'medium', NULL, 'booking_pg_longest_transaction_seconds', '>', 600, '0',
         '{"summary": "a transaction has been open for {{ $value }} s"}'),
        ('critical_security_violations', 'critical', NULL, 'booking_security_violations_open', '>', 0, '0',
         '{"summary": "{{ $value }} open {{ $labels.severity }} security violations"}'),
        ('metrics_dropped', 'low', NULL, 'booking_metrics_dropped_total', '>', 0, '0',
         '{"summary": "{{ $labels.metric }} reached its series cap"}'),
        ('host_cpu_high', 'high', NULL, 'booking_host_cpu_usage_ratio', '>', 0.8, '5 minutes',
         '{"summary": "the server''s CPU has been {{ $value }} busy for 5 minutes"}'),
        ('host_memory_high', 'high', NULL, 'booking_host_memory_used_ratio', '>', 0.9, '5 minutes',
         '{"summary": "{{ $value }} of the server''s memory is in use"}'),
        ('host_disk_high', 'critical', NULL, 'booking_host_disk_used_ratio', '>', 0.9, '0',
         '{"summary": "the file system of the data directory is {{ $value }} full"}')
        ON CONFLICT (name) DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::int FROM added
$$;
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
-- What the dashboard page shows beside the metrics: today's bookings and refusals (since
-- midnight in the session's time zone, by when they were made), backlogs, open violations, the
-- health report, the waitlist's conversion over 30 days.
CREATE OR REPLACE FUNCTION booking_admin.dashboard_data() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        'generated_at', clock_timestamp(),
        'health', booking_admin.health(),
        'health_score', booking_admin.performance_summary() -> 'health_score',
        'bookings_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.operation_type = 'create' AND o.status = 'completed'
                             AND o.created_at >= date_trunc('day', now())),
        'refusals_today', (SELECT count(*) FROM booking.booking_operations o
                           WHERE o.status = 'failed' AND o.created_at >= date_trunc('day', now())),
        'jobs', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
                    (SELECT status, count(*) n FROM booking_admin.jobs GROUP BY status) j),
        'undispatched_events', (SELECT count(*) FROM booking.events WHERE dispatched_at IS NULL),
        'violations', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM
                    (SELECT severity, count(*) n FROM booking_admin.security_violations
                     WHERE status <> 'resolved' GROUP BY severity) v),
        'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', a.rule_name, 'severity', a.severity,
                        'started_at', a.started_at, 'fingerprint', a.fingerprint,
                        'acknowledged', a.acknowledged_at IS NOT NULL) ORDER BY a.started_at), '[]')
                   FROM booking_admin.alert_instances a WHERE a.state = 'firing'),
        'cache_hit_ratio', (SELECT round(coalesce(blks_hit::numeric / nullif(blks_hit + blks_read, 0), 1), 4)
                            FROM pg_stat_database WHERE datname = current_database()),
        'waitlist_conversion', (booking_admin.waitlist_conversion('30 days') ->> 'conversion_rate')::numeric)
$$;
-- The dashboard's charts over the last p_window, hour by hour (UTC hours; "hours" are their
-- starts, in epoch seconds): from the extension's own rates (metrics_history, the increases of
-- its counters between snapshots, a counter that went down or a series that appeared counting
-- from zero) bookings and refusals, the slot queries' latency buckets (cumulative counts per
-- upper bound, for percentiles), job attempts and delivery attempts by outcome, the delivery
-- backlog (the most pending deliveries seen in the hour); from the health history the
-- database's size (the hour's last capture); and the top queries of the window with their time
-- per hour. Each series has one value per hour (NULL: no snapshot that hour).
CREATE FUNCTION booking_admin.dashboard_series(p_window interval DEFAULT '1 day') RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Small data, and estimates of set-returning functions high enough to make JIT compile for
-- most of a second: the page is served under booking_engine.metrics_sql_timeout_ms.
SET jit = off
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_to timestamptz := date_trunc('hour', clock_timestamp()) + interval '1 hour';
    v_from timestamptz;
    v jsonb;
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_window > interval '31 days' THEN
        RAISE EXCEPTION 'the window is positive and at most 31 days' USING ERRCODE = '22023';
    END IF;
    v_from := v_to - date_trunc('hour', p_window + interval '59 minutes');
    WITH hours AS (
        SELECT h FROM generate_series(v_from, v_to - interval '1 hour', interval '1 hour') h
    ), s AS (
        SELECT m.at, m.metric, m.labels, m.value,
               lag(m.value) OVER (PARTITION BY m.metric, m.labels ORDER BY m.at) AS prev,
               min(m.at) OVER () AS first_at
        FROM booking_admin.metrics_history m
        WHERE m.at >= v_from - interval '1 hour' AND m.at < v_to
          AND m.metric IN ('booking_operations_total', 'booking_slot_query_duration_seconds_bucket',
                           'booking_jobs_processed_total', 'booking_delivery_attempts_total', 'booking_deliveries')
    ), d AS (
        SELECT date_trunc('hour', s.at) AS h, s.metric, s.labels, s.value,
               -- A series first seen after the first snapshot read is a counter that began since
               -- (the worker creates a series at its first count): it counts from zero.
               CASE WHEN s.prev IS NULL AND s.at = s.first_at THEN NULL WHEN s.prev IS NULL THEN s.value
                    WHEN s.value >= s.prev THEN s.value - s.prev ELSE s.value END AS delta
        FROM s WHERE s.at >= v_from
    ), per_hour AS (
        SELECT d.h,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_operations_total' AND d.labels ->> 'operation' = 'create'
                                    AND d.labels ->> 'outcome' = 'succeeded') AS bookings,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_operations_total' AND d.labels ->> 'outcome' = 'refused') AS refusals,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_jobs_processed_total' AND d.labels ->> 'outcome' = 'completed') AS jobs_completed,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_jobs_processed_total' AND d.labels ->> 'outcome' IN ('failed', 'dead')) AS jobs_failed,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_delivery_attempts_total' AND d.labels ->> 'outcome' = 'delivered') AS delivered,
               sum(d.delta) FILTER (WHERE d.metric = 'booking_delivery_attempts_total' AND d.labels ->> 'outcome' <> 'delivered') AS delivery_failures,
               max(d.value) FILTER (WHERE d.metric = 'booking_deliveries' AND d.labels ->> 'status' = 'pending') AS backlog,
               bool_or(true) AS snapshot
        FROM d GROUP BY d.h
    ), latency AS (
        SELECT x.h, jsonb_agg(jsonb_build_array(x.le, x.n) ORDER BY x.le_num) AS buckets
        FROM (SELECT d.h, d.labels ->> 'le' AS le,
                     CASE WHEN d.labels ->> 'le' = '+Inf' THEN 'infinity'::float8 ELSE (d.labels ->> 'le')::float8 END AS le_num,
                     sum(d.delta) AS n
              FROM d WHERE d.metric = 'booking_slot_query_duration_seconds_bucket' AND d.delta IS NOT NULL
              GROUP BY 1, 2, 3) x
        GROUP BY x.h
    ), size AS (
        SELECT DISTINCT ON (date_trunc('hour', h.captured_at)) date_trunc('hour', h.captured_at) AS h, h.database_bytes
        FROM booking_admin.history_database_stats h
        WHERE h.captured_at >= v_from AND h.captured_at < v_to
        ORDER BY date_trunc('hour', h.captured_at), h.captured_at DESC
    )
    SELECT jsonb_build_object(
        'window', p_window, 'from', v_from, 'to', v_to,
        'hours', jsonb_agg(extract(epoch FROM hours.h)::bigint ORDER BY hours.h),
        'bookings', jsonb_agg(p.bookings ORDER BY hours.h),
        'refusals', jsonb_agg(p.refusals ORDER BY hours.h),
        'jobs_completed', jsonb_agg(p.jobs_completed ORDER BY hours.h),
        'jobs_failed', jsonb_agg(p.jobs_failed ORDER BY hours.h),
        'delivered', jsonb_agg(p.delivered ORDER BY hours.h),
        'delivery_failures', jsonb_agg(p.delivery_failures ORDER BY hours.h),
        'delivery_backlog', jsonb_agg(p.backlog ORDER BY hours.h),
        'latency_buckets', jsonb_agg(l.buckets ORDER BY hours.h),
        'database_bytes', jsonb_agg(z.database_bytes ORDER BY hours.h))
    INTO v
    FROM hours
    LEFT JOIN per_hour p ON p.h = hours.h
    LEFT JOIN latency l ON l.h = hours.h
    LEFT JOIN size z ON z.h = hours.h;
    RETURN v || jsonb_build_object('top_queries', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'queryid', q.queryid, 'query', left(q.query, 200), 'calls', q.calls, 'total_ms', round(q.total_ms::numeric, 1),
                   'mean_ms', round(q.mean_ms::numeric, 3), 'trend', q.trend,
                   'hourly', (SELECT jsonb_agg((SELECT (e ->> 1)::float8 FROM jsonb_array_elements(q.hourly) e
                                                WHERE (e ->> 0)::timestamptz = hh.h) ORDER BY hh.h)
                              FROM generate_series(v_from, v_to - interval '1 hour', interval '1 hour') hh(h)))
               ORDER BY q.total_ms DESC)
        FROM booking_admin.top_queries(p_window, 5) q), '[]'));
END $$;
GRANT EXECUTE ON FUNCTION booking_admin.dashboard_series(interval) TO booking_operator;

-- A booked waitlist offer converts its entry.
-- Books an appointment within one tenant (the implementation of booking.create_tenant_booking
-- and, with p_tenant_id NULL, of booking.create_booking_idempotent; sql/api.sql). p_booking:
-- {customer_id, staff_id, service_id, starts_at, ends_at?, price?, notes?, status? ('pending' |
-- 'confirmed')}. ends_at and price default to the service's; only the tenant's people other than
-- receptionists may set others. status defaults to 'confirmed' when the tenant's people book,
-- and to the tenant's customer_booking_status (confirmed unless the tenant wants to confirm
-- bookings itself) when a customer books; a customer asking for 'confirmed' where the tenant
-- confirms itself is refused. Every row it reads or writes is the tenant's, looked up by the
-- tenant too, so that on Citus the call runs entirely on the worker holding the tenant. A
-- service, staff member or customer of another tenant does not exist here (PT404). p_tenant_id
-- NULL: the service's tenant.
CREATE OR REPLACE FUNCTION booking_internal.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_staff booking.staff;
    v_service booking.services;
    v_customer booking.customers;
    v_starts timestamptz;
    v_ends timestamptz;
    v_price numeric;
    v_status text := p_booking ->> 'status';
    -- The caller's role in the service's tenant (NULL: a customer or an anonymous caller).
    v_role text;
    v_request jsonb;
    v_op uuid;
    v_replay jsonb;
    v_check jsonb;
    v_appt booking.appointments;
    v_missing text;
BEGIN
    IF p_booking IS NULL OR jsonb_typeof(p_booking) <> 'object' THEN
        RAISE EXCEPTION 'p_booking must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT f INTO v_missing FROM unnest(ARRAY['customer_id', 'staff_id', 'service_id', 'starts_at']) f
    WHERE p_booking ->> f IS NULL LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_booking.% is required', v_missing USING ERRCODE = '22023';
    END IF;
    IF v_status IS NOT NULL AND v_status NOT IN ('pending', 'confirmed') THEN
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
    v_ends := coalesce((p_booking ->> 'ends_at')::timestamptz, v_starts + make_interval(mins => v_service.duration_minutes));
    IF NOT isfinite(v_starts) OR NOT isfinite(v_ends) THEN
        RAISE EXCEPTION 'starts_at and ends_at must be finite' USING ERRCODE = '22008';
    END IF;
    IF v_ends <= v_starts THEN
        RAISE EXCEPTION 'ends_at must be after starts_at' USING ERRCODE = '22023';
    END IF;
    v_price := coalesce((p_booking ->> 'price')::numeric, v_service.price);
    IF v_price < 0 THEN
        RAISE EXCEPTION 'price must not be negative' USING ERRCODE = '22023';
    END IF;
    -- Length and price are the service's for customers, anonymous callers and receptionists:
    -- only the tenant's other people may book a different end or price. A mismatch is refused,
    -- never ignored, so a client learns its request was not what it will get.
    IF v_ends <> v_starts + make_interval(mins => v_service.duration_minutes) AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('ends_at must be starts_at + the service''s %s minutes; only the tenant''s staff may set another end',
                                      v_service.duration_minutes));
    END IF;
    IF v_price <> v_service.price AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('price must be the service''s price %s; only the tenant''s staff may set another price',
                                      v_service.price));
    END IF;
    -- A booking the tenant's people make is confirmed unless they say otherwise; a customer's
    -- starts as the tenant says (customer_booking_status), and a customer may not confirm what
    -- the tenant wants to confirm itself.
    IF v_role IS NULL AND coalesce(v_status, 'confirmed') = 'confirmed' THEN
        IF (SELECT t.customer_booking_status FROM booking.tenants t WHERE t.id = v_service.tenant_id) = 'pending' THEN
            IF v_status = 'confirmed' THEN
                PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                                       'this tenant confirms bookings itself: a customer''s booking starts as pending');
            END IF;
            v_status := 'pending';
        END IF;
    END IF;
    v_status := coalesce(v_status, 'confirmed');

    -- The canonical request: the same booking however its JSON was spelled.
    v_request := jsonb_build_object(
        'customer_id', v_customer.id, 'staff_id', v_staff.id, 'service_id', v_service.id,
        'starts_at', to_char(v_starts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'ends_at', to_char(v_ends AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'price', trim_scale(v_price), 'notes', p_booking ->> 'notes', 'status', v_status);
    SELECT b.operation_id, b.replayed_result INTO v_op, v_replay
    FROM booking.begin_operation(v_service.tenant_id, p_idempotency_key, 'create', v_request, v_customer.id) b;
    IF v_replay IS NOT NULL THEN
        RETURN v_replay;
    END IF;

    -- The engine itself: what the caller may see was checked above.
    v_check := booking.tenant_slot_violations(v_service.tenant_id, v_staff.id, v_service.id, v_starts, v_ends);
    IF NOT (v_check ->> 'valid')::boolean THEN
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Appointment violates booking rules',
            'details', v_check -> 'violations', 'operation_id', v_op), NULL);
    END IF;

    -- Validation cannot see a booking another transaction is making right now; the exclusion
    -- constraint can, and decides who wins: ON CONFLICT waits for the other transaction and, if
    -- it committed an overlapping booking, inserts nothing (no subtransaction needed).
    INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, ends_at, status, price, notes)
    VALUES (v_service.tenant_id, v_staff.id, v_service.id, v_customer.id, v_starts, v_ends, v_status, v_price, p_booking ->> 'notes')
    ON CONFLICT ON CONSTRAINT appointments_no_double_booking DO NOTHING
    RETURNING * INTO v_appt;
    IF v_appt.id IS NULL THEN
        PERFORM booking.emit_event(v_service.tenant_id, 'conflict.detected', jsonb_build_object(
            'staff_id', v_staff.id, 'service_id', v_service.id, 'customer_id', v_customer.id,
            'starts_at', v_starts, 'ends_at', v_ends, 'operation_id', v_op));
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Time slot conflicts with another appointment',
            'details', jsonb_build_array(jsonb_build_object('code', 'conflict',
                'message', 'Time slot conflicts with another appointment')),
            'operation_id', v_op), NULL);
    END IF;
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
    RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;

-- Citus: the freeze calendar is the coordinator's, like the other booking_admin tables.
-- Distributes the schema as above; returns {"reference_tables", "distributed_tables",
-- "distributed_functions", "newly_distributed"}. Idempotent: what is already a Citus table is
-- left alone (functions are registered again, which Citus accepts). Errors: 0A000 where Citus is
-- not installed, 55000 on a node that is not the coordinator. Needs a superuser (Citus's own
-- functions do); not for PUBLIC.
CREATE OR REPLACE FUNCTION booking_admin.distribute_tables() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, booking_admin, pg_temp AS $$
DECLARE
    r record;
    v_is_coordinator boolean;
    v_exists boolean;
    v_new text[] := '{}';
    v_reference text[] := '{}';
    v_distributed text[] := '{}';
    v_functions text[] := '{}';
    v_attempt integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database: there is nothing to distribute'
            USING ERRCODE = '0A000',
                  HINT = 'On a Citus coordinator: CREATE EXTENSION citus, add the workers (citus_add_node), CREATE EXTENSION booking_engine, then call this.';
    END IF;
    -- Citus's catalog is read through EXECUTE: this function must compile without Citus too.
    EXECUTE 'SELECT citus_is_coordinator()' INTO v_is_coordinator;
    IF NOT v_is_coordinator THEN
        RAISE EXCEPTION 'booking_admin.distribute_tables() must run on the Citus coordinator' USING ERRCODE = '55000';
    END IF;
    -- Our triggers read and write only their own row's tenant (schema.sql), which is what Citus
    -- asks of a trigger on a distributed table before it allows one.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    -- Tables with foreign keys to a reference table are created in one transaction with it:
    -- Citus needs sequential shard access for that.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    -- Every table up front, in one order: the coordinator's scheduler may be reading some of
    -- them, and taking them one by one below could deadlock with it. A try that waits too
    -- long or deadlocks is rolled back (its locks released) and made again.
    FOR v_attempt IN 1..30 LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '2s', true);
            EXECUTE 'LOCK TABLE booking_admin.jobs, ' || (
                SELECT string_agg(l.object, ', ') FROM booking_admin.citus_layout() l WHERE l.kind <> 'function')
                || ' IN ACCESS EXCLUSIVE MODE';
            EXIT;
        EXCEPTION WHEN deadlock_detected OR lock_not_available THEN
            IF v_attempt = 30 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '0', true);
    -- The coordinator's local tables cannot keep a foreign key to a distributed table.
    ALTER TABLE booking_admin.jobs DROP CONSTRAINT IF EXISTS jobs_tenant_id_fkey;
    ALTER TABLE booking_admin.delivery_endpoints DROP CONSTRAINT IF EXISTS delivery_endpoints_tenant_id_fkey;
    ALTER TABLE booking_admin.message_templates DROP CONSTRAINT IF EXISTS message_templates_tenant_id_fkey;
    ALTER TABLE booking_admin.freeze_windows DROP CONSTRAINT IF EXISTS freeze_windows_tenant_id_fkey;
    -- Citus refuses row-level security policies with subqueries on distributed tables, and a
    -- policy's caller lookup would be a nested distributed query on the worker anyway. The
    -- read policies go; row-level security stays enabled, so these tables are readable only
    -- by their owner and BYPASSRLS roles (Supabase's service_role): applications read through
    -- the functions, which check their caller. Fails closed, never open.
    DROP POLICY IF EXISTS customers_read ON booking.customers;
    DROP POLICY IF EXISTS appointments_read ON booking.appointments;
    DROP POLICY IF EXISTS booking_operations_read ON booking.booking_operations;
    DROP POLICY IF EXISTS waitlist_read ON booking.waitlist;

    FOR r IN SELECT * FROM booking_admin.citus_layout() LOOP
        IF r.kind IN ('reference', 'distributed') THEN
            EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::regclass)'
                INTO v_exists USING r.object;
            IF NOT v_exists THEN
                IF r.kind = 'reference' THEN
                    EXECUTE format('SELECT create_reference_table(%L)', r.object);
                ELSIF r.object = 'booking.tenants' THEN
                    EXECUTE format('SELECT create_distributed_table(%L, %L)', r.object, r.distribution_argument);
                ELSE
                    EXECUTE format('SELECT create_distributed_table(%L, %L, colocate_with => %L)',
                                   r.object, r.distribution_argument, 'booking.tenants');
                END IF;
                v_new := v_new || r.object;
            END IF;
            IF r.kind = 'reference' THEN
                v_reference := v_reference || r.object;
            ELSE
                v_distributed := v_distributed || r.object;
            END IF;
        ELSE
            EXECUTE format('SELECT create_distributed_function(%L, %L, colocate_with => %L)',
                           r.object, r.distribution_argument, 'booking.tenants');
            v_functions := v_functions || r.object;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('reference_tables', to_jsonb(v_reference), 'distributed_tables', to_jsonb(v_distributed),
                              'distributed_functions', to_jsonb(v_functions), 'newly_distributed', to_jsonb(v_new));
END $$;

-- What operators get (sql/operator.sql).
GRANT UPDATE (respects_freeze) ON booking_admin.scheduler_job_info TO booking_operator;

-- The freeze calendar, the partitioned history and its maintenance, the health history and the
-- questions it answers, remediations (operators decide them), the waitlist's conversion, and
-- what job_stats reads of the job history.
GRANT EXECUTE ON FUNCTION
    booking_admin.freeze_state(uuid, timestamptz), booking_admin.freeze_windows_at(timestamptz, uuid),
    booking_admin.add_freeze_window(text, timestamptz, timestamptz, integer[], time, time, text, date, date, text, uuid),
    booking_admin.remove_freeze_window(uuid),
    booking_admin.partitions(text), booking_admin.partition_bounds(text, timestamptz), booking_admin.maintain_partitions(text),
    booking_admin.configure_partitions(text, interval, integer, text, boolean),
    booking_admin.top_queries(interval, integer), booking_admin.growing_relations(interval, integer),
    booking_admin.sequences_near_exhaustion(numeric), booking_admin.sequence_headroom(), booking_admin.unused_indexes(interval),
    booking_admin.duplicate_indexes(), booking_admin.blocking_tree(), booking_admin.database_history(interval),
    booking_admin.preview_remediation(uuid), booking_admin.approve_remediation(uuid, text),
    booking_admin.reject_remediation(uuid, text), booking_admin.revert_remediation(uuid, text),
    booking_admin.waitlist_conversion(interval, uuid), booking_admin.completed_job_durations()
TO booking_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON booking_admin.freeze_windows TO booking_operator;
GRANT SELECT ON booking_admin.partitioned_tables, booking_admin.job_history, booking_admin.history_query_stats,
    booking_admin.history_query_texts, booking_admin.history_database_stats, booking_admin.history_relation_stats,
    booking_admin.history_sequence_stats, booking_admin.security_remediations
TO booking_operator;
-- configure_partitions; what a table keeps past retention (keep_while) stays the extension's.
GRANT UPDATE (retention, premake, partition_interval) ON booking_admin.partitioned_tables TO booking_operator;

-- As finalize.sql leaves every function of the schema that is not for applications.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;

-- Bookable resources, "any staff", holds, caps, per-staff length and price
-- (docs/resources.md). The Rust functions first, then the new columns, then
-- sql/resources.sql as a fresh install runs it, then every function the feature changed in the
-- other files (as they are there), the backfill of the appointments' staff claims, and what
-- sql/finalize.sql does for the new objects.
CREATE FUNCTION booking."tenant_booking_plan"(
	"p_tenant_id" uuid, /* Option < PgUuid > */
	"p_service_id" uuid, /* Option < PgUuid > */
	"p_staff_id" uuid, /* Option < PgUuid > */
	"p_starts_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"p_ends_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"p_customer_id" uuid, /* Option < PgUuid > */
	"p_exclude_appointment_id" uuid, /* Option < PgUuid > */
	"p_exclude_hold_id" uuid, /* Option < PgUuid > */
	"p_resources_only" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Result < JsonB, pgrx :: pg_sys :: panic :: ErrorReport > */
STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tenant_booking_plan_wrapper';
CREATE FUNCTION booking."any_staff_slot_arrays"(
	"p_tenant_id" uuid, /* Option < PgUuid > */
	"p_service_id" uuid, /* Option < PgUuid > */
	"p_from" date, /* Option < Date > */
	"p_to" date, /* Option < Date > */
	"p_customer_id" uuid /* Option < PgUuid > */
) RETURNS TABLE (
	"starts" timestamp with time zone[],  /* Vec < TimestampWithTimeZone > */
	"ends" timestamp with time zone[],  /* Vec < TimestampWithTimeZone > */
	"staff_free" INT[]  /* Vec < i32 > */
)
STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'any_staff_slot_arrays_wrapper';
CREATE FUNCTION booking_internal."new_hold_token"(
	"p_tenant_id" uuid, /* PgUuid */
	"p_hold_id" uuid /* PgUuid */
) RETURNS TABLE (
	"token" TEXT,  /* String */
	"token_hash" bytea  /* Vec < u8 > */
)
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'new_hold_token_wrapper';
CREATE FUNCTION booking_internal."parse_hold_token"(
	"p_token" TEXT /* & str */
) RETURNS TABLE (
	"tenant_id" uuid,  /* PgUuid */
	"hold_id" uuid,  /* PgUuid */
	"secret_hash" bytea  /* Vec < u8 > */
)
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_hold_token_wrapper';

ALTER TABLE booking.staff_services
    ADD COLUMN duration_minutes integer CHECK (duration_minutes BETWEEN 1 AND 1440),
    ADD COLUMN price numeric(12, 2) CHECK (price >= 0),
    ADD COLUMN weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 0 AND 100),
    ADD COLUMN priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000);
ALTER TABLE booking.appointments ADD COLUMN staff_choice jsonb;
CREATE OR REPLACE FUNCTION booking.appointments_derive() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    svc booking.services;
    turnover integer;
BEGIN
    -- The row's own tenant when it has one (always on Citus, where this runs on the shard and
    -- may read only its tenant's colocated rows).
    IF NEW.tenant_id IS NULL THEN
        SELECT * INTO svc FROM booking.services WHERE id = NEW.service_id;
    ELSE
        SELECT * INTO svc FROM booking.services WHERE tenant_id = NEW.tenant_id AND id = NEW.service_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service % does not exist', NEW.service_id USING ERRCODE = 'P0002';
    END IF;
    NEW.tenant_id := coalesce(NEW.tenant_id, svc.tenant_id);
    -- The default length is the staff member's own for the service, else the service's.
    IF NEW.ends_at IS NULL THEN
        NEW.ends_at := NEW.starts_at + make_interval(mins => coalesce(
            (SELECT ss.duration_minutes FROM booking.staff_services ss
             WHERE ss.tenant_id = NEW.tenant_id AND ss.staff_id = NEW.staff_id AND ss.service_id = NEW.service_id),
            svc.duration_minutes));
    END IF;
    SELECT t.buffer_time_minutes INTO turnover FROM booking.tenants t WHERE t.id = NEW.tenant_id;
    NEW.blocked := tstzrange(
        NEW.starts_at - make_interval(mins => svc.buffer_before_minutes),
        NEW.ends_at + make_interval(mins => svc.buffer_after_minutes + coalesce(turnover, 0)),
        '[)');
    RETURN NEW;
END $$;

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

CREATE OR REPLACE FUNCTION booking.appointment_json(a booking.appointments) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN to_jsonb(a) - 'blocked' || jsonb_build_object('resources', booking.claimed_resources(a.tenant_id, a.id, NULL));
END $$;
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
    RETURN booking.finish_operation('booking.create', p_tenant_id, p_operation_id, jsonb_build_object(
        'success', true, 'operation_id', p_operation_id, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
CREATE OR REPLACE FUNCTION booking_internal.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
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
BEGIN
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
        RETURN v_replay;
    END IF;

    -- The engine and the write: what the caller may see was checked above. Validation cannot
    -- see a booking another transaction is making right now; the exclusion constraints can, and
    -- decide who wins (booking.place).
    RETURN booking.booking_outcome(v_service.tenant_id, v_op,
        booking.place('appointment', v_service.tenant_id, v_service.id, v_staff.id, v_starts, v_ends, v_customer.id, NULL, NULL,
                      jsonb_build_object('status', v_status, 'price', v_price, 'notes', p_booking ->> 'notes')),
        v_request);
END $$;
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
CREATE OR REPLACE FUNCTION booking_internal.reschedule_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_new_starts_at timestamptz,
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
    v_placed jsonb;
BEGIN
    IF p_new_starts_at IS NULL OR NOT isfinite(p_new_starts_at) THEN
        RAISE EXCEPTION 'p_new_starts_at must be a finite timestamp' USING ERRCODE = '22023';
    END IF;
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_old, p_idempotency_key, 'reschedule',
        jsonb_build_object('appointment_id', v_old.id,
                           'new_starts_at', to_char(p_new_starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
        'Rescheduling', 'rescheduled', 'reschedule_deadline_hours') c;
    IF v_early IS NOT NULL THEN
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
    v_placed := booking.place('move', v_old.tenant_id, v_old.service_id, v_old.staff_id, p_new_starts_at, v_new_ends,
                              v_old.customer_id, v_old.id, NULL, '{}');
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
REVOKE ALL ON FUNCTION booking.new_booking_status(uuid, text, text), booking.booking_outcome(uuid, uuid, jsonb, jsonb),
    booking.book_hold(uuid, text, jsonb) FROM PUBLIC;
CREATE OR REPLACE FUNCTION booking.slot_store_reach(p_tenant_id uuid) RETURNS interval
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN make_interval(mins => 2 * coalesce((SELECT max(greatest(s.duration_minutes, (
                                                          SELECT max(ss.duration_minutes) FROM booking.staff_services ss
                                                          WHERE ss.tenant_id = p_tenant_id AND ss.service_id = s.id))
                                                      + s.buffer_before_minutes + s.buffer_after_minutes)
                                               FROM booking.services s WHERE s.tenant_id = p_tenant_id), 0)
                                 + 2 * coalesce((SELECT t.buffer_time_minutes FROM booking.tenants t WHERE t.id = p_tenant_id), 0)
                                 + 60);
END $$;
CREATE OR REPLACE FUNCTION booking.slot_store_touch_spans(p_tenant_ids uuid[], p_staff_ids uuid[], p_spans tstzrange[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_reach interval;
    v_staff uuid[];
    v_from date[];
    v_to date[];
    v_first date;
    v_last date;
    v_zone text;
    v_all record;
    n integer := 0;
BEGIN
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenant_ids) t WHERE t IS NOT NULL LOOP
        CONTINUE WHEN NOT booking.slot_store_is_on(v_tenant);
        v_reach := booking.slot_store_reach(v_tenant);
        IF EXISTS (SELECT 1 FROM booking.booking_caps c WHERE c.tenant_id = v_tenant AND c.scope <> 'customer') THEN
            v_zone := (SELECT t.timezone FROM booking.tenants t WHERE t.id = v_tenant);
            SELECT date_trunc('week', (min(lower(c.span)) - v_reach) AT TIME ZONE v_zone)::date - 1,
                   date_trunc('week', (max(upper(c.span)) + v_reach) AT TIME ZONE v_zone)::date + 7
            INTO v_first, v_last
            FROM unnest(p_tenant_ids, p_spans) AS c (tenant_id, span)
            WHERE c.tenant_id = v_tenant;
            v_all := booking.slot_store_staff_of(ARRAY[v_tenant]);
            n := n + booking.slot_store_touch_dates(v_all.tenant_ids, v_all.staff_ids,
                                                    array_fill(v_first, ARRAY[cardinality(v_all.staff_ids)]),
                                                    array_fill(v_last, ARRAY[cardinality(v_all.staff_ids)]));
            CONTINUE;
        END IF;
        SELECT array_agg(c.staff_id), array_agg(((lower(c.span) - v_reach) AT TIME ZONE f.timezone)::date),
               array_agg(((upper(c.span) + v_reach) AT TIME ZONE f.timezone)::date)
        INTO v_staff, v_from, v_to
        FROM booking.staff f
        JOIN unnest(p_tenant_ids, p_staff_ids, p_spans) AS c (tenant_id, staff_id, span)
          ON c.tenant_id = v_tenant AND f.id = c.staff_id
        WHERE f.tenant_id = v_tenant;
        n := n + booking.slot_store_touch_dates(array_fill(v_tenant, ARRAY[coalesce(cardinality(v_staff), 0)]), v_staff, v_from, v_to);
    END LOOP;
    RETURN n;
END $$;
CREATE FUNCTION booking.slot_store_on_assignments() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff uuid[];
    v_resources uuid[];
    v_spans tstzrange[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n.tenant_id), array_agg(n.staff_id), array_agg(n.resource_id), array_agg(n.blocked)
        INTO v_tenants, v_staff, v_resources, v_spans
        FROM n WHERE n.live AND (n.resource_id IS NOT NULL OR n.hold_id IS NOT NULL);
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.tenant_id), array_agg(o.staff_id), array_agg(o.resource_id), array_agg(o.blocked)
        INTO v_tenants, v_staff, v_resources, v_spans
        FROM o WHERE o.live AND (o.resource_id IS NOT NULL OR o.hold_id IS NOT NULL);
    ELSE
        SELECT array_agg(c.tenant_id), array_agg(c.staff_id), array_agg(c.resource_id), array_agg(c.blocked)
        INTO v_tenants, v_staff, v_resources, v_spans
        FROM (SELECT n.tenant_id, n.staff_id, n.resource_id, n.blocked FROM n
              WHERE n.live AND (n.resource_id IS NOT NULL OR n.hold_id IS NOT NULL)
              UNION
              SELECT o.tenant_id, o.staff_id, o.resource_id, o.blocked FROM o
              WHERE o.live AND (o.resource_id IS NOT NULL OR o.hold_id IS NOT NULL)) c;
    END IF;
    PERFORM booking.slot_store_touch_claims(v_tenants, v_staff, v_resources, v_spans);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.assignments REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_assignments();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.assignments REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_assignments();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.assignments REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_assignments();
CREATE FUNCTION booking.slot_store_touch_claims(p_tenant_ids uuid[], p_staff_ids uuid[], p_resource_ids uuid[], p_spans tstzrange[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_resources uuid[];
    v_spans tstzrange[];
    v_staff uuid[];
    v_touch_staff uuid[];
    v_touch_spans tstzrange[];
    n integer := 0;
BEGIN
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenant_ids) t WHERE t IS NOT NULL LOOP
        CONTINUE WHEN NOT booking.slot_store_is_on(v_tenant);
        SELECT array_agg(c.staff_id) FILTER (WHERE c.staff_id IS NOT NULL), array_agg(c.span) FILTER (WHERE c.staff_id IS NOT NULL),
               array_agg(DISTINCT c.resource_id) FILTER (WHERE c.resource_id IS NOT NULL),
               array_agg(c.span) FILTER (WHERE c.resource_id IS NOT NULL)
        INTO v_touch_staff, v_touch_spans, v_resources, v_spans
        FROM unnest(p_tenant_ids, p_staff_ids, p_resource_ids, p_spans) AS c (tenant_id, staff_id, resource_id, span)
        WHERE c.tenant_id = v_tenant;
        IF v_resources IS NOT NULL THEN
            v_staff := ARRAY(
                SELECT DISTINCT ss.staff_id FROM booking.staff_services ss
                WHERE ss.tenant_id = v_tenant AND ss.service_id IN (
                    SELECT r.service_id FROM booking.service_requirements r
                    WHERE r.tenant_id = v_tenant
                      AND (r.resource_id = ANY (v_resources)
                           OR r.group_id IN (SELECT m.group_id FROM booking.resource_group_members m
                                             WHERE m.tenant_id = v_tenant AND m.resource_id = ANY (v_resources)))));
            SELECT coalesce(v_touch_staff, '{}') || array_agg(f.staff_id ORDER BY f.staff_id, s.span),
                   coalesce(v_touch_spans, '{}') || array_agg(s.span ORDER BY f.staff_id, s.span)
            INTO v_touch_staff, v_touch_spans
            FROM unnest(v_staff) f (staff_id), unnest(v_spans) s (span);
        END IF;
        n := n + booking.slot_store_touch_spans(array_fill(v_tenant, ARRAY[coalesce(cardinality(v_touch_staff), 0)]),
                                                v_touch_staff, v_touch_spans);
    END LOOP;
    RETURN n;
END $$;
CREATE FUNCTION booking.slot_store_on_tenant_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_tenants uuid[];
    v_staff record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_tenants := ARRAY(SELECT DISTINCT n.tenant_id FROM n);
    ELSIF TG_OP = 'DELETE' THEN
        v_tenants := ARRAY(SELECT DISTINCT o.tenant_id FROM o);
    ELSE
        v_tenants := ARRAY(SELECT n.tenant_id FROM n UNION SELECT o.tenant_id FROM o);
    END IF;
    v_staff := booking.slot_store_staff_of(v_tenants);
    PERFORM booking.slot_store_touch_dates(v_staff.tenant_ids, v_staff.staff_ids, NULL, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.resources REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.resources REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.resources REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.resource_closures REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.resource_closures REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.resource_closures REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.resource_group_members REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.resource_group_members REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.service_requirements REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.service_requirements REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.service_requirements REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_insert AFTER INSERT ON booking.booking_caps REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_update AFTER UPDATE ON booking.booking_caps REFERENCING OLD TABLE AS o NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
CREATE TRIGGER slot_store_delete AFTER DELETE ON booking.booking_caps REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION booking.slot_store_on_tenant_rows();
INSERT INTO booking_admin.delivery_event_types (event_type, description) VALUES
    ('resource.created', 'A bookable resource (room, chair, equipment) was added'),
    ('resource.updated', 'A resource changed (name, hours, activity), or a closure was added or removed'),
    ('resource_group.updated', 'A resource group was created, changed or deleted'),
    ('booking_cap.updated', 'A booking cap was added or removed');
CREATE OR REPLACE FUNCTION booking_internal.tenant_json(p_tenant_id uuid) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_internal.staff_json(p_tenant_id uuid, p_staff_id uuid) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_internal.update_tenant(p_tenant_id uuid, p_changes jsonb) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_internal.get_tenant_admin(p_tenant_id uuid) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_internal.get_agenda(p_tenant_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_internal.get_booking_page(p_tenant_id uuid) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION booking_admin.citus_layout(OUT kind text, OUT object text, OUT distribution_argument text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('reference', 'booking.global_policies', NULL),
           ('distributed', 'booking.tenants', 'id'),
           ('distributed', 'booking.staff', 'tenant_id'),
           ('distributed', 'booking.services', 'tenant_id'),
           ('distributed', 'booking.customers', 'tenant_id'),
           ('distributed', 'booking.staff_services', 'tenant_id'),
           ('distributed', 'booking.staff_schedules', 'tenant_id'),
           ('distributed', 'booking.schedule_overrides', 'tenant_id'),
           ('distributed', 'booking.staff_time_off', 'tenant_id'),
           ('distributed', 'booking.holidays', 'tenant_id'),
           ('distributed', 'booking.booking_policies', 'tenant_id'),
           ('distributed', 'booking.appointments', 'tenant_id'),
           ('distributed', 'booking.booking_operations', 'tenant_id'),
           ('distributed', 'booking.events', 'tenant_id'),
           ('distributed', 'booking.waitlist', 'tenant_id'),
           ('distributed', 'booking.waitlist_notifications', 'tenant_id'),
           ('distributed', 'booking.slot_store_settings', 'tenant_id'),
           ('distributed', 'booking.availability_slot_days', 'tenant_id'),
           ('distributed', 'booking.availability_slots', 'tenant_id'),
           ('distributed', 'booking.tenant_members', 'tenant_id'),
           ('distributed', 'booking.tenant_invitations', 'tenant_id'),
           ('distributed', 'booking.resources', 'tenant_id'),
           ('distributed', 'booking.resource_groups', 'tenant_id'),
           ('distributed', 'booking.resource_group_members', 'tenant_id'),
           ('distributed', 'booking.resource_closures', 'tenant_id'),
           ('distributed', 'booking.service_requirements', 'tenant_id'),
           ('distributed', 'booking.booking_settings', 'tenant_id'),
           ('distributed', 'booking.booking_caps', 'tenant_id'),
           ('distributed', 'booking.cap_locks', 'tenant_id'),
           ('distributed', 'booking.holds', 'tenant_id'),
           ('distributed', 'booking.assignments', 'tenant_id'),
           ('function', 'booking.create_tenant_booking(uuid, text, jsonb)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_available_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text)', 'p_tenant_id'),
           ('function', 'booking.cancel_tenant_appointment(uuid, uuid, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_booking_page(uuid)', 'p_tenant_id'),
           ('function', 'booking.register_customer(uuid, text, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_any_staff_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.create_hold(uuid, jsonb)', 'p_tenant_id')
$$;

-- Every appointment claims its staff member (booking.assignments_follow_appointment does it
-- for new ones).
INSERT INTO booking.assignments (tenant_id, appointment_id, staff_id, blocked, live)
SELECT a.tenant_id, a.id, a.staff_id, a.blocked, a.status IN ('pending', 'confirmed', 'active') FROM booking.appointments a;

-- As finalize.sql leaves the new objects.
ALTER TABLE booking.resources ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.resource_groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.resource_group_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.resource_closures ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.service_requirements ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.booking_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.booking_caps ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.cap_locks ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking.assignments ENABLE ROW LEVEL SECURITY;
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
    booking.create_resource(uuid, jsonb), booking.update_resource(uuid, uuid, jsonb),
    booking.add_resource_closure(uuid, uuid, timestamptz, timestamptz, text), booking.remove_resource_closure(uuid, uuid),
    booking.create_resource_group(uuid, jsonb), booking.update_resource_group(uuid, uuid, jsonb),
    booking.delete_resource_group(uuid, uuid), booking.set_service_requirements(uuid, uuid, jsonb),
    booking.set_staff_service(uuid, uuid, uuid, jsonb), booking.add_booking_cap(uuid, jsonb), booking.remove_booking_cap(uuid, uuid),
    booking.assign_appointment_resources(uuid, uuid)
TO PUBLIC;
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
SELECT booking_admin.grant_api_roles();
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;

-- The booking's outcome after both blocks above: the waitlist's conversion (health) in the
-- outcome the resources' booking.place path returns through (sql/booking.sql).
CREATE OR REPLACE FUNCTION booking.booking_outcome(p_tenant_id uuid, p_operation_id uuid, p_placed jsonb, p_request jsonb) RETURNS jsonb
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

-- Tracing (0.1.1): spans joined to the caller's trace (docs/tracing.md). The events, jobs and
-- deliveries carry the W3C trace context they were written in; the functions below are the
-- feature files' definitions (sql/events.sql, jobs.sql, delivery.sql, booking.sql,
-- slot_store.sql) and the Rust
-- functions pgrx generates for src/trace/api.rs.

ALTER TABLE booking.events ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE booking_admin.jobs ADD COLUMN traceparent text, ADD COLUMN tracestate text;
-- The job history is made LIKE the queue (sql/jobs.sql): archived jobs keep their trace.
ALTER TABLE booking_admin.job_history ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE booking_admin.deliveries ADD COLUMN traceparent text, ADD COLUMN tracestate text;

CREATE  FUNCTION booking_internal."tracing"() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tracing_wrapper';

CREATE  FUNCTION booking_internal."trace_begin"(
	"p_name" TEXT, /* Option < String > */
	"p_attributes" jsonb DEFAULT NULL, /* Option < JsonDoc > */
	"p_kind" TEXT DEFAULT 'internal' /* Option < String > */
) RETURNS VOID /* Result < (), Report > */
VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'trace_begin_wrapper';

CREATE  FUNCTION booking_internal."trace_end"(
	"p_name" TEXT, /* Option < String > */
	"p_attributes" jsonb DEFAULT NULL, /* Option < JsonDoc > */
	"p_error_type" TEXT DEFAULT NULL, /* Option < String > */
	"p_error_message" TEXT DEFAULT NULL /* Option < String > */
) RETURNS VOID /* Result < (), Report > */
VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'trace_end_wrapper';

CREATE  FUNCTION booking_internal."trace_context"() RETURNS TABLE (
	"traceparent" TEXT,  /* Option < String > */
	"tracestate" TEXT  /* Option < String > */
)
STRICT VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'trace_context_wrapper';

CREATE  FUNCTION booking_admin."tracing_status"() RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tracing_status_wrapper';

-- As finalize.sql leaves every function of booking_internal and booking_admin; operator.sql
-- grants the enqueue functions' helpers and the status.
REVOKE ALL ON FUNCTION booking_internal.tracing(), booking_internal.trace_begin(text, jsonb, text),
    booking_internal.trace_end(text, jsonb, text, text), booking_internal.trace_context(), booking_admin.tracing_status()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking_admin.tracing_status() TO booking_operator;
GRANT EXECUTE ON FUNCTION booking_internal.tracing(), booking_internal.trace_context() TO booking_operator;

CREATE OR REPLACE FUNCTION booking.emit_event(p_tenant_id uuid, p_event_type text, p_payload jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_id uuid := gen_random_uuid();
    v_traceparent text;
    v_tracestate text;
BEGIN
    -- With tracing on, the event is sent in a span of its own (a messaging producer span),
    -- whose context the row keeps for the deliveries that continue it.
    IF booking_internal.tracing() THEN
        PERFORM booking_internal.trace_begin('send booking.events', jsonb_build_object(
            'messaging.system', 'booking_engine', 'messaging.operation.type', 'send',
            'messaging.operation.name', 'send', 'messaging.destination.name', 'booking.events',
            'messaging.message.id', v_id, 'booking.event_type', p_event_type, 'booking.tenant_id', p_tenant_id),
            'producer');
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    INSERT INTO booking.events (id, tenant_id, event_type, payload, traceparent, tracestate)
    VALUES (v_id, p_tenant_id, p_event_type, coalesce(p_payload, '{}'), v_traceparent, v_tracestate);
    PERFORM pg_notify('booking_events', json_build_object('id', v_id, 'type', p_event_type)::text);
    IF v_traceparent IS NOT NULL THEN
        PERFORM booking_internal.trace_end('send booking.events');
    END IF;
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION booking_admin.enqueue_job(
    p_name text,
    p_handler text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT 5,
    p_run_at timestamptz DEFAULT now(),
    p_max_retries integer DEFAULT 3,
    p_retry_delay_ms integer DEFAULT 1000,
    p_retry_backoff_multiplier numeric DEFAULT 2.0,
    p_max_delay_ms integer DEFAULT 300000,
    p_jitter boolean DEFAULT true,
    p_timeout_ms integer DEFAULT 30000,
    p_tenant_id uuid DEFAULT NULL,
    p_unique_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
    v_traceparent text;
    v_tracestate text;
BEGIN
    IF p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'job name and handler must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    INSERT INTO booking_admin.jobs (name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                    retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                    unique_key, traceparent, tracestate)
    VALUES (p_name, p_handler, coalesce(p_payload, '{}'), p_tenant_id, coalesce(p_priority, 5),
            coalesce(p_run_at, now()), p_max_retries, p_retry_delay_ms, p_retry_backoff_multiplier,
            p_max_delay_ms, p_jitter, p_timeout_ms, p_unique_key, v_traceparent, v_tracestate)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
    DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- The same logical job is already queued: hand back its id instead of a second copy.
        SELECT j.id INTO v_id FROM booking_admin.jobs j
        WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed');
        RETURN v_id;
    END IF;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION booking_admin.enqueue_jobs(p_jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
    v_bad bigint;
    -- The inserter, named once instead of by both column defaults of every row.
    v_me regrole := current_user::regrole;
    -- One trace context for the whole array.
    v_traceparent text;
    v_tracestate text;
BEGIN
    IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array of objects, not %', coalesce(jsonb_typeof(p_jobs), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    -- One pass over the array: ids are drawn before the insert so each element knows whether
    -- its row went in, and a malformed element (not an object, no name or handler, a key
    -- that is not one of enqueue_job's arguments: a misspelt one would silently become a
    -- default) is found on the way and refused after it, which rolls the insert back. Jobs
    -- without a unique key cannot conflict and skip ON CONFLICT's speculative insertion (a
    -- third of an insert's cost).
    WITH spec AS MATERIALIZED (
        SELECT s.id, s.name, s.handler, coalesce(s.payload, '{}') AS payload, s.tenant_id,
               coalesce(s.priority, 5) AS priority, coalesce(s.run_at, now()) AS scheduled_at,
               coalesce(s.max_retries, 3) AS max_retries, coalesce(s.retry_delay_ms, 1000) AS retry_delay_ms,
               coalesce(s.retry_backoff_multiplier, 2.0) AS retry_backoff_multiplier,
               coalesce(s.max_delay_ms, 300000) AS max_delay_ms, coalesce(s.jitter, true) AS jitter,
               coalesce(s.timeout_ms, 30000) AS timeout_ms, s.unique_key, s.ord,
               s.name IS NULL OR s.handler IS NULL
                   OR s.job - ARRAY['name', 'handler', 'payload', 'priority', 'run_at', 'max_retries', 'retry_delay_ms',
                                    'retry_backoff_multiplier', 'max_delay_ms', 'jitter', 'timeout_ms', 'tenant_id',
                                    'unique_key'] <> '{}' AS bad
        -- Side by side, element n, its fields and its id: no join, no per-element function call.
        FROM ROWS FROM (
                 jsonb_array_elements(p_jobs),
                 jsonb_to_recordset(p_jobs) AS (
                     name text, handler text, payload jsonb, priority integer, run_at timestamptz,
                     max_retries integer, retry_delay_ms integer, retry_backoff_multiplier numeric,
                     max_delay_ms integer, jitter boolean, timeout_ms integer, tenant_id uuid, unique_key text),
                 unnest(booking_admin.random_uuids(jsonb_array_length(p_jobs)))
             ) WITH ORDINALITY AS s(job, name, handler, payload, priority, run_at, max_retries, retry_delay_ms,
                                    retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, tenant_id,
                                    unique_key, id, ord)
    ), unkeyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NULL AND NOT bad
    ), keyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NOT NULL AND NOT bad ORDER BY ord
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id
    )
    SELECT array_agg(CASE WHEN spec.unique_key IS NULL OR keyed.id IS NOT NULL THEN spec.id END ORDER BY spec.ord),
           array_agg(spec.unique_key ORDER BY spec.ord) FILTER (WHERE spec.unique_key IS NOT NULL AND keyed.id IS NULL),
           min(spec.ord) FILTER (WHERE spec.bad)
    INTO v_ids, v_keys, v_bad
    FROM spec LEFT JOIN keyed ON keyed.id = spec.id;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'job % has no name or handler, or a key that is not one of enqueue_job''s arguments: %',
            v_bad, left((p_jobs->(v_bad::int - 1))::text, 200) USING ERRCODE = '22023';
    END IF;
    IF v_keys IS NOT NULL THEN
        -- The same logical jobs are already queued (by someone else, or earlier in this array):
        -- a new statement sees them, and their ids fill the gaps in order.
        SELECT array_agg(coalesce(i.id, (SELECT j.id FROM booking_admin.jobs j
                                         WHERE j.unique_key = v_keys[i.gap] AND j.status IN ('pending', 'running', 'failed')))
                         ORDER BY i.ord)
        INTO v_ids
        FROM (SELECT u.id, u.ord, count(*) FILTER (WHERE u.id IS NULL) OVER (ORDER BY u.ord) AS gap
              FROM unnest(v_ids) WITH ORDINALITY u(id, ord)) i;
    END IF;
    IF cardinality(v_keys) IS DISTINCT FROM cardinality(v_ids) THEN
        PERFORM booking_admin.wake_workers_at_commit();
    END IF;
    RETURN coalesce(v_ids, '{}');
END $$;

CREATE OR REPLACE FUNCTION booking_admin.fan_out_events(p_limit integer DEFAULT 1000) RETURNS integer
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
          OR split_part(e.event_type, '.', 1) || '.*' = ANY (s.event_types));
    -- The tenants as constants: on Citus the update then goes to their shards only.
    EXECUTE format('UPDATE booking.events e SET fanned_out_at = %L WHERE e.tenant_id = ANY (%L::uuid[]) AND e.id = ANY (%L::uuid[])',
                   clock_timestamp(), v_tenants, v_ids);
    RETURN cardinality(v_ids);
END $$;

CREATE OR REPLACE FUNCTION booking_internal.queue_test_event(p_endpoint booking_admin.delivery_endpoints, p_payload jsonb) RETURNS uuid
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

CREATE OR REPLACE FUNCTION booking.finish_operation(
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

CREATE OR REPLACE FUNCTION booking_internal.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_staff booking.staff;
    v_service booking.services;
    v_customer booking.customers;
    v_starts timestamptz;
    v_ends timestamptz;
    v_price numeric;
    v_status text := p_booking ->> 'status';
    -- The caller's role in the service's tenant (NULL: a customer or an anonymous caller).
    v_role text;
    v_request jsonb;
    v_op uuid;
    v_replay jsonb;
    v_check jsonb;
    v_appt booking.appointments;
    v_missing text;
    -- Tracing: the operation is a span (ended in finish_operation, or by the rollback of an
    -- error), the write a child span.
    v_traced boolean := booking_internal.tracing();
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.create', jsonb_build_object('booking.tenant_id', p_tenant_id));
    END IF;
    IF p_booking IS NULL OR jsonb_typeof(p_booking) <> 'object' THEN
        RAISE EXCEPTION 'p_booking must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT f INTO v_missing FROM unnest(ARRAY['customer_id', 'staff_id', 'service_id', 'starts_at']) f
    WHERE p_booking ->> f IS NULL LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_booking.% is required', v_missing USING ERRCODE = '22023';
    END IF;
    IF v_status IS NOT NULL AND v_status NOT IN ('pending', 'confirmed') THEN
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
    v_ends := coalesce((p_booking ->> 'ends_at')::timestamptz, v_starts + make_interval(mins => v_service.duration_minutes));
    IF NOT isfinite(v_starts) OR NOT isfinite(v_ends) THEN
        RAISE EXCEPTION 'starts_at and ends_at must be finite' USING ERRCODE = '22008';
    END IF;
    IF v_ends <= v_starts THEN
        RAISE EXCEPTION 'ends_at must be after starts_at' USING ERRCODE = '22023';
    END IF;
    v_price := coalesce((p_booking ->> 'price')::numeric, v_service.price);
    IF v_price < 0 THEN
        RAISE EXCEPTION 'price must not be negative' USING ERRCODE = '22023';
    END IF;
    -- Length and price are the service's for customers, anonymous callers and receptionists:
    -- only the tenant's other people may book a different end or price. A mismatch is refused,
    -- never ignored, so a client learns its request was not what it will get.
    IF v_ends <> v_starts + make_interval(mins => v_service.duration_minutes) AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('ends_at must be starts_at + the service''s %s minutes; only the tenant''s staff may set another end',
                                      v_service.duration_minutes));
    END IF;
    IF v_price <> v_service.price AND coalesce(v_role, 'receptionist') = 'receptionist' THEN
        PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                               format('price must be the service''s price %s; only the tenant''s staff may set another price',
                                      v_service.price));
    END IF;
    -- A booking the tenant's people make is confirmed unless they say otherwise; a customer's
    -- starts as the tenant says (customer_booking_status), and a customer may not confirm what
    -- the tenant wants to confirm itself.
    IF v_role IS NULL AND coalesce(v_status, 'confirmed') = 'confirmed' THEN
        IF (SELECT t.customer_booking_status FROM booking.tenants t WHERE t.id = v_service.tenant_id) = 'pending' THEN
            IF v_status = 'confirmed' THEN
                PERFORM booking.refuse('booking.create', 'appointment', NULL, v_service.tenant_id, '22023',
                                       'this tenant confirms bookings itself: a customer''s booking starts as pending');
            END IF;
            v_status := 'pending';
        END IF;
    END IF;
    v_status := coalesce(v_status, 'confirmed');

    -- The canonical request: the same booking however its JSON was spelled.
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

    -- The engine itself: what the caller may see was checked above.
    v_check := booking.tenant_slot_violations(v_service.tenant_id, v_staff.id, v_service.id, v_starts, v_ends);
    IF NOT (v_check ->> 'valid')::boolean THEN
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Appointment violates booking rules',
            'details', v_check -> 'violations', 'operation_id', v_op), NULL);
    END IF;

    -- Validation cannot see a booking another transaction is making right now; the exclusion
    -- constraint can, and decides who wins: ON CONFLICT waits for the other transaction and, if
    -- it committed an overlapping booking, inserts nothing (no subtransaction needed).
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.write', jsonb_build_object('booking.staff_id', v_staff.id,
                                          'booking.service_id', v_service.id));
    END IF;
    INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, ends_at, status, price, notes)
    VALUES (v_service.tenant_id, v_staff.id, v_service.id, v_customer.id, v_starts, v_ends, v_status, v_price, p_booking ->> 'notes')
    ON CONFLICT ON CONSTRAINT appointments_no_double_booking DO NOTHING
    RETURNING * INTO v_appt;
    IF v_traced THEN
        PERFORM booking_internal.trace_end('booking.write', jsonb_build_object('booking.appointment_id', v_appt.id,
                                        'booking.conflict', v_appt.id IS NULL));
    END IF;
    IF v_appt.id IS NULL THEN
        PERFORM booking.emit_event(v_service.tenant_id, 'conflict.detected', jsonb_build_object(
            'staff_id', v_staff.id, 'service_id', v_service.id, 'customer_id', v_customer.id,
            'starts_at', v_starts, 'ends_at', v_ends, 'operation_id', v_op));
        RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
            'success', false, 'error', 'Time slot conflicts with another appointment',
            'details', jsonb_build_array(jsonb_build_object('code', 'conflict',
                'message', 'Time slot conflicts with another appointment')),
            'operation_id', v_op), NULL);
    END IF;
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.created', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'service_id', v_appt.service_id, 'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at));
    RETURN booking.finish_operation('booking.create', v_service.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;

CREATE OR REPLACE FUNCTION booking_internal.reschedule_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_new_starts_at timestamptz,
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
    v_check jsonb;
    v_traced boolean := booking_internal.tracing();
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
    v_check := booking.tenant_slot_violations(v_old.tenant_id, v_old.staff_id, v_old.service_id, p_new_starts_at, v_new_ends, v_old.id);
    IF NOT (v_check ->> 'valid')::boolean THEN
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('slot_unavailable',
            'The new time violates booking rules', v_op, v_check -> 'violations'), v_old.id);
    END IF;
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.write');
    END IF;
    BEGIN
        UPDATE booking.appointments
        SET starts_at = p_new_starts_at, ends_at = v_new_ends, reschedule_count = reschedule_count + 1
        WHERE tenant_id = v_old.tenant_id AND id = v_old.id
        RETURNING * INTO v_new;
    EXCEPTION WHEN exclusion_violation THEN
        IF v_traced THEN
            PERFORM booking_internal.trace_end('booking.write', '{"booking.conflict": true}');
        END IF;
        PERFORM booking.emit_event(v_old.tenant_id, 'conflict.detected', jsonb_build_object(
            'appointment_id', v_old.id, 'staff_id', v_old.staff_id, 'starts_at', p_new_starts_at, 'ends_at', v_new_ends));
        RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, booking.policy_failure('conflict',
            'Time slot conflicts with another appointment', v_op), v_old.id);
    END;
    IF v_traced THEN
        PERFORM booking_internal.trace_end('booking.write', '{"booking.conflict": false}');
    END IF;
    PERFORM booking.emit_event(v_new.tenant_id, 'booking.rescheduled', jsonb_build_object(
        'appointment_id', v_new.id, 'customer_id', v_new.customer_id, 'staff_id', v_new.staff_id,
        'old_starts_at', v_old.starts_at, 'old_ends_at', v_old.ends_at,
        'starts_at', v_new.starts_at, 'ends_at', v_new.ends_at, 'reschedule_count', v_new.reschedule_count));
    PERFORM booking.offer_freed_slot(v_old);
    RETURN booking.finish_operation('booking.reschedule', v_old.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_new)), v_new.id);
END $$;

CREATE OR REPLACE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id);
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

CREATE OR REPLACE FUNCTION booking_internal.find_optimal_slots(p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz, confidence_score numeric,
               booking_density numeric, priority_boost numeric, fit_score numeric, day_open_ratio numeric, slot_type text)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_tenant uuid;
    -- Tracing: a slot reader's span, the store as its source.
    v_traced boolean := booking_internal.tracing();
    v_returned bigint;
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.slots', jsonb_build_object(
            'booking.function', 'find_optimal_slots', 'booking.slots.source', 'store',
            'booking.service_id', p_service_id, 'booking.days', p_to - p_from + 1));
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    -- PT404 for a service or staff member the caller may not see, whether it exists or not.
    PERFORM booking_internal.require_bookable(p_service_id, p_staff_id);
    SELECT s.tenant_id INTO v_tenant FROM booking.services s WHERE s.id = p_service_id;
    PERFORM booking.slot_store_check_range(v_tenant, NULL, p_from, p_to);
    RETURN QUERY
        SELECT v.staff_id, v.start_time, v.end_time, v.confidence_score, v.booking_density, v.priority_boost,
               v.fit_score, v.day_open_ratio, v.slot_type
        FROM booking.availability_slots_now v
        WHERE v.service_id = p_service_id AND v.date BETWEEN p_from AND p_to AND v.is_available
          AND (p_staff_id IS NULL OR v.staff_id = p_staff_id)
        ORDER BY v.confidence_score DESC, v.start_time, v.staff_id
        LIMIT p_limit;
    IF v_traced THEN
        GET DIAGNOSTICS v_returned = ROW_COUNT;
        PERFORM booking_internal.trace_end('booking.slots', jsonb_build_object(
            'booking.tenant_id', v_tenant, 'booking.slots_returned', v_returned));
    END IF;
END $$;

-- The functions both the tracing block above and the health and resources blocks before it
-- changed, as the feature files define them now (the booking's write through booking.place,
-- the partitioned outbox and deliveries, with their spans).
-- booking.emit_event as sql/events.sql defines it
CREATE OR REPLACE FUNCTION booking.emit_event(p_tenant_id uuid, p_event_type text, p_payload jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_id uuid := gen_random_uuid();
    v_traceparent text;
    v_tracestate text;
BEGIN
    -- With tracing on, the event is sent in a span of its own (a messaging producer span),
    -- whose context the row keeps for the deliveries that continue it.
    IF booking_internal.tracing() THEN
        PERFORM booking_internal.trace_begin('send booking.events', jsonb_build_object(
            'messaging.system', 'booking_engine', 'messaging.operation.type', 'send',
            'messaging.operation.name', 'send', 'messaging.destination.name', 'booking.events',
            'messaging.message.id', v_id, 'booking.event_type', p_event_type, 'booking.tenant_id', p_tenant_id),
            'producer');
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    INSERT INTO booking.events (id, tenant_id, event_type, payload, traceparent, tracestate)
    VALUES (v_id, p_tenant_id, p_event_type, coalesce(p_payload, '{}'), v_traceparent, v_tracestate);
    PERFORM pg_notify('booking_events', json_build_object('id', v_id, 'type', p_event_type)::text);
    IF v_traceparent IS NOT NULL THEN
        PERFORM booking_internal.trace_end('send booking.events');
    END IF;
    RETURN v_id;
END $$;

-- booking_admin.enqueue_job as sql/jobs.sql defines it
CREATE OR REPLACE FUNCTION booking_admin.enqueue_job(
    p_name text,
    p_handler text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT 5,
    p_run_at timestamptz DEFAULT now(),
    p_max_retries integer DEFAULT 3,
    p_retry_delay_ms integer DEFAULT 1000,
    p_retry_backoff_multiplier numeric DEFAULT 2.0,
    p_max_delay_ms integer DEFAULT 300000,
    p_jitter boolean DEFAULT true,
    p_timeout_ms integer DEFAULT 30000,
    p_tenant_id uuid DEFAULT NULL,
    p_unique_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
    v_traceparent text;
    v_tracestate text;
BEGIN
    IF p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'job name and handler must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    INSERT INTO booking_admin.jobs (name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                    retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                    unique_key, traceparent, tracestate)
    VALUES (p_name, p_handler, coalesce(p_payload, '{}'), p_tenant_id, coalesce(p_priority, 5),
            coalesce(p_run_at, now()), p_max_retries, p_retry_delay_ms, p_retry_backoff_multiplier,
            p_max_delay_ms, p_jitter, p_timeout_ms, p_unique_key, v_traceparent, v_tracestate)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
    DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- The same logical job is already queued: hand back its id instead of a second copy.
        SELECT j.id INTO v_id FROM booking_admin.jobs j
        WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed');
        RETURN v_id;
    END IF;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN v_id;
END $$;

-- booking_admin.enqueue_jobs as sql/jobs.sql defines it
CREATE OR REPLACE FUNCTION booking_admin.enqueue_jobs(p_jobs jsonb) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_ids uuid[];
    v_keys text[];
    v_bad bigint;
    -- The inserter, named once instead of by both column defaults of every row.
    v_me regrole := current_user::regrole;
    -- One trace context for the whole array.
    v_traceparent text;
    v_tracestate text;
BEGIN
    IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array of objects, not %', coalesce(jsonb_typeof(p_jobs), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    -- One pass over the array: ids are drawn before the insert so each element knows whether
    -- its row went in, and a malformed element (not an object, no name or handler, a key
    -- that is not one of enqueue_job's arguments: a misspelt one would silently become a
    -- default) is found on the way and refused after it, which rolls the insert back. Jobs
    -- without a unique key cannot conflict and skip ON CONFLICT's speculative insertion (a
    -- third of an insert's cost).
    WITH spec AS MATERIALIZED (
        SELECT s.id, s.name, s.handler, coalesce(s.payload, '{}') AS payload, s.tenant_id,
               coalesce(s.priority, 5) AS priority, coalesce(s.run_at, now()) AS scheduled_at,
               coalesce(s.max_retries, 3) AS max_retries, coalesce(s.retry_delay_ms, 1000) AS retry_delay_ms,
               coalesce(s.retry_backoff_multiplier, 2.0) AS retry_backoff_multiplier,
               coalesce(s.max_delay_ms, 300000) AS max_delay_ms, coalesce(s.jitter, true) AS jitter,
               coalesce(s.timeout_ms, 30000) AS timeout_ms, s.unique_key, s.ord,
               s.name IS NULL OR s.handler IS NULL
                   OR s.job - ARRAY['name', 'handler', 'payload', 'priority', 'run_at', 'max_retries', 'retry_delay_ms',
                                    'retry_backoff_multiplier', 'max_delay_ms', 'jitter', 'timeout_ms', 'tenant_id',
                                    'unique_key'] <> '{}' AS bad
        -- Side by side, element n, its fields and its id: no join, no per-element function call.
        FROM ROWS FROM (
                 jsonb_array_elements(p_jobs),
                 jsonb_to_recordset(p_jobs) AS (
                     name text, handler text, payload jsonb, priority integer, run_at timestamptz,
                     max_retries integer, retry_delay_ms integer, retry_backoff_multiplier numeric,
                     max_delay_ms integer, jitter boolean, timeout_ms integer, tenant_id uuid, unique_key text),
                 unnest(booking_admin.random_uuids(jsonb_array_length(p_jobs)))
             ) WITH ORDINALITY AS s(job, name, handler, payload, priority, run_at, max_retries, retry_delay_ms,
                                    retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, tenant_id,
                                    unique_key, id, ord)
    ), unkeyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NULL AND NOT bad
    ), keyed AS (
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, created_by, enqueued_by, traceparent, tracestate)
        SELECT id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries, retry_delay_ms,
               retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms, unique_key, v_me, v_me, v_traceparent,
               v_tracestate
        FROM spec WHERE unique_key IS NOT NULL AND NOT bad ORDER BY ord
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id
    )
    SELECT array_agg(CASE WHEN spec.unique_key IS NULL OR keyed.id IS NOT NULL THEN spec.id END ORDER BY spec.ord),
           array_agg(spec.unique_key ORDER BY spec.ord) FILTER (WHERE spec.unique_key IS NOT NULL AND keyed.id IS NULL),
           min(spec.ord) FILTER (WHERE spec.bad)
    INTO v_ids, v_keys, v_bad
    FROM spec LEFT JOIN keyed ON keyed.id = spec.id;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'job % has no name or handler, or a key that is not one of enqueue_job''s arguments: %',
            v_bad, left((p_jobs->(v_bad::int - 1))::text, 200) USING ERRCODE = '22023';
    END IF;
    IF v_keys IS NOT NULL THEN
        -- The same logical jobs are already queued (by someone else, or earlier in this array):
        -- a new statement sees them, and their ids fill the gaps in order.
        SELECT array_agg(coalesce(i.id, (SELECT j.id FROM booking_admin.jobs j
                                         WHERE j.unique_key = v_keys[i.gap] AND j.status IN ('pending', 'running', 'failed')))
                         ORDER BY i.ord)
        INTO v_ids
        FROM (SELECT u.id, u.ord, count(*) FILTER (WHERE u.id IS NULL) OVER (ORDER BY u.ord) AS gap
              FROM unnest(v_ids) WITH ORDINALITY u(id, ord)) i;
    END IF;
    IF cardinality(v_keys) IS DISTINCT FROM cardinality(v_ids) THEN
        PERFORM booking_admin.wake_workers_at_commit();
    END IF;
    RETURN coalesce(v_ids, '{}');
END $$;

-- booking_admin.fan_out_events as sql/delivery.sql defines it
CREATE OR REPLACE FUNCTION booking_admin.fan_out_events(p_limit integer DEFAULT 1000) RETURNS integer
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
          OR split_part(e.event_type, '.', 1) || '.*' = ANY (s.event_types));
    -- The tenants as constants: on Citus the update then goes to their shards only.
    EXECUTE format('UPDATE booking.events e SET fanned_out_at = %L WHERE e.tenant_id = ANY (%L::uuid[]) AND e.id = ANY (%L::uuid[])',
                   clock_timestamp(), v_tenants, v_ids);
    RETURN cardinality(v_ids);
END $$;

-- booking_internal.queue_test_event as sql/delivery.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.queue_test_event(p_endpoint booking_admin.delivery_endpoints, p_payload jsonb) RETURNS uuid
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

-- booking.finish_operation as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking.finish_operation(
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

-- booking_internal.create_tenant_booking as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.create_tenant_booking(p_tenant_id uuid, p_idempotency_key text, p_booking jsonb) RETURNS jsonb
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

-- booking_internal.reschedule_tenant_appointment as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.reschedule_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_new_starts_at timestamptz,
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

-- booking_internal.cancel_tenant_appointment as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id);
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

-- booking_internal.find_optimal_slots as sql/slot_store.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.find_optimal_slots(p_service_id uuid, p_from date, p_to date, p_staff_id uuid DEFAULT NULL,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (staff_id uuid, starts_at timestamptz, ends_at timestamptz, confidence_score numeric,
               booking_density numeric, priority_boost numeric, fit_score numeric, day_open_ratio numeric, slot_type text)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, booking, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_tenant uuid;
    -- Tracing: a slot reader's span, the store as its source.
    v_traced boolean := booking_internal.tracing();
    v_returned bigint;
BEGIN
    IF v_traced THEN
        PERFORM booking_internal.trace_begin('booking.slots', jsonb_build_object(
            'booking.function', 'find_optimal_slots', 'booking.slots.source', 'store',
            'booking.service_id', p_service_id, 'booking.days', p_to - p_from + 1));
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    -- PT404 for a service or staff member the caller may not see, whether it exists or not.
    PERFORM booking_internal.require_bookable(p_service_id, p_staff_id);
    SELECT s.tenant_id INTO v_tenant FROM booking.services s WHERE s.id = p_service_id;
    PERFORM booking.slot_store_check_range(v_tenant, NULL, p_from, p_to);
    RETURN QUERY
        SELECT v.staff_id, v.start_time, v.end_time, v.confidence_score, v.booking_density, v.priority_boost,
               v.fit_score, v.day_open_ratio, v.slot_type
        FROM booking.availability_slots_now v
        WHERE v.service_id = p_service_id AND v.date BETWEEN p_from AND p_to AND v.is_available
          AND (p_staff_id IS NULL OR v.staff_id = p_staff_id)
        ORDER BY v.confidence_score DESC, v.start_time, v.staff_id
        LIMIT p_limit;
    IF v_traced THEN
        GET DIAGNOSTICS v_returned = ROW_COUNT;
        PERFORM booking_internal.trace_end('booking.slots', jsonb_build_object(
            'booking.tenant_id', v_tenant, 'booking.slots_returned', v_returned));
    END IF;
END $$;


-- Reminders and the day's messages: job keys and cron schedules in a time zone for the
-- scheduler, the SMS channel, reminder rules and their reminders, signed confirm/cancel links,
-- the staff's daily agenda (sql/jobs.sql, sql/delivery.sql, sql/booking.sql, sql/reminders.sql,
-- sql/api.sql, sql/citus.sql, sql/operator.sql, sql/finalize.sql).

-- The Rust functions of this block.
CREATE  FUNCTION booking_admin."check_cron"(
	"p_expression" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_cron_wrapper';

CREATE  FUNCTION booking_admin."cron_next"(
	"p_expression" TEXT, /* Option < & str > */
	"p_timezone" TEXT, /* Option < & str > */
	"p_after" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS timestamp with time zone /* Result < Option < TimestampWithTimeZone > , ErrorReport > */
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cron_next_wrapper';

CREATE  FUNCTION booking_admin."cron_runs"(
	"p_expression" TEXT, /* Option < & str > */
	"p_timezone" TEXT, /* Option < & str > */
	"p_from" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"p_to" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS SETOF timestamp with time zone /* TimestampWithTimeZone */
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cron_runs_wrapper';

CREATE  FUNCTION booking_internal."normalize_phone"(
	"p_phone" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < Option < String > , ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'normalize_phone_wrapper';

CREATE  FUNCTION booking_internal."check_sms_sender"(
	"p_sender" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_sms_sender_wrapper';

CREATE  FUNCTION booking_internal."read_sms_inbound"(
	"p_body" TEXT /* Option < & str > */
) RETURNS jsonb /* Result < pgrx :: JsonB, ErrorReport > */
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'read_sms_inbound_wrapper';

CREATE  FUNCTION booking_internal."quiet_hours_end"(
	"p_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"p_timezone" TEXT, /* Option < & str > */
	"p_start" time, /* Option < Time > */
	"p_end" time /* Option < Time > */
) RETURNS timestamp with time zone /* Result < Option < TimestampWithTimeZone > , ErrorReport > */
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quiet_hours_end_wrapper';

CREATE  FUNCTION booking_internal."new_link_key"() RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'new_link_key_wrapper';

CREATE  FUNCTION booking_internal."sign_link"(
	"p_key" bytea, /* & [u8] */
	"p_key_id" INT, /* i32 */
	"p_action" TEXT, /* & str */
	"p_tenant_id" uuid, /* pgrx :: Uuid */
	"p_appointment_id" uuid, /* pgrx :: Uuid */
	"p_starts_at" timestamp with time zone, /* TimestampWithTimeZone */
	"p_expires_at" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sign_link_wrapper';

CREATE  FUNCTION booking_internal."parse_link"(
	"p_token" TEXT /* Option < & str > */
) RETURNS TABLE (
	"key_id" INT,  /* i32 */
	"action" TEXT,  /* String */
	"tenant_id" uuid,  /* pgrx :: Uuid */
	"appointment_id" uuid,  /* pgrx :: Uuid */
	"starts_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"digest" bytea  /* Vec < u8 > */
)
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_link_wrapper';

CREATE  FUNCTION booking_internal."link_is_authentic"(
	"p_token" TEXT, /* & str */
	"p_key" bytea /* & [u8] */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'link_is_authentic_wrapper';

CREATE  FUNCTION booking_internal."link_rate_limit"() RETURNS INT /* i32 */
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'link_rate_limit_wrapper';

-- Jobs: a cancelled status, job keys (replace, preserve_run_at, cancel and reschedule by key).
ALTER TABLE booking_admin.jobs DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed', 'dead', 'cancelled')),
    ADD COLUMN replaced_by uuid;
COMMENT ON COLUMN booking_admin.jobs.status IS
    'pending, running, completed, failed (a retry is scheduled at scheduled_at), dead (dead-letter queue), cancelled (by its key before it ran).';
COMMENT ON COLUMN booking_admin.jobs.replaced_by IS
    'Set when enqueue_job replaced this job by its key while it ran: the new job, which took the key over.';
-- The job history has the queue's columns and constraints (LIKE booking_admin.jobs).
ALTER TABLE booking_admin.job_history DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed', 'dead', 'cancelled')),
    ADD COLUMN replaced_by uuid;
COMMENT ON COLUMN booking_admin.job_history.status IS
    'pending, running, completed, failed (a retry is scheduled at scheduled_at), dead (dead-letter queue), cancelled (by its key before it ran).';
COMMENT ON COLUMN booking_admin.job_history.replaced_by IS
    'Set when enqueue_job replaced this job by its key while it ran: the new job, which took the key over.';

-- enqueue_job gains p_job_key_mode: the old signature goes.
DROP FUNCTION booking_admin.enqueue_job(text, text, jsonb, integer, timestamptz, integer, integer, numeric, integer,
                                        boolean, integer, uuid, text);
CREATE FUNCTION booking_admin.enqueue_job(
    p_name text,
    p_handler text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT 5,
    p_run_at timestamptz DEFAULT now(),
    p_max_retries integer DEFAULT 3,
    p_retry_delay_ms integer DEFAULT 1000,
    p_retry_backoff_multiplier numeric DEFAULT 2.0,
    p_max_delay_ms integer DEFAULT 300000,
    p_jitter boolean DEFAULT true,
    p_timeout_ms integer DEFAULT 30000,
    p_tenant_id uuid DEFAULT NULL,
    p_unique_key text DEFAULT NULL,
    p_job_key_mode text DEFAULT 'unsafe_dedupe'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
    v_old booking_admin.jobs;
BEGIN
    IF p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'job name and handler must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_job_key_mode IS NULL OR p_job_key_mode NOT IN ('unsafe_dedupe', 'replace', 'preserve_run_at') THEN
        RAISE EXCEPTION 'job_key_mode must be unsafe_dedupe, replace or preserve_run_at, not %',
            coalesce(quote_literal(p_job_key_mode), 'NULL') USING ERRCODE = '22023';
    END IF;
    -- Twice at most: a replace that finds no holder of the key inserts, and when a concurrent
    -- call inserted the key first (the insert then does nothing), it replaces that job instead.
    FOR attempt IN 1..2 LOOP
        IF p_unique_key IS NOT NULL AND p_job_key_mode <> 'unsafe_dedupe' THEN
            SELECT * INTO v_old FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
            FOR UPDATE;
            IF FOUND AND v_old.status <> 'running' THEN
                UPDATE booking_admin.jobs SET
                    name = p_name, handler = p_handler, payload = coalesce(p_payload, '{}'), tenant_id = p_tenant_id,
                    priority = coalesce(p_priority, 5),
                    scheduled_at = CASE WHEN p_job_key_mode = 'preserve_run_at' THEN scheduled_at ELSE coalesce(p_run_at, now()) END,
                    max_retries = p_max_retries, retry_delay_ms = p_retry_delay_ms,
                    retry_backoff_multiplier = p_retry_backoff_multiplier, max_delay_ms = p_max_delay_ms, jitter = p_jitter,
                    timeout_ms = p_timeout_ms, status = 'pending', retry_count = 0, error_message = NULL, updated_at = now()
                WHERE id = v_old.id;
                PERFORM booking_admin.wake_workers_at_commit();
                RETURN v_old.id;
            ELSIF FOUND THEN
                -- Running: it cannot be changed under its worker. It hands its key over and will
                -- not be retried; the new job runs after it as scheduled.
                v_id := gen_random_uuid();
                UPDATE booking_admin.jobs SET unique_key = NULL, replaced_by = v_id,
                    max_retries = least(max_retries, retry_count), updated_at = now()
                WHERE id = v_old.id;
            END IF;
        END IF;
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key)
        VALUES (coalesce(v_id, gen_random_uuid()), p_name, p_handler, coalesce(p_payload, '{}'), p_tenant_id,
                coalesce(p_priority, 5), coalesce(p_run_at, now()), p_max_retries, p_retry_delay_ms,
                p_retry_backoff_multiplier, p_max_delay_ms, p_jitter, p_timeout_ms, p_unique_key)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NOT NULL THEN
            PERFORM booking_admin.wake_workers_at_commit();
            RETURN v_id;
        END IF;
        IF p_job_key_mode = 'unsafe_dedupe' THEN
            -- The same logical job is already queued: hand back its id instead of a second copy.
            SELECT j.id INTO v_id FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed');
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job key % is being changed concurrently; retry', p_unique_key USING ERRCODE = '40001';
END $$;

CREATE FUNCTION booking_admin.cancel_job_by_key(p_unique_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
BEGIN
    IF p_unique_key IS NULL THEN
        RAISE EXCEPTION 'the job key must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v FROM booking_admin.jobs j
    WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('cancelled', false, 'job_id', NULL, 'status', NULL);
    ELSIF v.status = 'running' THEN
        RETURN jsonb_build_object('cancelled', false, 'job_id', v.id, 'status', 'running');
    END IF;
    UPDATE booking_admin.jobs SET status = 'cancelled', completed_at = clock_timestamp(),
        error_message = 'cancelled by its job key', updated_at = now()
    WHERE id = v.id;
    RETURN jsonb_build_object('cancelled', true, 'job_id', v.id, 'status', 'cancelled');
END $$;

CREATE FUNCTION booking_admin.reschedule_job_by_key(p_unique_key text, p_run_at timestamptz) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
BEGIN
    IF p_unique_key IS NULL OR p_run_at IS NULL OR NOT isfinite(p_run_at) THEN
        RAISE EXCEPTION 'the job key and a finite run_at are required' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v FROM booking_admin.jobs j
    WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no queued job holds the key %', p_unique_key USING ERRCODE = 'P0002';
    ELSIF v.status = 'running' THEN
        RAISE EXCEPTION 'job % (key %) is running', v.id, p_unique_key USING ERRCODE = '55000',
            HINT = 'enqueue_job with job_key_mode replace queues a new job for the key';
    END IF;
    UPDATE booking_admin.jobs SET scheduled_at = p_run_at, updated_at = now() WHERE id = v.id;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN v.id;
END $$;

CREATE OR REPLACE FUNCTION booking_admin.job_stats() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
    SELECT jsonb_build_object(
        -- Completed jobs are counted in the queue and in the history they move to.
        'by_status', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM booking_admin.jobs j WHERE j.status = s)
                                                 + CASE WHEN s = 'completed' THEN (SELECT count(*) FROM booking_admin.job_history) ELSE 0 END)
                      FROM unnest(ARRAY['pending', 'running', 'completed', 'failed', 'dead', 'cancelled']) s),
        'avg_duration_ms', (SELECT round(avg(d.ms)::numeric, 1) FROM booking_admin.completed_job_durations() d),
        'p95_duration_ms', (SELECT round((percentile_cont(0.95) WITHIN GROUP (ORDER BY d.ms))::numeric, 1)
                            FROM booking_admin.completed_job_durations() d),
        'oldest_pending_age_ms', (SELECT round((extract(epoch FROM now() - min(scheduled_at)) * 1000)::numeric)
                                  FROM booking_admin.jobs WHERE status IN ('pending', 'failed') AND scheduled_at <= now()))
$$;

CREATE OR REPLACE FUNCTION booking_admin.handle_data_cleanup(p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_jobs integer;
    v_cancelled integer;
    v_dead integer;
    v_history integer;
BEGIN
    DELETE FROM booking_admin.jobs WHERE status = 'completed'
        AND completed_at < now() - make_interval(days => coalesce((p_payload->>'completed_jobs_days')::int, 7));
    GET DIAGNOSTICS v_jobs = ROW_COUNT;
    DELETE FROM booking_admin.jobs WHERE status = 'cancelled'
        AND completed_at < now() - make_interval(days => coalesce((p_payload->>'completed_jobs_days')::int, 7));
    GET DIAGNOSTICS v_cancelled = ROW_COUNT;
    DELETE FROM booking_admin.jobs WHERE status = 'dead'
        AND updated_at < now() - make_interval(days => coalesce((p_payload->>'dead_jobs_days')::int, 30));
    GET DIAGNOSTICS v_dead = ROW_COUNT;
    DELETE FROM booking_admin.maintenance_executions
    WHERE executed_at < now() - make_interval(days => coalesce((p_payload->>'history_days')::int, 30));
    GET DIAGNOSTICS v_history = ROW_COUNT;
    RETURN jsonb_build_object('completed_jobs', v_jobs, 'cancelled_jobs', v_cancelled, 'dead_jobs', v_dead,
                              'maintenance_history', v_history);
END $$;

-- Cron schedules in a time zone for the maintenance scheduler.
ALTER TABLE booking_admin.scheduler_job_info ALTER COLUMN delay_ms SET DEFAULT 60000,
    ADD COLUMN cron text CHECK (cron IS NULL OR cron = booking_admin.check_cron(cron)),
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (booking.is_valid_timezone(timezone));
COMMENT ON TABLE booking_admin.scheduler_job_info IS
    'One row per scheduled operation: function(settings jsonb) RETURNS integer (rows processed) is called every delay_ms, or at the times of its cron expression in its time zone. Insert a row to schedule a new operation.';

CREATE FUNCTION booking_admin.scheduler_clock() RETURNS timestamptz
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('booking_engine.now', true), '')::timestamptz, clock_timestamp())
$$;

CREATE FUNCTION booking_admin.scheduler_job_cron() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.cron IS NOT NULL THEN
        NEW.cron := booking_admin.check_cron(NEW.cron);
        NEW.next_run_at := coalesce(booking_admin.cron_next(NEW.cron, NEW.timezone, booking_admin.scheduler_clock()), 'infinity');
    ELSIF TG_OP = 'UPDATE' AND OLD.cron IS NOT NULL THEN
        -- Back to an interval, from the server's clock.
        NEW.next_run_at := clock_timestamp() + make_interval(secs => NEW.delay_ms / 1000.0);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER scheduler_job_info_cron BEFORE INSERT OR UPDATE OF cron, timezone ON booking_admin.scheduler_job_info
    FOR EACH ROW EXECUTE FUNCTION booking_admin.scheduler_job_cron();

CREATE FUNCTION booking_admin.due_operations() RETURNS TABLE (job_name text, timeout_ms integer)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.job_name, j.timeout_ms FROM booking_admin.scheduler_job_info j
    WHERE j.enabled
      AND j.next_run_at <= CASE WHEN j.cron IS NULL THEN clock_timestamp() ELSE booking_admin.scheduler_clock() END
    ORDER BY j.next_run_at, j.job_name
$$;

CREATE FUNCTION booking_admin.scheduler_wait_ms() RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (extract(epoch FROM min(j.next_run_at - CASE WHEN j.cron IS NULL THEN clock_timestamp()
                                                        ELSE booking_admin.scheduler_clock() END)) * 1000)::int8
    FROM booking_admin.scheduler_job_info j WHERE j.enabled
$$;

CREATE OR REPLACE FUNCTION booking_admin.run_maintenance(p_operation text, p_triggered_by text DEFAULT 'manual') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    j booking_admin.scheduler_job_info;
    e booking_admin.maintenance_executions;
    v_function regprocedure;
    v_started timestamptz := clock_timestamp();
    v_count integer := 0;
    v_error text;
    v_until timestamptz;
BEGIN
    IF p_triggered_by IS NULL OR p_triggered_by NOT IN ('scheduler', 'manual') THEN
        RAISE EXCEPTION 'triggered_by must be ''scheduler'' or ''manual''' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO j FROM booking_admin.scheduler_job_info WHERE job_name = p_operation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown maintenance operation %', coalesce(quote_literal(p_operation), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'One of: ' || (SELECT string_agg(job_name, ', ' ORDER BY job_name) FROM booking_admin.scheduler_job_info);
    END IF;
    IF j.respects_freeze THEN
        -- The scheduler has nobody to refuse: it defers. A manual run meets the window's action.
        v_until := CASE WHEN p_triggered_by = 'scheduler'
                        THEN (booking_admin.freeze_state(NULL) ->> 'until')::timestamptz
                        ELSE booking_admin.freeze_gate(format('maintenance operation %s', p_operation)) END;
        IF v_until IS NOT NULL THEN
            -- At least 5 seconds ahead, as booking_admin.defer_job (a held clock must not spin it).
            UPDATE booking_admin.scheduler_job_info SET next_run_at = greatest(v_until, clock_timestamp() + interval '5 seconds')
            WHERE job_name = p_operation;
            RETURN jsonb_build_object('success', false, 'deferred_until', v_until,
                                      'message', format('Operation %s is deferred by a freeze window until %s', p_operation, v_until),
                                      'data', NULL);
        END IF;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('booking_engine.maintenance'), hashtext(p_operation)) THEN
        RETURN jsonb_build_object('success', false, 'message', format('Operation %s is already running', p_operation),
                                  'data', NULL);
    END IF;
    BEGIN
        v_function := to_regprocedure(j.function || '(jsonb)');
        IF v_function IS NULL THEN
            RAISE EXCEPTION 'function %(jsonb) does not exist', j.function USING ERRCODE = '42883';
        END IF;
        EXECUTE format('SELECT %s($1)', v_function::oid::regproc) INTO v_count USING j.settings;
    EXCEPTION WHEN query_canceled OR others THEN
        v_error := SQLERRM;
    END;
    INSERT INTO booking_admin.maintenance_executions (operation, executed_at, status, processed_count, error_message,
                                                      execution_time_ms, triggered_by)
    VALUES (p_operation, v_started, CASE WHEN v_error IS NULL THEN 'SUCCESS' ELSE 'FAILED' END,
            coalesce(v_count, 0), v_error,
            round(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer, p_triggered_by)
    RETURNING * INTO e;
    UPDATE booking_admin.scheduler_job_info
    SET status = CASE WHEN v_error IS NULL THEN 'idle' ELSE 'failed' END,
        last_run_at = v_started, last_duration_ms = e.execution_time_ms, last_error = v_error,
        consecutive_failures = CASE WHEN v_error IS NULL THEN 0 ELSE consecutive_failures + 1 END,
        run_count = run_count + 1,
        server_instance = coalesce(inet_server_addr()::text, 'local') || ':' || current_setting('port'),
        -- A failure is retried sooner, with backoff, up to max_retries times in a row; then the
        -- next time of its cron schedule, or its delay.
        next_run_at = CASE
            WHEN v_error IS NOT NULL AND consecutive_failures < max_retries
            THEN CASE WHEN cron IS NULL THEN clock_timestamp() ELSE booking_admin.scheduler_clock() END
                 + make_interval(secs => booking_admin.retry_delay_ms(1000, 2, consecutive_failures, delay_ms, NULL) / 1000.0)
            WHEN cron IS NOT NULL
            THEN coalesce(booking_admin.cron_next(cron, timezone, booking_admin.scheduler_clock()), 'infinity')
            ELSE clock_timestamp() + make_interval(secs => delay_ms / 1000.0) END
    WHERE job_name = p_operation;
    RETURN jsonb_build_object(
        'success', v_error IS NULL,
        'message', CASE WHEN v_error IS NULL THEN 'Operation completed successfully' ELSE 'Operation failed' END,
        'data', booking_admin.maintenance_json(e, j.description));
END $$;

-- configure_scheduler_job gains p_cron and p_timezone.
DROP FUNCTION booking_admin.configure_scheduler_job(text, integer, integer, integer, boolean);
CREATE FUNCTION booking_admin.configure_scheduler_job(p_name text, p_delay_ms integer DEFAULT NULL,
                                                      p_max_retries integer DEFAULT NULL,
                                                      p_timeout_ms integer DEFAULT NULL,
                                                      p_enabled boolean DEFAULT NULL,
                                                      p_cron text DEFAULT NULL,
                                                      p_timezone text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
BEGIN
    IF p_delay_ms < 100 OR p_max_retries < 0 OR p_timeout_ms < 1 THEN
        RAISE EXCEPTION 'delay_ms must be at least 100, max_retries at least 0, timeout_ms at least 1'
            USING ERRCODE = '22023';
    END IF;
    IF p_timezone IS NOT NULL AND NOT booking.is_valid_timezone(p_timezone) THEN
        RAISE EXCEPTION 'time zone "%" not recognized', p_timezone USING ERRCODE = '22023';
    END IF;
    UPDATE booking_admin.scheduler_job_info
    SET delay_ms = coalesce(p_delay_ms, delay_ms),
        max_retries = coalesce(p_max_retries, max_retries),
        timeout_ms = coalesce(p_timeout_ms, timeout_ms),
        enabled = coalesce(p_enabled, enabled),
        -- (The cron trigger sets the next run of a cron schedule.)
        cron = CASE WHEN p_cron IS NULL THEN cron ELSE nullif(btrim(p_cron), '') END,
        timezone = coalesce(p_timezone, timezone),
        -- A shorter delay applies from now, not after the old, longer wait.
        next_run_at = CASE WHEN cron IS NULL AND p_cron IS NULL
                           THEN least(next_run_at, clock_timestamp() + make_interval(secs => coalesce(p_delay_ms, delay_ms) / 1000.0))
                           ELSE next_run_at END
    WHERE job_name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown scheduler job %', coalesce(quote_literal(p_name), 'NULL') USING ERRCODE = 'P0002';
    END IF;
    PERFORM booking_admin.wake_workers_at_commit();
    RETURN booking_admin.scheduler_job(p_name);
END $$;

-- Delivery: the SMS channel, two event types and their default templates.
INSERT INTO booking_admin.delivery_event_types (event_type, description) VALUES
    ('booking.reminder', 'A reminder rule fell due for an appointment (sql/reminders.sql)'),
    ('staff.agenda', 'A staff member''s agenda of the day (sql/reminders.sql)');
ALTER TABLE booking_admin.delivery_endpoints DROP CONSTRAINT delivery_endpoints_channel_check,
    ADD CONSTRAINT delivery_endpoints_channel_check CHECK (channel IN ('webhook', 'slack', 'email', 'sms')),
    ADD COLUMN settings jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT delivery_endpoints_check2 CHECK ((channel = 'sms') = (settings ? 'provider'));
CREATE TABLE booking_admin.delivery_credentials (
    endpoint_id uuid PRIMARY KEY REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    password    text,
    token       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.delivery_credentials', '');
ALTER TABLE booking_admin.deliveries ADD COLUMN recipient text, ADD COLUMN provider_message_id text,
    ADD COLUMN receipt_status text, ADD COLUMN receipt_at timestamptz;
CREATE INDEX deliveries_provider_message_idx ON booking_admin.deliveries_default (endpoint_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
ALTER TABLE booking_admin.delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check,
    ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('delivered', 'retry', 'dead', 'gone', 'interrupted', 'suppressed'));
INSERT INTO booking_admin.message_templates (tenant_id, event_type, subject, body_text, body_html) VALUES
    (NULL, 'booking.reminder', 'Reminder: {{service_name}} at {{tenant_name}}, {{starts_at_local}}',
     'Reminder from {{tenant_name}}: your {{service_name}} with {{staff_name}} is on {{starts_at_local}} ({{time_zone}}).',
     '<p>Hello {{customer_name}},</p><p>a reminder of your <b>{{service_name}}</b> with {{staff_name}} on <b>{{starts_at_local}}</b> ({{time_zone}}).</p><p>{{tenant_name}}</p>'),
    (NULL, 'staff.agenda', 'Your agenda for {{date_local}}: {{appointment_count}} appointments',
     E'Good morning {{staff_name}},\n\n{{agenda}}\n\n{{tenant_name}}',
     '<p>Good morning {{staff_name}},</p><pre>{{agenda}}</pre><p>{{tenant_name}}</p>');

CREATE OR REPLACE FUNCTION booking_admin.fan_out_events(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_since timestamptz;
    v_tenants uuid[];
    v_ids uuid[];
    v_types text[];
    v_payloads jsonb[];
    v_created timestamptz[];
BEGIN
    -- One expansion at a time: the worker and a call by hand never expand an event twice.
    PERFORM pg_advisory_xact_lock(hashtext('booking_engine.fan_out_events'));
    SELECT min(s.enabled_at) INTO v_since FROM booking_admin.delivery_endpoints s WHERE s.enabled;
    IF v_since IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(e.tenant_id), array_agg(e.id), array_agg(e.event_type), array_agg(e.payload), array_agg(e.created_at)
    INTO v_tenants, v_ids, v_types, v_payloads, v_created
    FROM (SELECT e.tenant_id, e.id, e.event_type, e.payload, e.created_at FROM booking.events e
          WHERE e.fanned_out_at IS NULL AND e.created_at >= v_since
          ORDER BY e.created_at LIMIT greatest(p_limit, 1)) e;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO booking_admin.deliveries (endpoint_id, tenant_id, event_id, message_id, event_type, payload, event_created_at)
    SELECT s.id, e.tenant_id, e.id, 'msg_' || replace(e.id::text, '-', ''), e.event_type, e.payload, e.created_at
    FROM unnest(v_tenants, v_ids, v_types, v_payloads, v_created) AS e (tenant_id, id, event_type, payload, created_at)
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

CREATE OR REPLACE FUNCTION booking_internal.create_endpoint(p_tenant_id uuid, p_url text, p_event_types text[], p_channel text,
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

CREATE OR REPLACE FUNCTION booking_internal.change_endpoint(p_endpoint booking_admin.delivery_endpoints, p_changes jsonb) RETURNS jsonb
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

-- PL/pgSQL, not SQL: on a Citus coordinator its joins read distributed tables by the tenant
-- given as an argument, which Citus cannot plan in a SQL function's parameterised statement.
CREATE OR REPLACE FUNCTION booking_admin.delivery_context(p_tenant_id uuid, p_event_type text, p_payload jsonb) RETURNS jsonb
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

CREATE FUNCTION booking.customers_phone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.phone := booking_internal.normalize_phone(nullif(btrim(NEW.phone), ''));
    RETURN NEW;
END $$;
CREATE TRIGGER customers_phone BEFORE INSERT OR UPDATE OF phone ON booking.customers
    FOR EACH ROW WHEN (NEW.phone IS NOT NULL) EXECUTE FUNCTION booking.customers_phone();

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

CREATE FUNCTION booking_admin.sms_opted_out(p_tenant_id uuid, p_phone text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM booking_admin.sms_opt_outs o
                   WHERE o.phone = p_phone AND (o.tenant_id = p_tenant_id OR o.tenant_id IS NULL))
$$;
REVOKE ALL ON FUNCTION booking_admin.sms_opted_out(uuid, text) FROM PUBLIC;

CREATE TABLE booking_admin.sms_inbound_seen (
    endpoint_id uuid NOT NULL REFERENCES booking_admin.delivery_endpoints (id) ON DELETE CASCADE,
    webhook_id  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    result      jsonb,
    PRIMARY KEY (endpoint_id, webhook_id)
);
CREATE INDEX sms_inbound_seen_received_idx ON booking_admin.sms_inbound_seen (received_at);

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

GRANT SELECT, INSERT, DELETE ON booking_admin.sms_opt_outs TO booking_operator;
GRANT EXECUTE ON FUNCTION booking_internal.normalize_phone(text) TO booking_operator;

-- Booking: confirm and cancel of a locked appointment, shared with the signed links.
CREATE OR REPLACE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking.cancel_locked_appointment(
        booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id), p_reason, p_idempotency_key);
END $$;

CREATE FUNCTION booking.cancel_locked_appointment(p_appt booking.appointments, p_reason text, p_idempotency_key text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_appt booking.appointments := p_appt;
    v_op uuid;
    v_early jsonb;
BEGIN
    SELECT c.operation_id, c.early_result INTO v_op, v_early
    FROM booking.start_change(v_appt, p_idempotency_key, 'cancel',
        jsonb_build_object('appointment_id', v_appt.id, 'reason', p_reason),
        'Cancelling', 'cancelled', 'cancellation_deadline_hours') c;
    IF v_early IS NOT NULL THEN
        RETURN v_early;
    END IF;
    UPDATE booking.appointments
    SET status = 'cancelled', cancelled_at = now(), cancellation_reason = p_reason
    WHERE tenant_id = v_appt.tenant_id AND id = v_appt.id
    RETURNING * INTO v_appt;
    PERFORM booking.emit_event(v_appt.tenant_id, 'booking.cancelled', jsonb_build_object(
        'appointment_id', v_appt.id, 'customer_id', v_appt.customer_id, 'staff_id', v_appt.staff_id,
        'starts_at', v_appt.starts_at, 'ends_at', v_appt.ends_at, 'reason', p_reason));
    PERFORM booking.offer_freed_slot(v_appt);
    RETURN booking.finish_operation('booking.cancel', v_appt.tenant_id, v_op, jsonb_build_object(
        'success', true, 'operation_id', v_op, 'appointment', booking.appointment_json(v_appt)), v_appt.id);
END $$;
REVOKE ALL ON FUNCTION booking.cancel_locked_appointment(booking.appointments, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION booking_internal.confirm_appointment(p_appointment_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking.confirm_locked_appointment(booking.appointment_for_change(p_appointment_id, 'booking.confirm', true),
                                              'booking.confirm');
END $$;

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

-- Reminders (sql/reminders.sql, whole: every object in it is new).
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

-- Their entry points (sql/api.sql).
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

-- Citus: reminder rules, reminders and messaging settings are distributed with the tenant.
CREATE OR REPLACE FUNCTION booking_admin.citus_layout(OUT kind text, OUT object text, OUT distribution_argument text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    VALUES ('reference', 'booking.global_policies', NULL),
           ('distributed', 'booking.tenants', 'id'),
           ('distributed', 'booking.staff', 'tenant_id'),
           ('distributed', 'booking.services', 'tenant_id'),
           ('distributed', 'booking.customers', 'tenant_id'),
           ('distributed', 'booking.staff_services', 'tenant_id'),
           ('distributed', 'booking.staff_schedules', 'tenant_id'),
           ('distributed', 'booking.schedule_overrides', 'tenant_id'),
           ('distributed', 'booking.staff_time_off', 'tenant_id'),
           ('distributed', 'booking.holidays', 'tenant_id'),
           ('distributed', 'booking.booking_policies', 'tenant_id'),
           ('distributed', 'booking.appointments', 'tenant_id'),
           ('distributed', 'booking.booking_operations', 'tenant_id'),
           ('distributed', 'booking.events', 'tenant_id'),
           ('distributed', 'booking.waitlist', 'tenant_id'),
           ('distributed', 'booking.waitlist_notifications', 'tenant_id'),
           ('distributed', 'booking.slot_store_settings', 'tenant_id'),
           ('distributed', 'booking.availability_slot_days', 'tenant_id'),
           ('distributed', 'booking.availability_slots', 'tenant_id'),
           ('distributed', 'booking.tenant_members', 'tenant_id'),
           ('distributed', 'booking.tenant_invitations', 'tenant_id'),
           ('distributed', 'booking.reminder_rules', 'tenant_id'),
           ('distributed', 'booking.reminders', 'tenant_id'),
           ('distributed', 'booking.messaging_settings', 'tenant_id'),
           ('distributed', 'booking.resources', 'tenant_id'),
           ('distributed', 'booking.resource_groups', 'tenant_id'),
           ('distributed', 'booking.resource_group_members', 'tenant_id'),
           ('distributed', 'booking.resource_closures', 'tenant_id'),
           ('distributed', 'booking.service_requirements', 'tenant_id'),
           ('distributed', 'booking.booking_settings', 'tenant_id'),
           ('distributed', 'booking.booking_caps', 'tenant_id'),
           ('distributed', 'booking.cap_locks', 'tenant_id'),
           ('distributed', 'booking.holds', 'tenant_id'),
           ('distributed', 'booking.assignments', 'tenant_id'),
           ('function', 'booking.create_tenant_booking(uuid, text, jsonb)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_available_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.reschedule_tenant_appointment(uuid, uuid, timestamptz, text)', 'p_tenant_id'),
           ('function', 'booking.cancel_tenant_appointment(uuid, uuid, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_booking_page(uuid)', 'p_tenant_id'),
           ('function', 'booking.register_customer(uuid, text, text, text)', 'p_tenant_id'),
           ('function', 'booking.get_tenant_any_staff_slots(uuid, date, uuid, uuid)', 'p_tenant_id'),
           ('function', 'booking.create_hold(uuid, jsonb)', 'p_tenant_id')
$$;

-- The operators' job keys and cron schedules (sql/operator.sql).
GRANT EXECUTE ON FUNCTION booking_admin.enqueue_job, booking_admin.cancel_job_by_key, booking_admin.reschedule_job_by_key,
    booking_admin.configure_scheduler_job, booking_admin.check_cron, booking_admin.cron_next, booking_admin.cron_runs,
    booking_admin.scheduler_clock
TO booking_operator;
GRANT UPDATE (cron, timezone) ON booking_admin.scheduler_job_info TO booking_operator;

-- As sql/finalize.sql leaves them: row-level security on the new tables of booking, the
-- application functions' grants, service_role's copy of booking_operator's, no PUBLIC execute
-- in booking_admin.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind = 'r' LOOP
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

SELECT booking_admin.grant_api_roles();
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA booking_admin FROM PUBLIC;

-- Tracing and reminders together (0.1.1): the functions both changed, as the feature files define them
-- (the job keys' enqueue_job with the enqueuer's trace context, fan_out_events, cancel_tenant_appointment,
-- and the cancellation's spans in cancel_locked_appointment, which reminders split out of cancel_appointment).
-- booking_admin.enqueue_job as sql/jobs.sql defines it
CREATE OR REPLACE FUNCTION booking_admin.enqueue_job(
    p_name text,
    p_handler text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT 5,
    p_run_at timestamptz DEFAULT now(),
    p_max_retries integer DEFAULT 3,
    p_retry_delay_ms integer DEFAULT 1000,
    p_retry_backoff_multiplier numeric DEFAULT 2.0,
    p_max_delay_ms integer DEFAULT 300000,
    p_jitter boolean DEFAULT true,
    p_timeout_ms integer DEFAULT 30000,
    p_tenant_id uuid DEFAULT NULL,
    p_unique_key text DEFAULT NULL,
    p_job_key_mode text DEFAULT 'unsafe_dedupe'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v_id uuid;
    v_traceparent text;
    v_tracestate text;
    v_old booking_admin.jobs;
BEGIN
    IF p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'job name and handler must not be NULL' USING ERRCODE = '22023';
    END IF;
    IF p_job_key_mode IS NULL OR p_job_key_mode NOT IN ('unsafe_dedupe', 'replace', 'preserve_run_at') THEN
        RAISE EXCEPTION 'job_key_mode must be unsafe_dedupe, replace or preserve_run_at, not %',
            coalesce(quote_literal(p_job_key_mode), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF booking_internal.tracing() THEN
        SELECT t.traceparent, t.tracestate INTO v_traceparent, v_tracestate FROM booking_internal.trace_context() t;
    END IF;
    -- Twice at most: a replace that finds no holder of the key inserts, and when a concurrent
    -- call inserted the key first (the insert then does nothing), it replaces that job instead.
    FOR attempt IN 1..2 LOOP
        IF p_unique_key IS NOT NULL AND p_job_key_mode <> 'unsafe_dedupe' THEN
            SELECT * INTO v_old FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed')
            FOR UPDATE;
            IF FOUND AND v_old.status <> 'running' THEN
                UPDATE booking_admin.jobs SET
                    name = p_name, handler = p_handler, payload = coalesce(p_payload, '{}'), tenant_id = p_tenant_id,
                    priority = coalesce(p_priority, 5),
                    scheduled_at = CASE WHEN p_job_key_mode = 'preserve_run_at' THEN scheduled_at ELSE coalesce(p_run_at, now()) END,
                    max_retries = p_max_retries, retry_delay_ms = p_retry_delay_ms,
                    retry_backoff_multiplier = p_retry_backoff_multiplier, max_delay_ms = p_max_delay_ms, jitter = p_jitter,
                    timeout_ms = p_timeout_ms, status = 'pending', retry_count = 0, error_message = NULL,
                    traceparent = v_traceparent, tracestate = v_tracestate, updated_at = now()
                WHERE id = v_old.id;
                PERFORM booking_admin.wake_workers_at_commit();
                RETURN v_old.id;
            ELSIF FOUND THEN
                -- Running: it cannot be changed under its worker. It hands its key over and will
                -- not be retried; the new job runs after it as scheduled.
                v_id := gen_random_uuid();
                UPDATE booking_admin.jobs SET unique_key = NULL, replaced_by = v_id,
                    max_retries = least(max_retries, retry_count), updated_at = now()
                WHERE id = v_old.id;
            END IF;
        END IF;
        INSERT INTO booking_admin.jobs (id, name, handler, payload, tenant_id, priority, scheduled_at, max_retries,
                                        retry_delay_ms, retry_backoff_multiplier, max_delay_ms, jitter, timeout_ms,
                                        unique_key, traceparent, tracestate)
        VALUES (coalesce(v_id, gen_random_uuid()), p_name, p_handler, coalesce(p_payload, '{}'), p_tenant_id,
                coalesce(p_priority, 5), coalesce(p_run_at, now()), p_max_retries, p_retry_delay_ms,
                p_retry_backoff_multiplier, p_max_delay_ms, p_jitter, p_timeout_ms, p_unique_key,
                v_traceparent, v_tracestate)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'failed')
        DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NOT NULL THEN
            PERFORM booking_admin.wake_workers_at_commit();
            RETURN v_id;
        END IF;
        IF p_job_key_mode = 'unsafe_dedupe' THEN
            -- The same logical job is already queued: hand back its id instead of a second copy.
            SELECT j.id INTO v_id FROM booking_admin.jobs j
            WHERE j.unique_key = p_unique_key AND j.status IN ('pending', 'running', 'failed');
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'job key % is being changed concurrently; retry', p_unique_key USING ERRCODE = '40001';
END $$;

-- booking_admin.fan_out_events as sql/delivery.sql defines it
CREATE OR REPLACE FUNCTION booking_admin.fan_out_events(p_limit integer DEFAULT 1000) RETURNS integer
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

-- booking_internal.cancel_tenant_appointment as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking_internal.cancel_tenant_appointment(p_tenant_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL,
                                                  p_idempotency_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    RETURN booking.cancel_locked_appointment(
        booking.appointment_for_change(p_appointment_id, 'booking.cancel', false, p_tenant_id), p_reason, p_idempotency_key);
END $$;

-- booking.cancel_locked_appointment as sql/booking.sql defines it
CREATE OR REPLACE FUNCTION booking.cancel_locked_appointment(p_appt booking.appointments, p_reason text, p_idempotency_key text)
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

-- A runner that started after the scheduler's transaction first read pg_stat_activity is no longer
-- taken for dead (recover_stale_jobs reads the activity afresh).
CREATE OR REPLACE FUNCTION booking_admin.recover_stale_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    v booking_admin.jobs;
    n integer := 0;
BEGIN
    -- pg_stat_activity is read once per transaction and kept: read earlier in the caller's
    -- transaction (the scheduler asks whether a restore is running), it would not show a runner
    -- that started since and has claimed a job this statement sees, and that job would be
    -- declared dead. A fresh read shows every runner that claimed what this statement sees.
    PERFORM pg_stat_clear_snapshot();
    FOR v IN
        SELECT j.* FROM booking_admin.jobs j
        WHERE j.status = 'running'
          AND (j.locked_at < pg_postmaster_start_time()
               OR CASE WHEN j.locked_by LIKE 'booking_engine runner %'
                       THEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = j.locked_pid
                                        AND a.backend_type = j.locked_by AND a.datname = current_database())
                       ELSE j.heartbeat_at < clock_timestamp() - make_interval(secs => j.timeout_ms / 1000.0 + 5) END)
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM booking_admin.record_failure(v, format('worker %s (pid %s) died or stopped answering', v.locked_by, v.locked_pid));
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

