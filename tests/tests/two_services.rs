//! Issue 5 end to end: a frontend (Gunicorn + Flask) calls a backend over HTTP with `requests`,
//! sending no propagation header; the backend queries a real PostgreSQL (psycopg 3) and a real
//! Redis (redis-py). pytracer traces both services. Asserted exactly: one trace per client
//! request across both services with its parent/child tree, every exit span's statement or
//! command and its Python caller, and the same tree arriving over OTLP.
use std::fmt::Write as _;

use pytracer_tests::*;
use serde_json::{json, Value};

/// The trees as text, for the log (`--nocapture`) and for people reading a failure.
fn render(spans: &[Value]) -> String {
    fn walk(spans: &[Value], s: &Value, depth: usize, out: &mut String) {
        let a = &s["attributes"];
        let what =
            a.get("db.query.text").or(a.get("url.full")).or(a.get("url.path")).and_then(|v| v.as_str()).unwrap_or("");
        let code = a.get("code.function.name").and_then(|v| v.as_str()).unwrap_or("-");
        let ms = (s["end_time_unix_nano"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(s["start_time_unix_nano"].as_u64().unwrap_or(0))) as f64
            / 1e6;
        let _ = writeln!(
            out,
            "{}{} {} [{}] {what}  code={code} service={} {ms:.2} ms {}",
            "  ".repeat(depth),
            s["kind"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?"),
            &s["span_id"].as_str().unwrap_or("?")[..8],
            s["resource"]["service.name"].as_str().unwrap_or("?"),
            if s["status"]["code"] == "error" { "ERROR" } else { "" }
        );
        for c in children(spans, &s["span_id"]) {
            walk(spans, c, depth + 1, out);
        }
    }
    let mut out = String::new();
    for root in spans.iter().filter(|s| s["parent_span_id"].is_null()) {
        let _ = writeln!(out, "trace {}", root["trace_id"].as_str().unwrap_or("?"));
        walk(spans, root, 1, &mut out);
    }
    out
}

fn by_id<'a>(spans: &'a [Value], id: &Value) -> &'a Value {
    spans.iter().find(|s| s["span_id"] == *id).unwrap_or_else(|| panic!("no span {id}"))
}

fn peer(port: u16) -> Value {
    json!({"server.address": "127.0.0.1", "server.port": port, "network.peer.address": "127.0.0.1", "network.peer.port": port})
}

fn with(mut base: Value, extra: Value) -> Value {
    let Value::Object(extra) = extra else { panic!("extra attributes must be an object: {extra}") };
    base.as_object_mut().unwrap().extend(extra);
    base
}

/// What the OTLP sink received: the same 14 spans as the span file, with the same tree and kinds.
fn check_otlp_copy(sink: &OtlpSink, r: &TraceResult) {
    let spans = &r.spans;
    assert!(r.stderr.contains("pytracer: OTLP: exported=14 queue_full=0 failed=0"), "{}", r.stderr);
    let received = sink.json("/spans");
    let received = received.as_array().unwrap();
    assert_eq!(received.len(), 14);
    for sp in spans {
        let got = by_id(received, &sp["span_id"]);
        assert_eq!(got["trace_id"], sp["trace_id"]);
        assert_eq!(got["parent_span_id"], sp["parent_span_id"].as_str().unwrap_or(""));
        assert_eq!(got["name"], sp["name"]);
        assert_eq!(got["kind"], if sp["kind"] == "server" { 2 } else { 3 }, "SPAN_KIND_SERVER or SPAN_KIND_CLIENT");
        assert_eq!(got["attributes"], sp["attributes"]);
        assert_eq!(got["resource"], sp["resource"]);
    }
    let count = sink.json("/count");
    assert_eq!(count["server_spans"], 3);
    assert_eq!(count["spans"], 14);
}

/// The database calls the backend makes for /order/2, in order: (span name, attributes but
/// code.*, calling function of backend.py).
fn backend_db_calls(pg: &Value, redis: &Value) -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "SELECT app",
            with(
                pg.clone(),
                json!({"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.query.text": "SELECT name FROM items WHERE id = $1", "db.namespace": "app", "db.response.returned_rows": 1}),
            ),
            "load_item",
        ),
        (
            "SELECT app",
            with(
                pg.clone(),
                json!({"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.query.text": "SELECT count(*) FROM items WHERE name <> ?", "db.namespace": "app", "db.response.returned_rows": 1}),
            ),
            "count_items",
        ),
        // redis-py's connection handshake, made inside the first command's call.
        (
            "HELLO",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "HELLO", "db.query.text": "HELLO ?", "db.redis.key_count": 0}),
            ),
            "cache_get",
        ),
        (
            "CLIENT MAINT_NOTIFICATIONS",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "CLIENT MAINT_NOTIFICATIONS", "db.query.text": "CLIENT MAINT_NOTIFICATIONS ? ? ?", "db.response.status_code": "ERR", "error.type": "ERR"}),
            ),
            "cache_get",
        ),
        (
            "CLIENT SETINFO",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "CLIENT SETINFO", "db.query.text": "CLIENT SETINFO ? ?", "db.response.status_code": "ERR", "error.type": "ERR"}),
            ),
            "cache_get",
        ),
        (
            "CLIENT SETINFO",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "CLIENT SETINFO", "db.query.text": "CLIENT SETINFO ? ?", "db.response.status_code": "ERR", "error.type": "ERR"}),
            ),
            "cache_get",
        ),
        (
            "GET",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "GET", "db.query.text": "GET ?", "db.redis.key_count": 1}),
            ),
            "cache_get",
        ),
        (
            "SET",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "SET", "db.query.text": "SET ? ? ? ?", "db.redis.key_count": 1}),
            ),
            "cache_set",
        ),
        (
            "BATCH",
            with(
                redis.clone(),
                json!({"db.system.name": "redis", "db.operation.name": "BATCH", "db.query.text": "INCRBY ? ?; EXPIRE ? ?", "db.operation.batch.size": 2, "db.redis.key_count": 2}),
            ),
            "record_hit",
        ),
    ]
}

#[test]
fn one_trace_per_request_across_two_services_and_their_databases() {
    if !require_privileged_two_services() {
        return;
    }
    let sink = OtlpSink::start(0);
    let s = TwoServices::start(&GunicornOpts::sync(1));
    let dir = TempDir::new("two-services").unwrap();
    let config = dir.path().join("pytracer.yaml");
    std::fs::write(&config, sink.config_yaml()).unwrap();
    // Default frame-evaluation mode off (the harness's default): every caller and handler below
    // comes from the stack walks made at the outgoing writes.
    let t = Tracer::start(&s.app_pids(), &["--config", config.to_str().unwrap()]);

    let r = get(s.frontend.port(), "/order/2");
    assert_eq!(r.status, 200);
    let r = get(s.backend.port(), "/fail-db");
    assert_eq!(r.status, 500);
    let r = t.stop();
    let spans = &r.spans;
    println!("{}", render(spans));
    let backend_py = apps_dir().join("backend.py");
    let frontend_py = apps_dir().join("frontend.py");

    // Two client requests, two traces: 12 spans for /order/2, 2 for /fail-db.
    let mut traces: Vec<&Value> = spans.iter().map(|s| &s["trace_id"]).collect();
    traces.sort_by_key(ToString::to_string);
    traces.dedup();
    assert_eq!(traces.len(), 2, "{}", summarize(spans));
    assert_eq!(spans.len(), 14, "{}\n{}", summarize(spans), r.stderr);

    // /order/2: frontend server → frontend client GET → backend server → 9 database calls.
    let root = one_span(spans, "/order/2");
    assert!(root["parent_span_id"].is_null(), "the client sent no traceparent");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["resource"]["service.name"], "frontend");
    assert_code(root, &frontend_py, "order");
    let trace = &root["trace_id"];
    assert_eq!(spans.iter().filter(|s| s["trace_id"] == *trace).count(), 12);

    let calls = children(spans, &root["span_id"]);
    assert_eq!(calls.len(), 1, "the frontend makes one call");
    let call = calls[0];
    assert_eq!(call["kind"], "client");
    assert_eq!(call["name"], "GET");
    assert_eq!(
        exit_attributes(call),
        with(
            peer(s.backend.port()),
            json!({"http.request.method": "GET", "url.full": format!("http://127.0.0.1:{}/items/2", s.backend.port()), "http.response.status_code": 200})
        )
    );
    assert_code(call, &frontend_py, "fetch_item");

    // Stitched by socket pair: no header carried the context.
    let served = children(spans, &call["span_id"]);
    assert_eq!(served.len(), 1, "{}", summarize(spans));
    let backend = served[0];
    assert_eq!(backend["kind"], "server");
    assert_eq!(backend["trace_id"], *trace);
    assert_eq!(attr_str(backend, "url.path"), Some("/items/2"));
    assert_eq!(backend["resource"]["service.name"], "backend");
    assert_code(backend, &backend_py, "item");
    assert!(r.stderr.contains(" stitched=1"), "{}", r.stderr);

    let pg = peer(s.pg.port());
    let redis = peer(s.redis.port());
    let db = children(spans, &backend["span_id"]);
    let expected = backend_db_calls(&pg, &redis);
    assert_eq!(db.len(), expected.len(), "{}", summarize(spans));
    for (span, (name, attributes, caller)) in db.iter().zip(&expected) {
        assert_eq!(span["kind"], "client");
        assert_eq!(span["name"], *name);
        assert_eq!(exit_attributes(span), *attributes, "{name}");
        assert_eq!(
            span["status"]["code"],
            if attributes.get("error.type").is_some() { "error" } else { "unset" },
            "{name}"
        );
        assert_eq!(span["resource"]["service.name"], "backend");
        assert_code(span, &backend_py, caller);
        assert!(children(spans, &span["span_id"]).is_empty());
    }

    // /fail-db: the server's ErrorResponse on the exit span, the 500 on the request.
    let fail = one_span(spans, "/fail-db");
    assert!(fail["parent_span_id"].is_null());
    assert_eq!(attr_u64(fail, "http.response.status_code"), Some(500));
    assert_code(fail, &backend_py, "fail_db");
    let bad = children(spans, &fail["span_id"]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["name"], "SELEC app");
    assert_eq!(
        exit_attributes(bad[0]),
        with(
            pg,
            json!({"db.system.name": "postgresql", "db.operation.name": "SELEC", "db.query.text": "SELEC name FROM items", "db.namespace": "app", "db.response.status_code": "42601", "error.type": "42601"})
        )
    );
    assert_eq!(bad[0]["status"]["code"], "error");
    assert_code(bad[0], &backend_py, "run_bad_sql");
    assert!(r.stderr.contains("exit_spans=11 "), "{}", r.stderr);

    // The same 14 spans over OTLP, with the same tree and kinds.
    check_otlp_copy(&sink, &r);
}

/// An app that propagates context itself: its outgoing traceparent is recorded on the exit span,
/// and the callee's span continues that header's trace rather than being stitched by socket pair.
#[test]
fn a_traceparent_the_app_sends_is_recorded_and_wins_over_stitching() {
    if !require_privileged_two_services() {
        return;
    }
    let s = TwoServices::start(&GunicornOpts::sync(1));
    let t = Tracer::start(&s.app_pids(), &[]);
    let r = get(s.frontend.port(), "/order-propagated/3");
    assert_eq!(r.status, 200);
    let r = t.stop();
    let spans = &r.spans;
    println!("{}", render(spans));
    let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let root = one_span(spans, "/order-propagated/3");
    let calls = children(spans, &root["span_id"]);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["attributes"]["http.request.header.traceparent"], json!([sent]));
    assert_code(calls[0], &apps_dir().join("frontend.py"), "fetch_item");

    let backend = one_span(spans, "/items/3");
    assert_eq!(backend["trace_id"], "0af7651916cd43dd8448eb211c80319c", "the header's trace");
    assert_eq!(backend["parent_span_id"], "b7ad6b7169203331", "the header's parent, not the exit span");
    assert_ne!(backend["trace_id"], root["trace_id"]);
    // The backend's database calls follow the backend's span.
    assert_eq!(children(spans, &backend["span_id"]).len(), 9, "{}", summarize(spans));
    assert!(r.stderr.contains(" stitched=0"), "{}", r.stderr);
}
