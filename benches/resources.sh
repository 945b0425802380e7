#!/usr/bin/env bash
# Resources and "any staff" (run by make bench), in one run and one database.
#
# Data: the benchmarks' salon (benches/bench_salon.sql: 50 staff around the clock, a 30-minute
# "Cut" with 10-minute buffers) and a "Colour" service exactly like it that also needs one
# resource of each of five groups (8 resources each). 2026-12-14 .. 2026-12-16 are booked: every
# staff member asks for a colour twice a day, 8 or 9 of them at each even hour, so 8 are booked
# there (each claiming five resources, 480 claims a day) and the chairs are full around even
# hours: a slot query of either service sees the same staff bookings, the colour's also the
# claims, and it finds a colour only around odd hours.
#
# 1. A slot query's cost with five resource groups against none: get_available_slots of the
#    colour against the cut (same staff, same day, same length), one staff member's day and all
#    50 staff's day, timed inside the server (a PL/pgSQL loop, clock_timestamp() around each
#    call, the two services' calls alternating so both see the same machine load; median).
#    Goal: at most 1.5x.
# 2. "Any staff" booking throughput against a named-staff booking: pgbench, 32 clients,
#    create_booking_idempotent with and without staff_id (strategy least_busy_day), each on its
#    own free hour. Goal: at least 80%.
#
# Only a wrong result fails the script: a colour slot where the cut has none, overlapping claims
# of a staff member or resource, or a benchmark booking that did not complete.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
start_cluster bench_resources $((BENCH_PORT + 14))
trap stop_cluster EXIT
fresh_database booking_bench
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_bench "$@"; }
DURATION=${BENCH_SECONDS:-20}
CLIENTS=32
SLOT_RUNS=${SLOT_RUNS:-400}
DAY_RUNS=${DAY_RUNS:-40}
work=$BOOKING_TMP/bench_resources/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"

log "loading 50 staff, a colour service needing five resource groups, three booked days"
psql -f "$REPO/benches/bench_salon.sql"
psql <<'SQL'
\set tenant '''b0000000-0000-0000-0000-000000000001'''
\set cut '''b1000000-0000-0000-0000-000000000001'''
\set colour '''b1000000-0000-0000-0000-000000000002'''
INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes)
    VALUES (:colour, :tenant, 'Colour', 30, 10, 10);
INSERT INTO booking.staff_services (staff_id, service_id) SELECT id, :colour FROM public.bench_staff;
INSERT INTO booking.resource_groups (tenant_id, id, name)
    SELECT :tenant, ('b3000000-0000-0000-0000-00000000000' || g)::uuid, 'group ' || g FROM generate_series(1, 5) g;
INSERT INTO booking.resources (tenant_id, id, name, kind, position)
    SELECT :tenant, ('b4000000-0000-0000-0000-0000000' || lpad((g * 100 + r)::text, 5, '0'))::uuid, format('resource %s.%s', g, r), 'equipment', r
    FROM generate_series(1, 5) g, generate_series(1, 8) r;
INSERT INTO booking.resource_group_members (tenant_id, group_id, resource_id)
    SELECT :tenant, ('b3000000-0000-0000-0000-00000000000' || g)::uuid, ('b4000000-0000-0000-0000-0000000' || lpad((g * 100 + r)::text, 5, '0'))::uuid
    FROM generate_series(1, 5) g, generate_series(1, 8) r;
INSERT INTO booking.service_requirements (tenant_id, service_id, group_id)
    SELECT :tenant, :colour, ('b3000000-0000-0000-0000-00000000000' || g)::uuid FROM generate_series(1, 5) g;
-- Staff member ix asks for a colour at 2 (ix mod 6) and 12 hours later.
CREATE TABLE public.bench_seed AS
SELECT booking.create_booking_idempotent(format('seed-%s-%s-%s', d, s.ix, h),
           jsonb_build_object('customer_id', 'b2000000-0000-0000-0000-000000000001', 'staff_id', s.id,
                              'service_id', :colour, 'starts_at', (d + make_interval(hours => h))::timestamp AT TIME ZONE 'Europe/Zurich')) AS r
FROM generate_series(date '2026-12-14', date '2026-12-16', interval '1 day') d,
     public.bench_staff s, generate_series(2 * (s.ix % 6), 23, 12) h;
SQL
psql -At -c "SELECT format('seed: %s colours booked, %s refused, %s resource claims',
    count(*) FILTER (WHERE (r ->> 'success')::boolean), count(*) FILTER (WHERE NOT (r ->> 'success')::boolean),
    (SELECT count(*) FROM booking.assignments WHERE resource_id IS NOT NULL AND live)) FROM public.bench_seed"

log "checking the colour's slots against the cut's"
# Every colour slot is a cut slot (same staff member, same length); the colour has fewer.
read -r only_colour cut_slots colour_slots < <(psql -At -F' ' <<'SQL'
SELECT (SELECT count(*) FROM (
            SELECT staff_id, starts_at, ends_at FROM booking.get_available_slots('b1000000-0000-0000-0000-000000000002', '2026-12-14', '2026-12-16')
            EXCEPT ALL
            SELECT staff_id, starts_at, ends_at FROM booking.get_available_slots('b1000000-0000-0000-0000-000000000001', '2026-12-14', '2026-12-16')) x),
       (SELECT count(*) FROM booking.get_available_slots('b1000000-0000-0000-0000-000000000001', '2026-12-14', '2026-12-16')),
       (SELECT count(*) FROM booking.get_available_slots('b1000000-0000-0000-0000-000000000002', '2026-12-14', '2026-12-16'))
SQL
)
echo "slots 2026-12-14 .. 16: $cut_slots cuts, $colour_slots colours, $only_colour colour slots without a cut"
if [ "$only_colour" != 0 ] || [ "$colour_slots" -ge "$cut_slots" ] || [ "$colour_slots" = 0 ]; then
    echo "wrong slots: a resource requirement must remove some slots, not all, and add none" >&2
    exit 1
fi

log "timing inside the server: $SLOT_RUNS staff-day and $DAY_RUNS all-staff-day calls per service"
psql -v slot_runs="$SLOT_RUNS" -v day_runs="$DAY_RUNS" <<'SQL'
\o /dev/null
CREATE TABLE bench_runs (service text, measurement text, run int, ms float8, slots bigint);
-- p_runs rounds of one cut call and one colour call (the order alternating), call i on day
-- 1 + i mod 3 and, for one staff member, staff member i mod 50.
CREATE FUNCTION pg_temp.time_calls(p_measurement text, p_runs int, p_one_staff boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_t0 timestamptz;
    v_slots bigint;
    v_day date;
    v_staff uuid;
    v_service text;
BEGIN
    FOR i IN 1..p_runs LOOP
        v_day := date '2026-12-14' + i % 3;
        v_staff := CASE WHEN p_one_staff THEN (SELECT s.id FROM public.bench_staff s WHERE s.ix = i % 50) END;
        FOREACH v_service IN ARRAY CASE WHEN i % 2 = 0 THEN ARRAY['cut', 'colour'] ELSE ARRAY['colour', 'cut'] END LOOP
            v_t0 := clock_timestamp();
            SELECT count(*) INTO v_slots
            FROM booking.get_available_slots(CASE v_service WHEN 'cut' THEN 'b1000000-0000-0000-0000-000000000001'::uuid
                                                           ELSE 'b1000000-0000-0000-0000-000000000002'::uuid END,
                                             v_day, v_day, v_staff);
            INSERT INTO bench_runs VALUES (v_service, p_measurement, i, 1000 * extract(epoch FROM clock_timestamp() - v_t0), v_slots);
        END LOOP;
    END LOOP;
END $$;
-- Warm-up, not recorded.
SELECT pg_temp.time_calls('warm-up', 30, true);
SELECT pg_temp.time_calls('warm-up', 4, false);
TRUNCATE bench_runs;
SELECT pg_temp.time_calls('staff-day', :slot_runs, true);
SELECT pg_temp.time_calls('all-staff-day', :day_runs, false);
SQL
# service measurement median slots(avg)
stats=$(psql -At -F' ' -c "
    SELECT service, measurement, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3), round(avg(slots)::numeric, 0)
    FROM bench_runs GROUP BY service, measurement")
get() { awk -v s="$1" -v m="$2" -v col="$3" '$1 == s && $2 == m { print $col }' <<<"$stats"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf "%.2fx (goal ≤ 1.5x: %s)", r, (r <= 1.5 ? "met" : "not met") }'; }

# ---------------------------------------------------------------------------------------------
# pgbench: the named-staff booking is benches/bench_create.sql (its own hours from 2027 on); the
# "any staff" booking takes the same pseudo-random hours from 2029 on, without a staff member.
cp "$REPO/benches/bench_create.sql" "$work/named.sql"
cat > "$work/any.sql" <<'SQL'
SELECT booking.create_booking_idempotent('any-' || n, jsonb_build_object('customer_id', 'b2000000-0000-0000-0000-000000000001',
           'service_id', 'b1000000-0000-0000-0000-000000000001', 'starts_at', b.starts_at)) ->> 'success'
FROM (SELECT nextval('public.bench_n') AS n) s, public.bench_slot(s.n, '2029-01-01 00:00+00') b;
SQL
# run NAME SCRIPT: pgbench for $DURATION seconds, $CLIENTS clients; prints the transactions per second.
run() {
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n \
        -c "$CLIENTS" -j 2 -T "$DURATION" -f "$2" booking_bench > "$1.out" 2>&1) || { cat "$work/$1.out" >&2; exit 1; }
    awk '/^tps = /{printf "%.0f", $3}' "$work/$1.out"
}
log "named-staff bookings, $CLIENTS clients, ${DURATION}s"
named_tps=$(run named named.sql)
log "any-staff bookings, $CLIENTS clients, ${DURATION}s"
any_tps=$(run any any.sql)

read -r unfinished any_refused chosen overlaps < <(psql -At -F' ' <<'SQL'
SELECT (SELECT count(*) FROM booking.booking_operations WHERE idempotency_key LIKE ANY (ARRAY['bench-%', 'any-%']) AND status <> 'completed'),
       (SELECT count(*) FROM booking.booking_operations WHERE idempotency_key LIKE 'any-%' AND appointment_id IS NULL),
       (SELECT count(*) FROM booking.appointments WHERE staff_choice IS NOT NULL),
       (SELECT count(*) FROM booking.assignments a JOIN booking.assignments b
            ON a.id < b.id AND a.live AND b.live AND a.blocked && b.blocked
           AND (a.staff_id = b.staff_id OR a.resource_id = b.resource_id))
SQL
)
if [ "$unfinished" != 0 ] || [ "$any_refused" != 0 ] || [ "$overlaps" != 0 ]; then
    echo "benchmark bookings went wrong: $unfinished not completed, $any_refused any-staff refused, $overlaps overlapping claims" >&2
    exit 1
fi
tp_ratio=$(awk -v a="$any_tps" -v b="$named_tps" 'BEGIN { r = 100 * a / b; printf "%.0f%% (goal ≥ 80%%: %s)", r, (r >= 80 ? "met" : "not met") }')

cat <<TABLE

### Resources and "any staff" (50 staff; five resource groups of 8; $CLIENTS clients, ${DURATION} s each)

| measurement | with | without | ratio |
|---|---|---|---|
| slot query, one staff member's day (median, ms): five resource groups / none | $(get colour staff-day 3) ($(get colour staff-day 4) slots) | $(get cut staff-day 3) ($(get cut staff-day 4) slots) | $(ratio "$(get colour staff-day 3)" "$(get cut staff-day 3)") |
| slot query, 50 staff's day (median, ms): five resource groups / none | $(get colour all-staff-day 3) ($(get colour all-staff-day 4) slots) | $(get cut all-staff-day 3) ($(get cut all-staff-day 4) slots) | $(ratio "$(get colour all-staff-day 3)" "$(get cut all-staff-day 3)") |
| bookings/s: any staff / named staff | $any_tps | $named_tps | $tp_ratio |

Every benchmark booking completed ($chosen chosen by the strategy); no overlapping claims.
TABLE
