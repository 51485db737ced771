//! Accepted connections: the traced servers' requests and responses become exchanges, and each
//! settled exchange becomes a server span with its ids, its handler and its metrics.
// foldhash: these maps are looked up on every kernel record; std's SipHash was about 5% of
// the agent's CPU under load.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;

use crate::http::connection::{Connection, Outcome};
use crate::piece::Piece;
use crate::sockaddr;
use crate::spans::server::{server_span, ConnContext};

use super::Agent;

pub(super) struct Conn {
    pub(super) http: Connection,
    pub(super) ctx: ConnContext,
    /// The listening socket it was accepted on, for requests that need the server's address.
    pub(super) listen_fd: i32,
    /// The thread that last read from it: the one serving its current request.
    pub(super) tid: u32,
    /// Requests on this connection that a worker answered for us (uWSGI's HTTP router): the
    /// worker's pid, and the request's method and target to match it, in order.
    pub(super) routed: Routed,
}

type Routed = VecDeque<(u32, String, String)>;

/// The accepted connections of every traced process.
#[derive(Default)]
pub(super) struct ServerSide {
    pub(super) conns: HashMap<ConnKey, Conn>,
    /// Local address of each listening socket, by (pid, fd).
    pub(super) listeners: HashMap<ConnKey, Option<(IpAddr, u16)>>,
    /// Accepted TCP connections by client address, to find the router connection a uwsgi
    /// request came through (its REMOTE_ADDR/REMOTE_PORT are the router's client). Several:
    /// Linux gives two connections to different destinations the same local port, so a client's
    /// connection to the router and the router's to a worker can share a client address.
    pub(super) by_client: HashMap<(IpAddr, u16), Vec<ConnKey>>,
}

/// A connection of a traced process: (tgid, fd).
type ConnKey = (u32, i32);

impl Agent {
    /// A traced server accepted a connection on listening socket `listen_fd`.
    pub(super) fn on_accept(&mut self, key: ConnKey, tid: u32, listen_fd: i32, addr: &[u8]) {
        let ctx = ConnContext { client: sockaddr::decode(addr), local: None, tls: false };
        let client = ctx.client.inet();
        let conn = Conn { http: Connection::default(), ctx, listen_fd, tid, routed: Routed::new() };
        self.frame_eval_serving(key.0);
        if let Some(mut old) = self.server.conns.insert(key, conn) {
            // The close of the previous socket on this fd was not seen.
            if let Some(old_client) = old.ctx.client.inet() {
                self.unindex_client(old_client, key);
            }
            let out = old.http.on_close();
            self.settle(key, &mut old, out);
        }
        if let Some(client) = client {
            self.index_client(client, key);
        }
    }

    /// Data read from or written to an accepted connection; `tls`: plaintext from libssl.
    pub(super) fn on_server_data(&mut self, key: ConnKey, tid: u32, piece: &Piece, is_read: bool, tls: bool) {
        let Some(conn) = self.server.conns.get_mut(&key) else {
            self.stats.unknown_connection += 1;
            return;
        };
        if tls && !conn.ctx.tls {
            // The handshake's ciphertext may have come first (libssl was found only after it):
            // the plaintext starts the connection afresh.
            conn.ctx.tls = true;
            conn.http = Connection::default();
        }
        if is_read {
            conn.tid = tid;
        }
        let mut out = if is_read { conn.http.on_read(piece) } else { conn.http.on_write(piece) };
        let heads = std::mem::take(&mut out.requests);
        if heads > 0 {
            self.hand_to_router(key, heads as usize);
        }
        if out != Outcome::default() {
            // Out of the map while it settles: settling looks at other connections (a router's).
            if let Some(mut conn) = self.server.conns.remove(&key) {
                self.settle(key, &mut conn, out);
                self.server.conns.insert(key, conn);
            }
        }
    }

    /// The traced process closed an accepted connection.
    pub(super) fn on_server_close(&mut self, key: ConnKey) {
        if let Some(mut conn) = self.remove_conn(key) {
            let out = conn.http.on_close();
            self.settle(key, &mut conn, out);
        }
    }

    pub(super) fn settle(&mut self, (tgid, fd): ConnKey, conn: &mut Conn, out: Outcome) {
        let Conn { ctx, listen_fd, tid, routed, .. } = conn;
        let (tid, listen_fd) = (*tid, *listen_fd);
        self.stats.malformed_requests += u64::from(out.malformed_requests);
        self.stats.malformed_responses += u64::from(out.malformed_responses);
        self.stats.unmatched_responses += u64::from(out.unmatched_responses);
        for x in out.finished {
            if x.handed_off {
                // A router's span tells of it (see `hand_to_router`).
                self.stats.routed += 1;
                continue;
            }
            // The process that ran the code: the worker a router handed this request to.
            let served_by = match routed.front() {
                Some((w, m, t)) if *m == x.request.method && *t == x.request.target => {
                    let w = *w;
                    routed.pop_front();
                    w
                }
                _ => tgid,
            };
            if !self.procs.contains_key(&served_by) {
                self.resolve(served_by);
            }
            // Only a request without a usable Host header needs the listener's own address.
            let host_port = x
                .request
                .header("host")
                .is_some_and(|h| h.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()));
            if !host_port && ctx.local.is_none() {
                ctx.local = self.listener_addr(tgid, listen_fd);
            }
            let path = x.request.target.split('?').next().unwrap_or_default();
            let route = self.resolve_route(served_by, &x.request.method, path);
            let route_name = route.as_ref().and_then(|r| r.route.clone());
            let traced = &self.procs[&served_by];
            self.metrics.observe_exchange(&traced.labels, &x, path, route.as_ref().and_then(|r| r.route.as_deref()));
            let clock = self.clock;
            let resource = traced.resource.clone();
            let client = ctx.client.inet();
            let (ids, await_caller) = self.settled_ids((tgid, fd), &x, client);
            if !ids.sampled {
                // The caller decided not to record this trace: metrics count it, no span.
                self.stats.unsampled += 1;
                continue;
            }
            let mut span = server_span(&x, ctx, ids, &self.redaction, resource, |t| clock.to_unix_ns(t));
            let walked = if served_by == tgid { self.samples.handler(tgid, tid, x.start_ns, x.end_ns) } else { None };
            self.set_route_and_code(&mut span, route, walked);
            if served_by == tgid {
                self.profile_request(
                    (tgid, fd),
                    (x.start_ns, x.end_ns),
                    &mut span,
                    &x.request.method,
                    route_name.as_deref(),
                );
            }
            if x.incomplete.is_some() {
                self.stats.incomplete_exchanges += 1;
            }
            match client {
                Some(client) if await_caller => self.await_caller(span, client, x.start_ns),
                _ => self.emit(&span),
            }
        }
    }

    /// The route table's route and view, else the stack walk's handler. When both name the
    /// handler, they are compared: a disagreement means one of them read the app wrong.
    fn set_route_and_code(
        &mut self,
        span: &mut crate::spans::Span,
        route: Option<super::route_tables::Resolved>,
        walked: Option<std::sync::Arc<crate::cpython::code::CodeInfo>>,
    ) {
        let Some(route) = route else {
            if let Some(code) = walked {
                span.set_code(&code);
            }
            return;
        };
        if let Some(r) = &route.route {
            span.set_route(r);
        }
        match (&route.code, walked) {
            (Some(view), Some(seen)) => {
                let agree = **view == *seen;
                if !agree {
                    log::debug!(
                        "route {:?}: the table's view is {} ({}:{}), the stack walk saw {} ({}:{})",
                        route.route,
                        view.qualname,
                        view.file,
                        view.first_line,
                        seen.qualname,
                        seen.file,
                        seen.first_line
                    );
                }
                self.metrics.route_check(agree);
                span.set_code(view);
            }
            (Some(view), None) => span.set_code(view),
            (None, Some(seen)) => span.set_code(&seen),
            (None, None) => {}
        }
    }

    /// The local address of a listening socket, looked up once per listener.
    fn listener_addr(&mut self, tgid: u32, fd: i32) -> Option<(IpAddr, u16)> {
        *self
            .server
            .listeners
            .entry((tgid, fd))
            .or_insert_with(|| sockaddr::local_addr_of(tgid, fd).as_ref().and_then(sockaddr::Peer::inet))
    }
}
