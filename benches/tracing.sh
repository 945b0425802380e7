#!/usr/bin/env bash
# What tracing costs a booking: create_booking_idempotent's throughput (32 clients) with
# tracing off, with every booking traced (100% sampled, exported to a local OTLP receiver that
# decodes every request), and on a build without the span sites (the `tracing` cargo feature
# off), all three built and measured in this run. The variants take turns, round after round,
# and each is reported by its median round: the spread between a variant's own rounds is the
# noise the ratios are read against.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
PYTHON=$(ensure_otlp_receiver)
DURATION=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=32
work=$BOOKING_TMP/bench_tracing
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"
libdir=$("$PG_CONFIG" --pkglibdir)

# The two builds, side by side: the one without span sites first, kept aside.
log "building without the span sites (--no-default-features --features pg15)"
install_extension --release --no-default-features --features pg15
cp "$libdir/booking_engine.so" "$work/booking_engine-without-sites.so"
log "building with tracing"
install_extension --release
cp "$libdir/booking_engine.so" "$work/booking_engine-with-sites.so"

# use BUILD: puts that build's library in place (unlinked first: a running server keeps the
# old file mapped) and restarts the cluster on it.
use() {
    as_root rm -f "$libdir/booking_engine.so"
    as_root cp "$work/booking_engine-$1.so" "$libdir/booking_engine.so"
    start_cluster bench_tracing $((BENCH_PORT + 14))
}
use with-sites
trap stop_cluster EXIT
fresh_database booking_bench
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_bench "$@"; }
log "loading 50 staff who work around the clock"
psql -f "$REPO/benches/bench_salon.sql"
cp "$REPO/benches/bench_create.sql" "$work/create.sql"

"$PYTHON" "$REPO/tests/integration/otlp_receiver.py" --discard --out "$work/received.jsonl" > "$work/receiver.port" &
receiver=$!
trap 'kill $receiver 2>/dev/null; stop_cluster' EXIT
for _ in $(seq 50); do [ -s "$work/receiver.port" ] && break; sleep 0.1; done
receiver_port=$(head -1 "$work/receiver.port")

# tracing_to URL: sets the endpoint (empty: off) and waits until the exporter took it.
tracing_to() {
    "$PG_BIN/psql" -X -q -d postgres -c "ALTER SYSTEM SET booking_engine.otlp_endpoint = '$1'" \
        -c "SELECT pg_reload_conf()" >/dev/null
    local want=false
    [ -n "$1" ] && want=true
    for _ in $(seq 100); do
        [ "$(psql -At -c "SELECT booking_admin.tracing_status() ->> 'active'")" = "$want" ] && return
        sleep 0.1
    done
    echo "the exporter did not take the endpoint '$1'" >&2
    exit 1
}

# run NAME: bookings per second of one pgbench round.
run() {
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n \
        -c "$CLIENTS" -j 2 -T "$DURATION" -f create.sql booking_bench > "$1.out" 2>&1) || { cat "$work/$1.out" >&2; exit 1; }
    awk '/^tps = /{printf "%.0f", $3}' "$work/$1.out"
}

declare -A tps
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS: without the span sites"
    use without-sites
    tps[without]+="$(run without-$round) "
    log "round $round of $ROUNDS: tracing off"
    use with-sites
    tracing_to ''
    tps[off]+="$(run off-$round) "
    log "round $round of $ROUNDS: every booking traced"
    tracing_to "http://127.0.0.1:$receiver_port"
    tps[sampled]+="$(run sampled-$round) "
    tracing_to ''
done
status=$(psql -At -c "SELECT booking_admin.tracing_status()")
received=$(awk -F'"spans": ' '/"spans"/{s += $2 + 0} END {print s + 0}' "$work/received.jsonl")
failed=$(psql -At -c "SELECT count(*) FROM booking.booking_operations WHERE status <> 'completed'")
if [ "$failed" != 0 ] || [ "$received" = 0 ]; then
    echo "the benchmark went wrong: $failed bookings not completed, $received spans received" >&2
    exit 1
fi

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END {printf "%.1f%%", 100 * (v[NR] - v[1]) / v[int((NR+1)/2)]}'; }
without=$(median "${tps[without]}")
off=$(median "${tps[off]}")
sampled=$(median "${tps[sampled]}")
off_ratio=$(awk -v a="$off" -v b="$without" -v n="$(spread "${tps[without]}" | tr -d %)" \
    'BEGIN {r = 100 * (a / b - 1); printf "%+.1f%% (goal: within noise, %.1f%%: %s)", r, n, (r >= -n ? "met" : "not met")}')
sampled_ratio=$(awk -v a="$sampled" -v b="$off" \
    'BEGIN {r = 100 * (a / b - 1); printf "%+.1f%% (goal: at most 5%% slower: %s)", r, (r >= -5 ? "met" : "not met")}')
cat <<TABLE

### Tracing's cost ($CLIENTS clients, create_booking_idempotent, $ROUNDS rounds of ${DURATION} s each, median round)

| build and setting | bookings/s (median) | rounds | spread of its rounds | against |
|---|---|---|---|---|
| without the span sites (\`--no-default-features\`) | $without | ${tps[without]}| $(spread "${tps[without]}") | |
| tracing off (the default) | $off | ${tps[off]}| $(spread "${tps[off]}") | without the sites: $off_ratio |
| 100% sampled, exported to a local OTLP receiver | $sampled | ${tps[sampled]}| $(spread "${tps[sampled]}") | tracing off: $sampled_ratio |

Spans the receiver decoded: $received. Exporter at the end: $status.
TABLE
