-- The write path made visible: every trigger on the extension's tables, with its table,
-- function, timing, level, events and condition. A new side effect of a booking (or of any
-- write to the extension's tables) shows here as a diff; docs/architecture.md tells a
-- booking's path. Internal triggers (foreign keys) are left out: the constraints list them; so
-- are a partition's copies of its table's row triggers (PostgreSQL clones them onto every
-- partition: the table's line says it all).
SELECT c.relnamespace::regnamespace AS schema, c.relname AS "table", t.tgname AS trigger,
       t.tgfoid::regproc AS function,
       CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END AS timing,
       CASE WHEN t.tgtype & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END AS level,
       concat_ws(' OR ',
           CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END,
           CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' ||
               coalesce(' OF ' || (SELECT string_agg(a.attname, ', ' ORDER BY k.n)
                                   FROM unnest(t.tgattr) WITH ORDINALITY k (attnum, n)
                                   JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k.attnum), '') END,
           CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END,
           CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END) AS events,
       substring(pg_get_triggerdef(t.oid) FROM ' WHEN \((.*)\) EXECUTE ') AS "when"
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND t.tgparentid = 0
  AND EXISTS (SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'booking_engine'))
ORDER BY 1, 2, 3;
