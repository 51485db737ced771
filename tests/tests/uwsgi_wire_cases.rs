//! The hard cases on the wire (`pytracer_tests::wire`, the same as Gunicorn's in wire_cases.rs,
//! plus pipelining) against real uWSGI 2.0 in each of its three front-ends, 2 workers each. Every
//! case asserts the number of spans and their exact attributes; where uWSGI cannot do a case, the
//! test asserts what it does instead, and says why:
//!
//! - Chunked request body: uWSGI gives a WSGI app no de-chunked body (no CONTENT_LENGTH; only
//!   `uwsgi.chunked_read()` reads it), so testapp answers `0` in every mode, nginx included:
//!   nginx de-chunks and sends CONTENT_LENGTH 11, but passes the client's `Transfer-Encoding:
//!   chunked` on as HTTP_TRANSFER_ENCODING, and uWSGI then reads wsgi.input as chunked and gets
//!   nothing. The span counts the 11 data bytes the client sent (nginx: the 11 it forwarded).
//! - Chunked response: uWSGI never chunks (no `--http-auto-chunked`): the body runs until close.
//!   nginx chunks it for the client; the worker's span sees the close-delimited body.
//! - Head longer than the 4 KiB capture: uWSGI's default `--buffer-size` (4096) rejects it
//!   (http-socket resets, the router closes, behind nginx a 502), so each mode runs with
//!   `--buffer-size 32768`; the router with `--http-buffer-size 32768` too, or it reads the head
//!   in page-sized pieces that are each captured whole and nothing is truncated.
//! - Expect: 100-continue: `--http-socket` never sends the interim response (uWSGI's
//!   `--http-manage-expect` is a router option), so the client sends the body after a second, as
//!   curl does; the router sends it with `--http-manage-expect`; nginx sends it itself.
//! - Pipelining: uWSGI answers only the first of two pipelined requests and closes, in every mode
//!   (`--http-socket`; `--http11-socket` too, seen by hand; the router even with
//!   `--http-keepalive`, which is "non-pipelined"): the second, read but never answered, is an
//!   error span `no_response`. nginx answers both, each over its own uwsgi connection.
//! - Garbage and an invalid request line: uWSGI answers nothing to the garbage, and to
//!   `NOT A REQUEST` it runs the app with method NOT, path A, protocol REQUEST and answers
//!   `REQUEST 404 NOT FOUND`: no span, counted. nginx answers 400 to both; nothing reaches uWSGI.
//! - Slow client: behind nginx the worker gets the request only once nginx has read it whole, so
//!   the worker's span does not cover the client's trickle.
use std::time::Duration;

use pytracer_tests::wire::{self, body_of, status_of, Answer, BIG};
use pytracer_tests::*;
use serde_json::{json, Value};

/// What the client got back for each case.
struct Answers {
    chunked_upload: Answer,
    stream: Response,
    stream_port: u16,
    long_head: Answer,
    expect: Answer,
    http10: Answer,
    slow: Answer,
    trickle: Duration,
    cut_port: u16,
    garbage: Answer,
    invalid: Answer,
    pipelined: Answer,
}

fn run_cases(port: u16, interim: bool) -> Answers {
    let chunked_upload = wire::chunked_upload_one_write(port);
    let mut c = Conn::open(port);
    let stream_port = c.local_port();
    let stream = c.send("GET", "/stream/3", &[("Connection", "close")], b"");
    let long_head = wire::long_head(port);
    let expect = wire::expect_continue(port, interim);
    let http10 = wire::http10(port);
    let (slow, trickle) = wire::slow_client(port);
    let cut_port = wire::cut_response(port);
    let garbage = wire::garbage(port);
    let invalid = wire::invalid_request_line(port);
    let pipelined = wire::pipelined(port);
    // Let the workers finish what the client walked away from.
    std::thread::sleep(Duration::from_millis(500));
    Answers {
        chunked_upload,
        stream,
        stream_port,
        long_head,
        expect,
        http10,
        slow,
        trickle,
        cut_port,
        garbage,
        invalid,
        pipelined,
    }
}

/// The exact attributes of the span of a request sent to `port` from `client_port`: the
/// defaults of a bodiless HTTP/1.1 request without User-Agent, overridden by `extra` (a null
/// value removes the key).
fn expected(port: u16, client_port: u16, method: &str, path: &str, extra: Value) -> Value {
    let mut a = json!({
        "http.request.method": method, "url.path": path, "url.template": template_of(path), "url.scheme": "http",
        "server.address": "127.0.0.1", "server.port": port,
        "client.address": "127.0.0.1", "client.port": client_port,
        "network.protocol.version": "1.1", "http.request.body.size": 0,
    });
    let map = a.as_object_mut().unwrap();
    // The route and view the agent reads from the test app, for paths one of its rules serves.
    if let Some((rule, function, line)) = testapp_view(method, path) {
        map.insert("http.route".into(), json!(rule));
        map.insert("code.function.name".into(), json!(function));
        map.insert("code.file.path".into(), json!(apps_dir().join("testapp.py").display().to_string()));
        map.insert("code.line.number".into(), json!(line));
    }
    let Value::Object(extra) = extra else { panic!("extra attributes must be an object: {extra}") };
    for (k, v) in extra {
        if v.is_null() {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
    a
}

fn assert_attrs(span: &Value, want: &Value) {
    assert_eq!(&span["attributes"], want, "span: {span}");
}

fn pid_of(span: &Value) -> u32 {
    span["resource"]["process.pid"].as_u64().unwrap() as u32
}

/// How a mode differs in what its spans say.
struct Mode {
    workers: Vec<u32>,
    /// The router process (`--http`): the span of a request no worker saw carries its pid.
    router: Option<u32>,
    /// The span starts at the first byte the traced process read: the client's own trickle (not
    /// behind nginx, which reads it first).
    slow_covers_trickle: bool,
    /// Both pipelined requests answered (nginx), else the second is `no_response`.
    pipelining: bool,
    malformed_requests: u64,
    malformed_responses: u64,
}

/// The spans of [`run_cases`], exactly: one per request, nine in all.
fn check_spans(r: &TraceResult, a: &Answers, port: u16, m: &Mode) {
    let spans = &r.spans;
    assert_eq!(spans.len(), 9, "{}", summarize(spans));
    for s in spans {
        let pid = pid_of(s);
        assert!(
            m.workers.contains(&pid) || Some(pid) == m.router,
            "pid {pid} neither a worker {:?} nor the router {:?}: {s}",
            m.workers,
            m.router
        );
        assert_eq!(s["resource"]["service.name"], "testapp");
    }
    check_request_cases(spans, a, port, m);
    check_response_cases(spans, a, port, m);

    let counts = format!("malformed_requests={} malformed_responses={} ", m.malformed_requests, m.malformed_responses);
    assert!(r.stderr.contains(&counts), "want {counts:?} in:\n{}", r.stderr);
}

/// The spans of the requests whose hard part is the request: a chunked upload, a streamed
/// response's request, a long head, `Expect: 100-continue`, HTTP/1.0 and a trickled one.
fn check_request_cases(spans: &[Value], a: &Answers, port: u16, m: &Mode) {
    let in_worker = |s: &Value| assert!(m.workers.contains(&pid_of(s)), "the worker that ran the code: {s}");

    let upload = one_span(spans, "/upload");
    assert_attrs(
        upload,
        &expected(
            port,
            a.chunked_upload.client_port,
            "POST",
            "/upload",
            json!({"http.request.body.size": 11, "http.response.status_code": 200, "http.response.body.size": 1}),
        ),
    );
    in_worker(upload);

    let stream = one_span(spans, "/stream/3");
    assert_attrs(
        stream,
        &expected(
            port,
            a.stream_port,
            "GET",
            "/stream/3",
            json!({"http.response.status_code": 200, "http.response.body.size": 24, "user_agent.original": "pytracer-tests/1"}),
        ),
    );
    in_worker(stream);

    let long = one_span(spans, "/hello");
    assert_attrs(
        long,
        &expected(
            port,
            a.long_head.client_port,
            "GET",
            "/hello",
            json!({"http.response.status_code": 200, "http.response.body.size": 5, "user_agent.original": "pytracer-tests/1", "pytracer.http.request.head_truncated": true}),
        ),
    );
    in_worker(long);

    let expect = one_span(spans, "/items/4");
    assert_attrs(
        expect,
        &expected(
            port,
            a.expect.client_port,
            "PUT",
            "/items/4",
            json!({"http.request.body.size": 4, "http.response.status_code": 200, "http.response.body.size": 9}),
        ),
    );
    in_worker(expect);

    let http10 = one_span(spans, "/users/10");
    assert_attrs(
        http10,
        &expected(
            port,
            a.http10.client_port,
            "GET",
            "/users/10",
            json!({"network.protocol.version": "1.0", "http.response.status_code": 200, "http.response.body.size": 10}),
        ),
    );
    in_worker(http10);

    let slow = one_span(spans, "/users/11");
    assert_attrs(
        slow,
        &expected(
            port,
            a.slow.client_port,
            "GET",
            "/users/11",
            json!({"http.response.status_code": 200, "http.response.body.size": 10}),
        ),
    );
    in_worker(slow);
    if m.slow_covers_trickle {
        assert!(
            duration_ns(slow) >= a.trickle.as_nanos() as u64 / 2,
            "{} ns for a {:?} trickle",
            duration_ns(slow),
            a.trickle
        );
    } else {
        assert!(
            duration_ns(slow) < a.trickle.as_nanos() as u64 / 2,
            "{} ns: nginx read the {:?} trickle, not the worker",
            duration_ns(slow),
            a.trickle
        );
    }
}

/// The spans whose hard part is the response: one cut off mid-body, and a pipelined pair.
fn check_response_cases(spans: &[Value], a: &Answers, port: u16, m: &Mode) {
    let in_worker = |s: &Value| assert!(m.workers.contains(&pid_of(s)), "the worker that ran the code: {s}");

    let path = format!("/big/{BIG}");
    let cut = one_span(spans, &path);
    let written = attr_u64(cut, "http.response.body.size").unwrap();
    assert!(written > 0 && written < BIG, "{written} of {BIG} bytes written before the cut");
    assert_attrs(
        cut,
        &expected(
            port,
            a.cut_port,
            "GET",
            &path,
            json!({"http.response.status_code": 200, "http.response.body.size": written, "error.type": "response_incomplete"}),
        ),
    );
    assert_eq!(cut["status"]["code"], "error");
    in_worker(cut);

    let first = one_span(spans, "/users/21");
    assert_attrs(
        first,
        &expected(
            port,
            a.pipelined.client_port,
            "GET",
            "/users/21",
            json!({"http.response.status_code": 200, "http.response.body.size": 10}),
        ),
    );
    in_worker(first);
    let second = one_span(spans, "/users/22");
    if m.pipelining {
        assert_attrs(
            second,
            &expected(
                port,
                a.pipelined.client_port,
                "GET",
                "/users/22",
                json!({"http.response.status_code": 200, "http.response.body.size": 10}),
            ),
        );
        in_worker(second);
    } else {
        assert_attrs(
            second,
            &expected(port, a.pipelined.client_port, "GET", "/users/22", json!({"error.type": "no_response"})),
        );
        assert_eq!(second["status"]["code"], "error");
        // Read by the process that owns the client's connection, answered by nobody.
        let reader = m.router.unwrap_or_else(|| pid_of(first));
        assert_eq!(pid_of(second), reader, "{second}");
    }
}

/// What uWSGI itself (`--http-socket` or the router) answers.
fn check_uwsgi_answers(a: &Answers) {
    assert_eq!(
        body_of(&a.chunked_upload.text),
        "0",
        "uWSGI hands a chunked body to no WSGI app: {}",
        a.chunked_upload.text
    );
    assert_eq!(a.stream.status, 200);
    assert_eq!(
        (a.stream.header("transfer-encoding"), a.stream.header("content-length")),
        (None, None),
        "delimited by the close"
    );
    assert_eq!(a.stream.body, b"chunk-0\nchunk-1\nchunk-2\n");
    assert_eq!((status_of(&a.long_head.text), body_of(&a.long_head.text)), (Some(200), "hello"));
    assert!(a.expect.text.ends_with("updated 4"), "{}", a.expect.text);
    assert!(
        a.http10.text.starts_with("HTTP/1.0 200 ") && body_of(&a.http10.text) == "{\"id\": 10}",
        "{}",
        a.http10.text
    );
    assert!(a.slow.text.ends_with("{\"id\": 11}"), "{}", a.slow.text);
    assert_eq!(a.garbage.text, "", "uWSGI closes without a word");
    assert!(a.invalid.text.starts_with("REQUEST 404 NOT FOUND\r\n"), "{}", a.invalid.text);
    assert_eq!(status_of(&a.pipelined.text), Some(200));
    assert!(
        a.pipelined.text.ends_with("\r\n\r\n{\"id\": 21}"),
        "only the first pipelined request is answered: {}",
        a.pipelined.text
    );
}

/// `--http-socket`: the workers speak HTTP themselves.
#[test]
fn http_socket_hard_cases() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_socket(2).args(&["--buffer-size", "32768"]));
    let t = Tracer::start(&[u.pid()], &[]);
    let a = run_cases(u.port(), false);
    let r = t.stop();
    check_uwsgi_answers(&a);
    // No interim response: the client waited a second before sending the body.
    assert!(duration_ns(one_span(&r.spans, "/items/4")) >= 900_000_000);
    let mode = Mode {
        workers: u.worker_pids(),
        router: None,
        slow_covers_trickle: true,
        pipelining: false,
        // The garbage and the invalid line; the `REQUEST 404` answer to the latter.
        malformed_requests: 2,
        malformed_responses: 1,
    };
    check_spans(&r, &a, u.port(), &mode);
}

/// `--http`: a router process reads the client's HTTP and forwards uwsgi packets to a worker.
/// One span per request, with the client's address and timing and the worker's pid.
#[test]
fn http_router_hard_cases() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_router(2).args(&[
        "--buffer-size",
        "32768",
        "--http-buffer-size",
        "32768",
        "--http-keepalive",
        "--http-manage-expect",
    ]));
    let router = u.router_pid().expect("router process");
    let t = Tracer::start(&[u.pid()], &[]);
    let a = run_cases(u.port(), true);
    let r = t.stop();
    check_uwsgi_answers(&a);
    let mode = Mode {
        workers: u.worker_pids(),
        router: Some(router),
        slow_covers_trickle: true,
        pipelining: false,
        // The router's garbage and invalid line, and the worker's uwsgi packet for the latter
        // (protocol REQUEST); the `REQUEST 404` answer as the worker wrote it and as the router
        // passed it on.
        malformed_requests: 3,
        malformed_responses: 2,
    };
    check_spans(&r, &a, u.port(), &mode);
}

/// `--socket` behind nginx's `uwsgi_pass`: the spans are the workers', with the client's address
/// from REMOTE_ADDR/REMOTE_PORT.
#[test]
fn uwsgi_behind_nginx_hard_cases() {
    if !require_privileged() || !require_uwsgi_nginx() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::uwsgi_socket(2).args(&["--buffer-size", "32768"]));
    let nginx = Nginx::start_uwsgi_pass(u.upstream());
    let t = Tracer::start(&[u.pid()], &[]);
    let a = run_cases(nginx.port(), true);
    let r = t.stop();

    assert_eq!(
        body_of(&a.chunked_upload.text),
        "0",
        "uWSGI reads nginx's de-chunked body as chunked: {}",
        a.chunked_upload.text
    );
    assert_eq!(a.stream.header("transfer-encoding"), Some("chunked"), "nginx chunks it");
    assert_eq!(a.stream.body, b"chunk-0\nchunk-1\nchunk-2\n");
    assert_eq!((status_of(&a.long_head.text), body_of(&a.long_head.text)), (Some(200), "hello"));
    assert!(a.expect.text.ends_with("updated 4"), "{}", a.expect.text);
    assert!(
        a.http10.text.starts_with("HTTP/1.1 200 ") && body_of(&a.http10.text) == "{\"id\": 10}",
        "{}",
        a.http10.text
    );
    assert!(a.slow.text.ends_with("{\"id\": 11}"), "{}", a.slow.text);
    assert_eq!(status_of(&a.garbage.text), Some(400), "{}", a.garbage.text);
    assert_eq!(status_of(&a.invalid.text), Some(400), "{}", a.invalid.text);
    assert_eq!(a.pipelined.text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{}", a.pipelined.text);
    assert!(a.pipelined.text.ends_with("\r\n\r\n{\"id\": 22}"), "{}", a.pipelined.text);

    let mode = Mode {
        workers: u.worker_pids(),
        router: None,
        slow_covers_trickle: false,
        pipelining: true,
        // nginx turned both away: the workers saw nothing.
        malformed_requests: 0,
        malformed_responses: 0,
    };
    check_spans(&r, &a, nginx.port(), &mode);
}

/// A graceful reload by SIGHUP: the master re-executes itself and forks new workers. Every
/// request before and after gives exactly one span, from the worker that answered it.
#[test]
fn sighup_reload_loses_no_request() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_socket(2));
    let t = Tracer::start(&[u.pid()], &[]);
    let mut served_by = Vec::new();
    let mut before = Vec::new();
    for i in 0..16 {
        if i == 8 {
            before = u.worker_pids();
            u.reload_sighup();
            u.wait_for_workers(2, &before);
        }
        let s = send(u.port(), "GET", "/pid", b"", 200);
        let pid: u32 = String::from_utf8_lossy(&s.response_body).parse().unwrap();
        served_by.push((s.client_port, pid));
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), 16, "{}", summarize(&r.spans));
    assert!(
        r.stderr.contains(&format!("pytracer: pid {} executed", u.pid())),
        "the reload re-executes the master:\n{}",
        r.stderr
    );
    for (i, (client_port, pid)) in served_by.iter().enumerate() {
        let mine = spans_of_client(&r.spans, *client_port);
        assert_eq!(mine.len(), 1, "client port {client_port}");
        assert_eq!(pid_of(mine[0]), *pid);
        assert_eq!(before.contains(pid), i < 8, "request {i} served by {pid}; workers before the reload {before:?}");
        assert_eq!(attr_u64(mine[0], "http.response.status_code"), Some(200));
        assert_eq!(mine[0]["resource"]["service.name"], "testapp");
    }
}
