//! How a runner executes one job: a handler function inside a subtransaction, or one statement
//! at top level the way postgres.c's exec_simple_query runs a client's query. Both arm the
//! statement timeout themselves: background workers have no client loop that would.

use std::ffi::CString;
use std::panic::AssertUnwindSafe;

use pgrx::prelude::*;
use pgrx::PgLogLevel;

use crate::pg::deadline::Deadline;
use crate::pg::error::Caught;
use crate::pg::subxact::Subxact;

/// Runs `f` in a subtransaction under a statement timeout, as `role` when given. An ERROR rolls
/// back only the subtransaction and comes back as its message; the caller's transaction goes on.
pub fn in_subtransaction<R>(timeout_ms: i32, role: Option<pg_sys::Oid>, f: impl FnOnce() -> R) -> Result<R, String> {
    let options = Subxact::kept().deadline_ms(timeout_ms);
    let options = match role {
        Some(role) => options.as_role(role),
        None => options,
    };
    options.run(f).map_err(|caught| caught.message)
}

/// Runs exactly one SQL statement at top level, outside any transaction block, as `role` and,
/// when given, with `search_path` (for this statement only): the statement may be VACUUM,
/// CREATE INDEX CONCURRENTLY or anything else that refuses to run inside a function or
/// transaction. Call it between transactions. An ERROR aborts the transaction and comes back
/// as its message.
pub fn run_top_level(sql: &str, timeout_ms: i32, role: pg_sys::Oid, search_path: Option<&str>) -> Result<(), String> {
    let query = CString::new(sql).map_err(|_| "sql must not contain NUL bytes".to_string())?;
    let path = search_path
        .map(|p| CString::new(p).map_err(|_| "search_path must not contain NUL bytes".to_string()))
        .transpose()?;
    // SAFETY: follows exec_simple_query (tcop/postgres.c) for a single statement. The parse and
    // plan trees live in a context of their own because multi-transaction utility statements
    // (VACUUM, CONCURRENTLY) commit the transaction that was current when they started.
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"booking_engine top-level job".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        let (mut user, mut sec) = (pg_sys::Oid::INVALID, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        let result = PgTryBuilder::new(AssertUnwindSafe(|| {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::SetUserIdAndSecContext(role, sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
            if let Some(path) = &path {
                // Like SET LOCAL: names are resolved in this first transaction, and the worker's
                // own setting is back when it ends.
                crate::pg::guc::set_local_search_path(path);
            }
            let deadline = Deadline::arm(timeout_ms);
            let parsed = pg_sys::pg_parse_query(query.as_ptr());
            let n = if parsed.is_null() { 0 } else { (*parsed).length };
            if n != 1 {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("a top_level_sql job runs exactly one statement, not {n}")
                );
            }
            let raw = (*(*parsed).elements).ptr_value as *mut pg_sys::RawStmt;
            let tag = pg_sys::CreateCommandTag((*raw).stmt);
            let snapshot = pg_sys::analyze_requires_snapshot(raw);
            if snapshot {
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
            let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
                raw,
                query.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            );
            let plans = pg_sys::pg_plan_queries(
                queries,
                query.as_ptr(),
                pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
                std::ptr::null_mut(),
            );
            if snapshot {
                pg_sys::PopActiveSnapshot();
            }
            let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
            (*portal).visible = false;
            pg_sys::PortalDefineQuery(portal, std::ptr::null(), query.as_ptr(), tag, plans, std::ptr::null_mut());
            pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
            let dest = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
            let mut qc: pg_sys::QueryCompletion = std::mem::zeroed();
            pg_sys::PortalRun(portal, std::ffi::c_long::MAX, true, true, dest, dest, &mut qc);
            ((*dest).rDestroy.expect("DestNone has rDestroy"))(dest);
            pg_sys::PortalDrop(portal, false);
            drop(deadline);
            pg_sys::SetUserIdAndSecContext(user, sec);
            pg_sys::CommitTransactionCommand();
            Ok(())
        }))
        .catch_others(|e| {
            // Anything above ERROR (termination, FATAL) must still end the process.
            let caught = Caught::from(&e);
            if caught.level > PgLogLevel::ERROR {
                e.rethrow();
            }
            // "SQLSTATE: message", as the admin sandbox's callers read it in admin_sql_status.
            Err(format!("{}: {}", caught.sqlstate(), caught.message))
        })
        .execute();
        if result.is_err() {
            pg_sys::AbortCurrentTransaction();
            // The abort restores the user of the transaction it ends, which for a statement
            // that commits along the way (VACUUM, CONCURRENTLY) was started as `role`: the
            // failure must be recorded with the worker's own rights, not the job's.
            pg_sys::SetUserIdAndSecContext(user, sec);
        }
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::MemoryContextDelete(context);
        result
    }
}
