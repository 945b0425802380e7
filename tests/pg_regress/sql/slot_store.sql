-- The slot store: what the table holds, the read view, the ranking, the wrappers, the horizon
-- and bad input. The clock is fixed (Friday 2026-03-20 12:00 in Zurich); the salon's Anna
-- works Monday to Friday 09-17, Cut takes 60 minutes, slots every 30 minutes.
SET booking_engine.now = '2026-03-20 12:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';

SELECT regress.salon();
-- The store is off until the tenant turns it on: no rows, and its readers say so.
SELECT count(*) AS days_while_off FROM booking.availability_slot_days;
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24')$$);
UPDATE booking.slot_store_settings SET enabled = true;

-- 1. The horizon: 60 days from today, every slot of every working day, all free.
SELECT min(date), max(date), count(*) AS days FROM booking.availability_slot_days;
SELECT date, count(*) AS slots, bool_and(is_available) AS all_free, min(start_time)::time AS first, max(start_time)::time AS last
FROM booking.availability_slots WHERE date BETWEEN '2026-03-20' AND '2026-03-24' GROUP BY date ORDER BY date;

-- 2. A booking takes its slots in the same transaction; the view applies the 2 hours' notice
-- as of now (today's 12:00..13:30 slots are stored free but not available now).
SELECT regress.shape(regress.book('store-1', '40000000-0000-0000-0000-000000000001', '2026-03-23 10:00+01')) ->> 'success' AS booked;
SELECT start_time::time, is_available, slot_type, confidence_score, booking_density, priority_boost, fit_score, day_open_ratio
FROM booking.availability_slots WHERE date = '2026-03-23' ORDER BY start_time;
SELECT start_time::time, s.is_available AS stored, v.is_available AS now
FROM booking.availability_slots s JOIN booking.availability_slots_now v USING (tenant_id, staff_id, date, service_id, start_time)
WHERE date = '2026-03-20' ORDER BY start_time;
-- The view's free slots are exactly get_available_slots.
SELECT (SELECT count(*) FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-20', '2026-05-18')) AS on_demand,
       (SELECT count(*) FROM booking.availability_slots_now WHERE is_available) AS store,
       (SELECT count(*) FROM (SELECT starts_at FROM booking.get_available_slots('30000000-0000-0000-0000-000000000001', '2026-03-20', '2026-05-18')
                              EXCEPT SELECT start_time FROM booking.availability_slots_now WHERE is_available) x) AS missing;
-- Time passes: the stored rows stay as they are, the view moves with the clock.
SET booking_engine.now = '2026-03-20 14:00+01';
SELECT count(*) FILTER (WHERE is_available) AS available_today FROM booking.availability_slots_now WHERE date = '2026-03-20';
SET booking_engine.now = '2026-03-20 12:00+01';

-- 3. Ranking: the best slots of Monday, with the factors (prime time 10:00-14:00 boosts; the
-- slots right after the booking fit without leaving a gap).
SELECT starts_at::time, confidence_score, booking_density, priority_boost, fit_score, day_open_ratio, slot_type
FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-23', NULL, 5);
UPDATE booking.slot_store_settings SET prime_start = '15:00', prime_end = '17:00';
SELECT starts_at::time, confidence_score, priority_boost
FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-23', '20000000-0000-0000-0000-000000000001', 3);

-- 4. book_slot and release_slot are the idempotent booking and the cancellation.
SELECT regress.shape(booking.book_slot('20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
                                       '2026-03-24 09:00+01', '40000000-0000-0000-0000-000000000002', 'store-2')) -> 'appointment' ->> 'status' AS booked;
SELECT is_available FROM booking.availability_slots WHERE start_time = '2026-03-24 09:00+01';
SELECT regress.shape(booking.release_slot((SELECT id FROM booking.appointments WHERE starts_at = '2026-03-24 09:00+01'), 'ill')) ->> 'success' AS released;
SELECT is_available FROM booking.availability_slots WHERE start_time = '2026-03-24 09:00+01';
-- Confirming a booking changes nothing the store holds: no recomputation.
SELECT version FROM booking.availability_slot_days WHERE date = '2026-03-23' \gset
SELECT booking.confirm_appointment((SELECT id FROM booking.appointments WHERE starts_at = '2026-03-23 10:00+01')) ->> 'success' AS confirmed;
SELECT version = :version AS untouched FROM booking.availability_slot_days WHERE date = '2026-03-23';

-- 5. Inputs: a day off, a holiday, a longer service.
INSERT INTO booking.schedule_overrides (staff_id, date) VALUES ('20000000-0000-0000-0000-000000000001', '2026-03-25');
INSERT INTO booking.holidays (tenant_id, name, date) VALUES ('10000000-0000-0000-0000-000000000001', 'Closed', '2026-03-26');
UPDATE booking.services SET duration_minutes = 90 WHERE id = '30000000-0000-0000-0000-000000000001';
SELECT date, count(*) AS slots, min(end_time - start_time) AS length
FROM booking.availability_slots WHERE date BETWEEN '2026-03-24' AND '2026-03-27' GROUP BY date ORDER BY date;

-- 6. The horizon moves: two days later the past days are gone and two new ones added.
SET booking_engine.now = '2026-03-22 12:00+01';
SELECT booking_admin.op_extend_slot_horizon('{}') > 0 AS added_slots;
SELECT min(date), max(date), count(*) AS days FROM booking.availability_slot_days;
SELECT count(*) AS past_slots FROM booking.availability_slots WHERE date < '2026-03-22';
UPDATE booking.slot_store_settings SET horizon_days = 7;
SELECT min(date), max(date), count(*) AS days FROM booking.availability_slot_days;

-- 7. Explicit regeneration, for the tenant's own people.
SELECT booking.generate_availability_slots('20000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24');

-- 8. Bad input: clear errors.
SELECT regress.sqlstate_of($$SELECT booking.generate_availability_slots('20000000-0000-0000-0000-000000000001', '2026-03-23', '2026-04-30')$$);
SELECT regress.sqlstate_of($$SELECT booking.generate_availability_slots('20000000-0000-0000-0000-000000000001', '2026-03-24', '2026-03-23')$$);
SELECT regress.sqlstate_of($$SELECT booking.generate_availability_slots('20000000-0000-0000-0000-0000000000ff', '2026-03-23', '2026-03-24')$$);
SELECT regress.sqlstate_of($$SELECT booking.generate_availability_slots(NULL, '2026-03-23', '2026-03-24')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-01', '2026-03-24')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-0000000000ff', '2026-03-23', '2026-03-24')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24', '20000000-0000-0000-0000-0000000000ff')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24', NULL, 0)$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', NULL, '2026-03-24')$$);
SELECT regress.sqlstate_of($$UPDATE booking.slot_store_settings SET horizon_days = 0$$);
SELECT regress.sqlstate_of($$UPDATE booking.slot_store_settings SET horizon_days = 3650$$);
SELECT regress.sqlstate_of($$UPDATE booking.slot_store_settings SET prime_start = '18:00', prime_end = '09:00'$$);

-- 9. Who may do what: anyone reads the store and ranks slots; only the tenant's people
-- regenerate; nobody but the triggers writes it.
CREATE ROLE regress_slot_anon NOLOGIN;
SET ROLE regress_slot_anon;
SELECT set_config('request.jwt.claims', '{"role": "anon"}', false) IS NOT NULL AS anon;
SELECT count(*) > 0 AS reads FROM booking.availability_slots_now WHERE is_available;
SELECT count(*) AS ranked FROM booking.find_optimal_slots('30000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24');
SELECT regress.sqlstate_of($$SELECT booking.generate_availability_slots('20000000-0000-0000-0000-000000000001', '2026-03-23', '2026-03-24')$$);
SELECT regress.sqlstate_of($$DELETE FROM booking.availability_slots$$);
SELECT regress.sqlstate_of($$SELECT booking.refresh_availability_slots(NULL, NULL, NULL)$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking.availability_slot_days$$);
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) = '' AS reset;
DROP ROLE regress_slot_anon;

-- Turned off: the store's rows go, and bookings no longer touch it.
UPDATE booking.slot_store_settings SET enabled = false;
SELECT (SELECT count(*) FROM booking.availability_slot_days) AS days_after_off,
       (SELECT count(*) FROM booking.availability_slots) AS slots_after_off;
SELECT regress.book('store-off', '40000000-0000-0000-0000-000000000003', '2026-03-27 15:00+01') ->> 'success' AS booked_while_off;
SELECT count(*) AS slots_after_booking FROM booking.availability_slots;
