//! SQL functions of the job system written in Rust; the queue itself is SQL (sql/jobs.sql).

#[pgrx::pg_schema]
pub mod booking_admin {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::json;

    use crate::availability::facade::{from_micros, load_zone, to_micros, Micros, Zone, MICROS_PER_DAY};
    use crate::errors::{DomainError, DomainResult};
    use crate::gucs;
    use crate::jobs::cron::{self, Cron, SEARCH_DAYS};
    use crate::jobs::{backoff, ids};

    /// Milliseconds before the next attempt of a job that failed `retry_count` times so far; a
    /// `jitter` draw in [0, 1) (e.g. `random()`) applies full jitter, NULL none.
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn retry_delay_ms(
        base_ms: Option<i32>,
        multiplier: Option<f64>,
        retry_count: Option<i32>,
        max_delay_ms: Option<i32>,
        jitter: default!(Option<f64>, "NULL"),
    ) -> Result<i64, ErrorReport> {
        let missing = || {
            DomainError::InvalidParameter("base_ms, multiplier, retry_count and max_delay_ms must not be NULL".into())
        };
        let (Some(base), Some(multiplier), Some(n), Some(max)) = (base_ms, multiplier, retry_count, max_delay_ms)
        else {
            return Err(missing().into());
        };
        if !multiplier.is_finite() {
            return Err(DomainError::InvalidParameter("multiplier must be a finite number".into()).into());
        }
        Ok(backoff::retry_delay_ms(base.into(), multiplier, n, max.into(), jitter))
    }

    const MAX_RANDOM_UUIDS: usize = 1_000_000;

    /// `n` random (version 4) UUIDs: the ids of a bulk enqueue (booking_admin.enqueue_jobs),
    /// drawn from the server's strong random source at once rather than per row. At most
    /// MAX_RANDOM_UUIDS at once, so a wild `n` is an error rather than an allocation the
    /// server cannot make.
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn random_uuids(n: i32) -> Result<Vec<pgrx::Uuid>, ErrorReport> {
        let len = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_RANDOM_UUIDS)
            .ok_or_else(|| DomainError::InvalidParameter(format!("n must be 0 to {MAX_RANDOM_UUIDS}, not {n}")))?
            * 16;
        let mut random = vec![0u8; len];
        // SAFETY: the buffer is `len` bytes long and writable.
        if len > 0 && !unsafe { pgrx::pg_sys::pg_strong_random(random.as_mut_ptr().cast(), len) } {
            return Err(DomainError::Internal("could not generate random values".into()).into());
        }
        Ok(ids::v4_from_random(&random).into_iter().map(|id| pgrx::Uuid::from_bytes(id.into_bytes())).collect())
    }

    /// A cron expression and its zone, read; 22023 for either being wrong or NULL.
    fn schedule(expression: Option<&str>, timezone: Option<&str>) -> DomainResult<(Cron, String)> {
        let expression =
            expression.ok_or_else(|| DomainError::InvalidParameter("the cron expression must not be NULL".into()))?;
        let cron = cron::parse(expression).map_err(DomainError::InvalidParameter)?;
        let zone = timezone.ok_or_else(|| DomainError::InvalidParameter("the time zone must not be NULL".into()))?;
        Ok((cron, zone.to_string()))
    }

    /// The zone's offsets from two days before `from` to as far as a schedule is searched after
    /// `to`.
    fn zone_for(name: &str, from: Micros, to: Micros) -> DomainResult<Zone> {
        load_zone(name, from - 2 * MICROS_PER_DAY, to + (SEARCH_DAYS as Micros + 2) * MICROS_PER_DAY)
    }

    /// The first instant after `p_after` at which `p_expression` fires on the wall clock of
    /// `p_timezone` (src/jobs/cron.rs: five fields, daylight saving time handled as people
    /// expect); NULL when it does not fire within eight years. 22023 for a malformed
    /// expression or an unknown zone.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn cron_next(
        p_expression: Option<&str>,
        p_timezone: Option<&str>,
        p_after: Option<TimestampWithTimeZone>,
    ) -> Result<Option<TimestampWithTimeZone>, ErrorReport> {
        let (cron, zone) = schedule(p_expression, p_timezone)?;
        let after = to_micros(
            p_after
                .ok_or_else(|| DomainError::InvalidParameter("the instant to start after must not be NULL".into()))?,
        )?;
        let zone = zone_for(&zone, after, after)?;
        Ok(cron.next_after(&zone, after).map(from_micros).transpose()?)
    }

    /// Runs of a schedule in [`p_from`, `p_to`), at most 10,000 (22023 beyond): what an
    /// operator checks before relying on one.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn cron_runs(
        p_expression: Option<&str>,
        p_timezone: Option<&str>,
        p_from: Option<TimestampWithTimeZone>,
        p_to: Option<TimestampWithTimeZone>,
    ) -> Result<SetOfIterator<'static, TimestampWithTimeZone>, ErrorReport> {
        const MAX_RUNS: usize = 10_000;
        let (cron, zone) = schedule(p_expression, p_timezone)?;
        let (Some(from), Some(to)) = (p_from, p_to) else {
            return Err(DomainError::InvalidParameter("the window's ends must not be NULL".into()).into());
        };
        let (from, to) = (to_micros(from)?, to_micros(to)?);
        let zone = zone_for(&zone, from, to)?;
        let mut runs = Vec::new();
        // The window is inclusive of its start: look from just before it.
        let mut at = from - 1;
        while let Some(next) = cron.next_after(&zone, at).filter(|n| *n < to) {
            if runs.len() == MAX_RUNS {
                return Err(DomainError::InvalidParameter(format!(
                    "more than {MAX_RUNS} runs in the window: ask for a shorter one"
                ))
                .into());
            }
            runs.push(from_micros(next)?);
            at = next;
        }
        Ok(SetOfIterator::new(runs))
    }

    /// The expression when it is a valid cron expression (22023 otherwise): the check of
    /// scheduler_job_info.cron and of the tenants' agenda schedules.
    #[pg_extern(immutable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn check_cron(p_expression: Option<&str>) -> Result<String, ErrorReport> {
        schedule(p_expression, Some("UTC"))?;
        Ok(p_expression.unwrap_or_default().trim().to_string())
    }

    /// Wake the database's background workers when the current transaction commits (every
    /// function that queues work calls it). When no worker will run the work (see
    /// `will_run`), says so with a WARNING (SQLSTATE 01000) instead of accepting it silently.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn wake_workers_at_commit() {
        crate::launcher::queued_work_at_commit();
    }

    /// Whether the background workers serve this database, and which: `state` is `running`,
    /// `starting` (the launcher is starting them), `off` (the library is not in
    /// shared_preload_libraries), `disabled` (booking_engine.enabled = off), `not_allowed`
    /// (not in booking_engine.database's allow-list), `no_launcher` or `no_budget`
    /// (booking_engine.max_workers or max_worker_processes left it without workers);
    /// `will_run` says whether queued work will run here.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn worker_status() -> Result<JsonB, ErrorReport> {
        let preloaded = crate::pg::preload::preloaded();
        let workers = Spi::get_one::<JsonB>(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('name', backend_type, 'pid', pid,
                        'backend_start', backend_start, 'state', state, 'wait_event', wait_event,
                        'activity', CASE WHEN state = 'active' THEN query END)
                     ORDER BY backend_type), '[]')
             FROM pg_catalog.pg_stat_activity
             WHERE backend_type LIKE 'booking_engine %'
               AND (datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                    OR backend_type = 'booking_engine launcher')",
        )
        .map_err(DomainError::from)?
        .unwrap_or(JsonB(json!([])));
        let status = crate::launcher::my_status();
        let will_run = crate::launcher::will_run();
        let scheduler_running = status.as_ref().is_some_and(|s| {
            s.workers.iter().any(|(k, pids)| std::ptr::eq(*k, &crate::jobs::worker::SCHEDULER) && !pids.is_empty())
        });
        let state = match will_run {
            Err(why) => why.code(),
            Ok(()) if scheduler_running => "running",
            Ok(()) => "starting",
        };
        let installed = status.as_ref().and_then(|s| s.presence).map(|p| format!("{p:?}").to_lowercase());
        // Each kind of worker by its label: `<label>_pid` (null when none runs) for a kind with
        // one instance per database, `<label>_pids` for one with several.
        let mut doc = serde_json::Map::new();
        for kind in crate::launcher::kinds::kinds() {
            let pids = status
                .as_ref()
                .and_then(|s| s.workers.iter().find(|(k, _)| std::ptr::eq(*k, kind)))
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            if kind.max() > 1 {
                doc.insert(format!("{}_pids", kind.label), json!(pids));
            } else {
                doc.insert(format!("{}_pid", kind.label), json!(pids.first()));
            }
        }
        doc.extend(
            json!({
                "state": state,
                "will_run": will_run.is_ok(),
                "reason": will_run.err().map(|w| w.as_str()),
                "preloaded": preloaded,
                "enabled": gucs::enabled(),
                "allow_list": gucs::database_allow_list().unwrap_or_default(),
                "job_workers": gucs::job_workers(),
                "max_workers": gucs::max_workers(),
                "poll_interval_ms": gucs::poll_interval_ms(),
                "launcher_running": status.as_ref().is_some_and(|s| s.launcher_running),
                "extension_seen": installed,
                "short_of_workers": status.as_ref().map_or(0, |s| s.short),
                "untracked_databases": status.as_ref().map_or(0, |s| s.untracked_databases),
                "stopping": status.as_ref().is_some_and(|s| s.stopping),
                "workers": workers.0,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        Ok(JsonB(serde_json::Value::Object(doc)))
    }
}
