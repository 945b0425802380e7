#!/usr/bin/env bash
# The slot store benchmark, in one run and one database (run by make bench).
#
# Data: the availability benchmark's (benches/availability_data.sql: 50 staff offering 3
# services, 15-minute slots, ~20% booked, clock fixed at 2026-03-14 12:00), with the store's
# default 60-day horizon (2026-03-14 .. 2026-05-12).
#
# 1. Correctness: for every staff member and service, the store's free slots as of now
#    (booking.availability_slots_now) equal booking.get_available_slots over the whole
#    horizon, and a full recomputation changes nothing. Any difference fails the script.
# 2. Timing inside the server (PL/pgSQL loops bracketing each call with clock_timestamp(), the
#    compared implementations interleaved so that both see the same load; medians):
#    - read: one staff member, one service, 14 days, free slots ordered by confidence, as
#      PostgREST reads the view; against get_available_slots on demand for the same 14 days,
#      and against a naive approach (every candidate start checked with its own
#      queries of the schedule and the reservations);
#    - booking: create_booking_idempotent with the store's triggers, against the same calls
#      with them disabled (ALTER TABLE ... DISABLE TRIGGER, alternating blocks), on distinct
#      free slots;
#    - schedule edit: an update of one weekly schedule row, with and without the triggers;
#    - full generation: every staff-day of the horizon (50 staff x 60 days x 3 services) from an
#      empty store, and the same recomputation when nothing changed.
#    Targets are reported, never enforced: only a correctness mismatch fails.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SERVICE=e3000000-0000-0000-0000-000000000001
READ_RUNS=${READ_RUNS:-500}
BOOK_BLOCKS=${BOOK_BLOCKS:-6}
BOOK_PER_BLOCK=${BOOK_PER_BLOCK:-50}
EDIT_RUNS=${EDIT_RUNS:-10}
GEN_RUNS=${GEN_RUNS:-3}

setup
install_extension --release
# The background workers serve only the postgres database: the lifecycle sweeps run on the
# real clock and would expire the data set's appointments (all "past") in the middle of a run.
BOOKING_WORKER_DATABASES=postgres start_cluster bench_slot_store "$BENCH_PORT"
trap stop_cluster EXIT
fresh_database booking_bench

psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_bench -v svc="$SERVICE" "$@"; }

log "loading the data set, then turning the store on (it fills at once)"
psql -f "$REPO/benches/availability_data.sql"
psql -c "UPDATE booking.slot_store_settings SET enabled = true"

log "checking the store against get_available_slots and a full recomputation"
mismatches=$(psql -At <<'SQL'
SELECT count(*) FROM (
    SELECT f.id, s.id AS service_id,
           (SELECT count(*) FROM (
               (SELECT g.starts_at, g.ends_at FROM booking.get_available_slots(s.id, h.first, h.last, f.id) g
                EXCEPT SELECT v.start_time, v.end_time FROM booking.availability_slots_now v
                       WHERE v.staff_id = f.id AND v.service_id = s.id AND v.is_available)
               UNION ALL
               (SELECT v.start_time, v.end_time FROM booking.availability_slots_now v
                WHERE v.staff_id = f.id AND v.service_id = s.id AND v.is_available
                EXCEPT SELECT g.starts_at, g.ends_at FROM booking.get_available_slots(s.id, h.first, h.last, f.id) g)) d) AS n
    FROM booking.staff f JOIN booking.services s ON s.tenant_id = f.tenant_id AND s.is_active
    CROSS JOIN LATERAL (SELECT min(date) AS first, max(date) AS last FROM booking.availability_slot_days d WHERE d.staff_id = f.id) h
    WHERE f.is_active) x
WHERE n > 0
SQL
)
psql -c "CREATE TABLE bench_before AS SELECT * FROM booking.availability_slots"
psql -o /dev/null -c "SELECT booking.slot_store_touch_dates(array_agg(f.tenant_id), array_agg(f.id), NULL, NULL) FROM booking.staff f"
changed=$(psql -At -c "SELECT (SELECT count(*) FROM (SELECT * FROM bench_before EXCEPT SELECT * FROM booking.availability_slots) a)
                            + (SELECT count(*) FROM (SELECT * FROM booking.availability_slots EXCEPT SELECT * FROM bench_before) b)")
psql -At -c "SELECT format('store: %s slots (%s free) over %s staff-days; %s (staff, service) pairs differ from get_available_slots, %s rows change on a full recomputation',
                           count(*), count(*) FILTER (WHERE is_available), (SELECT count(*) FROM booking.availability_slot_days), $mismatches, $changed)
             FROM booking.availability_slots"
if [ "$mismatches" != 0 ] || [ "$changed" != 0 ]; then
    log "MISMATCH: the store is not exact"
    exit 1
fi

# Statistics, as autovacuum would have them on a live database (the store was just filled).
psql -c "ANALYZE"
log "timing"
psql -v read_runs="$READ_RUNS" -v book_blocks="$BOOK_BLOCKS" -v book_per_block="$BOOK_PER_BLOCK" \
     -v edit_runs="$EDIT_RUNS" -v gen_runs="$GEN_RUNS" <<'SQL'
\o /dev/null
CREATE TABLE bench_runs (impl text, measurement text, ms float8);
-- The timing functions outlive this session: the booking blocks below run in later ones.
CREATE SCHEMA bench_slot;

-- A naive availability check: every candidate start of the day (every 15 minutes of
-- the opening hours) asks the schedule, the overrides and the reservations with queries of its
-- own, as an application checking slot by slot does.
CREATE FUNCTION bench_slot.naive_slots(p_staff uuid, p_service uuid, p_from date, p_to date) RETURNS SETOF timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    v_svc booking.services;
    v_tz text;
    v_start timestamptz;
BEGIN
    SELECT * INTO v_svc FROM booking.services WHERE id = p_service;
    SELECT timezone INTO v_tz FROM booking.staff WHERE id = p_staff;
    FOR d IN 0 .. p_to - p_from LOOP
        FOR k IN 0 .. 47 LOOP
            v_start := ((p_from + d)::timestamp + make_interval(mins => 480 + 15 * k)) AT TIME ZONE v_tz;
            CONTINUE WHEN NOT EXISTS (
                SELECT 1 FROM booking.staff_schedules s
                WHERE s.staff_id = p_staff AND s.is_active AND s.day_of_week = extract(dow FROM p_from + d)
                  AND s.start_time <= (v_start AT TIME ZONE v_tz)::time
                  AND s.end_time >= ((v_start + make_interval(mins => v_svc.duration_minutes)) AT TIME ZONE v_tz)::time);
            CONTINUE WHEN EXISTS (SELECT 1 FROM booking.schedule_overrides o WHERE o.staff_id = p_staff AND o.date = p_from + d);
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM booking.appointments a
                WHERE a.staff_id = p_staff AND a.status IN ('pending', 'confirmed', 'active')
                  AND a.blocked && tstzrange(v_start - make_interval(mins => v_svc.buffer_before_minutes),
                                             v_start + make_interval(mins => v_svc.duration_minutes + v_svc.buffer_after_minutes)));
            RETURN NEXT v_start;
        END LOOP;
    END LOOP;
END $$;

-- Reads: the store (as PostgREST's GET on the view), on demand, naive; interleaved, rotating
-- over the 50 staff members and start days through the month.
CREATE FUNCTION bench_slot.time_reads(p_runs int, p_service uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_staff uuid[] := ARRAY(SELECT f.id FROM booking.staff f
                            WHERE f.is_active AND EXISTS (SELECT 1 FROM booking.staff_services ss WHERE ss.staff_id = f.id AND ss.service_id = p_service)
                            ORDER BY f.id);
    v_t0 timestamptz;
    v_from date;
    v_staff_id uuid;
    v_n bigint;
    v_a timestamptz[];
BEGIN
    FOR i IN 1 .. p_runs LOOP
        v_staff_id := v_staff[1 + i % cardinality(v_staff)];
        v_from := date '2026-03-16' + (i * 7) % 30;
        v_t0 := clock_timestamp();
        SELECT array_agg(v.start_time ORDER BY v.confidence_score DESC, v.start_time) INTO v_a
        FROM booking.availability_slots_now v
        WHERE v.staff_id = v_staff_id AND v.service_id = p_service AND v.is_available
          AND v.start_time >= v_from::timestamptz AND v.start_time < (v_from + 14)::timestamptz;
        INSERT INTO bench_runs VALUES ('store', 'read', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
        v_t0 := clock_timestamp();
        SELECT count(*) INTO v_n FROM booking.get_available_slots(p_service, v_from, v_from + 13, v_staff_id);
        INSERT INTO bench_runs VALUES ('on_demand', 'read', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
        CONTINUE WHEN i % 10 <> 0;
        v_t0 := clock_timestamp();
        SELECT count(*) INTO v_n FROM bench_slot.naive_slots(v_staff_id, p_service, v_from, v_from + 13);
        INSERT INTO bench_runs VALUES ('naive', 'read', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
    END LOOP;
END $$;
SELECT bench_slot.time_reads(50, :'svc');
TRUNCATE bench_runs;
SELECT bench_slot.time_reads(:read_runs, :'svc');

-- Bookings on distinct free slots: each staff-day's first free slot of the benchmarked service
-- within the month, shuffled deterministically; blocks alternate between the store's triggers
-- on and off.
CREATE TABLE bench_free AS
SELECT row_number() OVER (ORDER BY md5(g.staff_id::text || g.starts_at::text)) AS n, g.staff_id, g.starts_at
FROM (SELECT DISTINCT ON (g.staff_id, g.starts_at::date) g.staff_id, g.starts_at
      FROM booking.get_available_slots(:'svc', '2026-03-16', '2026-04-14') g
      ORDER BY g.staff_id, g.starts_at::date, g.starts_at) g;
CREATE TABLE bench_customer AS SELECT id FROM booking.customers LIMIT 1;
CREATE FUNCTION bench_slot.time_bookings(p_impl text, p_first int, p_count int, p_service uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_t0 timestamptz;
    v_r jsonb;
    f record;
BEGIN
    FOR f IN SELECT * FROM bench_free WHERE n >= p_first AND n < p_first + p_count ORDER BY n LOOP
        v_t0 := clock_timestamp();
        v_r := booking.create_booking_idempotent('bench-' || f.n, jsonb_build_object(
            'customer_id', (SELECT id FROM bench_customer), 'staff_id', f.staff_id, 'service_id', p_service, 'starts_at', f.starts_at));
        INSERT INTO bench_runs VALUES (p_impl, 'booking', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
        IF NOT (v_r ->> 'success')::boolean THEN
            RAISE EXCEPTION 'booking % failed: %', f.n, v_r;
        END IF;
    END LOOP;
END $$;
SQL
for ((b = 0; b < BOOK_BLOCKS; b++)); do
    first=$((1 + b * BOOK_PER_BLOCK))
    if ((b % 2 == 0)); then impl=store; toggle=ENABLE; else impl=no_store; toggle=DISABLE; fi
    psql -o /dev/null <<SQL
ALTER TABLE booking.appointments $toggle TRIGGER slot_store_insert;
SELECT bench_slot.time_bookings('$impl', $first, $BOOK_PER_BLOCK, :'svc');
SQL
done
psql -o /dev/null -c "ALTER TABLE booking.appointments ENABLE TRIGGER slot_store_insert"

# Schedule edits: one weekly row's end moved by 15 minutes and back, with and without triggers.
for impl in store no_store; do
    toggle=$([ "$impl" = store ] && echo ENABLE || echo DISABLE)
    psql -o /dev/null -v runs="$EDIT_RUNS" <<SQL
ALTER TABLE booking.staff_schedules $toggle TRIGGER slot_store_update;
DO \$\$
DECLARE
    v_t0 timestamptz;
    v_row uuid := (SELECT s.id FROM booking.staff_schedules s ORDER BY s.staff_id, s.day_of_week, s.start_time LIMIT 1);
BEGIN
    FOR i IN 1 .. $EDIT_RUNS LOOP
        v_t0 := clock_timestamp();
        UPDATE booking.staff_schedules SET end_time = end_time + CASE WHEN i % 2 = 1 THEN interval '-15 minutes' ELSE interval '15 minutes' END
        WHERE id = v_row;
        INSERT INTO bench_runs VALUES ('$impl', 'schedule_edit', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
    END LOOP;
END \$\$;
ALTER TABLE booking.staff_schedules ENABLE TRIGGER slot_store_update;
SQL
done

# Full generation from an empty store, and a full recomputation with nothing to change.
for ((i = 0; i < GEN_RUNS; i++)); do
    psql -o /dev/null <<'SQL'
DELETE FROM booking.availability_slots;
DO $$
DECLARE
    v_t0 timestamptz := clock_timestamp();
BEGIN
    PERFORM booking.slot_store_touch_dates(array_agg(f.tenant_id), array_agg(f.id), NULL, NULL) FROM booking.staff f;
    INSERT INTO bench_runs VALUES ('store', 'generate', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
    v_t0 := clock_timestamp();
    PERFORM booking.slot_store_touch_dates(array_agg(f.tenant_id), array_agg(f.id), NULL, NULL) FROM booking.staff f;
    INSERT INTO bench_runs VALUES ('store', 'recompute', 1000 * extract(epoch FROM clock_timestamp() - v_t0));
END $$;
SQL
done

stats=$(psql -At -F' ' -c "SELECT impl, measurement, count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3)
                           FROM bench_runs GROUP BY impl, measurement ORDER BY measurement, impl")
get() { awk -v impl="$1" -v m="$2" '$1 == impl && $2 == m { print $4 }' <<<"$stats"; }
calc() { awk "BEGIN { printf \"%s\", $1 }"; }
ok() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "NOT met"; fi; }
rs=$(get store read); ro=$(get on_demand read); rn=$(get naive read)
bs=$(get store booking); bn=$(get no_store booking)
es=$(get store schedule_edit); en=$(get no_store schedule_edit)
gen=$(get store generate); rec=$(get store recompute)
slots=$(psql -At -c "SELECT count(*) FROM booking.availability_slots")
cost=$(calc "($bs - $bn) / $bn * 100")
tput=$(calc "(1 - $bn / $bs) * 100")
echo
echo "Slot store benchmark: 50 staff x 3 services, 60-day horizon ($slots slots), 15-minute slots, ~20% booked."
echo "Median wall time per call, timed inside the server (PL/pgSQL loop, clock_timestamp())."
echo
printf '| %-44s | %12s | %12s | %8s | %-34s |\n' "measurement" "slot store" "compared to" "ratio" "goal"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" \
    "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..36})"
printf '| %-44s | %9.3f ms | %9.3f ms | %7.1fx | %-34s |\n' "read 14 days by confidence vs on demand" "$rs" "$ro" "$(calc "$ro / $rs")" \
    ">= 10x: $(ok "$ro / $rs >= 10"), < 0.2 ms: $(ok "$rs < 0.2")"
printf '| %-44s | %9.3f ms | %9.3f ms | %7.1fx | %-34s |\n' "read 14 days vs naive checks" "$rs" "$rn" "$(calc "$rn / $rs")" ""
printf '| %-44s | %9.3f ms | %9.3f ms | %7.2fx | %-34s |\n' "create_booking_idempotent, store vs none" "$bs" "$bn" "$(calc "$bs / $bn")" \
    "throughput -$tput%: < 15% $(ok "$tput < 15")"
printf '| %-44s | %9.3f ms | %9.3f ms | %7.1fx | %-34s |\n' "schedule edit (one staff's 60 days)" "$es" "$en" "$(calc "$es / $en")" ""
printf '| %-44s | %9.1f ms | %12s | %8s | %-34s |\n' "full generation, 50 staff x 60 days" "$gen" "" "" "< 1 s: $(ok "$gen < 1000")"
printf '| %-44s | %9.1f ms | %12s | %8s | %-34s |\n' "full recomputation, nothing changed" "$rec" "" "" ""
echo
echo "details (ms): implementation, measurement, runs, median"
awk '{ printf "  %-10s %-14s %5d runs  median %10.3f\n", $1, $2, $3, $4 }' <<<"$stats"
echo "  booking latency +$cost% with the store; (machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
