//! The kinds of per-database worker, as the features register them from `_PG_init`: a name,
//! the entry point the launcher starts, and when a database needs one. The launcher knows
//! nothing else about them; each kind's instances get slots of their own in every database's
//! registry entry, in registration order.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::registry::{self, Layout, Slot, SLOTS};

/// When a database needs workers of a kind.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// One in every database the launcher serves, before anyone knows whether booking_engine
    /// is installed there: the database-worker start-up looks and reports (`Presence`), and
    /// the worker stays only where the extension is. Exactly one kind is the probe. At each of
    /// its rounds it calls `super::probe_needs`, which answers the `WhereSql` kinds' questions.
    Probe,
    /// `count()` instances (read at every launcher round, at most `max`) in every database
    /// where booking_engine is installed.
    PerDatabase { count: fn() -> usize, max: usize },
    /// One where booking_engine is installed and this boolean query holds (the probe asks it at
    /// every round, in a rolled-back read-only subtransaction: an error is "no"); a backend
    /// that makes it hold can say so at once with `super::want`.
    WhereSql(&'static str),
}

/// A kind of per-database worker.
#[derive(Debug)]
pub struct WorkerKind {
    /// `bgw_name` and `bgw_type`, what `pg_stat_activity.backend_type` shows; a kind with more
    /// than one instance adds the instance number (" 1", " 2", ...).
    pub name: &'static str,
    /// The `worker` label of `booking_worker_starts_total`.
    pub label: &'static str,
    /// The library's entry point: `#[no_mangle] extern "C-unwind" fn(Datum)`, which begins with
    /// `super::dbworker::start`.
    pub function: &'static str,
    pub need: Need,
    /// Runs the database's queued work (jobs, maintenance): woken at the commit of work queued,
    /// and `will_run` reports queued work as stuck when the budget left none of them running.
    pub runs_queued_work: bool,
    /// Its first slot, set by `register_kind` (`usize::MAX` before).
    first: AtomicUsize,
    /// For `WhereSql`: its bit in the registry's `wanted` mask.
    bit: AtomicU8,
}

impl WorkerKind {
    pub const fn new(
        name: &'static str,
        label: &'static str,
        function: &'static str,
        need: Need,
        runs_queued_work: bool,
    ) -> WorkerKind {
        WorkerKind {
            name,
            label,
            function,
            need,
            runs_queued_work,
            first: AtomicUsize::new(usize::MAX),
            bit: AtomicU8::new(0),
        }
    }

    pub fn max(&self) -> usize {
        match self.need {
            Need::PerDatabase { max, .. } => max,
            Need::Probe | Need::WhereSql(_) => 1,
        }
    }

    /// Its slots (empty before registration).
    pub fn slots(&self) -> std::ops::Range<Slot> {
        match self.first.load(Ordering::Relaxed) {
            usize::MAX => 0..0,
            first => first..first + self.max(),
        }
    }

    pub(super) fn wanted_bit(&self) -> u8 {
        self.bit.load(Ordering::Relaxed)
    }

    /// The name of instance `n` (1-based), as `pg_stat_activity` shows it.
    pub fn instance_name(&self, n: usize) -> String {
        if self.max() > 1 {
            format!("{} {n}", self.name)
        } else {
            self.name.to_string()
        }
    }

    fn layout(&self) -> Layout {
        let need = match self.need {
            Need::Probe => registry::Need::Probe,
            Need::PerDatabase { .. } => registry::Need::PerDatabase,
            Need::WhereSql(_) => registry::Need::Wanted(self.wanted_bit()),
        };
        let count = match self.need {
            Need::PerDatabase { count, max } => count().min(max),
            Need::Probe | Need::WhereSql(_) => 1,
        };
        let first = self.first.load(Ordering::Relaxed);
        Layout { first, max: self.max(), count, need, queue: self.runs_queued_work }
    }
}

static KINDS: Mutex<Vec<&'static WorkerKind>> = Mutex::new(Vec::new());

fn kind_list() -> std::sync::MutexGuard<'static, Vec<&'static WorkerKind>> {
    KINDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes a kind known to the launcher; called from `_PG_init`, before the launcher starts. The
/// order of registration is the order the launcher serves kinds in when the budget is short.
pub fn register_kind(kind: &'static WorkerKind) {
    let mut kinds = kind_list();
    if kind.first.load(Ordering::Relaxed) != usize::MAX {
        return;
    }
    let first = kinds.iter().map(|k| k.max()).sum::<usize>();
    assert!(first + kind.max() <= SLOTS, "{}: no registry slots left ({SLOTS} in all)", kind.name);
    if matches!(kind.need, Need::WhereSql(_)) {
        let bit = kinds.iter().filter(|k| matches!(k.need, Need::WhereSql(_))).count();
        assert!(bit < 32, "{}: too many kinds wanted by SQL", kind.name);
        kind.bit.store(bit as u8, Ordering::Relaxed);
    }
    assert!(
        !matches!(kind.need, Need::Probe) || !kinds.iter().any(|k| matches!(k.need, Need::Probe)),
        "{}: one kind is the probe",
        kind.name
    );
    kind.first.store(first, Ordering::Relaxed);
    kinds.push(kind);
}

/// Every registered kind, in registration order.
pub fn kinds() -> Vec<&'static WorkerKind> {
    kind_list().clone()
}

/// The kinds as the registry plans with them, with the counts wanted now.
pub fn layouts() -> Vec<Layout> {
    kinds().iter().map(|k| k.layout()).collect()
}

/// The kind and instance (1-based) of a slot.
pub fn kind_of_slot(slot: Slot) -> Option<(&'static WorkerKind, usize)> {
    kinds().into_iter().find(|k| k.slots().contains(&slot)).map(|k| (k, slot - k.slots().start + 1))
}
