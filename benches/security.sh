#!/usr/bin/env bash
# Benchmark of the security module (not a test): booking.check_rate_limit throughput from 16
# clients against plain `SELECT 1` measured in the same run, and booking_admin.scan_pii on 100
# tables of 10,000 rows against reading the same samples with plain SQL. Prints a markdown table.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
start_cluster bench_security $((BENCH_PORT + 11))
trap stop_cluster EXIT
fresh_database bench_security

DURATION=${BENCH_SECONDS:-10}
CLIENTS=16
psql_db() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d bench_security "$@"; }

# tps of one pgbench script, 16 clients, prepared statements.
tps() {
    local script=$1
    "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -f "$script" bench_security 2>/dev/null |
        awk '/^tps = / { print $3; exit }'
}

work=$(mktemp -d)
echo 'SELECT 1;' >"$work/select1.sql"
cat >"$work/ratelimit.sql" <<'SQL'
\set id random(1, 10000)
SELECT booking.check_rate_limit('client-' || :id, 'api', 1000000, 900);
SQL
# The same statement shape without the limiter: what any one-expression call costs.
cat >"$work/expression.sql" <<'SQL'
\set id random(1, 10000)
SELECT length('client-' || :id) > 0;
SQL

log "pgbench: SELECT 1, $CLIENTS clients, ${DURATION}s"
select1=$(tps "$work/select1.sql")
log "pgbench: booking.check_rate_limit, $CLIENTS clients, ${DURATION}s"
ratelimit=$(tps "$work/ratelimit.sql")
log "pgbench: a one-expression statement of the same shape, $CLIENTS clients, ${DURATION}s"
expression=$(tps "$work/expression.sql")

log "creating 100 tables of 10,000 rows"
psql_db <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA scan;
DO $$
BEGIN
    FOR t IN 1..100 LOOP
        EXECUTE format($f$
            CREATE TABLE scan.t%s AS
            SELECT i AS id, 'Person ' || i AS full_name, 'user' || i || '@example.com' AS email,
                   '+41 79 ' || lpad((i %% 1000)::text, 3, '0') || ' ' || lpad((i %% 100)::text, 2, '0') || ' 00' AS phone,
                   'note number ' || i AS notes, (i %% 3)::text AS status, i * 1.5 AS amount
            FROM generate_series(1, 10000) i$f$, t);
    END LOOP;
END $$;
ANALYZE;
SQL

log "timing scan_pii"
scan=$(best_ms 3 "SELECT booking_admin.scan_pii(1000)")
baseline=$(best_ms 3 "DO \$\$ BEGIN FOR t IN 1..100 LOOP EXECUTE format('SELECT count(*) FROM (SELECT id::text, full_name, email, phone, notes, status, amount::text FROM scan.t%s LIMIT 1000) s', t); END LOOP; END \$\$")
pii=$(psql_db -c "SELECT count(*) FROM booking_admin.pii_data_registry WHERE table_name LIKE 'scan.%'")

cat <<TABLE

| measurement | result | baseline | ratio |
|---|---|---|---|
| \`booking.check_rate_limit\` calls/s, $CLIENTS clients | $(printf '%.0f' "$ratelimit") | \`SELECT 1\`: $(printf '%.0f' "$select1") /s | $(awk -v a="$ratelimit" -v b="$select1" 'BEGIN { printf "%.2f", a / b }') |
| same, against a one-expression statement of the same shape | $(printf '%.0f' "$ratelimit") | \`SELECT length('client-' \|\| :id) > 0\`: $(printf '%.0f' "$expression") /s | $(awk -v a="$ratelimit" -v b="$expression" 'BEGIN { printf "%.2f", a / b }') |
| \`booking_admin.scan_pii(1000)\`, 100 tables x 10,000 rows ($pii PII columns found) | $scan ms | reading the same samples: $baseline ms | $(awk -v a="$scan" -v b="$baseline" 'BEGIN { printf "%.1f", a / b }') |
TABLE
rm -rf "$work"
