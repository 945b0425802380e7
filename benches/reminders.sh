#!/usr/bin/env bash
# Reminders: 100,000 reminders falling due in the same minute across 1,000 tenants, each tenant
# with its own SMS endpoint (the JSON provider) on a local receiver: how long from that minute
# until the delivery worker has handed every one to its channel and the receiver has every
# message (the goal: within 60 s), and the rate. Then what two reminder rules (24 h and 2 h
# before) add to create_booking_idempotent, against no rule, in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
setup
install_extension --release
CONCURRENCY=16
RECEIVER_PORT=$((BENCH_PORT + 301))
BOOKING_EXTRA_CONF="booking_engine.delivery_denied_hosts = '10.0.0.0/8'
booking_engine.delivery_concurrency = $CONCURRENCY" start_cluster bench_reminders $((BENCH_PORT + 7))
node "$REPO/benches/delivery/receiver.js" "$RECEIVER_PORT" &
receiver=$!
trap 'kill $receiver 2>/dev/null; stop_cluster' EXIT
URL=http://127.0.0.1:$RECEIVER_PORT
received() { curl -s "$URL/stats" | node -p 'JSON.parse(require("fs").readFileSync(0)).count'; }
TENANTS=${BENCH_REMINDER_TENANTS:-1000}
PER_TENANT=${BENCH_REMINDER_STAFF:-100}
N=$((TENANTS * PER_TENANT))

# 1. The minute everything falls due. On the real clock: the delivery worker must find the
# reminders due by itself, as in production.
fresh_database reminders_bench
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d reminders_bench "$@"; }
log "$TENANTS tenants, each with $PER_TENANT staff, $PER_TENANT appointments at the same time, an SMS endpoint"
psql -At <<SQL
INSERT INTO booking.tenants (id, name, timezone)
SELECT ('c0000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, 'tenant ' || t, 'Europe/Zurich'
FROM generate_series(1, $TENANTS) t;
INSERT INTO booking.services (id, tenant_id, name, duration_minutes)
SELECT ('c1000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, ('c0000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid,
       'Cut', 30
FROM generate_series(1, $TENANTS) t;
INSERT INTO booking.customers (id, tenant_id, name, phone)
SELECT ('c2000000-0000-0000-' || lpad(t::text, 4, '0') || '-' || lpad(c::text, 12, '0'))::uuid,
       ('c0000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, 'customer ' || c,
       '+4179' || lpad((t * 10 + c)::text, 7, '0')
FROM generate_series(1, $TENANTS) t, generate_series(0, 9) c;
INSERT INTO booking.staff (id, tenant_id, name)
SELECT ('c3000000-0000-0000-' || lpad(t::text, 4, '0') || '-' || lpad(s::text, 12, '0'))::uuid,
       ('c0000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, 'staff ' || s
FROM generate_series(1, $TENANTS) t, generate_series(1, $PER_TENANT) s;
-- Every appointment starts at the same time, two days ahead (one per staff member).
INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status)
SELECT ('c0000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid,
       ('c3000000-0000-0000-' || lpad(t::text, 4, '0') || '-' || lpad(s::text, 12, '0'))::uuid,
       ('c1000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid,
       ('c2000000-0000-0000-' || lpad(t::text, 4, '0') || '-' || lpad((s % 10)::text, 12, '0'))::uuid,
       date_trunc('hour', now()) + interval '2 days', 'confirmed'
FROM generate_series(1, $TENANTS) t, generate_series(1, $PER_TENANT) s;
SELECT count(*) = $TENANTS AS endpoints FROM (
    SELECT booking_admin.create_endpoint('$URL/sms', '{booking.reminder}', t.id, 'sms',
               jsonb_build_object('provider', 'json', 'from', 'Salon', 'token', 'bench-token', 'max_in_flight', 16))
    FROM booking.tenants t) e;
SQL
# The rules arm every appointment with the same due minute: the minute after next.
due=$(psql -At <<'SQL'
SELECT extract(epoch FROM date_trunc('minute', clock_timestamp()) + interval '2 minutes')::int8;
SQL
)
armed=$(psql -At <<SQL
SELECT sum((booking.set_reminder_rule(t.id, jsonb_build_object('offset_minutes',
               (extract(epoch FROM a.starts_at - to_timestamp($due)) / 60)::int, 'channels', '["sms"]'::jsonb)) ->> 'armed')::int)
FROM booking.tenants t, LATERAL (SELECT starts_at FROM booking.appointments WHERE tenant_id = t.id LIMIT 1) a;
SQL
)
[ "$armed" = "$N" ] || { echo "armed $armed reminders, not $N" >&2; exit 1; }
[ "$(psql -At -c "SELECT count(DISTINCT due_at) FROM booking.reminders")" = 1 ] || { echo "not one due minute" >&2; exit 1; }
curl -s -X POST "$URL/reset" >/dev/null
log "$N reminders due at $(date -u -d "@$due" +%H:%M:%S) UTC; waiting"
while [ "$(date +%s)" -lt "$due" ]; do sleep 0.5; done
deadline=$((due + 300))
while [ "$(received)" -lt "$N" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "the receiver has $(received) of $N after 300 s" >&2; exit 1; }
    sleep 0.5
done
read -r handed_s delivered_s sent deliveries delivered <<<"$(psql -At -F ' ' <<SQL
SELECT round(extract(epoch FROM max(r.sent_at) - to_timestamp($due))::numeric, 2),
       (SELECT round(extract(epoch FROM max(d.delivered_at) - to_timestamp($due))::numeric, 2) FROM booking_admin.deliveries d),
       count(*) FILTER (WHERE r.status = 'sent'),
       (SELECT count(*) FROM booking_admin.deliveries),
       (SELECT count(*) FROM booking_admin.deliveries WHERE status = 'delivered')
FROM booking.reminders r;
SQL
)"
# Exactly one delivery per reminder, every one delivered (at least once: the receiver may count
# a retried one twice, never fewer).
[ "$sent" = "$N" ] && [ "$deliveries" = "$N" ] && [ "$delivered" = "$N" ] || {
    echo "sent $sent, deliveries $deliveries, delivered $delivered of $N" >&2
    exit 1
}
# Reminders (or messages) per second over the seconds since the due minute began.
rate() { awk -v n="$N" -v s="$1" 'BEGIN {printf "%.0f", n / (s > 0.01 ? s : 0.01)}'; }

# 2. A booking's cost with two rules (24 h and 2 h) against none, alternating, best of two each.
log "create_booking_idempotent with 0 and 2 reminder rules, 16 clients, 10 s each, twice"
fresh_database reminders_booking
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d reminders_booking "$@"; }
psql -f "$REPO/benches/bench_salon.sql"
work=$BOOKING_TMP/bench_reminders/work
rm -rf "$work" && mkdir -p "$work" && as_root chown postgres "$work" && as_root chmod 1777 "$work"
cp "$REPO/benches/bench_create.sql" "$work/create.sql"
bookings() {
    (cd "$work" && as_postgres "$PG_BIN/pgbench" -h "$PGHOST" -p "$PGPORT" -U postgres -n -c 16 -j 2 -T 10 \
        -f create.sql reminders_booking > "$1.out" 2>&1) || { cat "$work/$1.out" >&2; exit 1; }
    awk '/^tps = /{printf "%.0f", $3}' "$work/$1.out"
}
rules() {
    psql -c "DELETE FROM booking.reminder_rules" >/dev/null
    [ "$1" = 0 ] || psql -c "SELECT booking.set_reminder_rule('b0000000-0000-0000-0000-000000000001',
        jsonb_build_object('offset_minutes', m, 'channels', '[\"email\", \"sms\"]'::jsonb)) FROM unnest(ARRAY[1440, 120]) m" >/dev/null
}
best() { [ "$1" -ge "$2" ] && echo "$1" || echo "$2"; }
rules 0; none1=$(bookings none1)
rules 2; two1=$(bookings two1)
rules 0; none2=$(bookings none2)
rules 2
before=$(psql -At -c "SELECT count(*) FROM booking.appointments")
two2=$(bookings two2)
# Every upcoming appointment has its two reminders: the last run's bookings armed theirs, the
# earlier ones were armed when the rules were set.
total=$(psql -At -c "SELECT count(*) FROM booking.appointments")
armed2=$(psql -At -c "SELECT count(*) FROM booking.reminders WHERE status = 'pending'")
[ "$total" -gt "$before" ] && [ "$armed2" -eq $((2 * total)) ] || {
    echo "$total appointments ($((total - before)) in the last run) have $armed2 reminders, not $((2 * total))" >&2
    exit 1
}
none=$(best "$none1" "$none2")
two=$(best "$two1" "$two2")

pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f%%", 100 * a / b}'; }
cat <<TABLE

Reminders benchmark: PostgreSQL 15, $(nproc) cores, release build, delivery_concurrency $CONCURRENCY.

| measurement | result | goal |
|---|---|---|
| $N reminders due in one minute, $TENANTS tenants: all handed to their channel (deliveries written) | ${handed_s} s after the minute, $(rate "$handed_s") reminders/s | |
| the same, all received by the local SMS provider | ${delivered_s} s after the minute, $(rate "$delivered_s") messages/s | within 60 s |
| create_booking_idempotent, 16 clients, no reminder rule (best of 2) | $none tps ($none1, $none2) | |
| the same with two rules, 24 h and 2 h (best of 2) | $two tps ($two1, $two2) | |
| two rules against none | $(pct "$two" "$none") | >= 95% |
TABLE
