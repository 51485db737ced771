//! Issue 19 end to end: `pytracer profile` on Gunicorn serving tests/apps/profile_app.py, whose
//! routes spend their CPU in known functions (/hash in `hash_loop`, /sort in `sort_rows`) or wait
//! on I/O (/io). Each route's samples fall in its own function, the hot loop's line is exact, an
//! untraced server on the same machine leaves no sample, the SVG parses as SVG, and the pprof
//! file decodes (with the protobuf package, apart from the agent's encoder) with the span ids,
//! trace ids and routes of the spans written next to it.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pytracer_tests::*;
use serde_json::Value;

/// Samples per second per CPU in the tests: above the default so that a few seconds of traffic
/// give every route dozens of samples.
const RATE: &str = "99";
const SAMPLE_SECONDS: u64 = 14;
const TRAFFIC: Duration = Duration::from_secs(9);

struct Profiled {
    /// (frames, root first; count)
    folded: Vec<(Vec<String>, u64)>,
    spans: Vec<Value>,
    pprof: Value,
    svg: PathBuf,
    stderr: String,
    _dir: TempDir,
}

impl Profiled {
    /// Samples whose root (the route) is `root`, as stacks.
    fn rooted_at(&self, root: &str) -> Vec<(&[String], u64)> {
        self.folded.iter().filter(|(f, _)| f[0] == root).map(|(f, n)| (&f[1..], *n)).collect()
    }

    fn count(&self, root: &str) -> u64 {
        self.rooted_at(root).iter().map(|(_, n)| n).sum()
    }

    /// Share of `root`'s samples with a frame of `function` in `file` (any line).
    fn share_in(&self, root: &str, function: &str) -> (u64, u64) {
        let prefix = format!("profile_app:{function}:");
        let rooted = self.rooted_at(root);
        let inside = rooted.iter().filter(|(f, _)| f.iter().any(|x| x.starts_with(&prefix))).map(|(_, n)| n).sum();
        (inside, rooted.iter().map(|(_, n)| n).sum())
    }
}

/// Runs `pytracer profile` on `pids` while `traffic` runs (started once the agent is ready).
fn profile(pids: &[u32], traffic: impl FnOnce()) -> Profiled {
    let dir = TempDir::new("profile").unwrap();
    let out = dir.path().join("out");
    let stderr_path = dir.path().join("stderr.log");
    let mut cmd = Command::new(pytracer_bin());
    cmd.arg("profile");
    for pid in pids {
        cmd.arg("--pid").arg(pid.to_string());
    }
    let mut child = cmd
        .args(["--duration", &SAMPLE_SECONDS.to_string(), "--rate", RATE, "--output"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting pytracer profile");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stderr().lines().any(|l| l.trim_end() == "pytracer: ready") {
        assert!(child.try_wait().unwrap().is_none(), "pytracer profile exited early:\n{}", stderr());
        assert!(Instant::now() < deadline, "pytracer profile not ready:\n{}", stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    traffic();
    let status = child.wait().unwrap();
    let stderr = stderr();
    assert!(status.success(), "pytracer profile: {status}\n{stderr}");
    let folded = std::fs::read_to_string(out.join("profile.folded")).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    let folded = folded
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.split(';').map(str::to_owned).collect(), n.parse().unwrap())
        })
        .collect();
    let spans = parse_jsonl(&std::fs::read_to_string(out.join("spans.jsonl")).unwrap()).unwrap();
    let pprof = decode_pprof(&out.join("profile.pb.gz"));
    Profiled { folded, spans, pprof, svg: out.join("profile.svg"), stderr, _dir: dir }
}

/// The protobuf package's reading of the pprof file (tests/apps/pprof_check.py).
fn decode_pprof(path: &Path) -> Value {
    let py = venv_dir().join("bin/python");
    let out = Command::new(py).arg(apps_dir().join("pprof_check.py")).arg(path).output().unwrap();
    assert!(out.status.success(), "pprof_check: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn svg_root_tag(path: &Path) -> String {
    let py = venv_dir().join("bin/python");
    let out = Command::new(py)
        .args(["-c", "import sys, xml.etree.ElementTree as E; print(E.parse(sys.argv[1]).getroot().tag)"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The line of `marker` in profile_app.py (1-based).
fn marked_line(marker: &str) -> u32 {
    let text = std::fs::read_to_string(apps_dir().join("profile_app.py")).unwrap();
    text.lines().position(|l| l.trim_end().ends_with(marker)).unwrap_or_else(|| panic!("no {marker}")) as u32 + 1
}

/// /hash, /sort and /io in turn, each on its own connection, until TRAFFIC has passed.
fn drive(port: u16) -> HashMap<&'static str, usize> {
    let mut sent = HashMap::new();
    let start = Instant::now();
    while start.elapsed() < TRAFFIC {
        for path in ["/hash", "/sort", "/io"] {
            assert_eq!(get(port, path).status, 200, "{path}");
            *sent.entry(path).or_insert(0) += 1;
        }
    }
    sent
}

/// Everything the issue asks of one interpreter's profile.
fn check(series: &str, p: &Profiled, traced: &[u32], untraced: &[u32]) {
    let what = |s: &str| format!("CPython {series}: {s}\n{}", p.stderr);
    for (root, function) in [("GET /hash", "hash_loop"), ("GET /sort", "sort_rows")] {
        let (inside, all) = p.share_in(root, function);
        assert!(all >= 20, "{}", what(&format!("{root}: only {all} samples")));
        assert!(inside * 10 >= all * 9, "{}", what(&format!("{root}: {inside} of {all} samples in {function}")));
    }
    // Waiting is not CPU: /io's samples are its Flask overhead only.
    let (io, hash) = (p.count("GET /io"), p.count("GET /hash"));
    assert!(io * 5 < hash, "{}", what(&format!("/io has {io} samples against /hash's {hash}")));

    // The hot loop's line is the one most of hash_loop's own samples are on.
    let mut lines: HashMap<&str, u64> = HashMap::new();
    for (frames, n) in p.rooted_at("GET /hash") {
        if let Some(leaf) = frames.last().and_then(|f| f.strip_prefix("profile_app:hash_loop:")) {
            *lines.entry(leaf).or_default() += n;
        }
    }
    let hot = lines.iter().max_by_key(|(_, n)| **n).map(|(l, _)| *l);
    assert_eq!(hot, Some(marked_line("# hot: hash_loop").to_string().as_str()), "{}", what(&format!("{lines:?}")));

    // The pprof samples: their processes, and their labels against the spans.
    let samples = p.pprof["samples"].as_array().unwrap();
    let total: u64 = p.folded.iter().map(|(_, n)| n).sum();
    assert_eq!(samples.len() as u64, total, "{}", what("one pprof sample per folded sample"));
    assert_eq!(p.pprof["sample_type"], serde_json::json!([["samples", "count"], ["cpu", "nanoseconds"]]));
    let pids: HashSet<u64> = samples.iter().map(|s| s["labels"]["pid"].as_u64().unwrap()).collect();
    for pid in untraced {
        assert!(!pids.contains(&u64::from(*pid)), "{}", what(&format!("a sample of untraced pid {pid}")));
    }
    for pid in &pids {
        assert!(traced.contains(&(*pid as u32)), "{}", what(&format!("a sample of pid {pid}, not a traced worker")));
    }
    let by_span: HashMap<&str, &Value> = p.spans.iter().map(|s| (s["span_id"].as_str().unwrap(), s)).collect();
    let mut labelled = 0;
    for s in samples {
        let l = &s["labels"];
        let Some(span_id) = l["span_id"].as_str() else { continue };
        labelled += 1;
        let span = by_span.get(span_id).unwrap_or_else(|| panic!("{}", what(&format!("no span {span_id}"))));
        assert_eq!(l["trace_id"], span["trace_id"], "{}", what(span_id));
        assert_eq!(l["http.route"], span["attributes"]["http.route"], "{}", what(span_id));
    }
    // The pprof frames are the folded ones: /hash's samples are in hash_loop there too.
    let in_hash =
        |s: &Value| s["frames"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("hash_loop:"));
    let hash: Vec<&Value> = samples.iter().filter(|s| s["labels"]["http.route"] == "/hash").collect();
    assert_eq!(
        hash.iter().filter(|s| in_hash(s)).count() as u64,
        p.share_in("GET /hash", "hash_loop").0,
        "{}",
        what("pprof")
    );
    // Each server span says how many samples fell in it, and where most of them were.
    let mut per_span: HashMap<&str, u64> = HashMap::new();
    for s in samples {
        if let Some(id) = s["labels"]["span_id"].as_str() {
            *per_span.entry(id).or_default() += 1;
        }
    }
    for span in p.spans.iter().filter(|s| s["kind"] == "server") {
        let id = span["span_id"].as_str().unwrap();
        let n = attr_u64(span, "pytracer.profile.samples").unwrap_or(0);
        assert_eq!(n, per_span.get(id).copied().unwrap_or(0), "{}", what(&format!("samples on {span}")));
        // A span's few samples may fall on the loop's `for` line more than its body: the
        // function, not the line, is certain.
        if span["attributes"]["http.route"] == "/hash" && n >= 5 {
            let hottest = attr_str(span, "pytracer.profile.hottest_frame").unwrap_or_default();
            assert!(hottest.starts_with("profile_app:hash_loop:"), "{}", what(&format!("{span}")));
        }
    }
    let in_routes = p.count("GET /hash") + p.count("GET /sort") + p.count("GET /io");
    assert_eq!(labelled, in_routes, "{}", what("every sample under a route carries its span"));
    assert!(svg_root_tag(&p.svg).ends_with("svg"), "{}", what("the flame graph is SVG"));
}

/// A traced and an untraced server of the same app, both busy; only the traced one is sampled.
fn profile_on(series: &str, opts: impl Fn() -> GunicornOpts) {
    let g = Gunicorn::start(opts());
    let other = Gunicorn::start(opts());
    let untraced = other.worker_pids();
    let (port, other_port) = (g.port(), other.port());
    let mut sent = HashMap::new();
    let p = profile(&[g.pid()], || {
        std::thread::scope(|s| {
            s.spawn(|| {
                let start = Instant::now();
                while start.elapsed() < TRAFFIC {
                    assert_eq!(get(other_port, "/hash").status, 200);
                }
            });
            sent = drive(port);
        });
    });
    let served: usize = sent.values().sum();
    let server_spans = p.spans.iter().filter(|s| s["kind"] == "server").count();
    assert_eq!(server_spans, served, "CPython {series}: one span per request\n{}", p.stderr);
    let traced: Vec<u32> = g.worker_pids().into_iter().chain([g.pid()]).collect();
    check(series, &p, &traced, &untraced);
}

#[test]
fn per_route_profiles_on_pyenv_3_11() {
    if !require_privileged() {
        return;
    }
    profile_on("3.11", || GunicornOpts::sync(2).app("profile_app:app"));
}

#[test]
fn per_route_profiles_on_every_pyenv_interpreter() {
    if !require_interpreters() {
        return;
    }
    for series in INTERPRETER_SERIES {
        profile_on(series, || GunicornOpts::sync(2).venv(interpreter_venv_dir(series)).app("profile_app:app"));
    }
}

#[test]
fn per_route_profiles_on_debian_static_python() {
    if !require_privileged_debian() {
        return;
    }
    profile_on("3.11 (Debian, static)", || GunicornOpts::sync(2).venv(debian_venv_dir()).app("profile_app:app"));
}

#[test]
fn per_route_profiles_in_debian_chroots() {
    let venvs = [("trixie", "/opt/venv", "3.13"), ("sid", "/opt/venv-3.14", "3.14"), ("sid", "/opt/venv-3.15", "3.15")];
    if !require_chroot_venvs(&venvs.map(|(suite, venv, _)| (suite, venv))) {
        return;
    }
    for (suite, venv, version) in venvs {
        profile_on(&format!("{version} (Debian {suite}, chroot)"), || {
            GunicornOpts::sync(2).chroot(debian_chroot(suite), venv).app("profile_app:app")
        });
    }
}

/// Workers recycled while sampling (`--max-requests 6`: one worker serves about six rounds'
/// worth, then is replaced): the replacements, forked after the agent started, are sampled and
/// joined to their requests like the first worker.
#[test]
fn recycled_workers_are_profiled() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1).app("profile_app:app").args(&["--max-requests", "6"]));
    let first = g.worker_pids();
    let mut sent = HashMap::new();
    let p = profile(&[g.pid()], || sent = drive(g.port()));
    let served: usize = sent.values().sum();
    assert!(served > 12, "enough requests for two recycles: {served}");
    let (inside, all) = p.share_in("GET /hash", "hash_loop");
    assert!(inside * 10 >= all * 9 && all >= 20, "{inside} of {all}\n{}", p.stderr);
    let samples = p.pprof["samples"].as_array().unwrap();
    let workers: HashSet<u64> = samples
        .iter()
        .filter(|s| s["labels"]["http.route"] == "/hash")
        .map(|s| s["labels"]["pid"].as_u64().unwrap())
        .collect();
    let later: Vec<&u64> = workers.iter().filter(|w| !first.contains(&(**w as u32))).collect();
    assert!(!later.is_empty(), "no /hash sample from a worker forked while sampling: {workers:?}\n{}", p.stderr);
    let by_span: HashSet<&str> = p.spans.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    for s in samples {
        if let Some(id) = s["labels"]["span_id"].as_str() {
            assert!(by_span.contains(id), "sample of span {id} with no span\n{}", p.stderr);
        }
    }
}
