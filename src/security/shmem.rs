//! Shared memory of the security module: the rate limiter's counters. They exist only when the
//! library is preloaded; the limiter says so clearly otherwise.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use super::ratelimit::{self, Decision, Slot};
use crate::errors::DomainResult;

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

// SAFETY: a named lock in shared memory, initialised once by pg_shmem_init! while preloading.
static RATE_TABLE: PgLwLock<RateTable> = unsafe { PgLwLock::new(c"booking_engine_rate_limits") };

/// Called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(RATE_TABLE);
}

/// Counts one request; see `ratelimit::hit`.
pub fn rate_hit(bucket: &str, identifier: &str, now: i64, max: u32, window: i64) -> DomainResult<Decision> {
    crate::pg::preload::require("booking.check_rate_limit")?;
    let key = ratelimit::key(bucket, identifier);
    Ok(ratelimit::hit(&mut RATE_TABLE.exclusive().slots, key, now, max, window))
}

/// A counter's state without counting; see `ratelimit::peek`.
pub fn rate_peek(bucket: &str, identifier: &str, now: i64, max: u32, window: i64) -> DomainResult<Decision> {
    crate::pg::preload::require("booking.rate_limit_status")?;
    let key = ratelimit::key(bucket, identifier);
    Ok(ratelimit::peek(&RATE_TABLE.share().slots, key, now, max, window))
}
