//! The configurations compared, each a Gunicorn (2 sync workers) serving bench/apps/benchapp.py
//! with or without a tracer, and how to start, count and stop them.
use std::{
    fs,
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{paths, supervised::Supervised};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    /// Untraced.
    A,
    /// pytracer attached by pid: wire spans only.
    B,
    /// pytracer as deployed: `run` with discovery, every probe it has.
    C,
    /// OpenTelemetry Python auto-instrumentation, OTLP/HTTP to a local counting sink.
    D,
    /// The Instana Python sensor in-process, reporting to a local stub host agent.
    E,
    /// C plus the opt-in GIL-wait probe.
    F,
    /// C with the frame-evaluation stack walk always on (opt-in; C opens it in sampled windows).
    G,
}

impl Config {
    pub const ALL: [Config; 7] = [Config::A, Config::B, Config::C, Config::D, Config::E, Config::F, Config::G];

    pub fn label(self) -> &'static str {
        match self {
            Config::A => "A untraced",
            Config::B => "B pytracer wire-only",
            Config::C => "C pytracer all probes",
            Config::D => "D OpenTelemetry auto-instr.",
            Config::E => "E Instana sensor",
            Config::F => "F pytracer + GIL wait (opt-in)",
            Config::G => "G pytracer + frame-eval always (opt-in)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Config::A => "A",
            Config::B => "B",
            Config::C => "C",
            Config::D => "D",
            Config::E => "E",
            Config::F => "F",
            Config::G => "G",
        }
    }
}

/// What a configuration reported when it was stopped.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Spans the tracer delivered (pytracer's output lines, or the sink's server-span count).
    pub spans: Option<u64>,
    /// pytracer only: its CPU seconds and peak resident memory.
    pub agent_cpu_s: Option<f64>,
    pub agent_peak_rss_kib: Option<u64>,
    /// pytracer only: the kernel-side drop counters from its exit summary.
    pub kernel_drops: Option<u64>,
    /// `pytracer run` only (from its /metrics): kernel records received, GC-pause probe hits,
    /// GIL-wait probe hits.
    pub probe_hits: Option<ProbeHits>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeHits {
    pub events: f64,
    pub gc_pauses: f64,
    pub gil_waits: f64,
    /// Python stacks walked (frame-evaluation hits while the probe is attached).
    pub stacks: f64,
}

pub struct Running {
    pub config: Config,
    pub port: u16,
    gunicorn: Supervised,
    pytracer: Option<(Supervised, PathBuf, PathBuf)>,
    /// The agent's /metrics port (`run` configurations).
    metrics_port: Option<u16>,
    sink: Option<(Supervised, u16)>,
    /// Requests sent before the measured load; their spans count too.
    pub warm_up_requests: u64,
    _dir: TempDir,
}

pub struct Env {
    pub venv: PathBuf,
    pub pytracer: PathBuf,
}

pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(super) fn bench_dir() -> PathBuf {
    paths::repo_root().join("bench")
}

pub fn start(config: Config, env: &Env) -> Result<Running> {
    let dir = TempDir::new()?;
    let port = free_port()?;
    let sink = match config {
        Config::D => Some(start_sink("otlp-sink", "otlp_sink.py", env, dir.path())?),
        Config::E => Some(start_sink("instana-agent-stub", "instana_agent_stub.py", env, dir.path())?),
        _ => None,
    };
    let sink_port = sink.as_ref().map(|s| s.1);
    let gunicorn = start_gunicorn(config, env, port, sink_port, dir.path())?;
    wait_for_port(port, &gunicorn, Duration::from_secs(30))?;
    let mut metrics_port = None;
    let pytracer = match config {
        Config::B => Some(start_pytracer(
            env,
            &["trace", "--frame-eval", "off", "--pid", &gunicorn.pid().to_string()],
            dir.path(),
        )?),
        Config::C | Config::F | Config::G => {
            // Discovery limited to this app's Gunicorn: its `--bind` argument, which neither stray
            // Gunicorns nor wrk (whose command line holds the URL) have.
            let cfg = dir.path().join("pytracer.yaml");
            let mport = free_port()?;
            metrics_port = Some(mport);
            let frame_eval = if config == Config::G { "always" } else { "sampled" };
            fs::write(&cfg, agent_config(&format!("--bind 127.0.0.1:{port}"), mport, config == Config::F, frame_eval))?;
            Some(start_pytracer(env, &["run", "--config", cfg.to_str().unwrap()], dir.path())?)
        }
        _ => None,
    };
    let mut running = Running { config, port, gunicorn, pytracer, metrics_port, sink, warm_up_requests: 0, _dir: dir };
    running.warm_up()?;
    Ok(running)
}

/// `pytracer run`'s configuration: discovery limited to command lines holding `whitelist`, the
/// metrics port, and the CPython probes (the defaults are `gil_wait: false`, `mode: sampled`).
fn agent_config(whitelist: &str, metrics_port: u16, gil_wait: bool, frame_eval: &str) -> String {
    format!(
        "discovery:\n  whitelist: [\"{whitelist}\"]\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\ncpython:\n  gil_wait: {gil_wait}\n  frame_eval:\n    mode: {frame_eval}\n"
    )
}

/// pytracer as deployed (C's configuration) with a whitelist no process matches: every probe
/// system-wide is attached, but nothing is tracked, so what it costs a server is the share every
/// process on the machine pays.
pub struct IdleAgent {
    agent: Supervised,
    _dir: TempDir,
}

pub fn start_idle_agent(env: &Env) -> Result<IdleAgent> {
    let dir = TempDir::new()?;
    let cfg = dir.path().join("pytracer.yaml");
    fs::write(&cfg, agent_config("--bind no-such-address", free_port()?, false, "sampled"))?;
    let (agent, _, _) = start_pytracer(env, &["run", "--config", cfg.to_str().unwrap()], dir.path())?;
    Ok(IdleAgent { agent, _dir: dir })
}

impl IdleAgent {
    pub fn pid(&self) -> u32 {
        self.agent.pid()
    }

    pub fn stop(mut self) -> Result<()> {
        let status = self.agent.stop()?;
        if !status.success() {
            bail!("the idle pytracer exited with {status}");
        }
        Ok(())
    }
}

impl Running {
    /// A few requests per route so that imports and first-request work are out of the numbers,
    /// and (for E) the sensor has announced before load starts.
    fn warm_up(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for route in super::ROUTES {
            for _ in 0..5 {
                get(self.port, route)?;
                self.warm_up_requests += 1;
            }
        }
        if self.config == Config::E {
            // The sensor drops spans recorded before its process announced: wait until the master
            // and both workers have announced and spans arrive.
            while self.sink_count()?.unwrap_or(0) == 0 || self.announced()? < 3 {
                if Instant::now() > deadline {
                    bail!("the Instana sensor did not report to the stub agent within 30s");
                }
                get(self.port, "/")?;
                self.warm_up_requests += 1;
                thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(())
    }

    /// The sink's count once it has stopped growing for a second (or after 10 s).
    fn settled_sink_count(&self) -> Result<Option<u64>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = self.sink_count()?;
        loop {
            thread::sleep(Duration::from_secs(1));
            let now = self.sink_count()?;
            if now == last || Instant::now() > deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    /// Processes the Instana stub agent has seen announce.
    fn announced(&self) -> Result<usize> {
        let Some((_, port)) = &self.sink else { return Ok(0) };
        let v: serde_json::Value = serde_json::from_str(&get(*port, "/count")?)?;
        Ok(v["ready_pids"].as_array().map_or(0, Vec::len))
    }

    fn sink_count(&self) -> Result<Option<u64>> {
        let Some((_, port)) = &self.sink else { return Ok(None) };
        let body = get(*port, "/count")?;
        let v: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("sink /count said {body}"))?;
        Ok(v["server_spans"].as_u64())
    }

    /// Gunicorn's master and its workers.
    pub fn server_pids(&self) -> Vec<u32> {
        let master = self.gunicorn.pid();
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        std::iter::once(master).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect()
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.pytracer.as_ref().map(|(p, _, _)| p.pid())
    }

    /// The processes serving the server besides itself: pytracer, or an in-process agent's sink.
    pub fn helper_pids(&self) -> Vec<u32> {
        self.agent_pid().into_iter().chain(self.sink.as_ref().map(|(s, _)| s.pid())).collect()
    }

    /// pytracer's own CPU seconds so far and its peak RSS.
    pub fn agent_usage(&self) -> (Option<f64>, Option<u64>) {
        let Some((p, _, _)) = &self.pytracer else { return (None, None) };
        let pid = p.pid();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let cpu = (fields.len() > 13)
            .then(|| (fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0)) / ticks);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        (cpu, hwm)
    }

    /// Sums of the agent's own counters, scraped from its /metrics.
    fn probe_hits(&self) -> Result<Option<ProbeHits>> {
        let Some(port) = self.metrics_port else { return Ok(None) };
        // The agent samples once a second; let the last second land.
        thread::sleep(Duration::from_millis(1200));
        let text = get(port, "/metrics")?;
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        };
        Ok(Some(ProbeHits {
            events: sum("pytracer_events_received_total"),
            gc_pauses: sum("cpython_gc_pause_seconds_count"),
            gil_waits: sum("cpython_gil_wait_seconds_count"),
            stacks: sum("pytracer_python_stacks_total"),
        }))
    }

    pub fn stop(mut self) -> Result<Counts> {
        let (agent_cpu_s, agent_peak_rss_kib) = self.agent_usage();
        let probe_hits = self.probe_hits()?;
        let mut counts = Counts { agent_cpu_s, agent_peak_rss_kib, probe_hits, ..Default::default() };
        if let Some((mut p, out, err)) = self.pytracer.take() {
            let status = p.stop()?;
            let stderr = fs::read_to_string(&err).unwrap_or_default();
            if !status.success() {
                bail!("pytracer exited with {status}:\n{stderr}");
            }
            counts.spans = Some(count_lines(&out));
            counts.kernel_drops = Some(kernel_drops(&stderr));
        }
        // OpenTelemetry flushes its last batch when the workers exit; the Instana sensor has no
        // flush at exit and reports every second, so its count settles while the app still runs.
        if self.config == Config::E {
            counts.spans = self.settled_sink_count()?;
        }
        self.gunicorn.stop()?;
        if self.config == Config::D {
            counts.spans = self.settled_sink_count()?;
        }
        if let Some((mut s, _)) = self.sink.take() {
            s.stop()?;
        }
        Ok(counts)
    }
}

/// Sum of the `kernel_dropped[...]` counters in pytracer's exit summary that can cost a span:
/// `stack_throttled` (Python stacks held back in a frame-evaluation window) only costs a
/// handler name, and is reported apart.
pub fn kernel_drops(stderr: &str) -> u64 {
    let Some(line) = stderr.lines().rev().find(|l| l.contains("kernel_dropped[")) else { return 0 };
    let inner = line.split("kernel_dropped[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    inner
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k != "stack_throttled")
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

#[expect(clippy::naive_bytecount, reason = "a line count of one small result file needs no extra crate")]
fn count_lines(path: &Path) -> u64 {
    fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

fn start_gunicorn(config: Config, env: &Env, port: u16, sink: Option<u16>, dir: &Path) -> Result<Supervised> {
    let bin = env.venv.join("bin");
    let gunicorn_args = [
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--chdir",
        bench_dir().join("apps").to_str().unwrap(),
        "--no-control-socket",
        "benchapp:app",
    ]
    .map(String::from);
    let mut cmd = match config {
        Config::D => {
            let mut c = Command::new(bin.join("opentelemetry-instrument"));
            c.args([
                "--traces_exporter",
                "otlp",
                "--metrics_exporter",
                "none",
                "--logs_exporter",
                "none",
                "--service_name",
                "benchapp",
            ])
            .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("http://127.0.0.1:{}/v1/traces", sink.unwrap()))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .arg(bin.join("gunicorn"));
            c
        }
        Config::E => {
            let mut c = Command::new(bin.join("gunicorn"));
            c.env("AUTOWRAPT_BOOTSTRAP", "instana")
                .env("INSTANA_AGENT_HOST", "127.0.0.1")
                .env("INSTANA_AGENT_PORT", sink.unwrap().to_string())
                .env("INSTANA_SERVICE_NAME", "benchapp");
            c
        }
        _ => Command::new(bin.join("gunicorn")),
    };
    cmd.args(gunicorn_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("gunicorn.log"))?)
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("cannot start gunicorn for {}", config.label()))?;
    Ok(Supervised::new("gunicorn", child, libc::SIGTERM))
}

fn start_sink(name: &'static str, script: &str, env: &Env, dir: &Path) -> Result<(Supervised, u16)> {
    let port = free_port()?;
    let child = Command::new(env.venv.join("bin/python"))
        .arg(bench_dir().join(script))
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join(format!("{name}.log")))?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {script}"))?;
    let sink = Supervised::new(name, child, libc::SIGTERM);
    wait_for_port(port, &sink, Duration::from_secs(20))?;
    Ok((sink, port))
}

pub(super) fn start_pytracer(env: &Env, args: &[&str], dir: &Path) -> Result<(Supervised, PathBuf, PathBuf)> {
    let out = dir.join("spans.jsonl");
    let err = dir.join("pytracer.err");
    let child = Command::new(&env.pytracer)
        .args(args)
        .arg("--output")
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(fs::File::create(&err)?)
        .process_group(0)
        .spawn()
        .context("cannot start pytracer")?;
    let p = Supervised::new("pytracer", child, libc::SIGINT);
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let text = fs::read_to_string(&err).unwrap_or_default();
        if text.lines().any(|l| l == "pytracer: ready") {
            // `run` discovers on its first scan, before "ready".
            return Ok((p, out, err));
        }
        if Instant::now() > deadline {
            bail!("pytracer did not get ready in 60s:\n{text}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn wait_for_port(port: u16, owner: &Supervised, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("{} did not listen on port {port} within {}s", owner.name, timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A plain GET on its own connection; returns the body.
pub(super) fn get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut resp = Vec::new();
    BufReader::new(&mut s).read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let mut lines = text.lines();
    let status = lines.next().unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("GET {path} on port {port}: {status}");
    }
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// A scratch directory for one configuration's logs, removed afterwards.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<TempDir> {
        let base = std::env::temp_dir().join(format!("pytracer-bench-{}-{}", std::process::id(), rand_suffix()));
        fs::create_dir_all(&base)?;
        Ok(TempDir(base))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
