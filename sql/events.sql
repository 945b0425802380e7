-- The outbox: every booking change writes an event in the same transaction, and wakes
-- listeners at once with a small notification; consumers mark what they dispatched.
CREATE TABLE booking.events (
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    event_type    text NOT NULL CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
    payload       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
) PARTITION BY RANGE (created_at);
-- Rows of months without a partition yet (sql/partitions.sql); partition-maintenance moves them.
-- The key and the indexes are the partitions' (each month's copies the default one's, see
-- booking_admin.create_partition), not the table's: ids are unique by gen_random_uuid(),
-- looked up by (tenant_id, id) or by id alone.
CREATE TABLE booking.events_default PARTITION OF booking.events (
    CONSTRAINT events_pkey PRIMARY KEY (tenant_id, id)
) DEFAULT;
CREATE INDEX events_undispatched_idx ON booking.events_default (created_at) WHERE dispatched_at IS NULL;
CREATE INDEX events_tenant_created_idx ON booking.events_default (tenant_id, created_at);
CREATE INDEX events_id_idx ON booking.events_default (id);
COMMENT ON TABLE booking.events IS
    'Outbox of booking.created, booking.rescheduled, booking.cancelled, waitlist.notified, conflict.detected and the maintenance transitions; NOTIFY booking_events carries {"id", "type"}.';
SELECT pg_catalog.pg_extension_config_dump('booking.events', '');
SELECT pg_catalog.pg_extension_config_dump('booking.events_default', '');

CREATE FUNCTION booking.emit_event(p_tenant_id uuid, p_event_type text, p_payload jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    INSERT INTO booking.events (tenant_id, event_type, payload)
    VALUES (p_tenant_id, p_event_type, coalesce(p_payload, '{}'))
    RETURNING id INTO v_id;
    PERFORM pg_notify('booking_events', json_build_object('id', v_id, 'type', p_event_type)::text);
    RETURN v_id;
END $$;
REVOKE ALL ON FUNCTION booking.emit_event(uuid, text, jsonb) FROM PUBLIC;

-- Outbox: notify each undispatched event on booking_events (again, for listeners that were
-- away) and mark it dispatched, at most batch_size (default 1000) per run.
CREATE FUNCTION booking_admin.handle_outbox_dispatch(p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    r record;
    n integer := 0;
    v_at timestamptz;
BEGIN
    -- Event by event, each marked by its full key: on Citus (the coordinator's job runners) a
    -- row lock or an update must be routed to one tenant's shard. A concurrent dispatcher that
    -- marked an event first leaves nothing to mark here, so each event is notified once.
    FOR r IN
        SELECT e.tenant_id, e.id, e.event_type FROM booking.events e WHERE e.dispatched_at IS NULL
        ORDER BY e.created_at LIMIT coalesce((p_payload->>'batch_size')::int, 1000)
    LOOP
        -- The time as a value: Citus refuses volatile functions in an UPDATE of a distributed table.
        v_at := clock_timestamp();
        UPDATE booking.events e SET dispatched_at = v_at
        WHERE e.tenant_id = r.tenant_id AND e.id = r.id AND e.dispatched_at IS NULL;
        IF FOUND THEN
            PERFORM pg_notify('booking_events', json_build_object('id', r.id, 'type', r.event_type)::text);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('dispatched', n);
END $$;

INSERT INTO booking_admin.job_handlers (handler, kind, function, description) VALUES
    ('outbox_dispatch', 'function', 'booking_admin.handle_outbox_dispatch', 'Notify and mark undispatched booking.events');

-- Monthly partitions, kept a year: the outbox is read while its events are new (dispatch, the
-- delivery fan-out, the waitlist sweep's 48 hours).
INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description)
VALUES ('booking.events', 'created_at', 'month', 3, '365 days', 'The outbox of booking changes');
