#!/usr/bin/env bash
# Bookings per second with 32 clients: booking.create_booking_idempotent against two ceilings,
# plain INSERTs into the same constrained table (the trigger and the exclusion constraint, no
# validation, no idempotency record, no event), and the same writes as one successful booking
# in plain SQL (the ceiling: the operation row's insert and update, the appointment
# insert with its constraint, the event insert with its NOTIFY, the audit insert; no validation
# or logic), plus the latency of one call.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
start_cluster bench_booking $((BENCH_PORT + 1))
trap stop_cluster EXIT
fresh_database booking_bench
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_bench "$@"; }
DURATION=${BENCH_SECONDS:-20}
CLIENTS=32
work=$BOOKING_TMP/bench_booking/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"

log "loading 50 staff who work around the clock"
psql -f "$REPO/benches/bench_salon.sql"

cp "$REPO/benches/bench_create.sql" "$work/create.sql"
cat > "$work/insert.sql" <<'SQL'
INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
SELECT b.staff_id, 'b1000000-0000-0000-0000-000000000001', 'b2000000-0000-0000-0000-000000000001', b.starts_at, 'confirmed'
FROM (SELECT nextval('public.bench_n') AS n) s, public.bench_slot(s.n, '2030-01-01 00:00+00') b;
SQL
# The writes of one successful booking, in plain SQL, in one transaction. Prepared statements
# (pgbench -M prepared), as the function's PL/pgSQL keeps its plans.
cat > "$work/writes.sql" <<'SQL'
BEGIN;
SELECT nextval('public.bench_n') AS n \gset
INSERT INTO booking.booking_operations (tenant_id, idempotency_key, operation_type, request_hash, request, customer_id)
VALUES ('b0000000-0000-0000-0000-000000000001', 'writes-' || :n::bigint, 'create', md5(:n::bigint::text), jsonb_build_object('n', :n::bigint),
        'b2000000-0000-0000-0000-000000000001')
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id AS op \gset
INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, ends_at, status, price)
SELECT 'b0000000-0000-0000-0000-000000000001', b.staff_id, 'b1000000-0000-0000-0000-000000000001',
       'b2000000-0000-0000-0000-000000000001', b.starts_at, b.starts_at + interval '30 minutes', 'confirmed', 0
FROM public.bench_slot(:n, '2033-01-01 00:00+00') b
ON CONFLICT ON CONSTRAINT appointments_no_double_booking DO NOTHING RETURNING id AS appt \gset
INSERT INTO booking.events (tenant_id, event_type, payload)
VALUES ('b0000000-0000-0000-0000-000000000001', 'booking.created', jsonb_build_object('appointment_id', :appt::uuid))
RETURNING id AS event \gset
SELECT pg_notify('booking_events', json_build_object('id', :event::uuid, 'type', 'booking.created')::text);
UPDATE booking.booking_operations SET status = 'completed', result = jsonb_build_object('success', true),
    appointment_id = :appt::uuid
WHERE tenant_id = 'b0000000-0000-0000-0000-000000000001' AND id = :op::uuid;
INSERT INTO booking_admin.security_audit_log (tenant_id, db_user, action, resource_type, resource_id, success)
VALUES ('b0000000-0000-0000-0000-000000000001', current_user, 'booking.create', 'appointment', :appt::uuid, true);
COMMIT;
SQL

# run NAME SCRIPT CLIENTS [pgbench options]: pgbench for $DURATION seconds with per-transaction latency logs.
run() {
    local name=$1 script=$2 clients=$3
    shift 3
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n "$@" \
        -c "$clients" -j 2 -T "$DURATION" -l --log-prefix="$name" -f "$script" booking_bench > "$name.out" 2>&1) \
        || { cat "$work/$name.out" >&2; exit 1; }
    local tps p50 p99
    tps=$(awk '/^tps = /{printf "%.0f", $3}' "$work/$name.out")
    read -r p50 p99 < <(cat "$work/$name".* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {printf "%.2f %.2f\n", v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000}')
    echo "$tps $p50 $p99"
}

log "create_booking_idempotent, $CLIENTS clients, ${DURATION}s"
read -r c_tps c_p50 c_p99 < <(run create create.sql $CLIENTS)
log "plain INSERT, $CLIENTS clients, ${DURATION}s"
read -r i_tps i_p50 i_p99 < <(run insert insert.sql $CLIENTS)
log "the writes of a booking in plain SQL, $CLIENTS clients, ${DURATION}s"
read -r w_tps w_p50 w_p99 < <(run writes writes.sql $CLIENTS -M prepared)
log "create_booking_idempotent, 1 client"
read -r s_tps s_p50 s_p99 < <(DURATION=$((DURATION / 2)) run single create.sql 1)

failed=$(psql -At -c "SELECT count(*) FROM booking.booking_operations WHERE status <> 'completed'")
overlaps=$(psql -At -c "SELECT count(*) FROM booking.appointments a JOIN booking.appointments b
    ON a.staff_id = b.staff_id AND a.id < b.id AND a.blocked && b.blocked")
if [ "$failed" != 0 ] || [ "$overlaps" != 0 ]; then
    echo "benchmark bookings went wrong: $failed not completed, $overlaps overlaps" >&2
    exit 1
fi
writes_missing=$(psql -At -c "SELECT count(*) FROM booking.booking_operations WHERE idempotency_key LIKE 'writes-%'
    AND (status <> 'completed' OR appointment_id IS NULL)")
if [ "$writes_missing" != 0 ]; then
    echo "the plain-SQL writes left $writes_missing operations without their appointment" >&2
    exit 1
fi
ratio=$(awk -v a="$c_tps" -v b="$i_tps" 'BEGIN {printf "%.0f%%", 100 * a / b}')
# The goals against the writes ceiling: throughput at least 70%, p99 at most 1.5 times.
w_ratio=$(awk -v a="$c_tps" -v b="$w_tps" 'BEGIN {r = 100 * a / b; printf "%.0f%% (goal ≥ 70%%: %s)", r, (r >= 70 ? "met" : "not met")}')
w_p99_ratio=$(awk -v a="$c_p99" -v b="$w_p99" 'BEGIN {r = a / b; printf "%.2fx (goal ≤ 1.5x: %s)", r, (r <= 1.5 ? "met" : "not met")}')
cat <<TABLE

### Booking throughput ($CLIENTS clients, ${DURATION} s each, 50 staff, pseudo-random free hours over two years)

| measurement | create_booking_idempotent | plain INSERT (ceiling) | ratio | the booking's writes in plain SQL (ceiling) | ratio |
|---|---|---|---|---|---|
| bookings/s, $CLIENTS clients | $c_tps | $i_tps | $ratio (target ≥ 60%) | $w_tps | $w_ratio |
| latency p50 / p99, $CLIENTS clients (ms) | $c_p50 / $c_p99 | $i_p50 / $i_p99 | | $w_p50 / $w_p99 | p99 $w_p99_ratio |
| latency p50 / p99, 1 client (ms) | $s_p50 / $s_p99 | | | | |

Every benchmark booking completed; no overlapping blocked ranges.
TABLE
