-- Every object of the booking_engine extension, one normalised line per property, in a stable
-- order, without oids or the database's name: an upgraded database and a fresh install of
-- the same version must print the same text (scripts/upgrade_test.sh diffs the two).
-- Columns are listed by name, not position: ALTER TABLE ADD COLUMN can only append, so an
-- upgrade cannot reproduce a fresh install's column order, and nothing in the extension
-- depends on it.
\pset format unaligned
\pset tuples_only on
\pset footer off
WITH ext AS (
    SELECT oid, extname FROM pg_catalog.pg_extension WHERE extname = 'booking_engine'
), members AS (
    SELECT d.classid, d.objid
    FROM pg_catalog.pg_depend d JOIN ext ON d.refobjid = ext.oid
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
), acl(a) AS (VALUES (NULL::aclitem[])
), rels AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind
    FROM pg_catalog.pg_class c
    WHERE c.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_class'::regclass)
       OR c.oid IN (SELECT t.typrelid FROM pg_catalog.pg_type t
                    WHERE t.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_type'::regclass))
), procs AS (
    SELECT p.oid, p.oid::regprocedure::text AS name
    FROM pg_catalog.pg_proc p
    WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_proc'::regclass)
), lines(line) AS (
    SELECT 'extension|' || e.extname || '|relocatable=' || e.extrelocatable || '|schema=' || e.extnamespace::regnamespace
    FROM pg_catalog.pg_extension e JOIN ext USING (oid)
    UNION ALL
    -- Tables whose rows pg_dump keeps (pg_extension_config_dump), with their filters.
    SELECT 'config_dump|' || cfg.rel::regclass || '|' || coalesce(cond, '')
    FROM pg_catalog.pg_extension e JOIN ext USING (oid),
         LATERAL unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)
    UNION ALL
    SELECT 'member|' || o.type || '|' || o.identity
    FROM members m, LATERAL pg_catalog.pg_identify_object(m.classid, m.objid, 0) o
    UNION ALL
    SELECT 'schema|' || n.nspname || '|acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x), '')
    FROM pg_catalog.pg_namespace n
    WHERE n.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_namespace'::regclass)
    UNION ALL
    SELECT 'relation|' || r.name || '|kind=' || r.relkind::text || '|persistence=' || c.relpersistence::text
           || '|rls=' || c.relrowsecurity || '|force_rls=' || c.relforcerowsecurity
           || '|options=' || coalesce(array_to_string(c.reloptions, ','), '')
           || '|acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x), '')
           || '|comment=' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
    FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.oid
    UNION ALL
    SELECT 'column|' || r.name || '|' || a.attname || '|' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || '|notnull=' || a.attnotnull || '|default=' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
           || '|identity=' || a.attidentity::text || '|generated=' || a.attgenerated::text
           || '|collation=' || coalesce((SELECT collname FROM pg_catalog.pg_collation WHERE oid = a.attcollation AND a.attcollation <> 100), '')
           || '|acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x), '')
           || '|comment=' || coalesce(pg_catalog.col_description(r.oid, a.attnum), '')
    FROM rels r
    JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint|' || r.name || '|' || con.conname || '|' || pg_catalog.pg_get_constraintdef(con.oid)
           || '|deferrable=' || con.condeferrable || '|deferred=' || con.condeferred
    FROM rels r JOIN pg_catalog.pg_constraint con ON con.conrelid = r.oid
    UNION ALL
    SELECT 'index|' || r.name || '|' || pg_catalog.pg_get_indexdef(i.indexrelid)
    FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'trigger|' || r.name || '|' || pg_catalog.pg_get_triggerdef(t.oid) || '|enabled=' || t.tgenabled::text
    FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy|' || r.name || '|' || p.polname || '|cmd=' || p.polcmd::text || '|permissive=' || p.polpermissive
           || '|roles=' || (SELECT string_agg(CASE WHEN x = 0 THEN 'public' ELSE x::regrole::text END, ',' ORDER BY 1) FROM unnest(p.polroles) x)
           || '|using=' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')
           || '|check=' || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
    FROM rels r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
    UNION ALL
    SELECT 'view|' || r.name || '|' || regexp_replace(pg_catalog.pg_get_viewdef(r.oid), '\s+', ' ', 'g')
    FROM rels r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'sequence|' || r.name || '|' || pg_catalog.format_type(s.seqtypid, NULL) || '|' || s.seqstart || '|' || s.seqincrement
           || '|' || s.seqmax || '|' || s.seqmin || '|' || s.seqcache || '|' || s.seqcycle
    FROM rels r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.oid
    UNION ALL
    SELECT 'function|' || f.name || '|acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), '')
           || '|comment=' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') || E'\n'
           || CASE WHEN p.prokind IN ('a', 'w') THEN 'aggregate'
                   ELSE regexp_replace(pg_catalog.pg_get_functiondef(p.oid), '\s+$', '') END
    FROM procs f JOIN pg_catalog.pg_proc p ON p.oid = f.oid
    UNION ALL
    SELECT 'type|' || t.oid::regtype || '|' || t.typtype::text
           || '|labels=' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_catalog.pg_enum WHERE enumtypid = t.oid), '')
           || '|base=' || CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) ELSE '' END
           || '|checks=' || coalesce((SELECT string_agg(pg_catalog.pg_get_constraintdef(c.oid), ' AND ' ORDER BY c.conname)
                                      FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid), '')
    FROM pg_catalog.pg_type t
    WHERE t.oid IN (SELECT objid FROM members WHERE classid = 'pg_catalog.pg_type'::regclass)
    UNION ALL
    -- The privileges pg_dump takes as the extension's own (and does not dump).
    SELECT 'init_privs|' || o.type || '|' || o.identity || '|sub=' || ip.objsubid || '|'
           || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(ip.initprivs) x)
    FROM pg_catalog.pg_init_privs ip, LATERAL pg_catalog.pg_identify_object(ip.classoid, ip.objoid, ip.objsubid) o
    WHERE (ip.classoid, ip.objoid) IN (SELECT classid, objid FROM members)
       OR (ip.classoid = 'pg_catalog.pg_class'::regclass AND ip.objoid IN (SELECT oid FROM rels))
    UNION ALL
    SELECT 'default_acl|' || pg_get_userbyid(d.defaclrole) || '|' || coalesce(d.defaclnamespace::regnamespace::text, '') || '|'
           || d.defaclobjtype::text || '|' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(d.defaclacl) x)
    FROM pg_catalog.pg_default_acl d
    UNION ALL
    SELECT 'event_trigger|' || e.evtname || '|' || e.evtevent || '|' || e.evtfoid::regproc || '|' || e.evtenabled::text
           || '|' || coalesce(array_to_string(e.evttags, ','), '')
    FROM pg_catalog.pg_event_trigger e
)
SELECT line FROM lines ORDER BY line COLLATE "C";
