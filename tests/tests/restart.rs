//! Restart with nothing lost: the agent is killed (SIGKILL, SIGTERM) under steady load and a new
//! one started. Every request whose first byte is sent after the new agent said it was ready is
//! exactly one span, including those on keep-alive connections and database connections that
//! were opened before the new agent (before any agent) and that it had to adopt. After either
//! signal no program, map or link of the old agent is left in the kernel.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pytracer_tests::*;
use serde_json::Value;

/// How long the load runs around each step: enough for a few hundred requests here.
const STEP: Duration = Duration::from_millis(800);
/// Kernel objects are freed after the last reference goes (RCU): a short wait.
const FREE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request the load sent: its unique number and when its first byte was about to be sent.
struct Sent {
    n: u64,
    at: Instant,
}

/// Client threads sending `GET {prefix}{n}` (n unique) until stopped: on one persistent
/// connection each when `keep_alive`, else on a new connection per request.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(Vec<Sent>, Vec<u16>)>>,
}

impl Load {
    fn start(port: u16, prefix: &'static str, clients: u64, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let threads = (0..clients)
            .map(|_| {
                let (stop, next) = (stop.clone(), next.clone());
                std::thread::spawn(move || {
                    let mut sent = Vec::new();
                    let mut conn = keep_alive.then(|| Conn::open(port));
                    let mut local_ports = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let path = format!("{prefix}{n}");
                        let at = Instant::now();
                        let resp = match conn.as_mut() {
                            Some(c) => {
                                let r = c.send("GET", &path, &[], b"");
                                assert!(!r.closes_connection(), "the server closed a keep-alive connection");
                                local_ports.push(c.local_port());
                                r
                            }
                            None => get(port, &path),
                        };
                        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
                        sent.push(Sent { n, at });
                        // Steady, not saturating: the machine is shared with the agent.
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    (sent, local_ports)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients; every request they sent, and the local port of each keep-alive request.
    fn finish(self) -> (Vec<Sent>, Vec<Vec<u16>>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut ports = Vec::new();
        for t in self.threads {
            let (sent, p) = t.join().expect("a client thread failed");
            all.extend(sent);
            ports.push(p);
        }
        (all, ports)
    }
}

/// Server spans by the number in their path `{prefix}{n}`.
fn spans_by_number<'a>(spans: &'a [Value], prefix: &str) -> HashMap<u64, Vec<&'a Value>> {
    let mut by: HashMap<u64, Vec<&Value>> = HashMap::new();
    for s in spans.iter().filter(|s| s["kind"] == "server") {
        if let Some(n) = span_path(s).and_then(|p| p.strip_prefix(prefix)).and_then(|n| n.parse().ok()) {
            by.entry(n).or_default().push(s);
        }
    }
    by
}

/// Every request sent after `ready` has exactly one span; none has two. Returns how many were
/// sent after `ready`. (Behind uWSGI's HTTP router, a request's router and worker spans are one:
/// a pair of them, one per process, fails here too.)
fn assert_each_once_after(sent: &[Sent], ready: Instant, by: &HashMap<u64, Vec<&Value>>, stderr: &str) -> usize {
    let after: Vec<&Sent> = sent.iter().filter(|s| s.at > ready).collect();
    let missing: Vec<u64> = after.iter().filter(|s| !by.contains_key(&s.n)).map(|s| s.n).collect();
    let twice: Vec<u64> = by.iter().filter(|(_, v)| v.len() > 1).map(|(n, _)| *n).collect();
    let pids = |n: &u64| by[n].iter().map(|s| s["resource"]["process.pid"].to_string()).collect::<Vec<_>>().join("+");
    assert!(
        missing.is_empty() && twice.is_empty(),
        "of {} requests sent after ready: {} missing ({:?}...), {} with more than one span ({:?}..., by pids {:?}); agent: {}",
        after.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)],
        twice.iter().take(3).map(pids).collect::<Vec<_>>(),
        stderr.lines().filter(|l| l.contains("spans=") || l.contains("dropped")).collect::<Vec<_>>().join(" | ")
    );
    after.len()
}

/// Kills `t` with `signal` and checks that the kernel frees every BPF object it held.
fn kill_agent(t: Tracer, signal: libc::c_int) {
    let held = BpfObjects::of(t.pid().expect("agent running"));
    assert!(!held.programs.is_empty() && !held.maps.is_empty(), "the agent holds no BPF objects: {held:?}");
    let (status, stderr) = t.signal_and_wait(signal);
    let status = status.unwrap_or_else(|| panic!("the agent did not exit after signal {signal}:\n{stderr}"));
    if signal == libc::SIGTERM {
        assert!(status.success(), "SIGTERM: the agent exited with {status}:\n{stderr}");
    }
    let mut left = held.still_in_kernel();
    wait_until(FREE_TIMEOUT, || {
        left = held.still_in_kernel();
        left.is_empty()
    });
    assert!(left.is_empty(), "after signal {signal} the kernel still has the agent's {left:?} (of {held:?})");
}

fn metrics_args(port: u16) -> Vec<String> {
    vec!["--metrics-addr".into(), format!("127.0.0.1:{port}")]
}

/// Persistent client connections in the keep-alive tests.
const CLIENTS: u64 = 4;

/// Which server, and which connections it serves.
enum Front {
    /// A Gunicorn gthread worker and the clients' own persistent connections.
    Direct,
    /// The same worker behind nginx's upstream keep-alive connections (the clients keep theirs
    /// to nginx).
    Nginx,
    /// uWSGI's HTTP router with `--http-keepalive`, the clients' persistent connections on it.
    UwsgiRouter,
}

/// A server behind persistent connections: the agent is restarted under load, the new one
/// adopts them, and every request on them after it is ready is one span.
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn keep_alive_restart(signal: libc::c_int, front: &Front) {
    if !require_privileged() {
        return;
    }
    let (g, u) = if matches!(front, Front::UwsgiRouter) {
        (None, Some(Uwsgi::start(UwsgiOpts::http_router(1).args(&["--http-keepalive"]))))
    } else {
        (Some(Gunicorn::start(GunicornOpts::gthread(1, 4).args(&["--keep-alive", "120"]))), None)
    };
    let (pid, port) = match (&g, &u) {
        (Some(g), _) => (g.pid(), g.port()),
        (_, Some(u)) => (u.pid(), u.port()),
        _ => unreachable!(),
    };
    let nginx = matches!(front, Front::Nginx).then(|| Nginx::start_proxy_keepalive(port));
    let old = Tracer::start(&[pid], &[]);
    let load = Load::start(nginx.as_ref().map_or(port, Nginx::port), "/users/", CLIENTS, true);
    std::thread::sleep(STEP);
    kill_agent(old, signal);
    // Requests keep coming with no agent at all.
    std::thread::sleep(STEP / 2);
    let mport = free_port();
    let args = metrics_args(mport);
    let new = Tracer::start(&[pid], &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ready = Instant::now();
    std::thread::sleep(2 * STEP);
    let m = scrape(mport);
    let (sent, ports) = load.finish();
    let r = new.stop();

    for p in &ports {
        assert!(p.windows(2).all(|w| w[0] == w[1]), "each client kept one connection");
    }
    let by = spans_by_number(&r.spans, "/users/");
    let after = assert_each_once_after(&sent, ready, &by, &r.stderr);
    assert!(after >= 20, "only {after} requests were sent after ready");
    println!("{after} requests sent after the new agent was ready: each exactly one span");
    let adopted = sum(&m, "pytracer_connections_adopted_total", &[("side", "accepted")]);
    match front {
        Front::Direct => assert_eq!(adopted, CLIENTS as f64, "the worker's keep-alive connections, adopted"),
        // The clients' connections to the router, and the worker's end of the router's connection
        // for a request in flight at the scan, if one was.
        Front::UwsgiRouter => {
            assert!((CLIENTS as f64..=CLIENTS as f64 + 1.0).contains(&adopted), "{adopted} adopted");
        }
        // nginx opens upstream connections as its load needs, up to one per client at a time.
        Front::Nginx => assert!((1.0..=CLIENTS as f64).contains(&adopted), "{adopted} adopted"),
    }
    let connected = sum(&m, "pytracer_connections_adopted_total", &[("side", "connected")]);
    if matches!(front, Front::UwsgiRouter) {
        // The router's ends of its connections to the worker (one per request) open at the
        // scan: one per client at most, the worker serving one of them at a time.
        assert!(connected <= CLIENTS as f64, "{connected} connected adopted");
    } else {
        assert_eq!(connected, 0.0);
    }
    for s in sent.iter().filter(|s| s.at > ready) {
        assert_eq!(attr_u64(by[&s.n][0], "http.response.status_code"), Some(200));
    }
    if !matches!(front, Front::Nginx) {
        // The adopted connections' spans are whole: the client address is the client's.
        let client_ports: Vec<u64> = ports.iter().map(|p| u64::from(p[0])).collect();
        for s in sent.iter().filter(|s| s.at > ready) {
            let span = by[&s.n][0];
            assert!(client_ports.contains(&attr_u64(span, "client.port").unwrap_or(0)), "{span}");
        }
    }
    assert!(r.stderr.contains("malformed_requests=0 "), "nothing parsed from a request's middle: {}", r.stderr);
}

#[test]
fn keep_alive_connections_after_a_sigkill_restart() {
    keep_alive_restart(libc::SIGKILL, &Front::Direct);
}

#[test]
fn keep_alive_connections_after_a_sigterm_restart() {
    keep_alive_restart(libc::SIGTERM, &Front::Direct);
}

#[test]
fn uwsgi_router_keep_alive_after_a_sigkill_restart() {
    if !require_uwsgi() {
        return;
    }
    keep_alive_restart(libc::SIGKILL, &Front::UwsgiRouter);
}

#[test]
fn nginx_upstream_keep_alive_after_a_sigkill_restart() {
    if !require_privileged_nginx() {
        return;
    }
    keep_alive_restart(libc::SIGKILL, &Front::Nginx);
}

/// A Gunicorn sync worker whose PostgreSQL (over TCP and over its unix socket), Redis and
/// keep-alive HTTP connections were opened at its boot, before any agent: after a restart, each
/// request after ready is one server span with exactly its two PostgreSQL, one Redis and one
/// HTTP exit spans under it.
#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn pooled_database_connections_opened_at_boot_after_a_restart() {
    if !require_privileged_two_services() {
        return;
    }
    let (pg, redis) = (Postgres::start(), Redis::start());
    // The other service the app keeps an HTTP connection to (not traced).
    let backend = Gunicorn::start(GunicornOpts::gthread(1, 2).args(&["--keep-alive", "120"]));
    let opts = GunicornOpts { app: "pooled:app".into(), ..GunicornOpts::sync(1) }
        .env("PYTRACER_BACKEND_PORT", backend.port().to_string())
        .env("PYTRACER_PG_DSN", pg.dsn())
        .env("PYTRACER_PG_UNIX_DSN", pg.unix_dsn())
        .env("PYTRACER_REDIS_URL", redis.url());
    let g = Gunicorn::start(opts);
    let load = Load::start(g.port(), "/pooled/", 1, false);
    std::thread::sleep(STEP);
    let old = Tracer::start(&[g.pid()], &[]);
    std::thread::sleep(STEP);
    kill_agent(old, libc::SIGKILL);
    let mport = free_port();
    let args = metrics_args(mport);
    let new = Tracer::start(&[g.pid()], &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ready = Instant::now();
    std::thread::sleep(2 * STEP);
    let m = scrape(mport);
    let (sent, _) = load.finish();
    let r = new.stop();

    let by = spans_by_number(&r.spans, "/pooled/");
    let after = assert_each_once_after(&sent, ready, &by, &r.stderr);
    assert!(after >= 20, "only {after} requests were sent after ready");
    println!("{after} requests sent after the new agent was ready: each one span with its four exit spans");
    assert_eq!(
        sum(&m, "pytracer_connections_adopted_total", &[("side", "connected")]),
        4.0,
        "the worker's two PostgreSQL connections (TCP, unix), its Redis and its HTTP ones, adopted"
    );
    for s in sent.iter().filter(|s| s.at > ready) {
        let server = by[&s.n][0];
        let children: Vec<&Value> =
            r.spans.iter().filter(|c| c["parent_span_id"] == server["span_id"] && c["kind"] == "client").collect();
        let system = |c: &&Value| attr_str(c, "db.system.name").unwrap_or("http").to_string();
        let mut systems: Vec<String> = children.iter().map(system).collect();
        systems.sort();
        assert_eq!(
            systems,
            ["http", "postgresql", "postgresql", "redis"],
            "the exit spans of /pooled/{}: {children:?}",
            s.n
        );
        let call = children.iter().find(|c| system(c) == "http").unwrap();
        assert_eq!(
            attr_str(call, "url.full"),
            Some(format!("http://127.0.0.1:{}/users/{}", backend.port(), s.n).as_str())
        );
        assert_eq!(attr_u64(call, "http.response.status_code"), Some(200));
        let mut queries: Vec<&str> = children
            .iter()
            .filter(|c| system(c) == "postgresql")
            .filter_map(|c| attr_str(c, "db.query.text"))
            .collect();
        queries.sort_unstable();
        assert_eq!(queries, ["SELECT count(*) FROM items", "SELECT name FROM items WHERE id = ?"]);
        let redis_span = children.iter().find(|c| system(c) == "redis").unwrap();
        assert_eq!(attr_str(redis_span, "db.operation.name"), Some("GET"));
    }
}

/// Reads one response off `s`: its head and a `Content-Length` body, as raw bytes.
fn read_raw_response(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return buf;
            }
        }
        let n = s.read(&mut chunk).expect("reading the response");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request read before the agent attached and answered after it was ready: its response is
/// skipped and counted to the byte, and the next request on the same connection is one span.
#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn a_response_in_flight_at_attach_is_skipped_and_counted() {
    use std::io::Write;
    // Longer than the agent takes to be ready here (about 1 s), by far.
    const SLEEP_MS: u64 = 5_000;
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(1, 2).args(&["--keep-alive", "120"]));
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", g.port())).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let sent = Instant::now();
    sock.write_all(&build_request(g.port(), "GET", &format!("/sleep/{SLEEP_MS}"), &[], b"")).unwrap();
    // The worker reads the request at once, before the agent is there.
    std::thread::sleep(Duration::from_millis(300));
    let mport = free_port();
    let args = metrics_args(mport);
    let tracer = Tracer::start(&[g.pid()], &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(sent.elapsed() < Duration::from_millis(SLEEP_MS), "the agent was ready only after the response");
    let in_flight = read_raw_response(&mut sock);
    assert!(in_flight.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&in_flight));
    sock.write_all(&build_request(g.port(), "GET", "/users/77", &[], b"")).unwrap();
    let next = read_raw_response(&mut sock);
    assert!(next.starts_with(b"HTTP/1.1 200 "));
    // The counters are synced once a second.
    let skipped = |what: &str| sum(&scrape(mport), what, &[("side", "accepted")]);
    let want = in_flight.len() as f64;
    wait_until(Duration::from_secs(5), || skipped("pytracer_adopted_skipped_bytes_total") == want);
    let m = scrape(mport);
    let r = tracer.stop();

    assert_eq!(sum(&m, "pytracer_connections_adopted_total", &[("side", "accepted")]), 1.0);
    assert_eq!(sum(&m, "pytracer_adopted_skipped_bytes_total", &[("side", "accepted")]), want, "the whole response");
    let records = sum(&m, "pytracer_adopted_skipped_records_total", &[("side", "accepted")]);
    assert_eq!(records, 2.0, "Gunicorn writes a response's head, then its body");
    let servers: Vec<&Value> = r.spans.iter().filter(|span| span["kind"] == "server").collect();
    assert_eq!(servers.len(), 1, "only the request after ready: {servers:?}");
    assert_eq!(span_path(servers[0]), Some("/users/77"));
    assert!(
        r.stderr.contains("unmatched_responses=0 "),
        "the response in flight was skipped, not parsed: {}",
        r.stderr
    );
}
