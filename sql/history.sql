-- Database health over time. The scheduler's capture-history operation keeps, every 5 minutes,
-- what pg_stat_statements, pg_stat_database and pg_stat_activity say (as deltas where they are
-- counters) and, every hour, the size and use of every relation and the headroom of every
-- sequence. The tables are partitioned by day (sql/partitions.sql; their indexes are the
-- default partition's, copied to each day's) and dropped past their retention. The functions
-- below answer a DBA's questions over a window: which queries take the time and how that
-- moves, which relations grow fastest, which sequences run out, which indexes nobody uses,
-- which are duplicates, and who blocks whom now. (PgHero keeps and asks the same; here it is
-- the database's own.)

-- One row per query (of this database) and capture: what it did since the previous capture.
CREATE TABLE booking_admin.history_query_stats (
    captured_at      timestamptz NOT NULL,
    queryid          bigint NOT NULL,
    role_name        text NOT NULL,
    toplevel         boolean NOT NULL,
    calls            bigint NOT NULL,
    total_ms         float8 NOT NULL,
    rows             bigint NOT NULL,
    shared_blks_hit  bigint NOT NULL,
    shared_blks_read bigint NOT NULL
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_query_stats_default PARTITION OF booking_admin.history_query_stats DEFAULT;
CREATE INDEX history_query_stats_query_idx ON booking_admin.history_query_stats_default (queryid, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_query_stats_default', '');

-- The text of each query seen (pg_stat_statements's normalised text), once per queryid.
CREATE TABLE booking_admin.history_query_texts (
    queryid      bigint PRIMARY KEY,
    query        text NOT NULL,
    last_seen_at timestamptz NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_query_texts', '');

-- pg_stat_statements's counters at the last capture, the base of the next deltas.
CREATE TABLE booking_admin.history_query_state (
    userid      oid NOT NULL,
    queryid     bigint NOT NULL,
    toplevel    boolean NOT NULL,
    calls       bigint NOT NULL,
    total_ms    float8 NOT NULL,
    rows        bigint NOT NULL,
    blks_hit    bigint NOT NULL,
    blks_read   bigint NOT NULL,
    captured_at timestamptz NOT NULL,
    PRIMARY KEY (userid, queryid, toplevel)
);

-- One row per capture: the database's size, its sessions by state, and pg_stat_database's
-- counters as they stand (a chart takes their differences).
CREATE TABLE booking_admin.history_database_stats (
    captured_at         timestamptz NOT NULL,
    database_bytes      bigint NOT NULL,
    connections         jsonb NOT NULL,
    total_connections   integer NOT NULL,
    max_connections     integer NOT NULL,
    waiting_on_locks    integer NOT NULL,
    xact_commit         bigint NOT NULL,
    xact_rollback       bigint NOT NULL,
    blks_hit            bigint NOT NULL,
    blks_read           bigint NOT NULL,
    deadlocks           bigint NOT NULL,
    temp_bytes          bigint NOT NULL,
    stats_reset         timestamptz
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_database_stats_default PARTITION OF booking_admin.history_database_stats DEFAULT;
CREATE INDEX history_database_stats_at_idx ON booking_admin.history_database_stats_default (captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_database_stats_default', '');

-- Every user table and index (and its use) at each space capture.
CREATE TABLE booking_admin.history_relation_stats (
    captured_at   timestamptz NOT NULL,
    relid         oid NOT NULL,
    schema_name   name NOT NULL,
    relation_name name NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('table', 'index')),
    table_name    name NOT NULL,
    total_bytes   bigint NOT NULL,
    row_estimate  bigint NOT NULL,
    seq_scan      bigint,
    idx_scan      bigint,
    n_tup_ins     bigint,
    n_tup_upd     bigint,
    n_tup_del     bigint,
    n_dead_tup    bigint
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_relation_stats_default PARTITION OF booking_admin.history_relation_stats DEFAULT;
CREATE INDEX history_relation_stats_relid_idx ON booking_admin.history_relation_stats_default (relid, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_relation_stats_default', '');

-- Every sequence at each space capture, with the largest value its column can hold.
CREATE TABLE booking_admin.history_sequence_stats (
    captured_at   timestamptz NOT NULL,
    sequence_name text NOT NULL,
    column_name   text,
    last_value    bigint,
    max_value     bigint NOT NULL
) PARTITION BY RANGE (captured_at);
CREATE TABLE booking_admin.history_sequence_stats_default PARTITION OF booking_admin.history_sequence_stats DEFAULT;
CREATE INDEX history_sequence_stats_name_idx ON booking_admin.history_sequence_stats_default (sequence_name, captured_at);
SELECT pg_catalog.pg_extension_config_dump('booking_admin.history_sequence_stats_default', '');

INSERT INTO booking_admin.partitioned_tables (parent_table, partition_key, partition_interval, premake, retention, description) VALUES
    ('booking_admin.history_query_stats', 'captured_at', 'day', 7, '14 days', 'Query statistics over time (pg_stat_statements deltas)'),
    ('booking_admin.history_database_stats', 'captured_at', 'day', 7, '30 days', 'Database size, sessions by state, transaction counters'),
    ('booking_admin.history_relation_stats', 'captured_at', 'day', 7, '30 days', 'Table and index sizes and use'),
    ('booking_admin.history_sequence_stats', 'captured_at', 'day', 7, '30 days', 'Sequence headroom');

-- The sequences of this database, each with the largest value it may still hand out: its own
-- maximum, or less when the column it feeds is smaller (an integer column on a bigint sequence
-- fails at 2147483647, as PgHero warns).
CREATE FUNCTION booking_admin.sequence_headroom()
RETURNS TABLE (sequence_name text, column_name text, last_value bigint, max_value bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%I.%I', s.schemaname, s.sequencename), col.name, s.last_value,
           least(s.max_value, coalesce(col.type_max, s.max_value))
    FROM pg_sequences s
    LEFT JOIN LATERAL (
        SELECT format('%s.%I', d.refobjid::regclass, a.attname) AS name,
               CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 END AS type_max
        FROM pg_depend d
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LIMIT 1) col ON true
    WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
$$;

-- One capture: query deltas and the database row always, relations and sequences when the
-- last space capture is older than p_space_every. Returns the rows written.
CREATE FUNCTION booking_admin.capture_history(p_space_every interval DEFAULT '1 hour') RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    v_schema name;
    v_first boolean;
    v_reset boolean := false;
    n integer := 0;
    m integer;
BEGIN
    SELECT ns.nspname INTO v_schema
    FROM pg_extension e JOIN pg_namespace ns ON ns.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements';
    IF v_schema IS NOT NULL THEN
        v_first := NOT EXISTS (SELECT 1 FROM booking_admin.history_query_state);
        -- A reset since the last capture: the counters start again from zero.
        EXECUTE format('SELECT coalesce((SELECT stats_reset FROM %I.pg_stat_statements_info) > (SELECT max(captured_at) FROM booking_admin.history_query_state), false)',
                       v_schema) INTO v_reset;
        EXECUTE format($q$
            WITH cur AS (
                SELECT s.userid, s.queryid, s.toplevel, s.query, s.calls, s.total_exec_time AS total_ms, s.rows,
                       s.shared_blks_hit AS blks_hit, s.shared_blks_read AS blks_read
                FROM %I.pg_stat_statements s
                WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NOT NULL
            ), d AS (
                -- A counter that went down was reset: all of it is new.
                SELECT c.*,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.calls ELSE c.calls - p.calls END AS d_calls,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.total_ms ELSE c.total_ms - p.total_ms END AS d_ms,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.rows ELSE c.rows - p.rows END AS d_rows,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.blks_hit ELSE c.blks_hit - p.blks_hit END AS d_hit,
                       CASE WHEN p.calls IS NULL OR $2 OR c.calls < p.calls THEN c.blks_read ELSE c.blks_read - p.blks_read END AS d_read
                FROM cur c LEFT JOIN booking_admin.history_query_state p USING (userid, queryid, toplevel)
            ), rows_in AS (
                INSERT INTO booking_admin.history_query_stats (captured_at, queryid, role_name, toplevel, calls, total_ms, rows,
                                                               shared_blks_hit, shared_blks_read)
                SELECT $1, d.queryid, pg_get_userbyid(d.userid), d.toplevel, d.d_calls, d.d_ms, d.d_rows, d.d_hit, d.d_read
                FROM d WHERE d.d_calls > 0 AND NOT $3
                RETURNING 1
            ), texts AS (
                INSERT INTO booking_admin.history_query_texts AS t (queryid, query, last_seen_at)
                SELECT DISTINCT ON (d.queryid) d.queryid, d.query, $1 FROM d WHERE d.d_calls > 0 AND NOT $3
                ORDER BY d.queryid
                ON CONFLICT (queryid) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
            ), state AS (
                INSERT INTO booking_admin.history_query_state AS s (userid, queryid, toplevel, calls, total_ms, rows, blks_hit,
                                                                  blks_read, captured_at)
                SELECT c.userid, c.queryid, c.toplevel, c.calls, c.total_ms, c.rows, c.blks_hit, c.blks_read, $1 FROM cur c
                ON CONFLICT (userid, queryid, toplevel) DO UPDATE SET
                    calls = EXCLUDED.calls, total_ms = EXCLUDED.total_ms, rows = EXCLUDED.rows, blks_hit = EXCLUDED.blks_hit,
                    blks_read = EXCLUDED.blks_read, captured_at = EXCLUDED.captured_at
            )
            SELECT count(*)::int FROM rows_in$q$, v_schema) INTO m USING v_at, v_reset, v_first;
        n := n + m;
        -- Entries pg_stat_statements evicted since, and texts no capture has seen for a month.
        DELETE FROM booking_admin.history_query_state WHERE captured_at < v_at;
        DELETE FROM booking_admin.history_query_texts WHERE last_seen_at < v_at - interval '31 days';
    END IF;
    INSERT INTO booking_admin.history_database_stats (captured_at, database_bytes, connections, total_connections,
        max_connections, waiting_on_locks, xact_commit, xact_rollback, blks_hit, blks_read, deadlocks, temp_bytes, stats_reset)
    SELECT v_at, pg_database_size(d.datid),
           coalesce((SELECT jsonb_object_agg(k, c) FROM (SELECT coalesce(a.state, 'unknown') AS k, count(*) AS c
                                                        FROM pg_stat_activity a WHERE a.backend_type = 'client backend'
                                                        GROUP BY 1) x), '{}'),
           (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend'),
           current_setting('max_connections')::int,
           (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.wait_event_type = 'Lock'),
           d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.deadlocks, d.temp_bytes, d.stats_reset
    FROM pg_stat_database d WHERE d.datname = current_database();
    n := n + 1;
    IF NOT EXISTS (SELECT 1 FROM booking_admin.history_relation_stats WHERE captured_at > v_at - p_space_every) THEN
        INSERT INTO booking_admin.history_relation_stats (captured_at, relid, schema_name, relation_name, kind, table_name,
            total_bytes, row_estimate, seq_scan, idx_scan, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup)
        SELECT v_at, s.relid, s.schemaname, s.relname, 'table', s.relname, pg_total_relation_size(s.relid),
               greatest(c.reltuples, 0)::bigint, s.seq_scan, s.idx_scan, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_dead_tup
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        UNION ALL
        SELECT v_at, i.indexrelid, i.schemaname, i.indexrelname, 'index', i.relname, pg_relation_size(i.indexrelid),
               greatest(c.reltuples, 0)::bigint, NULL, i.idx_scan, NULL, NULL, NULL, NULL
        FROM pg_stat_user_indexes i JOIN pg_class c ON c.oid = i.indexrelid;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
        INSERT INTO booking_admin.history_sequence_stats (captured_at, sequence_name, column_name, last_value, max_value)
        SELECT v_at, h.sequence_name, h.column_name, h.last_value, h.max_value FROM booking_admin.sequence_headroom() h;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    RETURN n;
END $$;

CREATE FUNCTION booking_admin.op_capture_history(p_settings jsonb) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT booking_admin.capture_history(make_interval(mins => coalesce((p_settings ->> 'space_every_minutes')::int, 60)))
$$;

INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, settings, delay_ms, max_retries, timeout_ms) VALUES
    ('capture-history', 'Keep query statistics, database size and sessions (and hourly, relation sizes and sequences) over time',
     'booking_admin.op_capture_history', '{"space_every_minutes": 60}', 300000, 3, 60000);

-- The DBA's questions ---------------------------------------------------------------------------

-- The queries that took the most time over the last p_window, with their share of the window's
-- total, and their trend: the time they took in the window before it (same length) and the
-- ratio of the two (NULL when they did not run then). The hourly series is for charts.
CREATE FUNCTION booking_admin.top_queries(p_window interval DEFAULT '1 day', p_limit integer DEFAULT 10)
RETURNS TABLE (queryid bigint, query text, calls bigint, total_ms float8, mean_ms float8, share numeric, rows bigint,
               cache_hit_ratio numeric, previous_total_ms float8, trend numeric, hourly jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_to timestamptz := clock_timestamp();
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'the window must be positive and the limit between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH w AS (
        SELECT h.queryid, sum(h.calls)::bigint AS calls, sum(h.total_ms) AS total_ms, sum(h.rows)::bigint AS rows,
               sum(h.shared_blks_hit) AS hit, sum(h.shared_blks_read) AS rd
        FROM booking_admin.history_query_stats h
        WHERE h.captured_at > v_to - p_window AND h.captured_at <= v_to
        GROUP BY h.queryid
    ), prev AS (
        SELECT h.queryid, sum(h.total_ms) AS total_ms
        FROM booking_admin.history_query_stats h
        WHERE h.captured_at > v_to - 2 * p_window AND h.captured_at <= v_to - p_window
        GROUP BY h.queryid
    ), top AS (
        SELECT w.*, w.total_ms / nullif(sum(w.total_ms) OVER (), 0) AS share FROM w ORDER BY w.total_ms DESC, w.queryid LIMIT p_limit
    )
    SELECT top.queryid, t.query, top.calls, top.total_ms, top.total_ms / nullif(top.calls, 0),
           round(top.share::numeric, 4), top.rows,
           round((top.hit / nullif(top.hit + top.rd, 0))::numeric, 4),
           prev.total_ms, round((top.total_ms / nullif(prev.total_ms, 0))::numeric, 2),
           (SELECT jsonb_agg(jsonb_build_array(x.hour, round(x.ms::numeric, 3)) ORDER BY x.hour)
            FROM (SELECT date_trunc('hour', h.captured_at) AS hour, sum(h.total_ms) AS ms
                  FROM booking_admin.history_query_stats h
                  WHERE h.queryid = top.queryid AND h.captured_at > v_to - p_window AND h.captured_at <= v_to
                  GROUP BY 1) x)
    FROM top
    LEFT JOIN prev ON prev.queryid = top.queryid
    LEFT JOIN booking_admin.history_query_texts t ON t.queryid = top.queryid
    ORDER BY top.total_ms DESC, top.queryid;
END $$;

-- The relations that grew the most between the first and the last space capture of the window.
CREATE FUNCTION booking_admin.growing_relations(p_window interval DEFAULT '7 days', p_limit integer DEFAULT 10)
RETURNS TABLE (schema_name name, relation_name name, kind text, table_name name, bytes_then bigint, bytes_now bigint,
               growth_bytes bigint, growth_bytes_per_day bigint, rows_then bigint, rows_now bigint,
               observed_from timestamptz, observed_to timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' OR p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'the window must be positive and the limit between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH r AS (
        SELECT h.relid, h.schema_name, h.relation_name, h.kind, h.table_name,
               first_value(h.total_bytes) OVER w AS b0, last_value(h.total_bytes) OVER w AS b1,
               first_value(h.row_estimate) OVER w AS r0, last_value(h.row_estimate) OVER w AS r1,
               first_value(h.captured_at) OVER w AS t0, last_value(h.captured_at) OVER w AS t1,
               row_number() OVER (PARTITION BY h.relid ORDER BY h.captured_at DESC) AS latest
        FROM booking_admin.history_relation_stats h
        WHERE h.captured_at > clock_timestamp() - p_window
        WINDOW w AS (PARTITION BY h.relid ORDER BY h.captured_at ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    )
    SELECT r.schema_name, r.relation_name, r.kind, r.table_name, r.b0, r.b1, r.b1 - r.b0,
           CASE WHEN r.t1 > r.t0 THEN ((r.b1 - r.b0) / (extract(epoch FROM r.t1 - r.t0) / 86400))::bigint END,
           r.r0, r.r1, r.t0, r.t1
    FROM r WHERE r.latest = 1
    ORDER BY r.b1 - r.b0 DESC, r.b1 DESC, r.relation_name
    LIMIT p_limit;
END $$;

-- Sequences that have used more than p_threshold of what they may hand out, with their pace
-- over the last week of captures and the days left at that pace.
CREATE FUNCTION booking_admin.sequences_near_exhaustion(p_threshold numeric DEFAULT 0.5)
RETURNS TABLE (sequence_name text, column_name text, last_value bigint, max_value bigint, used_ratio numeric,
               per_day numeric, days_left numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_threshold IS NULL OR p_threshold NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'the threshold is a share between 0 and 1' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH pace AS (
        SELECT h.sequence_name,
               (max(h.last_value) - min(h.last_value))::numeric
                   / nullif(extract(epoch FROM max(h.captured_at) - min(h.captured_at)) / 86400, 0) AS per_day
        FROM booking_admin.history_sequence_stats h
        WHERE h.captured_at > clock_timestamp() - interval '7 days'
        GROUP BY h.sequence_name
    )
    SELECT s.sequence_name, s.column_name, s.last_value, s.max_value,
           round(coalesce(s.last_value, 0)::numeric / s.max_value, 4), round(p.per_day, 1),
           round((s.max_value - coalesce(s.last_value, 0)) / nullif(p.per_day, 0), 1)
    FROM booking_admin.sequence_headroom() s
    LEFT JOIN pace p ON p.sequence_name = s.sequence_name
    WHERE coalesce(s.last_value, 0)::numeric / s.max_value >= p_threshold
    ORDER BY coalesce(s.last_value, 0)::numeric / s.max_value DESC, s.sequence_name;
END $$;

-- Indexes no scan used during the window (the sum of the increases of idx_scan between space
-- captures; a counter that went down was reset), with the span they were observed over (from
-- their first to their last capture in the window: judge "unused" by it). Unique and primary
-- key indexes are left out: they enforce something.
CREATE FUNCTION booking_admin.unused_indexes(p_window interval DEFAULT '7 days')
RETURNS TABLE (schema_name name, table_name name, index_name name, index_bytes bigint, scans bigint,
               observed_from timestamptz, observed_to timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' THEN
        RAISE EXCEPTION 'the window must be positive' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH s AS (
        SELECT h.relid, h.schema_name, h.table_name, h.relation_name, h.total_bytes, h.captured_at, h.idx_scan,
               lag(h.idx_scan) OVER (PARTITION BY h.relid ORDER BY h.captured_at) AS prev
        FROM booking_admin.history_relation_stats h
        WHERE h.kind = 'index' AND h.captured_at > clock_timestamp() - p_window
    ), u AS (
        SELECT s.relid, max(s.schema_name)::name AS schema_name, max(s.table_name)::name AS table_name,
               max(s.relation_name)::name AS index_name, (array_agg(s.total_bytes ORDER BY s.captured_at DESC))[1] AS bytes,
               sum(CASE WHEN s.prev IS NULL THEN 0 WHEN s.idx_scan >= s.prev THEN s.idx_scan - s.prev ELSE s.idx_scan END)::bigint AS scans,
               min(s.captured_at) AS t0, max(s.captured_at) AS t1
        FROM s GROUP BY s.relid
    )
    SELECT u.schema_name, u.table_name, u.index_name, u.bytes, u.scans, u.t0, u.t1
    FROM u JOIN pg_index i ON i.indexrelid = u.relid
    WHERE u.scans = 0 AND NOT i.indisunique AND NOT i.indisprimary AND u.t1 > u.t0
    ORDER BY u.bytes DESC, u.schema_name, u.table_name, u.index_name;
END $$;

-- Indexes another index of the same table makes redundant (booking_admin.get_index_stats's
-- rule), with both definitions and what dropping this one saves.
CREATE FUNCTION booking_admin.duplicate_indexes()
RETURNS TABLE (schema_name name, table_name name, index_name name, duplicate_of name, index_bytes bigint,
               definition text, kept_definition text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.schema_name, s.table_name, s.index_name, s.duplicate_of, s.index_bytes,
           pg_get_indexdef(format('%I.%I', s.schema_name, s.index_name)::regclass),
           pg_get_indexdef(format('%I.%I', s.schema_name, s.duplicate_of)::regclass)
    FROM booking_admin.get_index_stats() s
    WHERE s.duplicate_of IS NOT NULL
    ORDER BY s.index_bytes DESC, s.schema_name, s.table_name, s.index_name
$$;

-- Who blocks whom now: every session waiting for a lock and every session it waits for, as a
-- tree from the sessions that block without waiting (root_pid, depth, path).
CREATE FUNCTION booking_admin.blocking_tree()
RETURNS TABLE (pid integer, blocked_by integer[], root_pid integer, depth integer, path integer[], usename name,
               application_name text, state text, wait_event_type text, wait_event text, xact_age interval,
               query_age interval, query text)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE a AS (
        SELECT s.pid, pg_blocking_pids(s.pid) AS blocked_by, s.usename, s.application_name, s.state, s.wait_event_type,
               s.wait_event, clock_timestamp() - s.xact_start AS xact_age, clock_timestamp() - s.query_start AS query_age,
               left(s.query, 500) AS query
        FROM pg_stat_activity s WHERE s.pid <> pg_backend_pid()
    ), involved AS (
        SELECT * FROM a
        WHERE cardinality(a.blocked_by) > 0 OR a.pid IN (SELECT unnest(b.blocked_by) FROM a b)
    ), tree AS (
        SELECT i.pid, i.pid AS root_pid, 0 AS depth, ARRAY[i.pid] AS path FROM involved i WHERE cardinality(i.blocked_by) = 0
        UNION ALL
        SELECT i.pid, t.root_pid, t.depth + 1, t.path || i.pid
        FROM tree t JOIN involved i ON t.pid = ANY (i.blocked_by)
        WHERE NOT i.pid = ANY (t.path) AND t.depth < 50
    )
    SELECT i.pid, i.blocked_by, t.root_pid, t.depth, t.path, i.usename, i.application_name, i.state, i.wait_event_type,
           i.wait_event, i.xact_age, i.query_age, i.query
    FROM tree t JOIN involved i ON i.pid = t.pid
    ORDER BY t.root_pid, t.path
$$;

-- The database's size and sessions over the window, one row per capture (charts).
CREATE FUNCTION booking_admin.database_history(p_window interval DEFAULT '1 day')
RETURNS TABLE (captured_at timestamptz, database_bytes bigint, connections jsonb, total_connections integer,
               waiting_on_locks integer, commits bigint, rollbacks bigint, cache_hit_ratio numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT h.captured_at, h.database_bytes, h.connections, h.total_connections, h.waiting_on_locks,
           CASE WHEN lag(h.xact_commit) OVER w <= h.xact_commit THEN h.xact_commit - lag(h.xact_commit) OVER w END,
           CASE WHEN lag(h.xact_rollback) OVER w <= h.xact_rollback THEN h.xact_rollback - lag(h.xact_rollback) OVER w END,
           CASE WHEN lag(h.blks_hit) OVER w <= h.blks_hit AND lag(h.blks_read) OVER w <= h.blks_read
                THEN round(((h.blks_hit - lag(h.blks_hit) OVER w)::numeric
                            / nullif(h.blks_hit - lag(h.blks_hit) OVER w + h.blks_read - lag(h.blks_read) OVER w, 0)), 4) END
    FROM booking_admin.history_database_stats h
    WHERE h.captured_at > clock_timestamp() - p_window
    WINDOW w AS (ORDER BY h.captured_at)
    ORDER BY h.captured_at
$$;
