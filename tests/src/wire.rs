//! The hard cases on the wire, as raw bytes over a bare TcpStream: each function sends one case
//! the way a real client would (and the way a server gets it wrong), reads what the server
//! answers, and returns it for the test to assert. Shared by the Gunicorn and uWSGI wire tests;
//! the paths are distinct per case so each span can be found by its path.
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to 127.0.0.1:`port` with a 10 s read timeout and Nagle off (each write is sent
/// as it is).
pub fn raw(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Everything the server sends until it closes (or the read timeout), lossily decoded.
pub fn read_all(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server answered on one connection, and the client's port (the span's `client.port`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub client_port: u16,
}

fn answer(s: TcpStream) -> Answer {
    let client_port = s.local_addr().map_or(0, |a| a.port());
    Answer { text: read_all(s), client_port }
}

/// The status code of a raw answer's first line (`HTTP/1.x NNN ...`), if it has one.
pub fn status_of(answer: &str) -> Option<u16> {
    let line = answer.lines().next()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// The body of a raw answer: what follows the first empty line.
pub fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `POST /upload` with `Transfer-Encoding: chunked`, head and then the 11 data bytes in two
/// chunks (`hello`, ` world`), in two writes. Testapp answers the number of
/// body bytes the app read).
pub fn chunked_upload(port: u16) -> Answer {
    let mut s = raw(port);
    s.write_all(CHUNKED_UPLOAD_HEAD.replace("{port}", &port.to_string()).as_bytes()).unwrap();
    s.write_all(CHUNKED_UPLOAD_BODY).unwrap();
    answer(s)
}

/// The same request in one write. For a server whose app never reads the body (uWSGI hands a
/// WSGI app no de-chunked body), the body is counted only if it came with the head's read: with
/// two writes that depends on the client being scheduled before the worker answers, which a
/// loaded machine does not promise.
pub fn chunked_upload_one_write(port: u16) -> Answer {
    let mut s = raw(port);
    let mut request = CHUNKED_UPLOAD_HEAD.replace("{port}", &port.to_string()).into_bytes();
    request.extend_from_slice(CHUNKED_UPLOAD_BODY);
    s.write_all(&request).unwrap();
    answer(s)
}

const CHUNKED_UPLOAD_HEAD: &str =
    "POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
const CHUNKED_UPLOAD_BODY: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

/// `GET /hello` with a 6000-byte Cookie: a head longer than the 4 KiB capture window. The
/// User-Agent (`pytracer-tests/1`) comes before the cut.
pub fn long_head(port: u16) -> Answer {
    let mut s = raw(port);
    let cookie = "c".repeat(6000);
    s.write_all(format!("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pytracer-tests/1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    answer(s)
}

/// `PUT /items/4` with `Expect: 100-continue` and a 4-byte body sent only after the interim
/// response. With `interim`, the server must answer `100 Continue` first; without, it must say
/// nothing for a second, after which the client sends the body anyway (as curl does).
/// Returns the final answer.
pub fn expect_continue(port: u16, interim: bool) -> Answer {
    let mut s = raw(port);
    s.write_all(format!("PUT /items/4 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    if interim {
        let mut got = [0u8; 25];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    } else {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected no interim response, got {other:?}: {:?}", String::from_utf8_lossy(&b)),
        }
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    s.write_all(b"data").unwrap();
    answer(s)
}

/// `GET /users/10 HTTP/1.0` (no Connection header: 1.0 closes by default).
pub fn http10(port: u16) -> Answer {
    let mut s = raw(port);
    s.write_all(format!("GET /users/10 HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).unwrap();
    answer(s)
}

/// Time between two bytes of [`slow_client`].
pub const SLOW_GAP: Duration = Duration::from_millis(5);

/// `GET /users/11` written one byte at a time, [`SLOW_GAP`] apart. Returns the answer and how
/// long the trickle lasted at least (gaps × (bytes − 1)).
pub fn slow_client(port: u16) -> (Answer, Duration) {
    let mut s = raw(port);
    let slow = format!("GET /users/11 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    for b in slow.as_bytes() {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(SLOW_GAP);
    }
    let got = answer(s);
    let trickle = SLOW_GAP * (slow.len() as u32 - 1);
    assert!(started.elapsed() >= trickle);
    (got, trickle)
}

/// Size of the response [`cut_response`] asks for.
pub const BIG: u64 = 64 << 20;

/// `GET /big/67108864`, then the client reads 64 KiB and goes away. Returns the client's port.
pub fn cut_response(port: u16) -> u16 {
    let mut s = raw(port);
    s.write_all(format!("GET /big/{BIG} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut some = vec![0u8; 65536];
    s.read_exact(&mut some).unwrap();
    s.local_addr().unwrap().port()
}

/// Binary garbage (the start of a TLS ClientHello), then what the server answers.
pub fn garbage(port: u16) -> Answer {
    let mut s = raw(port);
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").unwrap();
    answer(s)
}

/// An invalid request line, then what the server answers.
pub fn invalid_request_line(port: u16) -> Answer {
    let mut s = raw(port);
    s.write_all(b"NOT A REQUEST\r\n\r\n").unwrap();
    answer(s)
}

/// `GET /users/21` and `GET /users/22` (the second with `Connection: close`) in one write on one
/// connection. Returns everything the server answers before it closes.
pub fn pipelined(port: u16) -> Answer {
    let mut s = raw(port);
    s.write_all(format!("GET /users/21 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nGET /users/22 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    answer(s)
}
