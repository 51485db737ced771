//! Decoding of the `struct sockaddr` bytes that accept() filled in.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Inet { ip: IpAddr, port: u16 },
    Unix { path: String },
    Unknown,
}

pub fn decode(bytes: &[u8]) -> Peer {
    if bytes.len() < 2 {
        return Peer::Unknown;
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as i32;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
