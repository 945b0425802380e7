//! The SQL side of tracing: spans opened and ended from PL/pgSQL, the context to carry in a
//! row, and the exporter's state. Not for PUBLIC: the extension's own functions call them (as
//! their owner), operators read the status.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::otlp::{self, SpanKind};
use super::span;
use crate::errors::DomainError;
use crate::pg::json_doc::JsonDoc;

type Report = pgrx::pg_sys::panic::ErrorReport;

fn kind_of(kind: &str) -> Result<SpanKind, DomainError> {
    Ok(match kind {
        "internal" => SpanKind::Internal,
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        other => {
            return Err(DomainError::InvalidParameter(format!(
                "span kind must be internal, server, client, producer or consumer, not {other:?}"
            )))
        }
    })
}

/// A JSON scalar as an attribute value: strings, booleans, integers and other numbers as
/// such; objects and arrays as their JSON text; null leaves the attribute out.
fn attribute(v: &Value) -> Option<otlp::Value> {
    Some(match v {
        Value::Null => return None,
        Value::String(s) => otlp::Value::String(s.clone()),
        Value::Bool(b) => otlp::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => otlp::Value::Int(i),
            None => otlp::Value::Double(n.as_f64()?),
        },
        other => otlp::Value::String(other.to_string()),
    })
}

fn set_all(id: [u8; 8], attributes: Option<&Value>) {
    if let Some(Value::Object(map)) = attributes {
        span::with_open(id, |o| {
            for (k, v) in map {
                if let Some(v) = attribute(v) {
                    o.set(k, v);
                }
            }
        });
    }
}

/// The extension's own building blocks (in `booking_internal`, where calling them is neither
/// exposed nor audited as an operator's call): its PL/pgSQL functions call them as their owner.
#[pg_schema]
pub mod booking_internal {
    use super::*;

    /// Whether spans are being recorded and exported: the one check PL/pgSQL makes before
    /// building a span's attributes.
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn tracing() -> bool {
        super::super::active()
    }

    /// Opens a span named `p_name` under the innermost open one (else under the caller's
    /// context, else as a new trace), with `p_attributes` (a JSON object of scalars).
    #[pg_extern(volatile, parallel_restricted)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn trace_begin(
        p_name: Option<String>,
        p_attributes: default!(Option<JsonDoc>, "NULL"),
        p_kind: default!(Option<String>, "'internal'"),
    ) -> Result<(), Report> {
        let kind = kind_of(p_kind.as_deref().unwrap_or("internal"))?;
        let name = p_name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| DomainError::InvalidParameter("p_name is required".into()))?;
        let attributes = p_attributes.as_ref().map(|d| d.value("p_attributes")).transpose()?;
        if !super::super::active() {
            return Ok(());
        }
        let id = span::begin(name, kind, span::Parent::Current);
        set_all(id, attributes);
        Ok(())
    }

    /// Ends the innermost open span named `p_name` (and any still open inside it), adding
    /// `p_attributes`; with `p_error_type` its status is error. Nothing when no such span is
    /// open.
    #[pg_extern(volatile, parallel_restricted)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn trace_end(
        p_name: Option<String>,
        p_attributes: default!(Option<JsonDoc>, "NULL"),
        p_error_type: default!(Option<String>, "NULL"),
        p_error_message: default!(Option<String>, "NULL"),
    ) -> Result<(), Report> {
        let attributes = p_attributes.as_ref().map(|d| d.value("p_attributes")).transpose()?;
        let Some(id) = p_name.as_deref().and_then(span::find_named) else { return Ok(()) };
        set_all(id, attributes);
        if let Some(t) = p_error_type.filter(|t| !t.is_empty()) {
            span::with_open(id, |o| o.fail(&t, p_error_message.as_deref().unwrap_or_default()));
        }
        span::end(id);
        Ok(())
    }

    /// The trace context to carry into a row written now (the innermost open span's, else the
    /// caller's): `traceparent` and `tracestate`, NULL when tracing is off or there is none.
    /// Resume it later with `set_config('booking_engine.traceparent', ..., true)`.
    #[pg_extern(volatile, parallel_restricted)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn trace_context(
    ) -> TableIterator<'static, (name!(traceparent, Option<String>), name!(tracestate, Option<String>))> {
        let ctx = super::super::current();
        TableIterator::once((ctx.as_ref().map(|c| c.traceparent()), ctx.and_then(|c| c.tracestate)))
    }
}

#[pg_schema]
pub mod booking_admin {
    use super::*;

    /// The exporter's state: `{active, endpoint, queued, capacity, exported, dropped}`; the
    /// endpoint without credentials or query.
    #[pg_extern(volatile, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn tracing_status() -> JsonB {
        let (queued, exported, dropped) = super::super::worker::counts();
        JsonB(json!({
            "active": super::super::active(),
            "endpoint": crate::gucs::otlp_endpoint()
                .map(|e| super::super::worker::traces_url(&e).map_or_else(|_| "(not an http(s) URL)".into(), |u| super::super::worker::shown_url(&u))),
            "sample_ratio": crate::gucs::trace_sample_ratio(),
            "queued": queued,
            "capacity": super::super::CAPACITY,
            "exported": exported,
            "dropped": dropped,
        }))
    }
}
