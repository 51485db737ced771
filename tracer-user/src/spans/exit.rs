//! What every exit span (kind client) has, whatever the protocol: its place in the trace, the
//! peer it called, and the Python code that made the call.
use serde_json::json;

use super::{code, semconv, Attributes, Span, SpanIds, SpanKind, Status, StatusCode};
use crate::cpython::code::CodeInfo;
use crate::sockaddr::Peer;

/// `server.*` and `network.*` of the peer called.
pub fn peer_attributes(a: &mut Attributes, peer: &Peer) {
    match peer {
        Peer::Inet { ip, port } => {
            a.insert(semconv::SERVER_ADDRESS.into(), json!(ip.to_string()));
            a.insert(semconv::SERVER_PORT.into(), json!(port));
            a.insert(semconv::NETWORK_PEER_ADDRESS.into(), json!(ip.to_string()));
            a.insert(semconv::NETWORK_PEER_PORT.into(), json!(port));
        }
        Peer::Unix { path } => {
            a.insert(semconv::SERVER_ADDRESS.into(), json!(path));
            a.insert(semconv::NETWORK_TRANSPORT.into(), json!("unix"));
        }
        Peer::Unknown => {}
    }
}

/// A call's facts as the protocol reported them, before the span is placed in its trace.
pub struct ExitCall {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes,
    pub error: bool,
}

/// The span of `call`, with `ids` (a new trace when the call was made outside any request) and
/// the caller's code. The resource is the caller process's, set by whoever writes it.
pub fn span(call: ExitCall, ids: Option<SpanIds>, caller: Option<&CodeInfo>, to_unix: impl Fn(u64) -> u64) -> Span {
    let ids = ids.unwrap_or_else(SpanIds::root);
    let mut a = call.attributes;
    if let Some(c) = caller {
        code::insert(&mut a, c);
    }
    Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        trace_state: ids.trace_state,
        name: call.name,
        kind: SpanKind::Client,
        start_time_unix_nano: to_unix(call.start_ns),
        end_time_unix_nano: to_unix(call.end_ns),
        status: Status { code: if call.error { StatusCode::Error } else { StatusCode::Unset } },
        resource: Attributes::new(),
        attributes: a,
    }
}
