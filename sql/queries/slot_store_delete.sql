-- Deletes the slots a recomputation (src/slot_store/diff.rs) no longer has, of one tenant ($1),
-- by primary key: one element of $2..$5 per slot.
DELETE FROM booking.availability_slots s
USING unnest($2::uuid[], $3::date[], $4::uuid[], $5::timestamptz[]) AS k (staff_id, date, service_id, start_time)
WHERE s.tenant_id = $1 AND s.staff_id = k.staff_id AND s.date = k.date AND s.service_id = k.service_id
  AND s.start_time = k.start_time
