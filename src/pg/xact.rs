//! Work deferred to the commit of the current transaction: waking a worker or the launcher
//! before the commit would let it look, see nothing yet, and sleep a whole interval. Each
//! action is a plain function, run once however often it was asked for; an abort forgets them.

use std::cell::RefCell;

use pgrx::prelude::*;

thread_local! {
    static PENDING: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
    static AT_END: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
    static REGISTERED: RefCell<bool> = const { RefCell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            let actions = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            actions.into_iter().for_each(|f| f());
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => PENDING.with(|p| p.borrow_mut().clear()),
        _ => return,
    }
    let actions = AT_END.with(|p| std::mem::take(&mut *p.borrow_mut()));
    actions.into_iter().for_each(|f| f());
}

/// A backend-local list of deferred actions.
type Actions = std::thread::LocalKey<RefCell<Vec<fn()>>>;

fn add(list: &'static Actions, action: fn()) {
    list.with(|p| {
        let mut p = p.borrow_mut();
        if !p.iter().any(|f| std::ptr::fn_addr_eq(*f, action)) {
            p.push(action);
        }
    });
    REGISTERED.with(|r| {
        if !r.replace(true) {
            // SAFETY: registers a plain function for the life of the backend.
            unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
        }
    });
}

/// Runs `action` once when the current transaction ends, committed or aborted (after the
/// commit's actions).
pub fn at_end(action: fn()) {
    add(&AT_END, action);
}

/// Runs `action` once when the current transaction commits (never if it aborts).
pub fn at_commit(action: fn()) {
    add(&PENDING, action);
}
