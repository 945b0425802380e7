//! In-database tests of the availability adapters.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::availability::model::{from_micros, load_zone, to_micros};
    use crate::availability::zone::{local_micros, MICROS_PER_DAY, MICROS_PER_MINUTE};
    use crate::pg::convert::PG_EPOCH_OFFSET;

    /// Every quarter hour of local wall-clock time from 2 days before to 2 days after each
    /// 2026 change in Europe/Zurich converts exactly as Postgres's `AT TIME ZONE` does.
    #[pg_test]
    fn zone_conversion_agrees_with_at_time_zone() {
        for (zone_name, change) in [
            ("Europe/Zurich", "2026-03-29"),
            ("Europe/Zurich", "2026-10-25"),
            ("America/New_York", "2026-03-08"),
            ("Australia/Lord_Howe", "2026-04-05"),
        ] {
            let day = chrono::NaiveDate::parse_from_str(change, "%Y-%m-%d").unwrap();
            let start = local_micros(day.and_hms_opt(0, 0, 0).unwrap()) - 2 * MICROS_PER_DAY;
            let zone = load_zone(zone_name, start - MICROS_PER_DAY, start + 6 * MICROS_PER_DAY).unwrap();
            let sql = "SELECT array_agg(((timestamp '2000-01-01' + make_interval(secs => s / 1000000.0)) AT TIME ZONE $1) ORDER BY s)
                       FROM generate_series($2::int8, $3::int8, $4::int8) s";
            let (from_pg, to_pg) = (start - PG_EPOCH_OFFSET, start + 4 * MICROS_PER_DAY - PG_EPOCH_OFFSET);
            let pg: Vec<TimestampWithTimeZone> = Spi::get_one_with_args::<Vec<TimestampWithTimeZone>>(
                sql,
                &[zone_name.into(), from_pg.into(), to_pg.into(), (15 * MICROS_PER_MINUTE).into()],
            )
            .unwrap()
            .unwrap();
            for (k, expected) in pg.into_iter().enumerate() {
                let local = start + k as i64 * 15 * MICROS_PER_MINUTE;
                let ours = zone.resolve_micros(local).as_postgres();
                assert_eq!(from_micros(ours).unwrap(), expected, "{zone_name} local µs {local}");
                assert_eq!(to_micros(expected).unwrap(), ours);
            }
        }
    }

    #[pg_test]
    fn unknown_zone_is_refused() {
        assert!(load_zone("Mars/Olympus_Mons", 0, MICROS_PER_DAY).is_err());
        assert_eq!(Spi::get_one::<bool>("SELECT booking.is_valid_timezone('Europe/Zurich')").unwrap(), Some(true));
        assert_eq!(Spi::get_one::<bool>("SELECT booking.is_valid_timezone('Mars/Olympus_Mons')").unwrap(), Some(false));
    }

    fn salon() {
        Spi::run(
            "INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes) VALUES
                 ('00000000-0000-0000-0000-0000000000a1', 'Salon', 'Europe/Zurich', 30);
             INSERT INTO booking.staff (id, tenant_id, name) VALUES
                 ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'Anna');
             INSERT INTO booking.services (id, tenant_id, name, duration_minutes) VALUES
                 ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', 'Cut', 60);
             INSERT INTO booking.staff_services (staff_id, service_id) VALUES
                 ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000c1');
             INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
                 SELECT '00000000-0000-0000-0000-0000000000b1', d, '09:00', '12:00' FROM generate_series(1, 5) d;
             SET booking_engine.now = '2026-03-01 00:00+01';",
        )
        .unwrap();
    }

    #[pg_test]
    fn slots_come_back_as_rows_in_local_hours() {
        salon();
        let starts = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(to_char(starts_at AT TIME ZONE 'Europe/Zurich', 'MM-DD HH24:MI') ORDER BY starts_at)
             FROM booking.get_available_slots('00000000-0000-0000-0000-0000000000c1', '2026-03-27', '2026-03-30')",
        )
        .unwrap()
        .unwrap();
        // Friday before the spring change, the weekend off, and Monday after: still 09:00 local.
        assert_eq!(
            starts,
            [
                "03-27 09:00",
                "03-27 09:30",
                "03-27 10:00",
                "03-27 10:30",
                "03-27 11:00",
                "03-30 09:00",
                "03-30 09:30",
                "03-30 10:00",
                "03-30 10:30",
                "03-30 11:00"
            ]
        );
    }

    #[pg_test]
    fn a_booking_removes_its_slot_and_its_neighbours() {
        salon();
        Spi::run(
            "INSERT INTO booking.customers (id, tenant_id, name) VALUES
                 ('00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000a1', 'Bea');
             INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
                 VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000c1',
                         '00000000-0000-0000-0000-0000000000d1', '2026-03-27 10:00+01', 'confirmed');",
        )
        .unwrap();
        let starts = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(to_char(starts_at AT TIME ZONE 'Europe/Zurich', 'HH24:MI') ORDER BY starts_at)
             FROM booking.get_available_slots('00000000-0000-0000-0000-0000000000c1', '2026-03-27', '2026-03-27')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(starts, ["09:00", "11:00"]);
        let v = Spi::get_one::<pgrx::JsonB>(
            "SELECT booking.validate_appointment_timing('00000000-0000-0000-0000-0000000000b1',
                 '00000000-0000-0000-0000-0000000000c1', '2026-03-27 10:30+01')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(v.0["valid"], false);
        assert_eq!(v.0["violations"][0]["code"], "conflict");
    }

    #[pg_test(error = "service 00000000-0000-0000-0000-000000000999 does not exist")]
    fn unknown_service_is_no_data_found() {
        Spi::run("SELECT * FROM booking.get_available_slots('00000000-0000-0000-0000-000000000999', '2026-01-01', '2026-01-02')").unwrap();
    }

    #[pg_test(error = "from_date 2026-01-03 is after to_date 2026-01-02")]
    fn reversed_range_is_refused() {
        salon();
        Spi::run("SELECT * FROM booking.get_available_slots('00000000-0000-0000-0000-0000000000c1', '2026-01-03', '2026-01-02')").unwrap();
    }

    #[pg_test]
    fn clock_override_is_used() {
        Spi::run("SET booking_engine.now = '2030-05-05 12:00+00'").unwrap();
        let now = Spi::get_one::<String>("SELECT booking.clock_now()::text").unwrap().unwrap();
        assert!(now.starts_with("2030-05-05"), "{now}");
        Spi::run("RESET booking_engine.now").unwrap();
        assert_eq!(Spi::get_one::<bool>("SELECT booking.clock_now() = now()").unwrap(), Some(true));
    }
}
