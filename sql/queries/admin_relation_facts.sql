-- Catalog facts of the relations a sandboxed statement names ($1 oids, in order): qualified name, kind, schema, system or not, owned by the caller.
SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, n.nspname::text,
       n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\_toast%'
           OR c.oid < 16384,
       pg_has_role(c.relowner, 'USAGE')
FROM unnest($1::oid[]) WITH ORDINALITY u(oid, i)
JOIN pg_catalog.pg_class c ON c.oid = u.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY u.i
