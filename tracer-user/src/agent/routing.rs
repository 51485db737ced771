//! Connection bookkeeping across processes: uWSGI's HTTP router reads the client's request and
//! hands it to a worker as a uwsgi packet; the worker's exchange is folded into the router's span.
use std::net::IpAddr;

use super::{Agent, Conn};
use crate::http::connection::Exchange;
use crate::http::stream::Head;
use crate::sockaddr;

impl Agent {
    /// Forgets a connection (closed, or its process gone); the caller settles what it held.
    /// A router connection that ends with requests still in flight (the client went away mid
    /// response) takes the worker still serving each of them along: its span names that worker,
    /// and the worker's own exchange, when it ends, is not a second span.
    pub(super) fn remove_conn(&mut self, key: (u32, i32)) -> Option<Conn> {
        let mut conn = self.server.conns.remove(&key)?;
        if let sockaddr::Peer::Inet { ip, port } = conn.ctx.client {
            self.unindex_client((ip, port), key);
            if conn.http.in_flight() > 0 {
                let waiting: Vec<(String, String)> = conn
                    .http
                    .pending_requests()
                    .filter(|h| h.uwsgi.is_none())
                    .map(|h| (h.method.clone(), h.target.clone()))
                    .collect();
                for (method, target) in waiting {
                    let forwarded = |h: &Head| {
                        h.method == method
                            && h.target == target
                            && h.remote.as_ref().is_some_and(|r| same_client(r, ip, port))
                    };
                    let worker = self
                        .server
                        .conns
                        .iter_mut()
                        .find_map(|(k, c)| (k.0 != key.0 && c.http.hand_off(forwarded)).then_some(k.0));
                    if let Some(worker) = worker {
                        conn.routed.push_back((worker, method, target));
                    }
                }
            }
        }
        Some(conn)
    }

    /// A worker's uwsgi request that came through a router connection we follow (uWSGI's HTTP
    /// router): the router's span will carry it, with the client's timing and the worker's pid.
    pub(super) fn hand_to_router(&mut self, worker: u32, x: &Exchange) -> bool {
        if x.handed_off {
            return true; // the router's connection ended first and its span named this worker
        }
        let Some(remote) = x.request.remote.as_ref().filter(|_| x.request.uwsgi.is_some()) else { return false };
        let Ok(ip) = remote.0.parse::<IpAddr>() else { return false };
        let (method, target) = (&x.request.method, &x.request.target);
        let super::server::ServerSide { by_client, conns, .. } = &mut self.server;
        for port in client_ports(remote.1) {
            let Some(keys) = by_client.get(&(ip, port)) else { continue };
            for &key in keys {
                match conns.get_mut(&key) {
                    Some(router) if key.0 != worker && router.http.awaits(method, target) => {
                        router.routed.push_back((worker, method.clone(), target.clone()));
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
