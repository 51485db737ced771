//! Connection bookkeeping across processes: uWSGI's HTTP router reads the client's request and
//! hands it to a worker as a uwsgi packet; the worker's exchange is folded into the router's span.
use std::net::IpAddr;

use super::{Agent, Conn};
use crate::http::stream::Head;

impl Agent {
    /// Forgets a connection (closed, or its process gone); the caller settles what it held.
    pub(super) fn remove_conn(&mut self, key: (u32, i32)) -> Option<Conn> {
        let conn = self.server.conns.remove(&key)?;
        if let Some(client) = conn.ctx.client.inet() {
            self.unindex_client(client, key);
        }
        Some(conn)
    }

    /// The newest `n` requests read on accepted connection `key`: each that is a worker's uwsgi
    /// request which came through a router connection we follow (uWSGI's HTTP router) is handed
    /// to it, so that the router's span carries it (with the client's timing and the worker's
    /// pid) and the worker's own exchange, when it ends, is not a second span.
    ///
    /// This is done as the worker's request is read, not when its exchange ends: the router read
    /// its client's request before it forwarded it, so that read's record always came first and
    /// the router's connection awaits the request now. When the worker's exchange ends is no
    /// such order: the router can read the worker's reply and write it to its client (its own
    /// exchange ending) before the worker's reply syscall returns and records it.
    pub(super) fn hand_to_router(&mut self, key: (u32, i32), n: usize) {
        let Some(conn) = self.server.conns.get(&key) else { return };
        let mut forwarded: Vec<(IpAddr, u16, String, String)> = conn
            .http
            .pending_requests()
            .rev()
            .take(n)
            .filter_map(|h| {
                let remote = h.remote.as_ref().filter(|_| h.uwsgi.is_some())?;
                Some((remote.0.parse::<IpAddr>().ok()?, remote.1, h.method.clone(), h.target.clone()))
            })
            .collect();
        forwarded.reverse();
        for (ip, remote_port, method, target) in forwarded {
            if !self.route_to_router(key.0, (ip, remote_port), &method, &target) {
                continue;
            }
            let same = |h: &Head| {
                h.uwsgi.is_some()
                    && h.method == method
                    && h.target == target
                    && h.remote.as_ref().is_some_and(|r| same_client(r, ip, remote_port))
            };
            if let Some(conn) = self.server.conns.get_mut(&key) {
                conn.http.hand_off(same);
            }
        }
    }

    /// Tells the router connection whose client is `remote` (a uwsgi request's REMOTE_ADDR and
    /// REMOTE_PORT) and which awaits `method` `target` that `worker` serves it; false when there
    /// is none.
    fn route_to_router(&mut self, worker: u32, remote: (IpAddr, u16), method: &str, target: &str) -> bool {
        let super::server::ServerSide { by_client, conns, .. } = &mut self.server;
        for port in client_ports(remote.1) {
            let Some(keys) = by_client.get(&(remote.0, port)) else { continue };
            for &key in keys {
                match conns.get_mut(&key) {
                    Some(router) if key.0 != worker && router.http.awaits(method, target) => {
                        router.routed.push_back((worker, method.to_string(), target.to_string()));
                        return true;
                    }
                    _ => {}
                }
            }
        }
        false
    }

    pub(super) fn unindex_client(&mut self, client: (IpAddr, u16), key: (u32, i32)) {
        if let Some(keys) = self.server.by_client.get_mut(&client) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.server.by_client.remove(&client);
            }
        }
    }

    /// Indexes accepted connection `key` by its client's address (see `ServerSide::by_client`).
    pub(super) fn index_client(&mut self, client: (IpAddr, u16), key: (u32, i32)) {
        let keys = self.server.by_client.entry(client).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
}

/// The client ports a uwsgi REMOTE_PORT may stand for: uWSGI 2.0's HTTP router writes it in
/// network byte order (seen: a client on port 58892 arrives as 3302), so the swapped port too.
fn client_ports(remote_port: u16) -> [u16; 2] {
    [remote_port, remote_port.swap_bytes()]
}

/// Whether a uwsgi request's REMOTE_ADDR/REMOTE_PORT name the client at `ip`:`port`.
fn same_client(remote: &(String, u16), ip: IpAddr, port: u16) -> bool {
    remote.0.parse::<IpAddr>().is_ok_and(|r| r == ip) && client_ports(remote.1).contains(&port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_remote_port_in_either_byte_order() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // 34932 = 0x8874, written by the router as 0x7488 = 29832.
        assert!(same_client(&("127.0.0.1".into(), 29832), ip, 34932));
        assert!(same_client(&("127.0.0.1".into(), 34932), ip, 34932));
        assert!(!same_client(&("127.0.0.1".into(), 34933), ip, 34932));
        assert!(!same_client(&("127.0.0.2".into(), 34932), ip, 34932));
        assert!(!same_client(&("not an ip".into(), 34932), ip, 34932));
    }
}
