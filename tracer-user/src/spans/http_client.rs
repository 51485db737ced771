//! An HTTP call a traced process made: its exit span's attributes (OpenTelemetry's HTTP client
//! span conventions).
use serde_json::json;

use super::exit::{peer_attributes, ExitCall};
use super::{semconv, Attributes};
use crate::calls::HttpCall;
use crate::sockaddr::Peer;

pub fn call(x: &HttpCall, peer: &Peer) -> ExitCall {
    let mut a = Attributes::new();
    a.insert(semconv::HTTP_REQUEST_METHOD.into(), json!(x.method));
    peer_attributes(&mut a, peer);
    let host = x.host.as_deref().map_or_else(
        || match peer {
            Peer::Inet { ip, port } => format!("{ip}:{port}"),
            _ => "localhost".into(),
        },
        str::to_string,
    );
    a.insert(semconv::URL_FULL.into(), json!(format!("http://{host}{}", x.target)));
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
