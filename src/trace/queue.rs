//! The span queue: a bounded multi-producer, single-consumer ring in shared memory, written
//! without locks (Dmitry Vyukov's bounded queue: a sequence number per slot says whose turn
//! it is). A backend puts a finished span in with one compare-and-swap and a copy; when the
//! ring is full the span is dropped and counted, never waited for. The exporter takes spans
//! out in order. Pure: the ring can live in any zeroed memory (shared memory in the server, a
//! `Vec` in the unit tests).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of one encoded span (with its database's name) a slot holds.
pub const SLOT_BYTES: usize = 1024 - 16;

#[repr(C)]
pub struct Slot {
    /// Whose turn: `pos` when free for the producer of position `pos`, `pos + 1` once that
    /// producer has filled it, `pos + capacity` once the consumer has emptied it.
    seq: AtomicU64,
    len: AtomicU32,
    _pad: u32,
    data: UnsafeCell<[u8; SLOT_BYTES]>,
}

// SAFETY: `data` is written only by the producer that won the slot's position with a
// compare-and-swap, before it publishes the slot (Release store of seq); the consumer reads it
// only after an Acquire load of that seq, and hands the slot back the same way.
unsafe impl Sync for Slot {}

#[repr(C)]
pub struct Header {
    /// Next position a producer claims.
    tail: AtomicU64,
    /// Next position the consumer takes.
    head: AtomicU64,
    /// Spans refused because the ring was full (since the server started).
    dropped_full: AtomicU64,
    /// Set once the slots' sequence numbers are initialised (zeroed memory is not a valid
    /// ring: slot `i` must start at `i`).
    ready: AtomicU32,
    /// The exporter's PGPROC number plus one (0: no exporter), for its latch.
    pub consumer: AtomicU32,
    /// Whether spans are wanted at all: set by the exporter while it has an endpoint. The one
    /// check every span site makes.
    pub active: AtomicU32,
    _pad: u32,
}

pub struct Ring<'a> {
    header: &'a Header,
    slots: &'a [Slot],
}

pub const fn size_of_ring(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Slot>()
}

/// What a successful push tells the producer about waking the consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The ring was empty: the consumer may be asleep with nothing to do.
    First,
    /// The ring now holds a whole batch: worth exporting before the schedule.
    Batch,
    Queued,
}

impl<'a> Ring<'a> {
    /// # Safety
    /// `base` points to `size_of_ring(capacity)` bytes that started zeroed, stay mapped for
    /// `'a`, are used only through `Ring`, and `capacity` is a power of two.
    pub unsafe fn from_raw(base: *mut u8, capacity: usize) -> Ring<'a> {
        debug_assert!(capacity.is_power_of_two());
        // SAFETY: per the contract; all-zero bytes are a valid Header and valid Slots.
        unsafe {
            let header = &*base.cast::<Header>();
            let first = base.add(std::mem::size_of::<Header>()).cast::<Slot>();
            Ring { header, slots: std::slice::from_raw_parts(first, capacity) }
        }
    }

    pub fn header(&self) -> &Header {
        self.header
    }

    /// Sets each slot's first turn; done once, by the consumer before it marks the ring active
    /// (producers push only into an active ring, which is therefore initialised).
    pub fn init(&self) {
        if self.header.ready.load(Ordering::Acquire) == 0 {
            for (i, s) in self.slots.iter().enumerate() {
                s.seq.store(i as u64, Ordering::Relaxed);
            }
            self.header.ready.store(1, Ordering::Release);
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Spans waiting (approximate while producers are at work).
    pub fn len(&self) -> usize {
        let tail = self.header.tail.load(Ordering::Relaxed);
        let head = self.header.head.load(Ordering::Relaxed);
        tail.saturating_sub(head) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped_full(&self) -> u64 {
        self.header.dropped_full.load(Ordering::Relaxed)
    }

    /// Puts `bytes` in the ring, or counts it dropped when the ring is full (or not
    /// initialised). Never waits. `batch` is the size at which the consumer should be woken.
    pub fn push(&self, bytes: &[u8], batch: usize) -> Option<Pushed> {
        if bytes.len() > SLOT_BYTES || self.header.ready.load(Ordering::Acquire) == 0 {
            self.header.dropped_full.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = self.slots.len() as u64;
        let mut pos = self.header.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[(pos % n) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.cmp(&pos) {
                std::cmp::Ordering::Equal => {
                    match self.header.tail.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => {
                            // SAFETY: this producer owns the slot until it publishes it below.
                            unsafe { (&mut *slot.data.get())[..bytes.len()].copy_from_slice(bytes) };
                            slot.len.store(bytes.len() as u32, Ordering::Relaxed);
                            slot.seq.store(pos + 1, Ordering::Release);
                            let head = self.header.head.load(Ordering::Relaxed);
                            return Some(if head == pos {
                                Pushed::First
                            } else if (pos + 1).wrapping_sub(head) == batch as u64 {
                                Pushed::Batch
                            } else {
                                Pushed::Queued
                            });
                        }
                        Err(now) => pos = now,
                    }
                }
                // The slot still holds the span of one lap ago: the ring is full.
                std::cmp::Ordering::Less => {
                    self.header.dropped_full.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                // Another producer took this position meanwhile.
                std::cmp::Ordering::Greater => pos = self.header.tail.load(Ordering::Relaxed),
            }
        }
    }

    /// Takes the oldest span, if one is ready. Single consumer: only the exporter calls it. A
    /// producer that claimed the next position but has not finished copying holds the spans
    /// behind it back for those few instructions.
    pub fn pop(&self) -> Option<Vec<u8>> {
        let n = self.slots.len() as u64;
        let pos = self.header.head.load(Ordering::Relaxed);
        let slot = &self.slots[(pos % n) as usize];
        if slot.seq.load(Ordering::Acquire) != pos + 1 {
            return None;
        }
        let len = (slot.len.load(Ordering::Relaxed) as usize).min(SLOT_BYTES);
        // SAFETY: published by its producer (Acquire above); no producer touches it until seq
        // moves on below.
        let bytes = unsafe { (&*slot.data.get())[..len].to_vec() };
        self.header.head.store(pos + 1, Ordering::Relaxed);
        slot.seq.store(pos + n, Ordering::Release);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn with_ring<R>(capacity: usize, f: impl FnOnce(&Ring) -> R) -> R {
        let mut mem = vec![0u64; size_of_ring(capacity).div_ceil(8)];
        // SAFETY: zeroed, large enough, lives across the call, capacity a power of two.
        let ring = unsafe { Ring::from_raw(mem.as_mut_ptr().cast(), capacity) };
        ring.init();
        let r = f(&ring);
        drop(mem);
        r
    }

    #[test]
    fn spans_come_out_in_order_and_a_full_ring_drops() {
        with_ring(4, |r| {
            assert_eq!(r.push(b"a", 3), Some(Pushed::First));
            assert_eq!(r.push(b"b", 3), Some(Pushed::Queued));
            assert_eq!(r.push(b"c", 3), Some(Pushed::Batch));
            assert_eq!(r.push(b"d", 3), Some(Pushed::Queued));
            assert_eq!(r.push(b"e", 3), None);
            assert_eq!(r.dropped_full(), 1);
            assert_eq!(r.len(), 4);
            assert_eq!(r.pop().as_deref(), Some(&b"a"[..]));
            assert_eq!(r.push(b"f", 3), Some(Pushed::Queued));
            let rest: Vec<Vec<u8>> = std::iter::from_fn(|| r.pop()).collect();
            assert_eq!(rest, [b"b".to_vec(), b"c".to_vec(), b"d".to_vec(), b"f".to_vec()]);
            assert!(r.is_empty());
            assert_eq!(r.push(b"g", 3), Some(Pushed::First), "empty again");
        });
    }

    #[test]
    fn too_large_or_uninitialised_is_dropped_not_written() {
        with_ring(2, |r| {
            assert_eq!(r.push(&vec![0; SLOT_BYTES + 1], 1), None);
            assert_eq!(r.dropped_full(), 1);
            assert!(r.pop().is_none());
        });
        let mut mem = vec![0u64; size_of_ring(2).div_ceil(8)];
        // SAFETY: as in with_ring.
        let ring = unsafe { Ring::from_raw(mem.as_mut_ptr().cast(), 2) };
        assert_eq!(ring.push(b"x", 1), None, "not initialised yet");
    }

    #[test]
    fn producers_on_threads_lose_nothing_but_what_they_count() {
        with_ring(1024, |r| {
            let taken = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for t in 0..4u8 {
                    s.spawn(move || {
                        for i in 0..5000u32 {
                            let mut b = vec![t];
                            b.extend(i.to_le_bytes());
                            r.push(&b, 512);
                        }
                    });
                }
                s.spawn(|| {
                    let mut got = Vec::new();
                    for _ in 0..2_000_000 {
                        if let Some(b) = r.pop() {
                            got.push(b);
                        }
                        if got.len() as u64 + r.dropped_full() == 20_000 {
                            break;
                        }
                    }
                    taken.lock().unwrap().extend(got);
                });
            });
            let mut got = taken.into_inner().unwrap();
            got.extend(std::iter::from_fn(|| r.pop()));
            assert_eq!(got.len() as u64 + r.dropped_full(), 20_000);
            // Each producer's spans come out in the order it pushed them.
            for t in 0..4u8 {
                let seq: Vec<u32> =
                    got.iter().filter(|b| b[0] == t).map(|b| u32::from_le_bytes([b[1], b[2], b[3], b[4]])).collect();
                assert!(seq.windows(2).all(|w| w[0] < w[1]));
            }
        });
    }
}
