#!/usr/bin/env bash
# Jobs benchmark: enqueue N no-op jobs (one enqueue_job per row, and enqueue_jobs in bulk), drain
# them with the in-database runners (1 and 2), with the reference external worker
# (examples/job-worker: complete_and_claim_jobs, one round trip per batch), and with
# graphile-worker (the peer) on the same cluster. Prints a markdown table with the ratios against
# graphile-worker and the goals below; not a test, nothing here asserts a speed.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release

N=${JOBS_BENCH_N:-100000}
GRAPHILE_CONCURRENCY=${GRAPHILE_CONCURRENCY:-10}
EXTERNAL_CLIENTS=2
EXTERNAL_BATCH=100
DB=bench_jobs
PSQL=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1)

start_cluster bench_jobs $((BENCH_PORT + 12))
trap stop_cluster EXIT
CONN="postgresql://postgres@/$DB?host=$PGHOST&port=$PGPORT"

log "installing graphile-worker (benches/graphile, node_modules is not committed)"
(cd "$REPO/benches/graphile" && npm install --no-audit --no-fund --silent >/dev/null 2>&1)
(cd "$REPO/examples/job-worker" && npm install --no-audit --no-fund --silent >/dev/null 2>&1)

sql() { "${PSQL[@]}" -d "$DB" -c "$1"; }
now_ms() { date +%s%3N; }

# runners K: restart with K runner workers serving $DB, idle until enable_workers.
runners() {
    "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET booking_engine.database = '$DB'" \
        -c "ALTER SYSTEM SET booking_engine.job_workers = $1" -c "ALTER SYSTEM SET booking_engine.enabled = off"
    start_cluster bench_jobs "$PGPORT"
}
enable_workers() { "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET booking_engine.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null; }

# enqueue HANDLER [bulk|insert]: prints milliseconds to enqueue N jobs in one statement, one
# enqueue_job call per row, with bulk one enqueue_jobs call (the JSON array built in the same
# statement, as add_jobs' array is below), with insert a plain INSERT of the rows (what limits
# the bulk enqueue: the table's own cost).
enqueue() {
    local t0 t1
    "${PSQL[@]}" -d "$DB" -c "DELETE FROM booking_admin.jobs" -c "VACUUM booking_admin.jobs"
    t0=$(now_ms)
    if [ "${2:-}" = insert ]; then
        sql "INSERT INTO booking_admin.jobs (name, handler) SELECT 'noop', '$1' FROM generate_series(1, $N)"
    elif [ "${2:-}" = bulk ]; then
        sql "SELECT cardinality(booking_admin.enqueue_jobs((SELECT jsonb_agg(j) FROM (
                 SELECT 'noop' AS name, '$1' AS handler FROM generate_series(1, $N)) j)))" >/dev/null
    else
        sql "SELECT count(booking_admin.enqueue_job('noop', '$1')) FROM generate_series(1, $N)" >/dev/null
    fi
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
insert_ms=$(enqueue noop insert)
bulk_ms=$(enqueue noop bulk)
drain2_ms=$(drain_in_database)

log "external worker: $EXTERNAL_CLIENTS connections, complete_and_claim_jobs batches of $EXTERNAL_BATCH"
enqueue external_noop bulk >/dev/null
ext=$(node "$REPO/examples/job-worker/worker.mjs" --connection="$CONN" --worker-id=bench \
    --concurrency="$EXTERNAL_CLIENTS" --batch-size="$EXTERNAL_BATCH" \
    --handlers="$REPO/benches/external_handlers.mjs" --exit-when-empty)
ext_n=$(node -p "JSON.parse(process.argv[1]).completed" "$ext")
ext_ms=$(node -p "JSON.parse(process.argv[1]).ms" "$ext")
[ "$ext_n" = "$N" ] || { echo "the external worker completed $ext_n jobs, not $N" >&2; exit 1; }

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
ratio() { awk -v a="$1" -v b="${2:-$g_rate}" 'BEGIN { printf "%.2fx", a / b }'; }
# goal RATIO MIN: the ratio with whether it meets its goal (enqueue ≥ 1x, external drain ≥ 2x).
goal() { awk -v r="${1%x}" -v m="$2" 'BEGIN { printf "%.2fx (goal ≥ %sx: %s)", r, m, (r >= m ? "met" : "not met") }'; }
r1=$(rate "$N" "$drain1_ms"); r2=$(rate "$N" "$drain2_ms"); re=$(rate "$ext_n" "$ext_ms")
ge=$(rate "$N" "$graphile_enqueue_ms")

cat <<TABLE

Jobs benchmark: $N no-op jobs, PostgreSQL 15, $(nproc) cores, release build. Baseline: graphile-worker $(cd "$REPO/benches/graphile" && node -p 'require("./node_modules/graphile-worker/package.json").version') (concurrency $GRAPHILE_CONCURRENCY), same cluster.

| measurement | time (ms) | rate | vs graphile-worker |
|---|---:|---:|---:|
| enqueue_job, one statement | $enqueue_ms | $(rate "$N" "$enqueue_ms") rows/s | $(ratio "$(rate "$N" "$enqueue_ms")" "$ge") |
| enqueue_jobs (bulk, one JSON array) | $bulk_ms | $(rate "$N" "$bulk_ms") rows/s | $(goal "$(ratio "$(rate "$N" "$bulk_ms")" "$ge")" 1) |
| plain INSERT of the same rows into booking_admin.jobs (no function) | $insert_ms | $(rate "$N" "$insert_ms") rows/s | $(ratio "$(rate "$N" "$insert_ms")" "$ge") |
| graphile_worker.add_jobs, one statement (baseline) | $graphile_enqueue_ms | $ge rows/s | 1.00x |
| drain: in-database runners, 1 | $drain1_ms | $r1 jobs/s | $(ratio "$r1") |
| drain: in-database runners, 2 | $drain2_ms | $r2 jobs/s | $(ratio "$r2") |
| drain: external worker, examples/job-worker ($EXTERNAL_CLIENTS connections, batches of $EXTERNAL_BATCH) | $ext_ms | $re jobs/s | $(goal "$(ratio "$re")" 2) |
| drain: graphile-worker (baseline) | $g_ms | $g_rate jobs/s | 1.00x |
TABLE
