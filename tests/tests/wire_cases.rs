//! The hard cases on the wire, against a real Gunicorn: each request gives exactly one span with
//! the right fields, or (garbage) no span and a count.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pytracer_tests::*;

fn raw(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn read_all(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn hard_cases_on_the_wire() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let port = g.port();
    let t = Tracer::start(&[g.pid()], &[]);

    // Chunked request body: the span counts the decoded data bytes.
    let mut s = raw(port);
    s.write_all(format!("POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    s.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    assert!(read_all(s).ends_with("\r\n\r\n11"), "the app read 11 bytes");

    // Chunked response body.
    let r = get(port, "/stream/3");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, b"chunk-0\nchunk-1\nchunk-2\n");

    // A head longer than the 4 KiB capture window.
    let cookie = "c".repeat(6000);
    assert_eq!(request(port, "GET", "/hello", &[("Cookie", &cookie)], b"").status, 200);

    // Expect: 100-continue, the body sent only after the interim response.
    let mut s = raw(port);
    s.write_all(format!("PUT /items/4 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"data").unwrap();
    assert!(read_all(s).ends_with("updated 4"));

    // HTTP/1.0.
    let mut s = raw(port);
    s.write_all(format!("GET /users/10 HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).unwrap();
    let answer = read_all(s);
    assert!(answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("{\"id\": 10}"), "{answer}");

    // A slow client: one byte at a time.
    let started = Instant::now();
    let mut s = raw(port);
    let slow = format!("GET /users/11 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    for b in slow.as_bytes() {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(read_all(s).ends_with("{\"id\": 11}"));
    let slow_took = started.elapsed();

    // A client that goes away in the middle of a 64 MB response.
    let mut s = raw(port);
    s.write_all(format!("GET /big/67108864 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut some = [0u8; 65536];
    s.read_exact(&mut some).unwrap();
    drop(s);

    // Garbage and an invalid request line: Gunicorn answers 400; no span, both counted.
    let mut s = raw(port);
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").unwrap();
    let _ = read_all(s);
    let mut s = raw(port);
    s.write_all(b"NOT A REQUEST\r\n\r\n").unwrap();
    let _ = read_all(s);

    std::thread::sleep(Duration::from_millis(500));
    let r = t.stop();
    assert_eq!(r.spans.len(), 7, "{}", summarize(&r.spans));

    let chunked_req = one_span(&r.spans, "/upload");
    assert_eq!(attr_u64(chunked_req, "http.request.body.size"), Some(11));
    assert_eq!(attr_u64(chunked_req, "http.response.status_code"), Some(200));

    let chunked_resp = one_span(&r.spans, "/stream/3");
    assert_eq!(attr_u64(chunked_resp, "http.response.body.size"), Some(24), "decoded data bytes");

    let long = one_span(&r.spans, "/hello");
    assert_eq!(attr(long, "pytracer.http.request.head_truncated"), &serde_json::Value::Bool(true));
    assert_eq!(attr_str(long, "http.request.method"), Some("GET"));
    assert_eq!(attr_u64(long, "http.response.status_code"), Some(200));
    assert_eq!(attr_str(long, "user_agent.original"), Some("pytracer-tests/1"), "headers before the cut are kept");

    let expect = one_span(&r.spans, "/items/4");
    assert_eq!(attr_str(expect, "http.request.method"), Some("PUT"));
    assert_eq!(attr_u64(expect, "http.request.body.size"), Some(4));
    assert_eq!(attr_u64(expect, "http.response.status_code"), Some(200), "the interim 100 is not the answer");

    let http10 = one_span(&r.spans, "/users/10");
    assert_eq!(attr_str(http10, "network.protocol.version"), Some("1.0"));
    assert_eq!(attr_u64(http10, "http.response.status_code"), Some(200));

    let slow_span = one_span(&r.spans, "/users/11");
    // The span starts at the first byte's read, so it spans the whole trickle.
    let trickle = Duration::from_millis(5) * (slow.len() as u32 - 1);
    assert!(duration_ns(slow_span) >= trickle.as_nanos() as u64 / 2, "{} ns for a {:?} trickle (client saw {slow_took:?})", duration_ns(slow_span), trickle);
    assert_eq!(attr_u64(slow_span, "http.response.status_code"), Some(200));

    let cut = one_span(&r.spans, "/big/67108864");
    assert_eq!(attr_str(cut, "error.type"), Some("response_incomplete"));
    assert_eq!(cut["status"]["code"], "error");
    assert!(attr_u64(cut, "http.response.body.size").unwrap() < 67_108_864);

    assert!(r.stderr.contains("malformed_requests=2 "), "{}", r.stderr);
}
