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

/// What the gate decided for one record.
enum Gate {
    /// Not an adopted connection waiting for a boundary: handle as usual.
    Pass,
    /// Skipped (counted).
    Skip,
    /// The write that starts the first call of an adopted client connection: its parser.
    StartClient(Box<dyn crate::calls::ClientProtocol>),
}

impl Agent {
    /// Follows the stream connections process `pid` already had (see the module's comment).
    pub(super) fn adopt_connections(&mut self, pid: u32) {
        let since_ns = clock::monotonic_ns();
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
            log::info!("pid {pid}: following {n} connections opened before the agent attached");
        }
    }

    fn adopt(&mut self, pid: u32, e: Existing, since_ns: u64) {
        let key = (pid, e.fd);
        self.adopted.metrics.adopted(e.side);
        self.adopted.waiting.insert(key, Waiting { side: e.side, since_ns });
        match e.side {
            Side::Accepted => {
                if let Some(client) = e.peer.inet() {
                    self.server.by_client.insert(client, key);
                }
                let ctx = ConnContext { client: e.peer, local: e.local.inet() };
                let conn = Conn { http: Connection::default(), ctx, listen_fd: -1, tid: 0, routed: VecDeque::new() };
                self.server.conns.insert(key, conn);
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
        let (h, data, write) = match ev {
            Event::Read { h, data, .. } => (h, Some(*data), false),
            Event::Write { h, data, .. } => (h, Some(*data), true),
            Event::Accept { h, .. } | Event::Connect { h, .. } | Event::Close { h } | Event::SockError { h } => {
                (h, None, false)
            }
            Event::Exit { h } => {
                self.adopted.waiting.retain(|k, _| k.0 != h.tgid);
                return true;
            }
            _ => return true,
        };
        let key = (h.tgid, h.fd);
        let Some(w) = self.adopted.waiting.get(&key).copied() else { return true };
        let gate = if h.end_ns < w.since_ns {
            // About an earlier socket with the same number, already gone.
            Gate::Skip
        } else if let Some(data) = data {
            match w.side {
                Side::Accepted if !write && crate::http::stream::starts_request(data) => Gate::Pass,
                Side::Connected if write => {
                    crate::protocols::detect_mid_stream(data).map_or(Gate::Skip, Gate::StartClient)
                }
                _ => Gate::Skip,
            }
        } else if matches!(ev, Event::SockError { .. }) {
            Gate::Pass
        } else {
            // Closed, or its number taken by a new socket: nothing more to wait for.
            self.adopted.waiting.remove(&key);
            return true;
        };
        match gate {
            Gate::Pass => {
                if data.is_some() {
                    self.adopted.waiting.remove(&key);
                }
                true
            }
            Gate::Skip => {
                let s = self.adopted.skipped.entry(w.side).or_default();
                s.0 += 1;
                s.1 += if data.is_some() { h.ret.max(0) as u64 } else { 0 };
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
