-- The main job: what can be booked next week, book one, and see it gone.
\set ON_ERROR_STOP on
\pset footer off
SET timezone = 'Europe/Zurich';
SELECT date_trunc('week', now() AT TIME ZONE 'Europe/Zurich')::date + 7 AS monday \gset

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

\echo 'Booking Carla with Anna, Monday 10:00:'
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status, price)
VALUES ('b0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000001',
        'd0000000-0000-0000-0000-000000000001', (:'monday'::date + time '10:00') AT TIME ZONE 'Europe/Zurich', 'confirmed', 65)
RETURNING to_char(starts_at, 'Dy DD.MM HH24:MI') AS starts, to_char(ends_at, 'HH24:MI') AS ends,
          to_char(lower(blocked), 'HH24:MI') || '-' || to_char(upper(blocked), 'HH24:MI') AS blocked;

\echo 'Anna''s Monday morning after booking (10:00 and every start that would overlap it, plus the salon''s 5 min turnover, are gone):'
SELECT string_agg(to_char(starts_at, 'HH24:MI'), ' ' ORDER BY starts_at) AS starts
FROM booking.get_available_slots('c0000000-0000-0000-0000-000000000001', :'monday', :'monday', 'b0000000-0000-0000-0000-000000000001')
WHERE starts_at < (:'monday'::date + time '12:30') AT TIME ZONE 'Europe/Zurich';

\echo 'The database itself refuses a second booking on top of it:'
\set ON_ERROR_STOP off
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
VALUES ('b0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000001',
        'd0000000-0000-0000-0000-000000000001', (:'monday'::date + time '10:15') AT TIME ZONE 'Europe/Zurich', 'confirmed');
