//! A line of context on every message logged while a piece of work runs, as Postgres's own
//! "while vacuuming relation ..." lines: the server log shows it as CONTEXT, `jsonlog` as the
//! `context` field. The workers name the job, delivery or trace they are working on this way,
//! so every line logged meanwhile (theirs, a handler's, Postgres's) carries the ids.

use std::ffi::{c_char, c_int, c_void, CString};

use pgrx::pg_sys;

unsafe extern "C-unwind" {
    fn errcontext_msg(fmt: *const c_char, ...) -> c_int;
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn add_context(arg: *mut c_void) {
    // SAFETY: called by errfinish while an error or message is being built; `arg` is the
    // NUL-terminated text `with_context` keeps alive while the callback is installed.
    unsafe {
        pg_sys::set_errcontext_domain(std::ptr::null());
        errcontext_msg(c"%s".as_ptr(), arg as *const c_char);
    }
}

/// Puts the previous callback back, also when `f` unwinds with an error.
struct Restore(*mut pg_sys::ErrorContextCallback);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores the stack as it was before `with_context` pushed onto it.
        unsafe { pg_sys::error_context_stack = self.0 };
    }
}

/// Runs `f` with `text` as context of every message logged meanwhile.
pub fn with_context<R>(text: &str, f: impl FnOnce() -> R) -> R {
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a plain read of the backend's error context stack.
    let previous = unsafe { pg_sys::error_context_stack };
    let mut callback =
        pg_sys::ErrorContextCallback { previous, callback: Some(add_context), arg: text.as_ptr() as *mut c_void };
    let _restore = Restore(previous);
    // SAFETY: the callback lives on this frame and is removed (by Restore's drop, also when `f`
    // unwinds) before the frame and the text go away; the previous entry is kept, as Postgres's
    // own users of the stack do.
    unsafe { pg_sys::error_context_stack = &mut callback };
    f()
}
