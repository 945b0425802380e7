-- The main job: what can be booked next week, book one, and see it gone.
\set ON_ERROR_STOP on
\pset footer off
SET timezone = 'Europe/Zurich';
SELECT date_trunc('week', booking.clock_now() AT TIME ZONE 'Europe/Zurich')::date + 7 AS monday \gset

\echo
\echo 'Haircut slots next week (45 min, every 15 min; Wednesday is a closure day):'
SELECT to_char(s.starts_at, 'Dy DD.MM') AS day, st.name AS staff, count(*) AS slots,
       to_char(min(s.starts_at), 'HH24:MI') AS first, to_char(max(s.starts_at), 'HH24:MI') AS last
FROM booking.get_available_slots('c0000000-0000-0000-0000-000000000001', :'monday', :'monday'::date + 6) s
JOIN booking.staff st ON st.id = s.staff_id
GROUP BY 1, st.name, s.starts_at::date ORDER BY s.starts_at::date, st.name;

\echo 'Why Wednesday is empty:'
SELECT booking.validate_appointment_timing('b0000000-0000-0000-0000-000000000001',
    'c0000000-0000-0000-0000-000000000001', (:'monday'::date + 2 + time '10:00') AT TIME ZONE 'Europe/Zurich') AS check;

\echo 'Anna''s Monday morning before booking:'
SELECT string_agg(to_char(starts_at, 'HH24:MI'), ' ' ORDER BY starts_at) AS starts
FROM booking.get_available_slots('c0000000-0000-0000-0000-000000000001', :'monday', :'monday', 'b0000000-0000-0000-0000-000000000001')
WHERE starts_at < (:'monday'::date + time '12:30') AT TIME ZONE 'Europe/Zurich';

\echo 'Booking Carla with Anna, Monday 10:00, with an idempotency key:'
SELECT r ->> 'success' AS success, r ->> 'replayed' AS replayed, r -> 'appointment' ->> 'status' AS status,
       r -> 'appointment' ->> 'starts_at' AS starts_at, r -> 'appointment' ->> 'ends_at' AS ends_at,
       r -> 'appointment' ->> 'price' AS price
FROM booking.create_booking_idempotent('demo-carla-1', jsonb_build_object(
    'customer_id', 'd0000000-0000-0000-0000-000000000001', 'staff_id', 'b0000000-0000-0000-0000-000000000001',
    'service_id', 'c0000000-0000-0000-0000-000000000001',
    'starts_at', (:'monday'::date + time '10:00') AT TIME ZONE 'Europe/Zurich')) r;

\echo 'Anna''s Monday morning after booking (10:00 and every start that would overlap it, plus the salon''s 5 min turnover, are gone):'
SELECT string_agg(to_char(starts_at, 'HH24:MI'), ' ' ORDER BY starts_at) AS starts
FROM booking.get_available_slots('c0000000-0000-0000-0000-000000000001', :'monday', :'monday', 'b0000000-0000-0000-0000-000000000001')
WHERE starts_at < (:'monday'::date + time '12:30') AT TIME ZONE 'Europe/Zurich';

\echo 'The client retries the same request (say, after a timeout): the stored result comes back, nothing is booked twice:'
SELECT r ->> 'success' AS success, r ->> 'replayed' AS replayed, r -> 'appointment' ->> 'starts_at' AS starts_at,
       (SELECT count(*) FROM booking.appointments WHERE staff_id = 'b0000000-0000-0000-0000-000000000001') AS annas_appointments
FROM booking.create_booking_idempotent('demo-carla-1', jsonb_build_object(
    'customer_id', 'd0000000-0000-0000-0000-000000000001', 'staff_id', 'b0000000-0000-0000-0000-000000000001',
    'service_id', 'c0000000-0000-0000-0000-000000000001',
    'starts_at', (:'monday'::date + time '10:00') AT TIME ZONE 'Europe/Zurich')) r;

\echo 'A second booking with Anna at 10:15 is refused, with the reason:'
SELECT booking.create_booking_idempotent('demo-other-1', jsonb_build_object(
    'customer_id', 'd0000000-0000-0000-0000-000000000001', 'staff_id', 'b0000000-0000-0000-0000-000000000001',
    'service_id', 'c0000000-0000-0000-0000-000000000001',
    'starts_at', (:'monday'::date + time '10:15') AT TIME ZONE 'Europe/Zurich')) -> 'details' AS refused;

\echo 'And the database itself refuses an overlapping row written directly:'
\set ON_ERROR_STOP off
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
VALUES ('b0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000001',
        'd0000000-0000-0000-0000-000000000001', (:'monday'::date + time '10:15') AT TIME ZONE 'Europe/Zurich', 'confirmed');
