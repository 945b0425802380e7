-- The operator role: everything a non-superuser operator needs is membership in
-- booking_operator (GRANT booking_operator TO my_ops_login). The extension creates the role
-- when it does not exist yet (a cluster-wide role: it stays after DROP EXTENSION) and grants it
-- exactly the admin surface below. booking.caller_is_operator() counts its members as
-- operators too.
--
-- Left out on purpose: the runners' own functions (claim_jobs, complete_job, fail_job,
-- heartbeat_job, complete_jobs, fail_jobs, complete_and_claim_jobs, lock_leased_jobs, record_*,
-- running_job, recover_stale_jobs), run_maintenance and the functions
-- it schedules (they act on every tenant's rows as the scheduler), the tuner and the security
-- scans, and any write to job_handlers or scheduler_job_info.function: the scheduler runs those
-- functions with its own rights. The job queue is safe to write: a job runs as a role its
-- writer can act as (booking_admin.jobs_identity).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'booking_operator') THEN
        CREATE ROLE booking_operator NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA booking_admin TO booking_operator;
GRANT EXECUTE ON FUNCTION
    -- Statistics (the caller's rights: add pg_monitor to see other users' sessions and queries).
    booking_admin.stats_since, booking_admin.get_table_stats, booking_admin.get_index_stats,
    booking_admin.get_table_vacuum_stats, booking_admin.get_cache_hit_ratio, booking_admin.get_index_hit_ratio,
    booking_admin.get_connection_stats, booking_admin.get_slow_queries, booking_admin.analyze_partitioning_candidates,
    -- The admin SQL sandbox and query analysis.
    booking_admin.execute_admin_sql, booking_admin.check_admin_sql, booking_admin.admin_sql_status,
    booking_admin.execute_explain_query, booking_admin.analyze_query,
    -- The job queue as a producer and its dead-letter queue.
    booking_admin.enqueue_job, booking_admin.enqueue_jobs, booking_admin.random_uuids,
    booking_admin.cancel_job_by_key, booking_admin.reschedule_job_by_key,
    booking_admin.wake_workers_at_commit, booking_admin.job_stats,
    -- The exporter's state.
    booking_admin.tracing_status,
    booking_admin.dead_letter_jobs, booking_admin.process_dead_letter, booking_admin.worker_status,
    -- The scheduler's state and settings (not the function it calls).
    booking_admin.scheduler_status, booking_admin.scheduler_job, booking_admin.maintenance_history,
    booking_admin.configure_scheduler_job,
    -- Cron schedules: their check, their next time, their runs in a window, their clock.
    booking_admin.check_cron, booking_admin.cron_next, booking_admin.cron_runs, booking_admin.scheduler_clock
TO booking_operator;
GRANT SELECT ON booking_admin.jobs, booking_admin.admin_audit, booking_admin.scheduler_job_info,
    booking_admin.maintenance_executions, booking_admin.tuning_actions, booking_admin.auto_tuner_config
TO booking_operator;
GRANT INSERT, DELETE ON booking_admin.jobs TO booking_operator;
-- process_dead_letter's requeue; handler, payload and the identity columns stay read-only.
GRANT UPDATE (status, retry_count, scheduled_at, completed_at, updated_at) ON booking_admin.jobs TO booking_operator;
GRANT UPDATE (delay_ms, max_retries, timeout_ms, enabled, next_run_at, cron, timezone) ON booking_admin.scheduler_job_info TO booking_operator;
GRANT UPDATE (respects_freeze) ON booking_admin.scheduler_job_info TO booking_operator;

-- The freeze calendar, the partitioned history and its maintenance, the health history and the
-- questions it answers, remediations (operators decide them), the waitlist's conversion, and
-- what job_stats reads of the job history.
GRANT EXECUTE ON FUNCTION
    booking_admin.freeze_state(uuid, timestamptz), booking_admin.freeze_windows_at(timestamptz, uuid),
    booking_admin.add_freeze_window(text, timestamptz, timestamptz, integer[], time, time, text, date, date, text, uuid),
    booking_admin.remove_freeze_window(uuid),
    booking_admin.partitions(text), booking_admin.partition_bounds(text, timestamptz), booking_admin.maintain_partitions(text),
    booking_admin.configure_partitions(text, interval, integer, text, boolean),
    booking_admin.top_queries(interval, integer), booking_admin.growing_relations(interval, integer),
    booking_admin.sequences_near_exhaustion(numeric), booking_admin.sequence_headroom(), booking_admin.unused_indexes(interval),
    booking_admin.duplicate_indexes(), booking_admin.blocking_tree(), booking_admin.database_history(interval),
    booking_admin.preview_remediation(uuid), booking_admin.approve_remediation(uuid, text),
    booking_admin.reject_remediation(uuid, text), booking_admin.revert_remediation(uuid, text),
    booking_admin.waitlist_conversion(interval, uuid), booking_admin.completed_job_durations()
TO booking_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON booking_admin.freeze_windows TO booking_operator;
GRANT SELECT ON booking_admin.partitioned_tables, booking_admin.job_history, booking_admin.history_query_stats,
    booking_admin.history_query_texts, booking_admin.history_database_stats, booking_admin.history_relation_stats,
    booking_admin.history_sequence_stats, booking_admin.security_remediations
TO booking_operator;
-- configure_partitions; what a table keeps past retention (keep_while) stays the extension's.
GRANT UPDATE (retention, premake, partition_interval) ON booking_admin.partitioned_tables TO booking_operator;

-- What enqueue_job and enqueue_jobs call (as their caller) to carry the caller's trace into the
-- job.
GRANT EXECUTE ON FUNCTION booking_internal.tracing(), booking_internal.trace_context() TO booking_operator;
