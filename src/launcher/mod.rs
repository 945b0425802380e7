//! The launcher: one static background worker that finds every database where booking_engine
//! is installed and starts the per-database workers there, within a budget, restarting the
//! ones that die and stopping the ones that are no longer wanted. It knows no feature: the
//! kinds of worker (`kinds::WorkerKind`) are registered by the features from `_PG_init`, each
//! with its entry point and when a database needs one.
//!
//! Discovery: the launcher scans pg_database (without connecting to any database) every
//! `SCAN_INTERVAL` and at once when told: CREATE EXTENSION booking_engine and CREATE DATABASE
//! tell it at commit (through the ProcessUtility hook). Whether the extension is installed in
//! a database is the business of that database's probe (the kind registered as
//! `Need::Probe`): it connects, looks (`dbworker::start`), and either stays (and the other
//! kinds follow) or records `Absent` and exits. Absent databases are probed again when told,
//! and every `PROBE_INTERVAL` as a fallback.
//!
//! Leaving: DROP EXTENSION wakes the database's workers at commit and they exit when they see
//! it gone; DROP DATABASE, ALTER DATABASE RENAME / SET TABLESPACE and CREATE DATABASE ...
//! TEMPLATE (which need the database to themselves) first stop its workers and its writer,
//! and nothing starts there until the statement ended.

pub mod dbworker;
pub mod kinds;
pub mod registry;
pub mod worker;

#[cfg(feature = "pg_test")]
mod pg_tests;

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use kinds::{kinds, layouts, Need, WorkerKind};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgList, PgLwLock};
use registry::{NotRunning, Presence, Registry, Slot};

use crate::clock::epoch_ms;
use crate::gucs;
use crate::pg::bgworker::{my_procno, set_latch_of, terminate};
use crate::pg::catalog::my_database_oid;
use crate::pg::preload::preloaded;
use crate::pg::subxact::Subxact;
use crate::telemetry::Metric;

/// Worker starts, by kind (and the metrics worker's); more than one per kind means restarts.
pub static WORKER_STARTS: Metric = Metric::counter(
    "booking_worker_starts",
    &["worker"],
    20,
    "Background worker starts by kind; more than one per kind means restarts.",
);

/// The launcher's own metrics.
pub static METRICS: &[&Metric] = &[&WORKER_STARTS];

// SAFETY: plain old data (integers, enums without payload, arrays of them).
unsafe impl PGRXSharedMemory for Registry {}

// SAFETY: a named lock in shared memory, initialised once by pg_shmem_init! while preloading.
static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"booking_engine_launcher") };

/// Called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(REGISTRY);
    BackgroundWorkerBuilder::new("booking_engine launcher")
        .set_library("booking_engine")
        .set_function("booking_engine_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(std::time::Duration::from_secs(1)))
        .load();
    crate::pg::utility::observe(observe_utility);
}

/// The main argument of a per-database worker: its database and its slot.
pub fn worker_arg(db: u32, slot: Slot) -> pg_sys::Datum {
    pg_sys::Datum::from(((db as u64) << 16) | slot as u64)
}

pub fn parse_worker_arg(arg: pg_sys::Datum) -> (u32, Slot) {
    let v = arg.value() as u64;
    ((v >> 16) as u32, (v & 0xffff) as usize)
}

/// This process's database and slot, for its exit callback.
static MY_DB: AtomicU32 = AtomicU32::new(0);
static MY_SLOT: AtomicI32 = AtomicI32::new(-1);
/// The launcher's rescan generation when this worker started (see `found_absent`).
static MY_GENERATION: AtomicU32 = AtomicU32::new(0);

#[pg_guard]
unsafe extern "C-unwind" fn worker_exit(_code: i32, _arg: pg_sys::Datum) {
    let slot = MY_SLOT.load(Ordering::Relaxed);
    if slot >= 0 {
        // SAFETY: LWLockReleaseAll first, so an error raised under the registry's lock cannot
        // deadlock the exit; MyProcPid is this process's pid.
        unsafe {
            pg_sys::LWLockReleaseAll();
            REGISTRY.exclusive().unregister(MY_DB.load(Ordering::Relaxed), slot as usize, pg_sys::MyProcPid);
        }
    }
    wake_launcher();
}

/// Publishes the calling worker (already connected to `db`) in its slot, so that it can be
/// woken and stopped. False when it must exit at once: the database is being dropped, or
/// another process holds the slot.
fn register_self(db: u32, slot: Slot) -> bool {
    // SAFETY: MyProcPid is this process's pid; the callback runs however the process exits.
    let pid = unsafe { pg_sys::MyProcPid };
    let generation = {
        let mut r = REGISTRY.exclusive();
        if !r.register(db, slot, pid, my_procno(), epoch_ms()) {
            return false;
        }
        r.generation
    };
    MY_DB.store(db, Ordering::Relaxed);
    MY_SLOT.store(slot as i32, Ordering::Relaxed);
    MY_GENERATION.store(generation, Ordering::Relaxed);
    // SAFETY: registers a plain function run at exit.
    unsafe { pg_sys::before_shmem_exit(Some(worker_exit), pg_sys::Datum::from(0)) };
    true
}

/// The probe found booking_engine installed in its database: the other kinds may follow.
fn found_installed(db: u32) {
    let changed = {
        let mut r = REGISTRY.exclusive();
        let was = r.entry(db).map(|e| e.presence);
        r.set_presence(db, Presence::Installed);
        was != Some(Presence::Installed)
    };
    if changed {
        wake_launcher();
    }
}

/// A worker found booking_engine missing in its database. Unless a rescan was asked for
/// since the worker started (CREATE EXTENSION may have committed after it looked), the
/// database is left alone until the next rescan.
pub fn found_absent(db: u32) {
    let mut r = REGISTRY.exclusive();
    let presence =
        if r.generation == MY_GENERATION.load(Ordering::Relaxed) { Presence::Absent } else { Presence::Unknown };
    r.set_presence(db, presence);
}

fn wake_launcher() {
    let procno = REGISTRY.share().launcher_procno;
    if procno > 0 {
        set_latch_of(procno - 1);
    }
}

/// Sets the latches of `kind`'s workers in the current database, if any run.
pub fn wake(kind: &WorkerKind) {
    if !preloaded() {
        return;
    }
    let procnos = REGISTRY.share().procnos(my_database_oid(), kind.slots());
    procnos.into_iter().for_each(|p| set_latch_of(p - 1));
}

/// Whether `db` wants a worker of `kind` (a `Need::WhereSql` kind); the launcher is told when
/// that changes.
pub fn want(db: u32, kind: &WorkerKind, wanted: bool) {
    if !preloaded() || !matches!(kind.need, Need::WhereSql(_)) {
        return;
    }
    if REGISTRY.exclusive().want(db, kind.wanted_bit(), wanted) {
        wake_launcher();
    }
}

/// The probe's question for the other kinds, asked at every one of its rounds in its
/// transaction: for each `Need::WhereSql` kind, whether this database wants one now. Each query
/// runs read-only and rolled back; one that fails (a table missing while the database still
/// runs an older version of the extension under this library) means "no".
pub fn probe_needs(db: u32) {
    for kind in kinds() {
        let Need::WhereSql(sql) = kind.need else { continue };
        let wanted =
            Subxact::rolled_back().read_only().run(|| Spi::get_one::<bool>(sql)).ok().and_then(|r| r.ok().flatten());
        want(db, kind, wanted.unwrap_or(false));
    }
}

/// Makes the launcher scan the catalog and probe every database again.
pub fn request_rescan() {
    {
        let mut r = REGISTRY.exclusive();
        r.rescan = true;
        r.generation = r.generation.wrapping_add(1);
    }
    wake_launcher();
}

/// Sets the latches of the current database's workers that run queued work.
fn wake_my_database() {
    if !preloaded() {
        return;
    }
    let slots: Vec<Slot> = kinds().into_iter().filter(|k| k.runs_queued_work).flat_map(|k| k.slots()).collect();
    let procnos = REGISTRY.share().procnos(my_database_oid(), slots);
    procnos.into_iter().for_each(|p| set_latch_of(p - 1));
}

fn my_database() -> (u32, String) {
    // SAFETY: MyDatabaseId is set in every backend connected to a database; get_database_name
    // returns a palloc'd copy or NULL.
    unsafe {
        let db = pg_sys::MyDatabaseId;
        let name = pg_sys::get_database_name(db);
        let name =
            if name.is_null() { String::new() } else { std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned() };
        (db.to_u32(), name)
    }
}

/// Whether work queued in the current database will run, or why not.
pub fn will_run() -> Result<(), NotRunning> {
    let (db, name) = my_database();
    let allowed = registry::allowed(gucs::database_allow_list().as_deref(), &name);
    if !preloaded() {
        return registry::will_run(false, gucs::enabled(), allowed, false, None, &[]);
    }
    let kinds = layouts();
    let r = REGISTRY.share();
    registry::will_run(true, gucs::enabled(), allowed, r.launcher_procno > 0, r.entry(db), &kinds)
}

/// For every function that queues work: wakes the current database's workers when the
/// transaction commits, and when none will run the work says so with a WARNING (SQLSTATE
/// 01000) instead of accepting it silently. Without the preloaded library there are no
/// workers to wake, and the warning says so.
pub fn queued_work_at_commit() {
    if let Err(why) = will_run() {
        pgrx::ereport!(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!("booking_engine: queued work will not run: {}", why.as_str()),
            "booking_admin.worker_status() shows the workers; the work waits until they run"
        );
    }
    if preloaded() {
        crate::pg::xact::at_commit(wake_my_database);
    }
}

/// What the launcher knows about the current database, for worker_status.
pub struct DatabaseStatus {
    pub launcher_running: bool,
    pub presence: Option<Presence>,
    /// Each registered kind with the pids of its running instances.
    pub workers: Vec<(&'static WorkerKind, Vec<i32>)>,
    pub short: u16,
    pub stopping: bool,
    pub untracked_databases: u32,
}

pub fn my_status() -> Option<DatabaseStatus> {
    if !preloaded() {
        return None;
    }
    let db = my_database_oid();
    let r = REGISTRY.share();
    let e = r.entry(db);
    let workers = kinds()
        .into_iter()
        .map(|k| (k, e.map(|e| k.slots().map(|s| e.pids[s]).filter(|p| *p != 0).collect()).unwrap_or_default()))
        .collect();
    Some(DatabaseStatus {
        launcher_running: r.launcher_procno > 0,
        presence: e.map(|e| e.presence),
        workers,
        short: e.map_or(0, |e| e.short),
        stopping: e.is_some_and(|e| e.stopping(epoch_ms())),
        untracked_databases: r.untracked,
    })
}

/// Stops every worker of `db` (ours and the writer) and starts none there until `resume`.
fn stop_database(db: u32) {
    let pids = REGISTRY.exclusive().stop(db, epoch_ms());
    pids.into_iter().for_each(terminate);
    crate::writer::stop_database(db);
}

fn resume_database(db: u32) {
    REGISTRY.exclusive().resume(db);
    request_rescan();
}

thread_local! {
    /// Databases to give back to the launcher when the current transaction ends.
    static RESUME_AT_COMMIT: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn resume_committed() {
    RESUME_AT_COMMIT.with(|r| std::mem::take(&mut *r.borrow_mut())).into_iter().for_each(resume_database);
}

/// How a statement that stopped `db`'s workers ended: a failure gives the database back at
/// once; a success when its transaction ends, when the launcher can see what changed (a
/// dropped database is then gone from pg_database and gets nothing; a renamed or moved one,
/// or one whose change rolled back, gets its workers back).
fn statement_ended(db: u32, succeeded: bool) {
    if succeeded {
        RESUME_AT_COMMIT.with(|r| r.borrow_mut().push(db));
        crate::pg::xact::at_end(resume_committed);
    } else {
        resume_database(db);
    }
}

fn database_oid(name: *const std::ffi::c_char) -> Option<u32> {
    if name.is_null() {
        return None;
    }
    // SAFETY: name is a NUL-terminated string from a parse tree; missing_ok = true.
    let oid = unsafe { pg_sys::get_database_oid(name, true) };
    (oid != pg_sys::InvalidOid).then(|| oid.to_u32())
}

fn node_is_named(node: *mut pg_sys::Node, want: &str) -> bool {
    // SAFETY: node is a String node of a parse tree (the names in DropStmt.objects for
    // extensions); strVal's field is a NUL-terminated string.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_String {
            return false;
        }
        let s = (*node.cast::<pg_sys::String>()).sval;
        !s.is_null() && std::ffi::CStr::from_ptr(s).to_bytes() == want.as_bytes()
    }
}

/// Statements that concern the launcher: those that need a database to themselves stop its
/// workers first; those that install or remove booking_engine tell the launcher or the
/// workers at commit.
fn observe_utility(node: *mut pg_sys::Node) -> Option<Box<dyn FnOnce(bool)>> {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return None;
    }
    // SAFETY: node is the utility statement Postgres is about to run; its tag says its type.
    unsafe {
        let db = match (*node).type_ {
            T_DropdbStmt => database_oid((*node.cast::<pg_sys::DropdbStmt>()).dbname),
            T_RenameStmt => {
                let stmt = &*node.cast::<pg_sys::RenameStmt>();
                if stmt.renameType != pg_sys::ObjectType::OBJECT_DATABASE {
                    return None;
                }
                database_oid(stmt.subname)
            }
            T_AlterDatabaseStmt => {
                let stmt = &*node.cast::<pg_sys::AlterDatabaseStmt>();
                if !defines(stmt.options, "tablespace") {
                    return None;
                }
                database_oid(stmt.dbname)
            }
            T_CreateExtensionStmt => {
                let stmt = &*node.cast::<pg_sys::CreateExtensionStmt>();
                if !stmt.extname.is_null() && std::ffi::CStr::from_ptr(stmt.extname).to_bytes() == b"booking_engine" {
                    crate::pg::xact::at_commit(request_rescan);
                }
                return None;
            }
            T_CreatedbStmt => {
                crate::pg::xact::at_commit(request_rescan);
                // Copying a database needs it to itself, as DROP DATABASE does.
                let stmt = &*node.cast::<pg_sys::CreatedbStmt>();
                database_oid(option_string(stmt.options, "template")?)
            }
            T_DropStmt => {
                let stmt = &*node.cast::<pg_sys::DropStmt>();
                if stmt.removeType == pg_sys::ObjectType::OBJECT_EXTENSION
                    && PgList::<pg_sys::Node>::from_pg(stmt.objects)
                        .iter_ptr()
                        .any(|n| node_is_named(n, "booking_engine"))
                {
                    crate::pg::xact::at_commit(wake_my_database);
                }
                return None;
            }
            _ => return None,
        };
        let db = db?;
        stop_database(db);
        Some(Box::new(move |succeeded| statement_ended(db, succeeded)))
    }
}

/// The DefElem option `name` of a statement's option list.
fn option(options: *mut pg_sys::List, name: &str) -> Option<*mut pg_sys::DefElem> {
    // SAFETY: CREATE/ALTER DATABASE's options are a List of DefElem nodes from the parse tree
    // (PgList reads a NULL list as empty); defname is a NUL-terminated string.
    unsafe {
        PgList::<pg_sys::DefElem>::from_pg(options).iter_ptr().find(|&d| {
            !d.is_null()
                && pgrx::is_a(d.cast(), pg_sys::NodeTag::T_DefElem)
                && !(*d).defname.is_null()
                && std::ffi::CStr::from_ptr((*d).defname).to_bytes() == name.as_bytes()
        })
    }
}

/// Whether a list of DefElem options sets `name`.
fn defines(options: *mut pg_sys::List, name: &str) -> bool {
    option(options, name).is_some()
}

/// The value of option `name` when it is a name or string (TEMPLATE = x, TEMPLATE 'x').
fn option_string(options: *mut pg_sys::List, name: &str) -> Option<*const std::ffi::c_char> {
    let def = option(options, name)?;
    // SAFETY: def is a DefElem of the parse tree; its arg, when a String node, holds a
    // NUL-terminated string.
    unsafe {
        let arg = (*def).arg;
        (!arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_String)
            .then(|| (*arg.cast::<pg_sys::String>()).sval.cast_const())
    }
}
