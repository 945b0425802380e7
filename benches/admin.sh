#!/usr/bin/env bash
# booking_admin speed on a database with 1,000 tables and 3,000 indexes: every statistics
# function against its 200 ms target, analyze_query of a 3-table join against 50 ms. Each is
# shown beside a baseline measured in the same run: the bare catalog read a statistics
# function wraps, and a plain EXPLAIN of the same join. Medians of 7 runs, after one warm-up.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
start_cluster bench_admin $((BENCH_PORT + 12))
trap stop_cluster EXIT
fresh_database bench_admin
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench_admin)

log "creating 1,000 tables with 3 indexes each, and three tables to join"
"${PSQL[@]}" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION hypopg;
CREATE SCHEMA bench;
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        EXECUTE format('CREATE TABLE bench.t%s (id int PRIMARY KEY, a int, b int, at timestamptz)', i);
        EXECUTE format('CREATE INDEX t%s_a_idx ON bench.t%s (a)', i, i);
        EXECUTE format('CREATE INDEX t%s_a_b_idx ON bench.t%s (a, b)', i, i);
    END LOOP;
END $$;
CREATE TABLE bench.customers (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE bench.orders (id int PRIMARY KEY, customer_id int NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE bench.items (order_id int NOT NULL, sku text NOT NULL);
INSERT INTO bench.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 20000) g;
INSERT INTO bench.orders SELECT g, g % 20000 + 1, now() - g * interval '1 minute' FROM generate_series(1, 200000) g;
INSERT INTO bench.items SELECT g % 200000 + 1, 's' || g % 100 FROM generate_series(1, 400000) g;
ANALYZE;
SQL

log "timing"
"${PSQL[@]}" -At <<'SQL'
CREATE FUNCTION pg_temp.median_ms(q text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    runs float8[] := '{}';
BEGIN
    -- count(s::text) makes every column be computed, not just the rows counted.
    EXECUTE format('SELECT count(s::text) FROM (%s) s', q);
    FOR i IN 1..7 LOOP
        t0 := clock_timestamp();
        EXECUTE format('SELECT count(s::text) FROM (%s) s', q);
        runs := runs || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY r)::numeric, 2) FROM unnest(runs) r);
END $$;
WITH cases(ord, measure, q, target_ms, baseline, bq) AS (VALUES
    (1, 'get_table_stats()', 'SELECT * FROM booking_admin.get_table_stats()', 200,
        'pg_stat_user_tables', 'SELECT * FROM pg_stat_user_tables'),
    (2, 'get_index_stats()', 'SELECT * FROM booking_admin.get_index_stats()', 200,
        'pg_stat_user_indexes', 'SELECT * FROM pg_stat_user_indexes'),
    (3, 'get_table_vacuum_stats()', 'SELECT * FROM booking_admin.get_table_vacuum_stats()', 200,
        'pg_stat_user_tables', 'SELECT * FROM pg_stat_user_tables'),
    (4, 'get_cache_hit_ratio()', 'SELECT booking_admin.get_cache_hit_ratio()', 200,
        'pg_stat_database', 'SELECT * FROM pg_stat_database'),
    (5, 'get_index_hit_ratio()', 'SELECT booking_admin.get_index_hit_ratio()', 200,
        'pg_statio_user_indexes', 'SELECT * FROM pg_statio_user_indexes'),
    (6, 'get_connection_stats()', 'SELECT * FROM booking_admin.get_connection_stats()', 200,
        'pg_stat_activity', 'SELECT * FROM pg_stat_activity'),
    (7, 'get_slow_queries()', 'SELECT * FROM booking_admin.get_slow_queries()', 200,
        'pg_stat_statements', 'SELECT * FROM pg_stat_statements'),
    (8, 'analyze_partitioning_candidates()', 'SELECT * FROM booking_admin.analyze_partitioning_candidates()', 200,
        'pg_stat_user_tables', 'SELECT * FROM pg_stat_user_tables'),
    (9, 'analyze_query(3-table join, hypopg)',
        $q$SELECT booking_admin.analyze_query('SELECT o.id, i.sku FROM bench.orders o JOIN bench.customers c ON c.id = o.customer_id JOIN bench.items i ON i.order_id = o.id WHERE o.customer_id = 42')$q$, 50,
        'plain EXPLAIN of the join',
        $q$SELECT booking_admin.execute_explain_query('SELECT o.id, i.sku FROM bench.orders o JOIN bench.customers c ON c.id = o.customer_id JOIN bench.items i ON i.order_id = o.id WHERE o.customer_id = 42')$q$)
), timed AS (
    SELECT ord, measure, target_ms, baseline, pg_temp.median_ms(q) AS ms, pg_temp.median_ms(bq) AS bms FROM cases
)
SELECT E'| measure | median ms | target ms | within target | baseline | baseline ms | ratio to baseline |\n'
    || E'|---|---:|---:|:-:|---|---:|---:|\n'
    || string_agg(format('| %s | %s | %s | %s | %s | %s | %s |', measure, ms, target_ms,
                         CASE WHEN ms < target_ms THEN 'yes' ELSE 'NO' END, baseline, bms,
                         round(ms / nullif(bms, 0), 1) || 'x'), E'\n' ORDER BY ord)
FROM timed;
SQL
