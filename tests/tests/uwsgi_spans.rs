//! End to end: real uWSGI in each of its three ways of speaking, 2 processes × 2 threads, traced
//! by pid. One span per request, with exactly the attributes a Gunicorn span has.

use pytracer_tests::*;

/// Sends the mixed sequence to `port` and checks the spans pytracer wrote for `u`.
fn traced_mixed_sequence(u: &Uwsgi, port: u16) {
    let t = Tracer::start(&[u.pid()], &[]);
    let sent = mixed_sequence(port);
    let r = t.stop();
    let workers = u.worker_pids();
    check_spans_of(&r.spans, &sent, port, &workers, "uwsgi");
    for s in &r.spans {
        assert_eq!(s["resource"]["service.name"], "testapp", "from --module testapp:app");
        if let Some(router) = u.router_pid() {
            assert_ne!(s["resource"]["process.pid"], router, "the worker that ran the code, not the router");
        }
    }
}

#[test]
fn http_socket_mode() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_socket(2).threads(2));
    traced_mixed_sequence(&u, u.port());
}

/// `--http`: a router process speaks HTTP to the client and uwsgi to the workers. One span per
/// request, with the client's address and timing and the worker's pid.
#[test]
fn http_router_mode_gives_one_span_per_request() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(UwsgiOpts::http_router(2).threads(2));
    traced_mixed_sequence(&u, u.port());
}

/// `--socket` behind nginx's uwsgi_pass, over TCP and over a unix socket, with --lazy-apps.
#[test]
fn uwsgi_protocol_behind_nginx() {
    if !require_privileged() || !require_uwsgi_nginx() {
        return;
    }
    for unix in [false, true] {
        let u = Uwsgi::start(UwsgiOpts::uwsgi_socket(2).threads(2).unix_socket(unix).lazy_apps(unix));
        let nginx = Nginx::start_uwsgi_pass(u.upstream());
        traced_mixed_sequence(&u, nginx.port());
    }
}

/// The service name is only in the ini file; workers recycled by --max-requests are traced from
/// their first request; a reload through the master FIFO (the master re-executes itself under
/// the same pid) loses nothing.
#[test]
fn ini_name_recycling_and_reload() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let u =
        Uwsgi::start(UwsgiOpts::http_socket(2).ini(true).args(&["--max-requests", "5", "--min-worker-lifetime", "0"]));
    let t = Tracer::start(&[u.pid()], &[]);
    let mut served_by = Vec::new();
    for i in 0..30 {
        if i == 15 {
            let before = u.worker_pids();
            u.reload();
            u.wait_for_workers(2, &before);
        }
        let s = send(u.port(), "GET", "/pid", b"", 200);
        served_by.push((s.client_port, String::from_utf8_lossy(&s.response_body).to_string()));
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), 30, "{}", summarize(&r.spans));
    assert!(
        r.stderr.contains(&format!("pytracer: pid {} executed", u.pid())),
        "the reload re-executes the master:\n{}",
        r.stderr
    );
    for (client_port, pid) in &served_by {
        let mine = spans_of_client(&r.spans, *client_port);
        assert_eq!(mine.len(), 1, "client port {client_port}");
        assert_eq!(mine[0]["resource"]["process.pid"].to_string(), *pid);
        assert_eq!(mine[0]["resource"]["service.name"], "testapp", "read from the [uwsgi] section of the ini");
    }
    let mut workers: Vec<&String> = served_by.iter().map(|s| &s.1).collect();
    workers.sort();
    workers.dedup();
    assert!(workers.len() >= 6, "recycled and reloaded workers served: {workers:?}");
}
