//! In-database tests of the reminders' Rust adapters: quiet hours against Postgres's own zone
//! rules, and links signed and checked through SQL.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn text(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).unwrap()
    }

    /// Quiet hours 22:00-08:00 in Zurich end at 08:00 on the clock, the night the clocks spring
    /// forward and the night they fall back: what `AT TIME ZONE` says 08:00 is.
    #[pg_test]
    fn quiet_hours_end_at_the_local_morning_across_both_changes() {
        for (at, morning) in [
            ("2027-03-27 22:30+01", "2027-03-28 08:00"),
            ("2027-03-28 02:59+02", "2027-03-28 08:00"),
            ("2027-10-30 23:00+02", "2027-10-31 08:00"),
        ] {
            let ours = text(&format!(
                "SELECT booking_internal.quiet_hours_end('{at}', 'Europe/Zurich', '22:00', '08:00')::text"
            ));
            let postgres = text(&format!("SELECT (timestamp '{morning}' AT TIME ZONE 'Europe/Zurich')::text"));
            assert_eq!(ours, postgres, "quiet at {at}");
        }
        assert_eq!(
            text("SELECT booking_internal.quiet_hours_end('2027-03-28 09:00+02', 'Europe/Zurich', '22:00', '08:00')::text"),
            None,
            "outside quiet hours"
        );
        // A quiet window ending inside the spring gap ends where the gap does.
        assert_eq!(
            text("SELECT booking_internal.quiet_hours_end('2027-03-28 01:30+01', 'Europe/Zurich', '01:00', '02:30')::text"),
            text("SELECT (timestamptz '2027-03-28 03:00+02')::text")
        );
    }

    #[pg_test]
    fn a_link_signed_through_sql_parses_and_only_its_key_checks_it() {
        Spi::run("CREATE TEMP TABLE k AS SELECT booking_internal.new_link_key() AS key, booking_internal.new_link_key() AS other")
            .unwrap();
        let token = text(
            "SELECT booking_internal.sign_link(k.key, 7, 'cancel', '00000000-0000-0000-0000-0000000000a1',
                 '00000000-0000-0000-0000-0000000000b1', '2027-03-28 10:00+02', '2027-03-28 10:00+02') FROM k",
        )
        .unwrap();
        let parsed = text(&format!(
            "SELECT concat_ws(' ', key_id, action, appointment_id, starts_at = expires_at) FROM booking_internal.parse_link('{token}')"
        ));
        assert_eq!(parsed.as_deref(), Some("7 cancel 00000000-0000-0000-0000-0000000000b1 t"));
        let checks = text(&format!(
            "SELECT booking_internal.link_is_authentic('{token}', k.key)::text || booking_internal.link_is_authentic('{token}', k.other)::text FROM k"
        ));
        assert_eq!(checks.as_deref(), Some("truefalse"));
        let none = Spi::get_one::<i64>("SELECT count(*) FROM booking_internal.parse_link('bklnk_nonsense')").unwrap();
        assert_eq!(none, Some(0));
    }
}
