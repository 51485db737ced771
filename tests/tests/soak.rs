//! The soak (issue 15), run by `cargo xtask soak --minutes N` (ignored otherwise: it is long).
//!
//! Mixed load for N minutes against traced Gunicorns found by `pytracer run`: a frontend
//! (gthread, keep-alive connections) calling a backend that queries PostgreSQL and Redis, both
//! recycling workers (`--max-requests`); the test app with a request per connection, errors (500,
//! 404), large bodies and slow clients; and every 20 s a Gunicorn that starts, serves and exits.
//! Every request carries its own `soak=N` query. Each minute the agent's RSS, open fds and its
//! kernel maps' entries are sampled. At the end: every request answered is exactly one server
//! span (asserted), the slopes of those samples over the run after its first minute, and the
//! agent's drops by reason, written to bench/out/soak.md and printed.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pytracer_tests::*;

/// In every soak Gunicorn's command line (as `-e PYTRACER_SOAK=1`): what discovery looks for.
const MARK: &str = "PYTRACER_SOAK=1";

/// Request ids sent and answered, by the port that answered them.
#[derive(Default)]
struct Sent {
    answered: Mutex<BTreeMap<u64, u16>>,
    failed: AtomicU64,
    next: AtomicU64,
}

impl Sent {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn done(&self, id: u64, port: u16, ok: bool) {
        if ok {
            self.answered.lock().unwrap().insert(id, port);
        } else {
            // A worker recycled under it, say: no answer, so no span is owed.
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn soak_opts(base: GunicornOpts) -> GunicornOpts {
    base.args(&["-e", MARK, "--max-requests", "300", "--max-requests-jitter", "50"])
}

/// One sample of the agent.
#[derive(Debug, Clone)]
struct Sample {
    minute: f64,
    rss_kib: f64,
    fds: f64,
    map_entries: BTreeMap<String, f64>,
}

fn agent_sample(pid: u32, start: Instant) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count) as f64;
    Sample { minute: start.elapsed().as_secs_f64() / 60.0, rss_kib, fds, map_entries: map_entries(pid) }
}

/// Entries of each hash map the agent holds (bpftool, by the map ids in its fds' fdinfo).
fn map_entries(pid: u32) -> BTreeMap<String, f64> {
    let mut ids = std::collections::BTreeSet::new();
    for f in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten() {
        let info = std::fs::read_to_string(f.path()).unwrap_or_default();
        // Hash maps (plain, per-CPU, LRU, LRU per-CPU): the ones that grow with what is traced.
        let map_type =
            info.lines().find_map(|l| l.strip_prefix("map_type:")).and_then(|t| t.trim().parse::<u32>().ok());
        let hash = matches!(map_type, Some(1 | 5 | 9 | 10));
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")).map(str::trim) {
            if hash {
                ids.insert(id.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    for id in ids {
        let Ok(o) = std::process::Command::new("bpftool").args(["map", "dump", "id", &id, "--json"]).output() else {
            continue;
        };
        let entries =
            serde_json::from_slice::<serde_json::Value>(&o.stdout).ok().and_then(|v| v.as_array().map(Vec::len));
        let name = std::process::Command::new("bpftool")
            .args(["map", "show", "id", &id, "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["name"].as_str().map(String::from))
            .unwrap_or(id);
        if let Some(n) = entries {
            out.insert(name, n as f64);
        }
    }
    out
}

/// Least-squares slope of y over x (per minute).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn soak_id(span: &serde_json::Value) -> Option<u64> {
    let q = span["attributes"]["url.query"].as_str()?;
    q.split('&').find_map(|kv| kv.strip_prefix("soak=")).and_then(|v| v.parse().ok())
}

/// The figures, as markdown.
fn report(
    minutes: f64,
    sent: &Sent,
    seen: &BTreeMap<u64, usize>,
    (lost, twice): (&[u64], &[u64]),
    samples: &[Sample],
    drops: &BTreeMap<String, f64>,
) -> String {
    let answered = sent.answered.lock().unwrap().len();
    let after_first: Vec<&Sample> = samples.iter().filter(|s| s.minute >= 1.0).collect();
    let series = |f: &dyn Fn(&Sample) -> f64| after_first.iter().map(|s| (s.minute, f(s))).collect::<Vec<_>>();
    let mut report = String::new();
    let _ = writeln!(report, "# Soak: {minutes} minutes\n");
    let _ = writeln!(
        report,
        "Requests answered: {}; not answered (no span owed): {}; server spans of them: {}; lost: {}; twice: {}.\n",
        answered,
        sent.failed.load(Ordering::Relaxed),
        seen.len(),
        lost.len(),
        twice.len()
    );
    let _ = writeln!(report, "| series | first | last | slope per minute (after minute 1) |\n|---|---|---|---|");
    let first = &samples[0];
    let last = samples.last().unwrap();
    let _ = writeln!(
        report,
        "| agent RSS KiB | {} | {} | {:+.1} |",
        first.rss_kib,
        last.rss_kib,
        slope(&series(&|s| s.rss_kib))
    );
    let _ = writeln!(report, "| agent fds | {} | {} | {:+.2} |", first.fds, last.fds, slope(&series(&|s| s.fds)));
    for (name, n) in &last.map_entries {
        let points = series(&|s| s.map_entries.get(name).copied().unwrap_or(0.0));
        let _ = writeln!(
            report,
            "| map `{name}` entries | {} | {n} | {:+.2} |",
            first.map_entries.get(name).copied().unwrap_or(0.0),
            slope(&points)
        );
    }
    let _ = writeln!(report, "\nDrops by reason: {drops:?}");
    let _ = writeln!(report, "\nSamples: {samples:?}");
    report
}

/// The clients, until `stop`: two keep-alive clients of the frontend, the test app's mixed
/// client, and the Gunicorn that comes and goes.
fn start_load(
    sent: &Arc<Sent>,
    stop: &Arc<AtomicBool>,
    (frontend, app): (u16, u16),
    agent_stderr: &std::path::Path,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut workers = Vec::new();
    // Keep-alive clients of the frontend (its calls go to the backend, PostgreSQL and Redis).
    for _ in 0..2 {
        let (sent, stop, port) = (sent.clone(), stop.clone(), frontend);
        workers.push(std::thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                let id = sent.id();
                let Ok(c) = conn.take().map_or_else(|| Conn::try_open(port), Ok) else {
                    sent.done(id, port, false);
                    continue;
                };
                let c = conn.insert(c);
                let r = c.try_send("GET", &format!("/order/{}?soak={id}", id % 3 + 1), &[], b"");
                let ok = r.as_ref().is_ok_and(|r| r.status == 200);
                let close = r
                    .as_ref()
                    .map_or(true, |r| r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")));
                sent.done(id, port, ok);
                if close || !ok {
                    conn = None;
                }
            }
        }));
    }
    // The test app: a connection per request, errors, large bodies, slow clients.
    {
        let (sent, stop, port) = (sent.clone(), stop.clone(), app);
        workers.push(std::thread::spawn(move || {
            let big = vec![b'x'; 256 * 1024];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = sent.id();
                let (method, path, body, want): (&str, String, &[u8], u16) = match n % 10 {
                    0 => ("GET", format!("/fail?soak={id}"), b"", 500),
                    1 => ("GET", format!("/nope?soak={id}"), b"", 404),
                    2 => ("POST", format!("/upload?soak={id}"), &big, 200),
                    _ => ("GET", format!("/users/{n}?soak={id}"), b"", 200),
                };
                let r = Conn::try_open(port).and_then(|mut c| {
                    if n % 10 == 3 {
                        // A slow client: its head in three writes 100 ms apart.
                        let req = build_request(port, method, &path, &[("Connection", "close")], body);
                        let third = req.len() / 3;
                        for part in [&req[..third], &req[third..2 * third], &req[2 * third..]] {
                            c.send_raw(part);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        c.try_read_response()
                    } else {
                        c.try_send(method, &path, &[("Connection", "close")], body)
                    }
                });
                sent.done(id, port, r.is_ok_and(|r| r.status == want));
            }
        }));
    }
    // Processes that start and exit: a Gunicorn every 20 s, 20 requests, stopped.
    {
        let (sent, stop, stderr) = (sent.clone(), stop.clone(), agent_stderr.to_path_buf());
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = Gunicorn::start(soak_opts(GunicornOpts::sync(1)));
                // Requests before discovery finds it are not the agent's to see: none is sent
                // until the agent says it traces the new master (its rescan interval is 0.5 s,
                // but a loaded machine can hold a scan back by seconds).
                let traced = format!("tracing pid {} ", g.pid());
                let found = wait_until(Duration::from_secs(30), || {
                    std::fs::read_to_string(&stderr).is_ok_and(|e| e.contains(&traced))
                });
                assert!(found, "the agent never traced the new Gunicorn {}", g.pid());
                for _ in 0..20 {
                    let id = sent.id();
                    let r = Conn::try_open(g.port()).and_then(|mut c| {
                        c.try_send("GET", &format!("/hello?soak={id}"), &[("Connection", "close")], b"")
                    });
                    sent.done(id, g.port(), r.is_ok_and(|r| r.status == 200));
                }
                drop(g);
                for _ in 0..18 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }));
    }
    workers
}

#[test]
#[ignore = "long: run by `cargo xtask soak --minutes N`"]
fn soak() {
    if !require_privileged_two_services() {
        return;
    }
    let minutes: f64 = std::env::var("PYTRACER_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(2.0);
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let pg = Postgres::start();
    let redis = Redis::start();
    let backend = Gunicorn::start(soak_opts(backend_opts(&GunicornOpts::sync(2), &pg, &redis)));
    let frontend = Gunicorn::start(soak_opts(frontend_opts(&GunicornOpts::gthread(2, 4), backend.port())));
    let app = Gunicorn::start(soak_opts(GunicornOpts::sync(2)));
    let dir = TempDir::new("soak").unwrap();
    let config = dir.path().join("pytracer.yaml");
    let mport = free_port();
    std::fs::write(&config, format!("discovery:\n  whitelist: [\"{MARK}\"]\n  rescan_interval_seconds: 0.5\nmetrics:\n  listen: 127.0.0.1:{mport}\n")).unwrap();
    let tracer = Tracer::run(&config, &[]);
    let agent = tracer.pid().unwrap();

    let sent = Arc::new(Sent::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers = start_load(&sent, &stop, (frontend.port(), app.port()), tracer.stderr_path());
    let mut samples = vec![agent_sample(agent, start)];
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_mins(1).min(duration.saturating_sub(start.elapsed())));
        samples.push(agent_sample(agent, start));
        eprintln!(
            "soak: {:.1} min, {} requests answered, agent RSS {} KiB, {} fds",
            samples.last().unwrap().minute,
            sent.answered.lock().unwrap().len(),
            samples.last().unwrap().rss_kib,
            samples.last().unwrap().fds
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // The last spans settle (a response's end is seen at its close), then the drops are read.
    std::thread::sleep(Duration::from_secs(2));
    let metrics = scrape(mport);
    let drops: BTreeMap<String, f64> = metrics
        .iter()
        .filter(|l| l.name == "pytracer_events_dropped_total")
        .map(|l| (l.labels.get("reason").cloned().unwrap_or_default(), l.value))
        .collect();
    let result = tracer.stop();

    let answered = sent.answered.lock().unwrap().clone();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for s in result.spans.iter().filter(|s| s["kind"] == "server") {
        if let Some(id) = soak_id(s) {
            *seen.entry(id).or_default() += 1;
        }
    }
    let lost: Vec<u64> = answered.keys().filter(|id| !seen.contains_key(id)).copied().collect();
    let twice: Vec<u64> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();

    let report = report(minutes, &sent, &seen, (&lost, &twice), &samples, &drops);
    let out = workspace_root().join("bench/out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("soak.md"), &report).unwrap();
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(lost.is_empty() && twice.is_empty(), "lost {lost:?}, twice {twice:?}\n{report}");
    assert!(answered.len() > 100, "{report}");
}
