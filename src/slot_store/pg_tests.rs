//! In-database tests of the slot store: exactness under random changes, reads, ranking, errors.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    const TENANT: &str = "00000000-0000-0000-0000-00000000a016";
    const ANNA: &str = "00000000-0000-0000-0000-00000000b001";
    const BEN: &str = "00000000-0000-0000-0000-00000000b002";
    const CUT: &str = "00000000-0000-0000-0000-00000000c001";
    const TRIM: &str = "00000000-0000-0000-0000-00000000c002";
    const CUSTOMER: &str = "00000000-0000-0000-0000-00000000d001";

    /// A tenant open around the clock in Zurich, Anna there and Ben in New York, two services
    /// with buffers and a turnover time. "Now" is 2026-03-05: the 30-day horizon spans New
    /// York's change to summer time (03-08) and Zurich's (03-29), and Anna works through
    /// Zurich's missing hour (02:00-03:00 on Sunday 03-29).
    fn salon() {
        Spi::run(&format!(
            "SET booking_engine.now = '2026-03-05 00:00+01';
             INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes, buffer_time_minutes, opening_hours)
                 VALUES ('{TENANT}', 'Salon', 'Europe/Zurich', 30, 5,
                         (SELECT jsonb_object_agg(d::text, '{{\"is_open\": true, \"start_time\": \"00:00\", \"end_time\": \"24:00\"}}'::jsonb)
                          FROM generate_series(0, 6) d));
             UPDATE booking.slot_store_settings SET horizon_days = 30, enabled = true WHERE tenant_id = '{TENANT}';
             INSERT INTO booking.staff (id, tenant_id, name, timezone) VALUES
                 ('{ANNA}', '{TENANT}', 'Anna', 'Europe/Zurich'), ('{BEN}', '{TENANT}', 'Ben', 'America/New_York');
             INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_before_minutes, buffer_after_minutes) VALUES
                 ('{CUT}', '{TENANT}', 'Cut', 60, 0, 15), ('{TRIM}', '{TENANT}', 'Trim', 30, 10, 0);
             INSERT INTO booking.staff_services (staff_id, service_id) VALUES
                 ('{ANNA}', '{CUT}'), ('{ANNA}', '{TRIM}'), ('{BEN}', '{CUT}'), ('{BEN}', '{TRIM}');
             INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
                 SELECT h.s, d, h.a::time, h.b::time FROM generate_series(0, 6) d,
                        (VALUES ('{ANNA}'::uuid, '08:00', '12:00'), ('{ANNA}', '13:00', '18:00'), ('{BEN}', '09:00', '17:00')) h (s, a, b);
             INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time) VALUES ('{ANNA}', 0, '00:30', '04:00');
             INSERT INTO booking.customers (id, tenant_id, name) VALUES ('{CUSTOMER}', '{TENANT}', 'Nina');"
        ))
        .unwrap();
    }

    /// xorshift64*: a seeded generator, so that a failure can be replayed from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap_or(0)
    }

    /// Slots in the store that a full recomputation of every staff-day changes (0: exact).
    fn differences_from_full_recomputation() -> i64 {
        Spi::run(
            "DROP TABLE IF EXISTS before_refresh;
             CREATE TEMP TABLE before_refresh AS
                 SELECT tenant_id, staff_id, date, service_id, start_time, end_time, slot_type, is_available,
                        confidence_score, booking_density, priority_boost, fit_score, day_open_ratio
                 FROM booking.availability_slots;
             SELECT booking.slot_store_touch_dates(array_agg(f.tenant_id), array_agg(f.id), NULL, NULL) FROM booking.staff f;",
        )
        .unwrap();
        count(
            "WITH now AS (SELECT tenant_id, staff_id, date, service_id, start_time, end_time, slot_type, is_available,
                                 confidence_score, booking_density, priority_boost, fit_score, day_open_ratio
                          FROM booking.availability_slots)
             SELECT (SELECT count(*) FROM (SELECT * FROM now EXCEPT SELECT * FROM before_refresh) a)
                  + (SELECT count(*) FROM (SELECT * FROM before_refresh EXCEPT SELECT * FROM now) b)",
        )
    }

    /// Staff-days on which the store's free slots (as of now) differ from get_available_slots,
    /// for every staff member, service and day of the horizon.
    fn days_differing_from_get_available_slots() -> i64 {
        count(
            "WITH h AS (SELECT d.staff_id, min(d.date) AS first, max(d.date) AS last
                        FROM booking.availability_slot_days d GROUP BY d.staff_id),
                  engine AS (SELECT g.staff_id, s.service_id, g.starts_at, g.ends_at
                             FROM (VALUES ('00000000-0000-0000-0000-00000000c001'::uuid), ('00000000-0000-0000-0000-00000000c002')) s (service_id),
                                  h, booking.get_available_slots(s.service_id, h.first, h.last, h.staff_id) g),
                  store AS (SELECT v.staff_id, v.service_id, v.start_time, v.end_time FROM booking.availability_slots_now v
                            WHERE v.is_available),
                  diff AS ((SELECT * FROM engine EXCEPT SELECT * FROM store) UNION ALL (SELECT * FROM store EXCEPT SELECT * FROM engine))
             SELECT count(DISTINCT (d.staff_id, d.starts_at::date)) FROM diff d",
        )
    }

    fn pick(rng: &mut Rng, sql: &str) -> Option<String> {
        let n = count(&format!("SELECT count(*) FROM ({sql}) x"));
        if n == 0 {
            return None;
        }
        Spi::get_one::<String>(&format!("SELECT x.v::text FROM ({sql}) x (v) OFFSET {} LIMIT 1", rng.below(n as u64)))
            .unwrap()
    }

    fn random_change(rng: &mut Rng) -> String {
        let staff = [ANNA, BEN][rng.below(2) as usize];
        let service = [CUT, TRIM][rng.below(2) as usize];
        let day = format!("date '2026-03-05' + {}", rng.below(30));
        let hour = 6 + rng.below(14);
        let live = "SELECT id FROM booking.appointments WHERE status IN ('pending', 'confirmed') ORDER BY id";
        match rng.below(10) {
            0..=2 => match pick(rng, &format!(
                "SELECT starts_at FROM booking.get_available_slots('{service}', date '2026-03-05', date '2026-04-03', '{staff}') ORDER BY starts_at"
            )) {
                Some(start) => format!(
                    "INSERT INTO booking.appointments (staff_id, service_id, customer_id, starts_at, status)
                     VALUES ('{staff}', '{service}', '{CUSTOMER}', '{start}', 'pending')"
                ),
                None => "SELECT 1".into(),
            },
            3 => match pick(rng, live) {
                Some(id) => format!("UPDATE booking.appointments SET status = 'cancelled' WHERE id = '{id}'"),
                None => "SELECT 1".into(),
            },
            4 => match pick(rng, live) {
                Some(id) => format!(
                    "UPDATE booking.appointments SET starts_at = starts_at + interval '{m} minutes', ends_at = ends_at + interval '{m} minutes'
                     WHERE id = '{id}' AND NOT EXISTS (
                         SELECT 1 FROM booking.appointments b, booking.appointments a
                         WHERE a.id = '{id}' AND b.id <> a.id AND b.staff_id = a.staff_id AND b.status IN ('pending', 'confirmed', 'active')
                           AND b.blocked && tstzrange(lower(a.blocked) + interval '{m} minutes', upper(a.blocked) + interval '{m} minutes'))",
                    m = 30 * (1 + rng.below(4))
                ),
                None => "SELECT 1".into(),
            },
            5 => format!(
                "UPDATE booking.staff_schedules SET end_time = least(end_time + interval '{} minutes', '23:59')
                 WHERE staff_id = '{staff}' AND day_of_week = {}",
                30 * rng.below(3) as i64 - 30,
                rng.below(7)
            ),
            6 => match rng.below(3) {
                0 => format!("INSERT INTO booking.schedule_overrides (staff_id, date) VALUES ('{staff}', {day})"),
                1 => format!(
                    "INSERT INTO booking.schedule_overrides (staff_id, date, start_time, end_time, is_available)
                     VALUES ('{staff}', {day}, '{hour}:00', '{}:30', {})",
                    hour + 2,
                    rng.below(2) == 0
                ),
                _ => "DELETE FROM booking.schedule_overrides WHERE id = (SELECT id FROM booking.schedule_overrides ORDER BY id LIMIT 1)".into(),
            },
            7 => match rng.below(2) {
                0 => format!(
                    "INSERT INTO booking.staff_time_off (staff_id, period) VALUES ('{staff}',
                     tstzrange(({day})::timestamp AT TIME ZONE 'Europe/Zurich' + interval '{hour} hours',
                               ({day})::timestamp AT TIME ZONE 'Europe/Zurich' + interval '{} hours'))",
                    hour + 1 + rng.below(30)
                ),
                _ => "DELETE FROM booking.staff_time_off WHERE id = (SELECT id FROM booking.staff_time_off ORDER BY id LIMIT 1)".into(),
            },
            8 => match rng.below(3) {
                0 => format!(
                    "INSERT INTO booking.holidays (tenant_id, name, date, affects_all_staff, affected_staff_ids)
                     VALUES ('{TENANT}', 'Day', {day}, false, ARRAY['{staff}'::uuid])"
                ),
                1 => format!(
                    "INSERT INTO booking.holidays (tenant_id, name, is_recurring, recurring_month, recurring_day)
                     VALUES ('{TENANT}', 'Yearly', true, 3, {})",
                    6 + rng.below(25)
                ),
                _ => "DELETE FROM booking.holidays WHERE id = (SELECT id FROM booking.holidays ORDER BY id LIMIT 1)".into(),
            },
            _ => format!(
                "UPDATE booking.services SET buffer_before_minutes = {}, buffer_after_minutes = {} WHERE id = '{service}'",
                5 * rng.below(4),
                5 * rng.below(4)
            ),
        }
    }

    /// After every change of random sequences (bookings, cancellations, reschedules, schedule
    /// edits, overrides, time off, holidays, buffer changes) across both DST changes, the store
    /// equals a full recomputation and its free slots equal get_available_slots on every
    /// staff-day of the horizon.
    #[pg_test]
    fn the_store_stays_exact_under_random_changes() {
        salon();
        assert!(count("SELECT count(*) FROM booking.availability_slots WHERE date = '2026-03-29' AND staff_id = '00000000-0000-0000-0000-00000000b001'") > 0);
        for seed in [16_u64, 2026, 0x5eed] {
            let mut rng = Rng(seed);
            for step in 0..25 {
                let change = random_change(&mut rng);
                Spi::run(&change).unwrap_or_else(|e| panic!("seed {seed} step {step}: {change}: {e}"));
                assert_eq!(days_differing_from_get_available_slots(), 0, "seed {seed} step {step} after {change}");
                assert_eq!(differences_from_full_recomputation(), 0, "seed {seed} step {step} after {change}");
            }
        }
        assert!(
            count("SELECT count(*) FROM booking.availability_slots WHERE NOT is_available") > 0,
            "bookings happened"
        );
    }
}
