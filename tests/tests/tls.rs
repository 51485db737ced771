//! Issue 14 end to end: HTTPS seen through libssl's uprobes. A certificate made here (openssl,
//! for `localhost` and 127.0.0.1); a Gunicorn serving tests/apps/tls_calls.py over HTTPS
//! (`--certfile`/`--keyfile`), and the same app over plain HTTP whose routes call it with
//! `requests` and with `http.client.HTTPSConnection`; curl -k calls the HTTPS one directly. Both
//! Gunicorns are traced. Asserted: exactly these spans, their names, `url.full`/`url.scheme`,
//! `server.address`/`server.port`, status codes, parents (the HTTPS server span is the child of
//! the call that made it, stitched as over plain TCP), the caller's code; and that the ciphertext
//! on those sockets was never parsed (the agent's own counters of unparsed and malformed traffic
//! stay at 0).
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pytracer_tests::*;
use serde_json::{json, Value};

/// What every test here starts from: a self-signed certificate for localhost and 127.0.0.1, made
/// by openssl in a scratch directory of its own (kept when the test fails), the Gunicorns that
/// serve tests/apps/tls_calls.py with it, and the agent, its metrics on a port of its own.
struct Fixture {
    files: TempDir,
    /// The certificate's and the key's paths as the servers see them.
    cert: String,
    key: String,
    metrics_port: u16,
}

impl Fixture {
    fn new() -> Fixture {
        Self::under(&std::env::temp_dir(), Path::new("/"))
    }

    /// The certificate made in the chroot at `root`, for the processes inside it.
    fn in_chroot(root: &Path) -> Fixture {
        Self::under(&root.join("tmp"), root)
    }

    /// The certificate in a scratch directory under `parent`, served from the root `root`.
    fn under(parent: &Path, root: &Path) -> Fixture {
        let files = TempDir::new_in(parent, "tls").unwrap();
        let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
        let out = Command::new("/usr/bin/openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        let served = |p: PathBuf| Path::new("/").join(p.strip_prefix(root).unwrap()).to_str().unwrap().to_string();
        Fixture { cert: served(cert), key: served(key), files, metrics_port: free_port() }
    }

    /// Where the fixture's files are (a test's own build products can go there too).
    fn dir(&self) -> &Path {
        self.files.path()
    }

    /// A Gunicorn serving tls_calls.py over HTTPS with the certificate; `opts` says which worker.
    fn https_gunicorn(&self, opts: GunicornOpts) -> Gunicorn {
        Gunicorn::start(opts.app("tls_calls:app").args(&["--certfile", &self.cert, "--keyfile", &self.key]))
    }

    /// A Gunicorn serving tls_calls.py over plain HTTP, whose routes call an HTTPS one trusting
    /// the certificate.
    fn calling_gunicorn(&self, opts: GunicornOpts) -> Gunicorn {
        Gunicorn::start(opts.app("tls_calls:app").env("TLS_CA_FILE", &self.cert))
    }

    /// The agent tracing `pids`, its metrics on the fixture's port.
    fn trace(&self, pids: &[u32]) -> Tracer {
        Tracer::start(pids, &["--metrics-addr", &format!("127.0.0.1:{}", self.metrics_port)])
    }

    fn metrics(&self) -> Vec<Line> {
        scrape(self.metrics_port)
    }

    /// Waits until `n` server spans reached the metrics (and `also` holds), then scrapes them.
    fn metrics_once_served(&self, n: usize, also: impl Fn(&[Line]) -> bool) -> Vec<Line> {
        let settled = wait_until(Duration::from_secs(5), || {
            let m = self.metrics();
            sum(&m, "http_server_request_duration_seconds_count", &[]) as usize >= n && also(&m)
        });
        assert!(settled, "{n} server spans never reached the metrics");
        self.metrics()
    }
}

/// Waits until the agent wrote `n` spans.
fn wait_for_spans(t: &Tracer, n: usize) {
    let written = || std::fs::read_to_string(t.output_path()).map_or(0, |s| s.lines().count());
    assert!(wait_until(Duration::from_secs(5), || written() >= n), "{n} spans never came");
}

/// `curl -k`'s status code for `url`.
fn curl_status(url: &str) -> String {
    let out = Command::new("curl").args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", url]).output().unwrap();
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn server_span<'a>(spans: &'a [Value], path: &str) -> &'a Value {
    let s = one_span(spans, path);
    assert_eq!(s["kind"], "server", "{path}: {s}");
    s
}

/// A front request's one HTTPS call (to `backend`, from Python function `caller`, with `query`)
/// and the HTTPS server's span of it, stitched to the call by the socket pair.
fn call_and_callee(spans: &[Value], bport: u16, route: &str, backend: &str, caller: &str, query: Option<&str>) {
    let file = apps_dir().join("tls_calls.py");
    let front_span = server_span(spans, route);
    assert_eq!(attr_str(front_span, "url.scheme"), Some("http"), "{route}");
    assert!(front_span["parent_span_id"].is_null(), "{route}");
    let calls = children(spans, &front_span["span_id"]);
    assert_eq!(calls.len(), 1, "{route}: one client span\n{}", summarize(spans));
    let c = calls[0];
    assert_eq!((c["kind"].as_str(), c["name"].as_str()), (Some("client"), Some("GET")), "{route}: {c}");
    let target = query.map_or(backend.to_string(), |q| format!("{backend}?{q}"));
    let mut attrs = c["attributes"].as_object().unwrap().clone();
    attrs.retain(|k, _| !k.starts_with("code."));
    // Each call opened its connection: the connect's share, within the span (TLS's handshake is
    // after it, part of the call).
    let connect = attrs.remove("pytracer.connect.duration").and_then(|v| v.as_f64());
    #[expect(clippy::cast_precision_loss, reason = "a span's duration in seconds")]
    let span_s = duration_ns(c) as f64 / 1e9;
    assert!(connect.is_some_and(|t| (0.0..=span_s).contains(&t)), "{route}: {c}");
    assert_eq!(
        Value::Object(attrs),
        json!({
            "http.request.method": "GET",
            "url.full": format!("https://localhost:{bport}{target}"),
            "server.address": "localhost",
            "server.port": bport,
            "network.peer.address": "127.0.0.1",
            "network.peer.port": bport,
            "http.response.status_code": 201,
        }),
        "{route}"
    );
    assert_eq!(attr_str(c, "code.function.name"), Some(caller), "{route}: {c}");
    assert_eq!(attr_str(c, "code.file.path"), Some(file.to_str().unwrap()), "{route}");
    assert_eq!(attr_u64(c, "code.line.number"), Some(first_line_of(&file, caller)), "{route}");
    assert_eq!(c["trace_id"], front_span["trace_id"], "{route}");

    // The HTTPS server's span: the call's child, stitched by the socket pair.
    let b = server_span(spans, backend);
    assert_eq!(attr_str(b, "url.scheme"), Some("https"), "{backend}: {b}");
    assert_eq!(attr_u64(b, "http.response.status_code"), Some(201), "{backend}");
    assert_eq!(attr_str(b, "http.route"), Some("/backend/<name>"), "{backend}");
    assert_eq!(b["parent_span_id"], c["span_id"], "{backend}: the call's child\n{}", summarize(spans));
    assert_eq!(b["trace_id"], c["trace_id"], "{backend}");
}

#[test]
fn https_calls_and_a_tls_gunicorn_are_exact_spans() {
    if !require_privileged() {
        return;
    }
    let tls = Fixture::new();
    let back = tls.https_gunicorn(GunicornOpts::sync(1));
    let front = tls.calling_gunicorn(GunicornOpts::sync(1));
    let t = tls.trace(&[front.pid(), back.pid()]);
    let bport = back.port();

    let r = get(front.port(), &format!("/call/requests?port={bport}"));
    assert_eq!((r.status, r.text()), (200, "201 hello requests".to_string()));
    let r = get(front.port(), &format!("/call/http-client?port={bport}"));
    assert_eq!((r.status, r.text()), (200, "201 hello http-client".to_string()));
    let (tp_trace, tp_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let tp = format!("00-{tp_trace}-{tp_span}-01");
    let r = get(front.port(), &format!("/call/propagating?port={bport}&traceparent={tp}"));
    assert_eq!((r.status, r.text()), (200, "201 hello propagated".to_string()));
    let r = get(front.port(), &format!("/call/wrapped-first?port={bport}"));
    assert_eq!((r.status, r.text()), (200, "HTTP/1.1 201 CREATED".to_string()));
    assert_eq!(curl_status(&format!("https://127.0.0.1:{bport}/backend/curl")), "201");

    let metrics = tls.metrics_once_served(9, |_| true);
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 13, "4 front requests, their 4 HTTPS calls, 5 HTTPS requests\n{}", summarize(spans));

    for (route, backend, caller, query) in [
        ("/call/requests", "/backend/requests", "call_requests", None),
        ("/call/http-client", "/backend/http-client", "call_http_client", Some("x=1")),
        ("/call/wrapped-first", "/backend/wrapped-first", "call_wrapped_first", None),
    ] {
        call_and_callee(spans, bport, route, backend, caller, query);
    }

    // The app's own traceparent, sent over TLS, is read from the plaintext: the HTTPS server's
    // span joins the trace it names, and the call keeps the header it sent.
    let front_span = server_span(spans, "/call/propagating");
    let calls = children(spans, &front_span["span_id"]);
    assert_eq!(calls.len(), 1, "{}", summarize(spans));
    assert_eq!(attr_str(calls[0], "url.full"), Some(format!("https://localhost:{bport}/backend/propagated").as_str()));
    assert_eq!(attr(calls[0], "http.request.header.traceparent"), &json!([tp]));
    assert_eq!(attr_str(calls[0], "code.function.name"), Some("call_propagating"));
    let b = server_span(spans, "/backend/propagated");
    assert_eq!((b["trace_id"].as_str(), b["parent_span_id"].as_str()), (Some(tp_trace), Some(tp_span)), "{b}");
    assert_eq!(attr_str(b, "url.scheme"), Some("https"));

    let curl = server_span(spans, "/backend/curl");
    assert_eq!(attr_str(curl, "url.scheme"), Some("https"));
    assert_eq!(attr_u64(curl, "http.response.status_code"), Some(201));
    assert_eq!(attr_str(curl, "server.address"), Some("127.0.0.1"));
    assert!(curl["parent_span_id"].is_null(), "curl is not traced: a root\n{}", summarize(spans));

    // The ciphertext was never parsed: nothing unparsed, malformed or unattributed (each series
    // is there, at 0).
    let series = |name: &str, reason: Option<&str>| {
        metrics
            .iter()
            .any(|l| l.name == name && reason.is_none_or(|r| l.labels.get("reason").map(String::as_str) == Some(r)))
    };
    assert!(series("pytracer_client_connections_unparsed_total", None));
    assert_eq!(sum(&metrics, "pytracer_client_connections_unparsed_total", &[]) as u64, 0);
    for reason in [
        "malformed_request",
        "malformed_response",
        "unmatched_response",
        "tls_unattributed",
        "tls_map_full",
        "tls_library_unreadable",
    ] {
        assert!(series("pytracer_events_dropped_total", Some(reason)), "{reason}");
        assert_eq!(sum(&metrics, "pytracer_events_dropped_total", &[("reason", reason)]) as u64, 0, "{reason}");
    }
    assert!(r.stderr.contains(" unparsed_client_connections=0 "), "{}", r.stderr);
}

/// `uwsgi --https`: the router process terminates TLS (libssl's SSL_read/SSL_write in C) and
/// forwards uwsgi packets to the worker. One span per request, from the router's plaintext
/// matched with the worker's request (`routed`), https; the ciphertext is not parsed.
#[test]
fn uwsgi_https_router_gives_one_span_per_request() {
    if !require_privileged() || !require_uwsgi() {
        return;
    }
    let tls = Fixture::new();
    let u = Uwsgi::start(UwsgiOpts::http_router(1).module("tls_calls:app").https(&tls.cert, &tls.key));
    let t = tls.trace(&[u.pid()]);
    for i in 0..3 {
        assert_eq!(curl_status(&format!("https://localhost:{}/backend/uwsgi{i}", u.port())), "201");
    }
    let metrics = tls.metrics_once_served(3, |_| true);
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 3, "{}", summarize(spans));
    for i in 0..3 {
        let s = server_span(spans, &format!("/backend/uwsgi{i}"));
        assert_eq!(attr_str(s, "url.scheme"), Some("https"), "{s}");
        assert_eq!(attr_u64(s, "http.response.status_code"), Some(201), "{s}");
        assert_eq!(attr_str(s, "server.address"), Some("localhost"), "{s}");
        assert_eq!(attr_u64(s, "server.port"), Some(u64::from(u.port())), "{s}");
        assert_eq!(attr_str(s, "user_agent.original").map(|a| a.starts_with("curl/")), Some(true), "{s}");
        assert_eq!(attr_str(s, "code.function.name"), Some("backend"), "{s}");
        assert!(s["parent_span_id"].is_null(), "{s}");
    }
    for reason in ["malformed_request", "malformed_response", "unmatched_response", "tls_unattributed"] {
        assert_eq!(sum(&metrics, "pytracer_events_dropped_total", &[("reason", reason)]) as u64, 0, "{reason}");
    }
    assert!(r.stderr.contains(" routed=3 "), "the router's plaintext matched each worker request:\n{}", r.stderr);
}

/// asyncio's TLS (an SSLObject over memory BIOs): libssl never touches the socket, so its
/// plaintext has no socket to join. Each SSL call that moved bytes is counted as
/// `tls_unattributed` (the request's one write, the response's two reads: Gunicorn writes the head
/// and the body apart); the socket's ciphertext is an unparsed client connection, as before. The
/// HTTPS server's side of the same call is still a span (its `_ssl` sockets use SSL_set_fd).
#[test]
fn asyncio_memory_bios_are_counted_not_attributed() {
    if !require_privileged() {
        return;
    }
    let tls = Fixture::new();
    let back = tls.https_gunicorn(GunicornOpts::sync(1));
    let front = tls.calling_gunicorn(GunicornOpts::sync(1));
    let t = tls.trace(&[front.pid(), back.pid()]);
    let r = get(front.port(), &format!("/call/asyncio?port={}", back.port()));
    assert_eq!((r.status, r.text()), (200, "HTTP/1.1 201 CREATED".to_string()));
    // Three unattributed SSL calls too.
    let unattributed = |m: &[Line]| sum(m, "pytracer_events_dropped_total", &[("reason", "tls_unattributed")]) >= 3.0;
    let metrics = tls.metrics_once_served(2, unattributed);
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 2, "the front request and the HTTPS server's: no client span\n{}", summarize(spans));
    assert_eq!(attr_str(server_span(spans, "/call/asyncio"), "url.scheme"), Some("http"));
    assert_eq!(attr_str(server_span(spans, "/backend/asyncio"), "url.scheme"), Some("https"));
    assert_eq!(sum(&metrics, "pytracer_events_dropped_total", &[("reason", "tls_unattributed")]) as u64, 3);
    assert_eq!(sum(&metrics, "pytracer_client_connections_unparsed_total", &[]) as u64, 1);
    for reason in ["malformed_request", "malformed_response", "unmatched_response", "tls_map_full"] {
        assert_eq!(sum(&metrics, "pytracer_events_dropped_total", &[("reason", reason)]) as u64, 0, "{reason}");
    }
}

/// A Gunicorn in Debian trixie's chroot maps the chroot's own libssl (OpenSSL 3.5), which the
/// agent opens through /proc/PID/root: an http.client call from one chrooted Gunicorn to another
/// serving HTTPS is the same three spans as on the host.
#[test]
fn chrooted_gunicorns_use_their_own_libssl() {
    let venv = "/opt/venv";
    if !require_chroot_venvs(&[("trixie", venv)]) {
        return;
    }
    let root = debian_chroot("trixie");
    let tls = Fixture::in_chroot(&root);
    let chrooted = || GunicornOpts::sync(1).chroot(root.clone(), venv);
    let back = tls.https_gunicorn(chrooted());
    let front = tls.calling_gunicorn(chrooted());
    let t = tls.trace(&[front.pid(), back.pid()]);
    let bport = back.port();
    // By address: the chroot's /etc/hosts names ::1 localhost too, where the server does not listen.
    let r = get(front.port(), &format!("/call/http-client?port={bport}&host=127.0.0.1"));
    assert_eq!((r.status, r.text()), (200, "201 hello http-client".to_string()));
    wait_for_spans(&t, 3);
    // The file each worker's probes went on (while the processes live: the agent may name it
    // through /proc/PID/map_files) is the chroot's libssl, not the host's.
    let inode = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).unwrap();
    let chroot_libssl = inode(&root.join("usr/lib/x86_64-linux-gnu/libssl.so.3"));
    assert_ne!(chroot_libssl, inode(Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3")));
    let log = t.stderr_now();
    for pid in front.worker_pids().into_iter().chain(back.worker_pids()) {
        let prefix = format!("pid {pid}: TLS probes on ");
        let line = log.lines().find_map(|l| l.split_once(&prefix).map(|(_, p)| p.to_string()));
        let path = line.unwrap_or_else(|| panic!("no TLS probes for worker {pid}:\n{log}"));
        assert_eq!(inode(Path::new(&path)), chroot_libssl, "{path}");
    }
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 3, "{}", summarize(spans));
    let front_span = server_span(spans, "/call/http-client");
    let calls = children(spans, &front_span["span_id"]);
    assert_eq!(calls.len(), 1, "{}", summarize(spans));
    let c = calls[0];
    assert_eq!(attr_str(c, "url.full"), Some(format!("https://127.0.0.1:{bport}/backend/http-client?x=1").as_str()));
    assert_eq!(attr_str(c, "server.address"), Some("127.0.0.1"));
    assert_eq!(attr_u64(c, "http.response.status_code"), Some(201));
    assert_eq!(attr_str(c, "code.function.name"), Some("call_http_client"), "{c}");
    assert_eq!(attr_str(c, "code.file.path"), Some("/app/tls_calls.py"), "{c}");
    let b = server_span(spans, "/backend/http-client");
    assert_eq!(attr_str(b, "url.scheme"), Some("https"));
    assert_eq!(b["parent_span_id"], c["span_id"], "{}", summarize(spans));
}

/// OpenSSL linked statically into the program (tests/apps/tls_static_client.c, built here against
/// Debian's libssl.a): the agent finds SSL_read in the executable's own symbol table. Its one call
/// is a root client span (no request was being served), and the HTTPS Gunicorn's span its child.
#[test]
fn static_openssl_in_the_executable_is_probed() {
    use std::io::{BufRead, BufReader, Write};
    if !require_privileged() {
        return;
    }
    let tls = Fixture::new();
    let exe = tls.dir().join("tls_static_client");
    let out = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(apps_dir().join("tls_static_client.c"))
        .args(["-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic", "-lpthread", "-ldl"])
        .output()
        .expect("cc");
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    let back = tls.https_gunicorn(GunicornOpts::sync(1));
    let bport = back.port();
    let mut client = Command::new(&exe)
        .args([&bport.to_string(), "/backend/static", &tls.cert])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let t = tls.trace(&[client.id(), back.pid()]);
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "HTTP/1.1 201 CREATED");
    assert!(client.wait().unwrap().success());
    wait_for_spans(&t, 2);
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 2, "{}", summarize(spans));
    let c = spans.iter().find(|s| s["kind"] == "client").unwrap_or_else(|| panic!("{}", summarize(spans)));
    assert_eq!(attr_str(c, "url.full"), Some(format!("https://localhost:{bport}/backend/static").as_str()), "{c}");
    assert_eq!(attr_str(c, "server.address"), Some("localhost"));
    assert_eq!(attr_u64(c, "http.response.status_code"), Some(201));
    assert!(c["parent_span_id"].is_null(), "{c}");
    let b = server_span(spans, "/backend/static");
    assert_eq!(attr_str(b, "url.scheme"), Some("https"));
    assert_eq!(b["parent_span_id"], c["span_id"], "{}", summarize(spans));
    let probed = format!("pid {}: TLS probes on /proc/{}/root{}", client.id(), client.id(), exe.display());
    assert!(r.stderr.contains(&probed), "{probed}\n{}", r.stderr);
    assert!(r.stderr.contains(" unparsed_client_connections=0 "), "{}", r.stderr);
}

/// Gunicorn's gthread worker over TLS with keep-alive: the main thread accepts and wraps, pool
/// threads read and write. curl asks three paths on one connection: three https spans, one
/// client port.
#[test]
fn gthread_tls_keep_alive_is_one_span_per_request() {
    if !require_privileged() {
        return;
    }
    let tls = Fixture::new();
    let back = tls.https_gunicorn(GunicornOpts::gthread(1, 2).args(&["--keep-alive", "30"]));
    let t = tls.trace(&[back.pid()]);
    let urls: Vec<String> = (0..3).map(|i| format!("https://127.0.0.1:{}/backend/ka{i}", back.port())).collect();
    let out = Command::new("curl")
        .args(["-sk", "-w", "%{http_code} %{num_connects}\n"])
        .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u.as_str()]))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201 1\n201 0\n201 0\n", "one connection for three requests");
    wait_for_spans(&t, 3);
    let r = t.stop();
    let spans = &r.spans;
    assert_eq!(spans.len(), 3, "{}", summarize(spans));
    let ports: Vec<Option<u64>> = (0..3)
        .map(|i| {
            let s = server_span(spans, &format!("/backend/ka{i}"));
            assert_eq!(attr_str(s, "url.scheme"), Some("https"), "{s}");
            assert_eq!(attr_u64(s, "http.response.status_code"), Some(201), "{s}");
            attr_u64(s, "client.port")
        })
        .collect();
    assert!(ports[0].is_some() && ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    assert!(r.stderr.contains(" malformed_requests=0 "), "{}", r.stderr);
}
