//! Tracing: spans from inside the database, joined to the caller's trace and exported over
//! OTLP/HTTP. This is the shared tracing facade every feature records through; see
//! docs/tracing.md for the span names, attributes and settings.
//!
//! # Recording a span
//!
//! ```ignore
//! use crate::trace::{Span, SpanKind};
//! let span = Span::start("booking.slots", SpanKind::Internal); // child of the innermost open span
//! span.set("booking.tenant_id", tenant);                         // converted only when recorded
//! span.fail("P0002", "no such service");                         // status error, error.type
//! drop(span);                                                    // ends it
//! ```
//!
//! From SQL, `booking_internal.trace_begin(name, attributes)` and `trace_end(name, ...)` do the
//! same for PL/pgSQL; `booking_internal.trace_context()` is the context to carry in a row. A
//! span left open by an error ends when its (sub)transaction rolls back, failed with the
//! error's SQLSTATE.
//!
//! When tracing is off (`booking_engine.otlp_endpoint` empty, or the build without the
//! `tracing` feature) every site costs one relaxed atomic load (`active()`), or nothing.
//!
//! # Layout
//!
//! `context` (W3C trace context, where a caller's context is found, ids, sampling; pure),
//! `otlp` (the protocol's messages; pure), `queue` (the lock-free ring; pure), `span` (this
//! process's open spans), `worker` (the exporter), `api` (the SQL functions).

pub mod api;
pub mod context;
pub mod otlp;
pub mod queue;
pub mod span;
pub mod worker;

use std::sync::atomic::Ordering;

use pgrx::prelude::*;

use crate::pg::shmem::Arena;
use crate::telemetry::{self, Change, Metric};
pub use context::TraceContext;
pub use otlp::SpanKind;
use queue::{size_of_ring, Pushed, Ring, SLOT_BYTES};
pub use span::{now_ns, Open, OTHER_ERROR};

/// Spans the queue holds: at 1 KiB a slot, 4 MiB of shared memory; several seconds of spans of
/// a busy server while a collector is slow, after which spans are dropped (and counted).
pub const CAPACITY: usize = 4096;
/// Spans per export request; the exporter is woken when this many are waiting.
pub const BATCH: usize = 512;

static ARENA: Arena = Arena::new(c"booking_engine_traces", size_of_ring(CAPACITY));

pub static SPANS_EXPORTED: Metric =
    Metric::counter("booking_trace_spans_exported", &[], 1, "Spans the OTLP endpoint accepted.");
pub static SPANS_DROPPED: Metric = Metric::counter(
    "booking_trace_spans_dropped",
    &["reason"],
    8,
    "Spans lost: queue_full (the exporter fell behind), export_failed (the endpoint did not answer after the retries), rejected (the endpoint refused them), too_large.",
);

/// Tracing's metrics, declared by `register_features`.
pub static METRICS: &[&Metric] = &[&SPANS_EXPORTED, &SPANS_DROPPED];

/// The ring, once shared memory exists (never in a process that was not preloaded).
fn ring() -> Option<Ring<'static>> {
    let base = ARENA.base();
    if base.is_null() {
        return None;
    }
    // SAFETY: the arena is size_of_ring(CAPACITY) bytes, zeroed at startup, mapped for the life
    // of the process and used only through Ring; CAPACITY is a power of two.
    Some(unsafe { Ring::from_raw(base, CAPACITY) })
}

/// Whether spans are wanted: the one check of every span site. The exporter sets it while it
/// has an endpoint.
#[inline]
pub fn active() -> bool {
    #[cfg(feature = "tracing")]
    {
        let base = ARENA.base();
        // SAFETY: as in `ring`; only the header's flag is read.
        !base.is_null() && unsafe { &*base.cast::<queue::Header>() }.active.load(Ordering::Relaxed) != 0
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

/// Queues a finished span of `database`; wakes the exporter when the queue was empty or holds
/// a batch. Never waits: a full queue drops the span and counts it.
fn enqueue(database: &str, span: otlp::Span) {
    let Some(ring) = ring() else { return };
    let db = &database.as_bytes()[..database.len().min(63)];
    let Some(encoded) = otlp::encode_within(span, SLOT_BYTES - 1 - db.len()) else {
        telemetry::now(&SPANS_DROPPED, &["too_large"], Change::Add(1));
        return;
    };
    let mut bytes = Vec::with_capacity(1 + db.len() + encoded.len());
    bytes.push(db.len() as u8);
    bytes.extend_from_slice(db);
    bytes.extend_from_slice(&encoded);
    match ring.push(&bytes, BATCH) {
        None => telemetry::now(&SPANS_DROPPED, &["queue_full"], Change::Add(1)),
        Some(Pushed::Queued) => {}
        Some(Pushed::First | Pushed::Batch) => {
            let consumer = ring.header().consumer.load(Ordering::Relaxed);
            if consumer > 0 {
                crate::pg::bgworker::set_latch_of(consumer as i32 - 1);
            }
        }
    }
}

/// Splits a queued slot back into its database and span.
fn dequeued(bytes: &[u8]) -> Option<otlp::Queued> {
    use prost::Message;
    let (&n, rest) = bytes.split_first()?;
    let (db, span) = rest.split_at_checked(usize::from(n))?;
    Some(otlp::Queued { database: String::from_utf8_lossy(db).into_owned(), span: otlp::Span::decode(span).ok()? })
}

/// A value an attribute can take; converted only when the span is recorded.
pub trait Attr {
    fn value(self) -> otlp::Value;
}
impl Attr for &str {
    fn value(self) -> otlp::Value {
        otlp::Value::String(self.to_owned())
    }
}
impl Attr for String {
    fn value(self) -> otlp::Value {
        otlp::Value::String(self)
    }
}
impl Attr for bool {
    fn value(self) -> otlp::Value {
        otlp::Value::Bool(self)
    }
}
impl Attr for f64 {
    fn value(self) -> otlp::Value {
        otlp::Value::Double(self)
    }
}
impl Attr for uuid::Uuid {
    fn value(self) -> otlp::Value {
        otlp::Value::String(self.to_string())
    }
}
/// Integers: OTLP's int_value is an i64 (a count larger than that is saturated).
macro_rules! int_attr {
    ($($t:ty),*) => {$(
        impl Attr for $t {
            fn value(self) -> otlp::Value {
                otlp::Value::Int(i64::try_from(self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_attr!(i64, i32, u32, u64, usize);

/// A span open on this process's stack, ended when dropped. Inert when tracing is off.
#[must_use = "a span ends when it is dropped"]
pub struct Span {
    id: Option<[u8; 8]>,
}

impl Span {
    /// A child of the innermost open span (else of the caller's context, else a new trace).
    #[inline]
    pub fn start(name: &str, kind: SpanKind) -> Span {
        if !active() {
            return Span { id: None };
        }
        Span { id: Some(span::begin(name.to_owned(), kind, span::Parent::Current)) }
    }

    /// A span continuing a context carried in a row (a job's, a delivery's); a new trace when
    /// the row carries none.
    pub fn carried(parent: Option<&TraceContext>, name: &str, kind: SpanKind) -> Span {
        if !active() {
            return Span { id: None };
        }
        Span { id: Some(span::begin(name.to_owned(), kind, span::Parent::Carried(parent))) }
    }

    /// Whether attributes are kept (the span is sampled).
    pub fn recording(&self) -> bool {
        self.id.and_then(|id| span::with_open(id, |o| o.sampled())).unwrap_or(false)
    }

    #[inline]
    pub fn set(&self, key: &str, value: impl Attr) {
        if let Some(id) = self.id {
            span::with_open(id, |o| o.set(key, value.value()));
        }
    }

    /// Marks the span failed with `error_type` (a SQLSTATE, a status code, a kind of failure).
    pub fn fail(&self, error_type: &str, message: &str) {
        if let Some(id) = self.id {
            span::with_open(id, |o| o.fail(error_type, message));
        }
    }

    /// Passes `r` through, marking the span failed with its SQLSTATE when it is an error.
    pub fn outcome<T>(&self, r: crate::errors::DomainResult<T>) -> crate::errors::DomainResult<T> {
        if let (Some(_), Err(e)) = (self.id, &r) {
            self.fail(&crate::pg::error::sqlstate_text(e.sqlstate()), &e.to_string());
        }
        r
    }

    /// Moves the span's start back to `ns` (work measured before the span could be opened).
    pub fn started_at(&self, ns: u64) {
        if let Some(id) = self.id {
            span::with_open(id, |o| o.set_start(ns));
        }
    }

    /// This span's context, to hand on.
    pub fn context(&self) -> Option<TraceContext> {
        self.id.and_then(|id| span::with_open(id, |o| o.ctx.clone()))
    }

    /// The trace id, for log lines.
    pub fn trace_id(&self) -> Option<String> {
        self.context().map(|c| c.trace_id_hex())
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        // Unwinding from a Postgres error: the span stays open until the rollback ends it,
        // with the error's SQLSTATE (the log hook has it by then).
        if let Some(id) = self.id.take().filter(|_| !std::thread::panicking()) {
            span::end(id);
        }
    }
}

/// A detached span for times measured elsewhere (None when tracing is off).
pub fn detached(parent: Option<&TraceContext>, name: &str, kind: SpanKind, start_ns: u64) -> Option<Open> {
    active().then(|| span::detached(parent, name, kind, start_ns))
}

/// A child of a detached span (its times are set by the caller too).
pub fn child(parent: &Open, name: &str, kind: SpanKind, start_ns: u64) -> Open {
    span::child(parent, name, kind, start_ns)
}

/// The context to carry into a row written now: the innermost open span's, else the caller's.
/// None when tracing is off.
pub fn current() -> Option<TraceContext> {
    if !active() {
        return None;
    }
    span::current()
}

/// Asks for the queue's shared memory, registers the exporter and the log observer that tells
/// failed spans their SQLSTATE; called from `_PG_init` while preloading.
pub fn init() {
    #[cfg(feature = "tracing")]
    {
        ARENA.request();
        worker::register();
        crate::pg::loghook::observe(note_error);
    }
}

/// An ERROR being reported: the spans its rollback ends failed with its SQLSTATE.
#[cfg(feature = "tracing")]
fn note_error(e: &pg_sys::ErrorData) {
    if !active() {
        return;
    }
    let message = if e.message.is_null() {
        String::new()
    } else {
        // SAFETY: the error's own NUL-terminated message, copied at once.
        unsafe { std::ffi::CStr::from_ptr(e.message) }.to_string_lossy().into_owned()
    };
    span::note_error(crate::pg::error::sqlstate_of(e.sqlerrcode), message);
}
