-- Core schema: tenants, staff, services, schedules, holidays, policies, customers, appointments.
-- The `booking` schema is the extension's own (control file `schema`); `booking_admin` is
-- created in bootstrap.sql.
--
-- Every tenant-owned table's primary key, unique constraints and foreign keys between tenant
-- tables include tenant_id, and rows without a tenant live in tables of their own
-- (global_policies): that is what lets Citus distribute the schema by tenant, with each tenant's
-- rows together on one node (booking_admin.distribute_tables, sql/citus.sql). On a single
-- Postgres it changes nothing but the keys.

-- Every child row carries its tenant; when the caller leaves it out, take it from the parent so
-- that inserts stay short, and let the composite foreign keys prove parent and child agree.
CREATE FUNCTION booking.fill_tenant_from_staff() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    -- Only for a row without its tenant, which Citus could not route anyway: on a cluster the
    -- tenant is always given and this trigger reads nothing.
    IF NEW.tenant_id IS NULL THEN
        SELECT s.tenant_id INTO NEW.tenant_id FROM booking.staff s WHERE s.id = NEW.staff_id;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION booking.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- For the tables the extension seeds itself: an insert that meets an existing row (pg_restore
-- loading the dumped seed, typically) updates that row instead of failing on its key, so the
-- values a dump carried (an operator's settings) win. TG_ARGV[0] names the key column.
CREATE FUNCTION booking.update_seed_instead() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key name := TG_ARGV[0];
    assignments text;
    updated integer;
BEGIN
    SELECT string_agg(format('%I = ($1).%I', a.attname, a.attname), ', ') INTO assignments
    FROM pg_attribute a
    WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> key;
    EXECUTE format('UPDATE %s SET %s WHERE %I = ($1).%I', TG_RELID::regclass, assignments, key, key) USING NEW;
    GET DIAGNOSTICS updated = ROW_COUNT;
    RETURN CASE WHEN updated > 0 THEN NULL ELSE NEW END;
END $$;

CREATE TABLE booking.tenants (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  text NOT NULL,
    timezone              text NOT NULL DEFAULT 'UTC' CHECK (booking.is_valid_timezone(timezone)),
    opening_hours         jsonb NOT NULL DEFAULT '{
        "0": {"is_open": false, "start_time": "09:00", "end_time": "17:00"},
        "1": {"is_open": true,  "start_time": "09:00", "end_time": "17:00"},
        "2": {"is_open": true,  "start_time": "09:00", "end_time": "17:00"},
        "3": {"is_open": true,  "start_time": "09:00", "end_time": "17:00"},
        "4": {"is_open": true,  "start_time": "09:00", "end_time": "17:00"},
        "5": {"is_open": true,  "start_time": "09:00", "end_time": "17:00"},
        "6": {"is_open": false, "start_time": "09:00", "end_time": "17:00"}}'
        CHECK (booking.is_valid_opening_hours(opening_hours)),
    buffer_time_minutes   integer NOT NULL DEFAULT 0 CHECK (buffer_time_minutes BETWEEN 0 AND 720),
    slot_interval_minutes integer NOT NULL DEFAULT 15 CHECK (slot_interval_minutes BETWEEN 1 AND 1440),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- How a customer's own booking starts: 'confirmed' (the default), or 'pending' until the
    -- tenant's people confirm it.
    customer_booking_status text NOT NULL DEFAULT 'confirmed' CHECK (customer_booking_status IN ('pending', 'confirmed')),
    -- Whether staff members may change their own weekly hours, day overrides and time off.
    staff_manage_own_schedule boolean NOT NULL DEFAULT false
);
COMMENT ON COLUMN booking.tenants.opening_hours IS
    'Weekday "0" (Sunday) .. "6" -> {is_open, start_time "HH:MM", end_time "HH:MM" (24:00 allowed)}; a missing day is closed.';
COMMENT ON COLUMN booking.tenants.buffer_time_minutes IS
    'Turnover time kept free after every appointment of this tenant, on top of the service''s own buffers.';

CREATE TABLE booking.staff (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    name       text NOT NULL,
    email      text,
    timezone   text NOT NULL CHECK (booking.is_valid_timezone(timezone)),
    is_active  boolean NOT NULL DEFAULT true,
    user_id    uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- Looked up by id alone by the tenant-less functions (a single node's callers).
CREATE INDEX staff_id_idx ON booking.staff (id);
CREATE INDEX staff_user_idx ON booking.staff (user_id) WHERE user_id IS NOT NULL;
COMMENT ON COLUMN booking.staff.timezone IS 'Defaults to the tenant''s time zone.';

CREATE FUNCTION booking.staff_default_timezone() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, booking, pg_temp AS $$
BEGIN
    IF NEW.timezone IS NULL THEN
        SELECT t.timezone INTO NEW.timezone FROM booking.tenants t WHERE t.id = NEW.tenant_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER staff_default_timezone BEFORE INSERT ON booking.staff
    FOR EACH ROW EXECUTE FUNCTION booking.staff_default_timezone();

CREATE TABLE booking.services (
    id                    uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    name                  text NOT NULL,
    description           text,
    duration_minutes      integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    buffer_before_minutes integer NOT NULL DEFAULT 0 CHECK (buffer_before_minutes BETWEEN 0 AND 720),
    buffer_after_minutes  integer NOT NULL DEFAULT 0 CHECK (buffer_after_minutes BETWEEN 0 AND 720),
    price                 numeric(12, 2) NOT NULL DEFAULT 0 CHECK (price >= 0),
    is_active             boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX services_id_idx ON booking.services (id);

CREATE TABLE booking.staff_services (
    tenant_id  uuid NOT NULL,
    staff_id   uuid NOT NULL,
    service_id uuid NOT NULL,
    -- The staff member's own terms for the service (a senior stylist's cut takes 45 minutes and
    -- costs 90, a junior's 60 and 60); NULL: the service's.
    duration_minutes integer CHECK (duration_minutes BETWEEN 1 AND 1440),
    price      numeric(12, 2) CHECK (price >= 0),
    -- "Any staff" bookings (docs/resources.md): the weight of weighted round robin (0: never
    -- chosen for "any staff", only when named) and the order of the priority strategy, which
    -- also breaks every strategy's ties (lowest first).
    weight     integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 0 AND 100),
    priority   integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    PRIMARY KEY (tenant_id, staff_id, service_id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX staff_services_service_idx ON booking.staff_services (service_id);
CREATE TRIGGER staff_services_tenant BEFORE INSERT ON booking.staff_services
    FOR EACH ROW EXECUTE FUNCTION booking.fill_tenant_from_staff();

CREATE TABLE booking.staff_schedules (
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    staff_id    uuid NOT NULL,
    day_of_week integer NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),
    start_time  time NOT NULL,
    end_time    time NOT NULL,
    timezone    text CHECK (timezone IS NULL OR booking.is_valid_timezone(timezone)),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (start_time < end_time),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX staff_schedules_staff_idx ON booking.staff_schedules (staff_id, day_of_week) WHERE is_active;
-- The foreign key's side (the partial index above skips inactive rows).
CREATE INDEX staff_schedules_staff_fk_idx ON booking.staff_schedules (staff_id);
COMMENT ON TABLE booking.staff_schedules IS
    'Weekly wall-clock working hours; several rows a day are allowed, gaps between them are breaks. day_of_week as extract(dow): 0 = Sunday.';
COMMENT ON COLUMN booking.staff_schedules.timezone IS 'NULL: the staff member''s time zone.';
CREATE TRIGGER staff_schedules_tenant BEFORE INSERT ON booking.staff_schedules
    FOR EACH ROW EXECUTE FUNCTION booking.fill_tenant_from_staff();

CREATE TABLE booking.schedule_overrides (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL,
    staff_id     uuid NOT NULL,
    date         date NOT NULL,
    start_time   time,
    end_time     time,
    is_available boolean NOT NULL DEFAULT false,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((start_time IS NULL) = (end_time IS NULL)),
    CHECK (start_time IS NULL OR start_time < end_time),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX schedule_overrides_staff_date_idx ON booking.schedule_overrides (staff_id, date);
COMMENT ON TABLE booking.schedule_overrides IS
    'One-off changes to a day (staff member''s zone): available rows replace that day''s weekly hours (no times: the whole day); an unavailable row without times is a day off, with times it cuts that time out.';
CREATE TRIGGER schedule_overrides_tenant BEFORE INSERT ON booking.schedule_overrides
    FOR EACH ROW EXECUTE FUNCTION booking.fill_tenant_from_staff();

CREATE TABLE booking.staff_time_off (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL,
    staff_id   uuid NOT NULL,
    period     tstzrange NOT NULL CHECK (NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)),
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX staff_time_off_period_idx ON booking.staff_time_off USING gist (staff_id, period);
CREATE TRIGGER staff_time_off_tenant BEFORE INSERT ON booking.staff_time_off
    FOR EACH ROW EXECUTE FUNCTION booking.fill_tenant_from_staff();

CREATE TABLE booking.holidays (
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    name               text NOT NULL,
    date               date,
    is_recurring       boolean NOT NULL DEFAULT false,
    recurring_month    integer CHECK (recurring_month BETWEEN 1 AND 12),
    recurring_day      integer CHECK (recurring_day BETWEEN 1 AND 31),
    type               text NOT NULL DEFAULT 'public_holiday'
                       CHECK (type IN ('public_holiday', 'company_holiday', 'maintenance', 'closure', 'other')),
    affects_all_staff  boolean NOT NULL DEFAULT true,
    affected_staff_ids uuid[] NOT NULL DEFAULT '{}',
    description        text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE WHEN is_recurring
                THEN recurring_month IS NOT NULL AND recurring_day IS NOT NULL
                     AND make_date(2000, recurring_month, recurring_day) IS NOT NULL
                ELSE date IS NOT NULL END),
    CHECK (affects_all_staff OR cardinality(affected_staff_ids) > 0),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX holidays_tenant_date_idx ON booking.holidays (tenant_id, date);
CREATE INDEX holidays_tenant_recurring_idx ON booking.holidays (tenant_id) WHERE is_recurring;
COMMENT ON TABLE booking.holidays IS
    'Closed days in the tenant''s time zone: one-off (date) or every year (recurring_month, recurring_day; 29 February only in leap years).';

-- Policies: a tenant's own settings here; the global ones (the builtin defaults and an
-- operator's global overrides), which belong to no tenant, in booking.global_policies (a
-- reference table on Citus, copied to every node).
CREATE TABLE booking.booking_policies (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    policy_key   text NOT NULL CHECK (policy_key IN (
                     'cancellation_deadline_hours', 'reschedule_deadline_hours', 'max_reschedules',
                     'advance_booking_limit_days', 'minimum_booking_notice_hours',
                     'waitlist_notification_hours', 'double_booking_prevention')),
    policy_value jsonb NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The scope of the row: the whole tenant (both NULL), one service, or one staff member.
    service_id   uuid,
    staff_id     uuid,
    -- Double booking is refused by the appointments' exclusion constraint, always: the policy
    -- can only say so.
    CHECK (CASE WHEN policy_key = 'double_booking_prevention'
                THEN policy_value = 'true'::jsonb
                ELSE jsonb_typeof(policy_value) = 'number' AND (policy_value)::numeric >= 0 END),
    CONSTRAINT booking_policies_one_scope CHECK (service_id IS NULL OR staff_id IS NULL),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT booking_policies_scope_key UNIQUE NULLS NOT DISTINCT (tenant_id, policy_key, service_id, staff_id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id) ON DELETE CASCADE
);
-- The foreign keys' side (most rows are the tenant's, with neither).
CREATE INDEX booking_policies_service_idx ON booking.booking_policies (service_id) WHERE service_id IS NOT NULL;
CREATE INDEX booking_policies_staff_idx ON booking.booking_policies (staff_id) WHERE staff_id IS NOT NULL;
COMMENT ON TABLE booking.booking_policies IS
    'A tenant''s own policies, for the whole tenant, one service (service_id) or one staff member (staff_id). Precedence for a booking of a staff member and service: the staff member''s row, the service''s, the tenant''s, a global row (booking.global_policies), the builtin default.';

CREATE TABLE booking.global_policies (
    policy_key   text NOT NULL CHECK (policy_key IN (
                     'cancellation_deadline_hours', 'reschedule_deadline_hours', 'max_reschedules',
                     'advance_booking_limit_days', 'minimum_booking_notice_hours',
                     'waitlist_notification_hours', 'double_booking_prevention')),
    policy_value jsonb NOT NULL,
    description  text,
    is_builtin   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE WHEN policy_key = 'double_booking_prevention'
                THEN policy_value = 'true'::jsonb
                ELSE jsonb_typeof(policy_value) = 'number' AND (policy_value)::numeric >= 0 END),
    -- The builtin defaults may sit beside an operator's global override of the same key.
    PRIMARY KEY (policy_key, is_builtin)
);
COMMENT ON TABLE booking.global_policies IS
    'Policies of every tenant without its own row: an operator''s global overrides, then the builtin defaults (is_builtin, read-only).';

CREATE FUNCTION booking.protect_builtin_policies() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.is_builtin THEN
        RAISE EXCEPTION 'builtin policy "%" is read-only', OLD.policy_key
            USING ERRCODE = '42501',
                  HINT = 'Insert a global row (is_builtin false) here or a tenant''s row into booking.booking_policies to override it.';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER global_policies_builtin BEFORE UPDATE OR DELETE ON booking.global_policies
    FOR EACH ROW EXECUTE FUNCTION booking.protect_builtin_policies();

INSERT INTO booking.global_policies (policy_key, policy_value, description, is_builtin) VALUES
    ('cancellation_deadline_hours', '24', 'Hours before the appointment after which it can no longer be cancelled', true),
    ('reschedule_deadline_hours', '2', 'Hours before the appointment after which it can no longer be rescheduled', true),
    ('max_reschedules', '3', 'How often one appointment may be rescheduled', true),
    ('advance_booking_limit_days', '90', 'How many days ahead an appointment may start', true),
    ('minimum_booking_notice_hours', '2', 'How many hours ahead an appointment must start at the earliest', true),
    ('waitlist_notification_hours', '48', 'Freed slots starting within this many hours are offered to the waitlist', true),
    ('double_booking_prevention', 'true', 'Refuse overlapping appointments of one staff member', true);

-- A policy's value for a tenant (and, when given, a service and a staff member), by the
-- precedence above: staff > service > tenant > global > builtin. PL/pgSQL for its cached plan:
-- every booking call reads several policies.
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

CREATE TABLE booking.customers (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES booking.tenants (id) ON DELETE CASCADE,
    user_id    uuid,
    name       text NOT NULL,
    email      text,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- The zone the customer reads times in (messages to them); NULL: the staff member's.
    timezone   text CHECK (timezone IS NULL OR booking.is_valid_timezone(timezone)),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_id_idx ON booking.customers (id);
CREATE INDEX customers_user_idx ON booking.customers (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE booking.appointments (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    staff_id         uuid NOT NULL,
    service_id       uuid NOT NULL,
    customer_id      uuid NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'confirmed', 'active', 'completed', 'cancelled', 'no_show', 'expired')),
    price            numeric(12, 2) CHECK (price >= 0),
    notes            text,
    reschedule_count integer NOT NULL DEFAULT 0 CHECK (reschedule_count >= 0),
    blocked          tstzrange NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- When the customer arrived; the no-show sweep looks for confirmed appointments without it.
    checked_in_at    timestamptz,
    cancelled_at     timestamptz,
    cancellation_reason text,
    -- How the staff member was chosen when the booking named none ("any staff"): the tenant's
    -- strategy and how many were free ({"strategy", "free_staff"}); NULL: the booking named them.
    staff_choice     jsonb,
    CHECK (ends_at > starts_at),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, staff_id) REFERENCES booking.staff (tenant_id, id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES booking.services (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES booking.customers (tenant_id, id),
    CONSTRAINT appointments_no_double_booking
        EXCLUDE USING gist (tenant_id WITH =, staff_id WITH =, blocked WITH &&)
        WHERE (status IN ('pending', 'confirmed', 'active'))
);
CREATE INDEX appointments_id_idx ON booking.appointments (id);
CREATE INDEX appointments_staff_starts_idx ON booking.appointments (staff_id, starts_at);
CREATE INDEX appointments_customer_idx ON booking.appointments (customer_id, starts_at);
CREATE INDEX appointments_tenant_starts_idx ON booking.appointments (tenant_id, starts_at);
CREATE INDEX appointments_service_idx ON booking.appointments (service_id);
COMMENT ON COLUMN booking.appointments.blocked IS
    'Set by trigger: [starts_at - service buffer_before, ends_at + service buffer_after + tenant buffer_time_minutes).';

-- The blocked range is derived here, in one place, so the exclusion constraint and the slot
-- engine agree on what an appointment occupies.
CREATE FUNCTION booking.appointments_derive() RETURNS trigger
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
CREATE TRIGGER appointments_derive BEFORE INSERT OR UPDATE OF starts_at, ends_at, service_id, tenant_id
    ON booking.appointments FOR EACH ROW EXECUTE FUNCTION booking.appointments_derive();

CREATE TRIGGER tenants_touch BEFORE UPDATE ON booking.tenants FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER staff_touch BEFORE UPDATE ON booking.staff FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER services_touch BEFORE UPDATE ON booking.services FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER staff_schedules_touch BEFORE UPDATE ON booking.staff_schedules FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER customers_touch BEFORE UPDATE ON booking.customers FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER appointments_touch BEFORE UPDATE ON booking.appointments FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER booking_policies_touch BEFORE UPDATE ON booking.booking_policies FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();
CREATE TRIGGER global_policies_touch BEFORE UPDATE ON booking.global_policies FOR EACH ROW EXECUTE FUNCTION booking.touch_updated_at();

-- These tables hold the users' data, not the extension's: pg_dump must keep their rows.
SELECT pg_catalog.pg_extension_config_dump('booking.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('booking.staff', '');
SELECT pg_catalog.pg_extension_config_dump('booking.services', '');
SELECT pg_catalog.pg_extension_config_dump('booking.staff_services', '');
SELECT pg_catalog.pg_extension_config_dump('booking.staff_schedules', '');
SELECT pg_catalog.pg_extension_config_dump('booking.schedule_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('booking.staff_time_off', '');
SELECT pg_catalog.pg_extension_config_dump('booking.holidays', '');
SELECT pg_catalog.pg_extension_config_dump('booking.booking_policies', '');
SELECT pg_catalog.pg_extension_config_dump('booking.global_policies', 'WHERE NOT is_builtin');
SELECT pg_catalog.pg_extension_config_dump('booking.customers', '');
SELECT pg_catalog.pg_extension_config_dump('booking.appointments', '');

GRANT USAGE ON SCHEMA booking TO PUBLIC;
