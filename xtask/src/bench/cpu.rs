//! CPU per request at a fixed rate well below saturation: the measurement that resolves a 2%
//! cost, where saturated throughput on this nested VM swings by 30% between rounds.
//!
//! The server (Gunicorn's master and workers) is pinned to CPU 0, the load generator (a thread of
//! this process, one request per connection as Gunicorn's sync workers serve them) and the agent
//! to CPU 1, so that the server's CPU is what it spends on requests. Per request, from exact
//! counters: the server's on-CPU time (`/proc/PID/task/*/schedstat`, ns) split into user and
//! system by its tick counts; the agent's on-CPU time; the kernel programs' run time
//! (`kernel.bpf_stats_enabled`, each program's `run_time_ns` and `run_cnt` from bpftool, for
//! the programs the agent holds), which
//! is part of the server's system time, as the tracepoints run in its context; and the machine's
//! interrupt and softirq time from /proc/stat. Configurations alternate within each round and
//! every figure is reported as the median of the rounds with [min–max]; the cost against A is
//! the median of each round's own ratio, so drifts between rounds cancel.
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::configs::{self, Config, Env, Running};

/// The server's CPU, the agent's on the other one (with the load generator).
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

#[derive(Debug, Clone)]
pub struct Options {
    pub configs: Vec<Config>,
    pub routes: Vec<&'static str>,
    pub rounds: u32,
    pub seconds: u64,
    /// Requests per second sent.
    pub rate: u32,
}

/// One configuration's run on one route in one round, per request.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    pub requests: u64,
    pub server_user_us: f64,
    pub server_system_us: f64,
    pub agent_us: f64,
    /// Included in `server_system_us`.
    pub programs_us: f64,
    /// Each program's (runs per request, ns per run).
    pub programs: BTreeMap<String, (f64, f64)>,
    /// The whole machine's interrupt and softirq time (the loopback's packets among it).
    pub irq_us: f64,
}

impl CpuSample {
    /// Server and agent: what the traced app's host pays per request.
    pub fn total_us(&self) -> f64 {
        self.server_user_us + self.server_system_us + self.agent_us
    }
}

pub struct Measured {
    pub opts: Options,
    /// (route, config) → one sample per round.
    pub samples: BTreeMap<(&'static str, Config), Vec<CpuSample>>,
}

pub fn measure(env: &Env, opts: &Options) -> Result<Measured> {
    let _stats = BpfStats::enable()?;
    let mut samples: BTreeMap<(&'static str, Config), Vec<CpuSample>> = BTreeMap::new();
    for round in 1..=opts.rounds {
        for &config in &opts.configs {
            let running = configs::start(config, env)?;
            pin_server(&running)?;
            for &route in &opts.routes {
                let s = run_once(&running, route, opts)?;
                eprintln!(
                    "[bench] cpu round {round}/{} {:<32} {route:<10} {:>7.1} µs/request (server {:.1} + {:.1}, agent {:.1}; programs {:.1})",
                    opts.rounds,
                    config.label(),
                    s.total_us(),
                    s.server_user_us,
                    s.server_system_us,
                    s.agent_us,
                    s.programs_us,
                );
                samples.entry((route, config)).or_default().push(s);
            }
            running.stop()?;
        }
    }
    Ok(Measured { opts: opts.clone(), samples })
}

fn run_once(running: &Running, route: &'static str, opts: &Options) -> Result<CpuSample> {
    let server = running.server_pids();
    let agent = running.agent_pid();
    if let Some(a) = agent {
        pin(a, CLIENT_CPU)?;
    }
    let before = Snapshot::take(&server, agent)?;
    let requests = fixed_rate(running.port, route, opts.rate, Duration::from_secs(opts.seconds))?;
    let after = Snapshot::take(&server, agent)?;
    Ok(after.since(&before, requests))
}

/// Sends `rate` requests a second for `d` from a thread on [`CLIENT_CPU`], each on its own
/// connection; the number answered with a 200.
fn fixed_rate(port: u16, route: &str, rate: u32, d: Duration) -> Result<u64> {
    let request = format!("GET {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<u64> {
            pin(0, CLIENT_CPU)?;
            let start = Instant::now();
            let gap = Duration::from_secs(1) / rate;
            let mut ok = 0;
            let mut buf = Vec::with_capacity(4096);
            for i in 0.. {
                let due = start + gap * i;
                if due >= start + d {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut c = TcpStream::connect(("127.0.0.1", port))?;
                c.write_all(request.as_bytes())?;
                buf.clear();
                c.read_to_end(&mut buf)?;
                if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200") {
                    ok += 1;
                }
            }
            Ok(ok)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
    })
}

/// The counters at one moment.
struct Snapshot {
    server_ns: u64,
    server_user_ticks: u64,
    server_system_ticks: u64,
    agent_ns: u64,
    /// Program name → (run time ns, runs), summed over programs of that name.
    programs: BTreeMap<String, (u64, u64)>,
    irq_ticks: u64,
}

impl Snapshot {
    fn take(server: &[u32], agent: Option<u32>) -> Result<Snapshot> {
        let mut s = Snapshot {
            server_ns: 0,
            server_user_ticks: 0,
            server_system_ticks: 0,
            agent_ns: 0,
            programs: BTreeMap::new(),
            irq_ticks: irq_ticks()?,
        };
        for &pid in server {
            s.server_ns += on_cpu_ns(pid);
            let (u, sys) = ticks(pid);
            s.server_user_ticks += u;
            s.server_system_ticks += sys;
        }
        if let Some(a) = agent {
            s.agent_ns = on_cpu_ns(a);
            s.programs = programs_of(a)?;
        }
        Ok(s)
    }

    fn since(&self, before: &Snapshot, requests: u64) -> CpuSample {
        let per = |ns: u64| ns as f64 / 1e3 / requests.max(1) as f64;
        let server_ns = self.server_ns.saturating_sub(before.server_ns);
        let user = self.server_user_ticks.saturating_sub(before.server_user_ticks) as f64;
        let system = self.server_system_ticks.saturating_sub(before.server_system_ticks) as f64;
        // Ticks only split the exact on-CPU time: they are 10 ms coarse.
        let user_share = if user + system > 0.0 { user / (user + system) } else { 0.5 };
        let mut programs = BTreeMap::new();
        let mut programs_ns = 0;
        for (name, &(ns, runs)) in &self.programs {
            let (ns0, runs0) = before.programs.get(name).copied().unwrap_or_default();
            let (ns, runs) = (ns.saturating_sub(ns0), runs.saturating_sub(runs0));
            programs_ns += ns;
            if runs > 0 {
                programs.insert(name.clone(), (runs as f64 / requests.max(1) as f64, ns as f64 / runs as f64));
            }
        }
        let tick_ns = 1e9 / clock_ticks();
        CpuSample {
            requests,
            server_user_us: per(server_ns) * user_share,
            server_system_us: per(server_ns) * (1.0 - user_share),
            agent_us: per(self.agent_ns.saturating_sub(before.agent_ns)),
            programs_us: per(programs_ns),
            programs,
            irq_us: self.irq_ticks.saturating_sub(before.irq_ticks) as f64 * tick_ns / 1e3 / requests.max(1) as f64,
        }
    }
}

/// Every live thread's time on a CPU, in ns (exact, unlike the 10 ms ticks of /proc/PID/stat).
fn on_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// The process's user and system ticks (its exited threads included).
fn ticks(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let f: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let n = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (n(11), n(12))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// The machine's irq and softirq ticks (/proc/stat's first line, fields 6 and 7).
fn irq_ticks() -> Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat is empty")?;
    let f: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    Ok(f.get(5).copied().unwrap_or(0) + f.get(6).copied().unwrap_or(0))
}

/// The run time and run count of each program the agent holds, from bpftool.
fn programs_of(agent: u32) -> Result<BTreeMap<String, (u64, u64)>> {
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().context("running bpftool")?;
    if !out.status.success() {
        bail!("bpftool prog show: {}", String::from_utf8_lossy(&out.stderr));
    }
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool's JSON")?;
    // Debian's bpftool does not say which process holds a program: the agent's own fds do
    // (each program fd's fdinfo names its id), which also leaves out other agents running.
    let ours = prog_ids_of(agent);
    let mut by_name = BTreeMap::new();
    for p in progs.as_array().into_iter().flatten() {
        if !p["id"].as_u64().is_some_and(|id| ours.contains(&id)) {
            continue;
        }
        let name = p["name"].as_str().unwrap_or("?").to_string();
        let e: &mut (u64, u64) = by_name.entry(name).or_default();
        e.0 += p["run_time_ns"].as_u64().unwrap_or(0);
        e.1 += p["run_cnt"].as_u64().unwrap_or(0);
    }
    Ok(by_name)
}

/// The ids of the programs `pid` holds open.
fn prog_ids_of(pid: u32) -> std::collections::BTreeSet<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return std::collections::BTreeSet::new() };
    fds.flatten()
        .filter_map(|f| fs::read_to_string(f.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|v| v.trim().parse().ok()))
        .collect()
}

/// `kernel.bpf_stats_enabled` on while it lives (programs' run time costs a clock read per run,
/// alike in every traced configuration), back to what it was after.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<BpfStats> {
        let before = fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("enabling {BPF_STATS} (needs root)"))?;
        Ok(BpfStats { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.before.trim());
    }
}

/// Gunicorn's master and workers on [`SERVER_CPU`] (the workers exist already: each is pinned).
fn pin_server(running: &Running) -> Result<()> {
    for pid in running.server_pids() {
        pin(pid, SERVER_CPU)?;
    }
    Ok(())
}

/// `pid` (0: the calling thread) on one CPU only.
fn pin(pid: u32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(
            libc::pid_t::try_from(pid).context("pid")?,
            size_of::<libc::cpu_set_t>(),
            &raw const set,
        )
    };
    if rc != 0 {
        bail!("pinning pid {pid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The median of `v` and its [min–max].
/// Where a traced round's added CPU per request went, against A's in the same round: the
/// server's user time, its system time beyond the kernel programs (the tracepoints' own
/// machinery: records built for the programs, the slow syscall path), the programs, the agent.
fn split(x: &CpuSample, a: &CpuSample) -> [f64; 5] {
    let user = x.server_user_us - a.server_user_us;
    let machinery = (x.server_system_us - x.programs_us) - (a.server_system_us - a.programs_us);
    let total = x.total_us() - a.total_us();
    [user, machinery, x.programs_us, x.agent_us - a.agent_us, total]
}

impl Measured {
    /// The added CPU per request of each traced configuration, split (see [`split`]), each part
    /// in µs and as a share of A's CPU per request: medians of the rounds' own differences.
    fn split_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "\n### Where the added CPU goes\n\nPer request, each round against A's run in the same round; medians with [min–max] over rounds, in µs and (in brackets after) as a share of A's CPU per request. Kernel machinery is the server's system time beyond the programs' own run time, against A's system time.\n\n| route | configuration | server user | kernel machinery | kernel programs | agent | added in all |\n|---|---|---|---|---|---|---|\n",
        );
        for &route in &self.opts.routes {
            let Some(base) = self.samples.get(&(route, Config::A)) else { continue };
            for &config in &self.opts.configs {
                if config == Config::A {
                    continue;
                }
                let Some(s) = self.samples.get(&(route, config)) else { continue };
                let parts: Vec<([f64; 5], f64)> =
                    s.iter().zip(base).map(|(x, a)| (split(x, a), a.total_us())).collect();
                let cell = |i: usize| {
                    let us: Vec<f64> = parts.iter().map(|(p, _)| p[i]).collect();
                    let pct: Vec<f64> = parts.iter().map(|(p, a)| 100.0 * p[i] / a.max(1e-9)).collect();
                    let (m, lo, hi) = median_range(&us);
                    let (pm, plo, phi) = median_range(&pct);
                    format!("{m:+.1} µs [{lo:+.1}–{hi:+.1}] ({pm:+.1}% [{plo:+.1}–{phi:+.1}])")
                };
                let _ = writeln!(
                    out,
                    "| `{route}` | {} | {} | {} | {} | {} | {} |",
                    config.label(),
                    cell(0),
                    cell(1),
                    cell(2),
                    cell(3),
                    cell(4)
                );
            }
        }
        out
    }
}

pub fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mid = s.len() / 2;
    let median = if s.len().is_multiple_of(2) { f64::midpoint(s[mid - 1], s[mid]) } else { s[mid] };
    (median, s[0], s[s.len() - 1])
}

impl Measured {
    /// The markdown section: CPU per request per route and configuration, split, with the cost
    /// against A as the median of the rounds' own ratios.
    #[expect(clippy::many_single_char_names, reason = "short-lived names in a table's formatting")]
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let o = &self.opts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## CPU per request at a fixed rate\n\n{} requests/s (one per connection) for {} s per route, {} rounds, configurations alternating within each round. The server (master and 2 sync workers) is pinned to CPU 0, the load generator and the agent to CPU 1. Server time is the workers' and master's exact on-CPU time (schedstat), split into user and system by their ticks; kernel programs are `kernel.bpf_stats_enabled` run times (part of the server's system time); irq+softirq is the whole machine's. Figures are medians with [min–max] over rounds; \"added\" is the median of each round's (config ÷ A) − 1 of server + agent time.\n",
            o.rate, o.seconds, o.rounds
        );
        let _ = writeln!(out, "| route | configuration | requests | server user µs | server system µs | of which kernel programs µs | agent µs | total µs | added vs A | irq+softirq µs |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        let fmt = |v: &[f64], digits: usize| {
            let (m, lo, hi) = median_range(v);
            format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]")
        };
        for &route in &o.routes {
            let base = self.samples.get(&(route, Config::A));
            for &config in &o.configs {
                let Some(s) = self.samples.get(&(route, config)) else { continue };
                let col = |f: fn(&CpuSample) -> f64| s.iter().map(f).collect::<Vec<_>>();
                let added = match base {
                    Some(b) if config != Config::A => {
                        let r: Vec<f64> = s
                            .iter()
                            .zip(b)
                            .map(|(x, a)| 100.0 * (x.total_us() / a.total_us().max(1e-9) - 1.0))
                            .collect();
                        let (m, lo, hi) = median_range(&r);
                        format!("{m:+.1}% [{lo:+.1}–{hi:+.1}]")
                    }
                    _ => "—".into(),
                };
                let requests: u64 = s.iter().map(|x| x.requests).sum::<u64>() / s.len().max(1) as u64;
                let _ = writeln!(
                    out,
                    "| `{route}` | {} | {requests} | {} | {} | {} | {} | {} | {added} | {} |",
                    config.label(),
                    fmt(&col(|x| x.server_user_us), 1),
                    fmt(&col(|x| x.server_system_us), 1),
                    fmt(&col(|x| x.programs_us), 2),
                    fmt(&col(|x| x.agent_us), 1),
                    fmt(&col(CpuSample::total_us), 1),
                    fmt(&col(|x| x.irq_us), 1),
                );
            }
        }
        out.push_str(&self.split_markdown());
        // Each program's share, for the traced configurations (the last round's, on the first route).
        for &config in &o.configs {
            let Some(last) = o.routes.first().and_then(|r| self.samples.get(&(*r, config))).and_then(|s| s.last())
            else {
                continue;
            };
            if last.programs.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\nKernel programs of {} on `{}` (last round): runs per request × ns per run",
                config.label(),
                o.routes[0]
            );
            let _ = writeln!(out, "\n| program | runs/request | ns/run | ns/request |\n|---|---|---|---|");
            for (name, (runs, ns)) in &last.programs {
                let _ = writeln!(out, "| `{name}` | {runs:.2} | {ns:.0} | {:.0} |", runs * ns);
            }
        }
        out
    }
}
