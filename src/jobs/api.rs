//! SQL functions of the job system written in Rust; the queue itself is SQL (sql/jobs.sql).

#[pgrx::pg_schema]
pub mod booking_admin {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::json;

    use crate::errors::DomainError;
    use crate::gucs::{DATABASE, ENABLED, JOB_WORKERS, POLL_INTERVAL_MS};
    use crate::jobs::{backoff, wake};

    /// Milliseconds before the next attempt of a job that failed `retry_count` times so far; a
    /// `jitter` draw in [0, 1) (e.g. `random()`) applies full jitter, NULL none.
    #[pg_extern(immutable, parallel_safe)]
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

    /// Wake the background workers when the current transaction commits (enqueue_job calls it).
    #[pg_extern(volatile)]
    pub fn wake_workers_at_commit() {
        wake::wake_at_commit();
    }

    /// Whether the background workers run, and which: `state` is `running`, `off` (the library
    /// is not in shared_preload_libraries), `disabled` (booking_engine.enabled = off),
    /// `other_database` (they serve another database) or `starting` (none visible yet).
    #[pg_extern(volatile)]
    pub fn worker_status() -> Result<JsonB, ErrorReport> {
        let preloaded = wake::preloaded();
        let database = DATABASE.get().and_then(|d| d.into_string().ok()).unwrap_or_default();
        let workers = Spi::get_one::<JsonB>(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('name', backend_type, 'pid', pid,
                        'backend_start', backend_start, 'state', state, 'wait_event', wait_event)
                     ORDER BY backend_type), '[]')
             FROM pg_catalog.pg_stat_activity WHERE backend_type LIKE 'booking_engine %'",
        )
        .map_err(DomainError::from)?
        .unwrap_or(JsonB(json!([])));
        let this_database = Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")
            .map_err(DomainError::from)?
            .unwrap_or_default();
        let running = workers.0.as_array().is_some_and(|w| !w.is_empty());
        let state = if !preloaded {
            "off"
        } else if !ENABLED.get() {
            "disabled"
        } else if database != this_database {
            "other_database"
        } else if running {
            "running"
        } else {
            "starting"
        };
        Ok(JsonB(json!({
            "state": state,
            "preloaded": preloaded,
            "enabled": ENABLED.get(),
            "database": database,
            "job_workers": JOB_WORKERS.get(),
            "poll_interval_ms": POLL_INTERVAL_MS.get(),
            "workers": workers.0,
        })))
    }
}
