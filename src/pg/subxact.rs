//! The one way the extension runs work in a subtransaction, as PL/pgSQL's exception blocks do
//! (pl_exec.c): remember the memory context and resource owner, begin, and on every path
//! release or roll back and restore both.
//!
//! Errors at ERROR level come back as a `Caught` value with the subtransaction already rolled
//! back, so the caller's transaction goes on. Three kinds are never swallowed and are raised
//! again after the rollback: anything above ERROR (FATAL: the process must exit, e.g. a
//! termination request), and a query cancel that did not come from this run's own deadline (a
//! user's pg_cancel_backend or the caller's statement_timeout must stop the caller too).

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::PgLogLevel;

use super::deadline::Deadline;
use super::error::Caught;

#[derive(Clone, Copy, Debug, Default)]
pub struct Subxact {
    keep: bool,
    read_only: bool,
    role: Option<pg_sys::Oid>,
    deadline_ms: Option<i32>,
}

impl Subxact {
    /// Released into the caller's transaction when it succeeds (its changes and locks stay),
    /// rolled back when it fails.
    pub fn kept() -> Subxact {
        Subxact { keep: true, ..Subxact::default() }
    }

    /// Always rolled back: for work that is only tried out.
    pub fn rolled_back() -> Subxact {
        Subxact::default()
    }

    /// The work may not write (as `SET TRANSACTION READ ONLY` for its duration).
    pub fn read_only(self) -> Subxact {
        Subxact { read_only: true, ..self }
    }

    /// The work runs as `role` (like SECURITY DEFINER, restored afterwards).
    pub fn as_role(self, role: pg_sys::Oid) -> Subxact {
        Subxact { role: Some(role), ..self }
    }

    /// The work is cancelled after `ms` milliseconds (or the caller's sooner deadline).
    pub fn deadline_ms(self, ms: i32) -> Subxact {
        Subxact { deadline_ms: Some(ms), ..self }
    }

    pub fn run<R>(self, f: impl FnOnce() -> R) -> Result<R, Caught> {
        // SAFETY: the subtransaction protocol of pl_exec.c's exception blocks; every global
        // changed here (memory context, resource owner, user id, read-only flag) is restored
        // on every path before returning or raising again.
        unsafe {
            let context = pg_sys::CurrentMemoryContext;
            let owner = pg_sys::CurrentResourceOwner;
            let read_only = pg_sys::XactReadOnly;
            let (mut user, mut sec) = (pg_sys::Oid::INVALID, 0);
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(context);
            let deadline = self.deadline_ms.map(Deadline::arm);
            let result = PgTryBuilder::new(AssertUnwindSafe(|| {
                if self.read_only {
                    pg_sys::XactReadOnly = true;
                }
                if let Some(role) = self.role {
                    pg_sys::SetUserIdAndSecContext(role, sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
                }
                Ok(f())
            }))
            .catch_others(|e| Err(Caught::from(&e)))
            .execute();
            let own_timeout = deadline.as_ref().is_some_and(Deadline::expired);
            drop(deadline);
            pg_sys::SetUserIdAndSecContext(user, sec);
            pg_sys::XactReadOnly = read_only;
            if self.keep && result.is_ok() {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
            match result {
                Err(caught) if must_propagate(&caught, own_timeout) => caught.reraise_at_level(),
                other => other,
            }
        }
    }
}

/// The policy: see the module comment.
fn must_propagate(caught: &Caught, own_timeout: bool) -> bool {
    caught.level > PgLogLevel::ERROR || (caught.code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED && !own_timeout)
}

impl Caught {
    /// Raises the error again at its own level (a FATAL stays FATAL).
    fn reraise_at_level(&self) -> ! {
        self.reraise().report(self.level);
        unreachable!("an error at level {:?} does not return", self.level)
    }
}
