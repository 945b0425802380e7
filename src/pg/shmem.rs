//! Zero-initialised shared memory segments. pgrx's `pg_shmem_init!` builds the initial value
//! on the postmaster's stack and copies it in, which is fine for small structures but
//! overflows the stack for the writer's payload arena (about a megabyte). An `Arena` is asked
//! for while preloading and zeroed in place at startup; whoever uses it brings its own lock.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use pgrx::pg_sys;
use pgrx::prelude::*;

pub struct Arena {
    name: &'static CStr,
    size: usize,
    base: AtomicPtr<u8>,
}

/// Arenas asked for in `_PG_init` (the postmaster is single-threaded; the lock is only there to
/// make the static safe to share).
static ARENAS: Mutex<Vec<&'static Arena>> = Mutex::new(Vec::new());
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

impl Arena {
    pub const fn new(name: &'static CStr, size: usize) -> Arena {
        Arena { name, size, base: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// Asks for the segment; call from `_PG_init` while preloading.
    pub fn request(&'static self) {
        let mut arenas = ARENAS.lock().expect("not poisoned: the postmaster is single-threaded");
        arenas.push(self);
        // SAFETY: _PG_init runs in the postmaster before any hook can fire; the previous hooks
        // are kept and called first.
        unsafe {
            if arenas.len() == 1 {
                PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
                pg_sys::shmem_request_hook = Some(on_request);
                PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
                pg_sys::shmem_startup_hook = Some(on_startup);
            }
        }
    }

    /// The whole segment. Null until shared memory is set up (never in a process that could
    /// call this: backends and workers are forked after startup).
    pub fn base(&self) -> *mut u8 {
        self.base.load(Ordering::Relaxed)
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: called by the postmaster while it sizes shared memory.
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            prev();
        }
        for arena in ARENAS.lock().expect("not poisoned").iter() {
            pg_sys::RequestAddinShmemSpace(arena.size);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: called once per (re)initialisation of shared memory, under AddinShmemInitLock as
    // ShmemInitStruct's callers must hold it; a segment found already set up is left as is.
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for arena in ARENAS.lock().expect("not poisoned").iter() {
            let mut found = false;
            let p = pg_sys::ShmemInitStruct(arena.name.as_ptr(), arena.size, &mut found).cast::<u8>();
            if !found {
                std::ptr::write_bytes(p, 0, arena.size);
            }
            arena.base.store(p, Ordering::Relaxed);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}
