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

/// Counts one request for `key` at `now` against `max` per `window`; admits it only while the
/// window's count is below `max`. A window starts at a key's first request and lasts `window`.
pub fn hit(slots: &mut [Slot], key: u128, now: i64, max: u32, window: i64) -> Decision {
    assert!(!slots.is_empty() && key != 0);
    let len = slots.len();
    let home = (key % len as u128) as usize;
    let mut own = None;
    let mut victim = home;
    for i in 0..PROBE.min(len) {
        let idx = (home + i) % len;
        let s = &slots[idx];
        if s.key == key {
            own = Some(idx);
            break;
        }
        let v = &slots[victim];
        let reusable = |s: &Slot| s.key == 0 || s.window_end <= now;
        // Prefer a free or expired slot; among live ones, the least recently used.
        if reusable(s) && !reusable(v) || reusable(s) == reusable(v) && s.last_seen < v.last_seen {
            victim = idx;
        }
    }
    let idx = own.unwrap_or_else(|| {
        slots[victim] = Slot { key, window_end: now + window, last_seen: now, count: 0 };
        victim
    });
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

/// What `hit` would answer for `key` at `now`, without counting a request or taking a slot:
/// `allowed` says whether the next request would be admitted, `remaining` how many more would
/// be, and `reset_at` when the current window ends (a key without a live window: all `max`
/// remain, and a window would start now).
pub fn peek(slots: &[Slot], key: u128, now: i64, max: u32, window: i64) -> Decision {
    assert!(!slots.is_empty() && key != 0);
    let len = slots.len();
    let home = (key % len as u128) as usize;
    let live =
        (0..PROBE.min(len)).map(|i| &slots[(home + i) % len]).find(|s| s.key == key).filter(|s| s.window_end > now);
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
}
