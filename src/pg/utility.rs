//! The one ProcessUtility hook: features register observers that look at a utility statement
//! before it runs and may ask to be told how it ended (e.g. stop a database's workers before
//! DROP DATABASE, let them start again if it failed).

use std::sync::Mutex;

use pgrx::prelude::*;

/// Looks at a statement before it runs; returns what to do once it ended (true: it succeeded;
/// false: it raised an ERROR, which goes on to the caller afterwards).
pub type Observer = fn(*mut pg_sys::Node) -> Option<Box<dyn FnOnce(bool)>>;

static OBSERVERS: Mutex<Vec<Observer>> = Mutex::new(Vec::new());
static mut PREV_HOOK: pg_sys::ProcessUtility_hook_type = None;

/// Adds an observer; call from `_PG_init` while preloading. The hook is installed once.
pub fn observe(observer: Observer) {
    let mut observers = OBSERVERS.lock().expect("not poisoned: the postmaster is single-threaded");
    observers.push(observer);
    if observers.len() == 1 {
        // SAFETY: _PG_init runs in the postmaster before any backend exists; the previous hook
        // is kept and called in our place.
        unsafe {
            PREV_HOOK = pg_sys::ProcessUtility_hook;
            pg_sys::ProcessUtility_hook = Some(hook);
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: pstmt is the statement Postgres is about to run; observers only read it.
    let node = unsafe { (*pstmt).utilityStmt };
    let observers: Vec<Observer> = OBSERVERS.lock().map(|o| o.clone()).unwrap_or_default();
    let after: Vec<Box<dyn FnOnce(bool)>> = observers.iter().filter_map(|o| o(node)).collect();
    let run = || {
        // SAFETY: the arguments are passed on unchanged, to the previous hook or the standard
        // implementation, as every ProcessUtility hook must.
        unsafe {
            match PREV_HOOK {
                Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
                None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc),
            }
        }
    };
    if after.is_empty() {
        return run();
    }
    let after = std::cell::RefCell::new(after);
    let shared = std::panic::AssertUnwindSafe(&after);
    PgTryBuilder::new(std::panic::AssertUnwindSafe(run))
        .catch_others(|e| {
            // The observers' own state is not touched by the failed statement.
            shared.borrow_mut().drain(..).for_each(|f| f(false));
            e.rethrow()
        })
        .execute();
    after.into_inner().into_iter().for_each(|f| f(true));
}
