//! A database call a traced process made: the protocol's attributes plus the peer's.
use super::exit::{peer_attributes, ExitCall};
use crate::calls::DbCall;
use crate::sockaddr::Peer;

pub fn call(d: &DbCall, peer: &Peer) -> ExitCall {
    let mut a = d.attributes.clone();
    peer_attributes(&mut a, peer);
    ExitCall { name: d.span_name(), start_ns: d.start_ns, end_ns: d.end_ns, attributes: a, error: d.error.is_some() }
}
