-- The benchmarks' salon (benches/booking.sh, observability.sh, delivery.sh): one tenant open
-- around the clock with 50 staff, a 30-minute service with 10-minute buffers, one customer, and
-- public.bench_slot(n, base), a free slot per n. The clock is fixed at 2026-12-01 for the
-- notice and advance rules.
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET booking_engine.now = %L', current_database(), '2026-12-01 00:00+00');
END $$;
INSERT INTO booking.tenants (id, name, timezone, opening_hours) VALUES ('b0000000-0000-0000-0000-000000000001', 'bench', 'Europe/Zurich',
    (SELECT jsonb_object_agg(d::text, '{"is_open": true, "start_time": "00:00", "end_time": "24:00"}'::jsonb) FROM generate_series(0, 6) d));
INSERT INTO booking.booking_policies (tenant_id, policy_key, policy_value)
    VALUES ('b0000000-0000-0000-0000-000000000001', 'advance_booking_limit_days', '3650');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes)
    VALUES ('b1000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000001', 'Cut', 30, 10, 10);
INSERT INTO booking.customers (id, tenant_id, name) VALUES ('b2000000-0000-0000-0000-000000000001', 'b0000000-0000-0000-0000-000000000001', 'Client');
CREATE TABLE public.bench_staff (ix int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO public.bench_staff SELECT i, gen_random_uuid() FROM generate_series(0, 49) i;
INSERT INTO booking.staff (id, tenant_id, name) SELECT id, 'b0000000-0000-0000-0000-000000000001', 'staff ' || ix FROM public.bench_staff;
INSERT INTO booking.staff_services (staff_id, service_id) SELECT id, 'b1000000-0000-0000-0000-000000000001' FROM public.bench_staff;
INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
    SELECT s.id, d, '00:00', '24:00' FROM public.bench_staff s, generate_series(0, 6) d;
-- Slot n of a run: a free hour of a staff member, spread pseudo-randomly over two years by a
-- permutation (multiplying by a prime coprime to the number of slots), so no two calls collide.
CREATE SEQUENCE public.bench_n;
CREATE FUNCTION public.bench_slot(n bigint, base timestamptz, OUT staff_id uuid, OUT starts_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.id, base + ((n * 104729) % (50 * 24 * 730) / 50) * interval '1 hour'
    FROM public.bench_staff s WHERE s.ix = (n * 104729) % (50 * 24 * 730) % 50
$$;
