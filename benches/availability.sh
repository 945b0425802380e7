#!/usr/bin/env bash
# The availability benchmark, in one run and one database (run by make bench).
#
# Data (benches/availability_data.sql): 50 staff, 30 days (2026-03-16 .. 2026-04-14), 15-minute
# slots, about 20% of the working time already booked, a fixed clock. Baseline
# (benches/availability_baseline.sql): the same rules in plain PL/pgSQL, loaded into the bench
# database only.
#
# 1. Correctness: booking.get_available_slots and bench_baseline.get_available_slots must return
#    identical rows (EXCEPT ALL both ways, equal counts) for the full month, every staff
#    member's month and a list of single staff-days. Any difference fails the script (exit 1).
# 2. Timing, inside the server: a PL/pgSQL loop runs `SELECT count(*) FROM f(...)` and brackets
#    each call with clock_timestamp(). That includes the function's own queries, its result set
#    and the executor around it, but no client round trip and no parsing/planning of the outer
#    statement (PL/pgSQL caches that plan). The PL/pgSQL calls are interleaved with the Rust ones
#    (one after every BASE_*_EVERY Rust calls) so both see the same machine load. Reported: the
#    median per implementation (min and max in the details). The staff-day calls rotate over 50
#    (staff, working day) pairs, the same pairs for both implementations. Both are warmed up
#    first (not timed). Targets are reported, never enforced: only a correctness mismatch fails.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SERVICE=e3000000-0000-0000-0000-000000000001
FROM_DATE=2026-03-16
TO_DATE=2026-04-14
# Rust calls per measurement, and one PL/pgSQL call after every so many of them.
RUST_DAY_RUNS=${RUST_DAY_RUNS:-1000}
BASE_DAY_EVERY=${BASE_DAY_EVERY:-10}
RUST_MONTH_RUNS=${RUST_MONTH_RUNS:-40}
BASE_MONTH_EVERY=${BASE_MONTH_EVERY:-8}

setup
install_extension --release
# Other scripts install (debug) builds into the same system directory; make sure the server
# runs the release build just made, and say so if it was replaced during the run.
INSTALLED_LIB="$("$PG_CONFIG" --pkglibdir)/booking_engine.so"
RELEASE_LIB="${CARGO_TARGET_DIR:-$REPO/target}/release/libbooking_engine.so"
release_installed() { cmp -s "$INSTALLED_LIB" "$RELEASE_LIB"; }
start_cluster bench_availability "$BENCH_PORT"
if ! release_installed; then
    log "WARNING: the server loaded $INSTALLED_LIB, which is not the release build $RELEASE_LIB"
    log "         (another install replaced it); the timings will not be of the release build."
fi
trap stop_cluster EXIT
fresh_database booking_bench

psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_bench \
        -v svc="$SERVICE" -v from_date="$FROM_DATE" -v to_date="$TO_DATE" "$@"
}

log "loading the data set and the PL/pgSQL baseline"
psql -f "$REPO/benches/availability_data.sql"
psql -f "$REPO/benches/availability_baseline.sql"

psql -At <<'SQL'
\pset footer off
SELECT format('data: %s staff offering the service, %s live appointments (%s cancelled), %s%% of the scheduled working time booked (%s to %s)',
    (SELECT count(*) FROM booking.staff f
     WHERE f.is_active AND EXISTS (SELECT 1 FROM booking.staff_services ss WHERE ss.staff_id = f.id AND ss.service_id = :'svc')),
    (SELECT count(*) FROM booking.appointments WHERE status IN ('pending', 'confirmed', 'active')),
    (SELECT count(*) FROM booking.appointments WHERE status = 'cancelled'),
    round(100 * (SELECT sum(extract(epoch FROM a.ends_at - a.starts_at))
                 FROM booking.appointments a JOIN booking.staff f ON f.id = a.staff_id
                 WHERE a.status IN ('pending', 'confirmed', 'active') AND f.is_active
                   AND (a.starts_at AT TIME ZONE f.timezone)::date BETWEEN :'from_date' AND :'to_date')
        / (SELECT sum(extract(epoch FROM s.end_time - s.start_time))
           FROM booking.staff_schedules s JOIN booking.staff f ON f.id = s.staff_id
           CROSS JOIN generate_series(:'from_date'::timestamp, :'to_date'::timestamp, interval '1 day') g
           WHERE f.is_active AND s.day_of_week = extract(dow FROM g)
             AND NOT EXISTS (SELECT 1 FROM booking.holidays h WHERE h.date = g::date AND h.affects_all_staff)), 1),
    :'from_date', :'to_date');
SQL

# ---------------------------------------------------------------------------------------------
log "checking that the Rust engine and the PL/pgSQL baseline return identical slots"
psql <<'SQL'
-- Every active staff member who offers the service, by id.
CREATE TABLE bench_staff AS
SELECT row_number() OVER (ORDER BY f.id) AS n, f.id
FROM booking.staff f
WHERE f.is_active AND EXISTS (SELECT 1 FROM booking.staff_services ss WHERE ss.staff_id = f.id AND ss.service_id = :'svc');

-- 50 (staff, working day) pairs: each staff member's first working day on or after a day that
-- moves through the month, skipping the public holidays. The timing uses the same pairs.
CREATE TABLE bench_day_cases AS
SELECT b.n AS i, b.id AS staff_id, d.day
FROM bench_staff b
CROSS JOIN LATERAL (
    SELECT g::date AS day
    FROM generate_series(:'from_date'::timestamp + make_interval(days => (b.n::int * 11) % 28), :'to_date'::timestamp, interval '1 day') g
    WHERE EXISTS (SELECT 1 FROM booking.staff_schedules s WHERE s.staff_id = b.id AND s.is_active AND s.day_of_week = extract(dow FROM g))
      AND NOT EXISTS (SELECT 1 FROM booking.holidays h WHERE h.date = g::date AND h.affects_all_staff)
    ORDER BY g LIMIT 1) d;

-- What is compared: the full month, every staff member's month, the 50 staff-days above, and
-- the days where a special rule applies.
CREATE TABLE bench_checks (id serial, label text, staff_id uuid, from_date date, to_date date);
INSERT INTO bench_checks (label, staff_id, from_date, to_date) VALUES ('all staff, full month', NULL, :'from_date', :'to_date');
INSERT INTO bench_checks (label, staff_id, from_date, to_date)
SELECT format('staff %s, full month', n), id, :'from_date', :'to_date' FROM bench_staff ORDER BY n;
INSERT INTO bench_checks (label, staff_id, from_date, to_date)
SELECT format('staff %s, %s', i, day), staff_id, day, day FROM bench_day_cases ORDER BY i;
INSERT INTO bench_checks (label, staff_id, from_date, to_date)
SELECT format('staff %s, %s (%s)', c.n, c.day, c.why), f.id, c.day, c.day
FROM (VALUES
    (1, date '2026-03-16', 'first day of the range'),
    (1, date '2026-04-14', 'last day of the range'),
    (1, date '2026-04-03', 'Good Friday'),
    (2, date '2026-03-19', 'recurring holiday for staff 1..10'),
    (11, date '2026-03-19', 'recurring holiday, not for this staff member'),
    (3, date '2026-03-22', 'Sunday override 10:00-14:00'),
    (4, date '2026-03-20', 'day off override'),
    (5, date '2026-03-25', 'override cutting 15:00-16:00'),
    (6, date '2026-04-12', 'whole-day override clipped by opening hours'),
    (8, date '2026-04-01', 'long-day override'),
    (9, date '2026-03-29', 'DST Sunday override'),
    (7, date '2026-03-24', 'vacation'),
    (12, date '2026-04-08', 'time off 14:00-16:30'),
    (21, date '2026-03-30', 'training from 09:00'),
    (21, date '2026-03-31', 'training until 12:00'),
    (49, date '2026-03-28', 'Saturday row in UTC, winter'),
    (49, date '2026-04-04', 'Saturday row in UTC, summer'),
    (50, date '2026-03-31', 'London staff'),
    (51, date '2026-03-17', 'inactive staff'),
    (52, date '2026-03-17', 'does not offer the service')) c(n, day, why)
JOIN booking.staff f ON f.name = format('Staff %s', c.n);
INSERT INTO bench_checks (label, staff_id, from_date, to_date) VALUES ('all staff, one week', NULL, '2026-03-23', '2026-03-29');

CREATE TABLE bench_check_results AS
SELECT c.id, c.label, r.rust, r.baseline, r.only_rust, r.only_baseline
FROM bench_checks c
CROSS JOIN LATERAL (
    SELECT (SELECT count(*) FROM booking.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) AS rust,
           (SELECT count(*) FROM bench_baseline.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) AS baseline,
           (SELECT count(*) FROM (SELECT * FROM booking.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)
                                  EXCEPT ALL
                                  SELECT * FROM bench_baseline.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) x) AS only_rust,
           (SELECT count(*) FROM (SELECT * FROM bench_baseline.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)
                                  EXCEPT ALL
                                  SELECT * FROM booking.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) x) AS only_baseline) r;
SQL

mismatches=$(psql -At -c "SELECT count(*) FROM bench_check_results WHERE rust <> baseline OR only_rust > 0 OR only_baseline > 0")
psql -At -c "SELECT format('%s checks: %s staff-months, %s staff-days, 2 multi-staff ranges; %s slots compared, %s mismatching checks',
                           count(*), count(*) FILTER (WHERE label LIKE '%full month' AND label NOT LIKE 'all%'),
                           count(*) FILTER (WHERE label NOT LIKE '%month' AND label NOT LIKE 'all%'), sum(rust), $mismatches)
             FROM bench_check_results"
if [ "$mismatches" != 0 ]; then
    log "MISMATCH between booking.get_available_slots and bench_baseline.get_available_slots"
    psql -v mismatches="$mismatches" <<'SQL'
\pset footer off
\echo 'Mismatching checks:' :mismatches '(the first 15; rust/baseline = slot counts, only_* = rows the other side lacks)'
SELECT label, rust, baseline, only_rust, only_baseline
FROM bench_check_results WHERE rust <> baseline OR only_rust > 0 OR only_baseline > 0 ORDER BY id LIMIT 15;
SET timezone = 'Europe/Zurich';
\echo 'A few differing rows of the first three mismatching checks (times in Europe/Zurich):'
SELECT c.label, d.side, d.staff_id, d.starts_at, d.ends_at
FROM (SELECT k.* FROM bench_checks k JOIN bench_check_results r USING (id)
      WHERE r.rust <> r.baseline OR r.only_rust > 0 OR r.only_baseline > 0 ORDER BY k.id LIMIT 3) c
CROSS JOIN LATERAL (
    (SELECT 'only Rust' AS side, x.* FROM (
         SELECT * FROM booking.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)
         EXCEPT ALL SELECT * FROM bench_baseline.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) x
     ORDER BY x.starts_at, x.staff_id LIMIT 5)
    UNION ALL
    (SELECT 'only baseline', x.* FROM (
         SELECT * FROM bench_baseline.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)
         EXCEPT ALL SELECT * FROM booking.get_available_slots(:'svc', c.from_date, c.to_date, c.staff_id)) x
     ORDER BY x.starts_at, x.staff_id LIMIT 5)) d;
SQL
    exit 1
fi

# ---------------------------------------------------------------------------------------------
log "timing inside the server: $RUST_DAY_RUNS Rust and $((RUST_DAY_RUNS / BASE_DAY_EVERY)) PL/pgSQL staff-day calls, $RUST_MONTH_RUNS and $((RUST_MONTH_RUNS / BASE_MONTH_EVERY)) month calls"
psql -v rust_day_runs="$RUST_DAY_RUNS" -v base_day_every="$BASE_DAY_EVERY" \
     -v rust_month_runs="$RUST_MONTH_RUNS" -v base_month_every="$BASE_MONTH_EVERY" <<'SQL'
\o /dev/null
CREATE TABLE bench_runs (impl text, measurement text, run int, ms float8, slots bigint);

-- p_rust_runs Rust calls, and after every p_base_every-th of them one PL/pgSQL call, so that
-- both see the same machine load. Call i of an implementation takes case 1 + (i - 1) % cases.
-- Each call's wall time is taken between two clock_timestamp() readings.
CREATE FUNCTION pg_temp.time_calls(p_measurement text, p_rust_runs int, p_base_every int, p_service uuid,
                                   p_staff uuid[], p_from date[], p_to date[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_t0 timestamptz;
    v_ms float8;
    v_slots bigint;
    k int;
    j int := 0;
BEGIN
    FOR i IN 1..p_rust_runs LOOP
        k := 1 + (i - 1) % cardinality(p_from);
        v_t0 := clock_timestamp();
        SELECT count(*) INTO v_slots FROM booking.get_available_slots(p_service, p_from[k], p_to[k], p_staff[k]);
        v_ms := 1000 * extract(epoch FROM clock_timestamp() - v_t0);
        INSERT INTO bench_runs VALUES ('rust', p_measurement, i, v_ms, v_slots);
        CONTINUE WHEN i % p_base_every <> 0;
        j := j + 1;
        k := 1 + (j - 1) % cardinality(p_from);
        v_t0 := clock_timestamp();
        SELECT count(*) INTO v_slots FROM bench_baseline.get_available_slots(p_service, p_from[k], p_to[k], p_staff[k]);
        v_ms := 1000 * extract(epoch FROM clock_timestamp() - v_t0);
        INSERT INTO bench_runs VALUES ('baseline', p_measurement, j, v_ms, v_slots);
    END LOOP;
END $$;

SELECT array_agg(staff_id ORDER BY i) AS day_staff, array_agg(day ORDER BY i) AS day_dates FROM bench_day_cases \gset
\set month_staff '{NULL}'
\set month_from '{' :from_date '}'
\set month_to '{' :to_date '}'

-- Warm-up, not recorded: plans, caches, time zone data.
SELECT pg_temp.time_calls('warm-up', 100, 2, :'svc', :'day_staff', :'day_dates', :'day_dates');
SELECT pg_temp.time_calls('warm-up', 2, 2, :'svc', :'month_staff', :'month_from', :'month_to');
TRUNCATE bench_runs;

SELECT pg_temp.time_calls('day', :rust_day_runs, :base_day_every, :'svc', :'day_staff', :'day_dates', :'day_dates');
SELECT pg_temp.time_calls('month', :rust_month_runs, :base_month_every, :'svc', :'month_staff', :'month_from', :'month_to');
SQL

# impl|measurement|runs|median|min|max|slots(max)
stats=$(psql -At -F' ' -c "
    SELECT impl, measurement, count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
           round(min(ms)::numeric, 3), round(max(ms)::numeric, 3), max(slots), round(avg(slots)::numeric, 1)
    FROM bench_runs GROUP BY impl, measurement ORDER BY measurement, impl")

get() { awk -v impl="$1" -v m="$2" -v col="$3" '$1 == impl && $2 == m { print $col }' <<<"$stats"; }
rd=$(get rust day 4); bd=$(get baseline day 4); rm=$(get rust month 4); bm=$(get baseline month 4)
month_slots=$(get rust month 7); base_month_slots=$(get baseline month 7); day_slots=$(get rust day 8)
if [ "$month_slots" != "$base_month_slots" ]; then
    log "MISMATCH: the month calls returned $month_slots (Rust) and $base_month_slots (PL/pgSQL) slots"
    exit 1
fi

calc() { awk "BEGIN { printf \"%s\", $1 }"; }
ok() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "NOT met"; fi; }
sd=$(calc "$bd / $rd"); sm=$(calc "$bm / $rm")
rate_r=$(calc "$month_slots / ($rm / 1000)"); rate_b=$(calc "$month_slots / ($bm / 1000)")

echo
echo "Availability benchmark: 50 staff, 30 days ($FROM_DATE .. $TO_DATE), 15-minute slots, ~20% booked;"
echo "$month_slots slots in the month, $day_slots on an average staff-day. Median wall time of one"
echo "get_available_slots call, timed inside the server (PL/pgSQL loop, clock_timestamp())."
echo
printf '| %-34s | %21s | %17s | %8s | %-30s |\n' "measurement" "booking_engine (Rust)" "PL/pgSQL baseline" "speed-up" "target"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..23})" "$(printf -- '-%.0s' {1..19})" \
    "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..32})"
printf '| %-34s | %18.3f ms | %14.3f ms | %7.1fx | %-30s |\n' "one staff, one day" "$rd" "$bd" "$sd" \
    "Rust < 1 ms: $(ok "$rd < 1")"
printf '| %-34s | %18.3f ms | %14.3f ms | %7.1fx | %-30s |\n' "50 staff, 30 days" "$rm" "$bm" "$sm" \
    "Rust < 50 ms: $(ok "$rm < 50")"
printf '| %-34s | %16.0f sl/s | %12.0f sl/s | %7.1fx | %-30s |\n' "throughput, 50 staff x 30 days" "$rate_r" "$rate_b" "$sm" ""
printf '| %-34s | %21s | %17s | %8s | %-30s |\n' "speed-up target" "" "" "" \
    ">= 20x: day $(ok "$sd >= 20"), month $(ok "$sm >= 20")"
echo
echo "details (ms): implementation, measurement, runs, median, min, max"
awk '{ printf "  %-8s %-5s %5d runs  median %10.3f  min %10.3f  max %10.3f\n", $1, $2, $3, $4, $5, $6 }' <<<"$stats"
echo "  (machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end of the run)"
if ! release_installed; then
    echo
    log "WARNING: the installed booking_engine.so changed during the run (another build was installed);"
    log "         the timings above may not be of the release build. Run make bench again."
fi
