//! In-database tests of the metrics adapters (inside one transaction that never commits).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::metrics::api::{all_samples, health_json, sql_values};
    use crate::metrics::defs::BOOKING_EVENTS;
    use crate::telemetry::{self, Change};

    fn events_counted(label: &str) -> f64 {
        all_samples(false)
            .iter()
            .filter(|s| Some(s.def) == BOOKING_EVENTS.index() && s.labels.iter().any(|(_, v)| v == label))
            .map(|s| s.value)
            .sum()
    }

    #[pg_test]
    fn counts_wait_for_a_commit_that_never_comes() {
        telemetry::at_commit(&BOOKING_EVENTS, &["pg_test.uncommitted"], Change::Add(1));
        Spi::run("INSERT INTO booking.tenants (name) VALUES ('metrics pg_test')").unwrap();
        assert_eq!(events_counted("pg_test.uncommitted"), 0.0);
        // Counted at once, whatever the transaction does.
        telemetry::now(&BOOKING_EVENTS, &["pg_test.now"], Change::Add(2));
        assert_eq!(events_counted("pg_test.now"), 2.0);
    }

    #[pg_test]
    fn the_sql_gauges_read_the_queue_and_the_server() {
        let values = sql_values().unwrap();
        for metric in
            ["booking_jobs", "booking_pg_max_connections", "booking_pg_cache_hit_ratio", "booking_alerts_firing"]
        {
            assert!(values.iter().any(|v| v.metric == metric), "{metric} missing");
        }
        let health = health_json().unwrap();
        assert!(health["components"]["wraparound"]["xid_age"].is_number(), "{health}");
    }
}
