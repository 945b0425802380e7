//! Shared memory of the security module: the rate limiter's counters and the audit queue.
//! Both exist only when the library is preloaded; everything here says so clearly otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use super::audit::{AuditEntry, Push, Queue};
use super::ratelimit::{self, Decision, Slot};
use crate::errors::{DomainError, DomainResult};

/// Counters for this many (bucket, identifier) pairs at once; beyond that the least recently
/// used live counter of a neighbourhood is evicted (see `ratelimit::PROBE`).
pub const RATE_SLOTS: usize = 16384;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct RateTable {
    pub slots: [Slot; RATE_SLOTS],
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable { slots: [Slot::default(); RATE_SLOTS] }
    }
}

// SAFETY: plain old data (integers and byte arrays), no pointers.
unsafe impl PGRXSharedMemory for RateTable {}
// SAFETY: as above.
unsafe impl PGRXSharedMemory for Queue {}

static RATE_TABLE: PgLwLock<RateTable> = unsafe { PgLwLock::new(c"booking_engine_rate_limits") };
pub static AUDIT_QUEUE: PgLwLock<Queue> = unsafe { PgLwLock::new(c"booking_engine_audit_queue") };

/// Set in the postmaster when it preloads the library; every backend inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn init() {
    pg_shmem_init!(RATE_TABLE);
    pg_shmem_init!(AUDIT_QUEUE);
    PRELOADED.store(true, Ordering::Relaxed);
}

fn require_preloaded(what: &str) -> DomainResult<()> {
    if PRELOADED.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err(DomainError::NotReady(format!(
            "{what} needs shared memory: add booking_engine to shared_preload_libraries and restart the server"
        )))
    }
}

/// Counts one request; see `ratelimit::hit`.
pub fn rate_hit(bucket: &str, identifier: &str, now: i64, max: u32, window: i64) -> DomainResult<Decision> {
    require_preloaded("booking.check_rate_limit")?;
    let key = ratelimit::key(bucket, identifier);
    Ok(ratelimit::hit(&mut RATE_TABLE.exclusive().slots, key, now, max, window))
}

/// Queues an entry that must survive the current transaction, and makes sure a flusher for
/// this database will write it. Err when the queue is not there or full.
pub fn enqueue(entry: &AuditEntry) -> DomainResult<()> {
    require_preloaded("a durable audit entry")?;
    // SAFETY: reading a backend-global set at connection start.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let pushed = AUDIT_QUEUE
        .exclusive()
        .push(db, &entry.encode())
        .map_err(|_| DomainError::NotReady("the audit queue is full".into()))?;
    if pushed == Push::StartFlusher {
        let started = BackgroundWorkerBuilder::new("booking_engine audit flusher")
            .set_type("booking_engine audit flusher")
            .set_library("booking_engine")
            .set_function("booking_engine_audit_flusher")
            .set_argument(Some(pg_sys::Datum::from(db)))
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(1)))
            .load_dynamic();
        if started.is_err() {
            AUDIT_QUEUE.exclusive().release(db);
            pgrx::warning!(
                "booking_engine: no background worker slot for the audit flusher (max_worker_processes); the entry waits in shared memory until the next one starts"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pgrx::PgSqlErrorCode;

    #[test]
    fn without_preloading_the_error_says_what_to_do() {
        let e = super::require_preloaded("booking.check_rate_limit").unwrap_err();
        assert_eq!(e.sqlstate(), PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
        assert!(e.message().contains("shared_preload_libraries"), "{}", e.message());
    }
}
