//! The stream connections a process already had when the agent attached, and which end of each
//! it holds: accepted (its local address is one the process itself listens on) or connected.
//!
//! Read without stopping or signalling the process: /proc/PID/fd names its sockets, and a
//! duplicate of each taken with pidfd_getfd (a second reference to the same socket, closed at
//! once) answers SO_TYPE, SO_ACCEPTCONN, getsockname and getpeername. That covers TCP over IPv4
//! and IPv6 and unix stream sockets alike, in whatever network namespace the process runs, and
//! costs a few syscalls per socket, where /proc/PID/net/tcp lists every socket of the namespace
//! (tens of thousands of TIME_WAIT ones under load).
use std::net::IpAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use procfs::process::{FDTarget, Process};

use crate::sockaddr::{self, Peer};

/// Which end of a connection the process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// It accepted the connection: the server end.
    Accepted,
    /// It connected: the client end.
    Connected,
}

impl Side {
    /// The `side` label of the adoption metrics.
    pub fn label(self) -> &'static str {
        match self {
            Side::Accepted => "accepted",
            Side::Connected => "connected",
        }
    }
}

/// A connection found open in a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub fd: i32,
    /// The socket's inode, to check later that the descriptor still holds the same socket.
    pub inode: u64,
    pub side: Side,
    /// This end's address.
    pub local: Peer,
    /// The other end's address.
    pub peer: Peer,
}

/// What a scan of one process found.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<Existing>,
    /// Sockets whose facts could not be read (closed meanwhile, or the duplicate refused).
    pub unreadable: u64,
}

/// What one socket descriptor says of itself.
#[derive(Debug, Clone)]
struct Facts {
    fd: i32,
    inode: u64,
    listening: bool,
    local: Peer,
    /// None while not connected (a socket not yet connected, or a listener).
    peer: Option<Peer>,
}

/// The stream connections process `pid` has open now. A process that is gone, or whose
/// descriptors cannot be listed, has none.
pub fn scan(pid: u32) -> Scan {
    let mut out = Scan::default();
    let Ok(proc) = Process::new(pid as i32) else { return out };
    let Ok(fds) = proc.fd() else { return out };
    let sockets: Vec<(i32, u64)> = fds
        .filter_map(Result::ok)
        .filter_map(|f| match f.target {
            FDTarget::Socket(inode) => Some((f.fd, inode)),
            _ => None,
        })
        .collect();
    if sockets.is_empty() {
        return out;
    }
    let Some(pidfd) = pidfd_open(pid) else {
        out.unreadable = sockets.len() as u64;
        return out;
    };
    let mut facts = Vec::with_capacity(sockets.len());
    for (fd, inode) in sockets {
        match socket_facts(&pidfd, fd, inode) {
            Found::Stream(f) => facts.push(f),
            Found::NotStream => {} // datagrams: nothing pytracer parses
            Found::Unreadable => out.unreadable += 1,
        }
    }
    out.found = classify(&facts);
    out
}

/// The inode of the socket `pid` holds at `fd` now, if it is a socket.
pub fn socket_inode(pid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Accepted or connected, for each connected socket: accepted when its local address is one the
/// process listens on (the same port on the same or a wildcard address, or the same unix path),
/// connected when its peer has a name.
fn classify(facts: &[Facts]) -> Vec<Existing> {
    let listeners: Vec<&Peer> = facts.iter().filter(|f| f.listening).map(|f| &f.local).collect();
    let listened_on = |local: &Peer| {
        listeners.iter().any(|l| match (l, local) {
            (Peer::Inet { ip: lip, port: lport }, Peer::Inet { ip, port }) => {
                lport == port && (lip == ip || lip.is_unspecified() || same_v4(*lip, *ip))
            }
            (Peer::Unix { path: lp }, Peer::Unix { path }) => !lp.is_empty() && lp == path,
            _ => false,
        })
    };
    facts
        .iter()
        .filter(|f| !f.listening)
        .filter_map(|f| {
            let peer = f.peer.clone()?;
            let side = if listened_on(&f.local) { Side::Accepted } else { Side::Connected };
            // A connect names its peer: both ends unnamed is a socketpair (a wake-up channel
            // between threads or processes), which no accept or connect made and nothing follows.
            if side == Side::Connected && peer == (Peer::Unix { path: String::new() }) {
                return None;
            }
            Some(Existing { fd: f.fd, inode: f.inode, side, local: f.local.clone(), peer })
        })
        .collect()
}

/// A dual-stack listener bound to `::` reports v4 clients' sockets with v4 addresses.
fn same_v4(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V6(v6), IpAddr::V4(v4)) | (IpAddr::V4(v4), IpAddr::V6(v6)) => v6.to_ipv4_mapped() == Some(v4),
        _ => false,
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: a plain syscall on an integer; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as RawFd;
    // SAFETY: as above: a fresh descriptor, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What one descriptor turned out to be.
enum Found {
    Stream(Facts),
    NotStream,
    /// Closed meanwhile, or the duplicate or a query refused.
    Unreadable,
}

/// The facts of descriptor `fd` of the process behind `pidfd`.
fn socket_facts(pidfd: &OwnedFd, fd: i32, inode: u64) -> Found {
    read_facts(pidfd, fd, inode).unwrap_or(Found::Unreadable)
}

fn read_facts(pidfd: &OwnedFd, fd: i32, inode: u64) -> Option<Found> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on integers; a non-negative result is a new descriptor we own.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) } as RawFd;
    if dup < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor, owned by nobody else; closing it leaves the process's own.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    let raw = dup.as_raw_fd();
    if sockopt_int(raw, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Some(Found::NotStream);
    }
    let listening = sockopt_int(raw, libc::SO_ACCEPTCONN)? != 0;
    let local = sock_name(raw, libc::getsockname)?;
    let peer = if listening { None } else { sock_name(raw, libc::getpeername) };
    Some(Found::Stream(Facts { fd, inode, listening, local, peer }))
}

fn sockopt_int(fd: RawFd, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a local int and its length.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &raw mut len) };
    (rc == 0).then_some(v)
}

type NameCall = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn sock_name(fd: RawFd, call: NameCall) -> Option<Peer> {
    // SAFETY: zeroed storage is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: a local buffer and its length.
    let rc = unsafe { call(fd, (&raw mut storage).cast::<libc::sockaddr>(), &raw mut len) };
    if rc != 0 {
        return None;
    }
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `len` bytes of the local storage, which the kernel filled.
    let bytes = unsafe { std::slice::from_raw_parts((&raw const storage).cast::<u8>(), len) };
    if bytes.len() >= 2 && i32::from(u16::from_ne_bytes([bytes[0], bytes[1]])) == libc::AF_UNIX {
        // An unnamed unix socket's name is just its family: the empty path. An abstract one's
        // starts with a NUL, and is written `@name` (as /proc/net/unix does).
        return Some(Peer::Unix {
            path: match &bytes[2..] {
                [] => String::new(),
                [0, name @ ..] => format!("@{}", String::from_utf8_lossy(name)),
                _ => return Some(sockaddr::decode(bytes)),
            },
        });
    }
    Some(sockaddr::decode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::linux::net::SocketAddrExt;

    fn inet(s: &str) -> Peer {
        let a: std::net::SocketAddr = s.parse().unwrap();
        Peer::Inet { ip: a.ip(), port: a.port() }
    }

    fn facts(fd: i32, listening: bool, local: Peer, peer: Option<Peer>) -> Facts {
        Facts { fd, inode: fd as u64, listening, local, peer }
    }

    #[test]
    fn accepted_when_the_local_address_is_listened_on() {
        let f = [
            facts(3, true, inet("0.0.0.0:8000"), None),
            facts(4, false, inet("127.0.0.1:8000"), Some(inet("127.0.0.1:51000"))),
            facts(5, false, inet("127.0.0.1:51001"), Some(inet("127.0.0.1:5432"))),
            facts(6, true, Peer::Unix { path: "/run/app.sock".into() }, None),
            facts(7, false, Peer::Unix { path: "/run/app.sock".into() }, Some(Peer::Unix { path: String::new() })),
            facts(8, false, Peer::Unix { path: String::new() }, Some(Peer::Unix { path: "/run/pg/.s.PGSQL".into() })),
            // Not connected yet (a connect in progress): nothing to adopt.
            facts(9, false, inet("127.0.0.1:51002"), None),
            facts(10, true, inet("[::]:9000"), None),
            facts(11, false, inet("[::ffff:10.0.0.1]:9000"), Some(inet("10.0.0.2:4000"))),
        ];
        let got: Vec<_> = classify(&f).into_iter().map(|e| (e.fd, e.side)).collect();
        assert_eq!(
            got,
            [
                (4, Side::Accepted),
                (5, Side::Connected),
                (7, Side::Accepted),
                (8, Side::Connected),
                (11, Side::Accepted)
            ]
        );
    }

    #[test]
    fn a_listener_on_another_address_does_not_make_a_connection_accepted() {
        let f = [
            facts(3, true, inet("127.0.0.2:8000"), None),
            facts(4, false, inet("127.0.0.1:8000"), Some(inet("127.0.0.1:8001"))),
            facts(5, true, Peer::Unix { path: String::new() }, None),
            facts(6, false, Peer::Unix { path: String::new() }, Some(Peer::Unix { path: String::new() })),
        ];
        let got: Vec<_> = classify(&f).into_iter().map(|e| (e.fd, e.side)).collect();
        assert_eq!(got, [(4, Side::Connected)], "a socketpair is neither");
    }

    /// This very process: a listener, the connection it accepted and the one it made.
    #[test]
    fn scans_its_own_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = l.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
        let scan = scan(std::process::id());
        let find = |fd: i32| scan.found.iter().find(|e| e.fd == fd).cloned();
        let s = find(server.as_raw_fd()).expect("the accepted socket");
        let c = find(client.as_raw_fd()).expect("the connected socket");
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(
            (s.side, s.local.clone(), s.peer.clone()),
            (Side::Accepted, inet(&format!("127.0.0.1:{port}")), inet(&format!("127.0.0.1:{client_port}")))
        );
        assert_eq!((c.side, c.peer.clone()), (Side::Connected, inet(&format!("127.0.0.1:{port}"))));
        assert!(find(l.as_raw_fd()).is_none(), "a listener is no connection");
        assert_eq!(socket_inode(std::process::id(), server.as_raw_fd()), Some(s.inode));
        assert_eq!(socket_inode(std::process::id(), 99_999), None);

        // The same over a unix socket in the abstract namespace.
        let name = format!("pytracer-scan-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let ul = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let uc = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        let (us, _) = ul.accept().unwrap();
        let scan = super::scan(std::process::id());
        let find = |fd: i32| scan.found.iter().find(|e| e.fd == fd).cloned();
        let abstract_name = Peer::Unix { path: format!("@{name}") };
        let accepted = find(us.as_raw_fd()).expect("the accepted unix socket");
        let connected = find(uc.as_raw_fd()).expect("the connected unix socket");
        assert_eq!((accepted.side, accepted.local), (Side::Accepted, abstract_name.clone()));
        assert_eq!((connected.side, connected.peer), (Side::Connected, abstract_name));
    }
}
