-- booking_engine's own objects pass its own security lints: every exposed table has row-level
-- security, every SECURITY DEFINER function pins its search_path, no booking_admin function is
-- executable by PUBLIC. And the lints are not blind: an unprotected table is caught.
SELECT booking_admin.init_default_security_rules() AS rules_installed;
SELECT rule_name, severity FROM booking_admin.security_rules ORDER BY rule_name;
SELECT booking_admin.evaluate_security_rules() - 'errors' AS fresh_database, booking_admin.evaluate_security_rules() -> 'errors' AS errors;
SELECT count(*) AS open_violations FROM booking_admin.security_violations WHERE status = 'open';

CREATE TABLE booking.lint_probe (id int);
CREATE FUNCTION booking.lint_probe_fn() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
SELECT (booking_admin.evaluate_security_rules() ->> 'violations_found')::int AS found_after_adding_open_objects;
SELECT r.rule_name FROM booking_admin.security_violations v JOIN booking_admin.security_rules r ON r.id = v.rule_id
WHERE v.status = 'open' ORDER BY 1;
DROP TABLE booking.lint_probe;
DROP FUNCTION booking.lint_probe_fn();
SELECT (booking_admin.evaluate_security_rules() ->> 'violations_resolved')::int AS resolved_after_removing_them;

-- The scans are scheduled maintenance operations, runnable by hand as well.
SELECT job_name, delay_ms, enabled FROM booking_admin.scheduler_job_info
WHERE job_name IN ('security-evaluate', 'pii-scan') ORDER BY job_name;
SELECT r -> 'success' AS success, r -> 'data' -> 'status' AS status, r -> 'data' -> 'processedCount' AS violations
FROM booking_admin.run_maintenance('security-evaluate') r;
CREATE TABLE public.signups (id int, contact text);
INSERT INTO public.signups SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 20) g;
SELECT r -> 'success' AS success, r -> 'data' -> 'processedCount' AS pii_columns
FROM booking_admin.run_maintenance('pii-scan') r;
SELECT table_name, column_name, data_type FROM booking_admin.pii_data_registry WHERE table_name = 'public.signups';

-- Supabase splinter's table lints, applied to the extension's own objects (every object that
-- belongs to booking_engine, so new ones are checked as they come): each view lists what its
-- lint finds, and finds nothing.
CREATE TEMP VIEW ext_tables AS
SELECT c.oid FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine'
WHERE c.relkind IN ('r', 'p');

-- splinter 0011, 0028 and 0029 (search_path, SECURITY DEFINER functions anon or authenticated
-- may execute in the exposed schemas) report nothing at all for the extension: they are run
-- against it, as Supabase's advisor would, by tests/integration/advisor.rs.

-- splinter 0018: reg* columns, which pg_upgrade refuses (regclass, regrole and regtype it keeps).
CREATE TEMP VIEW lint_reg_columns AS
SELECT a.attrelid::regclass::text AS table_name, a.attname, a.atttypid::regtype AS type
FROM ext_tables t JOIN pg_attribute a ON a.attrelid = t.oid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid IN ('regproc'::regtype, 'regprocedure'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
                     'regconfig'::regtype, 'regdictionary'::regtype, 'regnamespace'::regtype, 'regcollation'::regtype);

-- splinter 0001: foreign keys without an index on the referencing side. Covered: a valid,
-- non-partial index led by the key's columns, or (the composite (tenant_id, id) keys) led by
-- the key's id column, which is unique on its own.
CREATE TEMP VIEW lint_unindexed_foreign_keys AS
SELECT c.conrelid::regclass::text AS table_name, c.conname
FROM ext_tables t JOIN pg_constraint c ON c.conrelid = t.oid
-- A partitioned table's foreign key is checked on its partitions, each with a copy of it (the
-- indexes are theirs, see sql/partitions.sql): the default partition is listed here.
WHERE c.contype = 'f' AND (SELECT relkind FROM pg_class WHERE oid = c.conrelid) <> 'p'
  AND NOT EXISTS (
      SELECT FROM pg_index i
      WHERE i.indrelid = c.conrelid AND i.indisvalid
        -- A partial index serves when it leaves out only rows that reference nothing (NULL in
        -- a referencing column), which the foreign key never looks up.
        AND (i.indpred IS NULL OR pg_get_expr(i.indpred, i.indrelid) IN (
                SELECT format('(%s IS NOT NULL)', quote_ident(a.attname)) FROM pg_attribute a
                WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)))
        AND ((i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
             OR i.indkey[0] = ANY (c.conkey)
                AND i.indkey[0] <> ALL (SELECT a.attnum FROM pg_attribute a
                                        WHERE a.attrelid = c.conrelid AND a.attname = 'tenant_id')));

SELECT * FROM lint_reg_columns ORDER BY table_name, attname;
SELECT * FROM lint_unindexed_foreign_keys ORDER BY table_name, conname;

-- And they are not blind: an extension table with a regproc column and an unindexed foreign
-- key.
CREATE TABLE booking.lint_probe (tenant_id uuid REFERENCES booking.tenants (id), f regproc);
ALTER EXTENSION booking_engine ADD TABLE booking.lint_probe;
SELECT * FROM lint_reg_columns WHERE table_name LIKE '%lint_probe%';
SELECT * FROM lint_unindexed_foreign_keys WHERE table_name LIKE '%lint_probe%';
ALTER EXTENSION booking_engine DROP TABLE booking.lint_probe;
DROP TABLE booking.lint_probe;
