#!/usr/bin/env bash
# The Citus test (tests/integration/citus.rs): a coordinator and two workers on loopback,
# booking_engine distributed on them, and the checks of docs/citus.md. Citus is
# built from the vendored source when it is not installed (ensure_citus, scripts/citus.sh); with
# neither, the level fails under CI=true and is skipped, with one line saying why, elsewhere.
# booking_engine must already be installed (scripts/test.sh does it first).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/citus.sh"
cd "$REPO"

if ! ensure_citus; then
    # A skipped level is untested code: CI must run it. A user's machine without Citus or its
    # source skips it with one line saying how to run it.
    if [ "${CI:-}" = true ]; then
        echo "FAIL: the Citus level cannot run (see above) and CI=true: Citus is a supported target" >&2
        exit 1
    fi
    log "Citus level skipped: put citus-$CITUS_VERSION.tar.gz at $CITUS_ARCHIVE (or install Citus into $("$PG_CONFIG" --pkglibdir)) to run it"
    exit 0
fi
start_citus_cluster 2
trap stop_citus_cluster EXIT
# The single-node reference: a database on the coordinator's server without the citus extension.
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$CITUS_COORD_PORT" -U postgres -d postgres -c "CREATE DATABASE booking_single"
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$CITUS_COORD_PORT" -U postgres -d booking_single \
    -c "SET client_min_messages = warning" -c "CREATE EXTENSION booking_engine CASCADE"
export BOOKING_ENGINE_CITUS_DSN="host=127.0.0.1 port=$CITUS_COORD_PORT user=postgres dbname=$CITUS_DB"
export BOOKING_ENGINE_CITUS_SINGLE_DSN="host=127.0.0.1 port=$CITUS_COORD_PORT user=postgres dbname=booking_single"
export BOOKING_ENGINE_CITUS_PG_BIN="$PG_BIN"
export BOOKING_ENGINE_CITUS_WORKERS="${CITUS_WORKER_PORTS[0]}=$(citus_node_dir "${CITUS_WORKER_PORTS[0]}"),${CITUS_WORKER_PORTS[1]}=$(citus_node_dir "${CITUS_WORKER_PORTS[1]}")"
log "the Citus test"
cargo test --features integration --test integration citus -- --nocapture --test-threads=1
