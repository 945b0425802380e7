#!/usr/bin/env bash
# Jobs benchmark: enqueue N no-op jobs, drain them with the in-database runners (1 and 2), with
# an external client through claim_jobs/complete_job, and with graphile-worker (the peer) on the
# same cluster. Prints a markdown table; not a test, nothing here asserts a speed.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release

N=${JOBS_BENCH_N:-100000}
GRAPHILE_CONCURRENCY=${GRAPHILE_CONCURRENCY:-10}
EXTERNAL_CLIENTS=2
DB=bench_jobs
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1)

start_cluster bench_jobs $((BENCH_PORT + 12))
trap stop_cluster EXIT
CONN="postgresql://postgres@/$DB?host=$PGHOST&port=$PGPORT"

log "installing graphile-worker (benches/graphile, node_modules is not committed)"
(cd "$REPO/benches/graphile" && npm install --no-audit --no-fund --silent >/dev/null 2>&1)

sql() { "${PSQL[@]}" -d "$DB" -c "$1"; }
now_ms() { date +%s%3N; }

# runners K: restart with K runner workers serving $DB, idle until enable_workers.
runners() {
    "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET booking_engine.database = '$DB'" \
        -c "ALTER SYSTEM SET booking_engine.job_workers = $1" -c "ALTER SYSTEM SET booking_engine.enabled = off"
    start_cluster bench_jobs "$PGPORT"
}
enable_workers() { "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET booking_engine.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null; }

# enqueue HANDLER: prints milliseconds to enqueue N jobs in one statement.
enqueue() {
    local t0 t1
    "${PSQL[@]}" -d "$DB" -c "DELETE FROM booking_admin.jobs" -c "VACUUM booking_admin.jobs"
    t0=$(now_ms)
    sql "SELECT count(booking_admin.enqueue_job('noop', '$1')) FROM generate_series(1, $N)" >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0))
}

# drain_in_database: enable the runners, print milliseconds until every job is completed.
drain_in_database() {
    local t0 t1
    t0=$(now_ms)
    enable_workers
    until [ "$(sql "SELECT count(*) FROM booking_admin.jobs WHERE status <> 'completed'")" = 0 ]; do sleep 0.02; done
    t1=$(now_ms)
    echo $((t1 - t0))
}

rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", n * 1000 / ms }'; }

log "preparing database $DB"
fresh_database "$DB"
sql "CREATE FUNCTION public.noop(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
     INSERT INTO booking_admin.job_handlers (handler, kind, function) VALUES ('noop', 'function', 'public.noop')"
(cd "$REPO/benches/graphile" && npx --no-install graphile-worker -c "$CONN" --schema-only >/dev/null 2>&1)

log "in-database runners: 1"
runners 1
enqueue_ms=$(enqueue noop)
drain1_ms=$(drain_in_database)

log "in-database runners: 2"
runners 2
enqueue noop >/dev/null
drain2_ms=$(drain_in_database)

log "external client: $EXTERNAL_CLIENTS connections, claim_jobs batches of 100, complete_job per job"
enqueue external_noop >/dev/null
read -r ext_n ext_ms < <(cd "$REPO/benches/graphile" && node external.js "$CONN" "$EXTERNAL_CLIENTS" 100 external_noop)

log "graphile-worker: concurrency $GRAPHILE_CONCURRENCY"
sql "DELETE FROM booking_admin.jobs"
t0=$(now_ms)
# add_jobs (bulk) rather than add_job per row, which slows down quadratically in one statement.
sql "SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
         SELECT ROW('noop', '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
         FROM generate_series(1, $N)))" >/dev/null
t1=$(now_ms)
graphile_enqueue_ms=$((t1 - t0))
read -r g_n g_ms < <(cd "$REPO/benches/graphile" && node graphile.js "$CONN" "$GRAPHILE_CONCURRENCY")

g_rate=$(rate "$g_n" "$g_ms")
ratio() { awk -v a="$1" -v b="$g_rate" 'BEGIN { printf "%.2fx", a / b }'; }
r1=$(rate "$N" "$drain1_ms"); r2=$(rate "$N" "$drain2_ms"); re=$(rate "$ext_n" "$ext_ms")

cat <<TABLE

Jobs benchmark: $N no-op jobs, PostgreSQL 15, $(nproc) cores, release build. Baseline: graphile-worker $(cd "$REPO/benches/graphile" && node -p 'require("./node_modules/graphile-worker/package.json").version') (concurrency $GRAPHILE_CONCURRENCY), same cluster.

| measurement | time (ms) | rate | vs graphile-worker drain |
|---|---:|---:|---:|
| enqueue_job, one statement | $enqueue_ms | $(rate "$N" "$enqueue_ms") rows/s | |
| graphile_worker.add_jobs, one statement | $graphile_enqueue_ms | $(rate "$N" "$graphile_enqueue_ms") rows/s | |
| drain: in-database runners, 1 | $drain1_ms | $r1 jobs/s | $(ratio "$r1") |
| drain: in-database runners, 2 | $drain2_ms | $r2 jobs/s | $(ratio "$r2") |
| drain: external client, claim_jobs/complete_job ($EXTERNAL_CLIENTS connections) | $ext_ms | $re jobs/s | $(ratio "$re") |
| drain: graphile-worker (baseline) | $g_ms | $g_rate jobs/s | 1.00x |
TABLE
