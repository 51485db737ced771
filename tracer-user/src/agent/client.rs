//! Outgoing connections of traced processes: the calls they carry become exit spans (kind
//! client), children of the request span being served on the thread that made the call, named
//! after the Python code that made it. The protocol is recognised from the first bytes written:
//! PostgreSQL and Redis (crate::db) or HTTP/1.x; or, when the server speaks first, from the
//! first bytes read: MySQL's greeting. Anything else (DNS, TLS nobody decrypted) is left alone.
//! A TLS connection's data is libssl's plaintext (agent/tls.rs), flagged so: its calls are
//! HTTPS.
//!
//! A call's span lasts as long as the caller waited: a call the connection ended without an
//! answer to ends when the socket failed (a reset, the peer's end of stream) or, failing that,
//! when the caller closed it. A connect that fails is a span of its own, named `connect`.
//!
//! The call's place in its trace (its parent request, or a callee stitched to it) is `ids`'s
//! business; the span's attributes are `spans::{http_client, db_client}`'s.
// foldhash: these maps are looked up on every kernel record; std's SipHash was about 5% of
// the agent's CPU under load.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use super::Agent;
use crate::calls::{Call, ClientProtocol, ProtocolStats};
use crate::cpython::code::CodeInfo;
use crate::piece::Piece;
use crate::protocols;
use crate::sockaddr::{self, Peer};
use crate::spans::{self, new_ids, semconv, Span, SpanIds};
use tracer_common::EventHeader;

/// Calls remembered per connection between their first write and their end.
const MAX_CALLS: usize = 64;
/// How long before a write's entry its stack walk may be (the walk runs at the syscall's entry,
/// just before the entry time is taken).
const STACK_SLACK_NS: u64 = 1_000_000;
/// A non-blocking connect returns this and completes (or fails) later.
const EINPROGRESS: i64 = 115;

/// The outgoing connections of every traced process.
#[derive(Default)]
pub(super) struct ClientSide {
    /// By (pid, fd).
    pub(super) conns: HashMap<(u32, i32), ClientConn>,
    /// Their local addresses, for same-host stitching.
    pub(super) by_local: HashMap<(IpAddr, u16), (u32, i32)>,
    /// Those closed lately, for callee requests that settle after their caller closed.
    pub(super) closed: super::ids::ClosedCallers,
}

pub(super) struct ClientConn {
    peer: Peer,
    /// This end's address: what the callee's accept sees as its client.
    local: Option<(IpAddr, u16)>,
    proto: Proto,
    /// Calls written and not yet finished, oldest first (ids reads the newest for stitching).
    pub(super) calls: VecDeque<CallCtx>,
    /// The last data on the connection was a write: the next write continues the same call.
    writing: bool,
    /// The parser's stats as last added to the metrics.
    reported: ProtocolStats,
    /// A non-blocking connect not yet known to have worked (nothing moved since): the context of
    /// the connect, for the span of one that fails later.
    connecting: Option<CallCtx>,
    /// The first failure since the current call began: the negated errno (0 for the peer's end
    /// of stream) and when. Calls left without an answer end there.
    failure: Option<(i64, u64)>,
    /// Bytes read since the current call began: what a cut reply got.
    received: u64,
    /// The connect's entry, until the first write burst takes it.
    connect_ns: Option<u64>,
    /// A blocking connect's exit (a non-blocking one is done by the first write).
    connected_ns: Option<u64>,
    /// The first bytes read, before any write, while too few to name the protocol (a MySQL
    /// greeting's header read alone), and that read's entry.
    first_read: Option<(Vec<u8>, u64)>,
    /// Its bytes come from libssl: the calls are HTTPS.
    tls: bool,
}

enum Proto {
    /// Nothing written yet (and nothing read that names a server-first protocol).
    Undecided,
    /// The protocol its first write was recognised as (crate::protocols::detect).
    Parsed(Box<dyn ClientProtocol>),
    /// Not a protocol pytracer parses.
    Other,
}

/// What is known of a call at its first write: its ids and the Python code that made it.
#[derive(Debug, Clone)]
pub(super) struct CallCtx {
    start_ns: u64,
    pub(super) ids: SpanIds,
    caller: Option<Arc<CodeInfo>>,
    /// A call already took these ids: the next call of the same burst gets its own span id.
    used: bool,
    /// The connection's first write burst: the entry of its connect, which the caller lived as
    /// part of the call (urllib3 connects inside the request). Taken by the burst's first call.
    connect_ns: Option<u64>,
    /// When that connect was done (meaningful only with `connect_ns`).
    connect_done_ns: u64,
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
            connecting: None,
            failure: None,
            received: 0,
            connect_ns: None,
            connected_ns: None,
            first_read: None,
            tls: false,
        }
    }
}

/// Longest first read kept while it is too short to name the protocol.
const MAX_FIRST_READ: usize = 16;

impl Agent {
    /// `kernel_local` is the socket's own address as the kernel read it at the connect's exit.
    /// `h.ret` is the connect's return: 0, -EINPROGRESS (followed, may fail later) or an error
    /// (a failed call, not followed).
    pub(super) fn on_connect(&mut self, h: &EventHeader, addr: &[u8], kernel_local: Option<(IpAddr, u16)>) {
        let (tgid, fd) = (h.tgid, h.fd);
        let peer = sockaddr::decode(addr);
        if matches!(peer, Peer::Unknown) {
            return;
        }
        if h.ret < 0 && h.ret != -EINPROGRESS {
            if !matches!(peer, Peer::Inet { .. }) {
                // glibc's name service probes nscd's socket, usually absent, on every user or
                // host lookup: a span each would bury the calls. Counted instead.
                self.stats.failed_unix_connects += 1;
                return;
            }
            let ctx = self.call_ctx(tgid, h.tid, h.start_ns);
            self.failed_connect(tgid, &peer, &ctx, h.end_ns, h.ret);
            return;
        }
        let connecting = (h.ret == -EINPROGRESS).then(|| self.call_ctx(tgid, h.tid, h.start_ns));
        // The callee's accept will report this address. The kernel's reading is exact; /proc is
        // the fallback (no BTF), and misses calls whose socket closed before this record came.
        // Only TCP/UDP peers are matched by socket pair; a unix socket costs no syscalls here.
        let local = match peer {
            Peer::Inet { .. } if kernel_local.is_some() => kernel_local,
            Peer::Inet { .. } => sockaddr::local_addr_of(tgid, fd).as_ref().and_then(Peer::inet),
            _ => None,
        };
        if let Some(l) = local {
            self.client.by_local.insert(l, (tgid, fd));
        }
        let mut conn = ClientConn::new(peer, local);
        conn.connecting = connecting;
        conn.connect_ns = Some(h.start_ns);
        conn.connected_ns = (h.ret == 0).then_some(h.end_ns);
        if let Some(old) = self.client.conns.insert((tgid, fd), conn) {
            self.forget_client_addr(old.local, (tgid, fd));
        }
    }

    /// Follows an outgoing connection made before the agent attached (adopt.rs): its protocol is
    /// decided at its first write that starts a call, [`Self::start_adopted_client`].
    pub(super) fn adopt_client(&mut self, key: (u32, i32), peer: Peer, local: Option<(IpAddr, u16)>) {
        if let Some(l) = local {
            self.client.by_local.insert(l, key);
        }
        if let Some(old) = self.client.conns.insert(key, ClientConn::new(peer, local)) {
            self.forget_client_addr(old.local, key);
        }
    }

    /// An adopted connection's first write that starts a call: `parser` follows it from there.
    pub(super) fn start_adopted_client(&mut self, key: (u32, i32), parser: Box<dyn ClientProtocol>) {
        if let Some(c) = self.client.conns.get_mut(&key) {
            c.proto = Proto::Parsed(parser);
        }
    }

    fn forget_client_addr(&mut self, local: Option<(IpAddr, u16)>, key: (u32, i32)) {
        if let Some(l) = local {
            if self.client.by_local.get(&l) == Some(&key) {
                self.client.by_local.remove(&l);
            }
        }
    }

    pub(super) fn is_client(&self, tgid: u32, fd: i32) -> bool {
        self.client.conns.contains_key(&(tgid, fd))
    }

    /// Data moved on an outgoing connection.
    #[expect(clippy::similar_names, reason = "tgid and tid: the kernel's names for process and thread")]
    pub(super) fn on_client_data(&mut self, tgid: u32, tid: u32, fd: i32, piece: &Piece, is_write: bool, tls: bool) {
        let Some(mut c) = self.client.conns.remove(&(tgid, fd)) else { return };
        if tls && !c.tls {
            // Ciphertext may have come first (a socket wrapped before it connected, libssl found
            // after the handshake): the plaintext decides the protocol afresh.
            c.tls = true;
            if matches!(c.proto, Proto::Other) {
                c.proto = Proto::Undecided;
                c.writing = false;
            }
        }
        // Data moved: the connect worked.
        c.connecting = None;
        if !is_write {
            c.received += piece.len;
        }
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
                let mut ctx = self.call_ctx(tgid, tid, piece.start_ns);
                ctx.connect_ns = c.connect_ns.take();
                ctx.connect_done_ns = c.connected_ns.take().unwrap_or(piece.start_ns);
                c.calls.push_back(ctx);
                c.failure = None;
                c.received = 0;
            }
        }
        let (read_data, joined);
        let mut piece = piece;
        if !is_write && matches!(c.proto, Proto::Undecided) {
            let Some((data, len, start_ns)) = decide_by_first_read(&mut c, piece) else {
                self.client.conns.insert((tgid, fd), c);
                return;
            };
            read_data = data;
            joined = Piece { data: &read_data, len, start_ns, end_ns: piece.end_ns };
            piece = &joined;
        }
        c.writing = is_write;
        let calls = match &mut c.proto {
            Proto::Parsed(p) if is_write => p.on_write(piece),
            Proto::Parsed(p) => p.on_read(piece),
            Proto::Undecided | Proto::Other => Vec::new(),
        };
        self.finish_calls(tgid, &mut c, calls, None);
        self.client.conns.insert((tgid, fd), c);
    }

    /// A followed outgoing socket failed (`h.ret` a negated errno) or found the peer's end of
    /// stream (0). Before anything moved after a non-blocking connect, an error is that
    /// connect's failure; otherwise it is when the calls in flight ended.
    pub(super) fn on_client_failure(&mut self, h: &EventHeader) {
        let Some(c) = self.client.conns.get_mut(&(h.tgid, h.fd)) else { return };
        if h.ret < 0 {
            if let Some(ctx) = c.connecting.take() {
                let peer = c.peer.clone();
                // Later errors on the dead socket belong to the connect's span, not to a call.
                c.failure = Some((h.ret, h.end_ns));
                self.failed_connect(h.tgid, &peer, &ctx, h.end_ns, h.ret);
                return;
            }
        }
        if c.failure.is_none() {
            c.failure = Some((h.ret, h.end_ns));
        }
    }

    /// The span of a connect that failed at `end_ns` with `ret`.
    fn failed_connect(&mut self, tgid: u32, peer: &Peer, ctx: &CallCtx, end_ns: u64, ret: i64) {
        let facts = spans::exit::failed_connect(peer, ctx.start_ns, end_ns, ret);
        if let (Some(t), Peer::Inet { ip, port }) = (self.procs.get(&tgid), peer) {
            self.metrics.client_connect_failed(
                &t.labels,
                &ip.to_string(),
                &port.to_string(),
                spans::exit::errno_type(ret),
            );
        }
        let span = spans::exit::span(facts, Some(ctx.ids.clone()), ctx.caller.as_deref(), |t| self.clock.to_unix_ns(t));
        self.stats.failed_connects += 1;
        self.write_exit_span(tgid, span, Some(ctx));
    }

    /// The caller closed its connection at `at_ns` (kernel clock).
    pub(super) fn on_client_close(&mut self, tgid: u32, fd: i32, at_ns: u64) {
        let Some(mut c) = self.client.conns.remove(&(tgid, fd)) else { return };
        self.forget_client_addr(c.local, (tgid, fd));
        if let (Some(local), Some(call)) = (c.local, c.calls.back()) {
            self.client.closed.remember(local, call.ids.clone(), at_ns);
        }
        let calls = match &mut c.proto {
            Proto::Parsed(p) => p.on_close(),
            Proto::Undecided | Proto::Other => Vec::new(),
        };
        let ended = Ended { at_ns, failure: c.failure, received: c.received };
        self.finish_calls(tgid, &mut c, calls, Some(ended));
    }

    pub(super) fn forget_clients(&mut self, tgid: u32, at_ns: u64) {
        let keys: Vec<_> = self.client.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            self.on_client_close(k.0, k.1, at_ns);
        }
    }

    /// The ids and caller of a call whose first write started at `start_ns` on thread `tid`.
    fn call_ctx(&mut self, tgid: u32, tid: u32, start_ns: u64) -> CallCtx {
        let parent = self.serving_request_ids(tgid, tid);
        // A call made outside any request we saw (a background thread, start-up): its own trace.
        let ids = parent.as_ref().map_or_else(SpanIds::root, SpanIds::child);
        let caller = self.samples.caller(tgid, tid, start_ns.saturating_sub(STACK_SLACK_NS), start_ns);
        CallCtx { start_ns, ids, caller, used: false, connect_ns: None, connect_done_ns: 0 }
    }

    /// `ended`: the connection ended, and the calls without an answer last until then.
    fn finish_calls(&mut self, tgid: u32, c: &mut ClientConn, calls: Vec<Call>, ended: Option<Ended>) {
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
            let mut facts = match &call {
                Call::Http(x) => spans::http_client::call(x, &c.peer, c.tls, &self.redaction),
                Call::Db(d) => spans::db_client::call(d, &c.peer),
            };
            if let Some(c) = ctx.as_ref().filter(|c| c.connect_ns.is_some()) {
                let t = c.connect_ns.unwrap_or_default();
                facts.start_ns = facts.start_ns.min(t);
                // The connect's own share of the call, so a slow one shows (a slow network or
                // an overloaded listener's backlog) next to the call's whole duration.
                let took = c.connect_done_ns.saturating_sub(t);
                #[expect(clippy::cast_precision_loss, reason = "a duration in seconds, as the conventions give them")]
                facts.attributes.insert(semconv::PYTRACER_CONNECT_DURATION.into(), (took as f64 / 1e9).into());
            }
            if let Some(e) = ended.filter(|_| call.unanswered()) {
                e.apply(&mut facts);
            }
            self.observe_call(tgid, &call, &facts);
            let (ids, caller) = (ctx.as_ref().map(|c| c.ids.clone()), ctx.as_ref().and_then(|c| c.caller.clone()));
            let span = spans::exit::span(facts, ids, caller.as_deref(), |t| self.clock.to_unix_ns(t));
            self.write_exit_span(tgid, span, ctx.as_ref());
        }
    }

    /// The call's duration in its family's histogram, by its `error.type` (empty when it worked).
    fn observe_call(&mut self, tgid: u32, call: &Call, facts: &spans::exit::ExitCall) {
        let Some(t) = self.procs.get(&tgid) else { return };
        let text = |k: &str| facts.attributes.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let number = |k: &str| facts.attributes.get(k).and_then(serde_json::Value::as_u64).map(|n| n.to_string());
        let (status, port) = (number(semconv::HTTP_RESPONSE_STATUS_CODE), number(semconv::SERVER_PORT));
        let (system, operation) = match call {
            Call::Http(x) => ("http", x.method.as_str()),
            Call::Db(d) => (d.system, d.operation.as_str()),
        };
        let c = crate::metrics::ClientCall {
            system,
            operation,
            status_code: status.as_deref().unwrap_or(""),
            server_address: text(semconv::SERVER_ADDRESS),
            server_port: port.as_deref().unwrap_or(""),
            error_type: text(semconv::ERROR_TYPE),
            seconds: facts.end_ns.saturating_sub(facts.start_ns) as f64 / 1e9,
        };
        self.metrics.observe_client_call(&t.labels, &c);
    }

    fn write_exit_span(&mut self, tgid: u32, mut span: Span, ctx: Option<&CallCtx>) {
        if ctx.is_some_and(|c| !c.ids.sampled) {
            self.stats.unsampled += 1;
            return;
        }
        if let Some(t) = self.procs.get(&tgid) {
            span.resource.clone_from(&t.resource);
        }
        self.stats.exit_spans += 1;
        self.emit(&span);
    }
}

/// A read before any write: a server-first protocol's start (crate::protocols::detect_first_read)
/// makes `c` that protocol's. The piece to feed on (the earlier short read joined to this one:
/// its captured bytes, length and entry), or None when still too short to tell.
fn decide_by_first_read(c: &mut ClientConn, piece: &Piece) -> Option<(Vec<u8>, u64, u64)> {
    let mut data = c.first_read.as_ref().map(|(d, _)| d.clone()).unwrap_or_default();
    let start_ns = c.first_read.as_ref().map_or(piece.start_ns, |&(_, t)| t);
    let whole = piece.data.len() as u64 == piece.len;
    let len = data.len() as u64 + piece.len;
    data.extend_from_slice(piece.data);
    match protocols::detect_first_read(&data) {
        protocols::FirstRead::Protocol(p) => c.proto = Proto::Parsed(p),
        protocols::FirstRead::TooShort if whole && data.len() <= MAX_FIRST_READ => {
            c.first_read = Some((data, start_ns));
            return None;
        }
        // The client-first protocols decide at the first write.
        protocols::FirstRead::TooShort | protocols::FirstRead::Unknown => {}
    }
    c.first_read = None;
    Some((data, len, start_ns))
}

/// How a connection ended, for the calls it left without an answer.
#[derive(Debug, Clone, Copy)]
struct Ended {
    /// The caller closed the socket (or exited).
    at_ns: u64,
    /// The socket's first failure since the call began (see `ClientConn::failure`).
    failure: Option<(i64, u64)>,
    /// Bytes the caller read since the call began.
    received: u64,
}

impl Ended {
    /// The caller waited until the failure (an error says which in `error.type`; the peer's end
    /// of stream keeps the protocol's own reason) or, when none was seen, until it gave up.
    fn apply(self, facts: &mut spans::exit::ExitCall) {
        let end = match self.failure {
            Some((ret, at)) if ret < 0 => {
                facts.attributes.insert(semconv::ERROR_TYPE.into(), spans::exit::errno_type(ret).into());
                at
            }
            Some((_, at)) => at,
            None => self.at_ns,
        };
        facts.end_ns = facts.end_ns.max(end);
        if self.received > 0 {
            facts.attributes.insert(semconv::PYTRACER_RESPONSE_BYTES_RECEIVED.into(), self.received.into());
        }
        facts.error = true;
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
    let ctx = front.clone();
    // Only the burst's first call lived the connect.
    front.connect_ns = None;
    Some(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_an_answer_lasts_until_the_failure_or_the_close() {
        let end = |ended: Ended| {
            let mut a = spans::Attributes::default();
            a.insert(semconv::ERROR_TYPE.into(), "no_response".into());
            let mut f =
                spans::exit::ExitCall { name: "GET".into(), start_ns: 10, end_ns: 12, attributes: a, error: true };
            ended.apply(&mut f);
            (f.end_ns, f.attributes[semconv::ERROR_TYPE].as_str().unwrap().to_string(), f.error)
        };
        let none = Ended { at_ns: 500, failure: None, received: 0 };
        assert_eq!(end(none), (500, "no_response".into(), true), "nothing seen: until the caller closed");
        let reset = Ended { at_ns: 500, failure: Some((-104, 300)), received: 0 };
        assert_eq!(end(reset), (300, "connection_reset".into(), true), "a reset: until it, and says so");
        let eof = Ended { at_ns: 500, failure: Some((0, 200)), received: 0 };
        assert_eq!(end(eof), (200, "no_response".into(), true), "the peer's end: until it, the protocol's reason");
        let early = Ended { at_ns: 5, failure: None, received: 0 };
        assert_eq!(end(early).0, 12, "never before the last syscall seen");
        let mut f = spans::exit::ExitCall {
            name: "GET".into(),
            start_ns: 10,
            end_ns: 12,
            attributes: spans::Attributes::default(),
            error: true,
        };
        Ended { at_ns: 500, failure: Some((0, 200)), received: 44 }.apply(&mut f);
        assert_eq!(f.attributes[semconv::PYTRACER_RESPONSE_BYTES_RECEIVED], 44, "what the cut reply got");
    }

    #[test]
    fn a_greeting_read_in_two_pieces_names_the_protocol() {
        use crate::db::fixtures::MY_GREETING;
        let mut c = ClientConn::new(Peer::Inet { ip: [127, 0, 0, 1].into(), port: 3306 }, None);
        // mysql-connector-python reads the 4-byte header, then the payload.
        let head = Piece { data: &MY_GREETING[..4], len: 4, start_ns: 10, end_ns: 11 };
        assert!(decide_by_first_read(&mut c, &head).is_none(), "too short to tell: kept");
        assert!(matches!(c.proto, Proto::Undecided));
        let rest = &MY_GREETING[4..];
        let body = Piece { data: rest, len: rest.len() as u64, start_ns: 20, end_ns: 21 };
        let (data, len, start_ns) = decide_by_first_read(&mut c, &body).unwrap();
        assert_eq!((&data[..], len, start_ns), (MY_GREETING, MY_GREETING.len() as u64, 10), "both reads as one");
        let Proto::Parsed(p) = &c.proto else { panic!("not decided") };
        assert_eq!(p.protocol(), "mysql");
        assert!(c.first_read.is_none());

        // A server-first banner of another protocol leaves it to the first write.
        let mut c = ClientConn::new(Peer::Inet { ip: [127, 0, 0, 1].into(), port: 22 }, None);
        let banner = b"SSH-2.0-OpenSSH_9.2p1\r\n";
        let p = Piece { data: banner, len: banner.len() as u64, start_ns: 0, end_ns: 1 };
        assert!(decide_by_first_read(&mut c, &p).is_some());
        assert!(matches!(c.proto, Proto::Undecided));
    }

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
            connect_ns: None,
            connect_done_ns: 0,
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

        let mut first = ctx(40);
        first.connect_ns = Some(35);
        q.push_back(first);
        assert_eq!(take_ctx(&mut q, 40).unwrap().connect_ns, Some(35), "the first call lived the connect");
        assert_eq!(take_ctx(&mut q, 41).unwrap().connect_ns, None, "the burst's next one did not");
    }
}
