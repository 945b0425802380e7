-- booking_admin: statistics on a database made to show each condition, and the admin SQL
-- sandbox against every sneaky form we could think of.
SET client_min_messages = warning;
\set VERBOSITY terse

-- Nothing in booking_admin is for PUBLIC.
DROP ROLE IF EXISTS regress_admin_nobody;
CREATE ROLE regress_admin_nobody;
SELECT p.proname
FROM pg_proc p
WHERE p.pronamespace = 'booking_admin'::regnamespace
  AND has_function_privilege('regress_admin_nobody', p.oid, 'EXECUTE')
ORDER BY 1;

-- Every statistics function answers on a database without user tables of its own.
SELECT count(*) >= 0 AS ok FROM booking_admin.get_table_stats();
SELECT count(*) >= 0 AS ok FROM booking_admin.get_index_stats();
SELECT count(*) >= 0 AS ok FROM booking_admin.get_table_vacuum_stats();
SELECT booking_admin.get_cache_hit_ratio() BETWEEN 0 AND 1 AS ok;
SELECT coalesce(booking_admin.get_index_hit_ratio() BETWEEN 0 AND 1, true) AS ok;
SELECT count(*) AS partition_candidates FROM booking_admin.analyze_partitioning_candidates();

-- A table with an unused index, two duplicates and dead tuples (autovacuum kept away).
CREATE SCHEMA stats_demo;
CREATE TABLE stats_demo.visits (
    id         int PRIMARY KEY,
    customer   int NOT NULL,
    shop       int NOT NULL,
    visited_at timestamptz NOT NULL
) WITH (autovacuum_enabled = off);
INSERT INTO stats_demo.visits
SELECT g, g % 500, g % 7, timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'
FROM generate_series(1, 20000) g;
-- No index on customer yet: the delete scans the table and touches no index statistics.
DELETE FROM stats_demo.visits WHERE customer < 125;
CREATE INDEX visits_customer_idx ON stats_demo.visits (customer);
CREATE INDEX visits_customer_shop_idx ON stats_demo.visits (customer, shop);
CREATE INDEX visits_customer_again_idx ON stats_demo.visits (customer);
CREATE UNIQUE INDEX visits_id_again_idx ON stats_demo.visits (id);
CREATE INDEX visits_shop_part_idx ON stats_demo.visits (shop) WHERE shop > 3;
CREATE INDEX visits_at_idx ON stats_demo.visits (visited_at);
ANALYZE stats_demo.visits;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FROM stats_demo.visits WHERE visited_at >= '2026-01-10';
SELECT count(*) FROM stats_demo.visits WHERE visited_at >= '2026-01-12';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT pg_stat_force_next_flush();

SELECT table_name, row_estimate, n_tup_ins, n_tup_del, n_dead_tup, idx_scan, total_bytes = table_bytes + index_bytes + toast_bytes AS sizes_add_up
FROM booking_admin.get_table_stats() WHERE schema_name = 'stats_demo';

SELECT index_name, idx_scan, is_unique, is_primary, unused, duplicate_of, stats_age >= interval '0' AS has_age
FROM booking_admin.get_index_stats() WHERE schema_name = 'stats_demo' ORDER BY index_name;

SELECT table_name, n_dead_tup, dead_tuple_ratio > 0 AS has_dead_ratio, autovacuum_due, xid_age > 0 AS has_xid_age,
       xids_to_wraparound > 2000000000 AS far_from_wraparound
FROM booking_admin.get_table_vacuum_stats() WHERE schema_name = 'stats_demo';

SELECT table_name, partition_key, key_type, time_index_scan_share, suggested_interval, reason
FROM booking_admin.analyze_partitioning_candidates(min_rows => 1000);

SELECT total_connections >= 1 AS me, max_connections > 0 AS has_max, active >= 1 AS me_active,
       by_state ? 'active' AS by_state, oldest_xact_pid IS NOT NULL AS oldest
FROM booking_admin.get_connection_stats();

-- Slow queries: a clear error naming the extension until it is installed.
SELECT regress.sqlstate_of('SELECT * FROM booking_admin.get_slow_queries()');
SELECT regress.sqlstate_of('SELECT * FROM booking_admin.get_slow_queries(0)');
CREATE EXTENSION pg_stat_statements;
SELECT count(*) > 0 AS has_rows, bool_and(mean_ms >= 0) AS means FROM booking_admin.get_slow_queries(5);
SELECT count(*) AS none_that_slow FROM booking_admin.get_slow_queries(5, 1e9);
DROP EXTENSION pg_stat_statements;

-- The sandbox. Accepted immediate statements run and report themselves.
SELECT booking_admin.execute_admin_sql('CREATE INDEX visits_shop_idx ON stats_demo.visits (shop)') - 'audit_id';
SELECT booking_admin.execute_admin_sql('CREATE INDEX IF NOT EXISTS visits_lower_idx ON stats_demo.visits ((lower(customer::text)))') - 'audit_id';
SELECT booking_admin.execute_admin_sql('ANALYZE stats_demo.visits') - 'audit_id';
SELECT booking_admin.execute_admin_sql('REINDEX INDEX stats_demo.visits_shop_idx') - 'audit_id';
SELECT booking_admin.execute_admin_sql('REINDEX TABLE stats_demo.visits') - 'audit_id';
SELECT booking_admin.execute_admin_sql('DROP INDEX stats_demo.visits_shop_idx') - 'audit_id';
SELECT booking_admin.execute_admin_sql('DROP INDEX IF EXISTS stats_demo.no_such_idx') - 'audit_id';
-- Unqualified names resolve through the caller's search_path once, at the check; the index is
-- built from that checked tree.
SET search_path = stats_demo, public;
SELECT booking_admin.execute_admin_sql('CREATE INDEX visits_abs_idx ON visits ((abs(shop)))') ->> 'statement' AS statement;
RESET search_path;
SELECT indexdef FROM pg_indexes WHERE indexname = 'visits_abs_idx';

-- Everything else is refused, and a refused statement never runs.
CREATE FUNCTION stats_demo.evil(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    DELETE FROM stats_demo.visits;
    RETURN $1;
END $$;
CREATE FUNCTION stats_demo.touchy(int) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT $1';
CREATE FUNCTION stats_demo.evil_plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2';
CREATE OPERATOR stats_demo.## (LEFTARG = int, RIGHTARG = int, FUNCTION = stats_demo.evil_plus);
CREATE FUNCTION stats_demo.evil_check(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    DELETE FROM stats_demo.visits;
    RETURN true;
END $$;
CREATE DOMAIN stats_demo.sneaky_int AS int CHECK (stats_demo.evil_check(VALUE));
SELECT q, regress.sqlstate_of(format('SELECT booking_admin.execute_admin_sql(%L)', q))
FROM unnest(ARRAY[
    'CREATE INDEX ON stats_demo.visits (shop); DROP TABLE stats_demo.visits',
    'CREATE INDEX ON stats_demo.visits (shop) /* ; */; DROP TABLE stats_demo.visits -- ;',
    'CREATE INDEX ON stats_demo.visits (shop); -- ; DROP TABLE stats_demo.visits',
    '',
    '   ;  ',
    'DROP TABLE stats_demo.visits',
    'DROP INDEX stats_demo.visits_customer_idx CASCADE',
    'DROP INDEX stats_demo.visits_customer_idx, stats_demo.visits_at_idx CASCADE',
    'DROP INDEX pg_catalog.pg_class_oid_index',
    'CREATE INDEX ON pg_catalog.pg_class (relname)',
    'CREATE INDEX ON pg_class (relname)',
    'CREATE INDEX ON information_schema.sql_features (feature_name)',
    'CREATE INDEX ON stats_demo.visits ((stats_demo.evil(customer)))',
    'CREATE INDEX ON stats_demo.visits (customer) WHERE stats_demo.evil(shop) > 0',
    'CREATE INDEX ON stats_demo.visits ((customer OPERATOR(stats_demo.##) shop))',
    'CREATE INDEX ON stats_demo.visits ((stats_demo.touchy(customer)))',
    'CREATE INDEX ON stats_demo.visits ((customer::stats_demo.sneaky_int))',
    'CREATE INDEX ON stats_demo.visits (customer) WHERE customer::stats_demo.sneaky_int > 0',
    'CREATE INDEX ON stats_demo.visits ((random()))',
    'VACUUM FULL stats_demo.visits',
    'VACUUM (FULL, ANALYZE) stats_demo.visits',
    'VACUUM (FULL true) stats_demo.visits',
    'VACUUM',
    'ANALYZE',
    'REINDEX DATABASE regression',
    'REINDEX SCHEMA stats_demo',
    'REINDEX SYSTEM regression',
    'REINDEX (TABLESPACE pg_default) TABLE stats_demo.visits',
    'ANALYZE stats_demo.nope',
    'TRUNCATE stats_demo.visits',
    'SELECT stats_demo.evil(1)',
    'DO $$ BEGIN DELETE FROM stats_demo.visits; END $$',
    'CREATE INDEX ON stats_demo.visits (shop); $$; DROP TABLE stats_demo.visits; $$',
    'CREATE INDEX ON stats_demo.visits (shop) WHERE $x$; DROP TABLE stats_demo.visits; $x$ = ''a''',
    'CREATE INDEX "x; DROP TABLE stats_demo.visits" ON stats_demo.visits (shop); SELECT 1',
    'CREATE INDEX ON "stats_demo"."visits" (shop);DROP TABLE "stats_demo"."visits"',
    E'CREATE INDEX ON stats_demo.visits (shop)\n;\nGRANT ALL ON stats_demo.visits TO PUBLIC',
    'ALTER TABLE stats_demo.visits DROP COLUMN shop',
    'CREATE TABLE stats_demo.other (x int)',
    'COPY stats_demo.visits TO ''/tmp/x''',
    'CREATE INDX ON stats_demo.visits (shop)'
]) q;
-- Nothing of that ran: the rows, the indexes and the table are all still there.
SELECT count(*) AS rows_left FROM stats_demo.visits;
SELECT count(*) AS demo_indexes FROM pg_indexes WHERE schemaname = 'stats_demo';
SELECT count(*) AS other_tables FROM pg_tables WHERE schemaname = 'stats_demo' AND tablename <> 'visits';

-- VACUUM FULL is accepted when explicitly allowed; VACUUM and CONCURRENTLY cannot run inside a
-- transaction and are queued for the job runner, which runs them at top level (the integration
-- tests show them running; this database has no runner serving it, so they stay pending).
SELECT booking_admin.check_admin_sql('VACUUM FULL stats_demo.visits', allow_vacuum_full => true) - 'job_payload';
SELECT booking_admin.check_admin_sql('CREATE INDEX CONCURRENTLY IF NOT EXISTS v_c ON stats_demo.visits (customer)');
SELECT booking_admin.check_admin_sql('DROP INDEX CONCURRENTLY stats_demo.visits_at_idx') -> 'mode';
SELECT booking_admin.check_admin_sql('REINDEX (CONCURRENTLY) INDEX stats_demo.visits_at_idx') -> 'mode';
SELECT booking_admin.execute_admin_sql('VACUUM stats_demo.visits') AS queued \gset
SELECT :'queued'::jsonb - 'job_id' - 'audit_id' AS result;
SELECT handler, status, max_retries, payload ->> 'sql' AS sql, payload ->> 'search_path' AS search_path
FROM booking_admin.jobs WHERE id = (:'queued'::jsonb ->> 'job_id')::uuid;
-- This database is not in the workers' allow-list (scripts/test.sh), so nothing will run the
-- queued statement: the answer and its status say so (and the call raised a WARNING).
SELECT s ->> 'decision' AS decision, s ->> 'mode' AS mode, s ->> 'outcome' AS outcome, s -> 'job' ->> 'status' AS job_status,
       s -> 'will_run' AS will_run
FROM booking_admin.admin_sql_status((:'queued'::jsonb ->> 'audit_id')::uuid) s;
SELECT booking_admin.worker_status() - 'workers' - 'runner_pids' - 'scheduler_pid' - 'poll_interval_ms' - 'max_workers' AS worker_status;

-- How a statement ended, by its audit id (an immediate statement has no will_run: it ran).
SELECT s ->> 'decision' AS decision, s ->> 'mode' AS mode, s ->> 'outcome' AS outcome, s ->> 'finished_at' IS NOT NULL AS has_end,
       s -> 'will_run' AS will_run
FROM booking_admin.admin_sql_status((booking_admin.execute_admin_sql('ANALYZE stats_demo.visits') ->> 'audit_id')::uuid) s;
SELECT regress.sqlstate_of('SELECT booking_admin.admin_sql_status(''00000000-0000-0000-0000-000000000000'')');

-- A caller that does not own the table is refused even with EXECUTE granted.
DROP ROLE IF EXISTS regress_admin_operator;
CREATE ROLE regress_admin_operator;
GRANT USAGE ON SCHEMA booking_admin TO regress_admin_operator;
-- CREATE INDEX itself needs CREATE on the table's schema.
GRANT USAGE, CREATE ON SCHEMA stats_demo TO regress_admin_operator;
GRANT EXECUTE ON FUNCTION booking_admin.execute_admin_sql(text, boolean, text) TO regress_admin_operator;
CREATE TABLE stats_demo.mine (x int);
ALTER TABLE stats_demo.mine OWNER TO regress_admin_operator;
SET ROLE regress_admin_operator;
SELECT regress.sqlstate_of('SELECT booking_admin.execute_admin_sql(''CREATE INDEX ON stats_demo.visits (shop)'')');
SELECT booking_admin.execute_admin_sql('CREATE INDEX mine_x_idx ON stats_demo.mine (x)') ->> 'accepted' AS own_table;
RESET ROLE;

-- The audit survives the caller's rollback: the attempt and its outcome stay recorded while
-- the index it created is gone.
BEGIN;
SELECT booking_admin.execute_admin_sql('CREATE INDEX rolled_back_idx ON stats_demo.visits (shop)') ->> 'accepted' AS accepted;
ROLLBACK;
SELECT to_regclass('stats_demo.rolled_back_idx') AS index_after_rollback;
SELECT role_name, statement_kind, decision, mode, outcome
FROM booking_admin.admin_audit WHERE statement LIKE '%rolled_back_idx%';

-- One row per attempt above, with the decision, the SQLSTATE of refusals and the outcome.
SELECT decision, sqlstate, outcome, count(*)
FROM booking_admin.admin_audit GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT statement, reason FROM booking_admin.admin_audit
WHERE statement IN ('CREATE INDEX ON stats_demo.visits ((stats_demo.evil(customer)))', 'VACUUM stats_demo.visits')
ORDER BY statement;

-- Query analysis. Three tables, no index beyond the keys, fresh statistics.
CREATE TABLE stats_demo.customers (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE stats_demo.orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE stats_demo.items (order_id int NOT NULL, sku text NOT NULL, qty int NOT NULL);
INSERT INTO stats_demo.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 5000) g;
INSERT INTO stats_demo.orders
SELECT g, g % 5000 + 1, (ARRAY['new', 'paid', 'sent'])[g % 3 + 1], timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'
FROM generate_series(1, 50000) g;
INSERT INTO stats_demo.items SELECT g % 50000 + 1, 's' || g % 100, 1 FROM generate_series(1, 100000) g;
ANALYZE stats_demo.customers, stats_demo.orders, stats_demo.items;

-- The rules read the parse tree: a keyword inside a string or a comment is not a clause.
SELECT f ->> 'rule' AS rule, f ->> 'severity' AS severity, f ->> 'description' AS description
FROM jsonb_array_elements(booking_admin.analyze_query($$
    SELECT * FROM stats_demo.orders o
    WHERE o.status LIKE '%aid' AND lower(o.status) = 'paid' AND o.customer_id NOT IN (SELECT id FROM stats_demo.customers)
    ORDER BY random() OFFSET 5000$$) -> 'findings') f;
SELECT f ->> 'rule' AS rule, f ->> 'description' AS description
FROM jsonb_array_elements(booking_admin.analyze_query('DELETE FROM stats_demo.items') -> 'findings') f;
SELECT booking_admin.analyze_query($$SELECT id FROM stats_demo.orders WHERE status = 'paid' /* SELECT * FROM x */$$) -> 'findings' AS no_findings;
SELECT booking_admin.analyze_query($$SELECT 'SELECT * FROM t WHERE x LIKE ''%a''' AS text_only$$) -> 'findings' AS no_findings;
SELECT q, booking_admin.analyze_query(q) ->> 'complexity' AS complexity
FROM unnest(ARRAY[
    'SELECT 1',
    'SELECT o.id FROM stats_demo.orders o JOIN stats_demo.customers c ON c.id = o.customer_id WHERE o.id = 1',
    'SELECT id FROM stats_demo.orders WHERE customer_id IN (SELECT id FROM stats_demo.customers WHERE email = $1) UNION SELECT 1'
]) q;

-- Without hypopg, recommendations are unverified and the improvement is a heuristic.
SELECT a -> 'recommendations' -> 0 ->> 'index_sql' AS index_sql, a -> 'recommendations' -> 0 -> 'verified' AS verified,
       a ->> 'improvement_basis' AS basis, (a ->> 'estimated_improvement_pct')::numeric BETWEEN 0 AND 90 AS capped,
       a -> 'bottlenecks' -> 0 ->> 'kind' AS bottleneck
FROM booking_admin.analyze_query('SELECT id FROM stats_demo.orders WHERE customer_id = $1') a;

-- With hypopg, each recommendation is planned with a hypothetical index and its real cost shown.
CREATE EXTENSION hypopg;
SELECT r ->> 'index_sql' AS index_sql, r -> 'verified' AS verified,
       (r ->> 'estimated_cost_after')::float8 < (r ->> 'estimated_cost_before')::float8 AS cheaper,
       (r ->> 'improvement_pct')::numeric BETWEEN 1 AND 90 AS capped_gain
FROM jsonb_array_elements(booking_admin.analyze_query($$
    SELECT o.id, i.sku FROM stats_demo.orders o
    JOIN stats_demo.customers c ON c.id = o.customer_id
    JOIN stats_demo.items i ON i.order_id = o.id
    WHERE o.customer_id = 42 AND o.created_at >= '2026-01-10'$$) -> 'recommendations') r;
SELECT count(*) AS hypothetical_indexes_left FROM hypopg_list_indexes;
SELECT booking_admin.analyze_query('SELECT id FROM stats_demo.orders WHERE customer_id = 7') ->> 'improvement_basis' AS basis;
-- Patterns no b-tree serves (a leading wildcard, ILIKE, a regular expression) and containment
-- get a GIN recommendation: trigrams (pg_trgm) or the column's own GIN class. hypopg cannot
-- measure a GIN index: unverified.
ALTER TABLE stats_demo.orders ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ANALYZE stats_demo.orders;
SELECT q, r ->> 'index_sql' AS index_sql, r -> 'verified' AS verified
FROM unnest(ARRAY[
    $$SELECT id FROM stats_demo.orders WHERE status LIKE '%aid'$$,
    $$SELECT id FROM stats_demo.orders WHERE status ILIKE 'PAID'$$,
    $$SELECT id FROM stats_demo.orders WHERE status ~ 'pa.d'$$,
    $$SELECT id FROM stats_demo.orders WHERE tags @> '{vip}'$$
]) q, jsonb_array_elements(booking_admin.analyze_query(q) -> 'recommendations') r;
DROP EXTENSION hypopg;

-- EXPLAIN: plans as JSON; ANALYZE only for read-only queries, rolled back, under a deadline.
SELECT booking_admin.execute_explain_query('SELECT count(*) FROM stats_demo.orders') -> 'Plan' ->> 'Node Type' AS node;
SELECT booking_admin.execute_explain_query('SELECT count(*) FROM stats_demo.orders', true) -> 'Plan' -> 'Actual Rows' AS actual_rows;
SELECT booking_admin.execute_explain_query('VALUES (1), (2)', true) -> 'Plan' -> 'Actual Rows' AS values_rows;
SELECT booking_admin.execute_explain_query('DELETE FROM stats_demo.items') -> 'Plan' ->> 'Node Type' AS plain_explain_of_delete;
SELECT q, regress.sqlstate_of(format('SELECT booking_admin.execute_explain_query(%L, true)', q))
FROM unnest(ARRAY[
    'DELETE FROM stats_demo.items',
    'WITH gone AS (DELETE FROM stats_demo.items RETURNING *) SELECT count(*) FROM gone',
    'SELECT * INTO stats_demo.copy FROM stats_demo.items',
    'SELECT * FROM stats_demo.items FOR UPDATE',
    'SELECT 1; DELETE FROM stats_demo.items',
    'SELECT id FROM stats_demo.orders WHERE id = $1',
    'VACUUM stats_demo.items'
]) q;
SELECT count(*) AS items_left FROM stats_demo.items;
SET booking_engine.explain_timeout_ms = 200;
SELECT regress.sqlstate_of('SELECT booking_admin.execute_explain_query(''SELECT pg_sleep(3)'', true)');
RESET booking_engine.explain_timeout_ms;
SELECT regress.sqlstate_of('SELECT booking_admin.execute_explain_query(NULL)');

-- The auto-tuner. Without pg_stat_statements it has nothing to read, and says so.
SELECT booking_admin.perform_tuning_cycle() -> 'notes' AS notes;
-- The scheduler's auto-tune operation runs a cycle only when the tuner is enabled and its
-- monitoring interval has passed since the last cycle.
UPDATE booking_admin.auto_tuner_config SET enabled = false, last_cycle_at = NULL;
SELECT r -> 'data' ->> 'status' AS status FROM booking_admin.run_maintenance('auto-tune') r;
SELECT last_cycle_at IS NULL AS disabled_tuner_did_not_run FROM booking_admin.auto_tuner_config;
UPDATE booking_admin.auto_tuner_config SET enabled = true;
SELECT r -> 'data' ->> 'status' AS status FROM booking_admin.run_maintenance('auto-tune') r;
SELECT last_cycle_at IS NOT NULL AS enabled_tuner_ran FROM booking_admin.auto_tuner_config;
UPDATE booking_admin.auto_tuner_config SET last_cycle_at = booking.clock_now() - interval '5 minutes';
SELECT r -> 'data' ->> 'status' AS status FROM booking_admin.run_maintenance('auto-tune') r;
SELECT last_cycle_at < booking.clock_now() - interval '4 minutes' AS not_run_again_within_the_interval FROM booking_admin.auto_tuner_config;
UPDATE booking_admin.auto_tuner_config SET enabled = false, last_cycle_at = NULL;
SELECT q, regress.sqlstate_of(q) FROM unnest(ARRAY[
    $$UPDATE booking_admin.auto_tuner_config SET aggressiveness = 'reckless'$$,
    'SELECT booking_admin.rollback_tuning_action(424242)'
]) q;
-- Wednesday 10:00 UTC; every statement counts as slow.
SET booking_engine.now = '2026-03-04 10:00+00';
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION hypopg;
UPDATE booking_admin.auto_tuner_config SET performance_threshold_ms = 0.000001;
SELECT pg_stat_statements_reset();
SELECT count(*) FROM stats_demo.orders WHERE customer_id = 42;
SELECT count(*) FROM stats_demo.items WHERE order_id = 4242;
-- Auto-apply off: verified indexes are proposed, nothing is created.
SELECT a ->> 'status' AS status, a ->> 'index_sql' AS index_sql, a ->> 'reason' AS reason
FROM jsonb_array_elements(booking_admin.perform_tuning_cycle() -> 'actions') a ORDER BY 2;
-- Enabled, but inside a window of the freeze calendar (Wednesdays 09:00-11:00): nothing is
-- applied; the proposals wait for the window's end.
SELECT booking_admin.add_freeze_window('Wednesday mornings', p_days => '{3}', p_start_time => '09:00',
                                       p_end_time => '11:00') IS NOT NULL AS frozen_on_wednesday_mornings;
UPDATE booking_admin.auto_tuner_config SET enabled = true, auto_apply_indexes = true, max_indexes_per_table = 1;
SELECT c -> 'frozen' AS frozen, a ->> 'status' AS status, a ->> 'index_sql' AS index_sql, a ->> 'reason' AS reason
FROM booking_admin.perform_tuning_cycle() c, jsonb_array_elements(c -> 'actions') a ORDER BY 3;
-- Action ids follow the order pg_stat_statements lists the queries in: shown as N.
-- After the window: the table with no index gets one, built CONCURRENTLY through the
-- sandbox's queued path (a top-level job); orders is at its limit of 1 (its key).
SET booking_engine.now = '2026-03-04 12:00+00';
SELECT c -> 'frozen' AS frozen, a ->> 'status' AS status, regexp_replace(a ->> 'index_sql', 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS index_sql, a ->> 'reason' AS reason
FROM booking_admin.perform_tuning_cycle() c, jsonb_array_elements(c -> 'actions') a ORDER BY 3;
UPDATE booking_admin.auto_tuner_config SET max_indexes_per_table = 10;
SELECT a ->> 'status' AS status, regexp_replace(a ->> 'index_sql', 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS index_sql
FROM jsonb_array_elements(booking_admin.perform_tuning_cycle() -> 'actions') a ORDER BY 2;
SELECT regexp_replace(payload ->> 'sql', 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS queued, status,
       payload -> 'respect_freeze' AS respect_freeze
FROM booking_admin.jobs WHERE handler = 'top_level_sql' AND payload ->> 'sql' LIKE '%tuning_action%' ORDER BY 1;
-- This database has no runner: the builds run here as the runner would run them, at top level
-- (not echoed: the action ids in their names vary).
\set ECHO none
SELECT payload ->> 'sql' FROM booking_admin.jobs
WHERE handler = 'top_level_sql' AND status = 'pending' AND payload ->> 'sql' LIKE 'CREATE INDEX CONCURRENTLY tuning_action%' \gexec
\set ECHO all
UPDATE booking_admin.jobs SET status = 'completed', started_at = now(), completed_at = now()
WHERE handler = 'top_level_sql' AND payload ->> 'sql' LIKE 'CREATE INDEX CONCURRENTLY tuning_action%';
-- The next cycle settles them: built and valid, applied.
SELECT booking_admin.perform_tuning_cycle() -> 'settled' AS settled;
SELECT table_name, status, regexp_replace(index_name, 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS index_name, regexp_replace(rollback_sql, 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS rollback_sql,
       cost_after < cost_before AS cheaper
FROM booking_admin.tuning_actions ORDER BY table_name;
SELECT regexp_replace(statement, 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS statement, decision, mode, outcome
FROM booking_admin.admin_audit WHERE statement LIKE '%tuning_action%' ORDER BY attempted_at;
-- The items index is used, the orders one is not; an hour later (the monitoring interval)
-- the next cycle rolls back the unused one and does not propose it again.
SET enable_seqscan = off;
SELECT count(*) FROM stats_demo.items WHERE order_id = 4242;
RESET enable_seqscan;
SELECT pg_stat_force_next_flush();
SET booking_engine.now = '2026-03-04 13:30+00';
SELECT r ->> 'reason' AS rolled_back, c -> 'actions' AS new_actions
FROM booking_admin.perform_tuning_cycle() c, jsonb_array_elements(c -> 'rolled_back') r;
SELECT table_name, status, status_reason FROM booking_admin.tuning_actions ORDER BY table_name;
-- The drop is queued too (DROP INDEX CONCURRENTLY), run here as the runner would.
\set ECHO none
SELECT payload ->> 'sql' FROM booking_admin.jobs
WHERE handler = 'top_level_sql' AND status = 'pending' AND payload ->> 'sql' LIKE 'DROP INDEX CONCURRENTLY%' \gexec
\set ECHO all
UPDATE booking_admin.jobs SET status = 'completed', started_at = now(), completed_at = now()
WHERE handler = 'top_level_sql' AND payload ->> 'sql' LIKE 'DROP INDEX CONCURRENTLY%';
SELECT table_name, to_regclass(index_name) IS NOT NULL AS index_exists, status FROM booking_admin.tuning_actions ORDER BY table_name;
-- An operator rolls back the other one by hand, once.
SELECT regexp_replace(booking_admin.rollback_tuning_action(id) ->> 'statement', 'tuning_action_[0-9]+_idx', 'tuning_action_N_idx') AS dropped
FROM booking_admin.tuning_actions WHERE status = 'applied';
\set ECHO none
SELECT payload ->> 'sql' FROM booking_admin.jobs
WHERE handler = 'top_level_sql' AND status = 'pending' AND payload ->> 'sql' LIKE 'DROP INDEX CONCURRENTLY%' \gexec
\set ECHO all
SELECT regexp_replace(regress.sqlstate_of(format('SELECT booking_admin.rollback_tuning_action(%s)', id)), '[0-9]+ is', 'N is')
FROM booking_admin.tuning_actions WHERE table_name = 'stats_demo.orders';
SELECT count(*) AS tuner_indexes_left FROM pg_indexes WHERE schemaname = 'stats_demo' AND indexname LIKE 'tuning\_action\_%';
DROP EXTENSION hypopg;
DROP EXTENSION pg_stat_statements;
RESET booking_engine.now;

DROP SCHEMA stats_demo CASCADE;
DROP ROLE regress_admin_nobody;
REVOKE ALL ON SCHEMA booking_admin FROM regress_admin_operator;
REVOKE ALL ON FUNCTION booking_admin.execute_admin_sql(text, boolean, text) FROM regress_admin_operator;
DROP ROLE regress_admin_operator;
