-- The waitlist: entries with preferences and priorities, a freed slot offered to the best
-- matching entry in the same transaction (never twice for the same slot), the notice window,
-- the scheduled sweep, and entry management. The clock is fixed.
SET booking_engine.now = '2026-03-20 12:00+01';
SET timezone = 'Europe/Zurich';
SET datestyle = 'ISO';
SELECT regress.salon();
-- Carla has Tuesday 10:00.
SELECT (regress.book('key-1', '40000000-0000-0000-0000-000000000001', '2026-03-24 10:00+01') -> 'appointment' ->> 'id')::uuid AS carla \gset

SET booking_engine.now = '2026-03-23 08:00+01';
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000003", "service_id": "30000000-0000-0000-0000-000000000001",
    "preferred_days": [2], "priority": 1}') ->> 'status' AS eva_low_priority;
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000002", "service_id": "30000000-0000-0000-0000-000000000001",
    "preferred_times": ["13:00"], "priority": 5}') ->> 'status' AS dario_afternoons;
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000001", "service_id": "30000000-0000-0000-0000-000000000001",
    "preferred_start_date": "2026-04-01", "priority": 9}') ->> 'status' AS carla_april_only;
-- Carla's Tuesday 10:00 appointment (26 hours ahead) is freed: Carla's own entry is for April
-- and Dario wants 13:00, so Eva (Tuesdays) is told.
SELECT regress.shape(booking.cancel_appointment(:'carla')) ->> 'success' AS cancelled;
SELECT c.name, w.status, w.notified_at IS NOT NULL AS has_time FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id ORDER BY c.name;
-- A Tuesday 13:00 slot is freed: Dario (priority 5, prefers 13:00) is told.
SELECT regress.book('tue-13', '40000000-0000-0000-0000-000000000003', '2026-03-24 13:00+01') ->> 'success' AS booked;
SELECT regress.shape(booking.cancel_appointment((SELECT id FROM booking.appointments WHERE status = 'confirmed' AND starts_at = '2026-03-24 13:00+01'))) ->> 'success' AS cancelled;
SELECT c.name, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id ORDER BY c.name;
-- Dario goes back to waiting; the same slot freed again is not offered to him twice.
SELECT booking.update_waitlist_entry(id, '{"status": "waiting"}') ->> 'status' AS dario FROM booking.waitlist WHERE customer_id = '40000000-0000-0000-0000-000000000002';
SELECT regress.book('tue-13-again', '40000000-0000-0000-0000-000000000003', '2026-03-24 13:00+01') ->> 'success' AS rebooked;
SELECT regress.shape(booking.cancel_appointment((SELECT id FROM booking.appointments WHERE status = 'confirmed' AND starts_at = '2026-03-24 13:00+01'))) ->> 'success' AS cancelled_again;
SELECT c.name, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id ORDER BY c.name;
SELECT c.name, to_char(n.starts_at, 'DD HH24:MI') AS slot FROM booking.waitlist_notifications n
JOIN booking.waitlist w ON w.id = n.waitlist_id JOIN booking.customers c ON c.id = w.customer_id ORDER BY n.starts_at;
-- Slots beyond waitlist_notification_hours (48 h) are not offered, though Dario would match.
SELECT regress.shape(regress.book('far', '40000000-0000-0000-0000-000000000003', '2026-03-27 13:00+01')) ->> 'success' AS booked_friday;
SELECT regress.shape(booking.cancel_appointment((SELECT id FROM booking.appointments WHERE status = 'confirmed' AND starts_at = '2026-03-27 13:00+01'))) ->> 'success' AS cancelled_friday;
SELECT count(*) AS notifications FROM booking.waitlist_notifications;
-- Between entries that both match, the higher priority wins, then the older one.
UPDATE booking.waitlist SET status = 'cancelled';
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000003", "service_id": "30000000-0000-0000-0000-000000000001", "priority": 2}') ->> 'priority' AS eva_first_in_line;
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000001", "service_id": "30000000-0000-0000-0000-000000000001", "priority": 7,
    "staff_id": "20000000-0000-0000-0000-000000000001"}') ->> 'priority' AS carla_higher_for_anna;
SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000002", "service_id": "30000000-0000-0000-0000-000000000001", "priority": 7}') ->> 'priority' AS dario_same_but_later;
SELECT regress.book('tue-15', '40000000-0000-0000-0000-000000000003', '2026-03-24 15:00+01') ->> 'success' AS booked;
SELECT regress.shape(booking.cancel_appointment((SELECT id FROM booking.appointments WHERE status = 'confirmed' AND starts_at = '2026-03-24 15:00+01'))) ->> 'success' AS cancelled;
SELECT c.name, w.priority, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id
WHERE w.status <> 'cancelled' ORDER BY c.name;
SELECT regress.book('tue-15b', '40000000-0000-0000-0000-000000000003', '2026-03-24 15:00+01') ->> 'success' AS booked_again;
SELECT regress.shape(booking.cancel_appointment((SELECT id FROM booking.appointments WHERE status = 'confirmed' AND starts_at = '2026-03-24 15:00+01'))) ->> 'success' AS cancelled_again;
SELECT c.name, w.priority, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id
WHERE w.status <> 'cancelled' ORDER BY c.name;

-- The waitlist sweep (a scheduled maintenance operation) offers slots freed earlier that are
-- still free to entries that were not told yet: Eva, still waiting, hears of one; once.
SELECT booking_admin.op_waitlist_sweep('{}') AS notified_by_sweep;
SELECT c.name, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id
WHERE w.status <> 'cancelled' ORDER BY c.name;
SELECT booking_admin.op_waitlist_sweep('{}') AS notified_by_second_sweep;

-- Conversion: Dario books the slot he was last offered; his entry converts (another booking,
-- like Eva's above, converts nothing), and the waitlist's conversion counts it.
SELECT regress.book('dario-takes-it', '40000000-0000-0000-0000-000000000002', (
    SELECT n.starts_at::text FROM booking.waitlist_notifications n JOIN booking.waitlist w ON w.id = n.waitlist_id
    WHERE w.customer_id = '40000000-0000-0000-0000-000000000002' AND w.status = 'notified'
    ORDER BY n.created_at DESC LIMIT 1)) ->> 'success' AS dario_books_the_offer;
SELECT c.name, w.status FROM booking.waitlist w JOIN booking.customers c ON c.id = w.customer_id
WHERE w.status <> 'cancelled' ORDER BY c.name;
SELECT booking_admin.waitlist_conversion() - 'window' - 'tenant_id' AS conversion;
SELECT booking_admin.waitlist_conversion(p_tenant_id => '10000000-0000-0000-0000-0000000000ff') ->> 'entries' AS other_tenant;
SELECT regress.sqlstate_of($$SELECT booking_admin.waitlist_conversion('0 days')$$);

-- Entry management.
SELECT booking.remove_from_waitlist(id) FROM booking.waitlist WHERE customer_id = '40000000-0000-0000-0000-000000000001';
SELECT count(*) AS waiting FROM booking.list_waitlist();
SELECT regress.sqlstate_of($$SELECT booking.update_waitlist_entry((SELECT id FROM booking.waitlist LIMIT 1), '{"status": "booked"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.update_waitlist_entry((SELECT id FROM booking.waitlist LIMIT 1), '{"tenant_id": null}')$$);
SELECT regress.sqlstate_of($$SELECT booking.add_to_waitlist('{"customer_id": "40000000-0000-0000-0000-000000000001"}')$$);

