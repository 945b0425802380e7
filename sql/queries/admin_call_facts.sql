-- What an index expression calls ($1 function oids, $2 domain oids): signature, trusted (built-in), immutable.
SELECT p.oid::regprocedure::text,
       p.oid < 16384 OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                                  AND d.deptype = 'e'),
       p.provolatile = 'i'
FROM pg_catalog.pg_proc p WHERE p.oid = ANY ($1::oid[])
UNION ALL
SELECT 'domain ' || t.oid::regtype::text,
       t.oid < 16384 OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
                                  AND d.deptype = 'e'),
       true
FROM pg_catalog.pg_type t WHERE t.oid = ANY ($2::oid[])
