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
    CONSTRAINT slot_store_prime_hours_in_order CHECK (prime_start <= prime_end),
    -- The tenant's staff members' and services' own policies for the same two rules, where it
    -- has any: {"staff:<id>" | "service:<id>": {"min_notice": interval, "max_advance": interval}}.
    policy_overrides jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE booking.slot_store_settings IS
    'Slot store per tenant: enabled (off by default), horizon_days (1..366) of slots kept from each staff member''s today, prime hours (staff local time) that boost a slot''s confidence; min_notice and max_advance mirror the tenant''s own policies, NULL when it has none, policy_overrides its staff members'' and services'' (maintained, not set).';

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
-- them: exact hours and 24-hour days; and its staff members' and services' own values of the
-- two.
CREATE FUNCTION booking.slot_store_settings_policies() RETURNS trigger
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
CREATE TRIGGER slot_store_settings_policies BEFORE INSERT OR UPDATE ON booking.slot_store_settings
    FOR EACH ROW EXECUTE FUNCTION booking.slot_store_settings_policies();

-- How far from a booked or blocked range a slot's availability or score can change: a slot
-- conflicts within its length (the longest a staff member has for the service) and buffers,
-- its fit looks one more such length away, its density an hour.
CREATE FUNCTION booking.slot_store_reach(p_tenant_id uuid) RETURNS interval
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
-- widened by the tenant's reach. Where the tenant has caps on staff members or services, a
-- booking counts against its day's or week's cap, which the slots of every staff member on
-- every day of that period read: then every staff member's days of those whole weeks.
CREATE FUNCTION booking.slot_store_touch_spans(p_tenant_ids uuid[], p_staff_ids uuid[], p_spans tstzrange[])
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

-- Claims on staff members and resources (booking.assignments): a hold's staff claim takes its
-- staff member's slots like an appointment (whose own claim the appointments' trigger covers);
-- a resource claim takes the slots of every staff member offering a service that needs that
-- resource, on the days around it.
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

-- The staff-days claims on staff members or resources can change (parallel arrays: a staff
-- claim names its staff member, a resource claim its resource): a staff member's own, and for
-- resources every staff member offering a service that needs one of them (directly or through a
-- group), over every span (tenant by tenant).
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

-- Resources, their closures and groups, services' requirements and the caps: every staff
-- member's horizon of the tenants concerned (they change rarely; what they change is wide).
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
-- notice and advance limit as of now: the staff member's own, else the service's, else the
-- tenant's (kept on its settings row), else the global or builtin one, as the engine counts them
-- (exact hours, 24-hour days); the global ones and "now" read once per query, the global ones
-- from the reference table on the node that runs it.
CREATE VIEW booking.availability_slots_now WITH (security_invoker = true) AS
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

-- The best slots of a service between two staff local dates: free as of now, highest
-- confidence first, with the factors of the score.
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

-- An explicit regeneration, for the tenant's own people: recomputes a staff member's
-- days from p_start_date to p_end_date (within the horizon) and returns how many slots they
-- hold. The store is exact without it; it repairs nothing that is not already right.
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

-- Horizon upkeep: hourly, so that each time zone's new day is added within the hour after its
-- midnight (a run with nothing to add or drop reads the staff list and writes nothing).
CREATE FUNCTION booking_admin.op_extend_slot_horizon(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking.slot_store_extend(NULL)
$$;
INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('extend-slot-horizon', 'Add the slot store''s new days and drop past ones', 'booking_admin.op_extend_slot_horizon', '{}', 3600000, 3, 300000);

-- Anyone may read the store (it holds what get_available_slots tells anyone: slots of active
-- staff offering active services), and the settings of the tenants whose store is on (what the
-- view above needs); a tenant whose store is off is not listed (its id is not public). Only
-- the triggers write them.
CREATE POLICY availability_slots_public_read ON booking.availability_slots FOR SELECT USING (true);
CREATE POLICY slot_store_settings_public_read ON booking.slot_store_settings FOR SELECT USING (enabled);
-- The global and builtin policies are what every booking page tells (deadlines, notice,
-- advance limit): the view above reads them as its caller.
CREATE POLICY global_policies_public_read ON booking.global_policies FOR SELECT USING (true);
GRANT SELECT ON booking.global_policies TO PUBLIC;
GRANT SELECT ON booking.availability_slots, booking.slot_store_settings, booking.availability_slots_now TO PUBLIC;

-- Existing tenants (an upgrade) get their settings and horizon.
INSERT INTO booking.slot_store_settings (tenant_id) SELECT t.id FROM booking.tenants t ON CONFLICT DO NOTHING;
SELECT booking.slot_store_extend(NULL);
