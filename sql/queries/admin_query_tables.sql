-- Sizes and indexes of the tables a query reads, for the plan rules (booking_admin.analyze_query).
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'name', c.relname, 'qualified', format('%I.%I', n.nspname, c.relname),
           'rows', greatest(c.reltuples, 0),
           'columns', (SELECT coalesce(jsonb_object_agg(a.attname, quote_ident(a.attname)), '{}')
                       FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           'index_leads', (SELECT coalesce(jsonb_agg(a.attname), '[]')
                           FROM pg_catalog.pg_index i
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                           WHERE i.indrelid = c.oid AND i.indisvalid),
           'gin_leads', (SELECT coalesce(jsonb_agg(a.attname), '[]')
                         FROM pg_catalog.pg_index i
                         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                         JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'gin'
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                         WHERE i.indrelid = c.oid AND i.indisvalid))), '[]')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
