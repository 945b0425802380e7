# A Citus cluster on loopback for the Citus test and benchmark (sourced after common.sh): a
# coordinator and up to two workers, each a private cluster under $BOOKING_TMP/citus, listening
# on 127.0.0.1 only. Citus is not a dependency of booking_engine: it is used only when it is
# installed into the PostgreSQL that $PG_CONFIG describes (citus.so in its pkglibdir).

CITUS_DB=booking_citus
CITUS_DIR=$BOOKING_TMP/citus
CITUS_COORD_PORT=$((PORT_BASE + 3))
CITUS_WORKER_PORTS=($((PORT_BASE + 4)) $((PORT_BASE + 5)))

citus_installed() {
    [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]
}

# The unmodified Citus source every developer machine and CI run has beside the project
# (../shared/vendor from the project's root); BOOKING_CITUS_ARCHIVE points elsewhere.
CITUS_VERSION=13.2.2
CITUS_ARCHIVE=${BOOKING_CITUS_ARCHIVE:-$REPO/../shared/vendor/citus-$CITUS_VERSION.tar.gz}
CITUS_ARCHIVE_SHA256=dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430
# What Citus's build needs beyond PostgreSQL's server headers: the compression libraries its
# columnar store links (Debian's PostgreSQL is built with both, so Citus's configure wants them)
# and the GSSAPI headers libpq-be.h includes.
CITUS_BUILD_PACKAGES=(liblz4-dev libzstd-dev libkrb5-dev)

# ensure_citus: Citus in the PostgreSQL that $PG_CONFIG describes. An installed Citus is used as
# it is; otherwise the vendored archive is built once into a cache outside the work tree (keyed by
# the Citus version and the PostgreSQL it was configured against, so a minor upgrade of
# PostgreSQL or a relocated prefix builds anew) and installed from there. Returns 1, with the
# reason on stderr, when neither is available.
ensure_citus() {
    if citus_installed; then
        return 0
    fi
    if [ ! -f "$CITUS_ARCHIVE" ]; then
        echo "neither an installed Citus ($("$PG_CONFIG" --pkglibdir)/citus.so) nor its source ($CITUS_ARCHIVE)" >&2
        return 1
    fi
    local pg_version key cache src
    pg_version=$("$PG_CONFIG" --version | awk '{print $2}')
    key=$(printf '%s' "$PG_CONFIG" | sha256sum | cut -c1-12)
    cache=${BOOKING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/booking_engine}/citus-$CITUS_VERSION-pg$pg_version-$key
    src=$cache/citus-$CITUS_VERSION
    if [ ! -f "$cache/built" ]; then
        log "building Citus $CITUS_VERSION from $CITUS_ARCHIVE for PostgreSQL $pg_version (a few minutes, once; cached in $cache)"
        if ! echo "$CITUS_ARCHIVE_SHA256  $CITUS_ARCHIVE" | sha256sum --check --status; then
            echo "$CITUS_ARCHIVE does not have the sha256 of the unmodified Citus $CITUS_VERSION source" >&2
            return 1
        fi
        ensure_packages "${CITUS_BUILD_PACKAGES[@]}"
        rm -rf "$cache" && mkdir -p "$cache"
        tar -xzf "$CITUS_ARCHIVE" -C "$cache"
        # The one build note of this release (shared/README.md): PostgreSQL 15.20's
        # commands/dbcommands.h declares have_createdb_privilege(), which this release's
        # compatibility header also defines as a static function. On such headers the copy's
        # definition gives way to the server's declaration; the archive itself stays unmodified.
        if grep -qs 'have_createdb_privilege' "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h"; then
            perl -0pi -e 's/static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n/#include "commands\/dbcommands.h"\n/s' \
                "$src/src/include/pg_version_compat.h"
            grep -q '^#include "commands/dbcommands.h"' "$src/src/include/pg_version_compat.h"
        fi
        (cd "$src" && ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" >"$cache/configure.log" 2>&1 &&
            make -j"$(nproc)" >"$cache/make.log" 2>&1) || {
            tail -40 "$cache/make.log" "$cache/configure.log" >&2 2>/dev/null
            echo "building Citus failed (logs in $cache)" >&2
            return 1
        }
        touch "$cache/built"
    fi
    log "installing Citus $CITUS_VERSION into $("$PG_CONFIG" --pkglibdir)"
    as_root make -C "$src" install >"$cache/install.log" 2>&1 || { tail -20 "$cache/install.log" >&2; return 1; }
}

# citus_psql PORT [psql args...]: psql into the Citus database of the node on PORT.
citus_psql() {
    local port=$1
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$CITUS_DB" "$@"
}

# citus_node_dir PORT: the data directory of the node on PORT.
citus_node_dir() {
    echo "$CITUS_DIR/node$1/data"
}

# start_citus_node PORT ROLE (coordinator | worker): a fresh node. Citus must come first in
# shared_preload_libraries. booking_engine is preloaded on every node for its writer (the
# out-of-transaction audit of refusals, which a call delegated to a worker makes there), but
# only the coordinator's job runners and scheduler work (booking_engine.enabled): the job queue
# and the maintenance schedule are the coordinator's, see docs/citus.md.
start_citus_node() {
    local port=$1 role=$2 dir
    dir=$(citus_node_dir "$port")
    as_root rm -rf "$(dirname "$dir")"
    mkdir -p "$(dirname "$dir")"
    as_root chown postgres "$(dirname "$dir")"
    as_root chmod 1777 "$(dirname "$dir")" "$BOOKING_TMP"
    as_postgres "$PG_BIN/initdb" -D "$dir" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    local enabled=on
    [ "$role" = worker ] && enabled=off
    as_root tee -a "$dir/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$(dirname "$dir")'
shared_preload_libraries = 'citus,booking_engine,pg_stat_statements'
booking_engine.database = '$CITUS_DB'
booking_engine.enabled = $enabled
# The tests' webhook receivers listen on loopback: it leaves the deny list (the rest of the
# default stays); retries come after 1 s.
booking_engine.delivery_denied_hosts = '0.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, fc00::/7'
booking_engine.delivery_retry_schedule = '1s'
max_worker_processes = 32
max_connections = 200
max_prepared_transactions = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    as_postgres "$PG_BIN/pg_ctl" -D "$dir" -w start -l "$(dirname "$dir")/log" >/dev/null
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $CITUS_DB"
    # Every node's sessions run on the tests' fixed clock (a call delegated to a worker reads
    # the worker's setting); the coordinator's background workers too.
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "ALTER DATABASE $CITUS_DB SET booking_engine.now = '2026-03-01 00:00+01'"
    citus_psql "$port" -c "CREATE EXTENSION citus"
}

stop_citus_node() {
    as_postgres "$PG_BIN/pg_ctl" -D "$(citus_node_dir "$1")" -w -m fast stop >/dev/null 2>&1 || true
}

# start_citus_cluster WORKERS: a coordinator and WORKERS (1 or 2) workers, booking_engine
# created on the coordinator (Citus propagates it to the workers), tables not yet distributed.
start_citus_cluster() {
    local workers=$1 i
    stop_citus_cluster
    log "starting a Citus coordinator (port $CITUS_COORD_PORT) and $workers worker(s)"
    start_citus_node "$CITUS_COORD_PORT" coordinator
    for ((i = 0; i < workers; i++)); do
        start_citus_node "${CITUS_WORKER_PORTS[$i]}" worker
    done
    citus_psql "$CITUS_COORD_PORT" -c "SELECT citus_set_coordinator_host('127.0.0.1', $CITUS_COORD_PORT)" >/dev/null
    for ((i = 0; i < workers; i++)); do
        citus_psql "$CITUS_COORD_PORT" -c "SELECT citus_add_node('127.0.0.1', ${CITUS_WORKER_PORTS[$i]})" >/dev/null
    done
    citus_psql "$CITUS_COORD_PORT" -c "SET client_min_messages = warning" -c "CREATE EXTENSION booking_engine CASCADE"
    # The background workers read booking_engine.database at start, before the extension existed.
    as_postgres "$PG_BIN/pg_ctl" -D "$(citus_node_dir "$CITUS_COORD_PORT")" -w -m fast restart \
        -l "$CITUS_DIR/node$CITUS_COORD_PORT/log" >/dev/null
}

stop_citus_cluster() {
    local port
    for port in "$CITUS_COORD_PORT" "${CITUS_WORKER_PORTS[@]}"; do
        [ -d "$(citus_node_dir "$port")" ] && stop_citus_node "$port"
    done
    return 0
}
