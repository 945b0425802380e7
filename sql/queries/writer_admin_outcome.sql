-- Writer sink: how an admin statement ended (a jsonb array of {id, outcome, outcome_detail}).
-- Applied after the attempts of the same batch, so an attempt and its outcome may travel
-- together. Idempotent: writing the same outcome twice changes nothing but finished_at.
UPDATE booking_admin.admin_audit a
SET outcome = d ->> 'outcome', outcome_detail = d ->> 'outcome_detail', finished_at = clock_timestamp()
FROM jsonb_array_elements($1) d
WHERE a.id = (d ->> 'id')::uuid
