//! End to end: spans exported over OTLP/HTTP to a receiver that decodes them with the official
//! OpenTelemetry protobuf definitions (bench/otlp_sink.py, opentelemetry-proto from PyPI), and
//! incoming W3C trace context.
use pytracer_tests::*;
use serde_json::json;

#[test]
fn spans_arrive_over_otlp_with_incoming_context() {
    if !require_privileged() {
        return;
    }
    let sink = OtlpSink::start(2);
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let dir = TempDir::new("otlp-config").unwrap();
    let config = dir.path().join("pytracer.yaml");
    std::fs::write(
        &config,
        format!("otlp:\n  endpoint: http://127.0.0.1:{}/v1/traces\n  headers:\n    x-api-key: s3cr3t\n", sink.port),
    )
    .unwrap();
    let t = Tracer::start(&[g.pid()], &["--config", config.to_str().unwrap()]);

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let sampled = format!("00-{caller_trace}-{caller_span}-01");
    assert_eq!(
        request(g.port(), "GET", "/users/1", &[("traceparent", &sampled), ("tracestate", "congo=t61rcWkgMzE")], b"")
            .status,
        200
    );
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    assert_eq!(request(g.port(), "GET", "/users/2", &[("traceparent", unsampled)], b"").status, 200);
    let invalid = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(request(g.port(), "GET", "/users/3", &[("traceparent", invalid)], b"").status, 200);
    assert_eq!(get(g.port(), "/fail").status, 500);
    for _ in 0..10 {
        assert_eq!(get(g.port(), "/hello").status, 200);
    }
    let r = t.stop();

    // JSON lines: every request but the unsampled one.
    assert_eq!(r.spans.len(), 13, "{}", summarize(&r.spans));
    assert!(spans_by_path(&r.spans, "/users/2").is_empty(), "the caller said not to sample it");
    let continued = one_span(&r.spans, "/users/1");
    assert_eq!(continued["trace_id"], caller_trace);
    assert_eq!(continued["parent_span_id"], caller_span);
    assert_eq!(continued["trace_state"], "congo=t61rcWkgMzE");
    let restarted = one_span(&r.spans, "/users/3");
    assert_ne!(restarted["trace_id"], caller_trace, "an invalid traceparent starts a new trace");
    assert!(restarted["parent_span_id"].is_null());
    assert!(r.stderr.contains("invalid_traceparent=1 unsampled=1"), "{}", r.stderr);
    assert!(r.stderr.contains("pytracer: OTLP: exported=13 queue_full=0 failed=0 retries=2"), "{}", r.stderr);

    // The receiver got the same 13 spans, field for field, after refusing the first two tries.
    let count = sink.json("/count");
    assert_eq!(count["refused"], 2);
    assert_eq!(count["server_spans"], 13);
    assert_eq!(count["errors"], 0);
    assert_eq!(count["gzip_requests"], count["requests"], "every export is gzip-compressed");
    assert_eq!(count["x-api-key"], "s3cr3t", "configured headers are sent");
    let received = sink.json("/spans");
    let received = received.as_array().unwrap();
    assert_eq!(received.len(), 13);
    for s in &r.spans {
        let id = s["span_id"].as_str().unwrap();
        let got = received.iter().find(|x| x["span_id"] == id).unwrap_or_else(|| panic!("span {id} not received"));
        assert_eq!(got["trace_id"], s["trace_id"]);
        assert_eq!(got["parent_span_id"], s["parent_span_id"].as_str().unwrap_or(""));
        assert_eq!(got["trace_state"], s["trace_state"].as_str().unwrap_or(""));
        assert_eq!(got["name"], s["name"]);
        assert_eq!(got["kind"], 2, "SPAN_KIND_SERVER");
        assert_eq!(got["status_code"], if s["status"]["code"] == "error" { 2 } else { 0 });
        assert_eq!(got["attributes"], s["attributes"], "attributes of {id}");
        assert_eq!(got["resource"], s["resource"], "resource of {id}");
        assert_eq!(got["scope"], "pytracer");
    }
    let fail = received.iter().find(|x| x["attributes"]["url.path"] == "/fail").unwrap();
    assert_eq!(fail["attributes"]["error.type"], json!("500"));
}
