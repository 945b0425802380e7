-- Applies a recomputation's difference (src/slot_store/diff.rs) to one tenant's ($1) slots:
-- deletes the keys in $2..$5 and inserts or updates the rows in $6.. (one element per slot),
-- each by the primary key. Scores arrive in basis points.
WITH gone AS (
    DELETE FROM booking.availability_slots s
    USING unnest($2::uuid[], $3::date[], $4::uuid[], $5::timestamptz[]) AS k (staff_id, date, service_id, start_time)
    WHERE s.tenant_id = $1 AND s.staff_id = k.staff_id AND s.date = k.date AND s.service_id = k.service_id
      AND s.start_time = k.start_time
)
INSERT INTO booking.availability_slots AS s (tenant_id, staff_id, date, service_id, start_time, end_time, slot_type,
    is_available, confidence_score, booking_density, priority_boost, fit_score, day_open_ratio)
SELECT $1, f.staff_id, f.date, f.service_id, f.start_time, f.end_time,
       CASE WHEN f.boost > 0 THEN 'prime' ELSE 'regular' END, f.is_available,
       f.confidence / 10000.0, f.density / 10000.0, f.boost / 10000.0, f.fit / 10000.0, f.day_open / 10000.0
FROM unnest($6::uuid[], $7::date[], $8::uuid[], $9::timestamptz[], $10::timestamptz[], $11::boolean[],
            $12::int4[], $13::int4[], $14::int4[], $15::int4[], $16::int4[])
    AS f (staff_id, date, service_id, start_time, end_time, is_available, confidence, density, boost, fit, day_open)
ON CONFLICT (tenant_id, staff_id, date, service_id, start_time) DO UPDATE
SET end_time = excluded.end_time, slot_type = excluded.slot_type, is_available = excluded.is_available,
    confidence_score = excluded.confidence_score, booking_density = excluded.booking_density,
    priority_boost = excluded.priority_boost, fit_score = excluded.fit_score, day_open_ratio = excluded.day_open_ratio
