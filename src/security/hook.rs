//! Automatic audit entries for every call of a `booking_admin` function, through Postgres's
//! function-manager hooks: a function is hooked when it lives in schema `booking_admin`, so a
//! new admin function is covered without touching it. Entries go through the durable queue,
//! so a call that fails (and rolls its transaction back) is recorded all the same.
//!
//! A role without access to schema `booking_admin` is refused before any function runs, so
//! the log hook records those refusals ("permission denied for schema booking_admin") too.

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::prelude::*;

use super::audit::AuditEntry;
use super::request::current_context;
use crate::clock::now_micros;
use crate::writer;

static mut PREV_NEEDS_HOOK: pg_sys::needs_fmgr_hook_type = None;
static mut PREV_HOOK: pg_sys::fmgr_hook_type = None;
static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Bits kept in the hook's per-call-site `private` word (zeroed by Postgres).
const ADMIN: usize = 1;
const LOGGED: usize = 2;
/// The call site's function was looked up once: every function with a SET clause (all of the
/// extension's pin their search_path) reaches the hook on every call, and the catalog lookups
/// need not be repeated for each.
const CHECKED: usize = 4;

struct Call {
    entry: AuditEntry,
}

thread_local! {
    /// Outermost admin call in progress; nested admin calls (a rule calling a helper) are part
    /// of it and are not logged on their own.
    static DEPTH: RefCell<(usize, Option<Call>)> = const { RefCell::new((0, None)) };
}

pub fn install() {
    // SAFETY: called once from _PG_init in the postmaster, before any backend exists.
    unsafe {
        PREV_NEEDS_HOOK = pg_sys::needs_fmgr_hook;
        PREV_HOOK = pg_sys::fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs_hook);
        pg_sys::fmgr_hook = Some(hook);
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(emit_log);
    }
}

/// An automatic entry about `booking_admin`, with the request's context, as of now.
fn admin_entry(resource_id: String) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::new_v4(),
        context: current_context(),
        tenant_id: None,
        action: "call".into(),
        resource_type: "booking_admin_function".into(),
        resource_id: Some(resource_id),
        success: true,
        failure_reason: None,
        sensitive_data_accessed: false,
        at: now_micros(),
    }
}

/// Marks the `booking_admin` call in progress as one that read personal data.
pub fn mark_sensitive() {
    DEPTH.with_borrow_mut(|(_, call)| {
        if let Some(c) = call {
            c.entry.sensitive_data_accessed = true;
        }
    });
}

fn record_durably(entry: &AuditEntry) {
    if let Err(e) = writer::submit(&super::audit::AUDIT_SINK, &entry.compact_row()) {
        pgrx::warning!(
            "booking_engine: audit entry for {} not recorded: {e}",
            entry.resource_id.as_deref().unwrap_or("")
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn emit_log(edata: *mut pg_sys::ErrorData) {
    // SAFETY: Postgres passes the error being reported; every global read here is set for the
    // life of the backend, and IsTransactionState guards the catalog lookups of the context.
    unsafe {
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
        let e = &*edata;
        if e.elevel != pg_sys::PGERROR as i32
            || e.sqlerrcode != pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32
            || e.message.is_null()
            || pg_sys::MyDatabaseId == pg_sys::InvalidOid
            || pg_sys::ParallelWorkerNumber >= 0
            || !pg_sys::IsTransactionState()
        {
            return;
        }
        let message = CStr::from_ptr(e.message).to_string_lossy();
        if !message.contains("schema booking_admin") {
            return;
        }
        let statement = (!pg_sys::debug_query_string.is_null())
            .then(|| CStr::from_ptr(pg_sys::debug_query_string).to_string_lossy().into_owned());
        let mut entry = admin_entry("booking_admin".into());
        entry.success = false;
        entry.failure_reason = Some(match statement {
            Some(sql) => format!("{message}: {sql}"),
            None => message.into_owned(),
        });
        record_durably(&entry);
    }
}

/// Parallel workers run pieces of a call their leader already records; outside a transaction
/// there is no catalog to ask (and no SQL function call to record).
fn is_admin_function(fn_oid: pg_sys::Oid) -> bool {
    // SAFETY: backend-globals, then two syscache lookups (inside a transaction) that return
    // InvalidOid when nothing is found.
    unsafe {
        if pg_sys::ParallelWorkerNumber >= 0 || !pg_sys::IsTransactionState() {
            return false;
        }
        let ns = pg_sys::get_namespace_oid(c"booking_admin".as_ptr(), true);
        ns != pg_sys::InvalidOid && pg_sys::get_func_namespace(fn_oid) == ns
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn needs_hook(fn_oid: pg_sys::Oid) -> bool {
    // SAFETY: the previous hook, if any, has the same contract.
    let prev = unsafe { PREV_NEEDS_HOOK }.is_some_and(|f| unsafe { f(fn_oid) });
    // A job worker's calls are its own bookkeeping; the enqueue that caused them was audited.
    prev || (!crate::pg::bgworker::is_bookkeeping() && is_admin_function(fn_oid))
}

fn function_name(fn_oid: pg_sys::Oid) -> String {
    // SAFETY: get_func_name returns a palloc'd name or NULL.
    let name = unsafe { pg_sys::get_func_name(fn_oid) };
    if name.is_null() {
        return fn_oid.to_u32().to_string();
    }
    // SAFETY: a non-NULL result of get_func_name is a NUL-terminated string.
    format!("booking_admin.{}", unsafe { CStr::from_ptr(name) }.to_string_lossy())
}

/// The message of the error being thrown, read while it is still on Postgres's error stack.
fn current_error_message() -> String {
    // SAFETY: called from the hook's FHET_ABORT event, inside fmgr's PG_CATCH, where the error
    // is still on the stack; CopyErrorData must not run in ErrorContext, hence the switch.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
        let edata = pg_sys::CopyErrorData();
        pg_sys::MemoryContextSwitchTo(old);
        let msg = if (*edata).message.is_null() {
            "error".to_string()
        } else {
            CStr::from_ptr((*edata).message).to_string_lossy().into_owned()
        };
        pg_sys::FreeErrorData(edata);
        msg
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    private: *mut pg_sys::Datum,
) {
    // SAFETY: Postgres passes a valid flinfo and a private word that lives as long as the
    // call site; the previous hook shares that word (documented limitation).
    unsafe {
        if let Some(prev) = PREV_HOOK {
            prev(event, flinfo, private);
        }
        let fn_oid = (*flinfo).fn_oid;
        let mut state = (*private).value();
        // Functions with SET or SECURITY DEFINER reach this hook whatever needs_hook said.
        if event == pg_sys::FmgrHookEventType::FHET_START
            && state & CHECKED == 0
            && !crate::pg::bgworker::is_bookkeeping()
        {
            state |= CHECKED;
            if is_admin_function(fn_oid) {
                state |= ADMIN;
            }
            *private = pg_sys::Datum::from(state);
        }
        if state & ADMIN == 0 {
            return;
        }
        match event {
            pg_sys::FmgrHookEventType::FHET_START => DEPTH.with_borrow_mut(|(depth, call)| {
                if *depth == 0 {
                    *call = Some(Call { entry: admin_entry(function_name(fn_oid)) });
                }
                *depth += 1;
            }),
            pg_sys::FmgrHookEventType::FHET_END | pg_sys::FmgrHookEventType::FHET_ABORT => {
                let failed = event == pg_sys::FmgrHookEventType::FHET_ABORT;
                let finished = DEPTH.with_borrow_mut(|(depth, call)| {
                    *depth = depth.saturating_sub(1);
                    if *depth == 0 {
                        call.take()
                    } else {
                        None
                    }
                });
                // A set-returning function ends once per row: log its first row only.
                if let Some(Call { mut entry }) = finished.filter(|_| failed || state & LOGGED == 0) {
                    if failed {
                        entry.success = false;
                        entry.failure_reason = Some(current_error_message());
                    }
                    state |= LOGGED;
                    record_durably(&entry);
                }
            }
            _ => {}
        }
        *private = pg_sys::Datum::from(state);
    }
}
