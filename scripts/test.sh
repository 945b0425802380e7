#!/usr/bin/env bash
# The whole test suite, set-up included: unit tests, #[pg_test] in-database tests, pg_regress
# golden files, Rust integration tests against a real cluster with the library preloaded, and
# the upgrade from the previous release (scripts/upgrade_test.sh).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup
cd "$REPO"

log "level 0: formatting and lints (cargo fmt --check, cargo clippy -D warnings)"
cargo fmt --check
cargo clippy --all-targets --features "pg_test integration" -- -D warnings

log "level 1: unit tests of the pure core (cargo test --lib)"
cargo test --lib

log "level 2: in-database tests (cargo pgrx test)"
mkdir -p "$BOOKING_TMP/pgrx-test"
as_root chown postgres "$BOOKING_TMP/pgrx-test"
as_root chmod 1777 "$BOOKING_TMP"
cargo pgrx test pg15 --runas postgres --pgdata "$BOOKING_TMP/pgrx-test/data"

log "level 3: a real cluster"
install_extension
# The golden files assume nothing claims their jobs behind their back: while they run, the
# background workers serve only the postgres database (which has no booking_engine).
BOOKING_WORKER_DATABASES=postgres start_cluster test "$TEST_PORT"
trap stop_cluster EXIT

# Each golden file starts from a fresh database, so files never see each other's rows.
regress_out=$BOOKING_TMP/test/regress
rm -rf "$regress_out" && mkdir -p "$regress_out"
failed=()
for t in $(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort); do
    fresh_database booking_regress
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d booking_regress -f tests/pg_regress/fixtures.sql
    if ! "$PG_REGRESS" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=booking_regress \
            --inputdir=tests/pg_regress --outputdir="$regress_out/$t" "$t"; then
        cat "$regress_out/$t/regression.diffs" >&2 || true
        failed+=("$t")
    fi
done
# Races, ordered by PostgreSQL's isolation tester: a step that waits on another session's lock
# is seen as blocked, so the interleavings are exact, with no sleeps.
isolation_out=$BOOKING_TMP/test/isolation
rm -rf "$isolation_out" && mkdir -p "$isolation_out"
for t in $(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort); do
    fresh_database booking_isolation
    if ! "$PG_ISOLATION_REGRESS" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
            --dbname=booking_isolation --inputdir=tests/isolation --outputdir="$isolation_out/$t" "$t"; then
        cat "$isolation_out/$t/regression.diffs" >&2 || true
        failed+=("isolation/$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "pg_regress: ${#failed[@]} failed: ${failed[*]}" >&2
    exit 1
fi

fresh_database booking_it
# The whole database, its background workers included, shares the tests' fixed clock: the
# maintenance scheduler must not move the tests' appointments as real time passes them.
"$PG_BIN/psql" -X -q -d postgres -c "ALTER DATABASE booking_it SET booking_engine.now = '2026-03-01 00:00+01'"
# So do the other databases the integration tests create (dump and restore, several databases
# served at once): their schedulers must not move appointments as real time passes them either.
# From here on the background workers serve every database where booking_engine is installed.
# Delivery: the tests' receivers listen on loopback, so loopback leaves the deny list (the
# rest of the default stays); retries come after 1 s; email goes to the tests' SMTP sink. The
# metrics worker serves booking_it's gauges on loopback (tests/integration/observability.rs).
SMTP_PORT=$((PORT_BASE + 200))
BOOKING_EXTRA_CONF="booking_engine.now = '2026-03-01 00:00+01'
booking_engine.delivery_denied_hosts = '0.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, fc00::/7'
booking_engine.delivery_retry_schedule = '1s'
booking_engine.smtp_host = '127.0.0.1'
booking_engine.smtp_port = $SMTP_PORT
booking_engine.smtp_security = 'none'
booking_engine.smtp_from = 'bookings@salon.test'
booking_engine.metrics_port = $METRICS_PORT
booking_engine.metrics_database = 'booking_it'" start_cluster test "$TEST_PORT"
export BOOKING_ENGINE_TEST_SMTP_PORT=$SMTP_PORT
export BOOKING_ENGINE_TEST_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=booking_it"
export BOOKING_ENGINE_TEST_METRICS_PORT=$METRICS_PORT BOOKING_ENGINE_TEST_ARTEFACTS=$BOOKING_TMP/test/artefacts
export BOOKING_ENGINE_TEST_PGDATA="$PGDATA_DIR" BOOKING_ENGINE_TEST_PG_BIN="$PG_BIN"
# The reference external worker's dependency (its test says so and does nothing without node).
if command -v npm >/dev/null; then
    (cd examples/job-worker && npm install --no-audit --no-fund --silent >/dev/null 2>&1)
fi
# The Citus test runs in its own level, on its own cluster (level 6).
cargo test --features integration --test integration -- --skip citus::
# Tests that crash or restart the server (marked #[ignore]) run alone, after the others.
cargo test --features integration --test integration -- --ignored --test-threads=1 --skip citus::

log "level 5: ALTER EXTENSION UPDATE from the previous release (sql/releases)"
bash "$REPO/scripts/upgrade_test.sh"
# Citus: a coordinator and two workers of their own, Citus built from the vendored source where
# it is not installed. Under CI=true a Citus level that cannot run fails the run.
log "level 6: the Citus test"
bash "$REPO/scripts/citus_test.sh"
