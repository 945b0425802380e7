//! The admin audit trail, written outside the caller's transaction.
//!
//! Why a shared-memory queue and a background worker: a row the caller inserts disappears with
//! the caller's rollback, and Postgres has no autonomous transactions. A second connection
//! (dblink) would need credentials and an extension. So the caller puts each record in a
//! small queue in shared memory and waits until the audit writer, a background worker
//! connected to the same database, has committed it. Only then does the sandbox run the
//! statement: nothing runs unaudited, and the record stays whatever the caller does next.
//!
//! One writer per database is started on demand (a dynamic background worker) and leaves after
//! a minute without work; a writer that dies is started again by the next caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_shmem_init, JsonB};

use crate::errors::{DomainError, DomainResult};

const SLOTS: usize = 16;
/// Largest JSON record a slot holds: an 8000-byte statement even if JSON escaping made every
/// byte six.
pub const PAYLOAD_BYTES: usize = 56 * 1024;
const WRITERS: usize = 16;
/// How long a caller waits for its record to be committed before giving up (and not running
/// the statement).
const WAIT_LIMIT: Duration = Duration::from_secs(15);
/// A writer that was asked to start but never reported is started again after this long.
const START_GRACE: Duration = Duration::from_secs(5);
const WRITER_IDLE_EXIT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u8 = 3;

/// What the writer does with one record: `{"row": {...}}` inserts an attempt, `{"id",
/// "outcome", "outcome_detail"}` records how it ended. Kept here, not in a SQL function, so
/// that no role granted the schema's functions can forge audit rows.
const APPLY_SQL: &str = "
    WITH doc AS (SELECT $1::jsonb AS d),
    ins AS (
        INSERT INTO booking_admin.admin_audit
        SELECT r.* FROM doc, jsonb_populate_record(NULL::booking_admin.admin_audit, doc.d -> 'row') r
        WHERE doc.d ? 'row'
    )
    UPDATE booking_admin.admin_audit a
    SET outcome = doc.d ->> 'outcome', outcome_detail = doc.d ->> 'outcome_detail', finished_at = clock_timestamp()
    FROM doc
    WHERE a.id = (doc.d ->> 'id')::uuid AND doc.d ? 'outcome'";

#[derive(Copy, Clone, PartialEq, Eq)]
#[repr(u8)]
enum SlotState {
    Free,
    Queued,
    /// Queued, but the caller stopped waiting (cancelled): write it, then free it.
    Orphaned,
    Written,
    Failed,
}

#[derive(Copy, Clone)]
#[repr(C)]
struct Slot {
    state: SlotState,
    attempts: u8,
    db: u32,
    /// The writer writing it now (pid), 0 while it waits: two writers never take one record.
    taker: i32,
    waiter: usize,
    len: u32,
    payload: [u8; PAYLOAD_BYTES],
}

#[derive(Copy, Clone)]
#[repr(C)]
struct Writer {
    db: u32,
    /// The writer's latch (in shared memory), 0 while it is starting.
    latch: usize,
    /// Milliseconds since the Unix epoch when it was asked to start.
    requested_ms: u64,
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct AuditQueue {
    slots: [Slot; SLOTS],
    writers: [Writer; WRITERS],
}

unsafe impl PGRXSharedMemory for AuditQueue {}

impl Default for AuditQueue {
    fn default() -> Self {
        let slot = Slot {
            state: SlotState::Free,
            attempts: 0,
            db: 0,
            taker: 0,
            waiter: 0,
            len: 0,
            payload: [0; PAYLOAD_BYTES],
        };
        AuditQueue { slots: [slot; SLOTS], writers: [Writer { db: 0, latch: 0, requested_ms: 0 }; WRITERS] }
    }
}

static QUEUE: PgLwLock<AuditQueue> = unsafe { PgLwLock::new(c"booking_engine_admin_audit") };
/// Set in the postmaster when the queue is requested; inherited by every backend it forks.
static READY: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init` while shared_preload_libraries is being processed.
pub fn init() {
    pg_shmem_init!(QUEUE);
    READY.store(true, Ordering::Relaxed);
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn my_db() -> u32 {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}

fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: latches stored in the queue are PGPROC latches, which live in shared memory
        // for the life of the server.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) }
    }
}

/// Write one audit document through the writer and wait until it is committed.
pub fn write(doc: &serde_json::Value) -> DomainResult<()> {
    if !READY.load(Ordering::Relaxed) {
        return Err(DomainError::NotReady(
            "the admin audit needs booking_engine in shared_preload_libraries (postgresql.conf), then a restart".into(),
        ));
    }
    let bytes = serde_json::to_vec(doc)?;
    if bytes.len() > PAYLOAD_BYTES {
        return Err(DomainError::Internal(format!("audit record of {} bytes exceeds {PAYLOAD_BYTES}", bytes.len())));
    }
    let db = my_db();
    let started = Instant::now();
    let slot = loop {
        if let Some(i) = claim(db, &bytes) {
            break i;
        }
        wait_or_give_up(started, "a free audit queue slot")?;
    };
    // A cancel while waiting must not leave the slot claimed forever.
    PgTryBuilder::new(|| wait_written(db, slot, started)).finally(|| release(slot)).execute()
}

fn claim(db: u32, bytes: &[u8]) -> Option<usize> {
    let mut q = QUEUE.exclusive();
    let i = q.slots.iter().position(|s| s.state == SlotState::Free)?;
    let s = &mut q.slots[i];
    s.state = SlotState::Queued;
    s.attempts = 0;
    s.db = db;
    s.taker = 0;
    // SAFETY: MyLatch is this backend's PGPROC latch.
    s.waiter = unsafe { pg_sys::MyLatch as usize };
    s.len = bytes.len() as u32;
    s.payload[..bytes.len()].copy_from_slice(bytes);
    Some(i)
}

/// After waiting: a written or failed slot is freed; one still queued is left to the writer.
fn release(slot: usize) {
    let mut q = QUEUE.exclusive();
    let s = &mut q.slots[slot];
    s.state = match s.state {
        SlotState::Queued => SlotState::Orphaned,
        _ => SlotState::Free,
    };
}

fn wait_written(db: u32, slot: usize, started: Instant) -> DomainResult<()> {
    loop {
        let (state, writer) = {
            let q = QUEUE.share();
            (q.slots[slot].state, q.writers.iter().find(|w| w.db == db).copied())
        };
        match state {
            SlotState::Written => return Ok(()),
            SlotState::Failed => {
                return Err(DomainError::NotReady(
                    "the admin audit writer could not store the record (see the server log); the statement was not run"
                        .into(),
                ))
            }
            _ => {}
        }
        match writer {
            Some(w) if w.latch != 0 => set_latch(w.latch),
            Some(w) if epoch_ms().saturating_sub(w.requested_ms) < START_GRACE.as_millis() as u64 => {}
            _ => start_writer(db)?,
        }
        wait_or_give_up(started, "the admin audit writer")?;
    }
}

fn wait_or_give_up(started: Instant, what: &str) -> DomainResult<()> {
    if started.elapsed() > WAIT_LIMIT {
        return Err(DomainError::NotReady(format!(
            "gave up after {} s waiting for {what}; the statement was not run",
            WAIT_LIMIT.as_secs()
        )));
    }
    // SAFETY: waiting on our own latch with a timeout; interrupts (cancel) are honoured.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            50,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
    Ok(())
}

fn start_writer(db: u32) -> DomainResult<()> {
    {
        let mut q = QUEUE.exclusive();
        // Another caller may have asked for it a moment ago: one launch per grace period.
        let recent =
            |w: &Writer| w.latch != 0 || epoch_ms().saturating_sub(w.requested_ms) < START_GRACE.as_millis() as u64;
        let i =
            match q.writers.iter().position(|w| w.db == db) {
                Some(i) if recent(&q.writers[i]) => return Ok(()),
                Some(i) => i,
                None => q.writers.iter().position(|w| w.db == 0).ok_or_else(|| {
                    DomainError::NotReady("too many databases with an active admin audit writer".into())
                })?,
            };
        q.writers[i] = Writer { db, latch: 0, requested_ms: epoch_ms() };
    }
    let launched = BackgroundWorkerBuilder::new("booking_engine admin audit writer")
        .set_type("booking_engine admin audit writer")
        .set_library("booking_engine")
        .set_function("booking_admin_audit_writer")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .load_dynamic();
    if launched.is_err() {
        forget_writer(db);
        return Err(DomainError::NotReady(
            "could not start the admin audit writer (no free background worker slot: raise max_worker_processes)"
                .into(),
        ));
    }
    Ok(())
}

fn forget_writer(db: u32) {
    let mut q = QUEUE.exclusive();
    for w in q.writers.iter_mut().filter(|w| w.db == db) {
        *w = Writer { db: 0, latch: 0, requested_ms: 0 };
    }
}

/// However the writer leaves (idle, SIGTERM, an error): records it had taken go back to the
/// queue for the next writer, and its registration is cleared.
#[pg_guard]
unsafe extern "C-unwind" fn writer_exit(_code: i32, _arg: pg_sys::Datum) {
    let (pid, latch) = (pg_sys::MyProcPid, pg_sys::MyLatch as usize);
    // An error raised while the queue lock was held must not deadlock the exit.
    pg_sys::LWLockReleaseAll();
    let mut q = QUEUE.exclusive();
    for s in q.slots.iter_mut().filter(|s| s.taker == pid) {
        s.taker = 0;
    }
    for w in q.writers.iter_mut().filter(|w| w.latch == latch) {
        *w = Writer { db: 0, latch: 0, requested_ms: 0 };
    }
}

/// The audit writer: one per database, started by `write`.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_admin_audit_writer(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    // SAFETY: registers a plain callback, run however the process exits.
    unsafe { pg_sys::before_shmem_exit(Some(writer_exit), arg) };
    {
        let mut q = QUEUE.exclusive();
        match q.writers.iter_mut().find(|w| w.db == db) {
            // SAFETY: MyLatch is this process's PGPROC latch.
            Some(w) if w.latch == 0 => w.latch = unsafe { pg_sys::MyLatch as usize },
            // Another writer serves this database already, or nobody asked any more: leave.
            _ => return,
        }
    }
    let mut idle_since = Instant::now();
    loop {
        let batch = take_batch(db);
        if batch.is_empty() {
            if idle_since.elapsed() > WRITER_IDLE_EXIT && retire_if_idle(db) {
                return;
            }
            if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
                return;
            }
            continue;
        }
        idle_since = Instant::now();
        BackgroundWorker::transaction(|| {
            for (_, doc) in &batch {
                Spi::run_with_args(APPLY_SQL, &[JsonB(doc.clone()).into()]).expect("write the audit record");
            }
        });
        finish_batch(&batch);
    }
}

/// Queued records of this database, counted as one more attempt each; a record that already
/// failed MAX_ATTEMPTS times (the writer died on it) is marked failed instead.
fn take_batch(db: u32) -> Vec<(usize, serde_json::Value)> {
    // SAFETY: MyProcPid is this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    let mut q = QUEUE.exclusive();
    let mut out = Vec::new();
    for (i, s) in q.slots.iter_mut().enumerate() {
        if s.db != db || s.taker != 0 || !matches!(s.state, SlotState::Queued | SlotState::Orphaned) {
            continue;
        }
        let doc = serde_json::from_slice(&s.payload[..s.len as usize]).ok();
        match doc {
            Some(doc) if s.attempts < MAX_ATTEMPTS => {
                s.attempts += 1;
                s.taker = pid;
                out.push((i, doc));
            }
            _ => {
                pgrx::warning!(
                    "admin audit record dropped after {} attempts: {}",
                    s.attempts,
                    String::from_utf8_lossy(&s.payload[..s.len as usize])
                );
                s.state = if s.state == SlotState::Orphaned { SlotState::Free } else { SlotState::Failed };
                set_latch(s.waiter);
            }
        }
    }
    out
}

fn finish_batch(batch: &[(usize, serde_json::Value)]) {
    let mut q = QUEUE.exclusive();
    for (i, _) in batch {
        let s = &mut q.slots[*i];
        s.taker = 0;
        s.state = if s.state == SlotState::Orphaned { SlotState::Free } else { SlotState::Written };
        set_latch(s.waiter);
    }
}

/// Leave only when nothing of this database is queued, under the same lock callers queue
/// under, so no record is left without a writer.
fn retire_if_idle(db: u32) -> bool {
    let mut q = QUEUE.exclusive();
    if q.slots.iter().any(|s| s.db == db && matches!(s.state, SlotState::Queued | SlotState::Orphaned)) {
        return false;
    }
    for w in q.writers.iter_mut().filter(|w| w.db == db) {
        *w = Writer { db: 0, latch: 0, requested_ms: 0 };
    }
    true
}
