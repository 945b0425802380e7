//! The background workers: one scheduler (maintenance operations, recovery of jobs whose worker
//! died) and booking_engine.job_workers runners, all serving booking_engine.database.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::JsonB;

use super::exec::{in_subtransaction, in_transaction, run_top_level};
use super::naming::{idle_wait_ms, runner_name, top_level_search_path, top_level_sql, SCHEDULER_NAME};
use super::wake;
use crate::gucs::{DATABASE, ENABLED, JOB_WORKERS, POLL_INTERVAL_MS};

/// Jobs one runner claims at a time. A runner that dies mid-batch sends the whole batch back
/// for another attempt, so this trades throughput against repeated work.
const BATCH_SIZE: i64 = 100;

/// Postgres restarts a worker that exited with an error after this long.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Registers the workers; only possible while the library is being preloaded.
pub fn init() {
    // SAFETY: a plain global read in the postmaster.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    wake::init_shmem();
    let register = |name: &str, function: &str, arg: i32| {
        BackgroundWorkerBuilder::new(name)
            .set_library("booking_engine")
            .set_function(function)
            .set_argument(Some(pg_sys::Datum::from(arg)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(RESTART_AFTER))
            .load();
    };
    register(SCHEDULER_NAME, "booking_engine_scheduler_main", 0);
    for n in 1..=JOB_WORKERS.get() {
        register(&runner_name(n), "booking_engine_runner_main", n);
    }
}

// The C symbols themselves: pgrx's pg_sys wrappers are Rust functions and cannot be handlers.
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
}

/// Set in the scheduler and runner processes: their own routine calls of booking_admin functions
/// (claiming, recovering, recording) are not people's actions and stay out of the audit log.
static IN_JOB_WORKER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn in_job_worker() -> bool {
    IN_JOB_WORKER.load(std::sync::atomic::Ordering::Relaxed)
}

/// SIGTERM uses Postgres's own `die`, so that a job in progress is interrupted at its next
/// interrupt check (pg_terminate_backend and shutdown are prompt); SIGHUP flags a reload.
fn start(slot: usize) {
    IN_JOB_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: standard background worker start-up, before any transaction.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(SignalHandlerForConfigReload));
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let database = DATABASE.get().and_then(|d| d.into_string().ok()).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    wake::register_self(slot);
}

/// Sleeps until woken or `ms` pass, then handles signals: exits on SIGTERM, reloads on SIGHUP.
fn wait(ms: i64) {
    // SAFETY: MyLatch is this process's latch; the flags are the documented wait events.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms.max(1) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
    // SAFETY: set by the SIGHUP handler, read and cleared here only.
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// The workers start with the server, possibly before CREATE EXTENSION in their database.
fn extension_installed() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'booking_engine')")
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Postgres ERRORs and pgrx's own SPI errors, as one message.
fn flatten<T>(outcome: Result<Result<T, pgrx::spi::Error>, String>) -> Result<T, String> {
    outcome.and_then(|r| r.map_err(|e| e.to_string()))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_scheduler_main(_arg: pg_sys::Datum) {
    start(0);
    loop {
        let wait_ms = if ENABLED.get() { scheduler_round() } else { i64::from(POLL_INTERVAL_MS.get()) };
        wait(wait_ms);
    }
}

/// Recovers jobs of dead workers, runs every due operation, and returns how long to sleep.
fn scheduler_round() -> i64 {
    let due: Option<Vec<(String, i32)>> = in_transaction(|| {
        if !extension_installed() {
            return None;
        }
        Spi::run("SELECT booking_admin.recover_stale_jobs()").expect("recover_stale_jobs");
        Some(
            Spi::connect(|c| {
                c.select(
                    "SELECT job_name, timeout_ms FROM booking_admin.scheduler_job_info
                     WHERE enabled AND next_run_at <= clock_timestamp() ORDER BY next_run_at",
                    None,
                    &[],
                )?
                .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<i32>(2)?.unwrap_or(30_000))))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
            .expect("due maintenance operations"),
        )
    });
    let Some(due) = due else { return i64::from(POLL_INTERVAL_MS.get()) };
    for (operation, timeout_ms) in due {
        // run_maintenance records the operation's own failures; this catches the rest (a
        // timeout outside the operation, a dropped function) so the scheduler keeps going.
        in_transaction(|| {
            let outcome = in_subtransaction(timeout_ms, None, || {
                Spi::run_with_args(
                    "SELECT booking_admin.run_maintenance($1, 'scheduler')",
                    &[operation.as_str().into()],
                )
            });
            if let Err(e) = flatten(outcome) {
                pgrx::warning!("booking_engine scheduler: maintenance operation {operation} failed: {e}");
            }
        });
    }
    let next = in_transaction(|| {
        Spi::get_one::<i64>(
            "SELECT (extract(epoch FROM min(next_run_at) - clock_timestamp()) * 1000)::int8
             FROM booking_admin.scheduler_job_info WHERE enabled",
        )
        .ok()
        .flatten()
    });
    idle_wait_ms(POLL_INTERVAL_MS.get(), next)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_runner_main(arg: pg_sys::Datum) {
    let n = arg.value() as i32;
    let name = runner_name(n);
    start(n as usize);
    loop {
        let (claimed, next_due) = if ENABLED.get() { run_batch(&name) } else { (0, None) };
        // A full batch means more may be waiting: look again at once.
        if claimed < BATCH_SIZE as usize {
            wait(idle_wait_ms(POLL_INTERVAL_MS.get(), next_due));
        } else {
            pg_sys::check_for_interrupts!();
        }
    }
}

struct Claimed {
    id: pgrx::Uuid,
    top_level: bool,
    function: String,
    payload: JsonB,
    timeout_ms: i32,
    role: pg_sys::Oid,
}

/// Claims up to a batch of jobs whose handler is registered in this database and runs them:
/// function handlers together in one transaction, each in its own subtransaction; top-level
/// statements one by one. The claim commits first, so a runner that dies leaves its jobs
/// `running` under its name and pid, for booking_admin.recover_stale_jobs. Also returns in how
/// many milliseconds the next scheduled job (a retry, a run_at in the future) becomes due.
fn run_batch(name: &str) -> (usize, Option<i64>) {
    let (claimed, next_due): (Vec<Claimed>, Option<i64>) = in_transaction(|| {
        if !extension_installed() {
            return (Vec::new(), None);
        }
        // The claim must survive a crash even under synchronous_commit = off: if it were lost,
        // a job that crashes the server would be retried forever without counting attempts.
        Spi::run("SET LOCAL synchronous_commit = on").expect("durable claim");
        let claimed = Spi::connect_mut(|c| {
            c.update(
                "SELECT j.id, h.kind = 'top_level', coalesce(h.function::text, ''), j.payload, j.timeout_ms, j.created_by::oid
                 FROM booking_admin.claim_jobs($1, $2::int, ARRAY(SELECT handler FROM booking_admin.job_handlers)) j
                 JOIN booking_admin.job_handlers h USING (handler)
                 ORDER BY j.priority, j.scheduled_at",
                None,
                &[name.into(), BATCH_SIZE.into()],
            )?
            .map(|row| {
                Ok(Claimed {
                    id: row.get(1)?.expect("id"),
                    top_level: row.get(2)?.unwrap_or(false),
                    function: row.get(3)?.unwrap_or_default(),
                    payload: row.get(4)?.unwrap_or(JsonB(serde_json::Value::Null)),
                    timeout_ms: row.get(5)?.unwrap_or(30_000),
                    role: row.get(6)?.unwrap_or(pg_sys::Oid::INVALID),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .expect("claim jobs");
        let next_due = Spi::get_one::<i64>(
            "SELECT (extract(epoch FROM min(scheduled_at) - clock_timestamp()) * 1000)::int8
             FROM booking_admin.jobs
             WHERE status IN ('pending', 'failed') AND scheduled_at > now()
               AND handler IN (SELECT handler FROM booking_admin.job_handlers)",
        )
        .expect("next scheduled job");
        (claimed, next_due)
    });
    let count = claimed.len();
    let (top_level, functions): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|j| j.top_level);
    if !functions.is_empty() {
        in_transaction(|| run_functions(functions));
    }
    for job in top_level {
        run_top_level_job(job);
    }
    (count, next_due)
}

fn run_functions(jobs: Vec<Claimed>) {
    let mut done_ids = Vec::with_capacity(jobs.len());
    let mut done_results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let sql = format!("SELECT {}($1)", job.function);
        let outcome = in_subtransaction(job.timeout_ms, Some(job.role), || {
            Spi::get_one_with_args::<JsonB>(&sql, &[JsonB(job.payload.0.clone()).into()])
        });
        match flatten(outcome) {
            Ok(result) => {
                done_ids.push(job.id);
                done_results.push(result.unwrap_or(JsonB(serde_json::Value::Null)));
            }
            Err(message) => fail(job.id, &message),
        }
    }
    complete(done_ids, done_results);
}

/// One call for every success keeps the per-job cost at one subtransaction and one call. A job
/// that is no longer running (taken back, deleted by an operator) is skipped rather than
/// failing the batch; the same holds for `fail`.
fn complete(ids: Vec<pgrx::Uuid>, results: Vec<JsonB>) {
    Spi::run_with_args("SELECT booking_admin.record_completions($1, $2)", &[ids.into(), results.into()])
        .expect("record completed jobs");
}

fn fail(id: pgrx::Uuid, message: &str) {
    Spi::run_with_args(
        "SELECT booking_admin.record_failure(j, $2) FROM booking_admin.jobs j
         WHERE j.id = $1 AND j.status = 'running' FOR UPDATE",
        &[id.into(), message.into()],
    )
    .expect("record a failed job");
}

fn run_top_level_job(job: Claimed) {
    let payload = &job.payload.0;
    let outcome = top_level_sql(payload)
        .and_then(|sql| Ok((sql, top_level_search_path(payload)?)))
        .and_then(|(sql, path)| run_top_level(sql, job.timeout_ms, job.role, path));
    in_transaction(|| match outcome {
        Ok(()) => complete(vec![job.id], vec![JsonB(serde_json::Value::Null)]),
        Err(message) => fail(job.id, &message),
    });
}
