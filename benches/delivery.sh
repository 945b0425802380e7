#!/usr/bin/env bash
# Outbound delivery: deliveries per second of 10,000 events to a local receiver (1 endpoint, and
# 20 endpoints), against that receiver's own ceiling measured in the same run by wrk with the
# same concurrency (the worker's booking_engine.delivery_concurrency); commit -> receipt
# latency when idle; and what 3 subscriptions add to create_booking_idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
APT_PACKAGES+=(wrk)
setup
install_extension --release
CONCURRENCY=16
RECEIVER_PORT=$((BENCH_PORT + 300))
BOOKING_EXTRA_CONF="booking_engine.delivery_denied_hosts = '10.0.0.0/8'
booking_engine.delivery_concurrency = $CONCURRENCY" start_cluster bench_delivery $((BENCH_PORT + 6))
node "$REPO/benches/delivery/receiver.js" "$RECEIVER_PORT" &
receiver=$!
trap 'kill $receiver 2>/dev/null; stop_cluster' EXIT
fresh_database delivery_bench
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d delivery_bench "$@"; }
work=$BOOKING_TMP/bench_delivery/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"
URL=http://127.0.0.1:$RECEIVER_PORT
stats() { curl -s "$URL/stats"; }
now() { date +%s.%N; }
N=10000

log "the receiver's ceiling: wrk, $CONCURRENCY connections, a signed-size JSON body"
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"type":"booking.created","timestamp":"2026-12-01T10:00:00.000000Z","data":{"appointment_id":"6f1c1f7e-8a36-4c1e-9d5e-2b6f0c1d2e3f","customer_id":"0b7f6c2d-6a5e-4e3f-8b1a-9c8d7e6f5a4b","staff_id":"1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","tenant_id":"d0000000-0000-0000-0000-000000000001","starts_at":"2026-12-02T10:00:00+00:00","ends_at":"2026-12-02T10:30:00+00:00"}}'
wrk.headers["content-type"] = "application/json"
wrk.headers["webhook-id"] = "msg_6f1c1f7e8a364c1e9d5e2b6f0c1d2e3f"
wrk.headers["webhook-timestamp"] = "1796032800"
wrk.headers["webhook-signature"] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
LUA
sleep 1
ceiling=$(wrk -t2 -c"$CONCURRENCY" -d5s -s "$work/post.lua" "$URL/hook" | awk '/^Requests\/sec/{printf "%.0f", $2}')

psql <<'SQL'
INSERT INTO booking.tenants (id, name) SELECT ('d0000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid, 'bench ' || i
FROM generate_series(1, 20) i;
SQL

# drain LABEL ENDPOINTS: ENDPOINTS endpoints (tenants 1..ENDPOINTS), N events spread over them
# in one transaction; deliveries/s from its commit until the ledger records every one delivered.
drain() {
    local endpoints=$1
    psql -c "DELETE FROM booking_admin.delivery_endpoints" \
         -c "SELECT booking_admin.create_endpoint('$URL/hook', '{booking.created}', t.id, 'webhook',
                 jsonb_build_object('max_in_flight', greatest($CONCURRENCY / $endpoints, 2)))
             FROM booking.tenants t ORDER BY t.id LIMIT $endpoints" >/dev/null
    # The delivery worker starts at the endpoints' commit; let it come up before timing.
    sleep 2
    curl -s -X POST "$URL/reset" >/dev/null
    psql -c "INSERT INTO booking.events (tenant_id, event_type, payload)
             SELECT ('d0000000-0000-0000-0000-0000000000' || lpad((1 + i % $endpoints)::text, 2, '0'))::uuid, 'booking.created',
                    jsonb_build_object('appointment_id', gen_random_uuid(), 'n', i)
             FROM generate_series(1, $N) i"
    local t0 t1 done=0
    t0=$(now)
    while [ "$done" -lt "$N" ]; do
        sleep 0.05
        done=$(psql -At -c "SELECT count(*) FROM booking_admin.deliveries WHERE status = 'delivered'")
    done
    t1=$(now)
    local got
    got=$(stats | node -p 'JSON.parse(require("fs").readFileSync(0)).count')
    [ "$got" -ge "$N" ] || { echo "the receiver got $got of $N" >&2; exit 1; }
    psql -c "DELETE FROM booking_admin.deliveries" >/dev/null
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}'
}

log "10,000 events, 1 endpoint"
one=$(drain 1)
log "10,000 events, 20 endpoints"
twenty=$(drain 20)

log "commit -> receipt when idle: 200 single-event transactions"
psql -c "DELETE FROM booking_admin.delivery_endpoints" \
     -c "SELECT booking_admin.create_endpoint('$URL/latency', '{booking.created}', 'd0000000-0000-0000-0000-000000000001')" >/dev/null
sleep 2
curl -s -X POST "$URL/reset" >/dev/null
for i in $(seq 1 200); do
    psql -c "INSERT INTO booking.events (tenant_id, event_type, payload) VALUES ('d0000000-0000-0000-0000-000000000001',
             'booking.created', jsonb_build_object('t', (extract(epoch FROM clock_timestamp()) * 1000)::int8))"
    sleep 0.02
done
while [ "$(stats | node -p 'JSON.parse(require("fs").readFileSync(0)).count')" -lt 200 ]; do sleep 0.1; done
read -r lat_p50 lat_p99 < <(stats | node -p 'const s = JSON.parse(require("fs").readFileSync(0)); s.p50_ms + " " + s.p99_ms')

log "create_booking_idempotent with 0 and 3 subscriptions, 16 clients, 10 s each"
psql -f "$REPO/benches/bench_salon.sql" -c "DELETE FROM booking_admin.delivery_endpoints"
cp "$REPO/benches/bench_create.sql" "$work/create.sql"
bookings() {
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n -c 16 -j 2 -T 10 \
        -f create.sql delivery_bench > "$1.out" 2>&1) || { cat "$work/$1.out" >&2; exit 1; }
    awk '/^tps = /{printf "%.0f", $3}' "$work/$1.out"
}
tps0=$(bookings none)
psql -c "SELECT booking_admin.create_endpoint('$URL/hook', '{booking.created}', 'b0000000-0000-0000-0000-000000000001')
         FROM generate_series(1, 3)" >/dev/null
sleep 2
booked() { psql -At -c "SELECT count(*) FROM booking.appointments"; }
before=$(booked)
tps3=$(bookings three)
bookings3=$(( $(booked) - before ))
# A booking writes one event; the delivery worker expands it: exactly three deliveries per
# booking once it has caught up (the events of the run without endpoints stay unexpanded).
while [ "$(psql -At -c "SELECT count(*) FROM booking.events WHERE fanned_out_at IS NULL
        AND created_at >= (SELECT min(enabled_at) FROM booking_admin.delivery_endpoints WHERE enabled)")" != 0 ]; do
    sleep 0.2
done
sent=$(psql -At -c "SELECT count(*) FROM booking_admin.deliveries")
[ "$sent" -eq $((3 * bookings3)) ] || { echo "3 subscriptions: $sent deliveries for $bookings3 bookings" >&2; exit 1; }
# The same with this database's workers stopped (the allow-list names another database): what
# the subscriptions cost the booking transaction itself, without the worker's fan-out and
# sending competing for the CPUs.
psql -c "ALTER SYSTEM SET booking_engine.database = 'postgres'" -c "SELECT pg_reload_conf()" >/dev/null
while [ "$(psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type LIKE 'booking_engine %'")" != 0 ]; do
    sleep 0.2
done
tps3_quiet=$(bookings three_quiet)
psql -c "ALTER SYSTEM RESET booking_engine.database" -c "SELECT pg_reload_conf()" >/dev/null

pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }
cat <<TABLE

Delivery benchmark: $N events, PostgreSQL 15, $(nproc) cores, release build, delivery_concurrency $CONCURRENCY.
Baseline: the receiver's ceiling, wrk -c$CONCURRENCY POSTing the same size of body, same run.

| measurement | result | vs ceiling | goal |
|---|---|---|---|
| receiver ceiling (wrk, $CONCURRENCY connections) | $ceiling req/s | 100% | |
| 10,000 events, 1 endpoint (signed, ledger written) | $one deliveries/s | $(pct "$one" "$ceiling") | >= 50% |
| 10,000 events, 20 endpoints | $twenty deliveries/s | $(pct "$twenty" "$ceiling") | >= 50% |
| commit -> receipt when idle, p50 / p99 | $lat_p50 ms / $lat_p99 ms | | |
| create_booking_idempotent, 16 clients, 0 subscriptions | $tps0 tps | | |
| the same with 3 subscriptions, the deliveries not sent meanwhile (the fan-out's own cost) | $tps3_quiet tps | $(pct "$tps3_quiet" "$tps0") of 0 subscriptions | >= 90% |
| the same with 3 subscriptions, the worker sending all of them meanwhile | $tps3 tps | $(pct "$tps3" "$tps0") of 0 subscriptions | |
TABLE
