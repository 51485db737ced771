//! Span ids: where each span sits in its trace. A server request's ids come from its caller's
//! `traceparent` (read once per request, here), else from a traced caller on the same host
//! (stitching: the request's client address is the local address of a traced process's
//! outgoing connection, so the request is the child of the call in flight there), else a new
//! trace. They are fixed the first time anyone needs them: an exit span made while the request is
//! served needs its parent's id long before the request's own span is settled and written.
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::http::connection::Exchange;
use crate::http::head::Head;
use crate::http::traceparent::{self, Incoming};
use crate::sockaddr::Peer;
use crate::spans::SpanIds;

use super::Agent;

/// Server requests whose ids were fixed early (an exit span needed them) and not yet settled.
const MAX_ASSIGNED: usize = 65_536;

/// Outgoing connections closed lately, by local address, with their last call's ids and when
/// they closed: the callee's request may settle (or first need its ids) after the caller closed,
/// since records from different CPUs and the callee's own late write can come after the close.
#[derive(Default)]
pub(super) struct ClosedCallers {
    by_local: HashMap<(IpAddr, u16), (SpanIds, u64)>,
    order: VecDeque<(IpAddr, u16)>,
}

/// Enough for every connection closed in the last seconds of a busy host; the oldest go first.
const MAX_CLOSED_CALLERS: usize = 4096;

impl ClosedCallers {
    pub(super) fn remember(&mut self, local: (IpAddr, u16), ids: SpanIds, closed_ns: u64) {
        if self.by_local.insert(local, (ids, closed_ns)).is_none() {
            self.order.push_back(local);
        }
        while self.order.len() > MAX_CLOSED_CALLERS {
            if let Some(old) = self.order.pop_front() {
                self.by_local.remove(&old);
            }
        }
    }

    /// The caller of a request that started at `start_ns` from `local`: only a connection that
    /// was still open then (a later connection may reuse the port, from an untraced process).
    fn caller(&self, local: (IpAddr, u16), start_ns: u64) -> Option<&SpanIds> {
        self.by_local.get(&local).filter(|(_, closed)| *closed >= start_ns).map(|(ids, _)| ids)
    }
}

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
        let (incoming, client, start_ns) = (incoming(&x.request), client_of(&conn.ctx.client), x.start_ns);
        let ids = self.decide(incoming, client, start_ns);
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
            None => self.decide(incoming(&x.request), client, x.start_ns),
        }
    }

    /// A server span's ids: from the caller's traceparent; else, on the same host, from the
    /// traced call whose socket is this request's client (open, or closed since the request
    /// started at `start_ns`); else a new trace.
    fn decide(&mut self, incoming: Incoming, client: Option<(IpAddr, u16)>, start_ns: u64) -> SpanIds {
        match incoming {
            Incoming::Valid(p) => return SpanIds::continuing(&p),
            Incoming::Invalid(_) => self.stats.invalid_traceparent += 1,
            Incoming::Absent => {}
        }
        let Some(client) = client else { return SpanIds::root() };
        let live = self.clients_by_local.get(&client).and_then(|k| self.clients.get(k)).and_then(|c| c.calls.back());
        let caller = live.map(|call| &call.ids).or_else(|| self.closed_callers.caller(client, start_ns));
        if let Some(ids) = caller {
            let ids = ids.child();
            self.stats.stitched += 1;
            return ids;
        }
        SpanIds::root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_caller_parents_only_requests_it_was_open_for() {
        let local = (IpAddr::from([127, 0, 0, 1]), 40_000);
        let mut closed = ClosedCallers::default();
        let ids = SpanIds::root();
        closed.remember(local, ids.clone(), 1_000);
        assert_eq!(closed.caller(local, 900), Some(&ids), "the request started before the close");
        assert_eq!(closed.caller(local, 1_000), Some(&ids));
        assert_eq!(closed.caller(local, 1_001), None, "a later request on a reused port is not its child");
        assert_eq!(closed.caller((local.0, 40_001), 900), None);
    }

    #[test]
    fn closed_callers_stay_bounded_oldest_first() {
        let mut closed = ClosedCallers::default();
        for port in 0..=MAX_CLOSED_CALLERS as u16 {
            closed.remember((IpAddr::from([127, 0, 0, 1]), port), SpanIds::root(), 10);
        }
        assert_eq!(closed.by_local.len(), MAX_CLOSED_CALLERS);
        assert!(closed.caller((IpAddr::from([127, 0, 0, 1]), 0), 1).is_none(), "the oldest went first");
        assert!(closed.caller((IpAddr::from([127, 0, 0, 1]), 1), 1).is_some());
    }
}
