//! End to end: a real Gunicorn serving tests/apps/testapp.py, the real agent attached by pid, real
//! HTTP requests. Every test asserts one span per request with exactly the expected attributes.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pytracer_tests::*;
use serde_json::{json, Map, Value};

/// One request sent by a test, with everything its span must say.
struct Sent {
    method: &'static str,
    target: String,
    status: u16,
    request_body: u64,
    response_body: Vec<u8>,
    client_port: u16,
    /// The app sleeps this long on the route: the span must last at least as long.
    min_duration: Duration,
    /// Wall clock before connecting and after the response was read.
    sent_at: u64,
    done_at: u64,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Sends one request on a fresh connection (`Connection: close`) and records it.
fn send(port: u16, method: &'static str, target: &str, body: &[u8], expect_status: u16) -> Sent {
    let sent_at = now_ns();
    let mut conn = Conn::open(port);
    let client_port = conn.local_port();
    let resp = conn.send(method, target, &[("Connection", "close")], body);
    let done_at = now_ns();
    assert_eq!(resp.status, expect_status, "{method} {target}: {}", resp.text());
    let min_duration = target
        .strip_prefix("/sleep/")
        .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.parse().unwrap()));
    Sent {
        method,
        target: target.to_string(),
        status: resp.status,
        request_body: body.len() as u64,
        response_body: resp.body,
        client_port,
        min_duration,
        sent_at,
        done_at,
    }
}

/// The attributes the span of `s` must have, exactly.
fn expected_attributes(s: &Sent, port: u16) -> Value {
    let (path, query) = match s.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s.target.as_str(), None),
    };
    let mut a = Map::new();
    a.insert("http.request.method".into(), json!(s.method));
    a.insert("url.path".into(), json!(path));
    if let Some(q) = query {
        a.insert("url.query".into(), json!(redacted(q)));
    }
    a.insert("url.scheme".into(), json!("http"));
    a.insert("http.response.status_code".into(), json!(s.status));
    a.insert("server.address".into(), json!("127.0.0.1"));
    a.insert("server.port".into(), json!(port));
    a.insert("client.address".into(), json!("127.0.0.1"));
    a.insert("client.port".into(), json!(s.client_port));
    a.insert("network.protocol.version".into(), json!("1.1"));
    a.insert("user_agent.original".into(), json!("pytracer-tests/1"));
    a.insert("http.request.body.size".into(), json!(s.request_body));
    a.insert("http.response.body.size".into(), json!(s.response_body.len()));
    if s.status >= 500 {
        a.insert("error.type".into(), json!(s.status.to_string()));
    }
    Value::Object(a)
}

/// What the default redaction list (key, pass, secret) makes of a query.
fn redacted(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if ["key", "pass", "secret"].iter().any(|s| k.to_lowercase().contains(s)) => format!("{k}=<redacted>"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Spans of one connection, in the order the agent wrote them.
fn spans_of_client<'a>(spans: &'a [Value], client_port: u16) -> Vec<&'a Value> {
    spans.iter().filter(|s| attr_u64(s, "client.port") == Some(client_port as u64)).collect()
}

/// Checks every span against what was sent: one per request, exact attributes, the resource of a
/// worker of this Gunicorn, and timestamps inside the client's own view of the exchange.
fn check_spans(spans: &[Value], sent: &[Sent], port: u16, workers: &[u32]) {
    assert_eq!(spans.len(), sent.len(), "one span per request; spans:\n{}", summarize(spans));
    let mut by_client: std::collections::HashMap<u16, usize> = Default::default();
    for s in sent {
        let i = by_client.entry(s.client_port).or_default();
        let mine = spans_of_client(spans, s.client_port);
        let span = mine.get(*i).unwrap_or_else(|| panic!("no span for {} {} (client port {}); spans:\n{}", s.method, s.target, s.client_port, summarize(spans)));
        *i += 1;
        assert_eq!(span["attributes"], expected_attributes(s, port), "{} {}", s.method, s.target);
        assert_eq!(span["name"], json!(s.method));
        assert_eq!(span["kind"], "server");
        assert_eq!(span["status"]["code"], if s.status >= 500 { "error" } else { "unset" }, "{span}");
        assert!(span["parent_span_id"].is_null());
        assert_eq!(span["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(span["span_id"].as_str().unwrap().len(), 16);
        let r = &span["resource"];
        assert_eq!(r["service.name"], "testapp");
        assert_eq!(r["process.executable.name"], "gunicorn");
        let pid = r["process.pid"].as_u64().unwrap() as u32;
        assert!(workers.contains(&pid), "span from pid {pid}, workers are {workers:?}");
        let (start, end) = (span["start_time_unix_nano"].as_u64().unwrap(), span["end_time_unix_nano"].as_u64().unwrap());
        // The clocks agree to well under a millisecond; allow 5 ms for the conversion.
        let slack = 5_000_000;
        assert!(start + slack >= s.sent_at && end <= s.done_at + slack && start <= end, "{} {}: span [{start}, {end}] outside [{}, {}]", s.method, s.target, s.sent_at, s.done_at);
        assert!(duration_ns(span) >= s.min_duration.as_nanos() as u64, "{} {} lasted {} ns, the app sleeps {:?}", s.method, s.target, duration_ns(span), s.min_duration);
    }
}

const MB: usize = 1_048_576;

/// The mixed sequence of the issue: methods, queries with secrets, 200/201/404/500, 1 MB each way,
/// and a route that sleeps.
fn mixed_sequence(port: u16) -> Vec<Sent> {
    let big = vec![b'z'; MB];
    let sent = vec![
        send(port, "GET", "/hello", b"", 200),
        send(port, "GET", "/users/7?a=1&api_key=s3cr3t&Password=hunter2&b=2", b"", 200),
        send(port, "POST", "/items", b"abc", 201),
        send(port, "PUT", "/items/5", b"xy", 200),
        send(port, "DELETE", "/items/5", b"", 200),
        send(port, "GET", "/missing", b"", 404),
        send(port, "GET", "/fail", b"", 500),
        send(port, "POST", "/upload", &big, 200),
        send(port, "GET", &format!("/big/{MB}"), b"", 200),
        send(port, "GET", "/sleep/120", b"", 200),
        send(port, "GET", "/users/8?client_secret=x", b"", 200),
    ];
    // The app's answers, so the span sizes below are checked against known bytes.
    let bodies: Vec<&[u8]> = sent.iter().map(|s| s.response_body.as_slice()).collect();
    assert_eq!(bodies[0], b"hello");
    assert_eq!(bodies[1], b"{\"id\": 7}");
    assert_eq!(bodies[2], b"created 3");
    assert_eq!(bodies[4], b"deleted 5");
    assert_eq!(bodies[6], b"boom");
    assert_eq!(bodies[7], b"1048576");
    assert_eq!(bodies[8].len(), MB);
    sent
}

#[test]
fn sync_workers_one_span_per_request() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let t = Tracer::start(&[g.pid()], &[]);
    let sent = mixed_sequence(g.port());
    let r = t.stop();
    check_spans(&r.spans, &sent, g.port(), &g.worker_pids());
    assert!(r.stderr.contains("malformed_requests=0 "), "{}", r.stderr);
}

#[test]
fn gthread_workers_keep_alive_and_pipelining() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 4).args(&["--keep-alive", "5"]));
    let port = g.port();
    let t = Tracer::start(&[g.pid()], &[]);
    let mut sent = mixed_sequence(port);

    // Several requests on one keep-alive connection: a span each, in order, same client port.
    let mut conn = Conn::open(port);
    let client_port = conn.local_port();
    for (method, target, body, status) in [
        ("GET", "/hello", &b""[..], 200),
        ("POST", "/items", &b"four"[..], 201),
        ("GET", "/users/9?x=1", &b""[..], 200),
        ("DELETE", "/items/2", &b""[..], 200),
    ] {
        let sent_at = now_ns();
        let resp = conn.send(method, target, &[], body);
        assert_eq!(resp.status, status);
        assert!(!resp.closes_connection(), "gthread must keep the connection open");
        sent.push(Sent {
            method,
            target: target.into(),
            status,
            request_body: body.len() as u64,
            response_body: resp.body,
            client_port,
            min_duration: Duration::ZERO,
            sent_at,
            done_at: now_ns(),
        });
    }
    // Two requests in one write.
    let mut conn = Conn::open(port);
    let client_port = conn.local_port();
    let sent_at = now_ns();
    let mut both = build_request(port, "GET", "/users/1", &[], b"");
    both.extend(build_request(port, "POST", "/items", &[], b"12345"));
    conn.send_raw(&both);
    let first = conn.read_response();
    let second = conn.read_response();
    let done_at = now_ns();
    assert_eq!((first.status, second.status), (200, 201));
    for (method, target, body, resp) in [("GET", "/users/1", 0, first), ("POST", "/items", 5, second)] {
        sent.push(Sent { method, target: target.into(), status: resp.status, request_body: body, response_body: resp.body, client_port, min_duration: Duration::ZERO, sent_at, done_at });
    }
    drop(conn);

    let r = t.stop();
    check_spans(&r.spans, &sent, port, &g.worker_pids());
}

#[test]
fn recycled_workers_are_traced_from_their_first_request() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2).args(&["--max-requests", "5"]));
    let t = Tracer::start(&[g.pid()], &[]);
    let mut served_by = Vec::new();
    for _ in 0..30 {
        let s = send(g.port(), "GET", "/pid", b"", 200);
        let pid: u32 = String::from_utf8_lossy(&s.response_body).parse().unwrap();
        served_by.push((s.client_port, pid));
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), 30, "one span per request across recycles:\n{}", summarize(&r.spans));
    for (client_port, pid) in &served_by {
        let mine = spans_of_client(&r.spans, *client_port);
        assert_eq!(mine.len(), 1, "client port {client_port}");
        assert_eq!(mine[0]["resource"]["process.pid"], json!(pid), "the span names the worker that answered");
        assert_eq!(attr(mine[0], "url.path"), "/pid");
    }
    let mut workers: Vec<u32> = served_by.iter().map(|s| s.1).collect();
    workers.sort();
    workers.dedup();
    // 30 requests at 5 per worker life: at least 6 distinct workers served, most forked after attach.
    assert!(workers.len() >= 6, "workers {workers:?}");
    // Each was either there at attach time or announced when the kernel saw it forked.
    let initial = r.stderr.lines().find(|l| l.starts_with("pytracer: tracing ")).unwrap_or_default().to_string();
    let initial: Vec<&str> = initial.split(": ").nth(2).unwrap_or_default().split(", ").collect();
    for w in &workers {
        let announced = r.stderr.contains(&format!("pytracer: following pid {w} (forked by {})", g.pid()));
        assert!(announced || initial.contains(&w.to_string().as_str()), "worker {w} never announced:\n{}", r.stderr);
    }
}

#[test]
fn killed_worker_does_not_stop_tracing() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let t = Tracer::start(&[g.pid()], &[]);
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(send(g.port(), "GET", "/hello", b"", 200));
    }
    let victim = g.worker_pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(10), || t.stderr_now().contains(&format!("pid {victim} exited")));
    // The master replaces the worker; the survivor and the replacement go on being traced.
    let workers = g.wait_for_workers(2, &[victim], Duration::from_secs(20));
    for _ in 0..10 {
        sent.push(send(g.port(), "GET", "/hello", b"", 200));
    }
    let r = t.stop();
    assert!(r.stderr.contains(&format!("pytracer: pid {victim} exited; still tracing")), "{}", r.stderr);
    let mut all_workers = workers.clone();
    all_workers.push(victim);
    check_spans(&r.spans, &sent, g.port(), &all_workers);
}
