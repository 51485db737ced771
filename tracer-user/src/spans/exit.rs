//! What every exit span (kind client) has, whatever the protocol: its place in the trace, the
//! peer it called, and the Python code that made the call.
use serde_json::json;

use super::{code, semconv, Attributes, Span, SpanIds, SpanKind, Status, StatusCode};
use crate::cpython::code::CodeInfo;
use crate::sockaddr::{ip_text, Peer};

/// `server.*` and `network.*` of the peer called.
pub fn peer_attributes(a: &mut Attributes, peer: &Peer) {
    match peer {
        Peer::Inet { ip, port } => {
            a.insert(semconv::SERVER_ADDRESS.into(), json!(ip_text(*ip)));
            a.insert(semconv::SERVER_PORT.into(), json!(port));
            a.insert(semconv::NETWORK_PEER_ADDRESS.into(), json!(ip_text(*ip)));
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
        resource: super::Resource::default(),
        attributes: a,
    }
}

/// `error.type` of a socket error (a negated errno as the kernel returned it), in
/// OpenTelemetry's style: a low-cardinality snake_case name, `_OTHER` for the rest.
pub fn errno_type(ret: i64) -> &'static str {
    match -ret {
        1 | 13 => "permission_denied",
        2 => "not_found",
        32 => "broken_pipe",
        99 => "address_not_available",
        100 => "network_down",
        101 => "network_unreachable",
        103 => "connection_aborted",
        104 => "connection_reset",
        110 => "timed_out",
        111 => "connection_refused",
        112 => "host_down",
        113 => "host_unreachable",
        _ => "_OTHER",
    }
}

/// A connect that failed: no protocol was spoken yet, so the span says only what is known, the
/// peer and the error. Named `connect`, the operation that failed.
pub fn failed_connect(peer: &Peer, start_ns: u64, end_ns: u64, ret: i64) -> ExitCall {
    let mut a = Attributes::default();
    peer_attributes(&mut a, peer);
    a.insert(semconv::ERROR_TYPE.into(), json!(errno_type(ret)));
    ExitCall { name: "connect".into(), start_ns, end_ns, attributes: a, error: true }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    #[test]
    fn a_refused_connect_says_the_peer_and_the_error() {
        let peer = Peer::Inet { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 9 };
        let c = failed_connect(&peer, 10, 20, -111);
        assert_eq!((c.name.as_str(), c.start_ns, c.end_ns, c.error), ("connect", 10, 20, true));
        assert_eq!(
            serde_json::to_value(&c.attributes).unwrap(),
            json!({
                "server.address": "127.0.0.1",
                "server.port": 9,
                "network.peer.address": "127.0.0.1",
                "network.peer.port": 9,
                "error.type": "connection_refused",
            })
        );
    }

    #[test]
    fn errnos_map_to_error_types() {
        assert_eq!(errno_type(-104), "connection_reset");
        assert_eq!(errno_type(-110), "timed_out");
        assert_eq!(errno_type(-113), "host_unreachable");
        assert_eq!(errno_type(-5), "_OTHER");
    }
}
