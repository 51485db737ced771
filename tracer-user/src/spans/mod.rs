//! The span model and its JSON-lines form. Field names follow OTLP's JSON mapping closely so that a
//! later OTLP exporter is a change of encoding, not of model. The builders of each kind of span
//! live beside it; every attribute name they write is in `semconv`.
pub mod code;
pub mod db_client;
pub mod exit;
pub mod http_client;
pub mod semconv;
pub mod server;

use serde::Serialize;

pub type Attributes = crate::calls::Attributes;

/// A process's resource attributes, shared by all its spans: built once per process, not cloned
/// per span, and rendered as JSON once per process by the JSON-lines sink.
pub type Resource = std::sync::Arc<Attributes>;

#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    /// The caller's W3C tracestate, carried along with its traceparent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status: Status,
    #[serde(serialize_with = "serialize_resource")]
    pub resource: Resource,
    pub attributes: Attributes,
}

fn serialize_resource<S: serde::Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
    r.as_ref().serialize(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Server,
    /// An outgoing call: a database query, an HTTP request to another service.
    Client,
}

impl SpanKind {
    /// The JSON lines' name (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        }
    }

    /// OTLP's Span.SpanKind number.
    pub fn otlp(self) -> i32 {
        match self {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub code: StatusCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    Unset,
    Error,
}

impl StatusCode {
    /// The JSON lines' name (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Error => "error",
        }
    }
}

impl Span {
    /// The application code that handled the request (OpenTelemetry `code.*` attributes).
    pub fn set_code(&mut self, code: &crate::cpython::code::CodeInfo) {
        code::insert(&mut self.attributes, code);
    }

    /// The framework's route of a server span: `http.route`, and the name
    /// `"{method} {route}"` (OpenTelemetry's HTTP server span name; `HTTP {route}` for a method
    /// outside the known set, whose name is `HTTP` already).
    pub fn set_route(&mut self, route: &str) {
        self.attributes.insert(semconv::HTTP_ROUTE.into(), route.into());
        let mut name = String::with_capacity(self.name.len() + 1 + route.len());
        name.push_str(&self.name);
        name.push(' ');
        name.push_str(route);
        self.name = name;
    }
}

/// A span's place in its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    /// The caller's W3C tracestate, carried down the trace.
    pub trace_state: Option<String>,
    /// The trace's caller said "not sampled": neither this span nor its children are written.
    pub sampled: bool,
}

impl SpanIds {
    /// The first span of a new trace.
    pub fn root() -> SpanIds {
        let (trace_id, span_id) = new_ids();
        SpanIds { trace_id, span_id, parent_span_id: None, trace_state: None, sampled: true }
    }

    /// The span that continues a caller's trace (its valid `traceparent`).
    pub fn continuing(parent: &crate::http::traceparent::Parent) -> SpanIds {
        SpanIds {
            trace_id: parent.trace_id.clone(),
            span_id: new_ids().1,
            parent_span_id: Some(parent.span_id.clone()),
            trace_state: parent.trace_state.clone(),
            sampled: parent.sampled,
        }
    }

    /// A new span under this one, in the same trace.
    #[must_use]
    pub fn child(&self) -> SpanIds {
        SpanIds { span_id: new_ids().1, parent_span_id: Some(self.span_id.clone()), ..self.clone() }
    }
}

/// Random W3C ids: 16-byte trace id and 8-byte span id, never all zero.
pub fn new_ids() -> (String, String) {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let trace: u128 = rng.gen_range(1..=u128::MAX);
    let span: u64 = rng.gen_range(1..=u64::MAX);
    (hex(&trace.to_be_bytes()), hex(&span.to_be_bytes()))
}

/// Lowercase hex of `bytes`, two digits each: what `format!("{:032x}")` gives for an id, without
/// the formatting machinery (two ids per span).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_of_w3c_length() {
        let (t, s) = new_ids();
        assert_eq!((t.len(), s.len()), (32, 16));
        assert!(t.chars().chain(s.chars()).all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(new_ids().0, t);
    }

    #[test]
    fn hex_is_what_format_gives() {
        let (t, s) = (0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10_u128, 0x00ab_cdef_0000_0001_u64);
        assert_eq!(hex(&t.to_be_bytes()), format!("{t:032x}"));
        assert_eq!(hex(&s.to_be_bytes()), format!("{s:016x}"));
    }
}
