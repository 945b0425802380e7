-- Operators' statistics: one set-based read of the statistics views per function, so a
-- database with thousands of tables answers as fast as an empty one. All run with the
-- caller's rights (pg_monitor or pg_read_all_stats to see other users' sessions and queries).

-- The instant the cumulative statistics of this database start from: a reader judges an
-- "unused" index by how long it has had the chance to be used.
CREATE FUNCTION booking_admin.stats_since() RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(d.stats_reset, pg_postmaster_start_time())
    FROM pg_stat_database d WHERE d.datname = current_database()
$$;

CREATE FUNCTION booking_admin.get_table_stats()
RETURNS TABLE (
    schema_name name, table_name name, row_estimate bigint,
    total_bytes bigint, table_bytes bigint, index_bytes bigint, toast_bytes bigint,
    seq_scan bigint, idx_scan bigint, idx_scan_share numeric,
    n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint, n_live_tup bigint, n_dead_tup bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.schemaname, s.relname, greatest(c.reltuples, 0)::bigint,
           z.total, z.main - z.toast, z.indexes, z.toast,
           s.seq_scan, coalesce(s.idx_scan, 0),
           round(coalesce(s.idx_scan, 0)::numeric / nullif(s.seq_scan + coalesce(s.idx_scan, 0), 0), 4),
           s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_live_tup, s.n_dead_tup
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    -- Each size function reads the files' sizes from disk: call each once per table.
    CROSS JOIN LATERAL (SELECT pg_table_size(c.oid) AS main, pg_indexes_size(c.oid) AS indexes,
                               CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS toast) z0
    CROSS JOIN LATERAL (SELECT z0.main + z0.indexes AS total, z0.main, z0.indexes, z0.toast) z
    ORDER BY z.total DESC, s.schemaname, s.relname
$$;

-- An index is a duplicate of another valid index on the same table with the same access
-- method, predicate and expressions whose leading key columns (with the same operator classes
-- and collations) are this one's. Among identical indexes the primary key, then a unique index,
-- then the oldest one is kept, so exactly one of a pair is reported. A unique index is only
-- redundant beside another unique index on exactly its columns: it enforces something.
CREATE FUNCTION booking_admin.get_index_stats()
RETURNS TABLE (
    schema_name name, table_name name, index_name name, index_bytes bigint,
    idx_scan bigint, idx_tup_read bigint, idx_tup_fetch bigint,
    is_unique boolean, is_primary boolean, is_valid boolean,
    unused boolean, duplicate_of name, stats_since timestamptz, stats_age interval)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH ix AS (
        SELECT s.schemaname, s.relname, s.indexrelname, s.indexrelid, s.relid,
               s.idx_scan, s.idx_tup_read, s.idx_tup_fetch,
               i.indisunique, i.indisprimary, i.indisvalid, c.relam,
               array_to_string((i.indkey::int2[])[0:i.indnkeyatts - 1], ' ') AS keys,
               array_to_string((i.indclass::oid[])[0:i.indnkeyatts - 1], ' ') AS classes,
               array_to_string((i.indcollation::oid[])[0:i.indnkeyatts - 1], ' ') AS colls,
               pg_get_expr(i.indexprs, i.indrelid) AS exprs, pg_get_expr(i.indpred, i.indrelid) AS pred
        FROM pg_stat_user_indexes s
        JOIN pg_index i ON i.indexrelid = s.indexrelid
        JOIN pg_class c ON c.oid = s.indexrelid
    ), dup AS (
        -- One hash join of the indexes with their table's other indexes, the best match kept.
        SELECT DISTINCT ON (a.indexrelid) a.indexrelid, b.indexrelname AS duplicate_of
        FROM ix a
        JOIN ix b ON b.relid = a.relid AND b.indexrelid <> a.indexrelid AND b.indisvalid AND b.relam = a.relam
        WHERE b.exprs IS NOT DISTINCT FROM a.exprs
          AND b.pred IS NOT DISTINCT FROM a.pred
          AND (b.keys = a.keys AND b.classes = a.classes AND b.colls = a.colls
               OR b.keys LIKE a.keys || ' %' AND b.classes LIKE a.classes || ' %' AND b.colls LIKE a.colls || ' %')
          AND (NOT a.indisunique OR (b.indisunique AND b.keys = a.keys))
          AND (b.keys <> a.keys
               OR (b.indisprimary, b.indisunique, a.indexrelid) > (a.indisprimary, a.indisunique, b.indexrelid))
        ORDER BY a.indexrelid, b.indisprimary DESC, b.indisunique DESC, b.indexrelid
    ), since AS (SELECT booking_admin.stats_since() AS t)
    SELECT ix.schemaname, ix.relname, ix.indexrelname, pg_relation_size(ix.indexrelid),
           ix.idx_scan, ix.idx_tup_read, ix.idx_tup_fetch,
           ix.indisunique, ix.indisprimary, ix.indisvalid,
           ix.idx_scan = 0 AND NOT ix.indisunique AND NOT ix.indisprimary,
           dup.duplicate_of, since.t, now() - since.t
    FROM ix CROSS JOIN since
    LEFT JOIN dup ON dup.indexrelid = ix.indexrelid
    ORDER BY ix.schemaname, ix.relname, ix.indexrelname
$$;

-- Autovacuum's own rule (threshold + scale factor x rows, per-table settings first) tells
-- whether a table is due; the transaction-id age says how far a table is from a forced
-- anti-wraparound vacuum and from the 2^31 hard limit.
CREATE FUNCTION booking_admin.get_table_vacuum_stats()
RETURNS TABLE (
    schema_name name, table_name name,
    last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, last_autoanalyze timestamptz,
    vacuum_count bigint, autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint,
    n_live_tup bigint, n_dead_tup bigint, dead_tuple_ratio numeric,
    n_mod_since_analyze bigint, n_ins_since_vacuum bigint,
    xid_age integer, xids_to_wraparound bigint, autovacuum_due boolean, autoanalyze_due boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH g AS (
        SELECT current_setting('autovacuum_vacuum_threshold')::float8 AS vt,
               current_setting('autovacuum_vacuum_scale_factor')::float8 AS vs,
               current_setting('autovacuum_vacuum_insert_threshold')::float8 AS it,
               current_setting('autovacuum_vacuum_insert_scale_factor')::float8 AS "is",
               current_setting('autovacuum_analyze_threshold')::float8 AS at,
               current_setting('autovacuum_analyze_scale_factor')::float8 AS "as",
               current_setting('autovacuum_freeze_max_age')::float8 AS fma
    )
    SELECT s.schemaname, s.relname,
           s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
           s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
           s.n_live_tup, s.n_dead_tup,
           round(s.n_dead_tup::numeric / nullif(s.n_live_tup + s.n_dead_tup, 0), 4),
           s.n_mod_since_analyze, s.n_ins_since_vacuum,
           x.age, 2147483647 - x.age,
           c.relkind <> 'p' AND (
               s.n_dead_tup > coalesce(o.vt, g.vt) + coalesce(o.vs, g.vs) * greatest(c.reltuples, 0)
               OR (coalesce(o.it, g.it) >= 0
                   AND s.n_ins_since_vacuum > coalesce(o.it, g.it) + coalesce(o."is", g."is") * greatest(c.reltuples, 0))
               OR x.age > coalesce(o.fma, g.fma)),
           c.relkind <> 'p' AND s.n_mod_since_analyze > coalesce(o.at, g.at) + coalesce(o."as", g."as") * greatest(c.reltuples, 0)
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    CROSS JOIN g
    CROSS JOIN LATERAL (SELECT CASE WHEN c.relfrozenxid <> '0'::xid THEN age(c.relfrozenxid) END AS age) x
    CROSS JOIN LATERAL (
        SELECT max(r.v) FILTER (WHERE r.k = 'autovacuum_vacuum_threshold') AS vt,
               max(r.v) FILTER (WHERE r.k = 'autovacuum_vacuum_scale_factor') AS vs,
               max(r.v) FILTER (WHERE r.k = 'autovacuum_vacuum_insert_threshold') AS it,
               max(r.v) FILTER (WHERE r.k = 'autovacuum_vacuum_insert_scale_factor') AS "is",
               max(r.v) FILTER (WHERE r.k = 'autovacuum_analyze_threshold') AS at,
               max(r.v) FILTER (WHERE r.k = 'autovacuum_analyze_scale_factor') AS "as",
               max(r.v) FILTER (WHERE r.k = 'autovacuum_freeze_max_age') AS fma
        FROM (SELECT t.option_name AS k, t.option_value::float8 AS v
              FROM pg_options_to_table(c.reloptions) t
              WHERE t.option_name LIKE 'autovacuum\_%' AND t.option_name <> 'autovacuum_enabled') r) o
    ORDER BY s.n_dead_tup DESC, s.schemaname, s.relname
$$;

-- Share of block reads of this database served from shared buffers; NULL before any read.
CREATE FUNCTION booking_admin.get_cache_hit_ratio() RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT round(d.blks_hit::numeric / nullif(d.blks_hit + d.blks_read, 0), 4)
    FROM pg_stat_database d WHERE d.datname = current_database()
$$;

-- The same for the blocks of user indexes only.
CREATE FUNCTION booking_admin.get_index_hit_ratio() RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT round(sum(s.idx_blks_hit)::numeric / nullif(sum(s.idx_blks_hit + s.idx_blks_read), 0), 4)
    FROM pg_statio_user_indexes s
$$;

-- Client sessions of the whole server (max_connections is a server limit), one row.
CREATE FUNCTION booking_admin.get_connection_stats()
RETURNS TABLE (
    total_connections integer, max_connections integer, used_ratio numeric,
    active integer, idle integer, idle_in_transaction integer, waiting_on_locks integer,
    oldest_xact_start timestamptz, oldest_xact_age interval, oldest_xact_pid integer,
    by_state jsonb, by_application jsonb)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH a AS (SELECT * FROM pg_stat_activity WHERE backend_type = 'client backend'),
         m AS (SELECT current_setting('max_connections')::int AS n),
         o AS (SELECT a.pid, a.xact_start FROM a WHERE a.xact_start IS NOT NULL ORDER BY a.xact_start LIMIT 1)
    SELECT (SELECT count(*) FROM a)::int, m.n, round((SELECT count(*) FROM a)::numeric / m.n, 4),
           (SELECT count(*) FILTER (WHERE state = 'active') FROM a)::int,
           (SELECT count(*) FILTER (WHERE state = 'idle') FROM a)::int,
           (SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%') FROM a)::int,
           (SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') FROM a)::int,
           (SELECT o.xact_start FROM o), now() - (SELECT o.xact_start FROM o), (SELECT o.pid FROM o),
           coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT coalesce(state, 'unknown') AS k, count(*) AS n
                                                         FROM a GROUP BY 1) x), '{}'),
           coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT coalesce(nullif(application_name, ''), '(none)') AS k,
                                                                count(*) AS n FROM a GROUP BY 1) x), '{}')
    FROM m
$$;

-- pg_stat_statements lives in whatever schema it was created in; an absent extension is an
-- error that says what to install, not an empty list that looks like "no slow queries".
CREATE FUNCTION booking_admin.get_slow_queries("limit" integer DEFAULT 20, min_mean_ms float8 DEFAULT 0)
RETURNS TABLE (
    queryid bigint, query text, calls bigint, total_ms float8, mean_ms float8, max_ms float8,
    stddev_ms float8, rows bigint, cache_hit_ratio numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ext_schema name;
BEGIN
    IF $1 IS NULL OR $1 NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 10000, got %', coalesce($1::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF $2 IS NULL OR $2 < 0 THEN
        RAISE EXCEPTION 'min_mean_ms must be zero or more' USING ERRCODE = '22023';
    END IF;
    SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'get_slow_queries needs the pg_stat_statements extension, which is not installed in database %',
            current_database()
            USING ERRCODE = '55000',
                  HINT = 'Install PostgreSQL''s contrib package (Debian: postgresql-contrib), add pg_stat_statements to shared_preload_libraries, restart, then run CREATE EXTENSION pg_stat_statements.';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.queryid, s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.max_exec_time,
                s.stddev_exec_time, s.rows,
                round(s.shared_blks_hit::numeric / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 4)
         FROM %I.pg_stat_statements s
         WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
           AND s.mean_exec_time >= $1
         ORDER BY s.mean_exec_time DESC, s.queryid
         LIMIT $2', ext_schema)
        USING $2, $1;
END $$;

-- Large plain tables whose index scans mostly go through an index led by a date or timestamp
-- column: those queries would touch few partitions of a table partitioned by that column.
-- The interval keeps a partition near 5 million rows at the rate the column's histogram shows.
CREATE FUNCTION booking_admin.analyze_partitioning_candidates(min_rows bigint DEFAULT 10000000)
RETURNS TABLE (
    schema_name name, table_name name, row_estimate bigint, total_bytes bigint,
    partition_key name, key_type text, time_index_scan_share numeric, suggested_interval text, reason text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH t AS (
        SELECT s.relid, s.schemaname, s.relname, greatest(c.reltuples, 0)::bigint AS rows,
               coalesce(s.idx_scan, 0) AS idx_scan
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE c.relkind = 'r' AND NOT c.relispartition AND c.reltuples >= min_rows
    ), col AS (
        SELECT DISTINCT ON (t.relid) t.*, a.attname, format_type(a.atttypid, a.atttypmod) AS typ,
               sum(coalesce(ui.idx_scan, 0)) AS scans
        FROM t
        JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)
        JOIN pg_index i ON i.indrelid = t.relid AND i.indkey[0] = a.attnum
        LEFT JOIN pg_stat_user_indexes ui ON ui.indexrelid = i.indexrelid
        GROUP BY t.relid, t.schemaname, t.relname, t.rows, t.idx_scan, a.attname, a.atttypid, a.atttypmod
        ORDER BY t.relid, sum(coalesce(ui.idx_scan, 0)) DESC, a.attname
    ), rate AS (
        SELECT col.*, round(col.scans::numeric / nullif(col.idx_scan, 0), 4) AS share,
               (SELECT col.rows / greatest(extract(epoch FROM b[array_upper(b, 1)] - b[1]) / 86400, 1)
                FROM pg_stats ps CROSS JOIN LATERAL (SELECT ps.histogram_bounds::text::timestamptz[] AS b) h
                WHERE ps.schemaname = col.schemaname AND ps.tablename = col.relname AND ps.attname = col.attname
                  AND NOT ps.inherited) AS rows_per_day
        FROM col
    )
    SELECT r.schemaname, r.relname, r.rows, pg_total_relation_size(r.relid), r.attname, r.typ, r.share,
           CASE WHEN r.rows_per_day IS NULL THEN 'month'
                WHEN r.rows_per_day >= 5e6 THEN 'day'
                WHEN r.rows_per_day * 7 >= 5e6 THEN 'week'
                WHEN r.rows_per_day * 31 >= 5e6 THEN 'month'
                ELSE 'year' END,
           format('%s rows; %s%% of its index scans use an index led by %s%s', r.rows, round(r.share * 100),
                  r.attname,
                  CASE WHEN r.rows_per_day IS NULL THEN ' (no histogram yet: ANALYZE it to size the interval)'
                       ELSE format(' (about %s rows a day)', round(r.rows_per_day)) END)
    FROM rate r
    WHERE r.share >= 0.5
    ORDER BY r.rows DESC, r.schemaname, r.relname
$$;

-- Every execute_admin_sql attempt, accepted or refused. Rows are written by the audit writer
-- background worker in its own transaction, so they stay when the caller rolls back.
CREATE TABLE booking_admin.admin_audit (
    id             uuid PRIMARY KEY,
    attempted_at   timestamptz NOT NULL,
    role_name      text NOT NULL,
    session_role   text NOT NULL,
    statement      text NOT NULL,
    statement_kind text,
    decision       text NOT NULL CHECK (decision IN ('accepted', 'refused')),
    reason         text,
    sqlstate       text,
    mode           text CHECK (mode IN ('immediate', 'queued')),
    outcome        text NOT NULL CHECK (outcome IN ('pending', 'succeeded', 'failed', 'refused')),
    outcome_detail text,
    finished_at    timestamptz,
    -- The job that runs a queued statement (no foreign key: job retention may remove it).
    job_id         uuid
);
CREATE INDEX admin_audit_attempted_idx ON booking_admin.admin_audit (attempted_at);
COMMENT ON TABLE booking_admin.admin_audit IS
    'execute_admin_sql attempts: who, when, the statement, the decision and why, and how it ended. Survives the caller''s rollback.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.admin_audit', '');


-- The auto-tuner's settings: one row. performance_threshold_ms NULL means the
-- aggressiveness's own threshold (conservative 50 ms, moderate 35, aggressive 20).
CREATE TABLE booking_admin.auto_tuner_config (
    id                          boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled                     boolean NOT NULL DEFAULT false,
    aggressiveness              text NOT NULL DEFAULT 'conservative'
                                CHECK (aggressiveness IN ('conservative', 'moderate', 'aggressive')),
    auto_apply_indexes          boolean NOT NULL DEFAULT false,
    performance_threshold_ms    float8 CHECK (performance_threshold_ms > 0),
    monitoring_interval_minutes integer NOT NULL DEFAULT 60 CHECK (monitoring_interval_minutes BETWEEN 1 AND 10080),
    max_indexes_per_table       integer NOT NULL DEFAULT 10 CHECK (max_indexes_per_table BETWEEN 1 AND 100),
    last_cycle_at               timestamptz,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE booking_admin.auto_tuner_config IS
    'The auto-tuner''s settings (one row). It applies and rolls back nothing inside a window of the freeze calendar (booking_admin.freeze_windows).';
INSERT INTO booking_admin.auto_tuner_config DEFAULT VALUES;
-- The extension seeds the one row itself; a restore of the dumped row updates it instead of
-- failing on the duplicate key, so the operator's settings survive a dump and restore.
CREATE TRIGGER auto_tuner_config_restore BEFORE INSERT ON booking_admin.auto_tuner_config
    FOR EACH ROW EXECUTE FUNCTION booking.update_seed_instead('id');
SELECT pg_catalog.pg_extension_config_dump('booking_admin.auto_tuner_config', '');

CREATE TABLE booking_admin.tuning_actions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    action         text NOT NULL CHECK (action = 'create_index'),
    table_name     text NOT NULL,
    index_name     text,
    definition     text NOT NULL,
    sql            text NOT NULL,
    rollback_sql   text,
    reason         text NOT NULL,
    query          text,
    status         text NOT NULL CHECK (status IN ('proposed', 'applying', 'applied', 'rolled_back', 'skipped')),
    status_reason  text,
    cost_before    float8,
    cost_after     float8,
    applied_at     timestamptz,
    rolled_back_at timestamptz,
    -- applying: the queued job building the index CONCURRENTLY (no foreign key: job retention
    -- may remove it).
    job_id         uuid
);
CREATE INDEX tuning_actions_definition_idx ON booking_admin.tuning_actions (definition, status);
COMMENT ON TABLE booking_admin.tuning_actions IS
    'What the auto-tuner proposed, applied, skipped or rolled back, with the planner''s cost of the query before and after.';
COMMENT ON COLUMN booking_admin.tuning_actions.definition IS
    'The index without its name (CREATE INDEX ON table (columns)): a definition already proposed or applied is not proposed again.';
SELECT pg_catalog.pg_extension_config_dump('booking_admin.tuning_actions', '');

-- How one execute_admin_sql attempt ended, by the audit_id it returned (or that its error
-- was recorded under): the audit row as a document.
-- VOLATILE: the writer commits rows during the caller's statement, which a STABLE function's
-- snapshot would not see.
CREATE FUNCTION booking_admin.admin_sql_status(p_audit_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb;
    job record;
BEGIN
    SELECT to_jsonb(a) INTO doc FROM booking_admin.admin_audit a WHERE a.id = p_audit_id;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'no admin statement with audit id %', coalesce(p_audit_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    IF doc ->> 'job_id' IS NULL THEN
        RETURN doc;
    END IF;
    -- A queued statement ends when its job does (a completed job may have moved to the history).
    SELECT j.status, j.retry_count, j.started_at, j.error_message, j.completed_at INTO job
    FROM booking_admin.jobs j WHERE j.id = (doc ->> 'job_id')::uuid;
    IF NOT FOUND THEN
        SELECT j.status, j.retry_count, j.started_at, j.error_message, j.completed_at INTO job
        FROM booking_admin.job_history j WHERE j.id = (doc ->> 'job_id')::uuid;
    END IF;
    IF job.status IS NULL THEN
        RETURN doc || jsonb_build_object('outcome', 'failed', 'outcome_detail',
            'its job is gone: the enqueuing transaction rolled back, or job retention removed it');
    END IF;
    -- A pending job says whether a runner will take it (false: no worker serves this database,
    -- see worker_status()).
    RETURN doc || jsonb_build_object(
        'will_run', CASE WHEN job.status IN ('pending', 'failed', 'running')
                         THEN (booking_admin.worker_status() ->> 'will_run')::boolean END,
        'outcome', CASE job.status WHEN 'completed' THEN 'succeeded' WHEN 'dead' THEN 'failed' ELSE 'pending' END,
        'outcome_detail', job.error_message,
        'finished_at', job.completed_at,
        'job', jsonb_build_object('status', job.status, 'retry_count', job.retry_count, 'started_at', job.started_at));
END $$;

-- The tuner's concurrent builds, settled: an action whose job completed and whose index is valid
-- is applied (from now on, by the tuner's clock: its monitoring interval counts from here); one
-- whose job died, or whose index was left invalid (a CREATE INDEX CONCURRENTLY that failed
-- leaves one behind), is skipped with the reason and the invalid index dropped through the
-- sandbox. Returns {"applied": n, "failed": n}.
CREATE FUNCTION booking_admin.settle_tuning_actions() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a record;
    v_applied integer := 0;
    v_failed integer := 0;
BEGIN
    FOR a IN
        SELECT t.id, t.index_name, t.rollback_sql, j.status AS job_status, j.error_message,
               (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(t.index_name)) AS valid
        FROM booking_admin.tuning_actions t
        LEFT JOIN LATERAL (
            SELECT q.status, q.error_message FROM booking_admin.jobs q WHERE q.id = t.job_id
            UNION ALL
            SELECT h.status, h.error_message FROM booking_admin.job_history h WHERE h.id = t.job_id
            LIMIT 1) j ON true
        WHERE t.status = 'applying'
        FOR UPDATE OF t
    LOOP
        IF a.job_status = 'completed' AND a.valid THEN
            UPDATE booking_admin.tuning_actions SET status = 'applied', applied_at = booking.clock_now() WHERE id = a.id;
            v_applied := v_applied + 1;
        ELSIF a.job_status IS NULL OR a.job_status IN ('completed', 'dead') THEN
            IF a.valid IS NOT NULL THEN
                PERFORM booking_admin.execute_admin_sql(a.rollback_sql);
            END IF;
            UPDATE booking_admin.tuning_actions
            SET status = 'skipped',
                status_reason = coalesce('the concurrent build failed: ' || a.error_message,
                                         'the concurrent build left no valid index (its job is gone or the index invalid)')
            WHERE id = a.id;
            v_failed := v_failed + 1;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('applied', v_applied, 'failed', v_failed);
END $$;

-- Scheduled operation of the auto-tuner ---------------------------------------------------------

-- The tuner has its own switch and interval (auto_tuner_config): the scheduler asks every
-- minute, and a cycle runs when the tuner is enabled and monitoring_interval_minutes have passed
-- since the last one. Processed = the actions the cycle took or proposed.
CREATE FUNCTION booking_admin.op_auto_tune(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, booking_admin, pg_temp AS $$
DECLARE
    cfg booking_admin.auto_tuner_config;
BEGIN
    SELECT * INTO cfg FROM booking_admin.auto_tuner_config;
    IF NOT cfg.enabled
       OR cfg.last_cycle_at > booking.clock_now() - make_interval(mins => cfg.monitoring_interval_minutes) THEN
        RETURN 0;
    END IF;
    RETURN jsonb_array_length(coalesce(booking_admin.perform_tuning_cycle() -> 'actions', '[]'));
END $$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('auto-tune', 'Run an auto-tuner cycle when enabled and due', 'booking_admin.op_auto_tune', '{}', 60000, 3, 600000);
