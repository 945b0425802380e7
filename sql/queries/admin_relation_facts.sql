-- Catalog facts of the relations a sandboxed statement names ($1 oids, in order): qualified name, kind, schema, system or not, owned by the caller, a partition owned by someone else.
SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, n.nspname::text,
       n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\_toast%'
           OR c.oid < 16384,
       pg_has_role(c.relowner, 'USAGE'),
       -- A partitioned parent: the first partition the caller does not own, if any.
       (SELECT format('%I.%I', pn.nspname, pc.relname)
        FROM pg_catalog.pg_partition_tree(c.oid) t
        JOIN pg_catalog.pg_class pc ON pc.oid = t.relid
        JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE c.relkind IN ('p', 'I') AND NOT pg_has_role(pc.relowner, 'USAGE')
        ORDER BY t.level, pc.relname LIMIT 1)
FROM unnest($1::oid[]) WITH ORDINALITY u(oid, i)
JOIN pg_catalog.pg_class c ON c.oid = u.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY u.i
