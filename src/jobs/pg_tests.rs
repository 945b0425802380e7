//! In-database tests of the job queue and scheduler SQL API.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql).unwrap().unwrap()
    }

    fn enqueue(name: &str, options: &str) -> String {
        one::<String>(&format!("SELECT booking_admin.enqueue_job('{name}', 'it_external', '{{}}' {options})::text"))
    }

    #[pg_test]
    fn claim_takes_lower_priority_numbers_first_and_skips_future_jobs() {
        enqueue("low", ", p_priority => 9");
        enqueue("high", ", p_priority => 1");
        enqueue("later", ", p_priority => 0, p_run_at => now() + interval '1 hour'");
        let names = one::<Vec<String>>(
            "SELECT array_agg(name ORDER BY priority) FROM booking_admin.claim_jobs('w1', 10, ARRAY['it_external'])",
        );
        assert_eq!(names, vec!["high", "low"]);
        let none = one::<i64>("SELECT count(*) FROM booking_admin.claim_jobs('w2', 10, ARRAY['it_external'])");
        assert_eq!(none, 0, "claimed jobs are not handed out twice");
    }

    #[pg_test]
    fn claim_filters_by_handler() {
        enqueue("mine", "");
        let other = one::<i64>("SELECT count(*) FROM booking_admin.claim_jobs('w', 10, ARRAY['someone_else'])");
        assert_eq!(other, 0);
        let all = one::<i64>("SELECT count(*) FROM booking_admin.claim_jobs('w', 10) WHERE handler = 'it_external'");
        assert_eq!(all, 1, "NULL handlers: any handler");
    }

    #[pg_test]
    fn a_unique_key_is_enqueued_once_while_pending() {
        let a = enqueue("a", ", p_unique_key => 'reminder:42'");
        let b = enqueue("b", ", p_unique_key => 'reminder:42'");
        assert_eq!(a, b);
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        Spi::run(&format!("SELECT booking_admin.complete_job('{a}', NULL)")).unwrap();
        let c = enqueue("c", ", p_unique_key => 'reminder:42'");
        assert_ne!(a, c, "a finished job frees its key");
    }

    #[pg_test]
    fn replace_by_key_rewrites_a_queued_job_and_preserve_run_at_keeps_its_time() {
        let a = enqueue("a", ", p_unique_key => 'sms:7', p_run_at => '2030-01-01 10:00+00'");
        let b = one::<String>(
            "SELECT booking_admin.enqueue_job('b', 'it_external', '{\"v\": 2}', p_unique_key => 'sms:7',
                 p_run_at => '2030-01-02 10:00+00', p_job_key_mode => 'replace')::text",
        );
        assert_eq!(a, b, "the queued job is the one replaced");
        let (name, at) = (
            one::<String>(&format!("SELECT name || payload::text FROM booking_admin.jobs WHERE id = '{a}'")),
            one::<String>(&format!("SELECT scheduled_at::text FROM booking_admin.jobs WHERE id = '{a}'")),
        );
        assert_eq!((name.as_str(), at.as_str()), ("b{\"v\": 2}", "2030-01-02 10:00:00+00"));
        enqueue(
            "c",
            ", p_unique_key => 'sms:7', p_run_at => '2031-01-01 00:00+00', p_job_key_mode => 'preserve_run_at'",
        );
        let at = one::<String>(&format!(
            "SELECT name || ' ' || scheduled_at::text FROM booking_admin.jobs WHERE id = '{a}'"
        ));
        assert_eq!(at, "c 2030-01-02 10:00:00+00");
    }

    #[pg_test]
    fn replacing_a_running_job_hands_its_key_to_a_new_one_that_will_not_be_retried_twice() {
        let a = enqueue("a", ", p_unique_key => 'agenda:1', p_max_retries => 5");
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        let b = enqueue("b", ", p_unique_key => 'agenda:1', p_job_key_mode => 'replace'");
        assert_ne!(a, b);
        let old = one::<String>(&format!(
            "SELECT concat_ws(' ', status, unique_key, replaced_by = '{b}', max_retries) FROM booking_admin.jobs WHERE id = '{a}'"
        ));
        assert_eq!(old, "running t 0", "the running one keeps running, without its key or retries");
        let failed = one::<String>(&format!("SELECT booking_admin.fail_job('{a}', 'x')"));
        assert_eq!(failed, "dead");
    }

    #[pg_test]
    fn a_queued_job_is_cancelled_by_key_and_a_running_one_is_not() {
        let a = enqueue("a", ", p_unique_key => 'k:1'");
        let r = one::<JsonB>("SELECT booking_admin.cancel_job_by_key('k:1')").0;
        assert_eq!((r["cancelled"].as_bool(), r["job_id"].as_str()), (Some(true), Some(a.as_str())));
        let status = one::<String>(&format!("SELECT status FROM booking_admin.jobs WHERE id = '{a}'"));
        assert_eq!(status, "cancelled");
        let claimed = one::<i64>("SELECT count(*) FROM booking_admin.claim_jobs('w', 10, ARRAY['it_external'])");
        assert_eq!(claimed, 0, "a cancelled job never runs");
        let none = one::<JsonB>("SELECT booking_admin.cancel_job_by_key('k:1')").0;
        assert_eq!(none["cancelled"].as_bool(), Some(false));
        let b = enqueue("b", ", p_unique_key => 'k:1'");
        assert_ne!(a, b, "the key is free again");
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        let running = one::<JsonB>("SELECT booking_admin.cancel_job_by_key('k:1')").0;
        assert_eq!((running["cancelled"].as_bool(), running["status"].as_str()), (Some(false), Some("running")));
    }

    #[pg_test]
    fn a_queued_job_is_rescheduled_by_key() {
        let a = enqueue("a", ", p_unique_key => 'k:2'");
        let moved = one::<String>("SELECT booking_admin.reschedule_job_by_key('k:2', '2030-05-05 05:05+00')::text");
        assert_eq!(moved, a);
        let at = one::<String>(&format!("SELECT scheduled_at::text FROM booking_admin.jobs WHERE id = '{a}'"));
        assert_eq!(at, "2030-05-05 05:05:00+00");
    }

    /// Cron schedules in a zone, through the SQL function, against Postgres's own `AT TIME ZONE`
    /// (the same tz data the availability engine reads): every day's 07:00 in Zurich across
    /// both 2027 changes is one instant that Postgres prints as 07:00 local.
    #[pg_test]
    fn cron_times_agree_with_at_time_zone_across_both_2027_changes() {
        let local: Vec<String> = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(to_char(t AT TIME ZONE 'Europe/Zurich', 'YYYY-MM-DD HH24:MI') ORDER BY t)
             FROM booking_admin.cron_runs('0 7 * * *', 'Europe/Zurich', '2027-03-26 00:00+00', '2027-03-31 00:00+00') t",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            local,
            ["2027-03-26 07:00", "2027-03-27 07:00", "2027-03-28 07:00", "2027-03-29 07:00", "2027-03-30 07:00"]
        );
        let autumn = one::<i64>(
            "SELECT count(*) FROM booking_admin.cron_runs('0 7 * * *', 'Europe/Zurich', '2027-10-29 00:00+00', '2027-11-03 00:00+00') t
             WHERE to_char(t AT TIME ZONE 'Europe/Zurich', 'HH24:MI') = '07:00'",
        );
        assert_eq!(autumn, 5);
        let skipped =
            one::<String>("SELECT booking_admin.cron_next('30 2 * * *', 'Europe/Zurich', '2027-03-28 00:00+01')::text");
        assert_eq!(skipped, "2027-03-28 01:00:00+00", "02:30 does not exist that day: 03:00 CEST");
    }

    #[pg_test]
    fn a_cron_operation_gets_its_next_time_in_its_zone() {
        Spi::run(
            "CREATE FUNCTION public.noop_op(jsonb) RETURNS integer LANGUAGE sql AS 'SELECT 0';
             SET booking_engine.now = '2027-03-27 08:00+01';
             INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, cron, timezone)
             VALUES ('morning', 'Every morning', 'public.noop_op', '0 7 * * *', 'Europe/Zurich')",
        )
        .unwrap();
        let next =
            one::<String>("SELECT next_run_at::text FROM booking_admin.scheduler_job_info WHERE job_name = 'morning'");
        assert_eq!(next, "2027-03-28 05:00:00+00", "the next morning, in summer time");
        let due = one::<i64>("SELECT count(*) FROM booking_admin.due_operations() WHERE job_name = 'morning'");
        assert_eq!(due, 0);
        Spi::run("SET booking_engine.now = '2027-03-28 07:00+02'").unwrap();
        let due = one::<i64>("SELECT count(*) FROM booking_admin.due_operations() WHERE job_name = 'morning'");
        assert_eq!(due, 1);
        Spi::run("SELECT booking_admin.run_maintenance('morning', 'scheduler')").unwrap();
        let next =
            one::<String>("SELECT next_run_at::text FROM booking_admin.scheduler_job_info WHERE job_name = 'morning'");
        assert_eq!(next, "2027-03-29 05:00:00+00");
    }

    #[pg_test]
    fn fail_job_schedules_the_backoff_then_dead_letters() {
        let id = enqueue("f", ", p_max_retries => 1, p_retry_delay_ms => 60000, p_jitter => false");
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        let first = one::<String>(&format!("SELECT booking_admin.fail_job('{id}', 'smtp down')"));
        assert_eq!(first, "failed");
        let wait = one::<f64>(&format!(
            "SELECT extract(epoch FROM scheduled_at - clock_timestamp())::float8 FROM booking_admin.jobs WHERE id = '{id}'"
        ));
        assert!((59.0..=60.0).contains(&wait), "retry in 60 s, got {wait}");
        Spi::run(&format!("UPDATE booking_admin.jobs SET scheduled_at = now() WHERE id = '{id}'")).unwrap();
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        let second = one::<String>(&format!("SELECT booking_admin.fail_job('{id}', 'smtp still down')"));
        assert_eq!(second, "dead");
        let stats = one::<JsonB>("SELECT booking_admin.job_stats()");
        assert_eq!(stats.0["by_status"]["dead"], 1);
        let listed =
            one::<i64>(&format!("SELECT count(*) FROM booking_admin.dead_letter_jobs(10, 0) WHERE id = '{id}'"));
        assert_eq!(listed, 1);
        let requeued = one::<JsonB>("SELECT booking_admin.process_dead_letter('retry', 10)");
        assert_eq!(requeued.0, serde_json::json!({"requeued": 1, "deleted": 0}));
        assert_eq!(one::<String>(&format!("SELECT status FROM booking_admin.jobs WHERE id = '{id}'")), "pending");
    }

    #[pg_test(error = "job 00000000-0000-0000-0000-000000000000 does not exist")]
    fn completing_an_unknown_job_is_an_error() {
        Spi::run("SELECT booking_admin.complete_job('00000000-0000-0000-0000-000000000000', NULL)").unwrap();
    }

    #[pg_test]
    fn heartbeat_is_only_for_running_jobs() {
        let id = enqueue("h", "");
        // 55000 is caught; no error at all falls through to a P0001 that fails the test.
        Spi::run(&format!(
            "DO $$ BEGIN PERFORM booking_admin.heartbeat_job('{id}'); RAISE EXCEPTION 'pending job accepted a heartbeat';
             EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL; END $$"
        ))
        .unwrap();
        Spi::run("SELECT booking_admin.claim_jobs('w', 10, ARRAY['it_external'])").unwrap();
        Spi::run(&format!("UPDATE booking_admin.jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = '{id}'"))
            .unwrap();
        Spi::run(&format!("SELECT booking_admin.heartbeat_job('{id}')")).unwrap();
        let age = one::<f64>(&format!(
            "SELECT extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 FROM booking_admin.jobs WHERE id = '{id}'"
        ));
        assert!(age < 60.0, "heartbeat moved to now, age {age}");
    }

    /// Waits (bounded) until the launcher has started runner 1 in this database: it does so
    /// within milliseconds of CREATE EXTENSION, which may be just before the first test.
    fn await_runner() -> i32 {
        let started = std::time::Instant::now();
        loop {
            let pid = Spi::get_one::<i32>(
                "SELECT (SELECT pid FROM pg_stat_activity
                         WHERE backend_type = 'booking_engine runner 1' AND datname = current_database())",
            )
            .unwrap();
            if let Some(pid) = pid {
                return pid;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "no runner started in this database");
            Spi::run("SELECT pg_stat_clear_snapshot(), pg_sleep(0.02)").unwrap();
        }
    }

    #[pg_test]
    fn the_launcher_serves_the_allow_listed_database_and_reports_it_disabled() {
        let runner = await_runner();
        let status = one::<JsonB>("SELECT booking_admin.worker_status()");
        assert_eq!(status.0["state"], "disabled", "{}", status.0);
        assert_eq!(status.0["will_run"], false, "booking_engine.enabled = off: nothing runs queued work");
        assert_eq!(status.0["allow_list"], "pgrx_tests");
        assert_eq!(status.0["launcher_running"], true, "the launcher runs without a database");
        assert!(status.0["runner_pids"].as_array().unwrap().contains(&serde_json::json!(runner)), "{}", status.0);
        assert!(status.0["workers"].as_array().unwrap().iter().any(|w| w["name"] == "booking_engine launcher"));
    }

    #[pg_test]
    fn retry_delay_ms_is_the_pure_backoff() {
        assert_eq!(one::<i64>("SELECT booking_admin.retry_delay_ms(1000, 2, 3, 300000)"), 8000);
        assert_eq!(one::<i64>("SELECT booking_admin.retry_delay_ms(1000, 2, 30, 300000)"), 300000);
        assert_eq!(one::<i64>("SELECT booking_admin.retry_delay_ms(1000, 2, 3, 300000, 0.5)"), 4000);
    }

    #[pg_test]
    fn worker_status_sees_the_preloaded_library() {
        let status = one::<JsonB>("SELECT booking_admin.worker_status()");
        assert_eq!(status.0["preloaded"], true);
        assert_ne!(status.0["state"], "off");
    }

    #[pg_test]
    fn every_seed_operation_is_scheduled_with_the_seed_defaults() {
        let rows = one::<JsonB>("SELECT jsonb_object_agg(job_name, delay_ms) FROM booking_admin.scheduler_job_info");
        assert_eq!(
            rows.0,
            serde_json::json!({"activate-due": 30000, "update-completed": 30000, "update-expired": 30000,
                               "cancel-no-shows": 60000, "cleanup-history": 86400000, "waitlist-sweep": 300000,
                               "security-evaluate": 3600000, "pii-scan": 86400000, "auto-tune": 60000,
                               "expire-booking-operations": 3600000, "evaluate-alerts": 15000,
                               "metrics-snapshot": 300000, "extend-slot-horizon": 3600000,
                               "capture-history": 300000, "partition-maintenance": 600000,
                               "archive-jobs": 60000, "client-blocks": 60000, "expire-holds": 60000,
                               "cleanup-sms-inbound": 3600000, "staff-agenda": 60000, "cleanup-reminders": 86400000})
        );
    }

    #[pg_test]
    fn configure_scheduler_job_changes_only_what_is_given() {
        let job = one::<JsonB>("SELECT booking_admin.configure_scheduler_job('cancel-no-shows', p_enabled => false)");
        assert_eq!(job.0["enabled"], false);
        assert_eq!(job.0["delay_ms"], 60000);
        assert_eq!(job.0["max_retries"], 3);
    }

    #[pg_test(error = "unknown maintenance operation 'reindex-everything'")]
    fn an_unknown_operation_is_refused() {
        Spi::run("SELECT booking_admin.run_maintenance('reindex-everything')").unwrap();
    }

    #[pg_test]
    fn outbox_dispatch_marks_undispatched_events() {
        Spi::run("INSERT INTO booking.tenants (id, name) VALUES ('00000000-0000-0000-0000-0000000e7e47', 'outbox')")
            .unwrap();
        let id = one::<String>(
            "SELECT booking.emit_event('00000000-0000-0000-0000-0000000e7e47', 'booking.created', '{}')::text",
        );
        let r = one::<JsonB>("SELECT booking_admin.handle_outbox_dispatch('{}')");
        assert!(r.0["dispatched"].as_i64().unwrap() >= 1, "{}", r.0);
        let done = one::<bool>(&format!("SELECT dispatched_at IS NOT NULL FROM booking.events WHERE id = '{id}'"));
        assert!(done);
        let again = one::<JsonB>("SELECT booking_admin.handle_outbox_dispatch('{}')");
        assert_eq!(again.0["dispatched"], 0, "each event once");
    }

    #[pg_test]
    fn expired_idempotency_records_are_deleted_by_bookings_own_operation() {
        Spi::run(
            "INSERT INTO booking.tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000c1ea', 'cleanup');
             INSERT INTO booking.booking_operations (tenant_id, idempotency_key, operation_type, request_hash, request, status, expires_at)
             VALUES ('00000000-0000-0000-0000-00000000c1ea', 'expired', 'create', 'h', '{}', 'completed', booking.clock_now() - interval '1 second'),
                    ('00000000-0000-0000-0000-00000000c1ea', 'live', 'create', 'h', '{}', 'completed', booking.clock_now() + interval '1 hour')",
        )
        .unwrap();
        let r = one::<JsonB>("SELECT booking_admin.run_maintenance('expire-booking-operations')");
        assert_eq!(r.0["data"]["processedCount"], 1, "{}", r.0);
        let keys = one::<Vec<String>>("SELECT array_agg(idempotency_key) FROM booking.booking_operations");
        assert_eq!(keys, vec!["live"]);
    }

    #[pg_test]
    fn data_cleanup_deletes_only_what_is_past_retention() {
        Spi::run(
            "INSERT INTO booking_admin.jobs (name, handler, status, completed_at) VALUES
                 ('old', 'x', 'completed', now() - interval '10 days'),
                 ('recent', 'x', 'completed', now() - interval '1 day'),
                 ('old cancelled', 'x', 'cancelled', now() - interval '10 days'),
                 ('recent cancelled', 'x', 'cancelled', now() - interval '1 day'),
                 ('waiting', 'x', 'pending', NULL)",
        )
        .unwrap();
        Spi::run(
            "INSERT INTO booking_admin.maintenance_executions (operation, executed_at, status, execution_time_ms, triggered_by)
             VALUES ('update-expired', now() - interval '40 days', 'SUCCESS', 1, 'manual')",
        )
        .unwrap();
        let r = one::<JsonB>("SELECT booking_admin.handle_data_cleanup('{\"completed_jobs_days\": 7}')");
        assert_eq!(
            r.0,
            serde_json::json!({"completed_jobs": 1, "cancelled_jobs": 1, "dead_jobs": 0, "maintenance_history": 1})
        );
        let left =
            one::<Vec<String>>("SELECT array_agg(name ORDER BY name) FROM booking_admin.jobs WHERE handler = 'x'");
        assert_eq!(left, vec!["recent", "recent cancelled", "waiting"]);
    }

    /// The test cluster preloads the library, so runner 1 is a live process here.
    #[pg_test]
    fn stale_jobs_go_back_but_a_live_runners_batch_stays() {
        await_runner();
        let external = enqueue("external", ", p_timeout_ms => 1000");
        let live = enqueue("live runner", "");
        let dead = enqueue("dead runner", "");
        Spi::run("SELECT booking_admin.claim_jobs('mailer', 10, ARRAY['it_external'])").unwrap();
        Spi::run(&format!(
            "UPDATE booking_admin.jobs SET heartbeat_at = clock_timestamp() - interval '1 hour',
                    locked_by = CASE WHEN id = '{external}' THEN 'mailer' ELSE 'booking_engine runner 1' END,
                    locked_pid = CASE WHEN id = '{live}'
                                      THEN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'booking_engine runner 1'
                                                                                  AND datname = current_database())
                                      ELSE 0 END"
        ))
        .unwrap();
        assert_eq!(one::<i32>("SELECT booking_admin.recover_stale_jobs()"), 2);
        let states = one::<Vec<String>>(&format!(
            "SELECT array_agg(status || ':' || retry_count ORDER BY id = '{external}' DESC, id = '{live}' DESC)
             FROM booking_admin.jobs WHERE id IN ('{external}', '{live}', '{dead}')"
        ));
        assert_eq!(states, vec!["failed:1", "running:0", "failed:1"], "external, live runner, dead runner");
    }
}
