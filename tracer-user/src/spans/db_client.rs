//! A database call a traced process made: the protocol's attributes plus the peer's.
use super::exit::{peer_attributes, ExitCall};
use super::semconv;
use crate::calls::DbCall;
use crate::sockaddr::Peer;

pub fn call(d: &DbCall, peer: &Peer) -> ExitCall {
    let mut a = d.attributes.clone();
    peer_attributes(&mut a, peer);
    ExitCall { name: name(d), start_ns: d.start_ns, end_ns: d.end_ns, attributes: a, error: d.error.is_some() }
}

/// A span name per the conventions: `{operation}`, plus the namespace when known.
pub fn name(d: &DbCall) -> String {
    match d.attributes.get(semconv::DB_NAMESPACE).and_then(|v| v.as_str()) {
        Some(ns) if !d.operation.is_empty() => format!("{} {ns}", d.operation),
        _ if !d.operation.is_empty() => d.operation.clone(),
        _ => d.system.to_string(),
    }
}
