-- Loaded by scripts/test.sh into each fresh regress database before its golden file runs.
CREATE SCHEMA regress;
-- The golden files also call these as roles they create.
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- Runs a statement and tells how it ended: 'ok', or its SQLSTATE and message (ids that change
-- from run to run masked). Catches cancellations too, so statement timeouts can be shown.
CREATE FUNCTION regress.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN others OR query_canceled THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g');
END $$;

-- Waits (up to 10 s) until the writer has written entries matching a condition.
CREATE FUNCTION regress.await_audit(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    found boolean;
BEGIN
    FOR i IN 1..200 LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM booking_admin.security_audit_log WHERE ' || cond || ')' INTO found;
        IF found THEN RETURN true; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;

-- The salon of the booking and waitlist golden files: Anna (staff, Monday to Friday 09-17)
-- cutting for 60 minutes, and three customers, Carla, Dario and Eva.
CREATE FUNCTION regress.salon() RETURNS void LANGUAGE sql AS $$
INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Salon', 'Europe/Zurich', 30);
INSERT INTO booking.staff (id, tenant_id, name, user_id) VALUES
    ('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Anna', 'a1000000-0000-0000-0000-000000000001');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_after_minutes, price) VALUES
    ('30000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Cut', 60, 0, 50);
INSERT INTO booking.staff_services (staff_id, service_id) VALUES
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001');
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT '20000000-0000-0000-0000-000000000001', d, '09:00', '17:00' FROM generate_series(1, 5) d;
INSERT INTO booking.customers (id, tenant_id, name, user_id) VALUES
    ('40000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Carla', 'c1000000-0000-0000-0000-000000000001'),
    ('40000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 'Dario', 'c2000000-0000-0000-0000-000000000002'),
    ('40000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000001', 'Eva', 'c3000000-0000-0000-0000-000000000003');
$$;

-- A booking result without the ids that change from run to run.
CREATE FUNCTION regress.shape(r jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (r - 'operation_id' - 'appointment') || CASE WHEN r ? 'appointment'
        THEN jsonb_build_object('appointment', (r -> 'appointment') - 'id' - 'created_at' - 'updated_at' - 'tenant_id'
                                                - 'customer_id' - 'staff_id' - 'service_id' - 'cancelled_at')
        ELSE '{}' END
$$;

-- Books the salon's Cut with Anna for a customer.
CREATE FUNCTION regress.book(key text, customer text, starts text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT booking.create_booking_idempotent(key, jsonb_build_object(
        'customer_id', customer, 'staff_id', '20000000-0000-0000-0000-000000000001',
        'service_id', '30000000-0000-0000-0000-000000000001', 'starts_at', starts))
$$;
