//! The backend side of tracing: the spans open in this process (a stack: a new span's parent is
//! the innermost open one), where the caller's context comes from, and handing finished spans
//! to the queue. Spans end explicitly (a Rust guard's drop, `trace_end` from SQL); those still
//! open when their subtransaction or transaction rolls back end there as failed, with the
//! SQLSTATE of the error that was reported, and those still open at commit end with it.

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::pg_sys;

use super::context::{self, Ids, TraceContext, SAMPLED};
use super::otlp::{self, KeyValue, SpanKind, StatusCode};
use crate::pg::xact;

/// The semantic conventions' error type when the error's own type is not known.
pub const OTHER_ERROR: &str = "_OTHER";

/// A span in the making: its identity, its parent, what it says.
pub struct Open {
    pub ctx: TraceContext,
    parent: Option<[u8; 8]>,
    remote_parent: bool,
    name: String,
    kind: SpanKind,
    start_ns: u64,
    attributes: Vec<KeyValue>,
    error: Option<(String, String)>,
    subxact: pg_sys::SubTransactionId,
}

impl Open {
    pub fn sampled(&self) -> bool {
        self.ctx.sampled()
    }

    pub fn set(&mut self, key: &str, value: otlp::Value) {
        if self.sampled() {
            self.attributes.push(KeyValue { key: key.to_owned(), value: Some(otlp::AnyValue { value: Some(value) }) });
        }
    }

    /// `set` for anything an attribute can be, converted only when the span is sampled.
    pub fn attr(&mut self, key: &str, value: impl super::Attr) {
        if self.sampled() {
            self.set(key, value.value());
        }
    }

    pub fn set_start(&mut self, ns: u64) {
        self.start_ns = ns;
    }

    /// Marks the span failed: `error.type` (a SQLSTATE, an HTTP status, a class of failure)
    /// and the status message.
    pub fn fail(&mut self, error_type: &str, message: &str) {
        if self.error.is_none() {
            self.error = Some((error_type.to_owned(), message.to_owned()));
        }
    }

    /// Ends the span at `end_ns` and queues it when it is sampled.
    pub fn finish(mut self, end_ns: u64) {
        if !self.sampled() {
            return;
        }
        let status = match self.error.take() {
            Some((error_type, message)) => {
                self.attributes.push(otlp::kv("error.type", error_type));
                Some(otlp::Status { message, code: StatusCode::Error as i32 })
            }
            None => None,
        };
        let mut flags = u32::from(self.ctx.flags) | otlp::FLAG_HAS_IS_REMOTE;
        if self.remote_parent {
            flags |= otlp::FLAG_IS_REMOTE;
        }
        let span = otlp::Span {
            trace_id: self.ctx.trace_id.to_vec(),
            span_id: self.ctx.span_id.to_vec(),
            trace_state: self.ctx.tracestate.take().unwrap_or_default(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags,
            name: self.name,
            kind: self.kind as i32,
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: end_ns.max(self.start_ns),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            status,
        };
        super::enqueue(&database_name(), span);
    }
}

#[derive(Default)]
struct State {
    stack: Vec<Open>,
    /// The caller's context for this transaction: None until looked up.
    incoming: Option<Option<TraceContext>>,
    ids: Option<Ids>,
    /// The SQLSTATE and message of the error last reported in this transaction: what the
    /// spans its abort ends failed with.
    last_error: Option<(String, String)>,
    /// Whether this transaction's end is hooked.
    hooked: bool,
    database: Option<String>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn next_ids(state: &mut State) -> &mut Ids {
    state.ids.get_or_insert_with(|| {
        let seed = uuid::Uuid::new_v4().as_u128();
        Ids::seeded((seed as u64) ^ ((seed >> 64) as u64) ^ u64::from(std::process::id()))
    })
}

/// The database's name for the resource, looked up once per process (inside a transaction;
/// outside one, before it is known, the spans carry none).
fn database_name() -> String {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.database.is_none() {
            // SAFETY: reads backend globals; the catalog lookup runs only inside a transaction
            // and returns NULL for a database that is gone.
            unsafe {
                if pg_sys::MyDatabaseId != pg_sys::InvalidOid && pg_sys::IsTransactionState() {
                    let p = pg_sys::get_database_name(pg_sys::MyDatabaseId);
                    s.database = Some(if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    });
                }
            }
        }
        s.database.clone().unwrap_or_default()
    })
}

fn config(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns NULL for an unknown option when missing_ok, else a
    // NUL-terminated string owned by the GUC machinery, copied at once.
    unsafe {
        let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// The caller's context: PostgREST's `request.headers`, else `booking_engine.traceparent`,
/// else a sqlcommenter comment in the statement the client sent.
fn caller_context() -> Option<TraceContext> {
    if let Some(ctx) = config(c"request.headers").as_deref().and_then(context::from_headers) {
        return Some(ctx);
    }
    if let Some((parent, state)) = crate::gucs::trace_context_setting() {
        if let Some(ctx) = context::parse(&parent, state.as_deref()) {
            return Some(ctx);
        }
    }
    // SAFETY: the text of the statement the client sent, NULL outside one; copied here.
    let query = unsafe {
        (!pg_sys::debug_query_string.is_null()).then(|| CStr::from_ptr(pg_sys::debug_query_string).to_string_lossy())
    };
    query.as_deref().and_then(context::from_sql_comment)
}

/// The caller's context, looked up once per transaction (PostgREST sets its headers per
/// request, `SET LOCAL` per transaction).
fn incoming(state: &mut State) -> Option<TraceContext> {
    if state.incoming.is_none() {
        state.incoming = Some(caller_context());
        hook_transaction(state);
    }
    state.incoming.clone().flatten()
}

/// Makes sure this transaction's end closes what is open and forgets the caller's context.
fn hook_transaction(state: &mut State) {
    if !std::mem::replace(&mut state.hooked, true) {
        xact::at_commit(end_all_at_commit);
        xact::at_end(end_all_at_abort);
        xact::at_subxact_abort(end_rolled_back);
    }
}

/// Where a new span hangs.
pub enum Parent<'a> {
    /// The innermost open span, else the caller's context, else a new trace.
    Current,
    /// A context carried in a row (another process's span), or None for a new trace.
    Carried(Option<&'a TraceContext>),
}

fn plan(state: &mut State, parent: Parent, name: String, kind: SpanKind, start_ns: u64) -> Open {
    let (parent, remote) = match parent {
        Parent::Current => match state.stack.last() {
            Some(open) => (Some(open.ctx.clone()), false),
            None => (incoming(state), true),
        },
        Parent::Carried(ctx) => (ctx.cloned(), true),
    };
    let ratio = crate::gucs::trace_sample_ratio();
    let ids = next_ids(state);
    let trace_id = parent.as_ref().map_or_else(|| ids.trace_id(), |p| p.trace_id);
    let sampled = context::sample(parent.as_ref(), &trace_id, ratio);
    let flags = parent.as_ref().map_or(0, |p| p.flags & !SAMPLED) | if sampled { SAMPLED } else { 0 };
    let ctx = TraceContext {
        trace_id,
        span_id: ids.span_id(),
        flags,
        tracestate: parent.as_ref().and_then(|p| p.tracestate.clone()),
    };
    // A span under a remote parent is where our process takes the request over: a server span,
    // unless the caller said what it is.
    let kind = if kind == SpanKind::Internal && remote && parent.is_some() { SpanKind::Server } else { kind };
    Open {
        ctx,
        parent: parent.map(|p| p.span_id),
        remote_parent: remote,
        name,
        kind,
        start_ns,
        attributes: Vec::new(),
        error: None,
        subxact: xact::current_subxact_id(),
    }
}

/// A span that is not on the stack (its times are the caller's: a delivery attempt measured
/// by another thread). Its children are made with `child`.
pub fn detached(parent: Option<&TraceContext>, name: &str, kind: SpanKind, start_ns: u64) -> Open {
    database_name();
    STATE.with(|s| plan(&mut s.borrow_mut(), Parent::Carried(parent), name.to_owned(), kind, start_ns))
}

/// A child of a detached span.
pub fn child(parent: &Open, name: &str, kind: SpanKind, start_ns: u64) -> Open {
    let mut open = detached(Some(&parent.ctx), name, kind, start_ns);
    open.remote_parent = false;
    open
}

/// Opens a span on the stack and returns its id.
pub fn begin(name: String, kind: SpanKind, parent: Parent) -> [u8; 8] {
    database_name();
    let start = now_ns();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let open = plan(&mut s, parent, name, kind, start);
        let id = open.ctx.span_id;
        s.stack.push(open);
        hook_transaction(&mut s);
        id
    })
}

/// Runs `f` on the open span `id`, if it is still open.
pub fn with_open<R>(id: [u8; 8], f: impl FnOnce(&mut Open) -> R) -> Option<R> {
    STATE.with(|s| s.borrow_mut().stack.iter_mut().rev().find(|o| o.ctx.span_id == id).map(f))
}

/// The innermost open span named `name`.
pub fn find_named(name: &str) -> Option<[u8; 8]> {
    STATE.with(|s| s.borrow().stack.iter().rev().find(|o| o.name == name).map(|o| o.ctx.span_id))
}

/// Ends the open span `id` and every span still open inside it.
pub fn end(id: [u8; 8]) {
    let end_ns = now_ns();
    let closed = STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.stack.iter().rposition(|o| o.ctx.span_id == id) {
            Some(at) => s.stack.split_off(at),
            None => Vec::new(),
        }
    });
    // Innermost first, as they would have ended.
    for open in closed.into_iter().rev() {
        open.finish(end_ns);
    }
}

/// The context a new span here would continue: the innermost open span's, else the caller's.
pub fn current() -> Option<TraceContext> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.stack.last() {
            Some(open) => Some(open.ctx.clone()),
            None => incoming(&mut s),
        }
    })
}

fn end_where(keep: impl Fn(&Open) -> bool, error: Option<(String, String)>) {
    let end_ns = now_ns();
    let closed: Vec<Open> = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let at = s.stack.iter().position(|o| !keep(o)).unwrap_or(s.stack.len());
        s.stack.split_off(at)
    });
    for mut open in closed.into_iter().rev() {
        if let Some((t, m)) = &error {
            open.fail(t, m);
        }
        open.finish(end_ns);
    }
}

/// At commit: whatever is still open ends with it.
fn end_all_at_commit() {
    end_where(|_| false, None);
}

/// At the end of the transaction (after `end_all_at_commit` on a commit): what is still open
/// was cut short by the abort; the next transaction looks its caller up again.
fn end_all_at_abort() {
    let error = STATE.with(|s| s.borrow_mut().last_error.take());
    end_where(|_| false, Some(error.unwrap_or_else(|| (OTHER_ERROR.into(), "the transaction was rolled back".into()))));
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.incoming = None;
        s.hooked = false;
    });
}

/// A rolled-back subtransaction ends the spans opened inside it (a PL/pgSQL exception block
/// that caught an error, a savepoint rolled back).
fn end_rolled_back(subxact: pg_sys::SubTransactionId) {
    let error = STATE.with(|s| s.borrow_mut().last_error.clone());
    end_where(
        |o| o.subxact < subxact,
        Some(error.unwrap_or_else(|| (OTHER_ERROR.into(), "rolled back to a savepoint".into()))),
    );
}

/// Called by the log hook for every ERROR reported: its SQLSTATE is what the spans ended by
/// the coming abort failed with.
pub fn note_error(sqlstate: String, message: String) {
    STATE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if !s.stack.is_empty() {
                s.last_error = Some((sqlstate, message));
            }
        }
    });
}
