//! Waking the workers: each worker publishes its PGPROC number in shared memory, and a backend
//! that enqueued work sets their latches once its transaction commits (earlier, a worker could
//! wake, find nothing visible yet, and sleep a whole poll interval).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::pg::preload::preloaded;

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic};

/// Slot 0 is the scheduler, slots 1..=32 the runners (booking_engine.job_workers is at most 32).
pub const SLOTS: usize = 33;

pub struct Registry {
    /// PGPROC number + 1 of the worker in each slot; 0 while the slot is empty.
    procnos: [AtomicI32; SLOTS],
}

// SAFETY: only atomics, no pointers; valid in every process that maps the segment.
unsafe impl PGRXSharedMemory for Registry {}

// SAFETY: named shared memory, initialised once by pg_shmem_init! while preloading.
static REGISTRY: PgAtomic<Registry> = unsafe { PgAtomic::new(c"booking_engine_workers") };

/// Backend-local: this transaction enqueued work; the callback is registered once per backend.
static WAKE_AT_COMMIT: AtomicBool = AtomicBool::new(false);
static CALLBACK_REGISTERED: AtomicBool = AtomicBool::new(false);

pub fn init_shmem() {
    pg_shmem_init!(REGISTRY = Registry { procnos: std::array::from_fn(|_| AtomicI32::new(0)) });
}

/// Publish the calling worker's latch in `slot`.
pub fn register_self(slot: usize) {
    // SAFETY: MyProc is set for every process attached to shared memory.
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    REGISTRY.get().procnos[slot].store(procno + 1, Ordering::SeqCst);
}

fn wake_all() {
    for slot in &REGISTRY.get().procnos {
        let v = slot.load(Ordering::SeqCst);
        if v > 0 {
            // SAFETY: procnos index ProcGlobal->allProcs, which lives as long as shared memory.
            // A stale entry (the worker exited and its PGPROC was reused) only causes one
            // spurious wake-up of whoever holds it now, which latch users must tolerate.
            unsafe {
                let proc = (*pg_sys::ProcGlobal).allProcs.add((v - 1) as usize);
                pg_sys::SetLatch(&raw mut (*proc).procLatch);
            }
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT if WAKE_AT_COMMIT.swap(false, Ordering::SeqCst) => wake_all(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => WAKE_AT_COMMIT.store(false, Ordering::SeqCst),
        _ => {}
    }
}

/// Wake every worker when the current transaction commits. Without the preloaded library there
/// are no workers, and nothing to do.
pub fn wake_at_commit() {
    if !preloaded() {
        return;
    }
    WAKE_AT_COMMIT.store(true, Ordering::SeqCst);
    if !CALLBACK_REGISTERED.swap(true, Ordering::SeqCst) {
        // SAFETY: registers a plain function for the life of the backend.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
    }
}
