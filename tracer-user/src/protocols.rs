//! The client protocols pytracer follows, and which one an outgoing connection speaks: told by
//! the client's first write, or, for a protocol whose server speaks first (MySQL's greeting),
//! by the connection's first read.
//!
//! Apart from `crate::calls` (the trait and what it reports) so that the protocols, which
//! implement the trait, never import the module that names them all.
use crate::calls::ClientProtocol;
use crate::db::{mysql, postgres, redis, MysqlConnection, PgConnection, RedisConnection};
use crate::http::client::{self as http, HttpClient};

/// A protocol: whether a connection's first write is its start, and a parser for such a
/// connection.
struct Registration {
    recognises: fn(&[u8]) -> bool,
    start: fn() -> Box<dyn ClientProtocol>,
}

/// In the order they are tried: the first that recognises a first write gets the connection.
/// Redis's inline commands are told apart from HTTP request lines by Redis itself.
const PROTOCOLS: &[Registration] = &[
    Registration { recognises: postgres::looks_like_startup, start: || Box::new(PgConnection::new()) },
    Registration { recognises: redis::looks_like_request, start: || Box::new(RedisConnection::new()) },
    Registration { recognises: http::looks_like_request, start: || Box::new(HttpClient::default()) },
];

/// A protocol whose server speaks first: whether a connection's first read is its start (None:
/// too few bytes to tell), and a parser for such a connection.
struct ServerFirst {
    recognises: fn(&[u8]) -> Option<bool>,
    start: fn() -> Box<dyn ClientProtocol>,
}

const SERVER_FIRST: &[ServerFirst] =
    &[ServerFirst { recognises: mysql::looks_like_greeting, start: || Box::new(MysqlConnection::new()) }];

/// What a connection's first read says.
pub enum FirstRead {
    /// The start of this protocol (the parser is to be fed that read).
    Protocol(Box<dyn ClientProtocol>),
    /// Too few bytes to tell (a MySQL greeting's header read alone): wait for more.
    TooShort,
    /// None of the server-first protocols: the first write decides.
    Unknown,
}

/// The parser for a connection whose first read (before any write) was `first_read`: a MySQL
/// or MariaDB greeting.
pub fn detect_first_read(first_read: &[u8]) -> FirstRead {
    let mut short = false;
    for p in SERVER_FIRST {
        match (p.recognises)(first_read) {
            Some(true) => return FirstRead::Protocol((p.start)()),
            None => short = true,
            Some(false) => {}
        }
    }
    if short {
        FirstRead::TooShort
    } else {
        FirstRead::Unknown
    }
}

/// The parser for a connection whose first write was `first_write` (only its captured prefix,
/// possibly a few bytes): a PostgreSQL StartupMessage, SSLRequest, GSSENCRequest or
/// CancelRequest; a Redis request (RESP array of bulk strings, or an inline command such as
/// `PING`); an HTTP/1.x request line. None for anything else (DNS, TLS, ...).
pub fn detect(first_write: &[u8]) -> Option<Box<dyn ClientProtocol>> {
    PROTOCOLS.iter().find(|p| (p.recognises)(first_write)).map(|p| (p.start)())
}

/// The parser for a connection first seen in the middle of its life (it was open before the
/// agent attached), from a write that starts a call: a PostgreSQL Query, Parse, Bind or Sync of a
/// session already started; a Redis request; an HTTP/1.x request line; a MySQL command. None when the write
/// starts none of these: the caller waits for one that does.
pub fn detect_mid_stream(write: &[u8]) -> Option<Box<dyn ClientProtocol>> {
    if postgres::looks_like_call(write) {
        return Some(Box::new(PgConnection::mid_stream()));
    }
    if redis::looks_like_request(write) {
        return Some(Box::new(RedisConnection::new()));
    }
    if http::looks_like_request(write) {
        return Some(Box::new(HttpClient::default()));
    }
    // Last: a MySQL packet's first bytes are its length, which could be any of the above's.
    mysql::looks_like_command(write).then(|| Box::new(MysqlConnection::mid_stream()) as Box<dyn ClientProtocol>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fixtures;
    use crate::piece::Piece;

    fn protocol(first_write: &[u8]) -> Option<&'static str> {
        detect(first_write).map(|p| p.protocol())
    }

    #[test]
    fn detect_recognises_each_client() {
        assert_eq!(protocol(fixtures::PG_SSL_REQUEST), Some("postgresql"));
        assert_eq!(protocol(fixtures::PG_STARTUP), Some("postgresql"));
        assert_eq!(protocol(fixtures::REDIS_HELLO), Some("redis"));
        assert_eq!(protocol(b"PING\r\n"), Some("redis"));
        assert_eq!(protocol(b"*1\r\n$4\r\nPING\r\n"), Some("redis"));
        // Only the first bytes of a longer write.
        assert_eq!(protocol(&fixtures::PG_STARTUP[..8]), Some("postgresql"));
        assert_eq!(protocol(b"*3\r\n$3\r\nS"), Some("redis"));
        // Request lines are neither database's: HTTP's (the HTTP/2 preface looks like one too).
        for http in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /items/1 HTTP/1.1\r\n",
            b"POST /x HTTP/1.0\r\n",
            b"PRI * HTTP/2.0\r\n",
        ] {
            assert_eq!(protocol(http), Some("http"), "{http:?}");
        }
        for not in [
            &b""[..],
            // A MySQL greeting is read, never written.
            fixtures::MY_GREETING,
            b"\x00\x00",
            b"\x00\x00\x00\x08\x00\x00\x00\x00",
            b"*",
            b"*x\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(protocol(not), None, "{not:?}");
        }
    }

    #[test]
    fn detect_first_read_recognises_a_greeting() {
        let first_read = |b: &[u8]| match detect_first_read(b) {
            FirstRead::Protocol(p) => Ok(p.protocol()),
            FirstRead::TooShort => Err("too short"),
            FirstRead::Unknown => Err("unknown"),
        };
        assert_eq!(first_read(fixtures::MY_GREETING), Ok("mysql"));
        // mysql-connector-python reads the header alone, then the payload.
        assert_eq!(first_read(&fixtures::MY_GREETING[..4]), Err("too short"));
        assert_eq!(first_read(&fixtures::MY_GREETING[..5]), Ok("mysql"));
        assert_eq!(first_read(&fixtures::MY_GREETING[..20]), Ok("mysql"));
        assert_eq!(first_read(b"\x64\x00"), Err("too short"));
        for not in [
            &b"SSH-2.0-OpenSSH_9.2p1\r\n"[..],
            b"220 mail ESMTP\r\n",
            b"HTTP/1.1 200 OK\r\n",
            // Sequence id 1, or protocol version 9.
            b"\x64\x00\x00\x01\x0a5.5.5",
            b"\x64\x00\x00\x00\x095.5.5",
            // An ERR as the first packet (too many connections): not followed.
            b"\x17\x00\x00\x00\xff\x10\x04Too many connections",
        ] {
            assert_eq!(first_read(not), Err("unknown"), "{not:?}");
        }
    }

    #[test]
    fn mid_stream_detection_starts_at_a_call() {
        let protocol = |w: &[u8]| detect_mid_stream(w).map(|p| p.protocol());
        assert_eq!(protocol(fixtures::PG_SIMPLE_QUERY), Some("postgresql"));
        assert_eq!(protocol(fixtures::PG_EXTENDED), Some("postgresql"));
        assert_eq!(protocol(fixtures::REDIS_GET), Some("redis"));
        assert_eq!(protocol(b"GET /a HTTP/1.1\r\nHost: b\r\n\r\n"), Some("http"));
        for http in [&b"POST /x HTTP/1.1\r\n"[..], b"PUT /x HTTP/1.1\r\n", b"PATCH /x HTTP/1.1\r\n"] {
            assert_eq!(protocol(http), Some("http"), "a request line is no PostgreSQL message: {http:?}");
        }
        // A MySQL pool's connection: a COM_QUERY, then its OK, is one call.
        let query = b"\x05\x00\x00\x00\x03DO 1";
        assert_eq!(protocol(query), Some("mysql"));
        let mut p = detect_mid_stream(query).unwrap();
        let piece = |data: &'static [u8], at: u64| Piece { data, len: data.len() as u64, start_ns: at, end_ns: at + 1 };
        assert!(p.on_write(&piece(query, 10)).is_empty());
        let calls = p.on_read(&piece(b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", 20));
        let [crate::calls::Call::Db(c)] = calls.as_slice() else { panic!("{calls:?}") };
        assert_eq!((c.start_ns, c.end_ns, c.error.as_deref()), (10, 21, None), "{c:?}");
        assert_eq!(c.attributes["db.system.name"], "mysql");
        assert_eq!(c.attributes["db.query.text"], "DO ?");
        // A reply's packet (sequence id 1) or a handshake's is no command.
        assert_eq!(protocol(b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"), None);
        // The middle of a reply, of a body, of a large query: not a call's start.
        for not in [&b"ok"[..], b"{\"id\": 1}", b"\x00\x00\x00\x05abc", b"$3\r\nabc\r\n", b"D\x00\x00\x00\x0b"] {
            assert_eq!(protocol(not), None, "{not:?}");
        }
    }
}
