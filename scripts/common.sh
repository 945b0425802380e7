# Shared by the scripts: idempotent set-up and a throwaway cluster run as the postgres user.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Overridable so that several checkouts can work side by side: BOOKING_PG_ROOT points at a
# relocated copy of Debian's PostgreSQL 15 tree (with its own PGRX_HOME), BOOKING_TMP and
# BOOKING_PORT_BASE keep clusters apart. The defaults are what CI and users get.
PG_ROOT=${BOOKING_PG_ROOT:-}
PG_BIN=$PG_ROOT/usr/lib/postgresql/15/bin
PG_CONFIG="$PG_BIN/pg_config"
PG_REGRESS=$PG_ROOT/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PG_ROOT/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/pg_isolation_regress
BOOKING_TMP=${BOOKING_TMP:-/tmp/booking_engine}
PORT_BASE=${BOOKING_PORT_BASE:-28814}
DEMO_PORT=$PORT_BASE
TEST_PORT=$((PORT_BASE + 1))
BENCH_PORT=$((PORT_BASE + 2))
PGRX_VERSION=0.18.0
# The Rust the project is built and tested with (rust-toolchain.toml pins it; rustup installs it).
MIN_RUST=1.95
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo postgresql-15-hypopg
    prometheus chromium)
# The metrics worker's port in the test and bench clusters (the next one: a Prometheus started by a test).
METRICS_PORT=$((PORT_BASE + 50))
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# as_postgres COMMAND...: run as the postgres user, which owns the clusters (Postgres refuses root).
as_postgres() { as_root runuser -u postgres -- "$@"; }

die() { printf 'booking_engine: %s\n' "$*" >&2; exit 1; }

# What make demo and make test cannot install themselves, checked before anything runs, each with
# what to do: root or sudo (apt packages, the extension's files, clusters run as postgres), and
# Rust from rustup (Debian's own rustc is far too old for pgrx 0.18; rustup installs the
# version rust-toolchain.toml pins on first use).
check_prerequisites() {
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
        die "this needs root or sudo (apt packages, the extension's files, clusters run as postgres)"
    fi
    if ! command -v rustup >/dev/null; then
        die "no rustup: install Rust from https://rustup.rs (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), then open a new shell"
    fi
    local version
    version=$(cd "$REPO" && rustc --version 2>/dev/null | awk '{print $2}') || true
    if [ -z "$version" ]; then
        die "rustup has no Rust for this checkout: run 'rustup toolchain install' in $REPO (it reads rust-toolchain.toml)"
    fi
    if ! printf '%s\n%s\n' "$MIN_RUST" "$version" | sort -V -C; then
        die "Rust $version is older than the $MIN_RUST this project is built with: run 'rustup update'"
    fi
}

# ensure_packages [PACKAGE...]: install what is missing of the packages named (default: APT_PACKAGES).
ensure_packages() {
    local missing=() wanted=("$@")
    [ ${#wanted[@]} -gt 0 ] || wanted=("${APT_PACKAGES[@]}")
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_pgrx() {
    if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
        log "installing cargo-pgrx $PGRX_VERSION (a few minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "^pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "registering PostgreSQL 15 with pgrx"
        cargo pgrx init --pg15 "$PG_CONFIG"
    fi
}

setup() {
    check_prerequisites
    ensure_packages
    ensure_pgrx
}

# install_extension [--release]: build and copy the extension into PostgreSQL 15's directories.
install_extension() {
    log "building and installing booking_engine $*"
    local out=$BOOKING_TMP/install.log
    mkdir -p "$BOOKING_TMP"
    # A running server has the library mapped: overwriting it in place would crash it. Unlinked,
    # the old file lives on for those servers and the next start loads the new one.
    as_root rm -f "$("$PG_CONFIG" --pkglibdir)/booking_engine.so"
    if ! (cd "$REPO" && as_root env "PATH=$PATH" cargo pgrx install --pg-config "$PG_CONFIG" "$@" >"$out" 2>&1); then
        cat "$out" >&2
        return 1
    fi
}

# start_cluster NAME PORT: a private cluster in $BOOKING_TMP/NAME on PORT, socket in its
# own directory, booking_engine preloaded. Reused if already running.
start_cluster() {
    local name=$1 port=$2
    CLUSTER_DIR=$BOOKING_TMP/$name
    PGDATA_DIR=$CLUSTER_DIR/data
    export PGHOST=$CLUSTER_DIR PGPORT=$port PGUSER=postgres
    mkdir -p "$CLUSTER_DIR"
    # postgres owns the cluster's directory (its socket and log live there); like /tmp, anyone
    # may add to it and to $BOOKING_TMP, so a user running through sudo keeps writing test
    # output next to the clusters.
    as_root chown postgres "$CLUSTER_DIR"
    as_root chmod 1777 "$CLUSTER_DIR" "$BOOKING_TMP"
    if ! as_root test -s "$PGDATA_DIR/PG_VERSION"; then
        log "creating cluster $name"
        as_postgres "$PG_BIN/initdb" -D "$PGDATA_DIR" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
        echo "include 'booking_engine.conf'" | as_root tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
    fi
    # Rewritten at every start, so a cluster made by an older checkout gets today's settings
    # (and an older checkout's ALTER SYSTEM of the workers' database does not linger).
    # Workers: the launcher, per database served a scheduler and the job runners (at most
    # booking_engine.max_workers in all), and one writer per active database.
    # BOOKING_WORKER_DATABASES is the workers' allow-list (empty: every database);
    # BOOKING_EXTRA_CONF is appended as is.
    if as_root test -f "$PGDATA_DIR/postgresql.auto.conf"; then
        as_root sed -i '/^booking_engine\./d' "$PGDATA_DIR/postgresql.auto.conf"
    fi
    as_root tee "$PGDATA_DIR/booking_engine.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'booking_engine,pg_stat_statements'
max_worker_processes = 96
booking_engine.max_workers = 64
booking_engine.database = '${BOOKING_WORKER_DATABASES:-}'
${BOOKING_EXTRA_CONF:-}
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    as_root chown postgres "$PGDATA_DIR/booking_engine.conf"
    if as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        log "restarting cluster $name to load the installed library"
        as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w -m fast restart -l "$CLUSTER_DIR/log" >/dev/null
    else
        log "starting cluster $name on port $port"
        as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w start -l "$CLUSTER_DIR/log" >/dev/null
    fi
}

stop_cluster() {
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w -m fast stop >/dev/null 2>&1 || true
}

# fresh_database NAME: drop and create NAME with booking_engine installed.
fresh_database() {
    "$PG_BIN/psql" -X -q -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    "$PG_BIN/psql" -X -q -d "$1" -c "SET client_min_messages = warning" -c "CREATE EXTENSION booking_engine CASCADE"
}

# best_ms RUNS SQL: the best of RUNS timings of one statement, in milliseconds, timed inside the
# server (clock_timestamp() around it) through the caller's psql_db function.
best_ms() {
    local runs=$1 sql=$2 best="" ms
    for _ in $(seq "$runs"); do
        ms=$(printf '%s\n' "SELECT clock_timestamp() AS t0 \gset" "$sql;" \
                 "SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1);" | psql_db | tail -1)
        best=$(awk -v a="$ms" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
    done
    echo "$best"
}
