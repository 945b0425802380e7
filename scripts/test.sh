#!/usr/bin/env bash
# The whole test suite, set-up included: unit tests, #[pg_test] in-database tests, pg_regress
# golden files and Rust integration tests against a real cluster with the library preloaded.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup
cd "$REPO"

log "level 1: unit tests of the pure core (cargo test --lib)"
cargo test --lib

log "level 2: in-database tests (cargo pgrx test)"
mkdir -p /tmp/booking_engine/pgrx-test
chown postgres /tmp/booking_engine /tmp/booking_engine/pgrx-test
cargo pgrx test pg15 --runas postgres --pgdata /tmp/booking_engine/pgrx-test/data

log "level 3: a real cluster"
install_extension
start_cluster test 28815
trap stop_cluster EXIT

regress_out=/tmp/booking_engine/test/regress
rm -rf "$regress_out" && mkdir -p "$regress_out"
tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
fresh_database booking_regress
if ! /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
        --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=booking_regress \
        --inputdir=tests/pg_regress --outputdir="$regress_out" \
        $tests; then
    cat "$regress_out/regression.diffs" >&2 || true
    exit 1
fi

fresh_database booking_it
export BOOKING_ENGINE_TEST_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=booking_it"
cargo test --features integration --test integration
