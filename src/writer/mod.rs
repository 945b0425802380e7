//! The one out-of-transaction writer: rows that must survive their producer's rollback (audit
//! entries of refusals and failures, admin statements before they run; later deliveries and
//! alerts). Postgres has no autonomous transactions and a second connection would need
//! credentials, so a producer puts the row in a queue in shared memory (`queue`, the pure state
//! machine) and a background writer connected to the same database (`worker`) commits it in a
//! transaction of its own.
//!
//! Each record names its sink, and each sink is one constant statement (`sql/queries/writer_*`)
//! that a feature registers from `_PG_init` (`register_sink`): no SQL function writes these
//! tables on a caller's say-so, so no role granted the schema's functions can forge rows.
//! Producers either `submit` (fire and forget: written even if the producer rolls back or
//! exits) or `submit_and_wait` (return only once committed, e.g. an admin statement that must
//! not run unaudited).

pub mod queue;
pub mod worker;

#[cfg(feature = "pg_test")]
mod pg_tests;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use serde_json::Value;

use crate::clock::epoch_ms;
use crate::errors::{DomainError, DomainResult};
use crate::pg::catalog::my_database_oid;
use crate::pg::shmem::Arena;
use queue::{PushError, Queue, State, Ticket, WriterCall};

/// Where a record goes: one constant statement taking `$1`, a jsonb array of records, and
/// writing them idempotently (a record written twice after a crash changes nothing).
#[derive(Debug)]
pub struct Sink {
    pub name: &'static str,
    statement: &'static str,
    /// Its code in the queue's records (1 and up, in registration order); 0 until registered.
    code: AtomicU8,
}

impl Sink {
    pub const fn new(name: &'static str, statement: &'static str) -> Sink {
        Sink { name, statement, code: AtomicU8::new(0) }
    }

    fn code(&self) -> u8 {
        self.code.load(Ordering::Relaxed)
    }

    pub fn statement(&self) -> &'static str {
        self.statement
    }
}

static SINKS: Mutex<Vec<&'static Sink>> = Mutex::new(Vec::new());

fn sink_list() -> std::sync::MutexGuard<'static, Vec<&'static Sink>> {
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `sink` known to the writer; called from `_PG_init`. A writer applies one batch sink by
/// sink in registration order, so a sink whose records refer to another's registers after it.
pub fn register_sink(sink: &'static Sink) {
    let mut sinks = sink_list();
    if sink.code() == 0 {
        assert!(sinks.len() < usize::from(u8::MAX), "too many writer sinks");
        sinks.push(sink);
        sink.code.store(sinks.len() as u8, Ordering::Relaxed);
    }
}

/// Every registered sink, in registration order.
pub fn sinks() -> Vec<&'static Sink> {
    sink_list().clone()
}

fn sink_of(code: u8) -> Option<&'static Sink> {
    sink_list().iter().copied().find(|s| s.code() == code)
}

// SAFETY: plain old data (integers, enums without payload, byte arrays); the addresses stored
// are latches in shared memory, valid in every process.
unsafe impl PGRXSharedMemory for Queue {}

// SAFETY: a named lock in shared memory, initialised once by pg_shmem_init! while preloading.
static QUEUE: PgLwLock<Queue> = unsafe { PgLwLock::new(c"booking_engine_writer_queue") };
/// The records' bytes; read and written only while holding QUEUE's lock.
static ARENA: Arena = Arena::new(c"booking_engine_writer_arena", queue::ARENA_BYTES);

/// Called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(QUEUE);
    ARENA.request();
}

/// Records waiting for a writer (all databases), the queue's capacity, and the records given up
/// on since the server started; None without the preloaded library.
pub fn stats() -> Option<(usize, usize, u64)> {
    if !crate::pg::preload::preloaded() {
        return None;
    }
    let q = QUEUE.share();
    let (depth, capacity) = q.depth();
    Some((depth, capacity, q.dropped()))
}

/// The arena's bytes. Callers hold QUEUE's lock (shared to read, exclusive to write), which is
/// what makes handing out the slice sound.
fn arena() -> &'static mut [u8] {
    // SAFETY: the segment is ARENA_BYTES long, set up before any backend exists, and every
    // access happens under QUEUE's lock (see the callers).
    unsafe { std::slice::from_raw_parts_mut(ARENA.base(), ARENA.size()) }
}

fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: latches stored in the queue are PGPROC latches, which live in shared memory
        // for the life of the server.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) }
    }
}

fn push(sink: &Sink, doc: &Value, waiter: usize) -> DomainResult<Ticket> {
    crate::pg::preload::require("a record that survives the transaction")?;
    if sink.code() == 0 {
        return Err(DomainError::Internal(format!("the writer sink \"{}\" was never registered", sink.name)));
    }
    let bytes = serde_json::to_vec(doc)?;
    let db = my_database_oid();
    let pushed = {
        let mut q = QUEUE.exclusive();
        q.push(arena(), db, sink.code(), &bytes, waiter, epoch_ms())
    };
    let (ticket, call) = pushed.map_err(|e| match e {
        PushError::Full => DomainError::NotReady("the writer queue is full; the record was not queued".into()),
        PushError::TooLarge(n) => DomainError::Internal(format!(
            "a record of {n} bytes exceeds the writer's largest slot ({} bytes)",
            queue::LARGE_BYTES
        )),
    })?;
    act(db, call);
    Ok(ticket)
}

/// Makes sure the database's writer will see new records.
fn act(db: u32, call: WriterCall) {
    match call {
        WriterCall::Wake(latch) => set_latch(latch),
        WriterCall::Starting => {}
        WriterCall::Start => {
            if !worker::launch(db) {
                QUEUE.exclusive().launch_failed(db);
                pgrx::warning!(
                    "booking_engine: no background worker slot for the writer (raise max_worker_processes); records wait in shared memory"
                );
            }
        }
        WriterCall::NoRoom => {
            pgrx::warning!("booking_engine: every writer slot serves another database; records wait until one frees up")
        }
    }
}

/// Queues `doc` for `sink`; it is written even if this transaction rolls back.
pub fn submit(sink: &Sink, doc: &Value) -> DomainResult<()> {
    push(sink, doc, 0).map(|_| ())
}

/// Queues `doc` for `sink` and returns once it is committed. Err (55000) when the writer
/// refused it or `limit` passed first; a cancel while waiting still leaves it to be written.
pub fn submit_and_wait(sink: &Sink, doc: &Value, limit: Duration) -> DomainResult<()> {
    let started = Instant::now();
    let db = my_database_oid();
    // A full queue frees up as writers commit: wait for a slot within the same limit.
    let ticket = loop {
        // SAFETY: MyLatch is this backend's PGPROC latch.
        match push(sink, doc, unsafe { pg_sys::MyLatch as usize }) {
            Err(DomainError::NotReady(m)) if m.starts_with("the writer queue is full") && started.elapsed() < limit => {
                sleep_on_latch(db)
            }
            other => break other?,
        }
    };
    // A cancel while waiting must not leave the slot claimed forever: abandon it either way.
    PgTryBuilder::new(|| wait_settled(db, ticket, started, limit))
        .finally(|| QUEUE.exclusive().abandon(ticket))
        .execute()
}

fn wait_settled(db: u32, ticket: Ticket, started: Instant, limit: Duration) -> DomainResult<()> {
    loop {
        match QUEUE.share().state(ticket) {
            State::Written => return Ok(()),
            State::Failed => {
                return Err(DomainError::NotReady("the writer could not store the record (see the server log)".into()))
            }
            _ => {}
        }
        if started.elapsed() > limit {
            return Err(DomainError::NotReady(format!("gave up after {} s waiting for the writer", limit.as_secs())));
        }
        sleep_on_latch(db);
    }
}

/// Waits for the writer to set our latch (it does when it settles a record); the timeout only
/// re-checks that the database has a writer (one that died is started again). A cancel or
/// termination request is honoured here.
fn sleep_on_latch(db: u32) {
    // SAFETY: waiting on our own latch.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            250,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
    let call = QUEUE.exclusive().writer_for(db, epoch_ms());
    act(db, call);
}

/// Makes the writer of `db` exit now (it would linger `LINGER` otherwise): DROP DATABASE needs
/// the database to itself. What it had taken goes back to the queue.
pub fn stop_database(db: u32) {
    if !crate::pg::preload::preloaded() {
        return;
    }
    let pid = QUEUE.share().writer_pid(db);
    if let Some(pid) = pid {
        crate::pg::bgworker::terminate(pid);
    }
}

/// Starts a background worker for the writer; BgWorkerStartTime and restart policy are the
/// writer's (it is started on demand, never restarted by the postmaster).
fn builder(db: u32) -> BackgroundWorkerBuilder {
    BackgroundWorkerBuilder::new("booking_engine writer")
        .set_type("booking_engine writer")
        .set_library("booking_engine")
        .set_function("booking_engine_writer_main")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
}
