-- Reminders: rules over RPC and their refusals, one row per (appointment, rule, start) armed by
-- the booking, following reschedules and cancels, late bookings, the hand-off to channels
-- (called by hand: no delivery worker serves this database), quiet hours across the 2026
-- spring-forward night, signed links and their refusals, SMS callbacks and STOP, phone numbers,
-- and the staff's agenda. The sending itself is tests/integration/reminders.rs's.
SET booking_engine.now = '2026-03-01 00:00+01';
SET timezone = 'Europe/Zurich';
-- The links' rate limit counts in shared memory across runs of this file; it is shown on its
-- own below.
SET booking_engine.link_rate_limit = 0;
SELECT regress.salon();
UPDATE booking.customers SET email = lower(name) || '@example.test';
UPDATE booking.staff SET email = 'anna@salon.test';
INSERT INTO booking.tenants (id, name) VALUES ('10000000-0000-0000-0000-000000000002', 'Other');
INSERT INTO booking.services (id, tenant_id, name, duration_minutes) VALUES
    ('30000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000002', 'Elsewhere', 30);
-- Anna owns the salon; Rita is its receptionist.
INSERT INTO booking.tenant_members (tenant_id, user_id, role) VALUES
    ('10000000-0000-0000-0000-000000000001', 'a1000000-0000-0000-0000-000000000001', 'owner'),
    ('10000000-0000-0000-0000-000000000001', 'a2000000-0000-0000-0000-000000000002', 'receptionist');
CREATE FUNCTION regress.as_user(sub text) RETURNS void LANGUAGE sql AS $$
    SELECT set_config('request.jwt.claims', json_build_object('sub', sub, 'role', 'authenticated')::text, false)
$$;
-- A rule as the golden file shows it: without its ids and times.
CREATE FUNCTION regress.rule(r jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT r - 'id' - 'tenant_id' - 'created_at' - 'updated_at'
$$;
-- The salon's reminders, in order, with the rule's name instead of its id.
CREATE VIEW regress.reminders AS
SELECT c.name AS customer, u.name AS rule, to_char(r.starts_at, 'MM-DD HH24:MI') AS starts,
       to_char(r.send_at, 'MM-DD HH24:MI TZ') AS send_at, r.status, r.reason, r.channels
FROM booking.reminders r
JOIN booking.reminder_rules u ON u.tenant_id = r.tenant_id AND u.id = r.rule_id
JOIN booking.appointments a ON a.tenant_id = r.tenant_id AND a.id = r.appointment_id
JOIN booking.customers c ON c.tenant_id = a.tenant_id AND c.id = a.customer_id
ORDER BY r.starts_at, r.due_at, c.name;

-- Rules: the owner sets them; bad input is 22023, another tenant's service PT404, a receptionist
-- 42501, a tenant the caller is nobody in PT404.
SELECT regress.as_user('a1000000-0000-0000-0000-000000000001');
SELECT regress.rule(booking.set_reminder_rule('10000000-0000-0000-0000-000000000001',
    '{"name": "day before", "offset_minutes": 1440, "channels": ["email", "sms", "webhook"], "quiet_start": "21:00", "quiet_end": "08:00"}'));
SELECT regress.rule(booking.set_reminder_rule('10000000-0000-0000-0000-000000000001',
    '{"name": "two hours", "offset_minutes": 120, "channels": ["sms", "email"], "late_booking": "send"}'));
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 0}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60, "channels": ["fax"]}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60, "quiet_start": "22:00"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60, "late_booking": "maybe"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60, "template": {"subject": "Soon"}}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001',
    '{"offset_minutes": 60, "template": {"subject": "Soon", "body_text": "at {{time_local"}}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60, "colour": "red"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001',
    '{"offset_minutes": 60, "service_id": "30000000-0000-0000-0000-000000000002"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000002', '{"offset_minutes": 60}')$$);
SELECT regress.sqlstate_of($$SELECT booking.delete_reminder_rule('10000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000000')$$);
SELECT regress.as_user('a2000000-0000-0000-0000-000000000002');
SELECT regress.sqlstate_of($$SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"offset_minutes": 60}')$$);
SELECT regress.sqlstate_of($$SELECT booking.get_reminder_settings('10000000-0000-0000-0000-000000000001')$$);
RESET request.jwt.claims;
SELECT jsonb_array_length(booking.get_reminder_settings('10000000-0000-0000-0000-000000000001') -> 'rules') AS rules;

-- A booking arms one reminder per rule for its start, in its own transaction (pending ones too:
-- Carla's waits for her to confirm it).
SELECT booking.create_booking_idempotent('carla', jsonb_build_object('customer_id', '40000000-0000-0000-0000-000000000001',
    'staff_id', '20000000-0000-0000-0000-000000000001', 'service_id', '30000000-0000-0000-0000-000000000001',
    'starts_at', '2026-03-03T10:00:00+01:00', 'status', 'pending')) ->> 'success';
SELECT * FROM regress.reminders;
-- A rolled-back booking armed nothing.
BEGIN;
SELECT regress.book('rolled back', '40000000-0000-0000-0000-000000000002', '2026-03-04T10:00:00+01:00') ->> 'success';
ROLLBACK;
SELECT count(*) AS reminders FROM booking.reminders;
-- Booked late: six hours ahead the day-before rule is skipped (late_booking skip); a booking
-- made an hour ahead (directly, past the notice policy) gets its two-hour reminder at once.
SET booking_engine.now = '2026-03-02 07:00+01';
SELECT regress.book('dario', '40000000-0000-0000-0000-000000000002', '2026-03-02T13:00:00+01:00') ->> 'success';
INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status) VALUES
    ('10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
     '40000000-0000-0000-0000-000000000003', '2026-03-02 08:00+01', 'confirmed');
SELECT * FROM regress.reminders;
SET booking_engine.now = '2026-03-01 00:00+01';

-- Channels: the tenant's email endpoint (to each customer) and SMS endpoint (Twilio-style),
-- and a page for the links.
SELECT booking_admin.create_endpoint(NULL, '{booking.created}', '10000000-0000-0000-0000-000000000001', 'email') ->> 'channel';
SELECT (booking_admin.create_endpoint('https://api.twilio.example/2010-04-01/Accounts/AC1/Messages.json', '{booking.created}',
    '10000000-0000-0000-0000-000000000001', 'sms',
    '{"provider": "twilio", "from": "+41 44 668 18 00", "username": "AC1", "password": "secret-token"}')
    - 'id' - 'secret' - 'created_at' - 'updated_at' - 'enabled_at' - 'tenant_id') AS sms_endpoint;
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://sms.example/x', '{booking.created}',
    '10000000-0000-0000-0000-000000000001', 'sms', '{"provider": "carrier pigeon", "from": "Salon"}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://sms.example/x', '{booking.created}',
    '10000000-0000-0000-0000-000000000001', 'sms', '{"provider": "json"}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://sms.example/x', '{booking.created}',
    '10000000-0000-0000-0000-000000000001', 'sms', '{"provider": "json", "from": "0446681800"}')$$);
SELECT regress.sqlstate_of($$SELECT booking_admin.create_endpoint('https://hooks.example/x', '{booking.created}',
    '10000000-0000-0000-0000-000000000001', 'webhook', '{"from": "Salon"}')$$);
SELECT booking.set_messaging_settings('10000000-0000-0000-0000-000000000001', '{"link_base_url": "https://salon.example/appointment"}')
    ->> 'link_base_url';
SELECT regress.sqlstate_of($$SELECT booking.set_messaging_settings('10000000-0000-0000-0000-000000000001', '{"link_base_url": "javascript:alert(1)"}')$$);
SELECT regress.sqlstate_of($$SELECT booking.set_messaging_settings('10000000-0000-0000-0000-000000000001', '{"agenda_cron": "every morning"}')$$);

-- Phone numbers are E.164 wherever they are written: kept without spaces, else 22023.
UPDATE booking.customers SET phone = '+41 79 123 45 67' WHERE name = 'Carla';
SELECT name, phone FROM booking.customers WHERE phone IS NOT NULL;
SELECT regress.sqlstate_of($$UPDATE booking.customers SET phone = '079 123 45 67' WHERE name = 'Dario'$$);
SELECT regress.sqlstate_of($$SELECT booking.create_customer('10000000-0000-0000-0000-000000000001', '{"name": "Walk In", "phone": "12"}')$$);

-- The hand-off, at each due time: nothing before it; then email and SMS deliveries through the
-- tenant's endpoints and a booking.reminder event, with signed links; what each channel did is
-- kept. Eva's (booked an hour ahead) went at once.
SET booking_engine.now = '2026-03-02 07:00+01';
SELECT booking_admin.fan_out_reminders() AS handed_off;
SELECT * FROM regress.reminders WHERE status <> 'skipped';
SET booking_engine.now = '2026-03-02 09:59+01';
SELECT booking_admin.fan_out_reminders() AS handed_off_before_due;
SET booking_engine.now = '2026-03-02 10:00+01';
SELECT booking_admin.fan_out_reminders() AS handed_off_at_due;
SELECT booking_admin.fan_out_reminders() AS handed_off_again;
SELECT * FROM regress.reminders WHERE customer = 'Carla';
SELECT e.channel, d.event_type, count(*) AS deliveries,
       bool_and(d.payload ->> 'confirm_url' ~ '^https://salon\.example/appointment\?action=confirm&token=bklnk_') AS confirm_links,
       bool_and(d.payload ->> 'cancel_url' ~ '\?action=cancel&token=bklnk_') AS cancel_links
FROM booking_admin.deliveries d JOIN booking_admin.delivery_endpoints e ON e.id = d.endpoint_id
GROUP BY 1, 2 ORDER BY 1, 2;
SELECT event_type, payload ->> 'offset_minutes' AS offset_minutes FROM booking.events WHERE event_type = 'booking.reminder';
-- The message's placeholders, as the worker renders them.
SELECT c ->> 'reminder_offset' AS offset, c ->> 'starts_at_local' AS starts, c ->> 'recipient_phone' AS phone,
       c ->> 'recipient_email' AS email
FROM (SELECT booking_admin.delivery_context(d.tenant_id, d.event_type, d.payload) AS c FROM booking_admin.deliveries d
      JOIN booking_admin.delivery_endpoints e ON e.id = d.endpoint_id
      WHERE e.channel = 'sms' AND d.payload ->> 'offset_minutes' = '1440') x;

-- Signed links: anyone holding one confirms (or cancels) that one appointment, once.
CREATE TABLE regress.links AS
SELECT substring(d.payload ->> 'confirm_url' FROM 'token=(.*)$') AS confirm,
       substring(d.payload ->> 'cancel_url' FROM 'token=(.*)$') AS cancel
FROM booking_admin.deliveries d JOIN booking_admin.delivery_endpoints e ON e.id = d.endpoint_id
WHERE e.channel = 'email' AND d.payload ->> 'offset_minutes' = '1440';
GRANT SELECT ON regress.links TO PUBLIC;
-- An anonymous caller: a role with no rights of its own (PUBLIC's grants), as PostgREST's anon.
DO $$ BEGIN
    IF to_regrole('anon_link') IS NULL THEN CREATE ROLE anon_link NOLOGIN; END IF;
END $$;
SET ROLE anon_link;
SELECT set_config('request.jwt.claims', '{"role": "anon"}', false);
SELECT booking.describe_appointment_link(confirm) - 'expires_at' AS page FROM regress.links;
SELECT regress.shape(booking.confirm_appointment_by_link(confirm)) AS confirmed FROM regress.links;
SELECT regress.sqlstate_of(format('SELECT booking.confirm_appointment_by_link(%L)', confirm)) AS replay FROM regress.links;
SELECT regress.sqlstate_of(format('SELECT booking.confirm_appointment_by_link(%L)', cancel)) AS cancel_token_to_confirm FROM regress.links;
SELECT regress.sqlstate_of(format('SELECT booking.cancel_appointment_by_link(%L)',
           left(cancel, 60) || CASE substr(cancel, 61, 1) WHEN 'A' THEN 'B' ELSE 'A' END || substr(cancel, 62))) AS altered FROM regress.links;
SELECT regress.sqlstate_of('SELECT booking.cancel_appointment_by_link(''bklnk_not-a-token'')') AS malformed;
SELECT regress.sqlstate_of('SELECT booking.confirm_appointment_by_link(''bkinv_AAAA'')') AS an_invitation;
RESET ROLE;
-- The same token signed with another key (another installation's) is refused too.
SELECT regress.sqlstate_of(format('SELECT booking.cancel_appointment_by_link(%L)', booking_internal.sign_link(
           booking_internal.new_link_key(), p.key_id, 'cancel', p.tenant_id, p.appointment_id, p.starts_at, p.expires_at))) AS foreign_key
FROM regress.links links, booking_internal.parse_link(links.cancel) p;
-- Past its expiry (the appointment's start) a link is PT410.
SET booking_engine.now = '2026-03-03 10:00+01';
SELECT regress.sqlstate_of(format('SELECT booking.cancel_appointment_by_link(%L)', cancel)) AS expired FROM regress.links;
SET booking_engine.now = '2026-03-02 10:00+01';
SET ROLE anon_link;
SELECT regress.shape(booking.cancel_appointment_by_link(cancel, 'cannot make it')) AS cancelled FROM regress.links;
SELECT regress.sqlstate_of(format('SELECT booking.cancel_appointment_by_link(%L)', cancel)) AS cancel_replay FROM regress.links;
RESET ROLE;
RESET request.jwt.claims;
SELECT action, count(*) AS uses FROM booking_admin.link_uses GROUP BY 1 ORDER BY 1;
-- Every refusal is audited (through the writer, which survives the refusal's rollback).
SELECT regress.await_audit($$action = 'booking.link_cancel' AND NOT success AND failure_reason LIKE 'PT409%'
    AND (SELECT count(*) FROM booking_admin.security_audit_log a WHERE a.action LIKE 'booking.link_%' AND NOT a.success) >= 8$$)
    AS refusals_audited;
SELECT action, success, left(failure_reason, 5) AS code, count(*) FROM booking_admin.security_audit_log
WHERE action LIKE 'booking.link_%' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- The cancel dropped the appointment's pending two-hour reminder.
SELECT * FROM regress.reminders WHERE customer = 'Carla';

-- A reschedule re-arms: the old start's pending rows are dropped, the new start gets its own.
SET booking_engine.now = '2026-03-01 00:00+01';
SELECT regress.book('dario 2', '40000000-0000-0000-0000-000000000002', '2026-03-04T10:00:00+01:00') ->> 'success';
SELECT booking.reschedule_appointment(a.id, '2026-03-05 14:00+01') ->> 'success' FROM booking.appointments a
WHERE a.starts_at = '2026-03-04 10:00+01';
SELECT * FROM regress.reminders WHERE customer = 'Dario' AND starts >= '03-04';
-- Moved back: the dropped rows of that start are armed again (exactly one per start).
SELECT booking.reschedule_appointment(a.id, '2026-03-04 10:00+01') ->> 'success' FROM booking.appointments a
WHERE a.starts_at = '2026-03-05 14:00+01';
SELECT * FROM regress.reminders WHERE customer = 'Dario' AND starts >= '03-04';
-- A new rule reminds the upcoming bookings; a removed one takes its reminders with it.
SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"name": "week before", "offset_minutes": 10080}') ->> 'armed'
    AS armed_none_ahead;
SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"name": "three hours", "offset_minutes": 180, "channels": ["webhook"]}')
    ->> 'armed' AS armed;
SELECT booking.delete_reminder_rule('10000000-0000-0000-0000-000000000001', u.id) FROM booking.reminder_rules u WHERE u.name = 'three hours';
SELECT count(*) AS three_hour_reminders FROM booking.reminders r
WHERE NOT EXISTS (SELECT 1 FROM booking.reminder_rules u WHERE u.id = r.rule_id);

-- Quiet hours across the night the clocks spring forward (29 March 2026, 02:00 -> 03:00), with
-- the other rules off for this part: an evening rule's reminder falling due at 21:30 waits for
-- 08:00 on the clock, which is 06:00 UTC that morning; one whose appointment starts before quiet
-- hours end is skipped.
SET booking_engine.now = '2026-03-20 00:00+01';
SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"enabled": false}', u.id) ->> 'armed' AS armed_when_off
FROM booking.reminder_rules u WHERE u.name IN ('day before', 'two hours', 'week before');
SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001',
    '{"name": "evening", "offset_minutes": 690, "channels": ["email"], "quiet_start": "21:00", "quiet_end": "08:00"}') ->> 'armed'
    AS armed_none_upcoming;
INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status) VALUES
    ('10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
     '40000000-0000-0000-0000-000000000003', '2026-03-29 10:00+02', 'confirmed'),
    ('10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
     '40000000-0000-0000-0000-000000000002', '2026-03-29 07:00+02', 'confirmed');
SELECT customer, starts, send_at, status FROM regress.reminders WHERE rule = 'evening';
SET booking_engine.now = '2026-03-28 18:29+01';
SELECT booking_admin.fan_out_reminders() AS handed_at_1829;
SET booking_engine.now = '2026-03-28 22:30+01';
SELECT booking_admin.fan_out_reminders() AS handed_at_2230;
SELECT customer, starts, send_at, status, reason FROM regress.reminders WHERE rule = 'evening';
SELECT send_at AT TIME ZONE 'UTC' AS utc FROM booking.reminders r JOIN booking.reminder_rules u ON u.id = r.rule_id
WHERE u.name = 'evening' AND r.status = 'pending';
SET booking_engine.now = '2026-03-29 07:59+02';
SELECT booking_admin.fan_out_reminders() AS handed_at_0759;
SET booking_engine.now = '2026-03-29 08:00+02';
SELECT booking_admin.fan_out_reminders() AS handed_at_0800;
SELECT customer, starts, status, reason, channels FROM regress.reminders WHERE rule = 'evening';
-- A reminder handed off after its appointment started (a worker that was down) is skipped.
INSERT INTO booking.appointments (tenant_id, staff_id, service_id, customer_id, starts_at, status) VALUES
    ('10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
     '40000000-0000-0000-0000-000000000003', '2026-03-30 10:00+02', 'confirmed');
SET booking_engine.now = '2026-03-30 10:05+02';
SELECT booking_admin.fan_out_reminders() AS handed_late;
SELECT customer, starts, status, reason FROM regress.reminders WHERE rule = 'evening' AND starts = '03-30 10:00';
SELECT booking.delete_reminder_rule('10000000-0000-0000-0000-000000000001', u.id) FROM booking.reminder_rules u WHERE u.name = 'evening';
SELECT booking.set_reminder_rule('10000000-0000-0000-0000-000000000001', '{"enabled": true}', u.id) ->> 'enabled'
FROM booking.reminder_rules u WHERE u.name IN ('day before', 'two hours');

-- STOP: a number that opted out gets no SMS from the tenant (the hand-off says so).
INSERT INTO booking_admin.sms_opt_outs (tenant_id, phone, keyword) VALUES ('10000000-0000-0000-0000-000000000001', '+41791234567', 'stop');
SELECT regress.sqlstate_of($$INSERT INTO booking_admin.sms_opt_outs (tenant_id, phone, keyword) VALUES (NULL, 'not a number', 'stop')$$);
SET booking_engine.now = '2026-03-01 00:00+01';
SELECT regress.book('carla 2', '40000000-0000-0000-0000-000000000001', '2026-03-06T10:00:00+01:00') ->> 'success';
SET booking_engine.now = '2026-03-06 08:00+01';
SELECT booking_admin.fan_out_reminders() AS handed;
SELECT channels FROM regress.reminders WHERE customer = 'Carla' AND starts = '03-06 10:00' AND rule = 'two hours';

-- SMS callbacks: signed with the endpoint's secret like our webhooks (here with pgcrypto's
-- HMAC); a receipt updates its message, STOP and START change the opt-out, a replay gets the
-- first answer, a bad signature is PT401, an endpoint that is not an SMS endpoint PT404.
CREATE EXTENSION pgcrypto;
CREATE FUNCTION regress.sms_callback(body jsonb, msg text, secret_ok boolean DEFAULT true) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    e uuid := (SELECT id FROM booking_admin.delivery_endpoints WHERE channel = 'sms');
    s text := (SELECT secret FROM booking_admin.delivery_secrets WHERE endpoint_id = e);
    ts text := extract(epoch FROM clock_timestamp())::bigint::text;
    sig text := 'v1,' || encode(hmac(convert_to(msg || '.' || ts || '.' || body::text, 'UTF8'),
                                     CASE WHEN secret_ok THEN decode(substr(s, 7), 'base64') ELSE 'wrong' END, 'sha256'), 'base64');
BEGIN
    RETURN booking.sms_inbound(e, msg, ts, body::text, sig)::text;
END $$;
UPDATE booking_admin.deliveries d SET provider_message_id = 'SM0001'
WHERE d.id = (SELECT d2.id FROM booking_admin.deliveries d2 JOIN booking_admin.delivery_endpoints e ON e.id = d2.endpoint_id
              WHERE e.channel = 'sms' ORDER BY d2.created_at LIMIT 1);
SELECT regress.sms_callback('{"MessageSid": "SM0001", "MessageStatus": "delivered"}', 'in_1');
SELECT receipt_status FROM booking_admin.deliveries WHERE provider_message_id = 'SM0001';
SELECT regress.sms_callback('{"From": "+41 79 123 45 67", "Body": "START"}', 'in_2');
SELECT count(*) AS opted_out FROM booking_admin.sms_opt_outs;
SELECT regress.sms_callback('{"From": "+41791234567", "Body": "Stop"}', 'in_3');
SELECT regress.sms_callback('{"From": "+41791234567", "Body": "Stop"}', 'in_3');
SELECT tenant_id, phone, keyword FROM booking_admin.sms_opt_outs;
SELECT regress.sqlstate_of($$SELECT regress.sms_callback('{"From": "+41791234567", "Body": "START"}', 'in_4', false)$$);
SELECT regress.sqlstate_of($$SELECT regress.sms_callback('{"hello": "world"}', 'in_5')$$);
SELECT regress.sqlstate_of($$SELECT booking.sms_inbound((SELECT id FROM booking_admin.delivery_endpoints WHERE channel = 'email'),
    'x', '1', '{}', 'v1,AAAA')$$);
SELECT count(*) AS opted_out_still FROM booking_admin.sms_opt_outs;

-- The staff's agenda: at 07:00 on the tenant's clock each active staff member with an e-mail
-- address gets the day's appointments, through the tenant's email endpoint.
SET booking_engine.now = '2026-03-01 00:00+01';
SELECT booking.set_messaging_settings('10000000-0000-0000-0000-000000000001', '{"agenda_cron": "0 7 * * 1-5"}') ->> 'agenda_next_at'
    AS next_agenda;
SET booking_engine.now = '2026-03-02 06:59+01';
SELECT booking_admin.op_staff_agenda('{}') AS agendas_at_0659;
SET booking_engine.now = '2026-03-02 07:00+01';
SELECT booking_admin.op_staff_agenda('{}') AS agendas_at_0700;
SELECT booking_admin.op_staff_agenda('{}') AS agendas_again;
SELECT agenda_next_at, agenda_last_at FROM booking.messaging_settings;
SELECT c ->> 'recipient_email' AS recipient, c ->> 'date_local' AS day, c ->> 'appointment_count' AS appointments, c ->> 'agenda' AS agenda
FROM (SELECT booking_admin.delivery_context(d.tenant_id, d.event_type, d.payload) AS c FROM booking_admin.deliveries d
      WHERE d.event_type = 'staff.agenda') x;

-- An appointment's reminders, for the tenant's people.
SELECT regress.as_user('a2000000-0000-0000-0000-000000000002');
SELECT jsonb_array_length(booking.get_appointment_reminders('10000000-0000-0000-0000-000000000001', a.id)) AS reminders
FROM booking.appointments a WHERE a.starts_at = '2026-03-04 10:00+01';
SELECT regress.sqlstate_of(format('SELECT booking.get_appointment_reminders(%L, %L)', '10000000-0000-0000-0000-000000000002', a.id))
FROM booking.appointments a WHERE a.starts_at = '2026-03-04 10:00+01';
RESET request.jwt.claims;

-- Links are rate-limited per client address (every try counts): past the limit, PT429.
SET booking_engine.link_rate_limit = 1;
SELECT regress.sqlstate_of('SELECT booking.describe_appointment_link(''bklnk_x'')') IS NOT NULL AS counted;
SELECT regress.sqlstate_of('SELECT booking.describe_appointment_link(''bklnk_x'')') AS over_the_limit;
SET booking_engine.link_rate_limit = 0;

-- Key rotation: old links keep working for the grace period; 0 retires them at once.
SELECT booking_admin.rotate_link_key('0') > 1 AS rotated;
SELECT count(*) FILTER (WHERE retired_at <= now()) AS retired, count(*) FILTER (WHERE retired_at IS NULL) AS live
FROM booking_admin.link_keys;
SELECT regress.sqlstate_of($$SELECT booking_admin.rotate_link_key('1 year')$$);
-- Nothing here is for PUBLIC but the documented entry points.
SELECT p.oid::regprocedure AS function, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p
WHERE p.proname IN ('fan_out_reminders', 'rotate_link_key', 'current_link_key', 'op_staff_agenda', 'sign_link', 'new_link_key',
                    'link_is_authentic', 'confirm_appointment_by_link', 'sms_inbound', 'set_reminder_rule')
ORDER BY p.oid::regprocedure::text;
SELECT has_table_privilege('public', 'booking_admin.link_keys', 'SELECT') AS public_reads_keys,
       has_table_privilege('booking_operator', 'booking_admin.link_keys', 'SELECT') AS operators_read_keys;
