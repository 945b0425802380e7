-- PII discovery: every user table the caller may read, with its sampled columns (booking_admin.scan_pii).
SELECT coalesce(json_agg(json_build_object(
           'table', format('%I.%I', n.nspname, c.relname),
           'columns', (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
                                                ORDER BY a.attnum), '[]')
                       FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'bytea'::regtype,
                                            'int8'::regtype, 'numeric'::regtype)))
       ORDER BY n.nspname, c.relname), '[]')::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'booking_admin') AND n.nspname NOT LIKE 'pg\_%'
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
