//! The metric table: a fixed array of series slots in shared memory, written without locks.
//! A series is found by hashing its metric and label values into the array (linear probing);
//! the first writer claims an empty slot with a compare-and-swap, fills in its identity, and
//! publishes it, so readers and other writers see a series only once it is complete. Values
//! are atomics. Pure: the slots can live in any memory (shared memory in the server, a `Vec`
//! in unit tests).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::defs::{Kind, Metric};

/// Encoded label values of one series (values joined by `\u{1f}`); longer sets are cut.
pub const LABEL_BYTES: usize = 120;
/// Value cells of a series: a counter or gauge uses the first; a histogram one per bucket
/// (not cumulative), then the count and the sum (f64 bits).
pub const CELLS: usize = 16;
pub const MAX_BUCKETS: usize = CELLS - 2;
/// Slots probed before a series counts as dropped (the table is then too full to be useful).
const PROBE: usize = 64;
/// How many metrics the table keeps series counts for.
pub const MAX_DEFS: usize = 64;

const EMPTY: u32 = 0;
const CLAIMED: u32 = 1;
const READY: u32 = 2;

#[repr(C)]
pub struct Slot {
    state: AtomicU32,
    def: AtomicU32,
    hash: AtomicU64,
    label_len: AtomicU32,
    labels: UnsafeCell<[u8; LABEL_BYTES]>,
    cells: [AtomicU64; CELLS],
}

// SAFETY: `labels` is written only by the one process that claimed the slot, before it
// publishes the slot with a Release store of READY; everyone else reads it only after an
// Acquire load of READY.
unsafe impl Sync for Slot {}

/// Per metric: live series and series refused by the cap (the `_dropped` series).
#[repr(C)]
pub struct Header {
    series: [AtomicU32; MAX_DEFS],
    dropped: [AtomicU64; MAX_DEFS],
}

/// The table over memory that starts zeroed.
pub struct Table<'a> {
    header: &'a Header,
    slots: &'a [Slot],
}

/// One change to apply: add to a counter, set a gauge, or observe a histogram value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    Add(u64),
    Set(f64),
    Observe(f64),
}

/// A series as read for exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub def: usize,
    pub labels: Vec<String>,
    pub cells: Vec<u64>,
}

pub const fn size_of_table(slots: usize) -> usize {
    std::mem::size_of::<Header>() + slots * std::mem::size_of::<Slot>()
}

fn fnv(def: usize, labels: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ def as u64;
    for b in labels {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Label values as stored: joined by the unit separator, cut at a character boundary.
pub fn encode_labels(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(0x1f);
        }
        out.extend(v.bytes().filter(|b| *b != 0x1f));
    }
    if out.len() > LABEL_BYTES {
        let mut cut = LABEL_BYTES;
        while cut > 0 && (out[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let mut cur = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(cur) + v).to_bits();
        match cell.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => cur = seen,
        }
    }
}

impl<'a> Table<'a> {
    /// # Safety
    /// `base` points to `size_of_table(slots)` bytes that started zeroed and stay mapped for
    /// `'a`, and are only ever used through `Table`.
    pub unsafe fn from_raw(base: *mut u8, slots: usize) -> Table<'a> {
        // SAFETY: per the contract; all-zero bytes are a valid Header and valid empty Slots.
        unsafe {
            let header = &*base.cast::<Header>();
            let first = base.add(std::mem::size_of::<Header>()).cast::<Slot>();
            Table { header, slots: std::slice::from_raw_parts(first, slots) }
        }
    }

    /// Applies `change` to the series of `metric` (declared at `def`) with `labels` (encoded),
    /// creating it unless the metric has reached `cap` series or the table is full: then the
    /// change is counted in the metric's dropped series instead.
    pub fn apply(&self, def: usize, metric: &Metric, labels: &[u8], cap: u32, change: Change) {
        match self.find_or_claim(def, labels, cap) {
            Some(slot) => apply_to(metric, slot, change),
            None => {
                self.header.dropped[def].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn find_or_claim(&self, def: usize, labels: &[u8], cap: u32) -> Option<&Slot> {
        let n = self.slots.len();
        let hash = fnv(def, labels);
        for i in 0..PROBE.min(n) {
            let slot = &self.slots[(hash as usize + i) % n];
            loop {
                match slot.state.load(Ordering::Acquire) {
                    READY => {
                        if slot.hash.load(Ordering::Relaxed) == hash
                            && slot.def.load(Ordering::Relaxed) as usize == def
                            && slot_labels(slot) == labels
                        {
                            return Some(slot);
                        }
                        break;
                    }
                    // Another process is filling this slot in: a few stores away from READY.
                    CLAIMED => std::hint::spin_loop(),
                    _ => {
                        if self.header.series[def].load(Ordering::Relaxed) >= cap {
                            return None;
                        }
                        if slot.state.compare_exchange(EMPTY, CLAIMED, Ordering::Acquire, Ordering::Relaxed).is_err() {
                            continue;
                        }
                        self.header.series[def].fetch_add(1, Ordering::Relaxed);
                        slot.def.store(def as u32, Ordering::Relaxed);
                        slot.hash.store(hash, Ordering::Relaxed);
                        // SAFETY: this process claimed the slot; nobody reads labels before READY.
                        unsafe { (&mut *slot.labels.get())[..labels.len()].copy_from_slice(labels) };
                        slot.label_len.store(labels.len() as u32, Ordering::Relaxed);
                        slot.state.store(READY, Ordering::Release);
                        return Some(slot);
                    }
                }
            }
        }
        None
    }

    /// Every series, in slot order; `defs` are the declared metrics the indexes refer to.
    pub fn read(&self, defs: &[&Metric]) -> Vec<Series> {
        self.slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == READY)
            .map(|s| {
                let labels = String::from_utf8_lossy(slot_labels(s));
                let def = s.def.load(Ordering::Relaxed) as usize;
                let values = if defs.get(def).is_none_or(|d| d.labels.is_empty()) {
                    Vec::new()
                } else {
                    labels.split('\u{1f}').map(str::to_owned).collect()
                };
                Series { def, labels: values, cells: s.cells.iter().map(|c| c.load(Ordering::Relaxed)).collect() }
            })
            .collect()
    }

    /// Changes refused by each of the first `n` metrics' caps, by metric index.
    pub fn dropped(&self, n: usize) -> Vec<u64> {
        (0..n.min(MAX_DEFS)).map(|d| self.header.dropped[d].load(Ordering::Relaxed)).collect()
    }
}

fn slot_labels(slot: &Slot) -> &[u8] {
    let len = (slot.label_len.load(Ordering::Relaxed) as usize).min(LABEL_BYTES);
    // SAFETY: READY was observed with Acquire before this is called; the bytes never change
    // after that.
    unsafe { &(&*slot.labels.get())[..len] }
}

fn apply_to(def: &Metric, slot: &Slot, change: Change) {
    match (def.kind, change) {
        (Kind::Counter, Change::Add(n)) => {
            slot.cells[0].fetch_add(n, Ordering::Relaxed);
        }
        (Kind::Gauge, Change::Set(v)) => slot.cells[0].store(v.to_bits(), Ordering::Relaxed),
        (Kind::Histogram, Change::Observe(v)) => {
            let bucket = def.buckets.iter().position(|b| v <= *b).unwrap_or(def.buckets.len());
            slot.cells[bucket].fetch_add(1, Ordering::Relaxed);
            slot.cells[CELLS - 2].fetch_add(1, Ordering::Relaxed);
            add_f64(&slot.cells[CELLS - 1], v);
        }
        // A change of the wrong kind for its metric is a programming error caught by the unit
        // tests of the call sites' helpers; in production it is ignored rather than crash.
        _ => {}
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    static OPERATIONS: Metric = Metric::counter("test_operations", &["operation", "outcome", "code"], 100, "test");
    static DURATION: Metric =
        Metric::histogram("test_duration_seconds", &["handler"], crate::telemetry::LATENCY, 10, "test");
    const D: usize = 0;

    /// A zeroed table in ordinary memory (u64 alignment covers every field).
    pub fn with_table<R>(slots: usize, f: impl FnOnce(&Table) -> R) -> R {
        let mut mem = vec![0u64; size_of_table(slots).div_ceil(8)];
        // SAFETY: zeroed, large enough, lives across the call.
        let table = unsafe { Table::from_raw(mem.as_mut_ptr().cast(), slots) };
        let r = f(&table);
        drop(mem);
        r
    }

    #[test]
    fn a_series_is_found_again_and_counts_add_up() {
        let d = D;
        with_table(128, |t| {
            let a = encode_labels(&["create", "succeeded", ""]);
            let b = encode_labels(&["create", "refused", "conflict"]);
            t.apply(d, &OPERATIONS, &a, 100, Change::Add(2));
            t.apply(d, &OPERATIONS, &b, 100, Change::Add(1));
            t.apply(d, &OPERATIONS, &a, 100, Change::Add(3));
            let mut rows = t.read(&[&OPERATIONS]);
            rows.sort_by(|x, y| x.labels.cmp(&y.labels));
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].labels, vec!["create", "refused", "conflict"]);
            assert_eq!(rows[0].cells[0], 1);
            assert_eq!(rows[1].cells[0], 5);
        });
    }

    #[test]
    fn the_cap_drops_new_series_and_counts_them() {
        let d = D;
        with_table(128, |t| {
            for i in 0..5 {
                t.apply(d, &OPERATIONS, &encode_labels(&["create", "refused", &format!("c{i}")]), 3, Change::Add(1));
            }
            assert_eq!(t.read(&[&OPERATIONS]).len(), 3);
            assert_eq!(t.dropped(1)[d], 2);
            // An existing series still counts at the cap.
            t.apply(d, &OPERATIONS, &encode_labels(&["create", "refused", "c0"]), 3, Change::Add(1));
            assert_eq!(t.dropped(1)[d], 2);
        });
    }

    #[test]
    fn a_full_table_drops_instead_of_looping() {
        let d = D;
        with_table(4, |t| {
            for i in 0..6 {
                t.apply(d, &OPERATIONS, &encode_labels(&["x", "y", &i.to_string()]), 1000, Change::Add(1));
            }
            assert_eq!(t.read(&[&OPERATIONS]).len(), 4);
            assert_eq!(t.dropped(1)[d], 2);
        });
    }

    #[test]
    fn histograms_count_per_bucket_with_sum() {
        let (d, def) = (D, &DURATION);
        with_table(16, |t| {
            let l = encode_labels(&["h"]);
            for v in [0.0001, 0.2, 1e9] {
                t.apply(d, def, &l, 10, Change::Observe(v));
            }
            let s = &t.read(&[&DURATION])[0];
            assert_eq!(s.cells[0], 1);
            assert_eq!(s.cells[def.buckets.len()], 1, "above every bucket: +Inf only");
            assert_eq!(s.cells[CELLS - 2], 3);
            assert!((f64::from_bits(s.cells[CELLS - 1]) - (1e9 + 0.2001)).abs() < 1e-3);
        });
    }

    #[test]
    fn long_label_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let enc = encode_labels(&[&long]);
        assert!(enc.len() <= LABEL_BYTES);
        assert!(std::str::from_utf8(&enc).is_ok());
    }

    #[test]
    fn writers_on_threads_lose_no_counts() {
        let d = D;
        with_table(256, |t| {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for i in 0..1000 {
                            t.apply(
                                d,
                                &OPERATIONS,
                                &encode_labels(&["a", "b", &(i % 7).to_string()]),
                                100,
                                Change::Add(1),
                            );
                        }
                    });
                }
            });
            let rows = t.read(&[&OPERATIONS]);
            assert_eq!(rows.len(), 7);
            assert_eq!(rows.iter().map(|r| r.cells[0]).sum::<u64>(), 4000);
        });
    }
}
