//! Work deferred to the commit of the current transaction: waking a worker or the launcher
//! before the commit would let it look, see nothing yet, and sleep a whole interval. Each
//! action is a plain function, run once however often it was asked for; an abort forgets them.
//! Work recorded for the commit inside a subtransaction (a PL/pgSQL exception block, a
//! savepoint) must be forgotten if that subtransaction rolls back: `at_subxact_abort`.

use std::cell::RefCell;

use pgrx::prelude::*;

thread_local! {
    static PENDING: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
    static AT_END: RefCell<Vec<fn()>> = const { RefCell::new(Vec::new()) };
    static REGISTERED: RefCell<bool> = const { RefCell::new(false) };
    static SUB_ABORT: RefCell<Vec<fn(pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        let actions = SUB_ABORT.with(|a| a.borrow().clone());
        actions.into_iter().for_each(|f| f(my_subid));
    }
}

/// Calls `action` with the subtransaction's id whenever a subtransaction of this backend rolls
/// back, for the rest of the backend's life. Ids grow within a transaction, and everything
/// begun inside the aborted one has an id at least as large, so "forget what was recorded
/// with an id >= this" is exact.
pub fn at_subxact_abort(action: fn(pg_sys::SubTransactionId)) {
    let first = SUB_ABORT.with(|a| {
        let mut a = a.borrow_mut();
        let first = a.is_empty();
        if !a.iter().any(|f| std::ptr::fn_addr_eq(*f, action)) {
            a.push(action);
        }
        first
    });
    if first {
        // SAFETY: registers a plain function for the life of the backend.
        unsafe { pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut()) };
    }
}

/// The current subtransaction's id (1 at top level).
pub fn current_subxact_id() -> pg_sys::SubTransactionId {
    // SAFETY: a plain read of the transaction state.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
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

/// One piece of work with its data for the commit, recorded in a subtransaction.
type Deferred = (pg_sys::SubTransactionId, Box<dyn FnOnce()>);

thread_local! {
    static DEFERRED: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
}

fn run_deferred() {
    let work = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    work.into_iter().for_each(|(_, f)| f());
}

fn clear_deferred() {
    DEFERRED.with(|d| d.borrow_mut().clear());
}

fn forget_deferred_from(subxact: pg_sys::SubTransactionId) {
    DEFERRED.with(|d| d.borrow_mut().retain(|(s, _)| *s < subxact));
}

/// Runs `work` when the current transaction commits, in the order recorded; never if the
/// transaction, or the subtransaction it was recorded in, rolls back. For work that carries
/// its own data (a decision to apply to shared memory), where `at_commit` takes a plain
/// function.
pub fn on_commit(work: impl FnOnce() + 'static) {
    DEFERRED.with(|d| d.borrow_mut().push((current_subxact_id(), Box::new(work))));
    at_commit(run_deferred);
    at_end(clear_deferred);
    at_subxact_abort(forget_deferred_from);
}
