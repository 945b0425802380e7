//! The subset of OpenTelemetry's protocol (OTLP, opentelemetry-proto v1) that export needs,
//! declared by hand as prost messages: the field numbers and types below mirror
//! `opentelemetry/proto/{collector/trace,trace,resource,common}/v1/*.proto`. prost derives the
//! protobuf encoding from them, so no generated code or protoc is part of the build. Pure.

use prost::Message;

/// `ExportTraceServiceRequest` (collector/trace/v1/trace_service.proto): the body of
/// `POST /v1/traces` with `Content-Type: application/x-protobuf`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The collector's answer; `partial_success` says how many spans it refused and why.
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(enumeration = "StatusCode", tag = "3")]
    pub code: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
}

/// Span.flags bits beyond the W3C trace flags: whether the parent's remoteness is known, and
/// whether the parent came from another process.
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub const FLAG_IS_REMOTE: u32 = 0x200;

pub fn kv(key: &str, value: impl super::Attr) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value.value()) }) }
}

/// A span as it waits in the queue: its encoding and the resource it belongs to (the
/// database), which the exporter groups by.
pub struct Queued {
    pub database: String,
    pub span: Span,
}

/// The export request for a batch: one resource per database (service name, version, host,
/// `db.system.name`, `db.namespace`), one scope (`booking_engine`), the spans in queue order.
pub fn request(batch: Vec<Queued>, service_name: &str, host: &str) -> ExportTraceServiceRequest {
    let mut by_db: Vec<(String, Vec<Span>)> = Vec::new();
    for q in batch {
        match by_db.iter_mut().find(|(db, _)| *db == q.database) {
            Some((_, spans)) => spans.push(q.span),
            None => by_db.push((q.database, vec![q.span])),
        }
    }
    let resource_spans = by_db
        .into_iter()
        .map(|(db, spans)| {
            let mut attributes = vec![
                kv("service.name", service_name),
                kv("service.version", env!("CARGO_PKG_VERSION")),
                kv("telemetry.sdk.name", "booking_engine"),
                kv("telemetry.sdk.language", "rust"),
                kv("db.system.name", "postgresql"),
            ];
            if !host.is_empty() {
                attributes.push(kv("host.name", host));
            }
            if !db.is_empty() {
                attributes.push(kv("db.namespace", db));
            }
            ResourceSpans {
                resource: Some(Resource { attributes, dropped_attributes_count: 0 }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "booking_engine".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Encodes `span` in at most `room` bytes, dropping attributes from the end (counted in
/// `dropped_attributes_count`) and cutting the status message until it fits; None if even the
/// bare span does not.
pub fn encode_within(mut span: Span, room: usize) -> Option<Vec<u8>> {
    while span.encoded_len() > room {
        if span.attributes.pop().is_some() {
            span.dropped_attributes_count += 1;
        } else if let Some(status) = span.status.as_mut().filter(|s| !s.message.is_empty()) {
            status.message.clear();
        } else {
            return None;
        }
    }
    Some(span.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(name: &str) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            flags: 1 | FLAG_HAS_IS_REMOTE,
            name: name.into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_001_000_000,
            attributes: vec![kv("booking.tenant_id", "t"), kv("http.response.status_code", 200i64)],
            status: Some(Status { message: String::new(), code: StatusCode::Ok as i32 }),
            ..Default::default()
        }
    }

    /// The wire bytes of a small span, worked out by hand from the protobuf encoding rules:
    /// this pins the field numbers and wire types to the .proto's, which a round trip through
    /// our own declarations could not.
    #[test]
    fn the_wire_format_is_otlps() {
        let s = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            flags: 0x101,
            name: "x".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![kv("k", 7i64)],
            status: Some(Status { message: String::new(), code: StatusCode::Error as i32 }),
            ..Default::default()
        };
        let mut want = vec![0x0a, 16];
        want.extend([0xab; 16]);
        want.extend([0x12, 8]);
        want.extend([0xcd; 8]);
        want.extend([0x2a, 1, b'x']); // 5: name
        want.extend([0x30, 3]); // 6: kind, varint
        want.extend([0x39, 1, 0, 0, 0, 0, 0, 0, 0]); // 7: fixed64
        want.extend([0x41, 2, 0, 0, 0, 0, 0, 0, 0]); // 8: fixed64
        want.extend([0x4a, 7, 0x0a, 1, b'k', 0x12, 2, 0x18, 7]); // 9: KeyValue{k, AnyValue{int_value 7}}
        want.extend([0x7a, 2, 0x18, 2]); // 15: Status{code 2}
        want.extend([0x85, 0x01, 0x01, 0x01, 0, 0]); // 16: fixed32 flags
        assert_eq!(s.encode_to_vec(), want);
    }

    #[test]
    fn a_batch_becomes_one_resource_per_database() {
        let batch = vec![
            Queued { database: "a".into(), span: span("1") },
            Queued { database: "b".into(), span: span("2") },
            Queued { database: "a".into(), span: span("3") },
        ];
        let req = request(batch, "booking_engine", "db1");
        assert_eq!(req.resource_spans.len(), 2);
        let a = &req.resource_spans[0];
        let names: Vec<&str> = a.scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["1", "3"]);
        let attrs = &a.resource.as_ref().unwrap().attributes;
        let get = |k: &str| attrs.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value);
        assert_eq!(get("service.name"), Some(Value::String("booking_engine".into())));
        assert_eq!(get("db.namespace"), Some(Value::String("a".into())));
        assert_eq!(get("host.name"), Some(Value::String("db1".into())));
        let decoded = ExportTraceServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, req);
    }

    #[test]
    fn a_span_too_large_loses_attributes_first() {
        let mut s = span("big");
        s.attributes.push(kv("url.full", "x".repeat(600)));
        s.status = Some(Status { message: "m".repeat(300), code: StatusCode::Error as i32 });
        let whole = s.encoded_len();
        let bytes = encode_within(s.clone(), whole).unwrap();
        assert_eq!(bytes.len(), whole);
        let cut = Span::decode(encode_within(s.clone(), 500).unwrap().as_slice()).unwrap();
        assert_eq!(cut.dropped_attributes_count, 1);
        assert_eq!(cut.attributes.len(), 2);
        let bare = Span::decode(encode_within(s.clone(), 120).unwrap().as_slice()).unwrap();
        assert!(bare.attributes.is_empty() && bare.status.unwrap().message.is_empty());
        assert!(encode_within(s, 10).is_none());
    }
}
