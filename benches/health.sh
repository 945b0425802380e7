#!/usr/bin/env bash
# Benchmark of the health history and the partitioned history (not a test):
#   1. the capture-history operation at the booking benchmark's load (pgbench booking while it
#      captures once a second): the cost of one capture (the 5-minute one: query deltas and the
#      database row; the hourly one: relations and sequences too) against reading the same
#      statistics views with plain SQL, and the history's size per day: a day of captures at the
#      rows per capture measured, written into a day's partitions and measured on disk;
#   2. partition maintenance on an audit log of 10 million rows over four months: retention
#      dropping the oldest month (a partition, 2.5 million rows) against DELETE of the same month
#      from the same rows in one unpartitioned table with the same indexes (0.1.0's layout), and
#      a pass with nothing to do; and the upgrade's path, moving rows a default partition holds
#      into their month's partition. Prints markdown tables.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
# No workers: the scheduler would capture and maintain partitions on its own during the timings.
BOOKING_EXTRA_CONF="booking_engine.enabled = off" start_cluster bench_health $((BENCH_PORT + 14))
trap stop_cluster EXIT
fresh_database bench_health

DURATION=${BENCH_SECONDS:-10}
CLIENTS=8
AUDIT_ROWS=${BENCH_AUDIT_ROWS:-10000000}
MOVE_ROWS=${BENCH_MOVE_ROWS:-1000000}
psql_db() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d bench_health "$@"; }
work=$BOOKING_TMP/bench_health/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"

# 1. The health history --------------------------------------------------------------------

log "loading a bookable tenant; pg_stat_statements"
psql_db -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -f "$REPO/benches/bench_salon.sql" >/dev/null
cp "$REPO/benches/bench_create.sql" "$work/create.sql"
# The first capture sets the base the next ones take their deltas from.
psql_db -c "SELECT pg_stat_statements_reset()" -c "SELECT booking_admin.capture_history('0 seconds')" >/dev/null

seconds=$((DURATION * 3))
log "pgbench bookings, $CLIENTS clients, ${seconds}s, capturing once a second meanwhile"
(cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n -M prepared \
    -c "$CLIENTS" -j 2 -T "$seconds" -f create.sql bench_health >"$work/pgbench.out" 2>&1) &
load=$!
sleep 1
: >"$work/frequent.ms"
: >"$work/space.ms"
for i in $(seq $((seconds - 2))); do
    # Every tenth capture is also the hourly one (relations and sequences).
    if [ $((i % 10)) = 0 ]; then every="0 seconds"; out=space; else every="1 hour"; out=frequent; fi
    best_ms 1 "SELECT booking_admin.capture_history('$every')" >>"$work/$out.ms"
    sleep 1
done
wait "$load"
bookings=$(awk '/^number of transactions actually processed/ { print $NF }' "$work/pgbench.out")
median() { sort -n "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
frequent=$(median "$work/frequent.ms")
space=$(median "$work/space.ms")
log "the same reads as plain SQL"
plain_frequent=$(best_ms 5 "SELECT count(*) FROM (SELECT s.queryid, s.calls, s.total_exec_time FROM pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())) q; SELECT pg_database_size(current_database()), (SELECT count(*) FROM pg_stat_activity), (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())")
plain_space=$(best_ms 5 "SELECT count(*) FROM (SELECT pg_total_relation_size(relid) FROM pg_stat_user_tables UNION ALL SELECT pg_relation_size(indexrelid) FROM pg_stat_user_indexes) r; SELECT count(*) FROM pg_sequences")

# A day of history at the rows per capture just measured: 288 captures every 5 minutes (the
# queries, the database row, the extension's rates) and 24 hourly ones (relations, sequences),
# written into tomorrow's partitions (made ahead by maintenance) and measured there.
log "a day of history at that rate"
psql_db -c "SELECT booking_admin.op_snapshot_metrics('{}')" >/dev/null
mapfile -t day < <(psql_db <<'SQL'
SET timezone = 'UTC';
SELECT booking_admin.maintain_partitions() AS pass \gset
SELECT booking_admin.maintain_partitions() AS pass \gset
SELECT (date_trunc('day', now()) + interval '1 day') AS day \gset
CREATE TEMP TABLE caps AS SELECT DISTINCT captured_at FROM booking_admin.history_query_stats;
CREATE TEMP TABLE space_caps AS
    SELECT captured_at FROM booking_admin.history_relation_stats ORDER BY captured_at DESC LIMIT 1;
INSERT INTO booking_admin.history_query_stats
SELECT :'day'::timestamptz + k * interval '5 minutes', h.queryid, h.role_name, h.toplevel, h.calls, h.total_ms, h.rows,
       h.shared_blks_hit, h.shared_blks_read
FROM generate_series(0, 287) k
JOIN (SELECT captured_at, row_number() OVER (ORDER BY captured_at) - 1 AS n, count(*) OVER () AS of FROM caps) c ON c.n = k % c.of
JOIN booking_admin.history_query_stats h ON h.captured_at = c.captured_at;
INSERT INTO booking_admin.history_database_stats
SELECT :'day'::timestamptz + k * interval '5 minutes', d.database_bytes, d.connections, d.total_connections, d.max_connections,
       d.waiting_on_locks, d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.deadlocks, d.temp_bytes, d.stats_reset
FROM generate_series(0, 287) k,
     (SELECT * FROM booking_admin.history_database_stats ORDER BY captured_at DESC LIMIT 1) d;
INSERT INTO booking_admin.history_relation_stats
SELECT :'day'::timestamptz + k * interval '1 hour', r.relid, r.schema_name, r.relation_name, r.kind, r.table_name, r.total_bytes,
       r.row_estimate, r.seq_scan, r.idx_scan, r.n_tup_ins, r.n_tup_upd, r.n_tup_del, r.n_dead_tup
FROM generate_series(0, 23) k, booking_admin.history_relation_stats r WHERE r.captured_at = (SELECT captured_at FROM space_caps);
INSERT INTO booking_admin.history_sequence_stats
SELECT :'day'::timestamptz + k * interval '1 hour', s.sequence_name, s.column_name, s.last_value, s.max_value
FROM generate_series(0, 23) k, booking_admin.history_sequence_stats s WHERE s.captured_at = (SELECT captured_at FROM space_caps);
INSERT INTO booking_admin.metrics_history
SELECT :'day'::timestamptz + k * interval '5 minutes', m.metric, m.labels, m.value
FROM generate_series(0, 287) k,
     booking_admin.metrics_history m WHERE m.at = (SELECT max(at) FROM booking_admin.metrics_history);
SELECT round(avg(n), 1) FROM (SELECT count(*) AS n FROM booking_admin.history_query_stats h JOIN caps USING (captured_at) GROUP BY captured_at) x;
SELECT count(*) FROM booking_admin.history_relation_stats WHERE captured_at = (SELECT captured_at FROM space_caps);
SELECT count(*) FROM booking_admin.history_sequence_stats WHERE captured_at = (SELECT captured_at FROM space_caps);
SELECT count(*) FROM booking_admin.metrics_history WHERE at = (SELECT max(at) FROM booking_admin.metrics_history WHERE at < :'day');
SELECT sum(p.total_bytes) FROM booking_admin.partitions() p
WHERE p.range_from = :'day'::timestamptz AND p.parent_table IN ('booking_admin.history_query_stats',
      'booking_admin.history_database_stats', 'booking_admin.history_relation_stats',
      'booking_admin.history_sequence_stats', 'booking_admin.metrics_history');
SELECT pg_total_relation_size('booking_admin.history_query_texts');
SQL
)
q_rows=${day[0]} rel_rows=${day[1]} seq_rows=${day[2]} metric_rows=${day[3]} day_bytes=${day[4]} texts_bytes=${day[5]}
if [ -z "$day_bytes" ] || [ "$day_bytes" = 0 ]; then
    echo "the day's history was not written to its partitions" >&2
    exit 1
fi

# 2. Partition maintenance at 10 million audit rows -----------------------------------------

log "an audit log of $AUDIT_ROWS rows over the four months before this one, and the same rows unpartitioned"
# Months as UTC instants, and the names of the partitions of the oldest one and the one before.
iso="'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"
read -r m0 m1 m4 oldest before < <(psql_db -F ' ' -c "SET timezone = 'UTC'" -c "
    SELECT to_char(m - interval '4 months', $iso), to_char(m - interval '3 months', $iso), to_char(m, $iso),
           'booking_admin.security_audit_log_p' || to_char(m - interval '4 months', 'YYYYMMDD'),
           'booking_admin.security_audit_log_p' || to_char(m - interval '5 months', 'YYYYMMDD')
    FROM (SELECT date_trunc('month', now()) AS m) x")
psql_db <<SQL
SET timezone = 'UTC';
SELECT booking_admin.create_partition('booking_admin.security_audit_log', 'created_at', m, m + interval '1 month')
FROM generate_series('$m0'::timestamptz, '$m0'::timestamptz + interval '3 months', interval '1 month') m;
-- A bulk load: the context-filling trigger reads the request, which a load has none of.
ALTER TABLE booking_admin.security_audit_log DISABLE TRIGGER security_audit_fill;
INSERT INTO booking_admin.security_audit_log (id, db_user, action, resource_type, resource_id, ip_address, success, created_at)
SELECT gen_random_uuid(), 'app', CASE WHEN i % 7 = 0 THEN 'booking.created' ELSE 'login' END, 'auth', 'user' || (i % 5000),
       ('10.0.' || (i % 250) || '.' || (i % 200))::inet, i % 10 <> 0,
       '$m0'::timestamptz + (i::float8 / $AUDIT_ROWS) * ('$m4'::timestamptz - '$m0'::timestamptz)
FROM generate_series(0, $AUDIT_ROWS - 1) i;
ALTER TABLE booking_admin.security_audit_log ENABLE TRIGGER security_audit_fill;
CREATE TABLE public.audit_plain (LIKE booking_admin.security_audit_log_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO public.audit_plain SELECT * FROM booking_admin.security_audit_log;
ALTER TABLE public.audit_plain ADD PRIMARY KEY (id);
CREATE INDEX ON public.audit_plain (created_at);
CREATE INDEX ON public.audit_plain (action, created_at) WHERE NOT success;
CREATE INDEX ON public.audit_plain (tenant_id, created_at);
VACUUM ANALYZE booking_admin.security_audit_log, public.audit_plain;
SQL
month_rows=$(psql_db -c "SELECT count(*) FROM booking_admin.security_audit_log WHERE created_at >= '$m0' AND created_at < '$m1'")
audit_bytes=$(psql_db -c "SELECT sum(total_bytes) FROM booking_admin.partitions('booking_admin.security_audit_log')")

# The upgrade's path: rows of a month without a partition wait in the default partition; one
# pass moves them into their own.
log "moving $MOVE_ROWS rows out of the default partition"
psql_db <<SQL >/dev/null
SET timezone = 'UTC';
-- The partitions ahead first, so that the pass timed below only moves.
SELECT booking_admin.maintain_partitions('booking_admin.security_audit_log') FROM generate_series(1, 3);
ALTER TABLE booking_admin.security_audit_log DISABLE TRIGGER security_audit_fill;
INSERT INTO booking_admin.security_audit_log (id, db_user, action, resource_type, success, created_at)
SELECT gen_random_uuid(), 'app', 'login', 'auth', true, '$m0'::timestamptz - interval '1 month' + (i::float8 / $MOVE_ROWS) * interval '27 days'
FROM generate_series(0, $MOVE_ROWS - 1) i;
ALTER TABLE booking_admin.security_audit_log ENABLE TRIGGER security_audit_fill;
VACUUM ANALYZE booking_admin.security_audit_log_default;
SQL
read -r move_ms moved < <(psql_db -F ' ' <<'SQL' | tail -1
SELECT clock_timestamp() AS t0 \gset
SELECT booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables' -> 0 AS r \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1), (:'r'::jsonb ->> 'moved_rows');
SQL
)
[ "$moved" = "$MOVE_ROWS" ] || { echo "the pass moved $moved rows, not $MOVE_ROWS" >&2; exit 1; }
# That month is not part of the measurement below.
psql_db -c "DROP TABLE $before"

# Retention: with the clock a year after the oldest month's end, that month is past 365 days.
# The partitions this clock's pass makes ahead are made first (with retention off), so that the
# pass timed does nothing but drop.
clock=$(psql_db -c "SET timezone = 'UTC'" -c "SELECT to_char('$m1'::timestamptz + interval '365 days 1 hour', $iso)")
log "partition maintenance with nothing to do, and dropping a month of $month_rows rows"
psql_db <<SQL >/dev/null
SET booking_engine.now = '$clock';
SELECT booking_admin.configure_partitions('booking_admin.security_audit_log', p_keep_forever => true);
SELECT booking_admin.maintain_partitions('booking_admin.security_audit_log') FROM generate_series(1, 6);
SELECT booking_admin.configure_partitions('booking_admin.security_audit_log', p_retention => '365 days');
SQL
idle=$(best_ms 5 "SELECT booking_admin.maintain_partitions('booking_admin.security_audit_log')")
read -r drop_ms dropped < <(psql_db -F ' ' <<SQL | tail -1
SET booking_engine.now = '$clock';
SELECT clock_timestamp() AS t0 \gset
SELECT booking_admin.maintain_partitions('booking_admin.security_audit_log') -> 'tables' -> 0 AS r \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1), (:'r'::jsonb -> 'dropped')::text;
SQL
)
[ "$dropped" = "[\"$oldest\"]" ] || {
    echo "the retention pass dropped $dropped" >&2
    exit 1
}
log "DELETE of the same month from the unpartitioned table"
delete_ms=$(best_ms 1 "DELETE FROM public.audit_plain WHERE created_at >= '$m0' AND created_at < '$m1'")
vacuum_ms=$(best_ms 1 "VACUUM public.audit_plain")
# Over the months loaded (the bench's own calls have audited meanwhile, this month).
left=$(psql_db -c "SELECT (SELECT count(*) FROM booking_admin.security_audit_log WHERE created_at < '$m4')
                        = (SELECT count(*) FROM public.audit_plain WHERE created_at < '$m4')")
[ "$left" = t ] || { echo "the two tables disagree after the month went" >&2; exit 1; }

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
cat <<TABLE

### Health history ($CLIENTS clients booking for ${seconds} s: $bookings bookings; a capture a second meanwhile)

| measurement | result | baseline | ratio |
|---|---|---|---|
| one 5-minute capture (query deltas, $q_rows queries a capture, and the database row), median | $frequent ms | reading pg_stat_statements, the database's size, sessions and counters as plain SQL: $plain_frequent ms | $(awk -v a="$frequent" -v b="$plain_frequent" 'BEGIN { printf "%.1f", a / b }') |
| one hourly capture (also $rel_rows relations and $seq_rows sequences), median | $space ms | reading their sizes and use as plain SQL: $plain_space ms | $(awk -v a="$space" -v b="$plain_space" 'BEGIN { printf "%.1f", a / b }') |
| the history's size per day (288 captures, 24 hourly ones, $metric_rows rates a snapshot), on disk in the day's partitions | $(mib "$day_bytes") | the query texts, kept once per query: $(mib "$texts_bytes") | |

### Partition maintenance, audit log of $AUDIT_ROWS rows ($(mib "$audit_bytes")) over four months

| measurement | result | baseline | ratio |
|---|---|---|---|
| retention dropping the oldest month ($month_rows rows): the maintenance pass, a DROP of its partition | $drop_ms ms | DELETE of the same rows from one unpartitioned table with the same indexes: $delete_ms ms (and the VACUUM it needs: $vacuum_ms ms) | $(awk -v a="$drop_ms" -v b="$delete_ms" 'BEGIN { printf "%.5f", a / b }') |
| a maintenance pass with nothing to do, best of 5 | $idle ms | | |
| moving $MOVE_ROWS rows out of the default partition into their month (the upgrade's path) | $move_ms ms | | $(awk -v a="$MOVE_ROWS" -v b="$move_ms" 'BEGIN { printf "%.0f rows/s", a / b * 1000 }') |
TABLE
