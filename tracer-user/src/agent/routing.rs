//! Connection bookkeeping across processes: uWSGI's HTTP router reads the client's request and
//! hands it to a worker as a uwsgi packet; the worker's exchange is folded into the router's span.
use std::net::IpAddr;

use super::{Agent, Conn};
use crate::http::connection::Exchange;
use crate::sockaddr;

impl Agent {
    pub(super) fn remove_conn(&mut self, key: (u32, i32)) -> Option<Conn> {
        let conn = self.conns.remove(&key)?;
        if let sockaddr::Peer::Inet { ip, port } = conn.ctx.client {
            if self.by_client.get(&(ip, port)) == Some(&key) {
                self.by_client.remove(&(ip, port));
            }
        }
        Some(conn)
    }

    /// A worker's uwsgi request that came through a router connection we follow (uWSGI's HTTP
    /// router): the router's span will carry it, with the client's timing and the worker's pid.
    pub(super) fn hand_to_router(&mut self, worker: u32, x: &Exchange) -> bool {
        let Some((ip, port)) = x.request.remote.as_ref().filter(|_| x.request.uwsgi.is_some()) else { return false };
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        let (method, target) = (&x.request.method, &x.request.target);
        // uWSGI 2.0's HTTP router writes REMOTE_PORT in network byte order (seen: a client on
        // port 58892 arrives as 3302), so the swapped port is tried too; the router connection
        // must also be waiting for this very request.
        for port in [*port, port.swap_bytes()] {
            let Some(&key) = self.by_client.get(&(ip, port)) else { continue };
            match self.conns.get_mut(&key) {
                Some(router) if key.0 != worker && router.http.awaits(method, target) => {
                    router.routed.push_back((worker, method.clone(), target.clone()));
                    return true;
                }
                _ => {}
            }
        }
        false
    }
}
