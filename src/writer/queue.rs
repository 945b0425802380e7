//! The writer service's queue, as a pure state machine (no Postgres): a fixed array that lives
//! in shared memory, under one lock, holding records that must outlive their producer's
//! transaction until a writer of their database has committed them.
//!
//! Two size classes share the lock: many small slots (audit entries) and a few large ones (an
//! admin statement with its text). The headers live here; the records' bytes live in an arena
//! of `ARENA_BYTES` passed in by the caller (shared memory, or a vector in the tests), which
//! is only touched under the same lock. A record is free, queued, orphaned (queued, but its waiting
//! producer gave up: write it, then free it), written or failed (kept until its waiting
//! producer reads the outcome). A writer takes records (marking them with its pid, so two
//! writers never write one record), and frees or settles them only after its transaction
//! committed: a crash in between writes a record twice at worst, which the sinks' idempotent
//! statements turn into nothing. A record taken `MAX_ATTEMPTS` times (its writer kept dying on
//! it) is given up.

pub const SMALL_BYTES: usize = 1024;
pub const SMALL_SLOTS: usize = 512;
/// An 8000-byte admin statement even if JSON escaping made every byte six, plus its row.
pub const LARGE_BYTES: usize = 56 * 1024;
pub const LARGE_SLOTS: usize = 16;
/// How many databases can have a writer at once.
pub const MAX_WRITERS: usize = 16;
pub const MAX_ATTEMPTS: u8 = 3;
/// A writer that was asked to start but has not registered is asked again after this long.
pub const START_GRACE_MS: u64 = 5_000;
/// The payload arena: the small slots, then the large ones.
pub const ARENA_BYTES: usize = SMALL_SLOTS * SMALL_BYTES + LARGE_SLOTS * LARGE_BYTES;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Free,
    Queued,
    Orphaned,
    Written,
    Failed,
}

#[derive(Copy, Clone, Debug)]
#[repr(C)]
struct Header {
    state: State,
    sink: u8,
    attempts: u8,
    db: u32,
    /// The writer writing it now (pid), 0 while it waits.
    taker: i32,
    /// The producer's latch (an address in shared memory), 0 when nobody waits.
    waiter: usize,
    seq: u64,
    len: u32,
}

const FREE_HEADER: Header =
    Header { state: State::Free, sink: 0, attempts: 0, db: 0, taker: 0, waiter: 0, seq: 0, len: 0 };

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct Writer {
    db: u32,
    /// The writer's latch, 0 while it is starting.
    latch: usize,
    pid: i32,
    /// Milliseconds since the Unix epoch when it was asked to start.
    requested_ms: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Small,
    Large,
}

/// Where a record sits and which use of that slot it is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub class: Class,
    pub index: usize,
    pub seq: u64,
}

/// What the producer must do about the database's writer after queuing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WriterCall {
    /// Set this latch: the writer is running.
    Wake(usize),
    /// A writer was asked to start a moment ago; it will find the record.
    Starting,
    /// Launch a writer for the database (the entry is reserved for it).
    Start,
    /// Every writer entry serves another database: the record waits for one to free up.
    NoRoom,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    TooLarge(usize),
}

/// A record taken for writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub ticket: Ticket,
    pub sink: u8,
    pub bytes: Vec<u8>,
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct Queue {
    next_seq: u64,
    /// Records given up on since the server started (see `take`), for the metrics.
    dropped: u64,
    small: [Header; SMALL_SLOTS],
    large: [Header; LARGE_SLOTS],
    writers: [Writer; MAX_WRITERS],
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            next_seq: 1,
            dropped: 0,
            small: [FREE_HEADER; SMALL_SLOTS],
            large: [FREE_HEADER; LARGE_SLOTS],
            writers: [Writer::default(); MAX_WRITERS],
        }
    }
}

/// Where a slot's bytes sit in the arena.
fn span(class: Class, index: usize) -> std::ops::Range<usize> {
    let start = match class {
        Class::Small => index * SMALL_BYTES,
        Class::Large => SMALL_SLOTS * SMALL_BYTES + index * LARGE_BYTES,
    };
    start..start + if class == Class::Small { SMALL_BYTES } else { LARGE_BYTES }
}

fn pending(h: &Header) -> bool {
    matches!(h.state, State::Queued | State::Orphaned)
}

impl Queue {
    fn headers(&self) -> impl Iterator<Item = (Class, usize, &Header)> {
        let small = self.small.iter().enumerate().map(|(i, h)| (Class::Small, i, h));
        small.chain(self.large.iter().enumerate().map(|(i, h)| (Class::Large, i, h)))
    }

    fn header_mut(&mut self, class: Class, index: usize) -> &mut Header {
        match class {
            Class::Small => &mut self.small[index],
            Class::Large => &mut self.large[index],
        }
    }

    /// The header of `t` if the slot still holds that record.
    fn current(&mut self, t: Ticket) -> Option<&mut Header> {
        Some(self.header_mut(t.class, t.index)).filter(|h| h.seq == t.seq && h.state != State::Free)
    }

    /// Queues `bytes` for `db`'s writer to apply to `sink`; `waiter` is the latch to set when it
    /// is settled (0: nobody waits, the slot is freed once written).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        arena: &mut [u8],
        db: u32,
        sink: u8,
        bytes: &[u8],
        waiter: usize,
        now_ms: u64,
    ) -> Result<(Ticket, WriterCall), PushError> {
        assert!(db != 0 && arena.len() == ARENA_BYTES);
        if bytes.len() > LARGE_BYTES {
            return Err(PushError::TooLarge(bytes.len()));
        }
        let free_small =
            (bytes.len() <= SMALL_BYTES).then(|| self.small.iter().position(|h| h.state == State::Free)).flatten();
        let (class, index) = match free_small {
            Some(i) => (Class::Small, i),
            None => (Class::Large, self.large.iter().position(|h| h.state == State::Free).ok_or(PushError::Full)?),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        *self.header_mut(class, index) =
            Header { state: State::Queued, sink, attempts: 0, db, taker: 0, waiter, seq, len: bytes.len() as u32 };
        let at = span(class, index).start;
        arena[at..at + bytes.len()].copy_from_slice(bytes);
        Ok((Ticket { class, index, seq }, self.writer_for(db, now_ms)))
    }

    /// What to do so that `db` has a writer: wake it, wait for it, or start one.
    pub fn writer_for(&mut self, db: u32, now_ms: u64) -> WriterCall {
        if let Some(w) = self.writers.iter_mut().find(|w| w.db == db) {
            if w.latch != 0 {
                return WriterCall::Wake(w.latch);
            }
            if now_ms.saturating_sub(w.requested_ms) < START_GRACE_MS {
                return WriterCall::Starting;
            }
            w.requested_ms = now_ms;
            return WriterCall::Start;
        }
        match self.writers.iter_mut().find(|w| w.db == 0) {
            Some(w) => {
                *w = Writer { db, latch: 0, pid: 0, requested_ms: now_ms };
                WriterCall::Start
            }
            None => WriterCall::NoRoom,
        }
    }

    /// The pid of the writer serving `db`, if one is running.
    pub fn writer_pid(&self, db: u32) -> Option<i32> {
        self.writers.iter().find(|w| w.db == db && w.pid != 0).map(|w| w.pid)
    }

    /// A writer could not be launched: forget the reservation (the next producer tries again).
    pub fn launch_failed(&mut self, db: u32) {
        for w in self.writers.iter_mut().filter(|w| w.db == db && w.latch == 0) {
            *w = Writer::default();
        }
    }

    /// A writer process announces itself; false when another one already serves `db` or
    /// nobody asked for one (it should leave).
    pub fn register(&mut self, db: u32, latch: usize, pid: i32) -> bool {
        match self.writers.iter_mut().find(|w| w.db == db) {
            Some(w) if w.latch == 0 => {
                w.latch = latch;
                w.pid = pid;
                true
            }
            _ => false,
        }
    }

    /// Up to `max` of `db`'s pending records, oldest first, marked as taken by `pid`. Records
    /// already taken `MAX_ATTEMPTS` times are given up instead: they come back as the second
    /// list (for the server log), with the latches to set of producers waiting on them.
    pub fn take(&mut self, arena: &[u8], db: u32, pid: i32, max: usize) -> (Vec<Taken>, Vec<(Taken, usize)>) {
        let mut candidates: Vec<(Class, usize, u64)> = self
            .headers()
            .filter(|(_, _, h)| h.db == db && h.taker == 0 && pending(h))
            .map(|(c, i, h)| (c, i, h.seq))
            .collect();
        candidates.sort_by_key(|c| c.2);
        let (mut taken, mut dropped) = (Vec::new(), Vec::new());
        for (class, index, seq) in candidates {
            if taken.len() >= max {
                break;
            }
            let h = self.header_mut(class, index);
            let at = span(class, index).start;
            let record = Taken {
                ticket: Ticket { class, index, seq },
                sink: h.sink,
                bytes: arena[at..at + h.len as usize].to_vec(),
            };
            if h.attempts >= MAX_ATTEMPTS {
                let waiter = h.waiter;
                h.state = if h.state == State::Orphaned || waiter == 0 { State::Free } else { State::Failed };
                dropped.push((record, waiter));
                self.dropped += 1;
                continue;
            }
            h.attempts += 1;
            h.taker = pid;
            taken.push(record);
        }
        (taken, dropped)
    }

    /// Settles a taken record after the writer's transaction ended: written (`ok`) or refused.
    /// Returns the latch of a producer waiting on it (0: none).
    pub fn finish(&mut self, t: Ticket, ok: bool) -> usize {
        let Some(h) = self.current(t) else { return 0 };
        h.taker = 0;
        let waiter = if h.state == State::Orphaned { 0 } else { h.waiter };
        h.state = match (waiter, ok) {
            (0, _) => State::Free,
            (_, true) => State::Written,
            (_, false) => State::Failed,
        };
        waiter
    }

    /// The state of a record a producer waits on (Free: the slot was reused, which only
    /// happens after the producer gave up).
    pub fn state(&self, t: Ticket) -> State {
        let h = match t.class {
            Class::Small => &self.small[t.index],
            Class::Large => &self.large[t.index],
        };
        if h.seq == t.seq {
            h.state
        } else {
            State::Free
        }
    }

    /// The producer stops waiting: a settled record is freed; one still pending becomes an
    /// orphan, which the writer writes and then frees.
    pub fn abandon(&mut self, t: Ticket) {
        if let Some(h) = self.current(t) {
            h.state = match h.state {
                State::Queued | State::Orphaned => State::Orphaned,
                _ => State::Free,
            };
            h.waiter = 0;
        }
    }

    /// A writer process exits, however: what it had taken goes back to the queue, and its
    /// entry is cleared.
    pub fn writer_exited(&mut self, pid: i32) {
        for h in self.small.iter_mut().chain(self.large.iter_mut()).filter(|h| h.taker == pid) {
            h.taker = 0;
        }
        for w in self.writers.iter_mut().filter(|w| w.pid == pid && w.latch != 0) {
            *w = Writer::default();
        }
    }

    /// A writer with nothing pending for its database leaves its entry and may exit; checked
    /// under the same lock producers queue under, so no record is left without a writer.
    pub fn retire_if_idle(&mut self, db: u32, pid: i32) -> bool {
        if self.headers().any(|(_, _, h)| h.db == db && pending(h)) {
            return false;
        }
        for w in self.writers.iter_mut().filter(|w| w.db == db && w.pid == pid) {
            *w = Writer::default();
        }
        true
    }

    /// Records pending for any database, and the queue's capacity (the metrics, and the tests'
    /// invariant).
    pub fn depth(&self) -> (usize, usize) {
        (self.headers().filter(|(_, _, h)| pending(h)).count(), SMALL_SLOTS + LARGE_SLOTS)
    }

    /// Records given up on since the server started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue and its arena, on the heap like the shared memory they stand for.
    struct Fixture {
        q: Box<Queue>,
        arena: Vec<u8>,
    }

    fn queue() -> Fixture {
        Fixture { q: Box::default(), arena: vec![0; ARENA_BYTES] }
    }

    impl std::ops::Deref for Fixture {
        type Target = Queue;
        fn deref(&self) -> &Queue {
            &self.q
        }
    }

    impl std::ops::DerefMut for Fixture {
        fn deref_mut(&mut self) -> &mut Queue {
            &mut self.q
        }
    }

    impl Fixture {
        fn push(
            &mut self,
            db: u32,
            sink: u8,
            bytes: &[u8],
            waiter: usize,
            now: u64,
        ) -> Result<(Ticket, WriterCall), PushError> {
            self.q.push(&mut self.arena, db, sink, bytes, waiter, now)
        }

        fn take(&mut self, db: u32, pid: i32, max: usize) -> (Vec<Taken>, Vec<(Taken, usize)>) {
            self.q.take(&self.arena, db, pid, max)
        }
    }

    const DB: u32 = 5;
    const LATCH: usize = 0x1000;

    #[test]
    fn the_writer_of_a_database_is_found_by_its_pid_once_registered() {
        let mut q = queue();
        q.push(7, 1, b"{}", 0, 0).unwrap();
        assert_eq!(q.writer_pid(7), None, "asked for, not running yet");
        assert!(q.register(7, 0x10, 4242));
        assert_eq!(q.writer_pid(7), Some(4242));
        assert_eq!(q.writer_pid(8), None);
    }

    #[test]
    fn one_writer_per_database_started_once_then_woken() {
        let mut q = queue();
        let (_, call) = q.push(DB, 1, b"a", 0, 0).unwrap();
        assert_eq!(call, WriterCall::Start);
        assert_eq!(q.push(DB, 1, b"b", 0, 10).unwrap().1, WriterCall::Starting, "a launch is not repeated at once");
        assert_eq!(q.push(6, 1, b"c", 0, 10).unwrap().1, WriterCall::Start, "another database gets its own");
        assert_eq!(q.writer_for(DB, START_GRACE_MS + 1), WriterCall::Start, "a writer that never came is asked again");
        assert!(q.register(DB, 0xAA, 42));
        assert!(!q.register(DB, 0xBB, 43), "a second writer for the database leaves");
        assert_eq!(q.push(DB, 1, b"d", 0, 20).unwrap().1, WriterCall::Wake(0xAA));
    }

    #[test]
    fn fire_and_forget_records_are_freed_only_after_they_are_written() {
        let mut q = queue();
        q.push(DB, 1, b"a", 0, 0).unwrap();
        q.push(DB, 2, b"b", 0, 0).unwrap();
        q.register(DB, 0xAA, 42);
        let (taken, dropped) = q.take(DB, 42, 10);
        assert!(dropped.is_empty());
        assert_eq!(
            taken.iter().map(|t| (t.sink, t.bytes.clone())).collect::<Vec<_>>(),
            [(1, b"a".to_vec()), (2, b"b".to_vec())]
        );
        assert!(q.take(DB, 43, 10).0.is_empty(), "a taken record is not taken twice");
        assert!(!q.retire_if_idle(DB, 42), "pending records keep the writer");
        for t in &taken {
            assert_eq!(q.finish(t.ticket, true), 0);
        }
        assert_eq!(q.depth().0, 0);
        assert!(q.retire_if_idle(DB, 42));
        assert_eq!(q.push(DB, 1, b"e", 0, 0).unwrap().1, WriterCall::Start, "a retired writer is started again");
    }

    #[test]
    fn a_waiting_producer_sees_written_or_failed_and_frees_the_slot() {
        let mut q = queue();
        let (ok, _) = q.push(DB, 1, b"ok", LATCH, 0).unwrap();
        let (bad, _) = q.push(DB, 1, b"bad", LATCH + 8, 0).unwrap();
        let (taken, _) = q.take(DB, 42, 10);
        assert_eq!(q.state(ok), State::Queued, "taken is still pending for the producer");
        assert_eq!(q.finish(taken[0].ticket, true), LATCH);
        assert_eq!(q.finish(taken[1].ticket, false), LATCH + 8);
        assert_eq!(q.state(ok), State::Written);
        assert_eq!(q.state(bad), State::Failed);
        q.abandon(ok);
        q.abandon(bad);
        assert_eq!(q.state(ok), State::Free);
        assert_eq!(q.depth().0, 0);
    }

    #[test]
    fn an_orphan_is_still_written_and_then_freed() {
        let mut q = queue();
        let (t, _) = q.push(DB, 1, b"x", LATCH, 0).unwrap();
        q.abandon(t);
        assert_eq!(q.state(t), State::Orphaned);
        let (taken, _) = q.take(DB, 42, 10);
        assert_eq!(taken.len(), 1, "the cancelled producer's record is written all the same");
        assert_eq!(q.finish(taken[0].ticket, true), 0, "nobody to wake");
        assert_eq!(q.state(t), State::Free);
    }

    #[test]
    fn a_dead_writer_gives_its_records_back_and_poison_is_given_up() {
        let mut q = queue();
        let (t, _) = q.push(DB, 1, b"poison", LATCH, 0).unwrap();
        q.register(DB, 0xAA, 42);
        for attempt in 1..=MAX_ATTEMPTS {
            let (taken, dropped) = q.take(DB, 42, 10);
            assert_eq!((taken.len(), dropped.len()), (1, 0), "attempt {attempt}");
            q.writer_exited(42);
            assert_eq!(q.writer_for(DB, 0), WriterCall::Start, "the dead writer's entry is gone");
            q.register(DB, 0xAA, 42);
        }
        let (taken, dropped) = q.take(DB, 42, 10);
        assert!(taken.is_empty());
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].1, LATCH, "its producer is told");
        assert_eq!(q.state(t), State::Failed);
        assert_eq!(q.dropped(), 1, "counted for the metrics");
    }

    #[test]
    fn size_classes_overflow_into_large_slots_and_refuse_when_full() {
        let mut q = queue();
        assert_eq!(q.push(DB, 1, &vec![b'x'; LARGE_BYTES + 1], 0, 0), Err(PushError::TooLarge(LARGE_BYTES + 1)));
        let (big, _) = q.push(DB, 1, &vec![b'x'; SMALL_BYTES + 1], 0, 0).unwrap();
        assert_eq!(big.class, Class::Large);
        for _ in 0..SMALL_SLOTS {
            assert_eq!(q.push(DB, 1, b"s", 0, 0).unwrap().0.class, Class::Small);
        }
        assert_eq!(q.push(DB, 1, b"s", 0, 0).unwrap().0.class, Class::Large, "a full small class borrows a large slot");
        for _ in 2..LARGE_SLOTS {
            q.push(DB, 1, b"s", 0, 0).unwrap();
        }
        assert_eq!(q.push(DB, 1, b"s", 0, 0), Err(PushError::Full));
        assert_eq!(q.depth(), (SMALL_SLOTS + LARGE_SLOTS, SMALL_SLOTS + LARGE_SLOTS));
    }

    #[test]
    fn a_late_finish_does_not_touch_a_reused_slot() {
        let mut q = queue();
        q.push(DB, 1, b"a", 0, 0).unwrap();
        let (taken, _) = q.take(DB, 42, 1);
        q.writer_exited(42);
        let (again, _) = q.take(DB, 43, 1);
        q.finish(again[0].ticket, true);
        let (new, _) = q.push(DB, 1, b"new", LATCH, 0).unwrap();
        assert_eq!(new.index, taken[0].ticket.index, "the slot is reused");
        assert_eq!(q.finish(taken[0].ticket, true), 0);
        assert_eq!(q.state(new), State::Queued, "the first writer's late finish is ignored");
    }

    #[test]
    fn writer_entries_run_out_and_free_up() {
        let mut q = queue();
        for db in 1..=MAX_WRITERS as u32 {
            assert_eq!(q.push(db, 1, b"x", 0, 0).unwrap().1, WriterCall::Start);
        }
        assert_eq!(q.push(99, 1, b"x", 0, 0).unwrap().1, WriterCall::NoRoom);
        q.launch_failed(1);
        assert_eq!(q.writer_for(99, 0), WriterCall::Start);
    }
}
