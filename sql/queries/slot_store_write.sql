-- Replaces the slots of the locked staff-days ($1 tenants, $2 staff, $3 dates) with the fresh
-- computation ($4.. one element per slot), in one statement (src/slot_store/api.rs): stored
-- slots the computation no longer has are deleted, new ones inserted, changed ones updated, and
-- unchanged ones left alone (no dead tuple, no WAL). Scores arrive in basis points.
WITH days AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[]) AS d (tenant_id, staff_id, date)
), fresh AS (
    SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::date[], $8::timestamptz[], $9::timestamptz[],
                         $10::boolean[], $11::int4[], $12::int4[], $13::int4[], $14::int4[], $15::int4[])
        AS f (tenant_id, staff_id, service_id, date, start_time, end_time, is_available,
              confidence, density, boost, fit, day_open)
), gone AS (
    DELETE FROM booking.availability_slots s USING days d
    WHERE s.tenant_id = d.tenant_id AND s.staff_id = d.staff_id AND s.date = d.date
      AND NOT EXISTS (SELECT 1 FROM fresh f
                      WHERE f.tenant_id = s.tenant_id AND f.staff_id = s.staff_id AND f.date = s.date
                        AND f.service_id = s.service_id AND f.start_time = s.start_time)
)
INSERT INTO booking.availability_slots AS s (tenant_id, staff_id, date, service_id, start_time, end_time, slot_type,
    is_available, confidence_score, booking_density, priority_boost, fit_score, day_open_ratio)
SELECT f.tenant_id, f.staff_id, f.date, f.service_id, f.start_time, f.end_time,
       CASE WHEN f.boost > 0 THEN 'prime' ELSE 'regular' END, f.is_available,
       f.confidence / 10000.0, f.density / 10000.0, f.boost / 10000.0, f.fit / 10000.0, f.day_open / 10000.0
FROM fresh f
ON CONFLICT (tenant_id, staff_id, date, service_id, start_time) DO UPDATE
SET end_time = excluded.end_time, slot_type = excluded.slot_type, is_available = excluded.is_available,
    confidence_score = excluded.confidence_score, booking_density = excluded.booking_density,
    priority_boost = excluded.priority_boost, fit_score = excluded.fit_score, day_open_ratio = excluded.day_open_ratio
WHERE (s.end_time, s.slot_type, s.is_available, s.confidence_score, s.booking_density, s.priority_boost,
       s.fit_score, s.day_open_ratio)
      IS DISTINCT FROM (excluded.end_time, excluded.slot_type, excluded.is_available, excluded.confidence_score,
                        excluded.booking_density, excluded.priority_boost, excluded.fit_score, excluded.day_open_ratio)
