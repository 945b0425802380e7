//! The launcher's registry (pure: no Postgres calls, unit-tested): which databases exist and
//! whether booking_engine is installed in each, which per-database workers run there (each
//! publishes its pid and latch in its slot), which databases are being dropped or moved (start
//! nothing there), and what the worker budget could not start. It lives in shared memory under
//! one lock; the launcher plans from it, the workers and the hooks write their part.
//!
//! The registry knows no feature: the kinds of worker are described by `Layout`s (where a kind's
//! slots are, how many it wants, how the launcher decides whether a database needs one), built
//! from what the features registered (`super::kinds`).

/// Databases the registry can follow at once; more are reported as a shortage.
pub const MAX_DATABASES: usize = 64;
/// Worker slots per database, all kinds together.
pub const SLOTS: usize = 40;
/// A database marked as being dropped is given back to the launcher after this long even if
/// the backend that marked it never said how its statement ended (it died with a FATAL).
pub const STOPPING_GRACE_MS: u64 = 60_000;

/// Whether booking_engine is installed in a database, as its probe last saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Presence {
    /// Not looked at yet (new database, or told to look again): the probe starts to see.
    #[default]
    Unknown = 0,
    Installed = 1,
    /// Not installed: nothing runs until CREATE EXTENSION (or the periodic re-probe).
    Absent = 2,
}

/// How the launcher decides whether a database needs workers of a kind.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// One in every served database not known to lack booking_engine: it connects, looks, says
    /// what it found (`Presence`) and stays only where the extension is installed.
    Probe,
    /// `Layout::count` instances in every database where booking_engine is installed.
    PerDatabase,
    /// One where booking_engine is installed and the database wants one: bit `n` of
    /// `Entry::wanted`, set by the probe at each round or at once by the database's backends.
    Wanted(u8),
}

/// One kind of per-database worker, as the registry sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Its first slot; its instances take `first..first + max`.
    pub first: usize,
    pub max: usize,
    /// How many instances a database wants now (at most `max`; 1 but for `PerDatabase`).
    pub count: usize,
    pub need: Need,
    /// Runs the database's queued work: woken when work is queued, and queued work waits while
    /// a wanted one cannot start for lack of budget.
    pub queue: bool,
}

/// A worker's place in its database's entry: `Layout::first + instance - 1`.
pub type Slot = usize;

/// The kind and instance (1-based) of a slot.
pub fn kind_of(kinds: &[Layout], slot: Slot) -> Option<(usize, usize)> {
    kinds.iter().position(|k| (k.first..k.first + k.max).contains(&slot)).map(|i| (i, slot - kinds[i].first + 1))
}

#[derive(Copy, Clone, Debug)]
pub struct Entry {
    /// Database oid; 0 marks a free entry.
    pub db: u32,
    pub presence: Presence,
    /// In booking_engine.database's allow-list (or the list is empty).
    pub allowed: bool,
    /// Epoch ms when a DROP/ALTER DATABASE started stopping its workers; 0 when not stopping.
    pub stopping_since_ms: u64,
    /// pid and PGPROC number + 1 of the worker in each slot, published by the worker; 0 when
    /// none runs there.
    pub pids: [i32; SLOTS],
    pub procnos: [i32; SLOTS],
    /// Workers the budget could not start here at the launcher's last round.
    pub short: u16,
    /// Which `Need::Wanted` kinds the database wants (bit n for `Wanted(n)`).
    pub wanted: u32,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            db: 0,
            presence: Presence::Unknown,
            allowed: false,
            stopping_since_ms: 0,
            pids: [0; SLOTS],
            procnos: [0; SLOTS],
            short: 0,
            wanted: 0,
        }
    }
}

impl Entry {
    pub fn stopping(&self, now_ms: u64) -> bool {
        self.stopping_since_ms != 0 && now_ms.saturating_sub(self.stopping_since_ms) < STOPPING_GRACE_MS
    }

    pub fn running(&self) -> usize {
        self.pids.iter().filter(|p| **p != 0).count()
    }
}

pub struct Registry {
    /// The launcher's PGPROC number + 1 (0 while it is not running).
    pub launcher_procno: i32,
    /// Set to make the launcher look at the catalog and probe every database again.
    pub rescan: bool,
    /// Counts rescan requests: a probe that started before the last one does not get to mark
    /// its database Absent (the CREATE EXTENSION that asked may have committed after it looked).
    pub generation: u32,
    pub entries: [Entry; MAX_DATABASES],
    /// Databases that did not fit in `entries` at the last scan.
    pub untracked: u32,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            launcher_procno: 0,
            rescan: false,
            generation: 0,
            entries: [Entry::default(); MAX_DATABASES],
            untracked: 0,
        }
    }
}

/// One database as the catalog scan sees it (templates and datallowconn = false are left out
/// by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub oid: u32,
    pub allowed: bool,
}

/// What the launcher should do after a round of planning.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Vec<(u32, Slot)>,
    pub stop: Vec<(u32, Slot)>,
}

impl Registry {
    pub fn entry(&self, db: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.db == db && db != 0)
    }

    fn entry_mut(&mut self, db: u32) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.db == db && db != 0)
    }

    /// Brings the entries in line with the catalog: new databases are added as Unknown, gone
    /// ones removed; `reprobe` turns every Absent back to Unknown (CREATE EXTENSION somewhere).
    pub fn sync(&mut self, databases: &[Database], reprobe: bool) {
        for e in self.entries.iter_mut() {
            if e.db != 0 && !databases.iter().any(|d| d.oid == e.db) {
                *e = Entry::default();
            }
        }
        let mut untracked = 0;
        for d in databases {
            if let Some(e) = self.entry_mut(d.oid) {
                e.allowed = d.allowed;
                if reprobe && e.presence == Presence::Absent {
                    e.presence = Presence::Unknown;
                }
            } else if let Some(free) = self.entries.iter_mut().find(|e| e.db == 0) {
                *free = Entry { db: d.oid, allowed: d.allowed, ..Entry::default() };
            } else {
                untracked += 1;
            }
        }
        self.untracked = untracked;
    }

    /// The plan for one round: `alive` says which (database, slot) the launcher has a live
    /// process for. Kind by kind in the order of `kinds`, instance by instance, every database
    /// is served before the next instance is started anywhere, so a small budget serves every
    /// database a little before any database fully; everything beyond `budget` live workers is
    /// counted as `short` on its database.
    pub fn plan(&mut self, alive: &[(u32, Slot)], kinds: &[Layout], budget: usize, now_ms: u64) -> Plan {
        let mut plan = Plan::default();
        let wanted = |e: &Entry, slot: Slot| -> bool {
            if e.db == 0 || !e.allowed || e.stopping(now_ms) {
                return false;
            }
            let Some((k, n)) = kind_of(kinds, slot) else { return false };
            match (kinds[k].need, e.presence) {
                (Need::Probe, Presence::Unknown | Presence::Installed) => true,
                (Need::PerDatabase, Presence::Installed) => n <= kinds[k].count.min(kinds[k].max),
                (Need::Wanted(bit), Presence::Installed) => e.wanted & (1 << bit) != 0,
                _ => false,
            }
        };
        let probing = |e: &Entry, slot: Slot| {
            e.presence == Presence::Unknown && kind_of(kinds, slot).is_some_and(|(k, _)| kinds[k].need == Need::Probe)
        };
        let mut kept = 0;
        for &(db, slot) in alive {
            match self.entry(db) {
                Some(e) if wanted(e, slot) => kept += 1,
                // A probe decides for itself and exits; stopping it early would only lose its
                // answer. Every other unwanted worker is told to stop.
                Some(e) if probing(e, slot) => kept += 1,
                _ => plan.stop.push((db, slot)),
            }
        }
        let mut room = budget.saturating_sub(kept);
        for e in self.entries.iter_mut() {
            e.short = 0;
        }
        let slots = kinds.iter().flat_map(|k| k.first..k.first + k.count.min(k.max));
        for slot in slots {
            for e in self.entries.iter_mut() {
                if !wanted(e, slot) || alive.contains(&(e.db, slot)) {
                    continue;
                }
                if room == 0 {
                    e.short += 1;
                } else {
                    room -= 1;
                    plan.start.push((e.db, slot));
                }
            }
        }
        plan
    }

    /// A worker publishes itself. False when it must not run: its database is being dropped,
    /// is not tracked, or another process holds the slot.
    pub fn register(&mut self, db: u32, slot: Slot, pid: i32, procno: i32, now_ms: u64) -> bool {
        let Some(e) = self.entry_mut(db).filter(|_| slot < SLOTS) else { return false };
        if e.stopping(now_ms) || (e.pids[slot] != 0 && e.pids[slot] != pid) {
            return false;
        }
        e.pids[slot] = pid;
        e.procnos[slot] = procno + 1;
        true
    }

    /// A worker leaves (however it exits); only its own slot is cleared.
    pub fn unregister(&mut self, db: u32, slot: Slot, pid: i32) {
        if let Some(e) = self.entry_mut(db).filter(|_| slot < SLOTS) {
            if e.pids[slot] == pid {
                e.pids[slot] = 0;
                e.procnos[slot] = 0;
            }
        }
    }

    /// The probe's finding about the extension in its database.
    pub fn set_presence(&mut self, db: u32, presence: Presence) {
        if let Some(e) = self.entry_mut(db) {
            e.presence = presence;
        }
    }

    /// DROP/ALTER DATABASE is about to need the database to itself: nothing starts there any
    /// more, and the pids returned are to be terminated. A database not tracked yet is added,
    /// so that a scheduler the launcher starts meanwhile is refused too.
    pub fn stop(&mut self, db: u32, now_ms: u64) -> Vec<i32> {
        if self.entry(db).is_none() {
            if let Some(free) = self.entries.iter_mut().find(|e| e.db == 0) {
                *free = Entry { db, ..Entry::default() };
            }
        }
        match self.entry_mut(db) {
            Some(e) => {
                e.stopping_since_ms = now_ms.max(1);
                e.pids.iter().copied().filter(|p| *p != 0).collect()
            }
            None => Vec::new(),
        }
    }

    /// The statement ended (a failed DROP DATABASE, a finished ALTER DATABASE): the launcher
    /// may start workers there again.
    pub fn resume(&mut self, db: u32) {
        if let Some(e) = self.entry_mut(db) {
            e.stopping_since_ms = 0;
        }
    }

    /// PGPROC numbers + 1 of the workers of `db` in `slots`, for waking them.
    pub fn procnos(&self, db: u32, slots: impl IntoIterator<Item = Slot>) -> Vec<i32> {
        let Some(e) = self.entry(db) else { return Vec::new() };
        slots.into_iter().filter(|s| *s < SLOTS).map(|s| e.procnos[s]).filter(|p| *p != 0).collect()
    }

    /// Whether `db` wants the `Need::Wanted(bit)` kind; true when this changed it.
    pub fn want(&mut self, db: u32, bit: u8, wanted: bool) -> bool {
        match self.entry_mut(db) {
            Some(e) if (e.wanted & (1 << bit) != 0) != wanted => {
                e.wanted ^= 1 << bit;
                true
            }
            _ => false,
        }
    }
}

/// booking_engine.database as an allow-list: empty (or unset) allows every database; otherwise
/// a comma-separated list of names, compared exactly after trimming blanks.
pub fn allowed(allow_list: Option<&str>, name: &str) -> bool {
    match allow_list.map(str::trim) {
        None | Some("") => true,
        Some(list) => list.split(',').any(|n| n.trim() == name),
    }
}

/// Why nothing would run work queued in a database, or None when something will.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NotRunning {
    /// booking_engine is not in shared_preload_libraries.
    NotPreloaded,
    /// booking_engine.enabled = off.
    Disabled,
    /// The database is not in booking_engine.database's allow-list.
    NotAllowed,
    /// The launcher is not running (yet).
    NoLauncher,
    /// The budget or max_worker_processes left this database without its scheduler or any
    /// runner.
    NoBudget,
}

impl NotRunning {
    pub fn as_str(self) -> &'static str {
        match self {
            NotRunning::NotPreloaded => "booking_engine is not in shared_preload_libraries, so no background worker runs",
            NotRunning::Disabled => "booking_engine.enabled is off",
            NotRunning::NotAllowed => "this database is not in booking_engine.database (the workers' allow-list)",
            NotRunning::NoLauncher => "the booking_engine launcher is not running",
            NotRunning::NoBudget => {
                "the worker budget (booking_engine.max_workers, max_worker_processes) left this database without workers"
            }
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            NotRunning::NotPreloaded => "off",
            NotRunning::Disabled => "disabled",
            NotRunning::NotAllowed => "not_allowed",
            NotRunning::NoLauncher => "no_launcher",
            NotRunning::NoBudget => "no_budget",
        }
    }
}

/// Whether queued work in a database will run. A database whose workers are merely starting
/// (CREATE EXTENSION a moment ago) counts as served: the launcher starts them within a round.
/// It does not when the budget left it short and some kind that runs queued work (and is
/// wanted there) has no instance running at all.
pub fn will_run(
    preloaded: bool,
    enabled: bool,
    allowed: bool,
    launcher_running: bool,
    entry: Option<&Entry>,
    kinds: &[Layout],
) -> Result<(), NotRunning> {
    if !preloaded {
        return Err(NotRunning::NotPreloaded);
    }
    if !enabled {
        return Err(NotRunning::Disabled);
    }
    if !allowed {
        return Err(NotRunning::NotAllowed);
    }
    if !launcher_running {
        return Err(NotRunning::NoLauncher);
    }
    if let Some(e) = entry {
        let none_running = |k: &Layout| e.pids[k.first..(k.first + k.max).min(SLOTS)].iter().all(|p| *p == 0);
        if e.short > 0 && kinds.iter().any(|k| k.queue && k.count > 0 && none_running(k)) {
            return Err(NotRunning::NoBudget);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds as the extension registers them: the jobs' scheduler (the probe) and runners,
    /// then the delivery worker.
    const SCHEDULER: Slot = 0;
    const R1: Slot = 1;
    const R2: Slot = 2;
    const DELIVERY: Slot = 33;

    fn kinds(runners: usize) -> Vec<Layout> {
        vec![
            Layout { first: 0, max: 1, count: 1, need: Need::Probe, queue: true },
            Layout { first: 1, max: 32, count: runners, need: Need::PerDatabase, queue: true },
            Layout { first: 33, max: 1, count: 1, need: Need::Wanted(0), queue: false },
        ]
    }

    fn dbs(oids: &[u32]) -> Vec<Database> {
        oids.iter().map(|&oid| Database { oid, allowed: true }).collect()
    }

    fn installed(r: &mut Registry, oids: &[u32]) {
        for &db in oids {
            r.set_presence(db, Presence::Installed);
        }
    }

    #[test]
    fn slots_name_their_kind_and_instance() {
        let k = kinds(2);
        assert_eq!(kind_of(&k, SCHEDULER), Some((0, 1)));
        assert_eq!(kind_of(&k, R2), Some((1, 2)));
        assert_eq!(kind_of(&k, 32), Some((1, 32)));
        assert_eq!(kind_of(&k, DELIVERY), Some((2, 1)));
        assert_eq!(kind_of(&k, 34), None);
    }

    #[test]
    fn new_databases_are_probed_by_a_scheduler_then_get_runners_once_installed() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10, 11]), false);
        let p = r.plan(&[], &kinds(2), 16, 1);
        assert_eq!(p.start, vec![(10, SCHEDULER), (11, SCHEDULER)]);
        r.set_presence(10, Presence::Installed);
        r.set_presence(11, Presence::Absent);
        let p = r.plan(&[(10, SCHEDULER)], &kinds(2), 16, 1);
        assert_eq!(p.start, vec![(10, R1), (10, R2)]);
        assert!(p.stop.is_empty());
    }

    #[test]
    fn a_wanted_worker_runs_only_where_wanted_after_the_runners_and_stops_when_unwanted() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10, 11]), false);
        installed(&mut r, &[10, 11]);
        assert!(r.want(10, 0, true));
        assert!(!r.want(10, 0, true));
        let p = r.plan(&[], &kinds(1), 16, 1);
        assert_eq!(p.start, vec![(10, SCHEDULER), (11, SCHEDULER), (10, R1), (11, R1), (10, DELIVERY)]);
        r.want(10, 0, false);
        let p = r.plan(&[(10, DELIVERY)], &kinds(1), 16, 1);
        assert_eq!(p.stop, vec![(10, DELIVERY)]);
    }

    #[test]
    fn absent_databases_are_probed_again_only_when_told() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10]), false);
        r.set_presence(10, Presence::Absent);
        r.sync(&dbs(&[10]), false);
        assert!(r.plan(&[], &kinds(2), 16, 1).start.is_empty());
        r.sync(&dbs(&[10]), true);
        assert_eq!(r.plan(&[], &kinds(2), 16, 1).start, vec![(10, SCHEDULER)]);
    }

    #[test]
    fn a_probe_still_looking_is_left_to_finish() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10]), false);
        r.set_presence(10, Presence::Unknown);
        let p = r.plan(&[(10, SCHEDULER), (10, R1)], &kinds(1), 16, 1);
        assert_eq!(p.stop, vec![(10, R1)], "runners wait for the probe's answer; the probe is kept");
    }

    #[test]
    fn dropped_databases_leave_the_registry_and_their_workers_are_stopped() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10, 11]), false);
        installed(&mut r, &[10, 11]);
        r.sync(&dbs(&[11]), false);
        assert!(r.entry(10).is_none());
        let p = r.plan(&[(10, SCHEDULER), (10, R1)], &kinds(1), 16, 1);
        assert_eq!(p.stop, vec![(10, SCHEDULER), (10, R1)]);
    }

    #[test]
    fn the_budget_serves_every_scheduler_first_and_counts_the_shortage() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10, 11, 12]), false);
        installed(&mut r, &[10, 11, 12]);
        let p = r.plan(&[], &kinds(2), 4, 1);
        assert_eq!(p.start, vec![(10, SCHEDULER), (11, SCHEDULER), (12, SCHEDULER), (10, R1)]);
        assert_eq!([r.entry(10).unwrap().short, r.entry(11).unwrap().short, r.entry(12).unwrap().short], [1, 2, 2]);
    }

    #[test]
    fn fewer_runners_per_database_stops_the_extra_ones() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10]), false);
        installed(&mut r, &[10]);
        let alive = [(10, SCHEDULER), (10, R1), (10, R2)];
        let p = r.plan(&alive, &kinds(1), 16, 1);
        assert_eq!(p.stop, vec![(10, R2)]);
        assert!(p.start.is_empty());
    }

    #[test]
    fn a_database_being_dropped_gets_nothing_and_refuses_registrations_until_resumed() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10]), false);
        installed(&mut r, &[10]);
        assert!(r.register(10, SCHEDULER, 100, 7, 1));
        assert!(r.register(10, R1, 101, 8, 1));
        assert_eq!(r.stop(10, 1000), vec![100, 101]);
        assert!(!r.register(10, R2, 102, 9, 1001));
        let p = r.plan(&[(10, SCHEDULER)], &kinds(2), 16, 1001);
        assert_eq!(p.stop, vec![(10, SCHEDULER)]);
        assert!(p.start.is_empty());
        // Given back after the grace period even if nobody resumes it.
        assert!(!r.entry(10).unwrap().stopping(1000 + STOPPING_GRACE_MS));
        r.resume(10);
        r.unregister(10, SCHEDULER, 100);
        assert_eq!(r.plan(&[(10, R1)], &kinds(2), 16, 1002).start, vec![(10, SCHEDULER), (10, R2)]);
    }

    #[test]
    fn a_slot_is_held_by_one_process_and_cleared_only_by_it() {
        let mut r = Registry::default();
        r.sync(&dbs(&[10]), false);
        assert!(r.register(10, SCHEDULER, 100, 7, 1));
        assert!(!r.register(10, SCHEDULER, 200, 9, 1));
        r.unregister(10, SCHEDULER, 200);
        assert_eq!(r.procnos(10, 0..SLOTS), vec![8]);
        r.unregister(10, SCHEDULER, 100);
        assert!(r.procnos(10, 0..SLOTS).is_empty());
        assert!(!r.register(99, SCHEDULER, 300, 1, 1), "untracked database");
        assert!(!r.register(10, SLOTS, 300, 1, 1), "no such slot");
    }

    #[test]
    fn not_allowed_databases_get_no_worker_and_overflow_is_counted() {
        let mut r = Registry::default();
        let mut list = vec![Database { oid: 1, allowed: false }];
        list.extend((2..=(MAX_DATABASES as u32 + 3)).map(|oid| Database { oid, allowed: true }));
        r.sync(&list, false);
        assert_eq!(r.untracked, 3);
        assert!(!r.plan(&[], &kinds(0), 1000, 1).start.contains(&(1, SCHEDULER)));
    }

    #[test]
    fn the_allow_list_is_empty_for_all_or_exact_names() {
        assert!(allowed(None, "a"));
        assert!(allowed(Some(" "), "a"));
        assert!(allowed(Some("x, a"), "a"));
        assert!(!allowed(Some("x,ab"), "a"));
    }

    #[test]
    fn will_run_says_why_not() {
        let k = kinds(2);
        let mut e = Entry { db: 10, ..Entry::default() };
        assert_eq!(will_run(false, true, true, true, None, &k), Err(NotRunning::NotPreloaded));
        assert_eq!(will_run(true, false, true, true, None, &k), Err(NotRunning::Disabled));
        assert_eq!(will_run(true, true, false, true, None, &k), Err(NotRunning::NotAllowed));
        assert_eq!(will_run(true, true, true, false, None, &k), Err(NotRunning::NoLauncher));
        assert_eq!(will_run(true, true, true, true, Some(&e), &k), Ok(()), "starting counts as served");
        e.short = 3;
        assert_eq!(will_run(true, true, true, true, Some(&e), &k), Err(NotRunning::NoBudget));
        e.pids[SCHEDULER] = 5;
        e.pids[R1] = 6;
        e.short = 1;
        assert_eq!(will_run(true, true, true, true, Some(&e), &k), Ok(()), "one runner still runs the jobs");
        e.pids[R1] = 0;
        e.pids[DELIVERY] = 7;
        assert_eq!(will_run(true, true, true, true, Some(&e), &k), Err(NotRunning::NoBudget), "delivery runs no jobs");
        assert_eq!(will_run(true, true, true, true, Some(&e), &kinds(0)), Ok(()), "no runner wanted, none missing");
    }
}
