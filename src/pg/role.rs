//! Acting as another role for a moment, as SECURITY DEFINER does: the one place the extension
//! switches its user id outside a subtransaction (`subxact` has `as_role` for work inside one).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::errors::{DomainError, DomainResult};

/// The current user id and security context, put back when dropped (an ERROR unwinding through
/// the scope restores them too).
struct Restore(pg_sys::Oid, i32);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores what GetUserIdAndSecContext returned.
        unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) }
    }
}

/// The role the session acts as now (`current_user`).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a backend-global.
    unsafe { pg_sys::GetUserId() }
}

/// Runs `f` as `role`, with a local user-id change like SECURITY DEFINER's.
pub fn run_as<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    // SAFETY: reads this backend's user id and security context, then changes the user id
    // locally; `_restore` undoes it however the scope is left.
    let _restore = unsafe {
        let (mut user, mut sec) = (pg_sys::Oid::INVALID, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        pg_sys::SetUserIdAndSecContext(role, sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        Restore(user, sec)
    };
    f()
}

/// The role that owns the booking_engine extension in this database.
pub fn extension_owner() -> DomainResult<pg_sys::Oid> {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'booking_engine'",
    )?
    .ok_or_else(|| DomainError::NotReady("the booking_engine extension is not installed in this database".into()))
}
