-- The rules that let Citus distribute the schema by tenant (docs/citus.md),
-- checked on a single PostgreSQL, so a new table or key that breaks them fails here and not
-- only on a cluster. Each query lists the offenders: an empty result is the pass.

-- Every table of `booking` except the global ones has a NOT NULL tenant_id (tenants: id).
SELECT c.oid::regclass AS table_without_tenant
FROM pg_class c
WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind IN ('r', 'p')
  AND c.oid NOT IN ('booking.tenants'::regclass, 'booking.global_policies'::regclass)
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnotnull)
ORDER BY 1;

-- Every primary key, unique and exclusion constraint of those tables includes tenant_id, and
-- tenant_id WITH = in an exclusion constraint.
SELECT k.conrelid::regclass AS tbl, k.conname AS key_without_tenant
FROM pg_constraint k
WHERE k.contype IN ('p', 'u', 'x')
  AND k.conrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind IN ('r', 'p')
                     AND c.oid <> 'booking.global_policies'::regclass)
  AND NOT (SELECT a.attnum FROM pg_attribute a
           WHERE a.attrelid = k.conrelid AND a.attname = CASE WHEN k.conrelid = 'booking.tenants'::regclass THEN 'id' ELSE 'tenant_id' END)
          = ANY (k.conkey)
ORDER BY 1, 2;
-- Unique indexes that are not constraints follow the same rule.
SELECT i.indexrelid::regclass AS unique_index_without_tenant
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE i.indisunique AND c.relnamespace = 'booking'::regnamespace
  AND c.oid NOT IN ('booking.tenants'::regclass, 'booking.global_policies'::regclass)
  AND NOT (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id') = ANY (i.indkey::int2[])
ORDER BY 1;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'appointments_no_double_booking';

-- Every foreign key between tenant tables joins on the tenant: tenant_id to tenant_id (or to
-- tenants.id). No tenant table references a global table, nor the other way round.
SELECT k.conrelid::regclass AS tbl, k.conname AS foreign_key_without_tenant
FROM pg_constraint k
WHERE k.contype = 'f' AND k.conrelid::regclass::text LIKE 'booking.%'
  AND NOT EXISTS (
      SELECT 1 FROM unnest(k.conkey, k.confkey) AS p (col, refcol)
      JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = p.col AND a.attname = 'tenant_id'
      JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = p.refcol
                         AND r.attname = CASE WHEN k.confrelid = 'booking.tenants'::regclass THEN 'id' ELSE 'tenant_id' END)
ORDER BY 1, 2;

-- What distribute_tables would do, in order; without Citus it refuses with 0A000.
SELECT kind, object, distribution_argument FROM booking_admin.citus_layout();
SELECT regress.sqlstate_of($$SELECT booking_admin.distribute_tables()$$);
-- Every table of `booking` has its place in the layout (a partition goes where its table goes).
SELECT c.oid::regclass AS table_not_in_layout
FROM pg_class c
WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.oid::regclass::text NOT IN (SELECT object FROM booking_admin.citus_layout())
ORDER BY 1;

-- A tenant-qualified call finds only its tenant's rows: another tenant's service is PT404.
SET booking_engine.now = '2026-03-20 12:00+01';
SET timezone = 'Europe/Zurich';
SELECT regress.salon();
INSERT INTO booking.tenants (id, name) VALUES ('10000000-0000-0000-0000-000000000002', 'Other');
SELECT jsonb_array_length(booking.get_tenant_available_slots('10000000-0000-0000-0000-000000000001', '2026-03-23',
                                                             '30000000-0000-0000-0000-000000000001')) AS slots_of_own_service;
SELECT regress.sqlstate_of($$SELECT booking.get_tenant_available_slots('10000000-0000-0000-0000-000000000002', '2026-03-23',
                                                                     '30000000-0000-0000-0000-000000000001')$$);
SELECT regress.sqlstate_of($$SELECT booking.create_tenant_booking('10000000-0000-0000-0000-000000000002', 'other', jsonb_build_object(
    'customer_id', '40000000-0000-0000-0000-000000000001', 'staff_id', '20000000-0000-0000-0000-000000000001',
    'service_id', '30000000-0000-0000-0000-000000000001', 'starts_at', '2026-03-23 10:00+01'))$$);
SELECT booking.create_tenant_booking('10000000-0000-0000-0000-000000000001', 'own', jsonb_build_object(
    'customer_id', '40000000-0000-0000-0000-000000000001', 'staff_id', '20000000-0000-0000-0000-000000000001',
    'service_id', '30000000-0000-0000-0000-000000000001', 'starts_at', '2026-03-23 10:00+01')) ->> 'success' AS booked_in_own_tenant;
-- The same slots as the tenant-less function, which looks the tenant up itself.
SELECT booking.get_tenant_available_slots('10000000-0000-0000-0000-000000000001', '2026-03-23', '30000000-0000-0000-0000-000000000001')
     = booking.rpc_get_available_slots_enhanced('2026-03-23', '30000000-0000-0000-0000-000000000001') AS same_as_tenant_less;

-- The triggers' rule. On Citus a trigger on a distributed table runs on a worker, inside the
-- statement that changes the tenant's shard: there it may reach the tenant's colocated shards
-- and the reference tables on that node, nothing else. Two checks of the trigger functions and
-- of the extension's functions they call (followed through their sources):
-- 1. nothing they read is a table outside the layout (a local table of the coordinator, such
--    as booking_admin's, is another node's there, or empty);
WITH RECURSIVE trig AS (
    SELECT t.tgrelid::regclass AS tbl, t.tgname, t.tgfoid AS fn
    FROM pg_trigger t
    WHERE NOT t.tgisinternal
      AND t.tgrelid::regclass::text IN (SELECT object FROM booking_admin.citus_layout() WHERE kind <> 'function')
), reach (tbl, tgname, fn, depth) AS (
    SELECT tbl, tgname, fn, 0 FROM trig
    UNION
    SELECT r.tbl, r.tgname, callee.oid, r.depth + 1
    FROM reach r
    JOIN pg_proc p ON p.oid = r.fn
    CROSS JOIN LATERAL regexp_matches(p.prosrc, '(booking(?:_admin|_internal)?)\.([a-z_0-9]+)\s*\(', 'g') m
    JOIN pg_proc callee ON callee.proname = m[2] AND callee.pronamespace = m[1]::regnamespace
    WHERE r.depth < 8
)
SELECT DISTINCT r.tbl AS trigger_table, r.tgname AS trigger_name, p.oid::regprocedure AS via,
       m[1] || '.' || m[2] AS reads_table_outside_layout
FROM reach r
JOIN pg_proc p ON p.oid = r.fn
CROSS JOIN LATERAL regexp_matches(p.prosrc, '(booking(?:_admin|_internal)?)\.([a-z_0-9]+)\M', 'g') m
WHERE to_regclass(m[1] || '.' || m[2]) IS NOT NULL
  AND (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(m[1] || '.' || m[2])) IN ('r', 'p', 'v', 'm')
  AND m[1] || '.' || m[2] NOT IN (SELECT object FROM booking_admin.citus_layout())
ORDER BY 1, 2, 3, 4;
-- 2. no statement of a trigger function reads its transition table together with a table
--    (Citus plans no query that joins a transition table with a distributed table, and ships
--    none to a shard): the transition tables are read alone, into values.
SELECT t.tgrelid::regclass AS trigger_table, t.tgname AS trigger_name, t.tgfoid::regprocedure AS function,
       regexp_replace(left(btrim(stmt), 80), '\s+', ' ', 'g') AS statement_joining_transition_and_table
FROM pg_trigger t
JOIN pg_proc p ON p.oid = t.tgfoid
CROSS JOIN LATERAL regexp_split_to_table(p.prosrc, ';') stmt
WHERE NOT t.tgisinternal AND (t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL)
  AND t.tgrelid::regclass::text IN (SELECT object FROM booking_admin.citus_layout() WHERE kind <> 'function')
  AND stmt ~* ('\m(from|join)\s+(' || concat_ws('|', t.tgnewtable, t.tgoldtable) || ')\M')
  AND EXISTS (SELECT 1 FROM regexp_matches(stmt, '(booking(?:_admin|_internal)?)\.([a-z_0-9]+)\M', 'g') m
              WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(m[1] || '.' || m[2])) IN ('r', 'p', 'v', 'm'))
ORDER BY 1, 2;
-- The triggers these checks read (so that a check that finds nothing is seen to have looked).
SELECT count(*) AS trigger_functions_checked
FROM pg_trigger t
WHERE NOT t.tgisinternal
  AND t.tgrelid::regclass::text IN (SELECT object FROM booking_admin.citus_layout() WHERE kind <> 'function');
