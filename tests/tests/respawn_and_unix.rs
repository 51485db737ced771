//! Workers killed by their own server, and servers bound to unix sockets.
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pytracer_tests::*;
use serde_json::json;

/// uWSGI's harakiri kills a worker stuck in a request: that request becomes an error span (no
/// response was ever written), and the worker the master spawns instead is traced from its first
/// request.
#[test]
fn harakiri_kill_gives_an_error_span_and_the_next_worker_is_traced() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_socket(1).args(&["--harakiri", "2"]));
    let t = Tracer::start(&[u.pid()], &[]);
    let victim = u.worker_pids()[0];
    let mut c = Conn::open(u.port());
    assert!(c.try_send("GET", "/sleep/6000", &[], b"").is_err(), "harakiri cuts the request off");
    let next = u.wait_for_workers(1, &[victim]);
    assert_eq!(get(u.port(), "/hello").status, 200);
    let r = t.stop();
    assert_eq!(r.spans.len(), 2, "{}", summarize(&r.spans));
    let killed = one_span(&r.spans, "/sleep/6000");
    assert_eq!(killed["resource"]["process.pid"], json!(victim));
    assert_eq!(attr_str(killed, "error.type"), Some("no_response"));
    assert_eq!(killed["status"]["code"], "error");
    assert!(attr(killed, "http.response.status_code").is_null());
    let after = one_span(&r.spans, "/hello");
    assert_eq!(after["resource"]["process.pid"], json!(next[0]));
    assert_eq!(attr_u64(after, "http.response.status_code"), Some(200));
    assert!(r.stderr.contains(&format!("pid {victim} exited")), "{}", r.stderr);
}

/// Gunicorn bound to a unix socket, as behind nginx: the span has what the request says; there
/// is no client address or port to report for an unnamed unix peer.
#[test]
fn gunicorn_on_a_unix_socket() {
    if !require_privileged() {
        return;
    }
    let dir = TempDir::new("unix-bind").unwrap();
    let path = dir.path().join("app.sock");
    let g = Gunicorn::start(GunicornOpts::sync(2).args(&["--bind", &format!("unix:{}", path.display())]));
    let t = Tracer::start(&[g.pid()], &[]);
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /users/5?secret=x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("{\"id\": 5}"), "{answer}");
    let r = t.stop();
    assert_eq!(r.spans.len(), 1, "{}", summarize(&r.spans));
    assert_eq!(
        r.spans[0]["attributes"],
        json!({"http.request.method": "GET", "url.path": "/users/5", "url.template": "/users/{id}", "url.query": "secret=<redacted>", "url.scheme": "http",
               "http.response.status_code": 200, "server.address": "localhost", "network.protocol.version": "1.1",
               "http.request.body.size": 0, "http.response.body.size": 9,
               "http.route": "/users/<int:user_id>", "code.function.name": "user",
               "code.file.path": apps_dir().join("testapp.py").display().to_string(),
               "code.line.number": testapp_view("GET", "/users/5").unwrap().2})
    );
    assert!(g.worker_pids().contains(&(r.spans[0]["resource"]["process.pid"].as_u64().unwrap() as u32)));
}
