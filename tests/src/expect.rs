//! What a span must say about a request a test sent: the exact attributes, the resource, and
//! time bounds from the client's own clock. Shared by the Gunicorn and uWSGI tests.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::{attr_u64, duration_ns, summarize, Conn};

/// One request sent by a test, with everything its span must say.
pub struct Sent {
    pub method: &'static str,
    pub target: String,
    pub status: u16,
    pub request_body: u64,
    pub response_body: Vec<u8>,
    pub client_port: u16,
    /// The app sleeps this long on the route: the span must last at least as long.
    pub min_duration: Duration,
    /// Wall clock before connecting and after the response was read.
    pub sent_at: u64,
    pub done_at: u64,
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Sends one request on a fresh connection (`Connection: close`) and records it.
pub fn send(port: u16, method: &'static str, target: &str, body: &[u8], expect_status: u16) -> Sent {
    let sent_at = now_ns();
    let mut conn = Conn::open(port);
    let client_port = conn.local_port();
    let resp = conn.send(method, target, &[("Connection", "close")], body);
    let done_at = now_ns();
    assert_eq!(resp.status, expect_status, "{method} {target}: {}", resp.text());
    let min_duration =
        target.strip_prefix("/sleep/").map_or(Duration::ZERO, |ms| Duration::from_millis(ms.parse().unwrap()));
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

/// pytracer's `url.template` for the test app's paths: number segments become `{id}` (the only
/// kind of identifier the tests send; the agent's unit tests cover the others).
pub fn template_of(path: &str) -> String {
    path.split('/')
        .map(|s| if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { "{id}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The attributes the span of `s` must have, exactly.
pub fn expected_attributes(s: &Sent, port: u16) -> Value {
    let (path, query) = match s.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s.target.as_str(), None),
    };
    let mut a = Map::new();
    a.insert("http.request.method".into(), json!(s.method));
    a.insert("url.path".into(), json!(path));
    a.insert("url.template".into(), json!(template_of(path)));
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

/// The route and view the agent reads from tests/apps/testapp.py for a request: its Flask rule
/// (`http.route`), the view's name and the line of its decorator (a decorated function's
/// `co_firstlineno`). `None` for a request no rule serves (404, 405). The rules are read from the
/// app's source, so an edit to the app cannot leave these expectations behind.
pub fn testapp_view(method: &str, path: &str) -> Option<(String, String, u64)> {
    let src = std::fs::read_to_string(crate::env::apps_dir().join("testapp.py")).expect("read testapp.py");
    let lines: Vec<&str> = src.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("@app.") else { continue };
        let Some((verb, rule)) = rest.split_once("(\"") else { continue };
        let rule = rule.split('"').next().unwrap_or_default();
        let function = lines[i + 1..]
            .iter()
            .find_map(|l| l.strip_prefix("def ").and_then(|d| d.split('(').next()))
            .expect("a def after the decorator");
        let allowed = verb.to_uppercase() == method || (verb == "get" && method == "HEAD");
        if allowed && rule_matches(rule, path) {
            return Some((rule.to_string(), function.to_string(), i as u64 + 1));
        }
    }
    None
}

/// Whether a Flask rule of the test app (static segments and `<int:...>`) takes `path`.
fn rule_matches(rule: &str, path: &str) -> bool {
    let (r, p): (Vec<&str>, Vec<&str>) = (rule.split('/').collect(), path.split('/').collect());
    r.len() == p.len()
        && r.iter().zip(&p).all(|(r, p)| {
            if r.starts_with("<int:") {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
            } else {
                r == p
            }
        })
}

/// [`expected_attributes`] plus what the agent reads from the test app: `http.route` and the
/// view's `code.*`, for requests a rule serves.
pub fn expected_testapp_attributes(s: &Sent, port: u16) -> Value {
    let mut a = expected_attributes(s, port);
    let path = s.target.split('?').next().unwrap_or_default();
    if let Some((rule, function, line)) = testapp_view(s.method, path) {
        let m = a.as_object_mut().expect("an object");
        m.insert("http.route".into(), json!(rule));
        m.insert("code.function.name".into(), json!(function));
        m.insert("code.file.path".into(), json!(crate::env::apps_dir().join("testapp.py").display().to_string()));
        m.insert("code.line.number".into(), json!(line));
    }
    a
}

/// The span name for `s` on the test app: `"{method} {route}"`, or the method alone.
pub fn testapp_span_name(s: &Sent) -> String {
    let path = s.target.split('?').next().unwrap_or_default();
    match testapp_view(s.method, path) {
        Some((rule, _, _)) => format!("{} {rule}", s.method),
        None => s.method.to_string(),
    }
}

/// What the default secrets list (key, pass, secret, token, auth, session, signature, credential,
/// contained, ignoring case) makes of a query.
pub fn redacted(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _))
                if ["key", "pass", "secret", "token", "auth", "session", "signature", "credential"]
                    .iter()
                    .any(|s| k.to_lowercase().contains(s)) =>
            {
                format!("{k}=<redacted>")
            }
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Spans of one connection, in the order the agent wrote them.
pub fn spans_of_client(spans: &[Value], client_port: u16) -> Vec<&Value> {
    spans.iter().filter(|s| attr_u64(s, "client.port") == Some(u64::from(client_port))).collect()
}

/// Checks every span against what was sent: one per request, exact attributes, the resource of a
/// worker of this Gunicorn, and timestamps inside the client's own view of the exchange.
pub fn check_spans(spans: &[Value], sent: &[Sent], port: u16, workers: &[u32]) {
    check_spans_of(spans, sent, port, workers, "gunicorn");
}

/// [`check_spans`] for a server other than Gunicorn (`process.executable.name`).
pub fn check_spans_of(spans: &[Value], sent: &[Sent], port: u16, workers: &[u32], executable: &str) {
    assert_eq!(spans.len(), sent.len(), "one span per request; spans:\n{}", summarize(spans));
    let mut by_client: std::collections::HashMap<u16, usize> = std::collections::HashMap::default();
    for s in sent {
        let i = by_client.entry(s.client_port).or_default();
        let mine = spans_of_client(spans, s.client_port);
        let span = mine.get(*i).unwrap_or_else(|| {
            panic!(
                "no span for {} {} (client port {}); spans:\n{}",
                s.method,
                s.target,
                s.client_port,
                summarize(spans)
            )
        });
        *i += 1;
        assert_eq!(
            span["attributes"],
            expected_testapp_attributes(s, port),
            "{} {} served by pid {}",
            s.method,
            s.target,
            span["resource"]["process.pid"]
        );
        assert_eq!(span["name"], json!(testapp_span_name(s)));
        assert_eq!(span["kind"], "server");
        assert_eq!(span["status"]["code"], if s.status >= 500 { "error" } else { "unset" }, "{span}");
        assert!(span["parent_span_id"].is_null());
        assert_eq!(span["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(span["span_id"].as_str().unwrap().len(), 16);
        let r = &span["resource"];
        assert_eq!(r["service.name"], "testapp");
        assert_eq!(r["process.executable.name"], executable);
        let pid = r["process.pid"].as_u64().unwrap() as u32;
        assert!(workers.contains(&pid), "span from pid {pid}, workers are {workers:?}");
        let (start, end) =
            (span["start_time_unix_nano"].as_u64().unwrap(), span["end_time_unix_nano"].as_u64().unwrap());
        // The clocks agree to well under a millisecond; allow 5 ms for the conversion. The end
        // gets more: it is the exit of the server's last write, and the client can read those
        // bytes before the server thread, preempted inside that write on a busy 2-core CI
        // machine, returns from it (seen once: uWSGI's span ended 11 ms after the client's read).
        let start_slack = 5_000_000;
        let end_slack = 50_000_000;
        assert!(
            start + start_slack >= s.sent_at && end <= s.done_at + end_slack && start <= end,
            "{} {}: span [{start}, {end}] outside [{}, {}]",
            s.method,
            s.target,
            s.sent_at,
            s.done_at
        );
        assert!(
            duration_ns(span) >= s.min_duration.as_nanos() as u64,
            "{} {} lasted {} ns, the app sleeps {:?}",
            s.method,
            s.target,
            duration_ns(span),
            s.min_duration
        );
    }
}

pub const MB: usize = 1_048_576;

/// The mixed sequence of the issue: methods, queries with secrets, 200/201/404/500, 1 MB each way,
/// and a route that sleeps.
pub fn mixed_sequence(port: u16) -> Vec<Sent> {
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
