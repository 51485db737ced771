//! Secrets never leave the agent (issue 15): a query parameter whose name matches the secrets
//! list is `<redacted>` (the default list, and the regex matcher from a configuration file), the
//! headers the configuration captures are recorded as `http.request.header.<name>` and
//! `http.response.header.<name>`, and the credentials headers (Authorization, Cookie) never
//! with their value, even when listed.
use pytracer_tests::*;
use serde_json::json;

/// The `http:` part of a configuration file, written to the tracer's scratch directory.
fn config_file(dir: &std::path::Path, http: &str) -> String {
    let path = dir.join("pytracer.yaml");
    std::fs::write(&path, format!("http:\n{http}")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn secrets_are_redacted_and_captured_headers_recorded() {
    if !require_privileged() {
        return;
    }
    let app = Gunicorn::start(GunicornOpts::sync(1));
    let dir = TempDir::new("secrets").unwrap();
    let config = config_file(
        dir.path(),
        "  capture_headers:\n    request: [X-Request-Id, Authorization, Cookie, X-Api-Token, X-Absent]\n    response: [Content-Type]\n",
    );
    let t = Tracer::start(&[app.pid()], &["--config", &config]);
    let headers = [
        ("X-Request-Id", "r-1"),
        ("Authorization", "Bearer very-secret"),
        ("Cookie", "session=abc"),
        ("X-Api-Token", "t-123"),
    ];
    let r = request(app.port(), "GET", "/users/7?id=7&access_token=abc&Signature=s&page=2", &headers, b"");
    assert_eq!(r.status, 200);
    let spans = t.stop().spans;
    let s = one_span(&spans, "/users/7");
    let a = s["attributes"].as_object().unwrap();
    assert_eq!(a["url.query"], "id=7&access_token=<redacted>&Signature=<redacted>&page=2");
    let captured: serde_json::Map<_, _> =
        a.iter().filter(|(k, _)| k.contains(".header.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(
        serde_json::Value::Object(captured),
        json!({
            "http.request.header.x-request-id": ["r-1"],
            "http.request.header.authorization": ["<redacted>"],
            "http.request.header.cookie": ["<redacted>"],
            // "token" is on the default secrets list.
            "http.request.header.x-api-token": ["<redacted>"],
            "http.response.header.content-type": ["application/json"],
        })
    );
    // No value of a secret anywhere in the span.
    let text = s.to_string();
    for secret in ["very-secret", "session=abc", "t-123", "access_token=abc"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn the_regex_matcher_redacts_whole_names() {
    if !require_privileged() {
        return;
    }
    let app = Gunicorn::start(GunicornOpts::sync(1));
    let dir = TempDir::new("secrets").unwrap();
    let config = config_file(dir.path(), "  secrets:\n    matcher: regex\n    list: ['x_.*', 'pin']\n");
    let t = Tracer::start(&[app.pid()], &["--config", &config]);
    assert_eq!(get(app.port(), "/users/8?x_sig=1&pin=2&spin=3&token=4").status, 200);
    let spans = t.stop().spans;
    // Only whole-name matches; `token` is not on this list.
    assert_eq!(
        one_span(&spans, "/users/8")["attributes"]["url.query"],
        "x_sig=<redacted>&pin=<redacted>&spin=3&token=4"
    );
}
