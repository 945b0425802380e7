-- What a booking page and a tenant's day need over RPC: the public read model, customer sign-up,
-- and staff confirming, checking in, completing and marking no-shows. Identity comes from the
-- JWT claims, as behind PostgREST. The clock is fixed.
SET booking_engine.now = '2026-03-20 12:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';

-- A result without the ids and times that change from run to run.
CREATE FUNCTION pg_temp.shape(r jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (r - 'operation_id' - 'appointment') || CASE WHEN r ? 'appointment'
        THEN jsonb_build_object('appointment', jsonb_build_object('status', r -> 'appointment' -> 'status',
                                'checked_in', r -> 'appointment' ->> 'checked_in_at' IS NOT NULL))
        ELSE '{}' END
$$;
CREATE FUNCTION pg_temp.as_user(sub text) RETURNS void LANGUAGE sql AS $$
    SELECT set_config('request.jwt.claims', json_build_object('sub', sub, 'role', 'authenticated')::text, false)
$$;

INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Salon', 'Europe/Zurich', 30);
INSERT INTO booking.staff (id, tenant_id, name, email, user_id) VALUES
    ('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Anna', 'anna@example.com', 'a1000000-0000-0000-0000-000000000001');
INSERT INTO booking.staff (id, tenant_id, name, is_active) VALUES
    ('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 'Former', false);
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, price, is_active) VALUES
    ('30000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Cut', 60, 50, true),
    ('30000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 'Perm', 120, 90, false);
INSERT INTO booking.staff_services (staff_id, service_id) VALUES
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001'),
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002');
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT '20000000-0000-0000-0000-000000000001', d, '09:00', '17:00' FROM generate_series(1, 5) d;

-- 1. The booking page, for anyone: active services and staff, no e-mail or user id.
SELECT jsonb_pretty(booking.get_booking_page('10000000-0000-0000-0000-000000000001'));
SELECT regress.sqlstate_of($$SELECT booking.get_booking_page('99999999-0000-0000-0000-000000000001')$$);

-- 2. Sign-up: a signed-in user becomes a customer once, however often they ask; no user, no record.
SELECT pg_temp.as_user('c9000000-0000-0000-0000-000000000009');
SELECT r -> 'created' AS created, r -> 'customer' -> 'name' AS name, r -> 'customer' -> 'email' AS email
FROM booking.register_customer('10000000-0000-0000-0000-000000000001', ' Nina ', 'nina@example.com') r;
SELECT r -> 'created' AS created_again FROM booking.register_customer('10000000-0000-0000-0000-000000000001', 'Other name') r;
SELECT count(*) AS records, min(name) AS name FROM booking.customers WHERE user_id = 'c9000000-0000-0000-0000-000000000009';
SELECT regress.sqlstate_of($$SELECT booking.register_customer('99999999-0000-0000-0000-000000000001', 'Nina')$$);
SELECT pg_temp.as_user('c8000000-0000-0000-0000-000000000008');
SELECT regress.sqlstate_of($$SELECT booking.register_customer('10000000-0000-0000-0000-000000000001', '  ')$$);
SELECT set_config('request.jwt.claims', '{"role": "anon"}', false);
SELECT regress.sqlstate_of($$SELECT booking.register_customer('10000000-0000-0000-0000-000000000001', 'Nobody')$$);

-- 3. Nina books (pending) at the service's price and length: she cannot choose others, nor book a
-- retired service.
SELECT pg_temp.as_user('c9000000-0000-0000-0000-000000000009');
SELECT id AS nina FROM booking.customers WHERE user_id = 'c9000000-0000-0000-0000-000000000009' \gset
SELECT regress.sqlstate_of(format($$SELECT booking.create_booking_idempotent('cheap', jsonb_build_object('customer_id', %L,
    'staff_id', '20000000-0000-0000-0000-000000000001', 'service_id', '30000000-0000-0000-0000-000000000001',
    'starts_at', '2026-03-23 10:00+01', 'price', 0))$$, :'nina'));
SELECT regress.sqlstate_of(format($$SELECT booking.create_booking_idempotent('short', jsonb_build_object('customer_id', %L,
    'staff_id', '20000000-0000-0000-0000-000000000001', 'service_id', '30000000-0000-0000-0000-000000000001',
    'starts_at', '2026-03-23 10:00+01', 'ends_at', '2026-03-23 10:05+01'))$$, :'nina'));
SELECT regress.sqlstate_of(format($$SELECT booking.create_booking_idempotent('retired', jsonb_build_object('customer_id', %L,
    'staff_id', '20000000-0000-0000-0000-000000000001', 'service_id', '30000000-0000-0000-0000-000000000002',
    'starts_at', '2026-03-23 10:00+01'))$$, :'nina'));
SELECT r -> 'appointment' ->> 'id' AS appt, pg_temp.shape(r) AS booked
FROM booking.create_booking_idempotent('page-1', jsonb_build_object('customer_id', :'nina',
    'staff_id', '20000000-0000-0000-0000-000000000001', 'service_id', '30000000-0000-0000-0000-000000000001',
    'starts_at', '2026-03-23 10:00+01', 'status', 'pending')) r \gset
SELECT :'booked'::jsonb AS booked;
SELECT price, ends_at - starts_at AS length FROM booking.appointments WHERE id = :'appt';

-- 4. The day. Nina may not run it on her own booking (42501); another customer sees nothing (PT404).
SELECT regress.sqlstate_of(format($$SELECT booking.confirm_appointment(%L)$$, :'appt'));
SELECT pg_temp.as_user('c8000000-0000-0000-0000-000000000008');
SELECT regress.sqlstate_of(format($$SELECT booking.confirm_appointment(%L)$$, :'appt'));
SELECT regress.sqlstate_of($$SELECT booking.confirm_appointment('99999999-0000-0000-0000-000000000001')$$);
-- Anna, staff of the tenant: each step, each step again (unchanged), steps out of order refused.
SELECT pg_temp.as_user('a1000000-0000-0000-0000-000000000001');
SELECT pg_temp.shape(booking.check_in_appointment(:'appt')) AS check_in_pending;
SELECT pg_temp.shape(booking.confirm_appointment(:'appt')) AS confirm;
SELECT pg_temp.shape(booking.confirm_appointment(:'appt')) AS confirm_again;
SELECT pg_temp.shape(booking.complete_appointment(:'appt')) AS complete_before_check_in;
SELECT pg_temp.shape(booking.mark_no_show(:'appt')) AS no_show_before_start;
SELECT pg_temp.shape(booking.check_in_appointment(:'appt')) AS check_in;
SELECT pg_temp.shape(booking.check_in_appointment(:'appt')) AS check_in_again;
SELECT pg_temp.shape(booking.mark_no_show(:'appt')) AS no_show_checked_in;
SELECT pg_temp.shape(booking.complete_appointment(:'appt')) AS complete;
SELECT pg_temp.shape(booking.complete_appointment(:'appt')) AS complete_again;
SELECT pg_temp.shape(booking.confirm_appointment(:'appt')) AS confirm_completed;
RESET request.jwt.claims;
SELECT event_type, payload ->> 'from' AS "from", payload ->> 'to' AS "to" FROM booking.events
WHERE payload ->> 'appointment_id' = :'appt' ORDER BY created_at, event_type;

-- 5. Every refusal above is in the audit log with who asked (the failures are written by the
-- writer after the rollback, oldest first: once a marker queued after them is in, they are).
SELECT booking.log_security_event('regress.marker', 'test', NULL, false) IS NOT NULL AS marker_queued;
SELECT regress.await_audit($$action = 'regress.marker'$$) AS flushed;
SELECT action, success, user_id,
       left(regexp_replace(failure_reason, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g'), 60) AS reason
FROM booking_admin.security_audit_log
WHERE action LIKE 'booking.%' AND NOT success ORDER BY action, user_id, reason;

-- 6. What PUBLIC (so anon and authenticated) may execute in booking: the application functions only.
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p WHERE p.pronamespace = 'booking'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY p.oid::regprocedure::text;
