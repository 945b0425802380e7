-- Inserts or updates the new and changed slots of a recomputation (src/slot_store/diff.rs) of
-- one tenant ($1), by primary key: one element of $2.. per slot. Scores arrive in basis points.
-- A statement of its own, apart from the delete: on Citus an insert from arrays is routed by
-- the tenant of its rows, which a data-modifying WITH around it would hide.
INSERT INTO booking.availability_slots AS s (tenant_id, staff_id, date, service_id, start_time, end_time, slot_type,
    is_available, confidence_score, booking_density, priority_boost, fit_score, day_open_ratio)
SELECT $1, f.staff_id, f.date, f.service_id, f.start_time, f.end_time,
       CASE WHEN f.boost > 0 THEN 'prime' ELSE 'regular' END, f.is_available,
       f.confidence / 10000.0, f.density / 10000.0, f.boost / 10000.0, f.fit / 10000.0, f.day_open / 10000.0
FROM unnest($2::uuid[], $3::date[], $4::uuid[], $5::timestamptz[], $6::timestamptz[], $7::boolean[],
            $8::int4[], $9::int4[], $10::int4[], $11::int4[], $12::int4[])
    AS f (staff_id, date, service_id, start_time, end_time, is_available, confidence, density, boost, fit, day_open)
ON CONFLICT (tenant_id, staff_id, date, service_id, start_time) DO UPDATE
SET end_time = excluded.end_time, slot_type = excluded.slot_type, is_available = excluded.is_available,
    confidence_score = excluded.confidence_score, booking_density = excluded.booking_density,
    priority_boost = excluded.priority_boost, fit_score = excluded.fit_score, day_open_ratio = excluded.day_open_ratio
