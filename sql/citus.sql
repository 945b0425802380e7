-- Scaling out with Citus (docs/citus.md). Citus is never required: on a
-- single PostgreSQL nothing here runs. On a Citus coordinator, after CREATE EXTENSION citus,
-- the workers added and CREATE EXTENSION booking_engine (which Citus propagates to every node),
-- an operator calls booking_admin.distribute_tables() once.
--
-- What goes where:
-- * every tenant-owned table of `booking` is distributed by tenant_id (tenants by id), all
--   colocated with booking.tenants: one tenant's staff, services, customers, appointments,
--   policies, events, idempotency records and waitlist share one shard group on one worker, so
--   the composite foreign keys, the exclusion constraint and the triggers stay local to it;
-- * booking.global_policies (rows of no tenant) becomes a reference table, copied to every node;
-- * the booking_admin tables (job queue, scheduler, audit logs, tuner, security rules, the
--   delivery ledger, SMS opt-outs, the link keys and their uses) stay local tables of the
--   coordinator, whose background workers alone run jobs, maintenance and delivery; a tenant's
--   reminder rules, reminders and messaging settings are distributed with its appointments,
--   whose triggers write them on the worker.
--   Their links to a distributed table, the foreign keys of jobs, delivery endpoints, message
--   templates and freeze windows to tenants, are dropped (PostgreSQL cannot check a local table
--   against a distributed one); those rows of a deleted tenant are no longer deleted with it.
-- * booking.events is partitioned by month (sql/partitions.sql): Citus distributes its
--   partitions with it, and the coordinator's partition-maintenance creates and drops them
--   (and maintains each worker's own partitioned tables, its audit log).
-- * the read policies with caller lookups (customers, appointments, booking_operations,
--   waitlist) are dropped, see below: on a cluster applications read through the functions.
-- * the application RPCs that name their tenant become distributed functions with that tenant
--   as distribution argument: `SELECT booking.create_tenant_booking(tenant, ...)` outside an
--   explicit transaction runs entirely on the worker holding the tenant (also
--   get_tenant_available_slots, reschedule_tenant_appointment, cancel_tenant_appointment,
--   get_booking_page, register_customer, get_tenant_any_staff_slots, create_hold).

-- The tables in the order Citus needs: a table is distributed after those it references.
CREATE FUNCTION booking_admin.citus_layout(OUT kind text, OUT object text, OUT distribution_argument text)
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

-- Whether distribute_tables has distributed this database (Citus installed, booking.events a
-- Citus table). The delivery worker asks: events written on the workers cannot wake it.
CREATE FUNCTION booking_admin.is_distributed() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.is_citus_table('booking.events')
$$;
REVOKE ALL ON FUNCTION booking_admin.is_distributed() FROM PUBLIC;

-- Distributes the schema as above; returns {"reference_tables", "distributed_tables",
-- "distributed_functions", "newly_distributed"}. Idempotent: what is already a Citus table is
-- left alone (functions are registered again, which Citus accepts). Errors: 0A000 where Citus is
-- not installed, 55000 on a node that is not the coordinator. Needs a superuser (Citus's own
-- functions do); not for PUBLIC.
CREATE FUNCTION booking_admin.distribute_tables() RETURNS jsonb
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
