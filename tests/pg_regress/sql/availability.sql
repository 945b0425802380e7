-- Availability rules, one at a time, on a small salon in Europe/Zurich.
-- The clock is fixed so the result does not depend on today's date.
SET booking_engine.now = '2026-03-01 00:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';

-- Local start times of one day's slots, as one line per staff member.
CREATE FUNCTION pg_temp.day(p_service uuid, p_date date, p_staff uuid DEFAULT NULL) RETURNS TABLE (staff text, starts text)
LANGUAGE sql AS $$
    SELECT st.name, string_agg(to_char(s.starts_at, 'HH24:MI'), ' ' ORDER BY s.starts_at)
    FROM booking.get_available_slots(p_service, p_date, p_date, p_staff) s JOIN booking.staff st ON st.id = s.staff_id
    GROUP BY st.name ORDER BY st.name
$$;

INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, opening_hours) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Salon Zurich', 'Europe/Zurich', 30,
     '{"0": {"is_open": true, "start_time": "00:00", "end_time": "24:00"},
       "1": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
       "2": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
       "3": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
       "4": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
       "5": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
       "6": {"is_open": true, "start_time": "08:00", "end_time": "16:00"}}');
INSERT INTO booking.staff (id, tenant_id, name) VALUES
    ('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Anna'),
    ('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 'Ben');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes) VALUES
    ('30000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Cut', 60, 0, 0),
    ('30000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 'Colour', 30, 15, 15),
    ('30000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000001', 'Beard', 30, 0, 0);
INSERT INTO booking.staff_services (staff_id, service_id) VALUES
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001'),
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002'),
    ('20000000-0000-0000-0000-000000000002', '30000000-0000-0000-0000-000000000001');
-- Anna: every day 09:00-12:00 and 13:00-15:00 (a lunch break). Ben: Monday to Friday 14:00-17:00.
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT '20000000-0000-0000-0000-000000000001', d, t.s, t.e
    FROM generate_series(0, 6) d, (VALUES ('09:00'::time, '12:00'::time), ('13:00', '15:00')) t(s, e);
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT '20000000-0000-0000-0000-000000000002', d, '14:00', '17:00' FROM generate_series(1, 5) d;
INSERT INTO booking.customers (id, tenant_id, name) VALUES
    ('40000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'Carla');

-- A plain Monday: the break splits Anna's day, Ben starts at 14:00, 30-minute steps.
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-23');
-- One staff member only.
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-23', '20000000-0000-0000-0000-000000000002');
-- Ben does not offer Colour.
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000002', '2026-03-23', '20000000-0000-0000-0000-000000000002');

-- Daylight saving: 09:00 stays 09:00 local on the Saturday before, the Sunday of and the Monday
-- after each change, while the UTC offset moves. (A tenant policy lets October be booked.)
INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value) VALUES
    ('10000000-0000-0000-0000-000000000001', 'advance_booking_limit_days', '365');
SELECT d, count(*) AS slots, min(s.starts_at) AS first_slot, min(s.starts_at) AT TIME ZONE 'UTC' AS first_utc
FROM unnest('{2026-03-28,2026-03-29,2026-03-30,2026-10-24,2026-10-25,2026-10-26}'::date[]) d,
     booking.get_available_slots('30000000-0000-0000-0000-000000000001', d, d, '20000000-0000-0000-0000-000000000001') s
GROUP BY d ORDER BY d;
-- A night shift over the change (Sunday is open all day): in spring 02:00 and 02:30 do not
-- exist and are skipped; in autumn they happen twice and are offered once, at the instant
-- Postgres's AT TIME ZONE gives them (the second, +01).
INSERT INTO booking.schedule_overrides (staff_id, date, start_time, end_time, is_available) VALUES
    ('20000000-0000-0000-0000-000000000001', '2026-03-29', '01:00', '04:00', true),
    ('20000000-0000-0000-0000-000000000001', '2026-10-25', '01:00', '04:00', true);
SELECT d, string_agg(to_char(s.starts_at, 'HH24:MI OF'), ', ' ORDER BY s.starts_at) AS starts
FROM unnest('{2026-03-29,2026-10-25}'::date[]) d,
     booking.get_available_slots('30000000-0000-0000-0000-000000000001', d, d, '20000000-0000-0000-0000-000000000001') s
GROUP BY d ORDER BY d;
SELECT '2026-10-25 02:00'::timestamp AT TIME ZONE 'Europe/Zurich' AS postgres_reads_0200_as;
DELETE FROM booking.schedule_overrides;
DELETE FROM booking.booking_policies WHERE tenant_id IS NOT NULL;

-- Opening hours clip the schedule: with Saturday hours of 10:00-14:00, Anna's 09:00 and 09:30
-- starts and her 13:30 and 14:00 starts go; on a day the salon is closed nobody is offered.
UPDATE booking.tenants SET opening_hours = jsonb_set(opening_hours, '{6}', '{"is_open": true, "start_time": "10:00", "end_time": "14:00"}')
WHERE id = '10000000-0000-0000-0000-000000000001';
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-28');
UPDATE booking.tenants SET opening_hours = jsonb_set(opening_hours, '{6}', '{"is_open": false}')
WHERE id = '10000000-0000-0000-0000-000000000001';
SELECT count(*) AS saturday_slots FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-28', '2026-03-28');

-- Holidays: a one-off closure for everybody, a yearly one, and one for Ben only.
INSERT INTO booking.holidays (tenant_id, name, date) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Inventory', '2026-03-24');
INSERT INTO booking.holidays (tenant_id, name, is_recurring, recurring_month, recurring_day) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Sechselaeuten', true, 4, 20);
INSERT INTO booking.holidays (tenant_id, name, date, affects_all_staff, affected_staff_ids) VALUES
    ('10000000-0000-0000-0000-000000000001', 'Ben''s training', '2026-03-25', false, '{20000000-0000-0000-0000-000000000002}');
SELECT count(*) AS slots_on_inventory_day FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-24', '2026-03-24');
SELECT count(*) AS slots_on_yearly_holiday FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-04-20', '2026-04-20');
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-25');

-- Time off removes only the hours it covers.
INSERT INTO booking.staff_time_off (staff_id, period, reason) VALUES
    ('20000000-0000-0000-0000-000000000001', '[2026-03-26 09:00+01, 2026-03-26 11:00+01)', 'dentist');
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-26', '20000000-0000-0000-0000-000000000001');

-- A period written with an inclusive end covers its last instant too.
INSERT INTO booking.staff_time_off (staff_id, period, reason) VALUES
    ('20000000-0000-0000-0000-000000000001', '[2026-03-23 09:00+01, 2026-03-23 10:00+01]', 'meeting');
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-03-23', '20000000-0000-0000-0000-000000000001');
DELETE FROM booking.staff_time_off WHERE reason = 'meeting';

-- Overrides: Anna works only 16:00-18:00 on the 27th; a day off on the 30th; the 31st loses 09:00-10:00.
INSERT INTO booking.schedule_overrides (staff_id, date, start_time, end_time, is_available) VALUES
    ('20000000-0000-0000-0000-000000000001', '2026-03-27', '16:00', '18:00', true),
    ('20000000-0000-0000-0000-000000000001', '2026-03-31', '09:00', '10:00', false);
INSERT INTO booking.schedule_overrides (staff_id, date, is_available) VALUES
    ('20000000-0000-0000-0000-000000000001', '2026-03-30', false);
SELECT d, (SELECT starts FROM pg_temp.day('30000000-0000-0000-0000-000000000001', d, '20000000-0000-0000-0000-000000000001'))
FROM unnest('{2026-03-27,2026-03-30,2026-03-31}'::date[]) d;

-- Buffers stack: Colour has 15 minutes before and after. An existing Colour at 10:00-10:30
-- blocks 09:45-10:45, so a new Colour (which needs its own 15 minutes either side) cannot start
-- at 09:30 (it would block 09:15-10:15) nor at 10:30, but can at 09:00 and 11:00.
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status) VALUES
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
     '40000000-0000-0000-0000-000000000001', '2026-04-01 10:00+02', 'confirmed');
SELECT lower(blocked) AS blocked_from, upper(blocked) AS blocked_until FROM booking.appointments WHERE status = 'confirmed';
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000002', '2026-04-01', '20000000-0000-0000-0000-000000000001');
-- A cancelled appointment blocks nothing, neither slots nor a new booking at its time.
UPDATE booking.appointments SET status = 'cancelled';
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000002', '2026-04-01', '20000000-0000-0000-0000-000000000001');
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status) VALUES
    ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
     '40000000-0000-0000-0000-000000000001', '2026-04-01 10:00+02', 'confirmed');
-- The database itself refuses an overlapping booking.
SELECT regress.sqlstate_of($$INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at)
    VALUES ('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
            '40000000-0000-0000-0000-000000000001', '2026-04-01 10:30+02')$$);

-- Notice and advance limits come from the policies and the fixed clock.
SET booking_engine.now = '2026-04-02 08:30+02';
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-04-02', '20000000-0000-0000-0000-000000000001');
INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value) VALUES
    ('10000000-0000-0000-0000-000000000001', 'minimum_booking_notice_hours', '0'),
    ('10000000-0000-0000-0000-000000000001', 'advance_booking_limit_days', '1');
SELECT * FROM pg_temp.day('30000000-0000-0000-0000-000000000001', '2026-04-02', '20000000-0000-0000-0000-000000000001');
SELECT count(*) AS beyond_advance_limit FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-04-04', '2026-04-06');
DELETE FROM booking.booking_policies WHERE tenant_id IS NOT NULL;
SET booking_engine.now = '2026-03-01 00:00+01';

-- Validation names every broken rule.
SELECT booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', '2026-03-23 10:00+01');
SELECT jsonb_pretty(booking.validate_appointment_timing('20000000-0000-0000-0000-000000000002', '30000000-0000-0000-0000-000000000002', '2026-03-24 07:00+01'));
SELECT jsonb_pretty(booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', '2026-04-01 10:00+02'));
SELECT jsonb_pretty(booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', '2026-03-26 09:30+01'));
SELECT jsonb_pretty(booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', '2026-02-28 09:00+01'));
SELECT jsonb_pretty(booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', '2026-12-01 09:00+01'));

-- The JSON RPC for one day.
SELECT jsonb_array_length(booking.rpc_get_available_slots_enhanced('2026-03-23', '30000000-0000-0000-0000-000000000001')) AS slots,
       booking.rpc_get_available_slots_enhanced('2026-03-23', '30000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002') -> 0 AS first;

-- Bad input: each with its SQLSTATE.
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots(NULL, '2026-03-01', '2026-03-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', NULL, '2026-03-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-05', '2026-03-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-01-01', '2027-01-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '-infinity', '2026-01-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-13-01', '2026-01-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('99999999-0000-0000-0000-000000000001', '2026-03-01', '2026-03-02')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-01', '2026-03-02', '99999999-0000-0000-0000-000000000001')$$);
SELECT regress.sqlstate_of($$SELECT booking.validate_appointment_timing('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001', 'infinity')$$);
SELECT regress.sqlstate_of($$SELECT booking.validate_appointment_timing(NULL, '30000000-0000-0000-0000-000000000001', now())$$);
SELECT regress.sqlstate_of($$INSERT INTO booking.tenants (name, timezone) VALUES ('x', 'Mars/Olympus_Mons')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking.tenants (name, opening_hours) VALUES ('x', '{"1": {"is_open": true, "start_time": "18:00", "end_time": "09:00"}}')$$);
SELECT regress.sqlstate_of($$INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    VALUES ('20000000-0000-0000-0000-000000000001', 1, '17:00', '09:00')$$);
SELECT regress.sqlstate_of($$UPDATE booking.global_policies SET policy_value = '5' WHERE is_builtin$$);
SELECT regress.sqlstate_of($$INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value)
    VALUES ('10000000-0000-0000-0000-000000000001', 'double_booking_prevention', 'false')$$);
SELECT regress.sqlstate_of($$SET booking_engine.now = 'not a time'$$);
SELECT regress.sqlstate_of($$SELECT booking.clock_now()$$);

-- The answer for a day does not depend on the range asked for, even far from UTC with long
-- services: a day-long retreat plus half a day of buffers and turnover at UTC-12 reaches three
-- days past its start, and a staff member at UTC+14 starts her day 26 hours before the tenant's.
SET booking_engine.now = '2026-03-01 00:00+00';
INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes, opening_hours) VALUES
    ('10000000-0000-0000-0000-000000000002', 'West', 'Etc/GMT+12', 60, 720,
     (SELECT jsonb_object_agg(d::text, '{"is_open": true, "start_time": "00:00", "end_time": "24:00"}'::jsonb) FROM generate_series(0, 6) d));
INSERT INTO booking.staff (id, tenant_id, name) VALUES
    ('20000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000002', 'Wes');
INSERT INTO booking.staff (id, tenant_id, name, timezone) VALUES
    ('20000000-0000-0000-0000-000000000004', '10000000-0000-0000-0000-000000000002', 'Kiri', 'Pacific/Kiritimati');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_after_minutes) VALUES
    ('30000000-0000-0000-0000-000000000004', '10000000-0000-0000-0000-000000000002', 'Retreat', 1440, 720),
    ('30000000-0000-0000-0000-000000000005', '10000000-0000-0000-0000-000000000002', 'Call', 60, 0);
INSERT INTO booking.staff_services (staff_id, service_id) VALUES
    ('20000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000004'),
    ('20000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000005'),
    ('20000000-0000-0000-0000-000000000004', '30000000-0000-0000-0000-000000000005');
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT s, d, '00:00', '24:00' FROM generate_series(0, 6) d,
        unnest('{20000000-0000-0000-0000-000000000003,20000000-0000-0000-0000-000000000004}'::uuid[]) s;
INSERT INTO booking.customers (id, tenant_id, name) VALUES
    ('40000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000002', 'Cy');
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status) VALUES
    ('20000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000005',
     '40000000-0000-0000-0000-000000000002', '2026-03-27 01:00+00', 'confirmed');
SELECT r AS asked, count(*) AS retreat_slots_on_the_24th
FROM unnest(ARRAY['24..24', '24..26']) r,
     booking.get_available_slots('30000000-0000-0000-0000-000000000004', '2026-03-24',
                                 CASE r WHEN '24..24' THEN date '2026-03-24' ELSE date '2026-03-26' END) s
WHERE (s.starts_at AT TIME ZONE 'Etc/GMT+12')::date = '2026-03-24'
GROUP BY r ORDER BY r;
SELECT r AS asked, count(*) AS kiri_slots_on_her_24th, min(s.starts_at AT TIME ZONE 'Pacific/Kiritimati') AS first
FROM unnest(ARRAY['23..24', '24..24']) r,
     booking.get_available_slots('30000000-0000-0000-0000-000000000005',
                                 CASE r WHEN '23..24' THEN date '2026-03-23' ELSE date '2026-03-24' END, '2026-03-24',
                                 '20000000-0000-0000-0000-000000000004') s
WHERE (s.starts_at AT TIME ZONE 'Pacific/Kiritimati')::date = '2026-03-24'
GROUP BY r ORDER BY r;

-- The outbox: an event row (the notification is checked by the integration tests).
SELECT booking.emit_event('10000000-0000-0000-0000-000000000001', 'booking.created', '{"appointment_id": "x"}') IS NOT NULL AS emitted;
SELECT event_type, payload, dispatched_at FROM booking.events;
SELECT regress.sqlstate_of($$SELECT booking.emit_event('10000000-0000-0000-0000-000000000001', 'Not A Type')$$);
