//! Tests of the harness and the test app alone: no agent, no root. They pin down the exact
//! responses the end-to-end tests assert on, and Gunicorn's connection handling per worker class.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pytracer_tests::*;
use serde_json::json;

const MB: usize = 1_048_576;

/// Method, path, request body, expected status, expected response body.
type Case = (&'static str, &'static str, &'static [u8], u16, &'static [u8]);

fn check_routes(port: u16) {
    let cases: &[Case] = &[
        ("GET", "/hello", b"", 200, b"hello"),
        ("GET", "/users/7", b"", 200, b"{\"id\": 7}"),
        ("POST", "/items", b"abcde", 201, b"created 5"),
        ("POST", "/items", b"", 201, b"created 0"),
        ("PUT", "/items/3", b"{\"x\":1}", 200, b"updated 3"),
        ("DELETE", "/items/4", b"", 200, b"deleted 4"),
        ("GET", "/fail", b"", 500, b"boom"),
        ("GET", "/sleep/30", b"", 200, b"slept 30"),
        ("POST", "/upload", b"0123456789", 200, b"10"),
        ("GET", "/big/5", b"", 200, b"xxxxx"),
        ("GET", "/big/0", b"", 200, b""),
    ];
    for &(method, path, body, status, want) in cases {
        let r = request(port, method, path, &[], body);
        assert_eq!(r.status, status, "{method} {path}: {r:?}");
        assert_eq!(r.text(), String::from_utf8_lossy(want), "{method} {path}");
    }
    assert_eq!(get(port, "/hello").header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(get(port, "/users/7").header("content-type"), Some("application/json"));

    for path in ["/missing", "/no/such/path", "/users/abc"] {
        let r = get(port, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("Not Found"), "{path}: {}", r.text());
    }
    // Wrong method on a known route: Flask's 405, not 404.
    assert_eq!(request(port, "POST", "/hello", &[], b"").status, 405);

    let pid: u32 = get(port, "/pid").text().parse().expect("/pid returns a number");
    assert!(pid > 0);
}

fn check_big_bodies(port: u16) {
    let up = request(port, "POST", "/upload", &[], &vec![b'u'; MB]);
    assert_eq!((up.status, up.text().as_str()), (200, "1048576"));
    let down = get(port, &format!("/big/{MB}"));
    assert_eq!(down.status, 200);
    assert_eq!(down.body.len(), MB);
    assert!(down.body.iter().all(|&b| b == b'x'));
}

#[test]
fn sync_routes_and_workers() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let workers = g.worker_pids();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(!workers.contains(&g.pid()));
    check_routes(g.port());
    let served_by: u32 = get(g.port(), "/pid").text().parse().unwrap();
    assert!(workers.contains(&served_by), "{served_by} not in {workers:?}");
    check_big_bodies(g.port());
}

#[test]
fn gthread_routes_and_workers() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 4));
    assert_eq!(g.worker_pids().len(), 2);
    check_routes(g.port());
    check_big_bodies(g.port());
}

#[test]
fn gthread_keep_alive_reuses_one_connection() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 4).args(&["--keep-alive", "5"]));
    let mut conn = Conn::open(g.port());
    let a = conn.send("GET", "/hello", &[], b"");
    let b = conn.send("POST", "/items", &[], b"xyz");
    let d = conn.send("GET", "/pid", &[], b"");
    assert_eq!((a.status, a.text().as_str()), (200, "hello"));
    assert_eq!((b.status, b.text().as_str()), (201, "created 3"));
    assert_eq!(d.status, 200);
    for r in [&a, &b, &d] {
        assert!(!r.closes_connection(), "gthread closed a keep-alive connection: {r:?}");
    }
    assert!(!conn.peer_closed());
}

#[test]
fn gthread_pipelined_requests_in_one_write() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 4));
    let mut c = Conn::open(g.port());
    let mut bytes = build_request(g.port(), "GET", "/users/1", &[], b"");
    bytes.extend(build_request(g.port(), "GET", "/users/2", &[], b""));
    c.send_raw(&bytes);
    let r1 = c.read_response();
    let r2 = c.read_response();
    assert_eq!((r1.status, r1.text().as_str()), (200, "{\"id\": 1}"));
    assert_eq!((r2.status, r2.text().as_str()), (200, "{\"id\": 2}"));
}

/// Records (in the test output) what a sync worker does with keep-alive and pipelining, since
/// the end-to-end tests must expect the same. Sync workers do not keep connections alive.
#[test]
fn sync_closes_after_each_response() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let mut c = Conn::open(g.port());
    let r = c.send("GET", "/hello", &[], b"");
    assert_eq!(r.status, 200);
    eprintln!("sync response headers: {:?}", r.headers);
    assert!(r.closes_connection(), "sync worker kept the connection: {r:?}");
    assert!(wait_until(Duration::from_secs(5), || c.peer_closed()));

    let mut c = Conn::open(g.port());
    let mut bytes = build_request(g.port(), "GET", "/users/1", &[], b"");
    bytes.extend(build_request(g.port(), "GET", "/users/2", &[], b""));
    c.send_raw(&bytes);
    let r1 = c.read_response();
    assert_eq!(r1.text(), "{\"id\": 1}");
    let second = c.try_read_response();
    eprintln!("sync pipelined second response: {second:?}");
    assert!(second.is_err(), "sync worker answered a pipelined second request: {second:?}");
}

#[test]
fn max_requests_recycles_workers() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1).args(&["--max-requests", "2"]));
    let before = g.worker_pids();
    assert_eq!(before.len(), 1);
    for _ in 0..2 {
        assert_eq!(get(g.port(), "/pid").text(), before[0].to_string());
    }
    let after = g.wait_for_workers(1, &before);
    assert_eq!(get(g.port(), "/pid").text(), after[0].to_string());
}

#[test]
fn drop_stops_master_and_workers() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 2));
    let port = g.port();
    let mut pids = g.worker_pids();
    pids.push(g.pid());
    // An idle keep-alive connection must not hold up shutdown.
    let mut c = Conn::open(port);
    assert_eq!(c.send("GET", "/hello", &[], b"").status, 200);
    let log_dir = g.dir().to_path_buf();
    drop(g);
    for pid in pids {
        assert!(!procfs::is_alive(pid), "pid {pid} survived Drop");
    }
    assert!(!log_dir.exists(), "scratch dir left behind");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn startup_failure_reports_log() {
    if !require_venv() {
        return;
    }
    let mut opts = GunicornOpts::sync(1);
    opts.app = "no_such_module:app".into();
    let err = match Gunicorn::try_start(opts) {
        Ok(_) => panic!("gunicorn started with a missing app"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("no_such_module"), "{err}");
}

/// Tracer's process handling, against a shell stand-in for the agent.
#[test]
fn tracer_lifecycle_with_stand_in_agent() {
    let dir = TempDir::new("fake-agent").unwrap();
    let bin = dir.path().join("fake-pytracer");
    std::fs::write(
        &bin,
        r#"#!/bin/sh
# args: trace --pid P --output FILE [extra]
out=""; pids=""
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift ;;
    --pid) pids="$pids $2"; shift ;;
    --fail) fail=1 ;;
  esac
  shift
done
trap 'printf "{\"attributes\":{\"url.path\":\"/hello\",\"pids\":\"%s\"},\"start_time_unix_nano\":\"100\",\"end_time_unix_nano\":\"350\"}\n\n" "$pids" > "$out"; echo "pytracer: stopping" >&2; [ -n "$fail" ] && exit 3; exit 0' INT
echo "pytracer: attaching" >&2
echo "pytracer: ready" >&2
while :; do sleep 0.05; done
"#,
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let t = Tracer::start_with_bin(&bin, &[11, 22], &[]);
    assert!(t.stderr_now().contains("pytracer: ready"));
    let r = t.stop();
    assert_eq!(r.spans.len(), 1, "{}", summarize(&r.spans));
    let s = one_span(&r.spans, "/hello");
    assert_eq!(attr(s, "pids"), &json!(" 11 22"));
    assert_eq!(attr(s, "absent"), &serde_json::Value::Null);
    assert_eq!(duration_ns(s), 250);
    assert!(r.stderr.contains("pytracer: stopping"));

    let t = Tracer::start_with_bin(&bin, &[1], &["--fail"]);
    let pid = t.pid().unwrap();
    let kept = t.dir().to_path_buf();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.stop()));
    let msg = *failed.expect_err("non-zero exit must panic").downcast::<String>().unwrap();
    assert!(msg.contains("pytracer: stopping"), "{msg}");
    assert!(!procfs::is_alive(pid));
    // Kept because stop() panicked; that is the point of keeping it, but not here.
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn span_helpers() {
    let spans = parse_jsonl(
        "{\"duration_ns\": 5, \"attributes\": {\"http.target\": \"/a?q=1\", \"http.status_code\": 200}}\n\
         {\"attributes\": {\"url.path\": \"/b\", \"n\": \"42\"}, \"start_ns\": 1, \"end_ns\": 4}\n",
    )
    .unwrap();
    assert_eq!(span_path(&spans[0]), Some("/a"));
    assert_eq!(duration_ns(&spans[0]), 5);
    assert_eq!(duration_ns(&spans[1]), 3);
    assert_eq!(attr_u64(&spans[1], "n"), Some(42));
    assert_eq!(spans_by_path(&spans, "/b").len(), 1);
    assert_eq!(spans_with_attr(&spans, "http.status_code", &json!(200)).len(), 1);
    assert!(parse_jsonl("{}\nnot json\n").unwrap_err().starts_with("line 2:"));
}

#[test]
fn preload_workers_count_as_ready() {
    if !require_venv() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2).arg("--preload"));
    assert_eq!(g.worker_pids().len(), 2);
    assert_eq!(get(g.port(), "/hello").text(), "hello");
}

/// The client's body framing, against canned responses from a local listener.
#[test]
fn client_framing() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let canned: [&[u8]; 2] = [
            // Keep-alive connection: 100 Continue, a chunked response with an extension and a
            // trailer, then a Content-Length one, written together.
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n\
              HTTP/1.1 204 No Content\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc",
            // Body delimited by close.
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        ];
        let mut requests = Vec::new();
        for resp in canned {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            s.write_all(resp).unwrap();
        }
        requests
    });

    let mut c = Conn::open(port);
    let r = c.send("POST", "/x", &[("Expect", "100-continue")], b"body");
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (201, "abc"));
    drop(c);
    let r = request(port, "GET", "/y", &[("X-A", "1")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "until close"));

    let reqs = server.join().unwrap();
    assert_eq!(
        reqs[0],
        format!(
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pytracer-tests/1\r\n\
             Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"
        )
    );
    assert_eq!(
        reqs[1],
        format!(
            "GET /y HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pytracer-tests/1\r\n\
             X-A: 1\r\nConnection: close\r\n\r\n"
        )
    );
}
