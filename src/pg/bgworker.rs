//! What every background worker of the extension does the same way: signals, waiting on its
//! latch, and one transaction command around a unit of work.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::PgLogLevel;

use super::error::Caught;

// The C symbols themselves: pgrx's pg_sys wrappers are Rust functions and cannot be handlers.
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
    fn kill(pid: std::ffi::c_int, signal: std::ffi::c_int) -> std::ffi::c_int;
}

/// Set in the extension's own workers, whose SQL calls are bookkeeping (claiming, recording,
/// recovering), not people's actions: the audit leaves them out.
static BOOKKEEPING: AtomicBool = AtomicBool::new(false);

/// Marks this process as one of the extension's workers (see `is_bookkeeping`).
pub fn mark_bookkeeping() {
    BOOKKEEPING.store(true, Ordering::Relaxed);
}

/// Whether this process is one of the extension's workers, whose calls are not audited.
pub fn is_bookkeeping() -> bool {
    BOOKKEEPING.load(Ordering::Relaxed)
}

/// Asks another process of this server to exit (SIGTERM: `die` in our workers, a clean
/// exit at its next interrupt check). A pid that is gone already is ignored.
pub fn terminate(pid: i32) {
    if pid > 0 {
        // SAFETY: kill(2) on a pid the caller read from shared memory; at worst the process
        // has exited and the call fails with ESRCH.
        unsafe { kill(pid, pg_sys::SIGTERM as std::ffi::c_int) };
    }
}

/// The latch of the process with PGPROC number `procno`.
pub fn set_latch_of(procno: i32) {
    // SAFETY: procnos index ProcGlobal->allProcs, which lives as long as shared memory. A stale
    // number (the process exited and its PGPROC was reused) only causes one spurious wake-up of
    // whoever holds it now, which latch users must tolerate.
    unsafe {
        let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
        pg_sys::SetLatch(&raw mut (*proc).procLatch);
    }
}

/// This process's PGPROC number (workers publish it so others can set their latch).
pub fn my_procno() -> i32 {
    // SAFETY: MyProc is set for every process attached to shared memory.
    unsafe { (*pg_sys::MyProc).pgprocno }
}

/// SIGTERM uses Postgres's own `die`, so work in progress is interrupted at its next interrupt
/// check (pg_terminate_backend and shutdown are prompt, and the exit runs the process's
/// cleanup callbacks); SIGHUP flags a configuration reload for `wait`.
pub fn attach_signals() {
    // SAFETY: standard background worker start-up, before any transaction.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(SignalHandlerForConfigReload));
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Sleeps until the latch is set or `ms` pass, then handles signals: exits on SIGTERM (through
/// `die`), reloads the configuration on SIGHUP. Exits with the postmaster.
pub fn wait(ms: i64) {
    wait_latch_or_socket(None, ms);
}

/// `wait`, also woken when `socket` becomes readable (a worker's own threads or connections).
/// Returns whether the configuration was reloaded.
pub fn wait_latch_or_socket(socket: Option<std::os::fd::RawFd>, ms: i64) -> bool {
    let mut events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
    if socket.is_some() {
        events |= pg_sys::WL_SOCKET_READABLE;
    }
    // SAFETY: MyLatch is this process's latch; the flags are the documented wait events; the
    // socket, when given, is an open descriptor of this process (PGINVALID_SOCKET is -1).
    unsafe {
        pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            events as i32,
            socket.unwrap_or(-1),
            ms.clamp(1, i64::from(i32::MAX)) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    interrupts_and_reload()
}

/// Handles pending interrupts (exits on SIGTERM) and a pending SIGHUP (reloads the
/// configuration), for a worker busy without waiting; true when the configuration was reloaded.
pub fn interrupts_and_reload() -> bool {
    pg_sys::check_for_interrupts!();
    // SAFETY: set by the SIGHUP handler, read and cleared here only.
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            return true;
        }
    }
    false
}

/// One transaction command around `f`, with a snapshot for its queries. Called between
/// transactions, from a worker's main loop. An error aborts it and exits the worker (the
/// postmaster restarts the ones registered to restart): callers catch what they can handle.
pub fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: called between transactions, as the worker loops of Postgres's own workers do.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = f();
    // SAFETY: as above; the snapshot pushed above is still the active one.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    r
}

/// Shows what the worker is doing in `pg_stat_activity.query` (state `active`), or that it is
/// idle when `activity` is None.
pub fn report_activity(activity: Option<&str>) {
    let text = activity.and_then(|a| std::ffi::CString::new(a).ok());
    // SAFETY: pgstat_report_activity copies the string into the process's shared entry.
    unsafe {
        match &text {
            Some(t) => pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, t.as_ptr()),
            None => pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()),
        }
    }
}

/// `in_transaction`, but an ERROR aborts the transaction and comes back as a value, so the
/// worker goes on; anything above ERROR still ends the process.
pub fn try_in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    PgTryBuilder::new(AssertUnwindSafe(|| Ok(in_transaction(f))))
        .catch_others(|e| {
            let caught = Caught::from(&e);
            if caught.level > PgLogLevel::ERROR {
                e.rethrow();
            }
            // SAFETY: the failed transaction is still open; abort it as the backend's own
            // error recovery would.
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(caught)
        })
        .execute()
}
