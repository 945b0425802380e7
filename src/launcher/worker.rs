//! The launcher process: scans, plans (registry.rs), starts and stops the per-database workers.
//! It connects to no database, so it never holds one open.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, DynamicBackgroundWorker,
};
use pgrx::prelude::*;

use super::kinds::{kind_of_slot, layouts};
use super::registry::{allowed, Database, Slot};
use super::{worker_arg, REGISTRY};
use crate::clock::epoch_ms;
use crate::gucs;
use crate::pg::bgworker::{attach_signals, in_transaction, my_procno, terminate, wait};
use crate::pg::catalog::connectable_databases;

/// How often the launcher looks at pg_database without being woken.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How often databases without booking_engine are looked at again without being told.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// A worker that exited is started again after this long at the earliest.
const RESTART_AFTER: Duration = Duration::from_secs(1);

#[pg_guard]
unsafe extern "C-unwind" fn launcher_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: see worker_exit in mod.rs.
    unsafe { pg_sys::LWLockReleaseAll() };
    REGISTRY.exclusive().launcher_procno = 0;
}

fn start(db: u32, slot: Slot) -> Option<DynamicBackgroundWorker> {
    let (kind, n) = kind_of_slot(slot)?;
    BackgroundWorkerBuilder::new(&kind.instance_name(n))
        .set_library("booking_engine")
        .set_function(kind.function)
        .set_argument(Some(worker_arg(db, slot)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        // SAFETY: MyProcPid is this process's pid: the postmaster tells us of starts and exits.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_launcher_main(_arg: pg_sys::Datum) {
    attach_signals();
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: registers a plain function run at exit.
    unsafe { pg_sys::before_shmem_exit(Some(launcher_exit), pg_sys::Datum::from(0)) };
    {
        let mut r = REGISTRY.exclusive();
        r.launcher_procno = my_procno() + 1;
        // Whatever an earlier launcher knew about the workers is stale: they stopped with it
        // or will be found again by their own registration.
        r.rescan = true;
    }
    let mut running: HashMap<(u32, Slot), DynamicBackgroundWorker> = HashMap::new();
    let mut exited_at: HashMap<(u32, Slot), Instant> = HashMap::new();
    let mut last_probe = Instant::now();
    let mut reported_short = 0usize;
    loop {
        // pg_database is small and read at every round (every wake-up, at least every
        // SCAN_INTERVAL): new and dropped databases, and a reloaded allow-list, take effect at
        // once.
        let rescan = std::mem::take(&mut REGISTRY.exclusive().rescan);
        let list = gucs::database_allow_list();
        let databases: Vec<Database> = in_transaction(connectable_databases)
            .into_iter()
            .map(|d| Database { oid: d.oid, allowed: allowed(list.as_deref(), &d.name) })
            .collect();
        let reprobe = rescan || last_probe.elapsed() >= PROBE_INTERVAL;
        if reprobe {
            last_probe = Instant::now();
        }
        REGISTRY.exclusive().sync(&databases, reprobe);

        running.retain(|key, w| match w.pid() {
            Err(BackgroundWorkerStatus::Stopped) => {
                exited_at.insert(*key, Instant::now());
                false
            }
            // SAFETY: the postmaster is gone; exit as WL_EXIT_ON_PM_DEATH would.
            Err(BackgroundWorkerStatus::PostmasterDied) => unsafe { pg_sys::proc_exit(1) },
            _ => true,
        });

        // Alive: the workers this launcher started, and those registered without it (started by
        // a launcher that died since: they are adopted, not started twice).
        let kinds = layouts();
        let (plan, adopted) = {
            let mut r = REGISTRY.exclusive();
            let mut alive: Vec<(u32, Slot)> = running.keys().copied().collect();
            let mut adopted: HashMap<(u32, Slot), i32> = HashMap::new();
            for e in r.entries.iter().filter(|e| e.db != 0) {
                for (slot, &pid) in e.pids.iter().enumerate() {
                    if pid != 0 && !running.contains_key(&(e.db, slot)) {
                        alive.push((e.db, slot));
                        adopted.insert((e.db, slot), pid);
                    }
                }
            }
            let plan = r.plan(&alive, &kinds, gucs::max_workers().max(0) as usize, epoch_ms());
            (plan, adopted)
        };
        for key in plan.stop {
            if let Some(w) = running.remove(&key) {
                let _ = w.terminate();
            } else if let Some(pid) = adopted.get(&key) {
                terminate(*pid);
            }
        }
        let mut next_wait = SCAN_INTERVAL;
        let mut no_slot: Vec<u32> = Vec::new();
        for (db, slot) in plan.start {
            let key = (db, slot);
            if let Some(at) = exited_at.get(&key) {
                let since = at.elapsed();
                if since < RESTART_AFTER {
                    next_wait = next_wait.min(RESTART_AFTER - since);
                    continue;
                }
            }
            match start(db, slot) {
                Some(handle) => {
                    exited_at.remove(&key);
                    running.insert(key, handle);
                }
                None => no_slot.push(db),
            }
        }
        let short = {
            let mut r = REGISTRY.exclusive();
            for db in &no_slot {
                if let Some(e) = r.entries.iter_mut().find(|e| e.db == *db) {
                    e.short += 1;
                }
            }
            r.entries.iter().map(|e| e.short as usize).sum::<usize>() + r.untracked as usize
        };
        if short != reported_short {
            if short > 0 {
                pgrx::warning!(
                    "booking_engine launcher: {short} per-database worker(s) could not be started ({} without a background worker slot): raise booking_engine.max_workers (now {}) or max_worker_processes; see booking_admin.worker_status()",
                    no_slot.len(),
                    gucs::max_workers()
                );
            } else {
                pgrx::log!("booking_engine launcher: every per-database worker is running again");
            }
            reported_short = short;
        }
        if !no_slot.is_empty() {
            // Slots free up as other processes exit; the postmaster does not tell us when.
            next_wait = next_wait.min(RESTART_AFTER);
        }
        wait(next_wait.as_millis() as i64);
    }
}
