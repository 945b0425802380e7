#!/usr/bin/env bash
# The main job on a local cluster: a salon in Zurich, next week's slots, one booking.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup
install_extension --release
start_cluster demo "$DEMO_PORT"
fresh_database booking_demo
psql() { "$PG_BIN/psql" -X -q -d booking_demo "$@"; }
psql -f "$REPO/examples/salon.sql"
psql -f "$REPO/examples/demo.sql"
echo
log "the demo cluster keeps running: psql -h $PGHOST -p $PGPORT -U postgres booking_demo"
