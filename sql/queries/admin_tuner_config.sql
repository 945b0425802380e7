-- The auto-tuner's settings, and the end of the freeze window in force for changes to the shared
-- tables (the freeze calendar, sql/freeze.sql), if any.
SELECT to_jsonb(c) || jsonb_build_object(
           'frozen_until', booking_admin.freeze_state() ->> 'until',
           'stats_statements', EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'))
FROM booking_admin.auto_tuner_config c
