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

/// The key of a block of `identifier` in this database: blocks are a database's decisions,
/// counters are the cluster's.
fn block_key(identifier: &str) -> u128 {
    // SAFETY: MyDatabaseId is set once the backend is connected, before any SQL runs.
    let db = unsafe { pg_sys::MyDatabaseId };
    ratelimit::key(ratelimit::BLOCK_BUCKET, &format!("{}:{identifier}", db.to_u32()))
}

/// The answer for a blocked `identifier`: refused, until the block's end.
fn refused_while_blocked(slots: &[Slot], identifier: &str, now: i64) -> Option<Decision> {
    ratelimit::blocked_until(slots, block_key(identifier), now).map(|until| Decision {
        allowed: false,
        remaining: 0,
        reset_at: until,
    })
}

/// Counts one request (see `ratelimit::hit`), refused outright while `identifier` is blocked
/// (`reset_at` is then the block's end).
pub fn rate_hit(bucket: &str, identifier: &str, now: i64, max: u32, window: i64) -> DomainResult<Decision> {
    crate::pg::preload::require("booking.check_rate_limit")?;
    let key = ratelimit::key(bucket, identifier);
    let mut table = RATE_TABLE.exclusive();
    if let Some(refused) = refused_while_blocked(&table.slots, identifier, now) {
        return Ok(refused);
    }
    Ok(ratelimit::hit(&mut table.slots, key, now, max, window))
}

/// Blocks `identifier` in this database until `until`; see `ratelimit::block`.
pub fn block(identifier: &str, now: i64, until: i64) -> DomainResult<()> {
    crate::pg::preload::require("booking_admin.block_client")?;
    ratelimit::block(&mut RATE_TABLE.exclusive().slots, block_key(identifier), now, until);
    Ok(())
}

/// Lifts a block; whether one was in force.
pub fn unblock(identifier: &str, now: i64) -> DomainResult<bool> {
    crate::pg::preload::require("booking_admin.unblock_client")?;
    Ok(ratelimit::unblock(&mut RATE_TABLE.exclusive().slots, block_key(identifier), now))
}

/// Until when `identifier` is blocked in this database, if it is.
pub fn blocked_until(identifier: &str, now: i64) -> DomainResult<Option<i64>> {
    crate::pg::preload::require("booking_admin.client_blocked_until")?;
    Ok(ratelimit::blocked_until(&RATE_TABLE.share().slots, block_key(identifier), now))
}

/// A counter's state without counting (see `ratelimit::peek`); a blocked identifier shows as
/// refused until the block's end.
pub fn rate_peek(bucket: &str, identifier: &str, now: i64, max: u32, window: i64) -> DomainResult<Decision> {
    crate::pg::preload::require("booking.rate_limit_status")?;
    let key = ratelimit::key(bucket, identifier);
    let table = RATE_TABLE.share();
    Ok(refused_while_blocked(&table.slots, identifier, now)
        .unwrap_or_else(|| ratelimit::peek(&table.slots, key, now, max, window)))
}
