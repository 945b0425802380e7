#!/usr/bin/env bash
# Benchmark of observability (not a test): the /metrics scrape with 10,000 series against the
# issue's 10 ms goal and against a bare HTTP round trip to the same worker (/ready); the cost
# of counting on booking.create_booking_idempotent (the metric triggers on and off, alternating
# runs of the same pgbench script); one evaluation of 100 alert rules against running their
# 100 conditions as plain SQL. Prints a markdown table.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
PORT=$((BENCH_PORT + 13))
HTTP_PORT=$((METRICS_PORT + 5))
BOOKING_EXTRA_CONF="booking_engine.metrics_port = $HTTP_PORT
booking_engine.metrics_database = 'bench_observability'" start_cluster bench_observability "$PORT"
trap stop_cluster EXIT
fresh_database bench_observability
# The worker connected before the database was made again: restart it onto the new one.
"$PG_BIN/psql" -X -q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'booking_engine metrics'" >/dev/null
# The postmaster restarts it within 5 s.
for _ in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/ready" && break
    sleep 0.1
done

DURATION=${BENCH_SECONDS:-10}
CLIENTS=8
psql_db() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d bench_observability "$@"; }
work=$BOOKING_TMP/bench_observability/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"

log "10,000 series in the metric table"
psql_db <<'SQL'
SET booking_engine.metrics_max_tenant_series = 10000;
SELECT count(*) FROM (
    SELECT booking.metrics_record('booking_tenant_operations', ARRAY[gen_random_uuid()::text, 'create', 'succeeded'])
    FROM generate_series(1, 10000)) r;
SQL
series=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -vc '^#')
if [ "$series" -lt 10000 ]; then
    echo "expected at least 10,000 series, the scrape has $series" >&2
    exit 1
fi
# Median milliseconds of 21 GETs of a path.
median_ms() {
    for _ in $(seq 21); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$HTTP_PORT$1"
    done | sort -n | awk '{v[NR] = $1} END {printf "%.2f", v[11] * 1000}'
}
log "timing scrapes"
scrape=$(median_ms /metrics)
scrape_om=$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept: application/openmetrics-text' "http://127.0.0.1:$HTTP_PORT/metrics")
ready=$(median_ms /ready)
bytes=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$HTTP_PORT/metrics")

log "loading a bookable tenant"
psql_db -f "$REPO/benches/bench_salon.sql"
cp "$REPO/benches/bench_create.sql" "$work/create.sql"
tps() {
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n -M prepared \
        -c "$CLIENTS" -j 2 -T "$DURATION" -f create.sql bench_observability 2>/dev/null) | awk '/^tps = / { print $3; exit }'
}
triggers() {
    psql_db -c "ALTER TABLE booking.booking_operations $1 TRIGGER booking_operations_metrics" \
            -c "ALTER TABLE booking.events $1 TRIGGER events_metrics"
}
# Alternating runs, so that drift of a shared machine falls on both sides.
counted=0
uncounted=0
for round in 1 2; do
    log "create_booking_idempotent, counted, round $round"
    triggers ENABLE
    counted=$(awk -v a="$counted" -v b="$(tps)" 'BEGIN { print a + b }')
    log "create_booking_idempotent, not counted, round $round"
    triggers DISABLE
    uncounted=$(awk -v a="$uncounted" -v b="$(tps)" 'BEGIN { print a + b }')
done
triggers ENABLE
failed=$(psql_db -c "SELECT count(*) FROM booking.booking_operations WHERE status <> 'completed'")
if [ "$failed" != 0 ]; then
    echo "benchmark bookings went wrong: $failed not completed" >&2
    exit 1
fi

log "100 alert rules"
psql_db <<'SQL'
INSERT INTO booking_admin.alert_rules (name, severity, condition_sql, for_duration)
SELECT 'sql_rule_' || i, 'low', format('SELECT status, count(*) AS value FROM booking_admin.jobs WHERE priority = %s GROUP BY status', i), '1 hour'
FROM generate_series(1, 50) i;
INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold, for_duration)
SELECT 'metric_rule_' || i, 'low', 'booking_jobs', '>', i, '1 hour' FROM generate_series(1, 50) i;
SQL
evaluate=$(best_ms 5 "SELECT booking_admin.evaluate_alert_rules()")
plain=$(best_ms 5 "DO \$\$ DECLARE n int; BEGIN FOR i IN 1..50 LOOP EXECUTE format('SELECT count(*) FROM (SELECT status, count(*) AS value FROM booking_admin.jobs WHERE priority = %s GROUP BY status) s', i) INTO n; END LOOP; PERFORM booking_admin.metrics_text(); END \$\$")
errors=$(psql_db -c "SELECT jsonb_array_length(booking_admin.evaluate_alert_rules() -> 'errors')")
if [ "$errors" != 0 ]; then
    echo "alert evaluation reported $errors errors" >&2
    exit 1
fi

cat <<TABLE

### Observability ($CLIENTS clients, ${DURATION} s per booking run)

| measurement | result | baseline | ratio |
|---|---|---|---|
| \`/metrics\` scrape, $series series ($bytes bytes; OpenMetrics $scrape_om bytes), median of 21 | $scrape ms | goal 10 ms; \`/ready\` round trip $ready ms | $(awk -v a="$scrape" 'BEGIN { printf "%.2f", a / 10 }') of the goal |
| \`create_booking_idempotent\` bookings/s, counted (2 × ${DURATION} s) | $(awk -v a="$counted" 'BEGIN { printf "%.0f", a / 2 }') | not counted: $(awk -v a="$uncounted" 'BEGIN { printf "%.0f", a / 2 }') | $(awk -v a="$counted" -v b="$uncounted" 'BEGIN { printf "%.3f (overhead %.1f%%, goal < 2%%)", a / b, 100 * (1 - a / b) }') |
| one evaluation of 100 alert rules (50 SQL, 50 metric), best of 5 | $evaluate ms | their 50 queries and one exposition as plain SQL: $plain ms | $(awk -v a="$evaluate" -v b="$plain" 'BEGIN { printf "%.2f", a / b }') |
TABLE
