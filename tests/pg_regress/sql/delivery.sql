-- Outbound delivery's SQL side: the fan-out of committed events, the endpoint API and
-- its refusals, templates, the placeholders' values, and signature verification. Nothing is
-- sent here (the workers serve another database while the golden files run); the sending is
-- tests/integration/delivery.rs's.
SET booking_engine.now = '2026-03-01 00:00+01';
SET timezone = 'Europe/Zurich';
SELECT regress.salon();
UPDATE booking.customers SET email = 'carla@example.test', timezone = 'America/New_York'
WHERE id = '40000000-0000-0000-0000-000000000001';

-- Endpoints: the tenant's for every booking event, a global one for everything, one for
-- waitlist offers only, and one disabled. The secret is shown once, at creation.
CREATE TEMP TABLE ep AS
SELECT 'tenant booking.*' AS name, booking_admin.create_endpoint('https://hooks.example.com/salon', '{booking.*}',
       '10000000-0000-0000-0000-000000000001') AS r
UNION ALL SELECT 'global *', booking_admin.create_endpoint('https://ops.example.com/all', '{*}')
UNION ALL SELECT 'waitlist only', booking_admin.create_endpoint('https://hooks.example.com/wl', '{waitlist.notified}',
       '10000000-0000-0000-0000-000000000001', 'slack')
UNION ALL SELECT 'disabled', booking_admin.create_endpoint(NULL, '{booking.created}', '10000000-0000-0000-0000-000000000001',
       'email', '{"description": "front desk"}');
SELECT name, r ->> 'secret' ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_shown, r -> 'secrets' AS live_secrets,
       r ->> 'channel' AS channel, r -> 'event_types' AS types, r -> 'enabled' AS enabled
FROM ep ORDER BY name;
SELECT booking_admin.disable_endpoint((SELECT (r ->> 'id')::uuid FROM ep WHERE name = 'disabled'), 'closed for renovation') ->> 'disabled_reason';

-- A booking writes its event and nothing else; the delivery worker's fan-out (called here by
-- hand: no worker serves this database) expands each committed event once, into one delivery
-- per matching enabled endpoint. A rolled-back booking left no event, so it sends nothing.
BEGIN;
SELECT regress.book('rolled back', '40000000-0000-0000-0000-000000000002', '2026-03-02T11:00:00+01:00') ->> 'success';
ROLLBACK;
SELECT regress.book('kept', '40000000-0000-0000-0000-000000000001', '2026-03-02T10:00:00+01:00') ->> 'success';
SELECT count(*) AS deliveries_before_fan_out FROM booking_admin.deliveries;
SELECT booking_admin.fan_out_events() AS events_expanded;
SELECT booking_admin.fan_out_events() AS expanded_again;
SELECT count(*) AS events_left_to_expand FROM booking.events WHERE fanned_out_at IS NULL;
SELECT ep.name, d.event_type, d.status, d.attempts, d.message_id = 'msg_' || replace(d.event_id::text, '-', '') AS id_from_event,
       d.payload ->> 'starts_at' AS starts_at
FROM booking_admin.deliveries d JOIN ep ON (ep.r ->> 'id')::uuid = d.endpoint_id ORDER BY ep.name, d.event_type;

-- Email and Slack messages are rendered from these values: the customer's zone (New York).
SELECT booking_admin.delivery_context(e.tenant_id, e.event_type, e.payload) - 'appointment_id' AS context
FROM booking.events e WHERE e.event_type = 'booking.created';

-- The endpoint API refuses bad input with 22023 and unknown ids with PT404.
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://hooks.example.com/x', '{}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://hooks.example.com/x', '{booking.*, nope.*}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('http://10.0.0.8:8080/x', '{*}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('mailto:a@b.test', '{*}', NULL, 'email')$$) AS fixed_recipient;
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('a@b.test', '{*}', NULL, 'email')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('mailto:not an address', '{*}', NULL, 'email')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint(NULL, '{*}', NULL, 'slack')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://x.example.com', '{*}', '99999999-0000-0000-0000-000000000000')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://x.example.com', '{*}', NULL, 'webhook', '{"max_in_flight": 0}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://x.example.com', '{*}', NULL, 'webhook', '{"timeout_ms": "soon"}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.update_endpoint('99999999-0000-0000-0000-000000000000', '{}')$$);
SELECT regress.sqlstate_of(format($$SELECT booking_admin.update_endpoint(%L, '{"enabled": false}')$$, (SELECT r ->> 'id' FROM ep WHERE name = 'global *')));
SELECT regress.sqlstate_of(format($$SELECT booking_admin.update_endpoint(%L, '{"secret": "whsec_x"}')$$, (SELECT r ->> 'id' FROM ep WHERE name = 'global *')));
SELECT regress.sqlstate_of(format($$SELECT booking_admin.rotate_endpoint_secret(%L, '90 days')$$, (SELECT r ->> 'id' FROM ep WHERE name = 'global *')));
SELECT regress.sqlstate_of(format($$SELECT booking_admin.rotate_endpoint_secret(%L, '1 hour', 'whsec_c2hvcnQ=')$$, (SELECT r ->> 'id' FROM ep WHERE name = 'global *')));
SELECT regress.sqlstate_of(format($$SELECT booking_admin.replay_failed_deliveries(%L, 'infinity', '-infinity')$$, (SELECT r ->> 'id' FROM ep WHERE name = 'global *')));
-- A pending delivery is not replayed: it is still being sent.
SELECT regress.sqlstate_of(format($$SELECT booking_admin.replay_delivery(%L)$$,
       (SELECT d.id FROM booking_admin.deliveries d JOIN ep ON (ep.r ->> 'id')::uuid = d.endpoint_id WHERE ep.name = 'global *' LIMIT 1)));
SELECT count(*) AS endpoints FROM booking_admin.delivery_endpoints;

-- Changes, and a rotation: two live secrets until the grace period ends.
SELECT r -> 'event_types' AS types, r -> 'max_in_flight' AS max_in_flight, r -> 'secrets' AS live_secrets
FROM (SELECT booking_admin.rotate_endpoint_secret((r ->> 'id')::uuid, '1 hour') IS NOT NULL AS rotated,
             (r ->> 'id')::uuid AS id FROM ep WHERE name = 'global *') x,
     LATERAL booking_admin.update_endpoint(x.id, '{"event_types": ["booking.created", "alert.*"], "max_in_flight": 8}') r;

-- A test event goes to one endpoint whatever it subscribes to.
SELECT booking_admin.send_test_event((SELECT (r ->> 'id')::uuid FROM ep WHERE name = 'waitlist only')) AS test_id \gset
SELECT d.event_type, d.payload, d.status FROM booking_admin.deliveries d WHERE d.id = :'test_id';

-- Templates: the defaults, a tenant's own, and an unknown placeholder refused.
SELECT tenant_id IS NULL AS is_default, event_type, subject FROM booking_admin.message_templates ORDER BY event_type;
SELECT booking_admin.set_message_template('10000000-0000-0000-0000-000000000001', 'booking.created',
       'See you {{date_local}}, {{customer_name}}', 'At {{time_local}} ({{time_zone}}).');
SELECT regress.sqlstate_of($$SELECT booking_admin.set_message_template(NULL, 'booking.created', 'Hi {{password}}', 'x')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.set_message_template(NULL, 'booking.created', 'Hi {{customer_name', 'x')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.set_message_template(NULL, 'nope.nope', 'Hi', 'x')$$);

-- Statistics before anything was sent.
SELECT channel, pending, dead, attempts, success_rate FROM booking_admin.delivery_stats() ORDER BY channel, pending;

-- Receivers: the Standard Webhooks specification's own example verifies (within the tolerance
-- of its 2021 timestamp), a changed body does not, a malformed secret is 22023.
SELECT booking.verify_webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
       '1614265330', '{"test": 2432232314}', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 2147483647) AS spec_example,
       booking.verify_webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
       '1614265330', '{"test": 2432232314}', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=') AS too_old,
       booking.verify_webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
       '1614265330', '{"test": 1}', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 2147483647) AS tampered;
SELECT regress.sqlstate_of($$SELECT booking.verify_webhook_signature('hunter2', 'm', '1', '{}', 'v1,x')$$);

-- Who may: applications and operators without booking_operator may not manage endpoints;
-- nobody but the extension reads secrets.
CREATE ROLE regress_app LOGIN;
SET ROLE regress_app;
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://x.example.com', '{*}')$$);
SELECT regress.sqlstate_of($$SELECT * FROM booking_admin.deliveries$$);
RESET ROLE;
GRANT booking_operator TO regress_app;
SET ROLE regress_app;
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://x.example.com', '{*}')$$) AS operator_creates;
SELECT regress.sqlstate_of($$SELECT * FROM booking_admin.delivery_secrets$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.delivery_context(NULL, 'x.y', '{}')$$);
RESET ROLE;
DROP OWNED BY regress_app;
DROP ROLE regress_app;
