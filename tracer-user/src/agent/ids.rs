//! Span ids: where each span sits in its trace. A server request's ids come from its caller's
//! `traceparent` (read once per request, here), else from a traced caller on the same host
//! (stitching: the request's client address is the local address of a traced process's
//! outgoing connection, so the request is the child of the call in flight there), else a new
//! trace. They are fixed the first time anyone needs them: an exit span made while the request is
//! served needs its parent's id long before the request's own span is settled and written.
use std::net::IpAddr;

use crate::http::connection::Exchange;
use crate::http::head::Head;
use crate::http::traceparent::{self, Incoming};
use crate::sockaddr::Peer;
use crate::spans::SpanIds;

use super::Agent;

/// Server requests whose ids were fixed early (an exit span needed them) and not yet settled.
const MAX_ASSIGNED: usize = 65_536;

/// A request's client as a socket address, when it has one (TCP): what stitching matches.
pub(super) fn client_of(peer: &Peer) -> Option<(IpAddr, u16)> {
    match *peer {
        Peer::Inet { ip, port } => Some((ip, port)),
        _ => None,
    }
}

/// What the caller sent of its context.
fn incoming(request: &Head) -> Incoming {
    traceparent::parse(request.header("traceparent"), request.header("tracestate"))
}

impl Agent {
    /// The ids of the request thread `tid` is serving, if it serves one: a call's parent.
    pub(super) fn serving_request_ids(&mut self, tgid: u32, tid: u32) -> Option<SpanIds> {
        let fd = self.active_server(tgid, tid)?;
        self.early_ids(tgid, fd)
    }

    /// The accepted connection whose request thread `tid` is serving.
    fn active_server(&self, tgid: u32, tid: u32) -> Option<i32> {
        self.conns
            .iter()
            .find(|((t, _), c)| *t == tgid && c.tid == tid && c.http.oldest().is_some())
            .map(|((_, fd), _)| *fd)
    }

    /// The ids of the request being served on accepted connection (tgid, fd), fixed the first
    /// time anyone asks.
    fn early_ids(&mut self, tgid: u32, fd: i32) -> Option<SpanIds> {
        let conn = self.conns.get(&(tgid, fd))?;
        let x = conn.http.oldest()?;
        let key = (tgid, fd, x.start_ns);
        if let Some(ids) = self.assigned.get(&key) {
            return Some(ids.clone());
        }
        let (incoming, client) = (incoming(&x.request), client_of(&conn.ctx.client));
        let ids = self.decide(incoming, client);
        if self.assigned.len() >= MAX_ASSIGNED {
            self.assigned.clear();
        }
        self.assigned.insert(key, ids.clone());
        Some(ids)
    }

    /// The ids of a request that is now settled: those fixed early, or decided now.
    pub(super) fn settled_ids(
        &mut self,
        (tgid, fd): (u32, i32),
        x: &Exchange,
        client: Option<(IpAddr, u16)>,
    ) -> SpanIds {
        match self.assigned.remove(&(tgid, fd, x.start_ns)) {
            Some(ids) => ids,
            None => self.decide(incoming(&x.request), client),
        }
    }

    /// A server span's ids: from the caller's traceparent; else, on the same host, from the
    /// traced call whose socket is this request's client; else a new trace.
    fn decide(&mut self, incoming: Incoming, client: Option<(IpAddr, u16)>) -> SpanIds {
        match incoming {
            Incoming::Valid(p) => return SpanIds::continuing(&p),
            Incoming::Invalid(_) => self.stats.invalid_traceparent += 1,
            Incoming::Absent => {}
        }
        let caller = client
            .and_then(|a| self.clients_by_local.get(&a))
            .and_then(|k| self.clients.get(k))
            .and_then(|c| c.calls.back());
        if let Some(call) = caller {
            self.stats.stitched += 1;
            return call.ids.child();
        }
        SpanIds::root()
    }
}
