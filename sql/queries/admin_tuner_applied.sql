-- Indexes the auto-tuner applied, with their use since, for rollback of unused ones.
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'id', a.id, 'rollback_sql', a.rollback_sql, 'query', a.query, 'cost_before', a.cost_before,
           'minutes', extract(epoch FROM booking.clock_now() - a.applied_at) / 60,
           'idx_scan', coalesce(s.idx_scan, 0), 'exists', to_regclass(a.index_name) IS NOT NULL) ORDER BY a.id), '[]')
FROM booking_admin.tuning_actions a
LEFT JOIN pg_catalog.pg_stat_user_indexes s ON s.indexrelid = to_regclass(a.index_name)
WHERE a.status = 'applied'
