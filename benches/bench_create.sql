-- pgbench: one booking.create_booking_idempotent call per transaction, each on its own free
-- slot (benches/bench_salon.sql).
SELECT booking.create_booking_idempotent('bench-' || n, jsonb_build_object('customer_id', 'b2000000-0000-0000-0000-000000000001',
           'staff_id', b.staff_id, 'service_id', 'b1000000-0000-0000-0000-000000000001', 'starts_at', b.starts_at)) ->> 'success'
FROM (SELECT nextval('public.bench_n') AS n) s, public.bench_slot(s.n, '2027-01-01 00:00+00') b;
