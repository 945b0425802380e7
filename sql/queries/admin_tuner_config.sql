-- The auto-tuner's settings, and where booking.clock_now() falls in its freeze windows' zone.
SELECT to_jsonb(c) || jsonb_build_object(
           'dow', extract(dow FROM booking.clock_now() AT TIME ZONE c.freeze_timezone)::int,
           'minute', (extract(hour FROM booking.clock_now() AT TIME ZONE c.freeze_timezone) * 60
                      + extract(minute FROM booking.clock_now() AT TIME ZONE c.freeze_timezone))::int,
           'stats_statements', EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'))
FROM booking_admin.auto_tuner_config c
