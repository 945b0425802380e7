-- The booking lifecycle: idempotent create, reschedule and cancel under policy, events and who
-- may do what (the waitlist has its own file). The clock is fixed.
SET booking_engine.now = '2026-03-20 12:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';

SELECT regress.salon();

-- 1. Idempotent create.
-- The first call books; the price comes from the service.
SELECT regress.shape(regress.book('key-1', '40000000-0000-0000-0000-000000000001', '2026-03-23 10:00+01'));
-- The same key and the same request (spelled differently) replay the stored result.
SELECT regress.shape(booking.create_booking_idempotent('key-1', '{"service_id": "30000000-0000-0000-0000-000000000001",
    "starts_at": "2026-03-23T09:00:00Z", "staff_id": "20000000-0000-0000-0000-000000000001",
    "customer_id": "40000000-0000-0000-0000-000000000001", "price": 50.00}'));
SELECT (regress.book('key-1', '40000000-0000-0000-0000-000000000001', '2026-03-23 10:00+01') -> 'appointment' ->> 'id')::uuid
     = (SELECT appointment_id FROM booking.booking_operations WHERE idempotency_key = 'key-1') AS same_appointment;
SELECT count(*) AS appointments FROM booking.appointments;
-- The same key with another request is refused.
SELECT regress.sqlstate_of($$SELECT regress.book('key-1', '40000000-0000-0000-0000-000000000001', '2026-03-23 11:00+01')$$);
-- Another key for the taken slot fails on the rules, and the failure is stored too.
SELECT regress.shape(regress.book('key-2', '40000000-0000-0000-0000-000000000002', '2026-03-23 10:30+01'));
SELECT regress.shape(regress.book('key-2', '40000000-0000-0000-0000-000000000002', '2026-03-23 10:30+01'));
SELECT idempotency_key, operation_type, status, error_message, appointment_id IS NOT NULL AS has_appointment,
       expires_at - created_at AS keeps_for
FROM booking.booking_operations ORDER BY created_at, idempotency_key;
-- Bad input raises and stores nothing, so the key stays free.
SELECT regress.sqlstate_of($$SELECT booking.create_booking_idempotent('key-3', '{"staff_id": "20000000-0000-0000-0000-000000000001"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.create_booking_idempotent('key-3', '[1, 2]')$$);
SELECT regress.sqlstate_of($$SELECT regress.book('key-3', '40000000-0000-0000-0000-000000000001', 'next tuesday-ish')$$);
SELECT regress.sqlstate_of($$SELECT regress.book('key-3', 'not-a-uuid', '2026-03-23 12:00+01')$$);
SELECT regress.sqlstate_of($$SELECT regress.book('key-3', '99999999-0000-0000-0000-000000000001', '2026-03-23 12:00+01')$$);
SELECT regress.sqlstate_of($$SELECT regress.book(NULL, '40000000-0000-0000-0000-000000000001', '2026-03-23 12:00+01')$$);
SELECT regress.sqlstate_of($$SELECT booking.create_booking_idempotent('key-3', jsonb_build_object(
    'customer_id', '40000000-0000-0000-0000-000000000001', 'staff_id', '20000000-0000-0000-0000-000000000001',
    'service_id', '30000000-0000-0000-0000-000000000001', 'starts_at', '2026-03-23 12:00+01', 'ends_at', '2026-03-23 11:00+01'))$$);
SELECT count(*) AS stored_for_key_3 FROM booking.booking_operations WHERE idempotency_key = 'key-3';
SELECT regress.shape(regress.book('key-3', '40000000-0000-0000-0000-000000000002', '2026-03-23 13:00+01')) ->> 'success' AS key_3_usable;
-- After 24 hours a key expires and may start over with a new request.
UPDATE booking.booking_operations SET expires_at = now() - interval '1 second' WHERE idempotency_key = 'key-2';
SELECT regress.shape(regress.book('key-2', '40000000-0000-0000-0000-000000000003', '2026-03-25 16:00+01')) ->> 'success' AS expired_key_reused;
SELECT count(*) AS operations_for_key_2, min(status) AS status FROM booking.booking_operations WHERE idempotency_key = 'key-2';
-- Rules are checked before booking.
SELECT regress.shape(regress.book('key-4', '40000000-0000-0000-0000-000000000003', '2026-03-22 10:00+01'));
SELECT regress.shape(booking.rpc_validate_appointment_slot('20000000-0000-0000-0000-000000000001',
    '30000000-0000-0000-0000-000000000001', '2026-03-23 15:30+01', '2026-03-23 17:30+01'));

-- 2. Reschedule and cancel.
SELECT id AS carla FROM booking.appointments WHERE customer_id = '40000000-0000-0000-0000-000000000001' \gset
SELECT id AS dario FROM booking.appointments WHERE customer_id = '40000000-0000-0000-0000-000000000002' \gset
-- Into Dario's time: refused, and Carla keeps her slot.
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-23 13:00+01'));
SELECT to_char(starts_at, 'DD HH24:MI') AS carla_still_at, reschedule_count FROM booking.appointments WHERE id = :'carla';
-- To a free time, overlapping its own old slot: fine.
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-23 10:30+01', 'resched-1'));
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-23 10:30+01', 'resched-1')) ->> 'replayed' AS replayed;
-- max_reschedules: a tenant allows 2.
INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value) VALUES
    ('10000000-0000-0000-0000-000000000001', 'max_reschedules', '2');
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-24 10:00+01')) ->> 'success' AS second;
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-25 10:00+01'));
DELETE FROM booking.booking_policies WHERE tenant_id IS NOT NULL;
-- Deadlines: 2 hours before for rescheduling, 24 hours for cancelling (builtin defaults).
SET booking_engine.now = '2026-03-24 09:00+01';
SELECT regress.shape(booking.reschedule_appointment(:'carla', '2026-03-25 10:00+01'));
SELECT regress.shape(booking.cancel_appointment(:'carla', 'running late'));
SET booking_engine.now = '2026-03-20 12:00+01';
-- Cancel: once, then the status is final.
SELECT regress.shape(booking.cancel_appointment(:'dario', 'ill', 'cancel-1'));
SELECT regress.shape(booking.cancel_appointment(:'dario', 'ill', 'cancel-1')) ->> 'replayed' AS replayed;
SELECT regress.shape(booking.cancel_appointment(:'dario', 'ill'));
SELECT regress.shape(booking.reschedule_appointment(:'dario', '2026-03-26 10:00+01'));
SELECT status, cancellation_reason, cancelled_at IS NOT NULL AS has_time FROM booking.appointments WHERE id = :'dario';
-- Status changes outside the functions are checked too.
SELECT regress.sqlstate_of(format($$UPDATE booking.appointments SET status = 'confirmed' WHERE id = %L$$, :'dario'));
SELECT regress.sqlstate_of(format($$UPDATE booking.appointments SET status = 'completed' WHERE id = %L$$, :'carla'));
SELECT regress.sqlstate_of($$SELECT booking.cancel_appointment('99999999-0000-0000-0000-000000000001')$$);
SELECT regress.sqlstate_of($$SELECT booking.reschedule_appointment(NULL, now())$$);

-- 3. Events, in order.
SELECT event_type, count(*) FROM booking.events GROUP BY event_type ORDER BY event_type;
SELECT payload ->> 'reason' AS reason FROM booking.events WHERE event_type = 'booking.cancelled' ORDER BY created_at LIMIT 1;

-- 4. Who may do what, as PostgREST calls it: a role with the request's JWT claims.
SET booking_engine.now = '2026-03-20 12:00+01';
DROP ROLE IF EXISTS booking_regress_web;
CREATE ROLE booking_regress_web NOLOGIN;
SELECT regress.book('iso-1', '40000000-0000-0000-0000-000000000001', '2026-03-26 10:00+01') ->> 'success' AS carla_books;
SELECT id AS carla_thu FROM booking.appointments WHERE starts_at = '2026-03-26 10:00+01' \gset
-- Another tenant's appointment, which Anna (staff here) must not see.
INSERT INTO booking.tenants (id, name) VALUES ('10000000-0000-0000-0000-000000000002', 'Elsewhere');
INSERT INTO booking.staff (id, tenant_id, name) VALUES ('20000000-0000-0000-0000-000000000009', '10000000-0000-0000-0000-000000000002', 'Zoe');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes) VALUES ('30000000-0000-0000-0000-000000000009', '10000000-0000-0000-0000-000000000002', 'Nails', 30);
INSERT INTO booking.customers (id, tenant_id, name) VALUES ('40000000-0000-0000-0000-000000000009', '10000000-0000-0000-0000-000000000002', 'Yves');
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at) VALUES
    ('20000000-0000-0000-0000-000000000009', '30000000-0000-0000-0000-000000000009', '40000000-0000-0000-0000-000000000009', '2026-03-26 10:00+01');
SET ROLE booking_regress_web;
SET request.jwt.claims = '{"sub": "c2000000-0000-0000-0000-000000000002", "role": "authenticated"}';
-- Dario sees his own appointments only, and cannot touch Carla's.
SELECT c.name, count(*) FROM booking.appointments a JOIN booking.customers c ON c.id = a.customer_id GROUP BY c.name;
SELECT regress.sqlstate_of(format($$SELECT booking.cancel_appointment(%L)$$, :'carla_thu'));
SELECT regress.sqlstate_of(format($$SELECT booking.reschedule_appointment(%L, '2026-03-26 11:00+01')$$, :'carla_thu'));
SELECT regress.sqlstate_of($$SELECT regress.book('iso-2', '40000000-0000-0000-0000-000000000001', '2026-03-26 14:00+01')$$);
SELECT regress.sqlstate_of($$UPDATE booking.appointments SET notes = 'x'$$);
-- Dario books for himself.
SELECT regress.book('iso-3', '40000000-0000-0000-0000-000000000002', '2026-03-26 14:00+01') ->> 'success' AS dario_books;
-- Staff of the tenant see the whole tenant.
SET request.jwt.claims = '{"sub": "a1000000-0000-0000-0000-000000000001", "role": "authenticated"}';
SELECT count(*) AS staff_sees_tenant FROM booking.appointments;
-- The operator role of Supabase sees everything.
SET request.jwt.claims = '{"sub": "f0000000-0000-0000-0000-000000000000", "role": "service_role"}';
SELECT count(*) AS operator_sees_all FROM booking.appointments;
RESET request.jwt.claims;
RESET ROLE;
DROP ROLE booking_regress_web;

-- 5. Every create, reschedule and cancel is in the security audit log, refusals included (those
-- are written by the writer outside the caller's transaction, oldest first: once a marker
-- queued after them is in, they are too).
SELECT booking.log_security_event('regress.marker', 'test', NULL, false) IS NOT NULL AS marker_queued;
SELECT regress.await_audit($$action = 'regress.marker'$$) AS flushed;
SELECT action, success, count(*), count(resource_id) AS with_appointment
FROM booking_admin.security_audit_log WHERE action LIKE 'booking.%' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT action, failure_reason FROM booking_admin.security_audit_log
WHERE action = 'booking.cancel' AND NOT success ORDER BY failure_reason LIMIT 2;
