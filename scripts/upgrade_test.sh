#!/usr/bin/env bash
# ALTER EXTENSION booking_engine UPDATE from the previous release (the last line of
# sql/releases: "<version> <git commit>") to this checkout, on a private cluster:
#   1. the previous release is built from its commit (git archive, a debug build, its cargo
#      target seeded from this checkout's so only the crate itself compiles) and installed into
#      a private copy of the PostgreSQL tree, so the test cluster's library is never touched;
#   2. a cluster running that copy gets the extension at the old version and data through the
#      old API (tests/upgrade/load.sql); every row of the extension's tables is kept aside;
#   3. the same cluster restarts on this checkout's installation, ALTER EXTENSION ... UPDATE
#      runs, and a fresh database gets CREATE EXTENSION of the new version;
#   4. the two catalogs are described (tests/upgrade/describe.sql: every member object, its
#      columns, constraints, indexes, triggers, policies, function definitions, grants, initial
#      privileges, config dump registrations) plus a normalised pg_dump --schema-only of each
#      database, and diffed: any difference fails with the diff;
#   5. every row kept aside must still be there.
# When the previous release has the same version as this checkout, step 3's UPDATE is a no-op
# and step 4 proves the SQL did not change without a new version (and an upgrade script).
# Expects install_extension to have run (the new version is in $PG_ROOT).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO"

read -r PREV_VERSION PREV_COMMIT < <(grep -v '^\s*#' sql/releases | grep -v '^\s*$' | tail -n 1)
NEW_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
log "upgrade test: $PREV_VERSION ($PREV_COMMIT) -> $NEW_VERSION"
if ! git cat-file -e "$PREV_COMMIT^{commit}" 2>/dev/null; then
    echo "sql/releases names commit $PREV_COMMIT for $PREV_VERSION, which this clone does not have (a shallow clone?)" >&2
    exit 1
fi
if [ "$PREV_VERSION" != "$NEW_VERSION" ] && ! ls sql/booking_engine--*--"$NEW_VERSION".sql >/dev/null 2>&1; then
    echo "version $NEW_VERSION has no upgrade script sql/booking_engine--<from>--$NEW_VERSION.sql" >&2
    exit 1
fi

PREV_DIR=$BOOKING_TMP/prev/$PREV_COMMIT
PREV_ROOT=$PREV_DIR/root
PREV_PG_BIN=$PREV_ROOT/usr/lib/postgresql/15/bin
if [ ! -f "$PREV_DIR/installed" ]; then
    log "building booking_engine $PREV_VERSION from $PREV_COMMIT (debug, once per commit)"
    as_root rm -rf "$PREV_DIR"
    mkdir -p "$PREV_DIR/src" "$PREV_ROOT/usr/lib/postgresql" "$PREV_ROOT/usr/share/postgresql"
    git archive "$PREV_COMMIT" | tar -x -C "$PREV_DIR/src"
    # The private PostgreSQL tree: binaries find their share and lib directories relative to
    # themselves, so a copy is a separate installation.
    cp -a "$PG_ROOT/usr/lib/postgresql/15" "$PREV_ROOT/usr/lib/postgresql/"
    cp -a "$PG_ROOT/usr/share/postgresql/15" "$PREV_ROOT/usr/share/postgresql/"
    rm -f "$PREV_ROOT"/usr/share/postgresql/15/extension/booking_engine*
    # Seeding the old build's target directory with this checkout's compiled dependencies
    # (same Cargo.lock, same pg_config) leaves only the crate itself to compile.
    mkdir -p "$PREV_DIR/target/debug"
    for d in deps build .fingerprint; do
        if [ -d "$REPO/target/debug/$d" ]; then
            cp -a --reflink=auto "$REPO/target/debug/$d" "$PREV_DIR/target/debug/"
        fi
    done
    rm -f "$PREV_DIR"/target/debug/deps/libbooking_engine* "$PREV_DIR"/target/debug/deps/booking_engine*
    # Packaged against the main tree's pg_config (the one the dependencies were built for),
    # then copied into the private tree.
    if ! (cd "$PREV_DIR/src" && CARGO_TARGET_DIR="$PREV_DIR/target" cargo pgrx package --debug \
            --pg-config "$PG_CONFIG" --out-dir "$PREV_DIR/pkg" >"$PREV_DIR/build.log" 2>&1); then
        cat "$PREV_DIR/build.log" >&2
        exit 1
    fi
    cp "$PREV_DIR/pkg$("$PG_CONFIG" --pkglibdir)/booking_engine.so" "$PREV_ROOT/usr/lib/postgresql/15/lib/"
    cp "$PREV_DIR/pkg$("$PG_CONFIG" --sharedir)"/extension/booking_engine* "$PREV_ROOT/usr/share/postgresql/15/extension/"
    rm -rf "$PREV_DIR/target"
    touch "$PREV_DIR/installed"
fi

UP_DIR=$BOOKING_TMP/upgrade
UP_DATA=$UP_DIR/data
UP_PORT=$((PORT_BASE + 3))
up_ctl() { as_postgres "$1/pg_ctl" -D "$UP_DATA" -w -l "$UP_DIR/log" "${@:2}" >/dev/null; }
up_psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$UP_DIR" -p "$UP_PORT" -U postgres "$@"; }
if as_root test -s "$UP_DATA/postmaster.pid"; then
    up_ctl "$PG_BIN" -m immediate stop || true
fi
as_root rm -rf "$UP_DIR"
mkdir -p "$UP_DIR"
as_root chown postgres "$UP_DIR"
as_root chmod 1777 "$UP_DIR"
as_postgres "$PG_BIN/initdb" -D "$UP_DATA" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
# The workers stay idle (enabled = off): nothing changes the rows between the snapshot and the
# comparison but the upgrade itself.
as_root tee -a "$UP_DATA/postgresql.conf" >/dev/null <<CONF
port = $UP_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$UP_DIR'
shared_preload_libraries = 'booking_engine'
booking_engine.enabled = off
max_worker_processes = 16
fsync = off
log_min_messages = warning
CONF
trap 'up_ctl "$PG_BIN" -m immediate stop 2>/dev/null || true' EXIT

log "upgrade test: the old version, with data"
up_ctl "$PREV_PG_BIN" start
up_psql -d postgres -c "CREATE DATABASE upgraded" -c "CREATE DATABASE fresh"
up_psql -d upgraded -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION booking_engine VERSION '$PREV_VERSION' CASCADE"
up_psql -d upgraded -f tests/upgrade/load.sql >/dev/null
# Every row of the extension's tables, as text over the columns they have now.
up_psql -d upgraded <<'SQL'
CREATE TABLE public.upgrade_rows (tbl text, cols text, row_json jsonb);
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass::text AS tbl,
               string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS cols
        FROM pg_class c
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine'
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p')
        GROUP BY c.oid
    LOOP
        EXECUTE format('INSERT INTO public.upgrade_rows SELECT %L, %L, to_jsonb(x) FROM (SELECT %s FROM %s) x',
                       r.tbl, r.cols, r.cols, r.tbl);
    END LOOP;
END $$;
SQL
rows=$(up_psql -d upgraded -At -c "SELECT count(*) FROM public.upgrade_rows")
tables=$(up_psql -d upgraded -At -c "SELECT count(DISTINCT tbl) FROM public.upgrade_rows")
log "upgrade test: $rows rows in $tables tables kept aside"
up_ctl "$PREV_PG_BIN" -m fast stop

log "upgrade test: ALTER EXTENSION UPDATE on the new version, and a fresh install"
up_ctl "$PG_BIN" start
up_psql -d upgraded -c "SET client_min_messages = warning" -c "ALTER EXTENSION booking_engine UPDATE"
up_psql -d fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION booking_engine CASCADE"
# Every row kept aside is still there, over the same columns. A column the upgrade dropped on
# purpose (its values moved elsewhere, e.g. the tuner's freeze windows into the freeze calendar)
# is named and left out of the comparison; every other column must keep its value.
dropped=$(up_psql -d upgraded -At <<'SQL'
SELECT string_agg(DISTINCT r.tbl || '.' || c, ', ')
FROM (SELECT DISTINCT tbl, cols FROM public.upgrade_rows) r, unnest(string_to_array(r.cols, ', ')) c
WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r.tbl::regclass AND quote_ident(a.attname) = c
                  AND NOT a.attisdropped);
SQL
)
if [ -n "$dropped" ]; then
    log "upgrade test: columns the upgrade dropped: $dropped"
fi
missing=$(up_psql -d upgraded -At <<'SQL'
CREATE TEMP TABLE now_rows (tbl text, row_json jsonb);
CREATE TEMP TABLE kept (tbl text, cols text);
INSERT INTO kept
SELECT r.tbl, string_agg(c, ', ')
FROM (SELECT DISTINCT tbl, cols FROM public.upgrade_rows) r, unnest(string_to_array(r.cols, ', ')) c
WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r.tbl::regclass AND quote_ident(a.attname) = c
              AND NOT a.attisdropped)
GROUP BY r.tbl;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT tbl, cols FROM kept LOOP
        EXECUTE format('INSERT INTO now_rows SELECT %L, to_jsonb(x) FROM (SELECT %s FROM %s) x', r.tbl, r.cols, r.tbl);
    END LOOP;
END $$;
SELECT tbl || ': ' || row_json FROM (
    SELECT u.tbl, (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(u.row_json) e
                   WHERE quote_ident(e.key) = ANY (string_to_array(k.cols, ', '))) AS row_json
    FROM public.upgrade_rows u JOIN kept k USING (tbl)
    EXCEPT ALL SELECT tbl, row_json FROM now_rows
) lost ORDER BY 1;
SQL
)
failed=0
if [ -n "$missing" ]; then
    echo "upgrade test: rows lost by the upgrade:" >&2
    echo "$missing" >&2
    failed=1
fi
# The snapshot table is the test's own, not the extension's: gone before the comparison.
up_psql -d upgraded -c "DROP TABLE public.upgrade_rows"

for db in upgraded fresh; do
    version=$(up_psql -d $db -At -c "SELECT extversion FROM pg_extension WHERE extname = 'booking_engine'")
    if [ "$version" != "$NEW_VERSION" ]; then
        echo "database $db is at booking_engine $version, not $NEW_VERSION" >&2
        exit 1
    fi
    up_psql -d $db -f tests/upgrade/describe.sql > "$UP_DIR/$db.catalog"
    # pg_dump leaves the extension's members out; what it does dump (the extension, objects
    # outside it, grants that differ from the extension's own) must match too.
    "$PG_BIN/pg_dump" -h "$UP_DIR" -p "$UP_PORT" -U postgres --schema-only --no-owner -d $db \
        | grep -v -E '^(--|SET |SELECT pg_catalog.set_config|\\(un)?restrict |$)' > "$UP_DIR/$db.dump"
done
for kind in catalog dump; do
    if ! diff -u "$UP_DIR/fresh.$kind" "$UP_DIR/upgraded.$kind" > "$UP_DIR/$kind.diff"; then
        echo "upgrade test: the upgraded database's $kind differs from a fresh install of $NEW_VERSION (- fresh, + upgraded):" >&2
        cat "$UP_DIR/$kind.diff" >&2
        failed=1
    fi
done
if [ "$PREV_VERSION" = "$NEW_VERSION" ] && [ $failed = 1 ]; then
    echo "the extension's SQL changed since release $PREV_VERSION ($PREV_COMMIT): bump the version in Cargo.toml and ship sql/booking_engine--$PREV_VERSION--<new>.sql" >&2
fi
lines=$(wc -l < "$UP_DIR/fresh.catalog")

if [ $failed = 1 ]; then
    exit 1
fi
log "upgrade test: $PREV_VERSION -> $NEW_VERSION ok ($lines catalog lines equal, $rows rows kept)"
