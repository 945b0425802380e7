-- The scrape's server gauges (any database, booking_engine installed or not): rows of
-- (metric, label values in the declared order, value). Read-only, a few catalog views.
SELECT 'booking_pg_connections', ARRAY[coalesce(state, 'unknown')], count(*)::float8
FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' GROUP BY state
UNION ALL
SELECT 'booking_pg_max_connections', ARRAY[]::text[], current_setting('max_connections')::float8
UNION ALL
SELECT 'booking_pg_cache_hit_ratio', ARRAY[]::text[],
       coalesce(blks_hit::float8 / nullif(blks_hit + blks_read, 0), 1)
FROM pg_catalog.pg_stat_database WHERE datname = current_database()
UNION ALL
SELECT 'booking_pg_longest_transaction_seconds', ARRAY[]::text[],
       coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)::float8
FROM pg_catalog.pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
UNION ALL
SELECT 'booking_pg_database_xid_age', ARRAY[]::text[], age(datfrozenxid)::float8
FROM pg_catalog.pg_database WHERE datname = current_database()
UNION ALL
SELECT 'booking_pg_replication_slot_lag_bytes', ARRAY[slot_name::text],
       coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
                                restart_lsn), 0)::float8
FROM pg_catalog.pg_replication_slots
UNION ALL
SELECT 'booking_workers_up', ARRAY[backend_type], count(*)::float8
FROM pg_catalog.pg_stat_activity WHERE backend_type LIKE 'booking_engine %' AND datname = current_database()
GROUP BY backend_type
