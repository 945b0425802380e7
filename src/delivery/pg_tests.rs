//! In-database tests of delivery's SQL side: the checks the endpoint API runs before it saves
//! anything (URL and host rules, secrets, templates), signature verification, and the fan-out
//! of an event to the endpoints subscribed to it, in the event's own transaction.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pg::subxact::Subxact;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one(sql).unwrap()
    }

    /// The SQLSTATE and message `sql` fails with, in a rolled-back subtransaction.
    fn refusal(sql: &str) -> (String, String) {
        let caught = Subxact::rolled_back().run(|| Spi::run(sql)).expect_err(sql);
        (caught.sqlstate(), caught.message)
    }

    #[pg_test]
    fn endpoint_urls_are_checked_by_channel_and_host() {
        assert_eq!(
            one::<String>("SELECT booking_internal.check_endpoint_url('webhook', '  https://hooks.example.com/x ')")
                .as_deref(),
            Some("https://hooks.example.com/x")
        );
        assert_eq!(one::<String>("SELECT booking_internal.check_endpoint_url('email', NULL)"), None);
        let denied = refusal("SELECT booking_internal.check_endpoint_url('webhook', 'http://127.0.0.1/hook')");
        assert_eq!(denied.0, "22023", "loopback is on the default deny list: {denied:?}");
        let channel = refusal("SELECT booking_internal.check_endpoint_url('pigeon', 'https://x.example.com')");
        assert_eq!(channel, ("22023".into(), "unknown channel \"pigeon\": webhook, slack, email or sms".into()));
        assert_eq!(refusal("SELECT booking_internal.check_endpoint_url(NULL, 'https://x.example.com')").0, "22023");
        assert_eq!(refusal("SELECT booking_internal.check_endpoint_url('email', 'someone@example.com')").0, "22023");
        assert_eq!(refusal("SELECT booking_internal.check_endpoint_url('email', 'mailto:not an address')").0, "22023");
    }

    #[pg_test]
    fn secrets_and_templates_are_checked() {
        let secret = one::<String>("SELECT booking_internal.generate_webhook_secret()").unwrap();
        assert!(secret.starts_with("whsec_"), "{secret}");
        let checked = Spi::get_one_with_args::<String>(
            "SELECT booking_internal.check_webhook_secret($1)",
            &[secret.as_str().into()],
        );
        assert_eq!(checked.unwrap().as_deref(), Some(secret.as_str()));
        assert_eq!(refusal("SELECT booking_internal.check_webhook_secret('whsec_tooshort')").0, "22023");
        Spi::run("SELECT booking_internal.check_template('Hello {{customer_name}}')").unwrap();
        assert_eq!(refusal("SELECT booking_internal.check_template('Hello {{nobody}}')").0, "22023");
        assert_eq!(refusal("SELECT booking_internal.check_template('Hello {{customer_name')").0, "22023");
    }

    #[pg_test]
    fn a_signature_verifies_as_the_specification_says_and_a_tampered_body_does_not() {
        let verify = |body: &str| {
            Spi::get_one_with_args::<bool>(
                "SELECT booking.verify_webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                    'msg_p5jXN8AQM9LWM0D4loKWxJek', '1614265330', $1,
                    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 2147483647)",
                &[body.into()],
            )
            .unwrap()
        };
        assert_eq!(verify("{\"test\": 2432232314}"), Some(true));
        assert_eq!(verify("{\"test\": 2432232315}"), Some(false));
        let expired = "SELECT booking.verify_webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                           'msg_p5jXN8AQM9LWM0D4loKWxJek', '1614265330', '{\"test\": 2432232314}',
                           'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=')";
        assert_eq!(one::<bool>(expired), Some(false), "the 2021 timestamp is outside the default 300 s");
    }

    #[pg_test]
    fn an_event_is_fanned_out_to_the_subscribed_endpoints_by_fan_out_events() {
        Spi::run(
            "INSERT INTO booking.tenants (id, name, timezone) VALUES ('f0000000-0000-0000-0000-0000000000d1', 'fan-out', 'UTC');
             SELECT booking_admin.create_endpoint('https://hooks.example.com/a', '{booking.*}', 'f0000000-0000-0000-0000-0000000000d1');
             SELECT booking_admin.create_endpoint('https://hooks.example.com/b', '{waitlist.notified}', 'f0000000-0000-0000-0000-0000000000d1');
             SELECT booking.emit_event('f0000000-0000-0000-0000-0000000000d1', 'booking.created', '{\"k\": 1}');",
        )
        .unwrap();
        let written =
            "SELECT count(*) FROM booking_admin.deliveries WHERE tenant_id = 'f0000000-0000-0000-0000-0000000000d1'";
        assert_eq!(one::<i64>(written), Some(0), "the event is the outbox: writing it writes no delivery");
        assert_eq!(one::<i32>("SELECT booking_admin.fan_out_events()"), Some(1), "one event expanded");
        let deliveries = one::<i64>(
            "SELECT count(*) FROM booking_admin.deliveries d JOIN booking_admin.delivery_endpoints e ON e.id = d.endpoint_id
             WHERE d.tenant_id = 'f0000000-0000-0000-0000-0000000000d1' AND e.url = 'https://hooks.example.com/a'
               AND d.status = 'pending' AND d.message_id LIKE 'msg_%'",
        );
        assert_eq!(deliveries, Some(1), "one delivery for the booking.* endpoint");
        let unsubscribed = one::<i64>(
            "SELECT count(*) FROM booking_admin.deliveries d JOIN booking_admin.delivery_endpoints e ON e.id = d.endpoint_id
             WHERE e.url = 'https://hooks.example.com/b'",
        );
        assert_eq!(unsubscribed, Some(0), "none for the endpoint subscribed to another type");
        assert_eq!(one::<i32>("SELECT booking_admin.fan_out_events()"), Some(0), "an event is expanded once");
        assert_eq!(one::<i64>(written), Some(1));
    }
}
