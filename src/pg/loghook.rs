//! The one emit_log hook: features register observers that see every ERROR reported (before
//! the transaction it ends is rolled back), e.g. to audit a refusal or to tell a failed span
//! its SQLSTATE. Observers only look: they must not raise.

use std::sync::Mutex;

use pgrx::prelude::*;

/// Sees one reported ERROR (`elevel` is ERROR or above).
pub type Observer = fn(&pg_sys::ErrorData);

static OBSERVERS: Mutex<Vec<Observer>> = Mutex::new(Vec::new());
static mut PREV_HOOK: pg_sys::emit_log_hook_type = None;

/// Adds an observer; call from `_PG_init` while preloading. The hook is installed once.
pub fn observe(observer: Observer) {
    let mut observers = OBSERVERS.lock().expect("not poisoned: the postmaster is single-threaded");
    observers.push(observer);
    if observers.len() == 1 {
        // SAFETY: _PG_init runs in the postmaster before any error can be reported; the
        // previous hook is kept and called first.
        unsafe {
            PREV_HOOK = pg_sys::emit_log_hook;
            pg_sys::emit_log_hook = Some(hook);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn hook(edata: *mut pg_sys::ErrorData) {
    // SAFETY: Postgres passes the message being reported; the previous hook has our contract.
    unsafe {
        if let Some(prev) = PREV_HOOK {
            prev(edata);
        }
        if (*edata).elevel < pg_sys::PGERROR as i32 {
            return;
        }
        // Backends are single-threaded and every observer was added in the postmaster.
        let observers = OBSERVERS.lock().map(|o| o.clone()).unwrap_or_default();
        for observe in observers {
            observe(&*edata);
        }
    }
}
