//! Issue 18 end to end: calls that fail, as the caller lived them. A Flask app (Gunicorn,
//! tests/apps/failing_calls.py) calls peers this test starts, each failing in its own way, and
//! returns its own `time.monotonic_ns()` around the call. Asserted for each: one client span, its
//! exact name, attributes and `error.type`, status error, its parent (the request's server span)
//! and its Python caller; its duration within what the caller measured. Where the peer held the
//! call for a known time after reading it (a sleep, so at least that long on the monotonic clock)
//! the span is at least that long too: the caller cannot have given up earlier. The calls are
//! counted in `http_client_request_duration_seconds` by `error_type`, the failed connects in
//! `pytracer_client_connect_failures_total`. PostgreSQL and Redis stopped between two calls on the
//! connections an app keeps open fail the next call with one span each.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use pytracer_tests::*;
use serde_json::{json, Value};

/// What a peer does once it has read the request's head.
#[derive(Clone, Copy)]
enum Peer {
    /// Closes without answering after this long.
    CloseAfter(Duration),
    /// Answers nothing and holds the connection this long (longer than the caller's timeout).
    Hold(Duration),
    /// Resets the connection (SO_LINGER 0, then close).
    Reset,
    /// Answers CUT_ANSWER, a head and part of its body, then closes after this long.
    CutAfter(Duration),
}

/// A response whose body is 100 bytes long by its head, of which 4 are sent.
const CUT_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf";

/// A listener on 127.0.0.1 serving one connection as `how` says.
fn peer(how: Peer) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        read_head(&mut s);
        match how {
            Peer::CloseAfter(d) | Peer::Hold(d) => std::thread::sleep(d),
            Peer::CutAfter(d) => {
                s.write_all(CUT_ANSWER).unwrap();
                std::thread::sleep(d);
            }
            Peer::Reset => {
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: setsockopt on our own open socket, with a local, initialised value.
                let rc = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        u32::try_from(size_of::<libc::linger>()).unwrap(),
                    )
                };
                assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
            }
        }
        drop(s);
    });
    (port, t)
}

fn read_head(s: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the caller closed before sending its request");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Calls `path` on the app; the caller's own measured duration of its call, and its error.
fn call(port: u16, path: &str) -> (u64, String) {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (v["elapsed_ns"].as_u64().unwrap(), v["error"].as_str().unwrap_or("none").to_string())
}

fn peer_attrs(port: u16, extra: &Value) -> Value {
    let mut a = json!({"server.address": "127.0.0.1", "server.port": port, "network.peer.address": "127.0.0.1", "network.peer.port": port});
    a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    a
}

/// The one client span of the request to `path`: checks its parent, status and caller.
fn the_call<'a>(spans: &'a [Value], path: &str, file: &Path, caller: &str) -> &'a Value {
    let server = one_span(spans, path);
    assert_eq!(server["kind"], "server", "{path}");
    assert!(server["parent_span_id"].is_null(), "{path}");
    assert_eq!(attr_u64(server, "http.response.status_code"), Some(200), "{path}");
    let calls: Vec<&Value> = spans.iter().filter(|s| s["parent_span_id"] == server["span_id"]).collect();
    assert_eq!(calls.len(), 1, "{path}: one client span\n{}", summarize(spans));
    let c = calls[0];
    assert_eq!(c["kind"], "client", "{path}");
    assert_eq!(c["trace_id"], server["trace_id"], "{path}");
    assert_eq!(c["status"]["code"], "error", "{path}");
    assert_eq!(attr_str(c, "code.function.name"), Some(caller), "{path}: {c}");
    assert_eq!(attr_str(c, "code.file.path"), Some(file.to_str().unwrap()), "{path}");
    assert_eq!(attr_u64(c, "code.line.number"), Some(first_line_of(file, caller)), "{path}");
    c
}

#[test]
fn every_failed_call_is_one_span_as_long_as_the_caller_waited() {
    if !require_privileged() {
        return;
    }
    let app = Gunicorn::start(GunicornOpts::sync(1).app("failing_calls:app"));
    let mport = free_port();
    let t = Tracer::start(&[app.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    let file = apps_dir().join("failing_calls.py");

    let closed = closed_port();
    let refused_blocking = call(app.port(), &format!("/http/refused-blocking?port={closed}&timeout=none"));
    let refused_nonblocking = call(app.port(), &format!("/http/refused-nonblocking?port={closed}&timeout=5"));
    let refused_pg = call(app.port(), &format!("/pg/refused?port={closed}"));
    let refused_send = call(app.port(), &format!("/raw/refused-send?port={closed}"));

    let (silent, silent_peer) = peer(Peer::CloseAfter(Duration::from_millis(500)));
    let closed_early = call(app.port(), &format!("/http/closed-without-answer?port={silent}&timeout=5"));
    let (hold, hold_peer) = peer(Peer::Hold(Duration::from_secs(3)));
    let timed_out = call(app.port(), &format!("/http/timed-out?port={hold}&timeout=1"));
    let (reset, reset_peer) = peer(Peer::Reset);
    let was_reset = call(app.port(), &format!("/http/reset?port={reset}&timeout=5"));
    let (cut, cut_peer) = peer(Peer::CutAfter(Duration::from_millis(300)));
    let was_cut = call(app.port(), &format!("/http/cut?port={cut}&timeout=5"));
    for p in [silent_peer, hold_peer, reset_peer, cut_peer] {
        p.join().unwrap();
    }
    // The calls that got a span, in the client duration histogram by error_type (the refused
    // connects spoke no protocol yet: they are in neither family).
    let count = |error: &str| {
        sum(
            &scrape(mport),
            "http_client_request_duration_seconds_count",
            &[("error_type", error), ("http_request_method", "GET")],
        ) as usize
    };
    let settled = wait_until(Duration::from_secs(5), || count("connection_reset") >= 1);
    assert!(settled, "the reset call never reached the metrics");
    assert_eq!((count("no_response"), count("connection_reset"), count("response_incomplete")), (2, 1, 1));
    assert_eq!(sum(&scrape(mport), "db_client_operation_duration_seconds_count", &[]) as usize, 0);
    let closed_port_label = closed.to_string();
    let refused = [("error_type", "connection_refused"), ("server_port", closed_port_label.as_str())];
    assert_eq!(sum(&scrape(mport), "pytracer_client_connect_failures_total", &refused) as usize, 4);
    let r = t.stop();
    let spans = &r.spans;

    assert_eq!(refused_blocking.1, "ConnectionError");
    assert_eq!(refused_nonblocking.1, "ConnectionError");
    assert_eq!(refused_pg.1, "OperationalError");
    assert_eq!(refused_send.1, "ConnectionRefusedError");
    assert_eq!(closed_early.1, "ConnectionError");
    assert_eq!(timed_out.1, "ReadTimeout");
    assert_eq!(was_reset.1, "ConnectionError");
    assert_eq!(was_cut.1, "ChunkedEncodingError");

    // Refused connects, blocking (the error from connect()) and not (EINPROGRESS, then SO_ERROR,
    // or the next send):
    // a `connect` span that says the peer and the error, nothing of a protocol not yet spoken.
    for (path, measured, caller) in [
        ("/http/refused-blocking", refused_blocking.0, "call_http"),
        ("/http/refused-nonblocking", refused_nonblocking.0, "call_http"),
        ("/pg/refused", refused_pg.0, "call_pg"),
        ("/raw/refused-send", refused_send.0, "call_raw"),
    ] {
        let c = the_call(spans, path, &file, caller);
        assert_eq!(c["name"], "connect", "{path}");
        assert_eq!(exit_attributes(c), peer_attrs(closed, &json!({"error.type": "connection_refused"})), "{path}");
        assert!(
            duration_ns(c) <= measured,
            "{path}: the span ({} ns) within the caller's {measured} ns",
            duration_ns(c)
        );
    }

    // Answers that never came: the span lasts until the peer's end of stream, or until the
    // caller gave up (its timeout, then its close), not until its own last write.
    for (path, port, measured, held, error) in [
        ("/http/closed-without-answer", silent, closed_early.0, Duration::from_millis(500), "no_response"),
        ("/http/timed-out", hold, timed_out.0, Duration::from_secs(1), "no_response"),
        ("/http/reset", reset, was_reset.0, Duration::ZERO, "connection_reset"),
    ] {
        let c = the_call(spans, path, &file, "call_http");
        assert_eq!(c["name"], "GET", "{path}");
        assert!(connect_share(c).is_some(), "{path}: requests connected inside the call: {c}");
        assert_eq!(
            exit_attributes(c),
            peer_attrs(
                port,
                &json!({"http.request.method": "GET", "url.full": format!("http://127.0.0.1:{port}/never"), "error.type": error})
            ),
            "{path}"
        );
        let d = duration_ns(c);
        assert!(d <= measured, "{path}: the span ({d} ns) within the caller's {measured} ns");
        assert!(
            d >= u64::try_from(held.as_nanos()).unwrap(),
            "{path}: the peer held the call {held:?}, the span is {d} ns"
        );
    }

    // An answer cut short: its status, what was received, and the end at the peer's close.
    let c = the_call(spans, "/http/cut", &file, "call_http");
    assert_eq!(
        exit_attributes(c),
        peer_attrs(
            cut,
            &json!({"http.request.method": "GET", "url.full": format!("http://127.0.0.1:{cut}/never"), "http.response.status_code": 200, "error.type": "response_incomplete", "pytracer.response.bytes_received": CUT_ANSWER.len()})
        )
    );
    let d = duration_ns(c);
    assert!((300_000_000..=was_cut.0).contains(&d), "/http/cut: the span is {d} ns, the caller's {} ns", was_cut.0);
    assert_eq!(spans.len(), 16, "{}", summarize(spans));
    assert!(r.stderr.contains(" failed_connects=4 "), "{}", r.stderr);
}

/// PostgreSQL and Redis stopped between two calls on connections the app keeps open, as a pool
/// does: the next call on each fails as the caller lived it, one span with the server's reason
/// (PostgreSQL's shutdown error) or the refused reconnect (redis-py checks a pooled connection
/// before use and finds it closed).
#[test]
fn databases_stopped_between_calls() {
    if !require_privileged() {
        return;
    }
    let pg = Postgres::start();
    let redis = Redis::start();
    let (pg_port, redis_port) = (pg.port(), redis.port());
    let app = Gunicorn::start(GunicornOpts::sync(1).app("failing_calls:app"));
    let t = Tracer::start(&[app.pid()], &[]);
    let file = apps_dir().join("failing_calls.py");
    let pg_up = call(app.port(), &format!("/pg-kept/up?port={pg_port}"));
    let redis_up = call(app.port(), &format!("/redis-kept/up?port={redis_port}"));
    assert_eq!((pg_up.1.as_str(), redis_up.1.as_str()), ("none", "none"));
    drop(pg);
    drop(redis);
    let pg_down = call(app.port(), &format!("/pg-kept/stopped?port={pg_port}"));
    let redis_down = call(app.port(), &format!("/redis-kept/stopped?port={redis_port}"));
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!((pg_down.1.as_str(), redis_down.1.as_str()), ("AdminShutdown", "ConnectionError"));

    // The query written to a connection the server had ended: its answer is the shutdown error
    // the backend sent before closing (57P01, admin_shutdown), which is what the caller raised.
    let c = the_call(spans, "/pg-kept/stopped", &file, "call_pg_kept");
    assert_eq!(c["name"], "SELECT app");
    assert_eq!(connect_share(c), None, "the connection was opened by the request before");
    let mut attrs = exit_attributes(c);
    let received = attrs.as_object_mut().unwrap().remove("pytracer.response.bytes_received");
    assert!(received.and_then(|v| v.as_u64()).is_some_and(|n| n > 0), "{c}");
    assert_eq!(
        attrs,
        peer_attrs(
            pg_port,
            &json!({"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.query.text": "SELECT ?", "db.namespace": "app", "db.response.status_code": "57P01", "error.type": "57P01"})
        )
    );
    assert!(duration_ns(c) <= pg_down.0, "the span ({} ns) within the caller's {} ns", duration_ns(c), pg_down.0);

    // redis-py found its pooled connection closed before using it and connected again: the
    // refused connect is the call the caller lived (no command was written).
    let c = the_call(spans, "/redis-kept/stopped", &file, "call_redis_kept");
    assert_eq!(c["name"], "connect");
    assert_eq!(exit_attributes(c), peer_attrs(redis_port, &json!({"error.type": "connection_refused"})));
    assert!(duration_ns(c) <= redis_down.0, "the span ({} ns) within the caller's {} ns", duration_ns(c), redis_down.0);
}
