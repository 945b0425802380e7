#!/usr/bin/env bash
# Bookings/s and slot queries/s through a Citus coordinator with one and with two workers, and
# the same calls on a single node (a database of the coordinator's own server without Citus): the
# cost of the coordinator hop. Citus is built from the vendored source where it is not installed. On one small machine the
# workers share its cores with the coordinator and pgbench, so this measures overhead, not
# scaling (docs/citus.md).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/citus.sh"
setup
# A benchmark that cannot measure fails rather than printing nothing under a green exit.
ensure_citus || die "Citus benchmark: neither an installed Citus nor $CITUS_ARCHIVE to build it from"
install_extension --release
DURATION=${BENCH_SECONDS:-15}
CLIENTS=16
TENANTS=20
work=$BOOKING_TMP/bench_citus
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"

# 20 tenants open around the clock, 5 staff each, one 30-minute service, one customer. Ids are
# numbered so that pgbench can write them: tenant t is ...-1000000000tt, staff s of it ...-1000000tt0s.
cat > "$work/load.sql" <<'SQL'
INSERT INTO booking.global_policies (policy_key, policy_value) VALUES ('advance_booking_limit_days', '3650'),
    ('minimum_booking_notice_hours', '0');
INSERT INTO booking.tenants (id, name, timezone, opening_hours)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, 'bench ' || t, 'UTC',
       (SELECT jsonb_object_agg(d::text, '{"is_open": true, "start_time": "00:00", "end_time": "24:00"}'::jsonb) FROM generate_series(0, 6) d)
FROM generate_series(0, 19) t;
INSERT INTO booking.services (tenant_id, id, name, duration_minutes)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, ('d0000000-0000-4000-8000-' || (100000000000 + t))::uuid, 'Cut', 30
FROM generate_series(0, 19) t;
INSERT INTO booking.customers (tenant_id, id, name)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, ('e0000000-0000-4000-8000-' || (100000000000 + t))::uuid, 'Client'
FROM generate_series(0, 19) t;
INSERT INTO booking.staff (tenant_id, id, name, timezone)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, ('c0000000-0000-4000-8000-' || (100000000000 + t * 10 + s))::uuid, 'staff', 'UTC'
FROM generate_series(0, 19) t, generate_series(0, 4) s;
INSERT INTO booking.staff_services (tenant_id, staff_id, service_id)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, ('c0000000-0000-4000-8000-' || (100000000000 + t * 10 + s))::uuid,
       ('d0000000-0000-4000-8000-' || (100000000000 + t))::uuid
FROM generate_series(0, 19) t, generate_series(0, 4) s;
INSERT INTO booking.staff_schedules (tenant_id, staff_id, day_of_week, start_time, end_time)
SELECT ('b0000000-0000-4000-8000-' || (100000000000 + t))::uuid, ('c0000000-0000-4000-8000-' || (100000000000 + t * 10 + s))::uuid, d, '00:00', '23:59'
FROM generate_series(0, 19) t, generate_series(0, 4) s, generate_series(0, 6) d;
CREATE SEQUENCE public.bench_n;
SQL
# Booking n: tenant n % 20, its staff member (n / 20) % 5, the hour n / 100 from 2027-01-01,
# so no two calls collide. The call's arguments are constants (pgbench writes the variables into
# the text), which is what lets Citus push the whole call down to the tenant's worker.
cat > "$work/book.sql" <<'SQL'
SELECT nextval('public.bench_n') AS n \gset
\set t 100000000000 + :n % 20
\set s 100000000000 + (:n % 20) * 10 + (:n / 20) % 5
\set h :n / 100
SELECT booking.create_tenant_booking('b0000000-0000-4000-8000-:t', 'bench-:n', jsonb_build_object(
    'customer_id', 'e0000000-0000-4000-8000-:t', 'staff_id', 'c0000000-0000-4000-8000-:s',
    'service_id', 'd0000000-0000-4000-8000-:t', 'starts_at', timestamptz '2027-01-01 00:00+00' + :h * interval '1 hour'));
SQL
# One day of one tenant's service, 5 staff, 30-minute slots around the clock (~240 slots).
cat > "$work/slots.sql" <<'SQL'
\set t 100000000000 + random(0, 19)
\set d random(0, 300)
SELECT booking.get_tenant_available_slots('b0000000-0000-4000-8000-:t', date '2027-01-01' + :d, 'd0000000-0000-4000-8000-:t');
SQL

# run NAME SCRIPT DB [CLIENTS]: pgbench through the coordinator's server; prints calls/s and
# the mean latency in ms.
run() {
    local name=$1 script=$2 db=$3 clients=${4:-$CLIENTS}
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h 127.0.0.1 -p "$CITUS_COORD_PORT" -U postgres -n \
        -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$DURATION" -f "$script" "$db" > "$name.out" 2>&1) \
        || { cat "$work/$name.out" >&2; exit 1; }
    awk '/^tps = /{tps = $3} /^latency average = /{lat = $4} END {printf "%.0f %.2f\n", tps, lat}' "$work/$name.out"
}

# measure SUFFIX DB: bookings and slot queries with $CLIENTS clients, then one client.
measure() {
    local k=$1 db=$2
    read -r tps[book_$k] _ < <(run "book_$k" book.sql "$db")
    read -r tps[slots_$k] _ < <(run "slots_$k" slots.sql "$db")
    read -r _ lat[book_$k] < <(run "book1_$k" book.sql "$db" 1)
    read -r _ lat[slots_$k] < <(run "slots1_$k" slots.sql "$db" 1)
}

check() {
    local db=$1 failed overlaps
    failed=$(citus_psql "$CITUS_COORD_PORT" -d "$db" -At -c "SELECT count(*) FROM booking.booking_operations WHERE status <> 'completed'")
    overlaps=$(citus_psql "$CITUS_COORD_PORT" -d "$db" -At -c "SELECT count(*) FROM booking.appointments a JOIN booking.appointments b
        ON a.tenant_id = b.tenant_id AND a.staff_id = b.staff_id AND a.id < b.id AND a.blocked && b.blocked")
    if [ "$failed" != 0 ] || [ "$overlaps" != 0 ]; then
        echo "benchmark bookings in $db went wrong: $failed not completed, $overlaps overlaps" >&2
        exit 1
    fi
}

declare -A tps lat
for workers in 1 2; do
    start_citus_cluster "$workers"
    trap stop_citus_cluster EXIT
    citus_psql "$CITUS_COORD_PORT" -c "SET client_min_messages = warning" -c "SELECT booking_admin.distribute_tables()" >/dev/null
    citus_psql "$CITUS_COORD_PORT" -f "$work/load.sql"
    log "Citus, $workers worker(s): bookings, then slot queries, $CLIENTS clients, ${DURATION}s each"
    measure "$workers" "$CITUS_DB"
    check "$CITUS_DB"
    if [ "$workers" = 1 ]; then
        # The single node: the coordinator's own server, a database without Citus.
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$CITUS_COORD_PORT" -U postgres -d postgres -c "CREATE DATABASE booking_single"
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$CITUS_COORD_PORT" -U postgres -d postgres \
            -c "ALTER DATABASE booking_single SET booking_engine.now = '2026-03-01 00:00+01'"
        citus_psql "$CITUS_COORD_PORT" -d booking_single -c "SET client_min_messages = warning" -c "CREATE EXTENSION booking_engine CASCADE"
        citus_psql "$CITUS_COORD_PORT" -d booking_single -f "$work/load.sql"
        log "single node: bookings, then slot queries"
        measure 0 booking_single
        check booking_single
    fi
    stop_citus_cluster
done
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }
cat <<TABLE

### Citus ($CLIENTS clients, ${DURATION} s each, $TENANTS tenants × 5 staff, one machine: $(nproc) cores)

| measurement | single node | Citus, 1 worker | Citus, 2 workers |
|---|---|---|---|
| bookings/s (create_tenant_booking) | ${tps[book_0]} | ${tps[book_1]} ($(pct "${tps[book_1]}" "${tps[book_0]}")) | ${tps[book_2]} ($(pct "${tps[book_2]}" "${tps[book_0]}")) |
| slot queries/s (get_tenant_available_slots, one day) | ${tps[slots_0]} | ${tps[slots_1]} ($(pct "${tps[slots_1]}" "${tps[slots_0]}")) | ${tps[slots_2]} ($(pct "${tps[slots_2]}" "${tps[slots_0]}")) |
| one booking, 1 client (ms) | ${lat[book_0]} | ${lat[book_1]} | ${lat[book_2]} |
| one slot query, 1 client (ms) | ${lat[slots_0]} | ${lat[slots_1]} | ${lat[slots_2]} |

Percentages: of the single node's rate. The 1-client latencies minus the single node's are the
coordinator hop (planning the push-down, a round trip to the worker, the worker's own planning). Every benchmark booking completed; no overlapping blocked ranges.
TABLE
