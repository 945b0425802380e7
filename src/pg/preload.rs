//! Whether the library was loaded through shared_preload_libraries. Read once, in `_PG_init`:
//! the postmaster sets the flag while it loads the library and every backend it forks inherits
//! the copy, so shared memory, hooks and workers exist exactly when this says so.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::errors::{DomainError, DomainResult};

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called first thing in `_PG_init`; returns the answer for the rest of `_PG_init`.
pub fn detect() -> bool {
    // SAFETY: a plain global the postmaster sets while processing shared_preload_libraries.
    let preloaded = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloaded, Ordering::Relaxed);
    preloaded
}

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Ok when preloaded; otherwise 55000 saying what needs it and what to do.
pub fn require(what: &str) -> DomainResult<()> {
    if preloaded() {
        Ok(())
    } else {
        Err(DomainError::NotReady(format!(
            "{what} needs shared memory: add booking_engine to shared_preload_libraries and restart the server"
        )))
    }
}

#[cfg(test)]
mod tests {
    use pgrx::PgSqlErrorCode;

    #[test]
    fn without_preloading_the_error_says_what_to_do() {
        let e = super::require("booking.check_rate_limit").unwrap_err();
        assert_eq!(e.sqlstate(), PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
        assert!(e.to_string().contains("shared_preload_libraries"), "{e}");
    }
}
