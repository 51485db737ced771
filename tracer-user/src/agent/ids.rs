//! Span ids: where each span sits in its trace. A server request's ids come from its caller's
//! `traceparent` (read once per request, here), else from a traced caller on the same host
//! (stitching: the request's client address is the local address of a traced process's
//! outgoing connection, so the request is the child of the call in flight there), else a new
//! trace. They are fixed the first time anyone needs them: an exit span made while the request is
//! served needs its parent's id long before the request's own span is settled and written.
// foldhash: these maps are looked up on every kernel record; std's SipHash was about 5% of
// the agent's CPU under load.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;

use crate::http::connection::Exchange;
use crate::http::head::Head;
use crate::http::traceparent::{self, Incoming};
use crate::spans::{Span, SpanIds};

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

/// How long a callee's span may wait for its caller's call to be seen: the caller's write record
/// is made at the write's exit, which can come after the callee has read, answered and settled
/// (another CPU, or the caller preempted by the callee it woke).
const AWAIT_CALL: std::time::Duration = std::time::Duration::from_millis(50);
/// Spans waiting at once; past this a span is written as it is.
const MAX_AWAITING: usize = 4096;

/// Ids fixed early and spans waiting for their caller.
#[derive(Default)]
pub(super) struct IdState {
    /// Ids fixed early for requests still being served, by (pid, fd, request start).
    pub(super) assigned: HashMap<(u32, i32, u64), SpanIds>,
    /// Server spans waiting for their same-host caller's call to be seen.
    pub(super) awaiting: Vec<Awaiting>,
}

/// A settled server span whose client is a traced connection with no call seen yet.
pub(super) struct Awaiting {
    span: Span,
    client: (IpAddr, u16),
    start_ns: u64,
    deadline: std::time::Instant,
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
        self.server
            .conns
            .iter()
            .find(|((t, _), c)| *t == tgid && c.tid == tid && c.http.oldest().is_some())
            .map(|((_, fd), _)| *fd)
    }

    /// The ids of the request being served on accepted connection (tgid, fd), fixed the first
    /// time anyone asks.
    fn early_ids(&mut self, tgid: u32, fd: i32) -> Option<SpanIds> {
        let conn = self.server.conns.get(&(tgid, fd))?;
        let x = conn.http.oldest()?;
        let key = (tgid, fd, x.start_ns);
        if let Some(ids) = self.ids.assigned.get(&key) {
            return Some(ids.clone());
        }
        let (incoming, client, start_ns) = (incoming(&x.request), conn.ctx.client.inet(), x.start_ns);
        let (ids, awaiting) = self.decide(incoming, client, start_ns);
        if awaiting {
            // An exit span needs the ids now, before the caller's call is seen: they stay a root.
            self.stats.stitch_missed_ids_fixed_early += 1;
        }
        if self.ids.assigned.len() >= MAX_ASSIGNED {
            self.ids.assigned.clear();
        }
        self.ids.assigned.insert(key, ids.clone());
        Some(ids)
    }

    /// The ids of a request that is now settled: those fixed early, or decided now; true when
    /// its span should wait for its caller's call (`await_caller`).
    pub(super) fn settled_ids(
        &mut self,
        (tgid, fd): (u32, i32),
        x: &Exchange,
        client: Option<(IpAddr, u16)>,
    ) -> (SpanIds, bool) {
        match self.ids.assigned.remove(&(tgid, fd, x.start_ns)) {
            Some(ids) => (ids, false),
            None => self.decide(incoming(&x.request), client, x.start_ns),
        }
    }

    /// Holds `span` until its caller's call is seen, or AWAIT_CALL has passed.
    pub(super) fn await_caller(&mut self, span: Span, client: (IpAddr, u16), start_ns: u64) {
        if self.ids.awaiting.len() >= MAX_AWAITING {
            self.stats.stitch_missed_call_not_seen += 1;
            self.emit(&span);
            return;
        }
        self.ids.awaiting.push(Awaiting { span, client, start_ns, deadline: std::time::Instant::now() + AWAIT_CALL });
    }

    /// After each batch of records: spans whose caller's call is now seen join its trace; those
    /// past their deadline (or all, with `flush`) are written as they are, counted.
    pub(super) fn settle_awaiting(&mut self, flush: bool) {
        if self.ids.awaiting.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        for mut a in std::mem::take(&mut self.ids.awaiting) {
            match self.caller_of(a.client, a.start_ns) {
                Some(call) => {
                    self.stats.stitched += 1;
                    if !call.sampled {
                        self.stats.unsampled += 1;
                        continue;
                    }
                    a.span.trace_id.clone_from(&call.trace_id);
                    a.span.parent_span_id = Some(call.span_id.clone());
                    a.span.trace_state.clone_from(&call.trace_state);
                    self.emit(&a.span);
                }
                None if flush || now >= a.deadline => {
                    self.stats.stitch_missed_call_not_seen += 1;
                    self.emit(&a.span);
                }
                None => self.ids.awaiting.push(a),
            }
        }
    }

    /// The call in flight (or last made) on the traced connection whose local address is
    /// `client`, if it was open when the request started at `start_ns`.
    fn caller_of(&self, client: (IpAddr, u16), start_ns: u64) -> Option<SpanIds> {
        let live =
            self.client.by_local.get(&client).and_then(|k| self.client.conns.get(k)).and_then(|c| c.calls.back());
        live.map(|call| &call.ids).or_else(|| self.client.closed.caller(client, start_ns)).cloned()
    }

    /// A server span's ids: from the caller's traceparent; else, on the same host, from the
    /// traced call whose socket is this request's client (open, or closed since the request
    /// started at `start_ns`); else a new trace.
    /// True with a new trace when the client is a traced connection whose call is not seen
    /// yet: the span can wait for it.
    fn decide(&mut self, incoming: Incoming, client: Option<(IpAddr, u16)>, start_ns: u64) -> (SpanIds, bool) {
        match incoming {
            Incoming::Valid(p) => return (SpanIds::continuing(&p), false),
            Incoming::Invalid(_) => self.stats.invalid_traceparent += 1,
            Incoming::Absent => {}
        }
        let Some(client) = client else { return (SpanIds::root(), false) };
        if let Some(ids) = self.caller_of(client, start_ns) {
            self.stats.stitched += 1;
            return (ids.child(), false);
        }
        (SpanIds::root(), self.client.by_local.contains_key(&client))
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
