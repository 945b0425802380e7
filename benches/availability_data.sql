-- The availability benchmark's data set (loaded by scripts/bench.sh into a fresh database that
-- has CREATE EXTENSION booking_engine CASCADE):
--
--   one salon in Europe/Zurich, open Mon-Sat 08:00-20:00 and Sun 10:00-16:00, 15-minute slots;
--   50 active staff who offer the benchmarked service, on three weekly shift patterns with a
--   break (one of them lives in Europe/London, one has a Saturday row kept in UTC), plus one
--   inactive staff member and one who does not offer the service (both must never get slots);
--   the benchmarked service: 30 minutes, 5 minutes buffer before and 10 after;
--   appointments covering about 20% of the scheduled working time of every working day
--   (inserted without overlaps: the exclusion constraint refuses them), some cancelled ones
--   on top that must not block anything;
--   two public holidays, a recurring holiday for ten staff, a few time-off periods and
--   schedule overrides.
--
-- The measured range is 2026-03-16 .. 2026-04-14 (30 days, across the spring DST change of
-- 2026-03-29). The clock is fixed at 2026-03-14 12:00 (booking_engine.now, for this session and
-- as a database default for every later session), so the whole range lies inside the default
-- 2 hours' notice and 90 days' advance limit and the results never depend on today's date.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET booking_engine.now = '2026-03-14 12:00+01';
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET booking_engine.now = %L', current_database(), '2026-03-14 12:00+01');
END $$;

-- Ids are readable: tenant e1.., staff e2..NN (NN = 1..52), services e3.., customers e4...
CREATE FUNCTION pg_temp.staff_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT format('e2000000-0000-0000-0000-%s', lpad(n::text, 12, '0'))::uuid $$;
-- A deterministic pseudo-random number 0..9 per key.
CREATE FUNCTION pg_temp.dice(key text) RETURNS int LANGUAGE sql IMMUTABLE AS
    $$ SELECT ((('x' || substr(md5(key), 1, 8))::bit(32)::int & 2147483647) % 10)::int $$;

INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes, opening_hours) VALUES
    ('e1000000-0000-0000-0000-000000000001', 'Bench Salon Zurich', 'Europe/Zurich', 15, 0,
     '{"0": {"is_open": true, "start_time": "10:00", "end_time": "16:00"},
       "1": {"is_open": true, "start_time": "08:00", "end_time": "20:00"},
       "2": {"is_open": true, "start_time": "08:00", "end_time": "20:00"},
       "3": {"is_open": true, "start_time": "08:00", "end_time": "20:00"},
       "4": {"is_open": true, "start_time": "08:00", "end_time": "20:00"},
       "5": {"is_open": true, "start_time": "08:00", "end_time": "20:00"},
       "6": {"is_open": true, "start_time": "08:00", "end_time": "20:00"}}');

INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes, price) VALUES
    ('e3000000-0000-0000-0000-000000000001', 'e1000000-0000-0000-0000-000000000001', 'Consultation (benchmarked)', 30, 5, 10, 80),
    ('e3000000-0000-0000-0000-000000000002', 'e1000000-0000-0000-0000-000000000001', 'Quick check', 30, 0, 0, 40),
    ('e3000000-0000-0000-0000-000000000003', 'e1000000-0000-0000-0000-000000000001', 'Long treatment', 60, 0, 0, 150);

-- Staff 1..50 offer everything; 51 is inactive; 52 does not offer the benchmarked service.
INSERT INTO booking.staff (id, tenant_id, name, timezone, is_active)
SELECT pg_temp.staff_id(n), 'e1000000-0000-0000-0000-000000000001', format('Staff %s', n),
       CASE WHEN n = 50 THEN 'Europe/London' ELSE 'Europe/Zurich' END, n <> 51
FROM generate_series(1, 52) n;

INSERT INTO booking.staff_services (staff_id, service_id)
SELECT pg_temp.staff_id(n), s.id
FROM generate_series(1, 52) n, booking.services s
WHERE NOT (n = 52 AND s.id = 'e3000000-0000-0000-0000-000000000001');

-- Three shift patterns, each with a break:
--   n % 3 = 0: Mon-Sat 09:00-12:00 and 13:00-18:00
--   n % 3 = 1: Mon-Fri 08:00-12:00 and 12:30-16:30, Sat 08:00-12:00
--   n % 3 = 2: Tue-Sat 11:00-15:00 and 15:30-19:30
-- Staff 49 (pattern 1) keeps its Saturday row in UTC (08:00-12:00 UTC); staff 50 (pattern 2)
-- works London wall-clock hours.
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time, timezone)
SELECT pg_temp.staff_id(n), d, w.s, w.e, CASE WHEN n = 49 AND d = 6 THEN 'UTC' END
FROM generate_series(1, 52) n
CROSS JOIN LATERAL (VALUES
    (0, 1, 6, '09:00'::time, '12:00'::time), (0, 1, 6, '13:00', '18:00'),
    (1, 1, 5, '08:00', '12:00'), (1, 1, 5, '12:30', '16:30'), (1, 6, 6, '08:00', '12:00'),
    (2, 2, 6, '11:00', '15:00'), (2, 2, 6, '15:30', '19:30')) w(pattern, first_dow, last_dow, s, e)
CROSS JOIN LATERAL generate_series(w.first_dow, w.last_dow) d
WHERE w.pattern = n % 3;

INSERT INTO booking.customers (id, tenant_id, name, email)
SELECT format('e4000000-0000-0000-0000-%s', lpad(n::text, 12, '0'))::uuid, 'e1000000-0000-0000-0000-000000000001',
       format('Customer %s', n), format('customer%s@example.ch', n)
FROM generate_series(1, 300) n;

-- Holidays: Good Friday and Easter Monday for everybody, St. Joseph (19 March, every year) for
-- staff 1..10 only.
INSERT INTO booking.holidays (tenant_id, name, date, type) VALUES
    ('e1000000-0000-0000-0000-000000000001', 'Good Friday', '2026-04-03', 'public_holiday'),
    ('e1000000-0000-0000-0000-000000000001', 'Easter Monday', '2026-04-06', 'public_holiday');
INSERT INTO booking.holidays (tenant_id, name, is_recurring, recurring_month, recurring_day, affects_all_staff, affected_staff_ids)
SELECT 'e1000000-0000-0000-0000-000000000001', 'St. Joseph', true, 3, 19, false, array_agg(pg_temp.staff_id(n))
FROM generate_series(1, 10) n;

-- Time off: a week's holiday, a dentist's appointment, a two-day training.
INSERT INTO booking.staff_time_off (staff_id, period, reason) VALUES
    (pg_temp.staff_id(7), '[2026-03-23 00:00+01, 2026-03-28 00:00+01)', 'vacation'),
    (pg_temp.staff_id(12), '[2026-04-08 14:00+02, 2026-04-08 16:30+02)', 'dentist'),
    (pg_temp.staff_id(21), '[2026-03-30 09:00+02, 2026-03-31 12:00+02)', 'training');

-- Overrides: extra Sunday work, a day off, an hour cut out, a whole-day override clipped by the
-- opening hours, a long day replacing the usual shifts.
INSERT INTO booking.schedule_overrides (staff_id, date, start_time, end_time, is_available, reason) VALUES
    (pg_temp.staff_id(3), '2026-03-22', '10:00', '14:00', true, 'Sunday event'),
    (pg_temp.staff_id(4), '2026-03-20', NULL, NULL, false, 'day off'),
    (pg_temp.staff_id(5), '2026-03-25', '15:00', '16:00', false, 'team meeting'),
    (pg_temp.staff_id(6), '2026-04-12', NULL, NULL, true, 'open Sunday'),
    (pg_temp.staff_id(8), '2026-04-01', '07:00', '21:00', true, 'long day'),
    (pg_temp.staff_id(9), '2026-03-29', '10:00', '15:00', true, 'DST Sunday');

-- Appointments, from two days before to two days after the measured range, on every scheduled
-- hour of every working day (not on the public holidays nor in time off). Each hour-long block
-- of a shift rolls a die (0..9): 0 = a 60-minute treatment, 1 = a 30-minute check at :00,
-- 2 = a benchmarked consultation at :15 (blocked :10-:55 with its buffers), 3 = a cancelled
-- check at :30 (blocks nothing), else free. Expected booked time: (60 + 30 + 30) / 600 = 20%.
-- The blocks of one shift do not overlap and the tenant has no turnover time, so the exclusion
-- constraint never fires.
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status, price)
SELECT b.staff_id,
       CASE b.roll WHEN 0 THEN 'e3000000-0000-0000-0000-000000000003' WHEN 2 THEN 'e3000000-0000-0000-0000-000000000001'
                   ELSE 'e3000000-0000-0000-0000-000000000002' END::uuid,
       format('e4000000-0000-0000-0000-%s', lpad((1 + (b.k % 300))::text, 12, '0'))::uuid,
       (b.block + CASE b.roll WHEN 2 THEN interval '15 minutes' WHEN 3 THEN interval '30 minutes' ELSE interval '0' END)
           AT TIME ZONE b.zone,
       CASE WHEN b.roll = 3 THEN 'cancelled' WHEN b.k % 3 = 0 THEN 'pending' ELSE 'confirmed' END,
       CASE b.roll WHEN 0 THEN 150 WHEN 2 THEN 80 ELSE 40 END
FROM (
    SELECT s.staff_id, coalesce(s.timezone, f.timezone) AS zone, blk AS block,
           pg_temp.dice(format('%s/%s', s.staff_id, blk)) AS roll,
           row_number() OVER (ORDER BY s.staff_id, blk) AS k
    FROM booking.staff_schedules s
    JOIN booking.staff f ON f.id = s.staff_id
    CROSS JOIN LATERAL generate_series(timestamp '2026-03-14', timestamp '2026-04-16', interval '1 day') AS g(day)
    CROSS JOIN LATERAL generate_series(g.day + s.start_time, g.day + s.end_time - interval '1 hour', interval '1 hour') AS blk
    WHERE s.day_of_week = extract(dow FROM g.day)
      AND g.day::date NOT IN (date '2026-04-03', date '2026-04-06')
      AND NOT EXISTS (SELECT 1 FROM booking.staff_time_off x
                      WHERE x.staff_id = s.staff_id
                        AND x.period && tstzrange(blk AT TIME ZONE coalesce(s.timezone, f.timezone),
                                                  (blk + interval '1 hour') AT TIME ZONE coalesce(s.timezone, f.timezone)))
) b
WHERE b.roll <= 3;

ANALYZE;
