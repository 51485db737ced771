//! An HTTP call a traced process made: its exit span's attributes (OpenTelemetry's HTTP client
//! span conventions).
use serde_json::json;

use super::exit::{peer_attributes, ExitCall};
use super::{semconv, Attributes};
use crate::calls::HttpCall;
use crate::http::redact::Redaction;
use crate::sockaddr::Peer;

/// `tls`: the call went through libssl (an HTTPS call): the URL's scheme is https, and
/// `server.address` is the host the caller asked for (the Host header; the certificate was
/// checked against that name, not against the address).
/// The query's secrets are redacted in `url.full` (as the conventions ask) and the captured
/// headers recorded, by `redaction`.
pub fn call(x: &HttpCall, peer: &Peer, tls: bool, redaction: &Redaction) -> ExitCall {
    let mut a = Attributes::default();
    a.insert(semconv::HTTP_REQUEST_METHOD.into(), json!(x.method));
    peer_attributes(&mut a, peer);
    if let Some((name, _)) = x.host.as_deref().filter(|_| tls).and_then(crate::spans::server::split_host) {
        a.insert(semconv::SERVER_ADDRESS.into(), json!(name));
    }
    let host = x.host.as_deref().map_or_else(
        || match peer {
            Peer::Inet { ip, port } => format!("{ip}:{port}"),
            _ => "localhost".into(),
        },
        str::to_string,
    );
    let scheme = if tls { "https" } else { "http" };
    a.insert(semconv::URL_FULL.into(), json!(format!("{scheme}://{host}{}", redaction.target(&x.target))));
    redaction.call_headers(&x.request_headers, &x.response_headers, &mut a);
    if let Some(tp) = &x.traceparent {
        // The app propagates context itself: keep what it sent, so the callee's span can be found.
        a.insert(semconv::HTTP_REQUEST_HEADER_TRACEPARENT.into(), json!([tp]));
    }
    let status = x.status;
    if let Some(s) = status {
        a.insert(semconv::HTTP_RESPONSE_STATUS_CODE.into(), json!(s));
    }
    // For a client, 4xx is an error too (the call failed), unlike for a server.
    let error = match (x.incomplete, status) {
        (Some(why), _) => Some(why.to_string()),
        (None, Some(s)) if s >= 400 => Some(s.to_string()),
        _ => None,
    };
    if let Some(e) = &error {
        a.insert(semconv::ERROR_TYPE.into(), json!(e));
    }
    ExitCall { name: x.method.clone(), start_ns: x.start_ns, end_ns: x.end_ns, attributes: a, error: error.is_some() }
}
