//! Fixed-window rate limiting over a bounded, open-addressed table of counters.
//!
//! The table lives in shared memory (see `shmem`), so this module only sees a slice of slots
//! and the current instant: every caller holds the table's lock while `hit` runs, which is what
//! makes "at most `max` admitted per window" exact under concurrency.

use std::hash::{Hash, Hasher};

/// How many neighbouring slots one key may occupy. Bounds the work per call; a key that finds
/// no free, expired or own slot among them evicts the least recently used one.
pub const PROBE: usize = 16;

/// One identifier's counter. `key == 0` marks a free slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    pub key: u128,
    pub window_end: i64,
    pub last_seen: i64,
    pub count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still admitted in the current window after this one.
    pub remaining: u32,
    /// When the current window ends (same unit as `now`).
    pub reset_at: i64,
}

/// A 128-bit key for (bucket, identifier): two independently seeded SipHashes, so a collision
/// (two identifiers sharing a counter) is astronomically unlikely. Never 0 (the free marker).
pub fn key(bucket: &str, identifier: &str) -> u128 {
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, bucket, identifier).hash(&mut h);
        h.finish() as u128
    };
    ((half(1) << 64) | half(2)).max(1)
}

/// The count that marks a slot as a block (see `block`) rather than a counter.
const BLOCKED: u32 = u32::MAX;

/// The bucket of blocks: no caller's bucket can be it (Postgres text holds no NUL).
pub const BLOCK_BUCKET: &str = "\0block";

/// The slot of `key` in its neighbourhood, or the one it should take: a free or expired slot
/// first, then the least recently used live counter, a live block only when nothing else is
/// left (a block must outlive the counters' churn).
fn place(slots: &[Slot], key: u128, now: i64) -> (usize, bool) {
    assert!(!slots.is_empty() && key != 0);
    let len = slots.len();
    let home = (key % len as u128) as usize;
    let rank = |s: &Slot| match (s.key == 0 || s.window_end <= now, s.count == BLOCKED) {
        (true, _) => (0, s.last_seen),
        (false, false) => (1, s.last_seen),
        (false, true) => (2, s.last_seen),
    };
    let mut victim = home;
    for i in 0..PROBE.min(len) {
        let idx = (home + i) % len;
        if slots[idx].key == key {
            return (idx, true);
        }
        if rank(&slots[idx]) < rank(&slots[victim]) {
            victim = idx;
        }
    }
    (victim, false)
}

/// Counts one request for `key` at `now` against `max` per `window`; admits it only while the
/// window's count is below `max`. A window starts at a key's first request and lasts `window`.
pub fn hit(slots: &mut [Slot], key: u128, now: i64, max: u32, window: i64) -> Decision {
    let idx = match place(slots, key, now) {
        (idx, true) => idx,
        (victim, false) => {
            slots[victim] = Slot { key, window_end: now + window, last_seen: now, count: 0 };
            victim
        }
    };
    let s = &mut slots[idx];
    if s.window_end <= now {
        s.window_end = now + window;
        s.count = 0;
    }
    s.last_seen = now;
    let allowed = s.count < max;
    if allowed {
        s.count += 1;
    }
    Decision { allowed, remaining: max.saturating_sub(s.count), reset_at: s.window_end }
}

/// Blocks `key` (a `key(BLOCK_BUCKET, ...)`) until `until`: `blocked_until` answers it until then.
pub fn block(slots: &mut [Slot], key: u128, now: i64, until: i64) {
    let (idx, _) = place(slots, key, now);
    slots[idx] = Slot { key, window_end: until, last_seen: now, count: BLOCKED };
}

/// Lifts a block; whether there was one in force.
pub fn unblock(slots: &mut [Slot], key: u128, now: i64) -> bool {
    match place(slots, key, now) {
        (idx, true) => {
            let live = slots[idx].count == BLOCKED && slots[idx].window_end > now;
            slots[idx] = Slot::default();
            live
        }
        _ => false,
    }
}

/// Until when `key` is blocked, if it is at `now`.
pub fn blocked_until(slots: &[Slot], key: u128, now: i64) -> Option<i64> {
    match place(slots, key, now) {
        (idx, true) if slots[idx].count == BLOCKED && slots[idx].window_end > now => Some(slots[idx].window_end),
        _ => None,
    }
}

/// What `hit` would answer for `key` at `now`, without counting a request or taking a slot:
/// `allowed` says whether the next request would be admitted, `remaining` how many more would
/// be, and `reset_at` when the current window ends (a key without a live window: all `max`
/// remain, and a window would start now).
pub fn peek(slots: &[Slot], key: u128, now: i64, max: u32, window: i64) -> Decision {
    let live = match place(slots, key, now) {
        (idx, true) => Some(&slots[idx]).filter(|s| s.window_end > now),
        _ => None,
    };
    match live {
        Some(s) => Decision { allowed: s.count < max, remaining: max.saturating_sub(s.count), reset_at: s.window_end },
        None => Decision { allowed: max > 0, remaining: max, reset_at: now + window },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;

    #[test]
    fn peeking_counts_nothing_and_agrees_with_the_next_hit() {
        let mut t = vec![Slot::default(); 64];
        let k = key("auth", "198.51.100.7");
        let fresh = peek(&t, k, 0, 3, MIN);
        assert_eq!(fresh, Decision { allowed: true, remaining: 3, reset_at: MIN });
        assert!(t.iter().all(|s| s.key == 0), "a peek takes no slot");
        hit(&mut t, k, 0, 3, MIN);
        hit(&mut t, k, 1, 3, MIN);
        for _ in 0..10 {
            assert_eq!(peek(&t, k, 2, 3, MIN), Decision { allowed: true, remaining: 1, reset_at: MIN });
        }
        assert_eq!(hit(&mut t, k, 2, 3, MIN), Decision { allowed: true, remaining: 0, reset_at: MIN });
        assert_eq!(peek(&t, k, 3, 3, MIN), Decision { allowed: false, remaining: 0, reset_at: MIN });
        // Once the window is over, everything remains again.
        assert_eq!(peek(&t, k, MIN, 3, MIN), Decision { allowed: true, remaining: 3, reset_at: 2 * MIN });
    }

    #[test]
    fn admits_exactly_max_per_window_then_resets() {
        let mut t = vec![Slot::default(); 64];
        let k = key("api", "1.2.3.4");
        let got: Vec<bool> = (0..7).map(|i| hit(&mut t, k, i, 5, 15 * MIN).allowed).collect();
        assert_eq!(got, [true, true, true, true, true, false, false]);
        let d = hit(&mut t, k, 15 * MIN - 1, 5, 15 * MIN);
        assert_eq!(d, Decision { allowed: false, remaining: 0, reset_at: 15 * MIN });
        let d = hit(&mut t, k, 15 * MIN, 5, 15 * MIN);
        assert_eq!(d, Decision { allowed: true, remaining: 4, reset_at: 30 * MIN });
    }

    #[test]
    fn buckets_and_identifiers_count_apart() {
        let mut t = vec![Slot::default(); 64];
        assert_ne!(key("api", "a"), key("auth", "a"));
        assert_ne!(key("api", "a"), key("api", "b"));
        assert_ne!(key("ab", "c"), key("a", "bc"));
        for k in [key("api", "a"), key("auth", "a"), key("api", "b")] {
            assert_eq!(hit(&mut t, k, 0, 1, MIN).remaining, 0);
            assert!(!hit(&mut t, k, 1, 1, MIN).allowed);
        }
    }

    #[test]
    fn a_full_neighbourhood_reuses_expired_slots_before_live_ones() {
        let mut t = vec![Slot::default(); PROBE];
        for i in 0..PROBE as u128 {
            hit(&mut t, 1000 + i, i as i64, 1, if i == 7 { 5 } else { MIN });
        }
        assert!(t.iter().all(|s| s.key != 0));
        // Slot of key 1007 expired at 12: the newcomer takes it and every live counter stays.
        hit(&mut t, 5000, 20, 1, MIN);
        assert!(t.iter().any(|s| s.key == 5000));
        assert!(!t.iter().any(|s| s.key == 1007));
        // No expired slot left: the least recently seen live counter (key 1000) goes.
        hit(&mut t, 6000, 21, 1, MIN);
        assert!(!t.iter().any(|s| s.key == 1000));
        assert!(t.iter().filter(|s| s.key != 0).count() == PROBE);
        assert!(!hit(&mut t, 1001, 22, 1, MIN).allowed, "live counters keep their count");
    }

    #[test]
    fn a_block_holds_until_it_expires_or_is_lifted() {
        let mut t = vec![Slot::default(); 64];
        let b = key(BLOCK_BUCKET, "1:203.0.113.7");
        assert_ne!(b, key("api", "1:203.0.113.7"));
        assert_eq!(blocked_until(&t, b, 0), None);
        block(&mut t, b, 0, 10 * MIN);
        assert_eq!(blocked_until(&t, b, 5 * MIN), Some(10 * MIN));
        assert_eq!(blocked_until(&t, b, 10 * MIN), None, "expired at its end");
        block(&mut t, b, 0, 10 * MIN);
        assert!(unblock(&mut t, b, MIN));
        assert_eq!(blocked_until(&t, b, MIN), None);
        assert!(!unblock(&mut t, b, MIN), "nothing left to lift");
    }

    #[test]
    fn counters_churning_through_a_neighbourhood_leave_a_block_in_place() {
        let mut t = vec![Slot::default(); PROBE];
        let b = 77;
        block(&mut t, b, 0, 1000 * MIN);
        // Many more live counters than slots: the least recently used counter goes each time.
        for i in 0..(4 * PROBE) as u128 {
            hit(&mut t, 1000 + i, 1 + i as i64, 1, 100 * MIN);
        }
        assert_eq!(blocked_until(&t, b, 500), Some(1000 * MIN));
    }
}
