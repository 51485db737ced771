//! Outgoing connections of traced processes: the calls they carry become exit spans (kind
//! client), children of the request span being served on the thread that made the call, named
//! after the Python code that made it. The protocol is recognised from the first bytes written:
//! PostgreSQL and Redis (crate::db) or HTTP/1.x; anything else (DNS, TLS) is left alone.
//!
//! Same-host stitching: when a traced process accepts a TCP connection whose client address is
//! the local address of another traced process's outgoing connection, the server span becomes the
//! child of the call in flight on that connection, with no propagation header needed.
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use super::Agent;
use crate::calls::{Call, ClientProtocol, DbCall, HttpCall, ProtocolStats};
use crate::cpython::code::CodeInfo;
use crate::http::traceparent::{self, Incoming};
use crate::piece::Piece;
use crate::protocols;
use crate::sockaddr::{self, Peer};
use crate::span::{new_ids, Attributes, Span, SpanIds, SpanKind, Status, StatusCode};

/// Calls remembered per connection between their first write and their end.
const MAX_CALLS: usize = 64;
/// Server requests whose ids were fixed early (an exit span needed them) and not yet settled.
const MAX_ASSIGNED: usize = 65_536;
/// How long before a write's entry its stack walk may be (the walk runs at the syscall's entry,
/// just before the entry time is taken).
const STACK_SLACK_NS: u64 = 1_000_000;

pub(super) struct ClientConn {
    peer: Peer,
    /// This end's address: what the callee's accept sees as its client.
    local: Option<(IpAddr, u16)>,
    proto: Proto,
    calls: VecDeque<CallCtx>,
    /// The last data on the connection was a write: the next write continues the same call.
    writing: bool,
    /// The parser's stats as last added to the metrics.
    reported: ProtocolStats,
}

enum Proto {
    /// Nothing written yet.
    Undecided,
    /// The protocol its first write was recognised as (crate::protocols::detect).
    Parsed(Box<dyn ClientProtocol>),
    /// Not a protocol pytracer parses.
    Other,
}

/// What is known of a call at its first write: its ids and the Python code that made it.
#[derive(Debug, Clone)]
struct CallCtx {
    start_ns: u64,
    ids: SpanIds,
    caller: Option<Arc<CodeInfo>>,
    /// A call already took these ids: the next call of the same burst gets its own span id.
    used: bool,
}

impl ClientConn {
    fn new(peer: Peer, local: Option<(IpAddr, u16)>) -> Self {
        ClientConn {
            peer,
            local,
            proto: Proto::Undecided,
            calls: VecDeque::new(),
            writing: false,
            reported: ProtocolStats::default(),
        }
    }
}

impl Agent {
    pub(super) fn on_connect(&mut self, tgid: u32, fd: i32, addr: &[u8]) {
        let peer = sockaddr::decode(addr);
        if matches!(peer, Peer::Unknown) {
            return;
        }
        // Read now, while the socket surely exists: the callee's accept will report this address.
        // Only TCP/UDP peers are matched by socket pair; a unix socket costs no syscalls here.
        let local = match peer {
            Peer::Inet { .. } => match sockaddr::local_addr_of(tgid, fd) {
                Some(Peer::Inet { ip, port }) => Some((ip, port)),
                _ => None,
            },
            _ => None,
        };
        if let Some(l) = local {
            self.clients_by_local.insert(l, (tgid, fd));
        }
        if let Some(old) = self.clients.insert((tgid, fd), ClientConn::new(peer, local)) {
            self.forget_client_addr(old.local, (tgid, fd));
        }
    }

    fn forget_client_addr(&mut self, local: Option<(IpAddr, u16)>, key: (u32, i32)) {
        if let Some(l) = local {
            if self.clients_by_local.get(&l) == Some(&key) {
                self.clients_by_local.remove(&l);
            }
        }
    }

    pub(super) fn is_client(&self, tgid: u32, fd: i32) -> bool {
        self.clients.contains_key(&(tgid, fd))
    }

    /// Data moved on an outgoing connection.
    #[expect(clippy::similar_names, reason = "tgid and tid: the kernel's names for process and thread")]
    pub(super) fn on_client_data(&mut self, tgid: u32, tid: u32, fd: i32, piece: &Piece, is_write: bool) {
        let Some(mut c) = self.clients.remove(&(tgid, fd)) else { return };
        if is_write {
            if matches!(c.proto, Proto::Undecided) {
                c.proto = if let Some(p) = protocols::detect(piece.data) {
                    Proto::Parsed(p)
                } else {
                    self.stats.unparsed_client_connections += 1;
                    Proto::Other
                };
            }
            // A call starts with the first write after a read (or the connection's first): the
            // context is looked up once per call, not once per write of a large request.
            if !c.writing && !matches!(c.proto, Proto::Other) {
                if c.calls.len() == MAX_CALLS {
                    c.calls.pop_front();
                }
                let ctx = self.call_ctx(tgid, tid, piece.start_ns);
                c.calls.push_back(ctx);
            }
        }
        c.writing = is_write;
        let calls = match &mut c.proto {
            Proto::Parsed(p) if is_write => p.on_write(piece),
            Proto::Parsed(p) => p.on_read(piece),
            Proto::Undecided | Proto::Other => Vec::new(),
        };
        self.finish_calls(tgid, &mut c, calls);
        self.clients.insert((tgid, fd), c);
    }

    pub(super) fn on_client_close(&mut self, tgid: u32, fd: i32) {
        let Some(mut c) = self.clients.remove(&(tgid, fd)) else { return };
        self.forget_client_addr(c.local, (tgid, fd));
        let calls = match &mut c.proto {
            Proto::Parsed(p) => p.on_close(),
            Proto::Undecided | Proto::Other => Vec::new(),
        };
        self.finish_calls(tgid, &mut c, calls);
    }

    pub(super) fn forget_clients(&mut self, tgid: u32) {
        let keys: Vec<_> = self.clients.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            self.on_client_close(k.0, k.1);
        }
    }

    /// The ids and caller of a call whose first write started at `start_ns` on thread `tid`.
    fn call_ctx(&mut self, tgid: u32, tid: u32, start_ns: u64) -> CallCtx {
        let parent = self.active_server(tgid, tid).and_then(|fd| self.server_ids(tgid, fd));
        // A call made outside any request we saw (a background thread, start-up): its own trace.
        let ids = parent.as_ref().map_or_else(SpanIds::root, SpanIds::child);
        let caller = self.samples.caller(tgid, tid, start_ns.saturating_sub(STACK_SLACK_NS), start_ns);
        CallCtx { start_ns, ids, caller, used: false }
    }

    /// The accepted connection whose request thread `tid` is serving.
    fn active_server(&self, tgid: u32, tid: u32) -> Option<i32> {
        self.conns
            .iter()
            .find(|((t, _), c)| *t == tgid && c.tid == tid && c.http.oldest().is_some())
            .map(|((_, fd), _)| *fd)
    }

    /// The ids of the request being served on accepted connection (tgid, fd), fixed the first
    /// time anyone asks: an exit span may need them long before the request's own span is made.
    pub(super) fn server_ids(&mut self, tgid: u32, fd: i32) -> Option<SpanIds> {
        let conn = self.conns.get(&(tgid, fd))?;
        let x = conn.http.oldest()?;
        let key = (tgid, fd, x.start_ns);
        if let Some(ids) = self.assigned.get(&key) {
            return Some(ids.clone());
        }
        let incoming = traceparent::parse(x.request.header("traceparent"), x.request.header("tracestate"));
        let client = match conn.ctx.client {
            Peer::Inet { ip, port } => Some((ip, port)),
            _ => None,
        };
        let ids = self.ids_for_request(&incoming, client);
        if self.assigned.len() >= MAX_ASSIGNED {
            self.assigned.clear();
        }
        self.assigned.insert(key, ids.clone());
        Some(ids)
    }

    /// A server span's ids: from the caller's traceparent; else, on the same host, from the
    /// traced call whose socket is this request's client; else a new trace.
    pub(super) fn ids_for_request(&mut self, incoming: &Incoming, client: Option<(IpAddr, u16)>) -> SpanIds {
        if let Incoming::Valid(p) = incoming {
            return p.child();
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

    /// The ids fixed for a request that is now settled, if any were.
    pub(super) fn take_server_ids(&mut self, tgid: u32, fd: i32, start_ns: u64) -> Option<SpanIds> {
        self.assigned.remove(&(tgid, fd, start_ns))
    }

    fn finish_calls(&mut self, tgid: u32, c: &mut ClientConn, calls: Vec<Call>) {
        if let Proto::Parsed(p) = &c.proto {
            // What the parser could not follow since the last look: to the metrics, per protocol.
            let now = p.stats();
            if *now != c.reported {
                self.metrics.client_protocol_events(p.protocol(), &now.since(&c.reported));
                c.reported.clone_from(now);
            }
        }
        for call in calls {
            let ctx = take_ctx(&mut c.calls, call.start_ns());
            let to_unix = |t| self.clock.to_unix_ns(t);
            let span = match &call {
                Call::Http(x) => http_client_span(x, &c.peer, ctx.as_ref(), to_unix),
                Call::Db(d) => db_span(d, &c.peer, ctx.as_ref(), to_unix),
            };
            self.write_exit_span(tgid, span, ctx.as_ref());
        }
    }

    fn write_exit_span(&mut self, tgid: u32, mut span: Span, ctx: Option<&CallCtx>) {
        if ctx.is_some_and(|c| !c.ids.sampled) {
            self.stats.unsampled += 1;
            return;
        }
        if let Some(t) = self.procs.get(&tgid) {
            span.resource = t.resource.clone();
        }
        self.stats.exit_spans += 1;
        self.emit(&span);
    }
}

/// The context of the call that started at `start_ns`: the latest write burst that began at or
/// before it (several calls written in one burst, a pipeline, share it). Older contexts never
/// became calls (a PostgreSQL prepare) and are dropped; the one used stays for the burst's
/// other calls until a later one is used.
fn take_ctx(calls: &mut VecDeque<CallCtx>, start_ns: u64) -> Option<CallCtx> {
    let i = calls.iter().rposition(|c| c.start_ns <= start_ns)?;
    calls.drain(..i);
    let front = calls.front_mut()?;
    if front.used {
        front.ids.span_id = new_ids().1;
    }
    front.used = true;
    Some(front.clone())
}

fn peer_attributes(a: &mut Attributes, peer: &Peer) {
    match peer {
        Peer::Inet { ip, port } => {
            a.insert("server.address".into(), json!(ip.to_string()));
            a.insert("server.port".into(), json!(port));
            a.insert("network.peer.address".into(), json!(ip.to_string()));
            a.insert("network.peer.port".into(), json!(port));
        }
        Peer::Unix { path } => {
            a.insert("server.address".into(), json!(path));
            a.insert("network.transport".into(), json!("unix"));
        }
        Peer::Unknown => {}
    }
}

fn exit_span(
    name: String,
    start_ns: u64,
    end_ns: u64,
    ctx: Option<&CallCtx>,
    mut a: Attributes,
    error: bool,
    to_unix: impl Fn(u64) -> u64,
) -> Span {
    let ids = ctx.map_or_else(SpanIds::root, |c| c.ids.clone());
    if let Some(code) = ctx.and_then(|c| c.caller.as_ref()) {
        a.insert("code.function.name".into(), json!(code.qualname));
        a.insert("code.file.path".into(), json!(code.file));
        a.insert("code.line.number".into(), json!(code.first_line));
    }
    Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        trace_state: ids.trace_state,
        name,
        kind: SpanKind::Client,
        start_time_unix_nano: to_unix(start_ns),
        end_time_unix_nano: to_unix(end_ns),
        status: Status { code: if error { StatusCode::Error } else { StatusCode::Unset } },
        resource: Attributes::new(),
        attributes: a,
    }
}

fn http_client_span(x: &HttpCall, peer: &Peer, ctx: Option<&CallCtx>, to_unix: impl Fn(u64) -> u64) -> Span {
    let mut a = Attributes::new();
    a.insert("http.request.method".into(), json!(x.method));
    peer_attributes(&mut a, peer);
    let host = x.host.as_deref().map_or_else(
        || match peer {
            Peer::Inet { ip, port } => format!("{ip}:{port}"),
            _ => "localhost".into(),
        },
        str::to_string,
    );
    a.insert("url.full".into(), json!(format!("http://{host}{}", x.target)));
    if let Some(tp) = &x.traceparent {
        // The app propagates context itself: keep what it sent, so the callee's span can be found.
        a.insert("http.request.header.traceparent".into(), json!([tp]));
    }
    let status = x.status;
    if let Some(s) = status {
        a.insert("http.response.status_code".into(), json!(s));
    }
    // For a client, 4xx is an error too (the call failed), unlike for a server.
    let error = match (x.incomplete, status) {
        (Some(why), _) => Some(why.to_string()),
        (None, Some(s)) if s >= 400 => Some(s.to_string()),
        _ => None,
    };
    if let Some(e) = &error {
        a.insert("error.type".into(), json!(e));
    }
    exit_span(x.method.clone(), x.start_ns, x.end_ns, ctx, a, error.is_some(), to_unix)
}

fn db_span(call: &DbCall, peer: &Peer, ctx: Option<&CallCtx>, to_unix: impl Fn(u64) -> u64) -> Span {
    let mut a = call.attributes.clone();
    peer_attributes(&mut a, peer);
    exit_span(call.span_name(), call.start_ns, call.end_ns, ctx, a, call.error.is_some(), to_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_takes_the_context_of_its_write_burst() {
        let ctx = |start_ns| CallCtx {
            start_ns,
            ids: SpanIds {
                trace_id: "t".into(),
                span_id: format!("{start_ns}"),
                parent_span_id: None,
                trace_state: None,
                sampled: true,
            },
            caller: None,
            used: false,
        };
        let mut q: VecDeque<CallCtx> = [ctx(1), ctx(2), ctx(30)].into();
        assert_eq!(take_ctx(&mut q, 2).unwrap().ids.span_id, "2");
        assert_eq!(q.len(), 2, "the burst at 1 never became a call");
        let second = take_ctx(&mut q, 5).unwrap();
        assert_eq!(
            (second.start_ns, second.ids.trace_id.as_str()),
            (2, "t"),
            "a second call written in the burst that began at 2"
        );
        assert_ne!(second.ids.span_id, "2", "with its own span id");
        assert_eq!(take_ctx(&mut q, 30).unwrap().ids.span_id, "30");
        assert_eq!(q.len(), 1);
        assert!(take_ctx(&mut q, 0).is_none(), "nothing began before it");
    }
}
