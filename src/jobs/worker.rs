//! The per-database workers: one scheduler (maintenance operations, recovery of jobs whose
//! worker died) and booking_engine.job_workers runners in every database where booking_engine
//! is installed, started by the launcher (src/launcher), which knows them as the two kinds
//! below. The scheduler is the launcher's probe: it is started in every database to see
//! whether booking_engine is there. Each leaves when the extension is dropped from its database.

use pgrx::prelude::*;
use pgrx::JsonB;

use super::exec::{in_subtransaction, run_top_level};
use super::naming::{idle_wait_ms, runner_name, top_level_search_path, top_level_sql, RUNNER_NAME, SCHEDULER_NAME};
use crate::gucs;
use crate::launcher;
use crate::launcher::dbworker;
use crate::launcher::kinds::{Need, WorkerKind};
use crate::pg::bgworker::{in_transaction, report_activity, wait};
use crate::pg::catalog::extension_installed;
use crate::pg::error::Caught;
use crate::pg::logctx::with_context;
use crate::trace::{self, Span, SpanKind, TraceContext};

/// The scheduler, one per database: the launcher's probe (see `launcher::kinds::Need::Probe`).
pub static SCHEDULER: WorkerKind =
    WorkerKind::new(SCHEDULER_NAME, "scheduler", "booking_engine_scheduler_main", Need::Probe, true);

/// The runners: `booking_engine.job_workers` per database.
pub static RUNNER: WorkerKind = WorkerKind::new(
    RUNNER_NAME,
    "runner",
    "booking_engine_runner_main",
    Need::PerDatabase { count: runners_per_database, max: MAX_RUNNERS },
    true,
);

/// Runners per database at most: `booking_engine.job_workers`' maximum.
const MAX_RUNNERS: usize = 32;

fn runners_per_database() -> usize {
    gucs::job_workers().max(0) as usize
}

/// Jobs one runner claims at a time. A runner that dies mid-batch sends the whole batch back
/// for another attempt, so this trades throughput against repeated work.
const BATCH_SIZE: i64 = 100;

/// Whether pg_restore is connected to the worker's database. A restore creates the extension
/// first and copies its tables' rows afterwards: maintenance inserting rows meanwhile (history
/// rows with identity keys) would make the copy fail, and jobs would run before the tables
/// their handlers use are back. So the workers do nothing while it is there.
fn restore_in_progress() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity
                        WHERE datname = pg_catalog.current_database() AND application_name = 'pg_restore')",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Why a unit of work failed: its SQLSTATE (the error type its span records) and message.
struct Failure {
    sqlstate: String,
    message: String,
}

/// Postgres ERRORs and pgrx's own SPI errors, as one failure.
fn flatten<T>(outcome: Result<Result<T, pgrx::spi::Error>, Caught>) -> Result<T, Failure> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure { sqlstate: "XX000".into(), message: e.to_string() }),
        Err(c) => Err(Failure { sqlstate: c.sqlstate(), message: c.message }),
    }
}

/// A top-level statement's failure, "SQLSTATE: message" as run_top_level reports it.
fn top_level_failure(message: String) -> Failure {
    let code =
        message.get(..5).filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric()) && message[5..].starts_with(':'));
    Failure { sqlstate: code.unwrap_or(trace::OTHER_ERROR).to_string(), message }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_scheduler_main(arg: pg_sys::Datum) {
    // As the probe, the start-up has looked whether the extension is here (and exited if not).
    let db = dbworker::start(arg).db;
    loop {
        let wait_ms = if gucs::enabled() {
            scheduler_round(db)
        } else {
            in_transaction(extension_installed).then(|| i64::from(gucs::poll_interval_ms()))
        };
        let Some(wait_ms) = wait_ms else {
            launcher::found_absent(db);
            return;
        };
        wait(wait_ms);
    }
}

/// Recovers jobs of dead workers, runs every due operation, and returns how long to sleep;
/// None once the extension is gone from the database.
fn scheduler_round(db: u32) -> Option<i64> {
    let due: Option<Vec<(String, i32)>> = in_transaction(|| {
        if !extension_installed() {
            return None;
        }
        if restore_in_progress() {
            return Some(Vec::new());
        }
        launcher::probe_needs(db);
        Spi::run("SELECT booking_admin.recover_stale_jobs()").expect("recover_stale_jobs");
        Some(
            Spi::connect(|c| {
                c.select("SELECT job_name, timeout_ms FROM booking_admin.due_operations()", None, &[])?
                    .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<i32>(2)?.unwrap_or(30_000))))
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
            .expect("due maintenance operations"),
        )
    });
    let due = due?;
    for (operation, timeout_ms) in due {
        // run_maintenance records the operation's own failures; this catches the rest (a
        // timeout outside the operation, a dropped function) so the scheduler keeps going.
        report_activity(Some(&format!("maintenance operation {operation}")));
        in_transaction(|| {
            let span = Span::start("booking.maintenance", SpanKind::Internal);
            span.set("booking.maintenance.operation", operation.as_str());
            let context = match span.trace_id() {
                Some(t) => format!("booking_engine maintenance operation {operation}, trace {t}"),
                None => format!("booking_engine maintenance operation {operation}"),
            };
            with_context(&context, || {
                let outcome = in_subtransaction(timeout_ms, None, || {
                    Spi::get_one_with_args::<JsonB>(
                        "SELECT booking_admin.run_maintenance($1, 'scheduler')",
                        &[operation.as_str().into()],
                    )
                });
                match flatten(outcome) {
                    Ok(result) => {
                        let status = result.as_ref().and_then(|r| r.0.get("status")).and_then(|s| s.as_str());
                        span.set("booking.maintenance.status", status.unwrap_or("unknown"));
                        if let Some(error) = result.as_ref().and_then(|r| r.0.get("error")).and_then(|e| e.as_str()) {
                            span.fail(trace::OTHER_ERROR, error);
                        }
                    }
                    Err(e) => {
                        span.fail(&e.sqlstate, &e.message);
                        pgrx::warning!(
                            "booking_engine scheduler: maintenance operation {operation} failed: {}",
                            e.message
                        );
                    }
                }
            });
        });
    }
    report_activity(None);
    let next = in_transaction(|| Spi::get_one::<i64>("SELECT booking_admin.scheduler_wait_ms()").ok().flatten());
    Some(idle_wait_ms(gucs::poll_interval_ms(), next))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_runner_main(arg: pg_sys::Datum) {
    let started = dbworker::start(arg);
    let (db, name) = (started.db, runner_name(started.instance as i32));
    loop {
        let batch =
            if gucs::enabled() { run_batch(&name) } else { in_transaction(extension_installed).then_some((0, None)) };
        let Some((claimed, next_due)) = batch else {
            launcher::found_absent(db);
            return;
        };
        // A full batch means more may be waiting: look again at once.
        if claimed < BATCH_SIZE as usize {
            wait(idle_wait_ms(gucs::poll_interval_ms(), next_due));
        } else {
            pg_sys::check_for_interrupts!();
        }
    }
}

struct Claimed {
    id: pgrx::Uuid,
    name: String,
    handler: String,
    top_level: bool,
    function: String,
    payload: JsonB,
    timeout_ms: i32,
    role: pg_sys::Oid,
    /// Why the job must not run at all (an unresolvable handler function, a role the enqueuer
    /// could not act as): recorded as its failure instead.
    refused: Option<String>,
    /// The end of a freeze window the job must wait for (it respects the freeze calendar).
    frozen_until: Option<String>,
    /// The enqueuer's trace context, and which attempt this is (1 first).
    trace: Option<TraceContext>,
    attempt: i32,
}

const CLAIM_SQL: &str = include_str!("../../sql/queries/jobs_claim.sql");

/// Claims up to a batch of jobs whose handler is registered in this database and runs them:
/// function handlers together in one transaction, each in its own subtransaction; top-level
/// statements one by one. The claim commits first, so a runner that dies leaves its jobs
/// `running` under its name and pid, for booking_admin.recover_stale_jobs. Also returns in how
/// many milliseconds the next scheduled job (a retry, a run_at in the future) becomes due.
/// None once the extension is gone from the database.
fn run_batch(name: &str) -> Option<(usize, Option<i64>)> {
    let (claimed, next_due): (Vec<Claimed>, Option<i64>) = in_transaction(|| {
        if !extension_installed() {
            return None;
        }
        if restore_in_progress() {
            return Some((Vec::new(), None));
        }
        // The claim must survive a crash even under synchronous_commit = off: if it were lost,
        // a job that crashes the server would be retried forever without counting attempts.
        Spi::run("SET LOCAL synchronous_commit = on").expect("durable claim");
        let claimed = Spi::connect_mut(|c| {
            c.update(CLAIM_SQL, None, &[name.into(), BATCH_SIZE.into()])?
                .map(|row| {
                    Ok(Claimed {
                        id: row.get(1)?.expect("id"),
                        top_level: row.get(2)?.unwrap_or(false),
                        function: row.get(3)?.unwrap_or_default(),
                        payload: row.get(4)?.unwrap_or(JsonB(serde_json::Value::Null)),
                        timeout_ms: row.get(5)?.unwrap_or(30_000),
                        role: row.get(6)?.unwrap_or(pg_sys::Oid::INVALID),
                        name: row.get(7)?.unwrap_or_default(),
                        handler: row.get(8)?.unwrap_or_default(),
                        refused: row.get(9)?,
                        frozen_until: row.get(10)?,
                        trace: row
                            .get::<String>(11)?
                            .and_then(|p| trace::context::parse(&p, row.get::<String>(12).ok().flatten().as_deref())),
                        attempt: row.get(13)?.unwrap_or(1),
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
        Some((claimed, next_due))
    })?;
    let count = claimed.len();
    let (refused, claimed): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|j| j.refused.is_some());
    let (frozen, claimed): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|j| j.frozen_until.is_some());
    if !refused.is_empty() || !frozen.is_empty() {
        in_transaction(|| {
            for job in &refused {
                let span = job_span(job);
                failed(job, &span, &top_level_failure(job.refused.clone().unwrap_or_default()));
            }
            // Held back by the freeze calendar: pending again at the window's end, no attempt counted.
            for job in &frozen {
                Spi::run_with_args(
                    "SELECT booking_admin.defer_job($1, $2::timestamptz)",
                    &[job.id.into(), job.frozen_until.as_deref().into()],
                )
                .expect("defer a frozen job");
            }
        });
    }
    let (top_level, functions): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|j| j.top_level);
    if !functions.is_empty() {
        in_transaction(|| run_functions(functions));
    }
    for job in top_level {
        run_top_level_job(job);
    }
    if count > 0 {
        report_activity(None);
    }
    Some((count, next_due))
}

fn run_functions(jobs: Vec<Claimed>) {
    let mut done_ids = Vec::with_capacity(jobs.len());
    let mut done_results = Vec::with_capacity(jobs.len());
    for job in jobs {
        report_activity(Some(&activity(&job)));
        let span = job_span(&job);
        let sql = format!("SELECT {}($1)", job.function);
        let outcome = with_context(&log_context(&job, Some(&span)), || {
            in_subtransaction(job.timeout_ms, Some(job.role), || {
                Spi::get_one_with_args::<JsonB>(&sql, &[JsonB(job.payload.0.clone()).into()])
            })
        });
        match flatten(outcome) {
            Ok(result) => {
                span.set("booking.job.outcome", "completed");
                done_ids.push(job.id);
                done_results.push(result.unwrap_or(JsonB(serde_json::Value::Null)));
            }
            Err(failure) => failed(&job, &span, &failure),
        }
    }
    complete(done_ids, done_results);
}

/// The span of one attempt of a job: a messaging consumer span (the queue is the handler's),
/// in the trace the job was enqueued in, else a trace of its own.
fn job_span(job: &Claimed) -> Span {
    let span = Span::carried(job.trace.as_ref(), &format!("process {}", job.handler), SpanKind::Consumer);
    if span.recording() {
        span.set("messaging.system", "booking_engine");
        span.set("messaging.operation.type", "process");
        span.set("messaging.operation.name", "process");
        span.set("messaging.destination.name", job.handler.as_str());
        span.set("messaging.message.id", job.id.to_string());
        span.set("booking.job.id", job.id.to_string());
        span.set("booking.job.name", job.name.as_str());
        span.set("booking.job.handler", job.handler.as_str());
        span.set("booking.job.attempt", job.attempt);
    }
    span
}

/// What a job's log lines carry (as their CONTEXT): the job, its attempt, its trace.
fn log_context(job: &Claimed, span: Option<&Span>) -> String {
    let trace_id = span.and_then(Span::trace_id).or_else(|| job.trace.as_ref().map(TraceContext::trace_id_hex));
    let mut text =
        format!("booking_engine job {} ({}, handler {}, attempt {})", job.id, job.name, job.handler, job.attempt);
    if let Some(t) = trace_id {
        text.push_str(&format!(", trace {t}"));
    }
    text
}

/// Records a failed attempt: its span says whether and when the job is retried; a job given
/// up on (dead) is logged with its ids.
fn failed(job: &Claimed, span: &Span, failure: &Failure) {
    let message = &failure.message;
    span.fail(&failure.sqlstate, message);
    let (status, delay) = fail(job.id, message, span.recording());
    span.set("booking.job.outcome", status.as_deref().unwrap_or("failed"));
    if let Some(ms) = delay {
        span.set("booking.job.retry_delay_ms", ms.max(0));
    }
    if status.as_deref() == Some("dead") {
        with_context(&log_context(job, Some(span)), || {
            pgrx::log!(
                "booking_engine runner: job {} ({}) is dead after {} attempts: {message}",
                job.id,
                job.handler,
                job.attempt
            )
        });
    }
}

/// One call for every success keeps the per-job cost at one subtransaction and one call. A job
/// that is no longer running (taken back, deleted by an operator) is skipped rather than
/// failing the batch; the same holds for `fail`.
fn complete(ids: Vec<pgrx::Uuid>, results: Vec<JsonB>) {
    Spi::run_with_args("SELECT booking_admin.record_completions($1, $2)", &[ids.into(), results.into()])
        .expect("record completed jobs");
}

/// Records a failed attempt: then the job is `failed` (retried later) or `dead`, or it was no
/// longer running (None). With `delay`, also in how many milliseconds a retry is due.
fn fail(id: pgrx::Uuid, message: &str, delay: bool) -> (Option<String>, Option<i64>) {
    Spi::connect_mut(|c| -> Result<_, pgrx::spi::Error> {
        // Returns no row: the row lock comes after record_failure updated the row.
        c.update(
            "SELECT booking_admin.record_failure(j, $2) FROM booking_admin.jobs j
             WHERE j.id = $1 AND j.status = 'running' FOR UPDATE",
            None,
            &[id.into(), message.into()],
        )?;
        let row = c.update(
            "SELECT status, CASE WHEN $2 AND status = 'failed'
                                 THEN (extract(epoch FROM scheduled_at - clock_timestamp()) * 1000)::int8 END
             FROM booking_admin.jobs WHERE id = $1",
            None,
            &[id.into(), delay.into()],
        )?;
        let (status, ms) = row.first().get_two::<String, i64>().unwrap_or((None, None));
        Ok((status.filter(|s| s == "failed" || s == "dead"), ms))
    })
    .expect("record a failed job")
}

/// What `pg_stat_activity.query` shows while a job runs.
fn activity(job: &Claimed) -> String {
    format!("job {} ({}, handler {})", job.id, job.name, job.handler)
}

fn run_top_level_job(job: Claimed) {
    report_activity(Some(&activity(&job)));
    let payload = &job.payload.0;
    // The statement runs in transactions of its own (and may commit along the way): its span
    // is recorded afterwards, from when it started.
    let started = trace::now_ns();
    let outcome = with_context(&log_context(&job, None), || {
        top_level_sql(payload)
            .and_then(|sql| Ok((sql, top_level_search_path(payload)?)))
            .and_then(|(sql, path)| run_top_level(sql, job.timeout_ms, job.role, path))
    });
    in_transaction(|| {
        let span = job_span(&job);
        span.started_at(started);
        match outcome {
            Ok(()) => {
                span.set("booking.job.outcome", "completed");
                complete(vec![job.id], vec![JsonB(serde_json::Value::Null)])
            }
            Err(message) => failed(&job, &span, &top_level_failure(message)),
        }
    });
}
