-- A small salon in Zurich: 3 staff with their own weekly hours, 3 services, a one-off closure
-- next Wednesday, Christmas every year, two customers and two bookings. "Next week" is the week
-- after booking.clock_now(): the demo's real today, or the fixed booking_engine.now the tests
-- of the documentation's examples run with (2026-03-01, so next week starts Monday 2026-03-02).
\set ON_ERROR_STOP on
INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes, opening_hours) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'Schnittwerk Zurich', 'Europe/Zurich', 15, 5,
     '{"0": {"is_open": false, "start_time": "10:00", "end_time": "14:00"},
       "1": {"is_open": true,  "start_time": "09:00", "end_time": "18:00"},
       "2": {"is_open": true,  "start_time": "09:00", "end_time": "18:00"},
       "3": {"is_open": true,  "start_time": "09:00", "end_time": "18:00"},
       "4": {"is_open": true,  "start_time": "09:00", "end_time": "19:00"},
       "5": {"is_open": true,  "start_time": "09:00", "end_time": "19:00"},
       "6": {"is_open": true,  "start_time": "08:00", "end_time": "16:00"}}');

INSERT INTO booking.staff (id, tenant_id, name, email) VALUES
    ('b0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'Anna', 'anna@example.ch'),
    ('b0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'Luca', 'luca@example.ch'),
    ('b0000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-000000000001', 'Mira', 'mira@example.ch');

INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes, price) VALUES
    ('c0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'Haircut', 45, 0, 0, 65),
    ('c0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'Colour', 90, 0, 15, 140),
    ('c0000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-000000000001', 'Beard trim', 20, 0, 0, 30);

-- Anna and Luca cut hair, Anna and Mira colour, Luca trims beards.
INSERT INTO booking.staff_services (staff_id, service_id) VALUES
    ('b0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000001'),
    ('b0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000002'),
    ('b0000000-0000-0000-0000-000000000002', 'c0000000-0000-0000-0000-000000000001'),
    ('b0000000-0000-0000-0000-000000000002', 'c0000000-0000-0000-0000-000000000003'),
    ('b0000000-0000-0000-0000-000000000003', 'c0000000-0000-0000-0000-000000000002');

-- Anna: Monday-Friday 09:00-12:30 and 13:30-17:00. Luca: Tuesday-Saturday 10:00-18:00.
-- Mira: Monday, Wednesday, Friday 12:00-19:00.
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
SELECT 'b0000000-0000-0000-0000-000000000001'::uuid, d, s, e
FROM generate_series(1, 5) d, (VALUES ('09:00'::time, '12:30'::time), ('13:30', '17:00')) w(s, e)
UNION ALL
SELECT 'b0000000-0000-0000-0000-000000000002'::uuid, d, '10:00', '18:00' FROM generate_series(2, 6) d
UNION ALL
SELECT 'b0000000-0000-0000-0000-000000000003'::uuid, d, '12:00', '19:00' FROM unnest('{1,3,5}'::int[]) d;

-- Closed for staff training next Wednesday; Christmas every year.
INSERT INTO booking.holidays (tenant_id, name, date, type) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'Staff training',
     date_trunc('week', booking.clock_now() AT TIME ZONE 'Europe/Zurich')::date + 7 + 2, 'company_holiday');
INSERT INTO booking.holidays (tenant_id, name, is_recurring, recurring_month, recurring_day) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'Christmas Day', true, 12, 25);

INSERT INTO booking.customers (id, tenant_id, name, email) VALUES
    ('d0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'Carla Meier', 'carla@example.ch'),
    ('d0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'Jonas Weber', 'jonas@example.ch');

-- Two bookings already made, for the examples that move, cancel or confirm one: Carla's colour
-- with Mira next Friday at 14:00 (confirmed), and her beard trim with Luca next Tuesday at 11:00
-- (pending: the salon has not confirmed it yet).
INSERT INTO booking.appointments (id, tenant_id, staff_id, service_id, customer_id, starts_at, status, price)
SELECT a.id::uuid, 'a0000000-0000-0000-0000-000000000001', a.staff::uuid, a.service::uuid,
       'd0000000-0000-0000-0000-000000000001', (monday + a.day + a.at) AT TIME ZONE 'Europe/Zurich', a.status, a.price
FROM (SELECT date_trunc('week', booking.clock_now() AT TIME ZONE 'Europe/Zurich')::date + 7 AS monday) w,
     (VALUES ('e0000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000003',
              'c0000000-0000-0000-0000-000000000002', 4, time '14:00', 'confirmed', 140),
             ('e0000000-0000-0000-0000-000000000002', 'b0000000-0000-0000-0000-000000000002',
              'c0000000-0000-0000-0000-000000000003', 1, time '11:00', 'pending', 30))
         a (id, staff, service, day, at, status, price);

-- Resources (docs/resources.md): two colour chairs, one of which every colour needs, so that at
-- most two colours run at once whoever does them. Luca's haircut is his own: 30 minutes for 55.
INSERT INTO booking.resources (id, tenant_id, name, kind, position) VALUES
    ('f0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'Colour chair 1', 'chair', 1),
    ('f0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'Colour chair 2', 'chair', 2);
INSERT INTO booking.resource_groups (id, tenant_id, name) VALUES
    ('f1000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'Colour chairs');
INSERT INTO booking.resource_group_members (tenant_id, group_id, resource_id)
SELECT 'a0000000-0000-0000-0000-000000000001', 'f1000000-0000-0000-0000-000000000001', r
FROM unnest('{f0000000-0000-0000-0000-000000000001,f0000000-0000-0000-0000-000000000002}'::uuid[]) r;
INSERT INTO booking.service_requirements (tenant_id, service_id, group_id) VALUES
    ('a0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000002', 'f1000000-0000-0000-0000-000000000001');
UPDATE booking.staff_services SET duration_minutes = 30, price = 55
WHERE staff_id = 'b0000000-0000-0000-0000-000000000002' AND service_id = 'c0000000-0000-0000-0000-000000000001';
-- Carla's colour, written directly above, takes its chair as a booking through the functions
-- would have.
SELECT booking.assign_appointment_resources('a0000000-0000-0000-0000-000000000001', 'e0000000-0000-0000-0000-000000000001')
       -> 'appointment' -> 'resources' -> 0 ->> 'name' AS carlas_chair;
