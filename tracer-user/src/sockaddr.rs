//! Decoding of the `struct sockaddr` bytes that accept() filled in.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Inet { ip: IpAddr, port: u16 },
    Unix { path: String },
    Unknown,
}

impl Peer {
    /// The address and port of an IPv4 or IPv6 peer: what socket pairs are matched by.
    pub fn inet(&self) -> Option<(IpAddr, u16)> {
        match *self {
            Peer::Inet { ip, port } => Some((ip, port)),
            _ => None,
        }
    }
}

/// `ip` as text, as `Display` writes it: IPv4 without `fmt`, which took about 2.5% of the
/// agent's CPU per span (client and server addresses of every span).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(octet));
            }
            s
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

pub fn decode(bytes: &[u8]) -> Peer {
    if bytes.len() < 2 {
        return Peer::Unknown;
    }
    let family = i32::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
    match family {
        libc::AF_INET if bytes.len() >= 8 => Peer::Inet {
            port: u16::from_be_bytes([bytes[2], bytes[3]]),
            ip: IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7])),
        },
        libc::AF_INET6 if bytes.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[8..24]);
            let v6 = Ipv6Addr::from(a);
            // A v4 client on a dual-stack socket is reported as the v4 address users know.
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            Peer::Inet { ip, port: u16::from_be_bytes([bytes[2], bytes[3]]) }
        }
        libc::AF_UNIX => {
            let path = &bytes[2..];
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            Peer::Unix { path: String::from_utf8_lossy(&path[..end]).into_owned() }
        }
        _ => Peer::Unknown,
    }
}

/// The local address of socket `fd` of process `pid`: a duplicate of the descriptor taken with
/// pidfd_getfd (a new reference to the same socket; the process is neither stopped nor signalled),
/// then getsockname. /proc/PID/net/tcp would do too, but under load it lists tens of thousands of
/// TIME_WAIT sockets and reading it stalled the agent for half a second.
pub fn local_addr_of(pid: u32, fd: i32) -> Option<Peer> {
    // SAFETY: plain syscalls on integers and a local buffer; every descriptor opened is closed.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as libc::c_int;
        if pidfd < 0 {
            return None;
        }
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as libc::c_int;
        libc::close(pidfd);
        if dup < 0 {
            return None;
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc = libc::getsockname(dup, (&raw mut storage).cast::<libc::sockaddr>(), &raw mut len);
        libc::close(dup);
        if rc != 0 {
            return None;
        }
        let bytes = std::slice::from_raw_parts((&raw const storage).cast::<u8>(), len as usize);
        Some(decode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_display() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.255.9", "192.168.100.1", "::1", "fe80::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn inet4() {
        let mut b = vec![0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&51234u16.to_be_bytes());
        b[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(decode(&b), Peer::Inet { ip: "127.0.0.1".parse().unwrap(), port: 51234 });
    }

    #[test]
    fn inet6_mapped_v4_and_unix() {
        let mut b = vec![0u8; 28];
        b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&80u16.to_be_bytes());
        b[18..20].copy_from_slice(&[0xff, 0xff]);
        b[20..24].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(decode(&b), Peer::Inet { ip: "10.1.2.3".parse().unwrap(), port: 80 });
        let mut u = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        u.extend(b"/run/app.sock\0");
        assert_eq!(decode(&u), Peer::Unix { path: "/run/app.sock".into() });
        assert_eq!(decode(&[1]), Peer::Unknown);
    }

    #[test]
    fn local_address_of_a_socket_in_a_process() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = local_addr_of(std::process::id(), l.as_raw_fd());
        assert_eq!(found, Some(Peer::Inet { ip: "127.0.0.1".parse().unwrap(), port }));
        assert_eq!(local_addr_of(std::process::id(), 9999), None);
    }
}
