//! End to end: a real Gunicorn serving tests/apps/testapp.py, the real agent attached by pid, real
//! HTTP requests. Every test asserts one span per request with exactly the expected attributes.
use std::time::Duration;

use pytracer_tests::*;
use serde_json::json;

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
        sent.push(Sent {
            method,
            target: target.into(),
            status: resp.status,
            request_body: body,
            response_body: resp.body,
            client_port,
            min_duration: Duration::ZERO,
            sent_at,
            done_at,
        });
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
    workers.sort_unstable();
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
    assert!(
        wait_until(Duration::from_secs(10), || t.stderr_now().contains(&format!("pid {victim} exited"))),
        "the agent did not report the killed worker:\n{}",
        t.stderr_now()
    );
    // The master replaces the worker; the survivor and the replacement go on being traced.
    let workers = g.wait_for_workers(2, &[victim]);
    for _ in 0..10 {
        sent.push(send(g.port(), "GET", "/hello", b"", 200));
    }
    let r = t.stop();
    assert!(r.stderr.contains(&format!("pytracer: pid {victim} exited; still tracing")), "{}", r.stderr);
    let mut all_workers = workers.clone();
    all_workers.push(victim);
    check_spans(&r.spans, &sent, g.port(), &all_workers);
}

/// `--format pretty`: one short line per request, `{method} {route} {status} {duration} {view}()
/// {file}:{line} pid {pid}`, or without route and view where no rule served it.
#[test]
fn pretty_format_gives_one_line_per_request() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let t = Tracer::start(&[g.pid()], &["--format", "pretty"]);
    send(g.port(), "GET", "/users/7", b"", 200);
    send(g.port(), "GET", "/nope", b"", 404);
    let (out, stderr) = t.stop_raw();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}\n{stderr}");
    let pid = g.worker_pids()[0];
    let (_, _, line) = testapp_view("GET", "/users/7").unwrap();
    // The duration is the one part not known in advance: a number and its unit.
    let duration = |d: &str| {
        let (n, unit) = d.split_once(' ').unwrap_or_default();
        n.parse::<f64>().is_ok() && ["µs", "ms", "s"].contains(&unit)
    };
    let user = lines[0].strip_prefix("GET /users/<int:user_id> 200 ").unwrap_or_else(|| panic!("{out}"));
    let user = user.strip_suffix(&format!(" user() testapp.py:{line} pid {pid}")).unwrap_or_else(|| panic!("{out}"));
    assert!(duration(user), "{out}");
    let nope = lines[1].strip_prefix("GET /nope 404 ").and_then(|l| l.strip_suffix(&format!(" pid {pid}")));
    assert!(nope.is_some_and(duration), "{out}");
}
