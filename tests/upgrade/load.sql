-- Data for the upgrade test, loaded at the PREVIOUS release (sql/releases) through its API:
-- tenants, staff, services, customers, bookings (and so booking operations and events), jobs,
-- a maintenance run, admin statements and audit rows. Keep it to what that release offers.
SET booking_engine.now = '2026-03-01 00:00+01';
SET timezone = 'Europe/Zurich';
INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes)
SELECT ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'upgrade salon ' || t, 'Europe/Zurich', 15
FROM generate_series(1, 3) t;
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_after_minutes)
SELECT ('00000000-0000-0000-0001-00000000000' || t)::uuid, ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'Cut', 60, 15
FROM generate_series(1, 3) t;
INSERT INTO booking.customers (id, tenant_id, name)
SELECT ('00000000-0000-0000-0002-00000000000' || t)::uuid, ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'Client ' || t
FROM generate_series(1, 3) t;
INSERT INTO booking.staff (id, tenant_id, name)
SELECT ('00000000-0000-0000-0003-00000000000' || t)::uuid, ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'Staff ' || t
FROM generate_series(1, 3) t;
INSERT INTO booking.staff_services (staff_id, service_id)
SELECT ('00000000-0000-0000-0003-00000000000' || t)::uuid, ('00000000-0000-0000-0001-00000000000' || t)::uuid
FROM generate_series(1, 3) t;
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
SELECT ('00000000-0000-0000-0003-00000000000' || t)::uuid, d, '09:00', '17:00'
FROM generate_series(1, 3) t, generate_series(1, 5) d;
-- Bookings through the idempotent API: appointments, operations and events.
SELECT booking.create_booking_idempotent('upgrade-' || t || '-' || h,
    jsonb_build_object('customer_id', ('00000000-0000-0000-0002-00000000000' || t)::uuid,
                       'staff_id', ('00000000-0000-0000-0003-00000000000' || t)::uuid,
                       'service_id', ('00000000-0000-0000-0001-00000000000' || t)::uuid,
                       'starts_at', format('2026-03-03 %s:00+01', h))) ->> 'success' AS booked
FROM generate_series(1, 3) t, generate_series(9, 14) h;
-- Jobs: pending ones and a dead one.
SELECT booking_admin.enqueue_job('upgrade job ' || n, 'email', jsonb_build_object('n', n)) IS NOT NULL AS enqueued
FROM generate_series(1, 5) n;
UPDATE booking_admin.jobs SET status = 'dead', error_message = 'upgrade test' WHERE name = 'upgrade job 5';
-- A maintenance run (history row), an admin statement (admin audit) and audit entries.
SELECT booking_admin.run_maintenance('activate-due') ->> 'status' AS maintenance;
SELECT booking_admin.execute_admin_sql('ANALYZE booking.tenants') ->> 'accepted' AS admin_sql;
SELECT booking.log_security_event('upgrade_test', 'tenant', '00000000-0000-0000-0000-000000000001', true, NULL, false,
                                  '00000000-0000-0000-0000-000000000001') IS NOT NULL AS audited;
