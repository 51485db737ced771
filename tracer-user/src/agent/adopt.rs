//! Connections older than the agent: at attach, each stream connection a traced process already
//! has is entered in the kernel's connection map (as its accept or connect would have) and here,
//! and its stream is picked up at its next request boundary: a server connection at its next
//! read that starts a request (an HTTP request line, a uwsgi packet), a client one at its next
//! write that starts a call (a PostgreSQL query, a Redis command, an HTTP request). What moves
//! on it before that (the rest of a request or reply in flight at attach) is skipped and
//! counted, never parsed from its middle.
//!
//! Adoption runs after the process is tracked, with every program attached: a connection
//! accepted or connected from then on is already in the map (so it is left to its own record),
//! and one made earlier is in it before the agent says it is ready.
use std::collections::{HashMap, VecDeque};

use crate::bpf::events::Event;
use crate::clock;
use crate::existing_conns::{self, Existing, Side};
use crate::http::connection::Connection;
use crate::metrics::adoption::Adoption;
use crate::spans::server::ConnContext;

use super::server::Conn;
use super::Agent;

/// Adopted connections whose stream has not reached a request boundary yet, by (tgid, fd), and
/// what adoption counted.
pub(super) struct Adopted {
    waiting: HashMap<(u32, i32), Waiting>,
    metrics: Adoption,
    /// What was skipped on them, by side: (records, bytes).
    pub(super) skipped: HashMap<Side, (u64, u64)>,
    /// Sockets found in a traced process whose facts could not be read, or whose entry in the
    /// kernel's map failed: not followed.
    pub(super) unreadable: u64,
}

impl Adopted {
    pub(super) fn new(metrics: Adoption) -> Self {
        Adopted { waiting: HashMap::new(), metrics, skipped: HashMap::new(), unreadable: 0 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    side: Side,
    /// When the scan began (kernel clock): a record about this descriptor from before then is
    /// about an earlier socket that had the same number.
    since_ns: u64,
}

/// What the gate decided for one record on an adopted connection still waiting.
enum Gate {
    /// Handle as usual, and keep waiting (an error on an outgoing socket).
    Pass,
    /// Handle as usual: the wait is over (the request boundary came, or the socket was closed
    /// or its number taken by a new one).
    Over,
    /// Skipped (counted): the middle of an exchange, or a record about an earlier socket.
    Skip,
    /// The write that starts the first call of an adopted client connection: its parser.
    StartClient(Box<dyn crate::calls::ClientProtocol>),
}

/// The gate for record `ev` on a connection that waits as `w` says.
fn gate(w: Waiting, ev: &Event) -> Gate {
    let (h, data, write) = match ev {
        Event::Read { h, data, .. } => (h, Some(*data), false),
        Event::Write { h, data, .. } => (h, Some(*data), true),
        Event::Accept { h, .. } | Event::Connect { h, .. } | Event::Close { h } | Event::SockError { h } => {
            (h, None, false)
        }
        _ => return Gate::Pass,
    };
    if h.end_ns < w.since_ns {
        // About an earlier socket with the same number, already gone.
        return Gate::Skip;
    }
    match (data, w.side) {
        (Some(data), Side::Accepted) if !write && crate::http::stream::starts_request(data) => Gate::Over,
        (Some(data), Side::Connected) if write => {
            crate::protocols::detect_mid_stream(data).map_or(Gate::Skip, Gate::StartClient)
        }
        (Some(_), _) => Gate::Skip,
        (None, _) if matches!(ev, Event::SockError { .. }) => Gate::Pass,
        (None, _) => Gate::Over,
    }
}

impl Agent {
    /// Follows the stream connections process `pid` already had (see the module's comment).
    pub(super) fn adopt_connections(&mut self, pid: u32) {
        let since_ns = clock::monotonic_ns();
        let began = std::time::Instant::now();
        let scan = existing_conns::scan(pid);
        self.adopted.unreadable += scan.unreadable;
        let mut n = 0;
        for e in scan.found {
            match self.probes.adopt_connection(pid, e.fd, e.side == Side::Connected) {
                Ok(true) => {}
                // Accepted or connected since the process was tracked: its own record is coming.
                Ok(false) => continue,
                Err(err) => {
                    log::warn!("cannot follow connection fd {} of pid {pid}: {err}", e.fd);
                    self.adopted.unreadable += 1;
                    continue;
                }
            }
            // Closed between the scan and the entry (its close was not followed yet): the entry
            // would outlive it. Another socket now at that number is left to its own records.
            match existing_conns::socket_inode(pid, e.fd) {
                Some(inode) if inode == e.inode => {}
                Some(_) => continue,
                None => {
                    self.probes.forget_connection(pid, e.fd);
                    continue;
                }
            }
            self.adopt(pid, e, since_ns);
            n += 1;
        }
        if n > 0 {
            let ms = began.elapsed().as_secs_f64() * 1e3;
            log::info!("pid {pid}: following {n} connections opened before the agent attached ({ms:.1} ms)");
        }
    }

    fn adopt(&mut self, pid: u32, e: Existing, since_ns: u64) {
        let key = (pid, e.fd);
        self.adopted.metrics.adopted(e.side);
        self.adopted.waiting.insert(key, Waiting { side: e.side, since_ns });
        match e.side {
            Side::Accepted => {
                if let Some(client) = e.peer.inet() {
                    self.index_client(client, key);
                }
                let ctx = ConnContext { client: e.peer, local: e.local.inet(), tls: false };
                let conn = Conn { http: Connection::default(), ctx, listen_fd: -1, tid: 0, routed: VecDeque::new() };
                self.server.conns.insert(key, conn);
                self.frame_eval_serving(pid);
            }
            Side::Connected => self.adopt_client(key, e.peer, e.local.inet()),
        }
    }

    /// Whether `ev` is handled as usual; records on adopted connections before their first
    /// request boundary are skipped here.
    pub(super) fn adoption_gate(&mut self, ev: &Event) -> bool {
        if self.adopted.waiting.is_empty() {
            return true;
        }
        let h = match ev {
            Event::Read { h, .. }
            | Event::Write { h, .. }
            | Event::Accept { h, .. }
            | Event::Connect { h, .. }
            | Event::Close { h }
            | Event::SockError { h } => h,
            Event::Exit { h } => {
                self.adopted.waiting.retain(|k, _| k.0 != h.tgid);
                return true;
            }
            _ => return true,
        };
        let key = (h.tgid, h.fd);
        let Some(w) = self.adopted.waiting.get(&key).copied() else { return true };
        match gate(w, ev) {
            Gate::Pass => true,
            Gate::Over => {
                self.adopted.waiting.remove(&key);
                true
            }
            Gate::Skip => {
                let s = self.adopted.skipped.entry(w.side).or_default();
                s.0 += 1;
                if matches!(ev, Event::Read { .. } | Event::Write { .. }) {
                    s.1 += h.ret.max(0) as u64;
                }
                false
            }
            Gate::StartClient(parser) => {
                self.adopted.waiting.remove(&key);
                self.start_adopted_client(key, parser);
                true
            }
        }
    }

    /// The adoption counters, synced into the metrics once a second.
    pub(super) fn sync_adoption_metrics(&mut self) {
        let a = &self.adopted;
        for (side, (records, bytes)) in &a.skipped {
            a.metrics.sync_skipped(*side, *records, *bytes);
        }
        a.metrics.sync_unreadable(a.unreadable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::EventHeader;

    const SINCE: u64 = 1_000;

    fn h(end_ns: u64, ret: i64) -> EventHeader {
        EventHeader { kind: 0, tgid: 7, tid: 7, fd: 5, start_ns: end_ns, end_ns, ret }
    }

    fn read(data: &[u8]) -> Event<'_> {
        Event::Read { h: h(SINCE + 1, data.len() as i64), data, flags: 0 }
    }

    fn write(data: &[u8]) -> Event<'_> {
        Event::Write { h: h(SINCE + 1, data.len() as i64), data, flags: 0 }
    }

    fn decide(side: Side, ev: &Event) -> &'static str {
        match gate(Waiting { side, since_ns: SINCE }, ev) {
            Gate::Pass => "pass",
            Gate::Over => "over",
            Gate::Skip => "skip",
            Gate::StartClient(p) => p.protocol(),
        }
    }

    #[test]
    fn a_server_stream_is_picked_up_at_a_read_that_starts_a_request() {
        let s = Side::Accepted;
        assert_eq!(
            decide(s, &write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
            "skip",
            "a response in flight"
        );
        assert_eq!(decide(s, &read(b"ody of a request read before")), "skip");
        assert_eq!(decide(s, &read(b"GET /users/1 HTTP/1.1\r\n\r\n")), "over");
        assert_eq!(decide(s, &read(b"\x00\x10\x00\x00\x0e\x00REQUEST_METHOD")), "over", "a uwsgi packet");
    }

    #[test]
    fn a_client_stream_is_picked_up_at_a_write_that_starts_a_call() {
        let c = Side::Connected;
        assert_eq!(decide(c, &read(b"T\x00\x00\x00\x1e")), "skip", "the reply to a query sent before");
        assert_eq!(decide(c, &write(b"not a call")), "skip");
        assert_eq!(decide(c, &write(b"Q\x00\x00\x00\x0dSELECT 1\x00")), "postgresql");
        assert_eq!(decide(c, &write(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")), "redis");
        assert_eq!(decide(c, &write(b"GET / HTTP/1.1\r\n\r\n")), "http");
        assert_eq!(decide(c, &Event::SockError { h: h(SINCE + 1, -104) }), "pass", "still waiting after a reset");
    }

    #[test]
    fn records_about_an_earlier_socket_are_skipped_and_a_close_ends_the_wait() {
        let stale = Event::Read { h: h(SINCE - 1, 20), data: b"GET / HTTP/1.1\r\n\r\n", flags: 0 };
        assert_eq!(decide(Side::Accepted, &stale), "skip", "before the scan: the fd's previous socket");
        assert_eq!(decide(Side::Accepted, &Event::Close { h: h(SINCE - 1, 0) }), "skip");
        assert_eq!(decide(Side::Accepted, &Event::Close { h: h(SINCE + 1, 0) }), "over");
        let accept = Event::Accept { h: h(SINCE + 1, 5), listen_fd: 3, addr: &[] };
        assert_eq!(decide(Side::Connected, &accept), "over", "a new socket took the number");
    }
}
