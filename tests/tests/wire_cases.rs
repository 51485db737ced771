//! The hard cases on the wire, against a real Gunicorn: each request gives exactly one span with
//! the right fields, or (garbage) no span and a count. The cases themselves are in
//! `pytracer_tests::wire`, shared with the uWSGI wire tests.
use pytracer_tests::wire::{self, body_of, status_of};
use pytracer_tests::*;

#[test]
fn hard_cases_on_the_wire() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let port = g.port();
    let t = Tracer::start(&[g.pid()], &[]);

    // Chunked request body: the span counts the decoded data bytes.
    assert!(wire::chunked_upload(port).text.ends_with("\r\n\r\n11"), "the app read 11 bytes");

    // Chunked response body.
    let r = get(port, "/stream/3");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, b"chunk-0\nchunk-1\nchunk-2\n");

    // A head longer than the 4 KiB capture window.
    assert_eq!(status_of(&wire::long_head(port).text), Some(200));

    // Expect: 100-continue, the body sent only after the interim response.
    assert!(wire::expect_continue(port, true).text.ends_with("updated 4"));

    // HTTP/1.0.
    let answer = wire::http10(port).text;
    assert!(
        answer.starts_with("HTTP/1.") && status_of(&answer) == Some(200) && body_of(&answer) == "{\"id\": 10}",
        "{answer}"
    );

    // A slow client: one byte at a time.
    let (answer, trickle) = wire::slow_client(port);
    assert!(answer.text.ends_with("{\"id\": 11}"));

    // A client that goes away in the middle of a 64 MB response.
    wire::cut_response(port);

    // Garbage and an invalid request line: Gunicorn answers 400; no span, both counted.
    wire::garbage(port);
    wire::invalid_request_line(port);

    std::thread::sleep(std::time::Duration::from_millis(500));
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
    assert!(
        duration_ns(slow_span) >= trickle.as_nanos() as u64 / 2,
        "{} ns for a {:?} trickle",
        duration_ns(slow_span),
        trickle
    );
    assert_eq!(attr_u64(slow_span, "http.response.status_code"), Some(200));

    let cut = one_span(&r.spans, &format!("/big/{}", wire::BIG));
    assert_eq!(attr_str(cut, "error.type"), Some("response_incomplete"));
    assert_eq!(cut["status"]["code"], "error");
    assert!(attr_u64(cut, "http.response.body.size").unwrap() < wire::BIG);

    assert!(r.stderr.contains("malformed_requests=2 "), "{}", r.stderr);
}
