//! CPU per request at a fixed rate well below saturation, side by side: the measurement that
//! resolves a 2% cost on this nested VM, whose untraced CPU per request drifts by a third between
//! runs 20 s apart while adjacent requests see the same machine.
//!
//! In each round an untraced Gunicorn (A) and the configuration under test (X) run at the same
//! time (pair.rs), both on [`SERVER_CPU`](super::affinity::SERVER_CPU). One load thread on the
//! other CPU sends requests to A and X in turn (A, X, A, X …, or X first in every other round),
//! each on its own connection as Gunicorn's sync workers serve them, so both see the same moment
//! of the machine and never compete for the CPU. Per request and per server, from exact counters:
//! on-CPU time (`/proc/PID/task/*/schedstat`, ns) split into user and system by the threads' raw
//! sampled times over the window (taskstats.rs).
//! X is charged besides with the agent's on-CPU time. Those totals are taken with
//! `kernel.bpf_stats_enabled` off, as production runs: with it on, every program run of every
//! task pays two clock reads more. The kernel programs' run time (each program's `run_time_ns` and
//! `run_cnt`, for the programs the agent holds) comes from a window of its own right after, with
//! the stats on: the pair again for a quarter of the time, then A alone as long, whose cost per
//! second (the programs' early returns in A's syscalls and in the rest of the machine) is taken
//! out. irq+softirq is the machine's (/proc/stat), per request of either server. A round's cost
//! is its own ratio X/A − 1, so drifts cancel.
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::affinity::{pin, CLIENT_CPU};
use super::configs::Running;
use super::taskstats::Taskstats;

/// One server's CPU per request over one route's run.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    pub requests: u64,
    pub server_user_us: f64,
    pub server_system_us: f64,
    pub agent_us: f64,
    /// The agent's programs' run time per request of this server, from the stats' own window (in a
    /// pair, less what they cost while A alone was served: their early returns in A's syscalls,
    /// the rest of the machine); 0 elsewhere.
    pub programs_us: f64,
    /// Each program's (runs per request, ns per run).
    pub programs: BTreeMap<String, (f64, f64)>,
}

impl CpuSample {
    /// Server and agent: what the traced app's host pays per request. The kernel programs run in
    /// the syscalls of the process making them, so X's own are in its system time already; the
    /// split (cpu_report.rs) shows them apart, taken out of the machinery.
    pub fn total_us(&self) -> f64 {
        self.server_user_us + self.server_system_us + self.agent_us
    }
}

/// One round of one route: A and X side by side.
#[derive(Debug, Clone, Default)]
pub struct PairSample {
    pub a: CpuSample,
    pub x: CpuSample,
    /// The machine's irq and softirq time per request of either server.
    pub irq_us: f64,
    /// What X served in the programs' own window besides (each one a span to count).
    pub x_stats_requests: u64,
}

impl PairSample {
    /// X's added CPU per request against A's, in percent.
    pub fn added_pct(&self) -> f64 {
        100.0 * (self.x.total_us() / self.a.total_us().max(1e-9) - 1.0)
    }
}

/// `rate` requests a second to each of `a` and `x` for `d`, in turn (`x_first`: X leads), with
/// the programs' stats off. Then, stats on, X's programs over a quarter of `d` of the pair again,
/// less what they cost per second while A alone is served as long (their early returns in A's
/// syscalls and in the rest of the machine's), so that X's programs are X's.
pub fn measure_pair(
    a: &Running,
    x: &Running,
    route: &str,
    rate: u32,
    d: Duration,
    x_first: bool,
) -> Result<PairSample> {
    let (sa, sx) = (a.server_pids(), x.server_pids());
    let ports = if x_first { [x.port, a.port] } else { [a.port, x.port] };
    // fixed_rate counts per port, in the order of `ports`.
    let (x_at, a_at) = if x_first { (0, 1) } else { (1, 0) };
    let agent = x.agent_pid();
    let before = (Snapshot::take(&sa, None)?, Snapshot::take(&sx, agent)?, irq_ticks()?);
    let ok = fixed_rate(&ports, route, rate, d)?;
    let (ok_a, ok_x) = (ok[a_at], ok[x_at]);
    let after = (Snapshot::take(&sa, None)?, Snapshot::take(&sx, agent)?, irq_ticks()?);
    let mut xs = after.1.since(&before.1, ok_x);
    let mut x_stats_requests = 0;
    if let Some(agent) = agent {
        let _stats = BpfStats::enable()?;
        let window = (d / 4).max(Duration::from_secs(1));
        let start = programs_of(agent)?;
        let started = Instant::now();
        let ok = fixed_rate(&ports, route, rate, window)?;
        let paired = started.elapsed();
        let end = programs_of(agent)?;
        let started = Instant::now();
        fixed_rate(&[a.port], route, rate, window)?;
        let alone = started.elapsed();
        let elsewhere = delta(&programs_of(agent)?, &end);
        let scale = paired.as_secs_f64() / alone.as_secs_f64().max(1e-9);
        let mut own = delta(&end, &start);
        for (name, (ns, runs)) in &mut own {
            let (ens, eruns) = elsewhere.get(name).copied().unwrap_or_default();
            *ns = (*ns - scale * ens).max(0.0);
            *runs = (*runs - scale * eruns).max(0.0);
        }
        x_stats_requests = ok[x_at];
        (xs.programs_us, xs.programs) = per_request(&own, x_stats_requests);
    }
    Ok(PairSample {
        a: after.0.since(&before.0, ok_a),
        x: xs,
        irq_us: per_request_of_ticks(after.2.saturating_sub(before.2), ok_a + ok_x),
        x_stats_requests,
    })
}

/// Each program's (run time ns, runs) between two readings.
fn delta(after: &BTreeMap<String, (u64, u64)>, before: &BTreeMap<String, (u64, u64)>) -> BTreeMap<String, (f64, f64)> {
    after
        .iter()
        .map(|(name, &(ns, runs))| {
            let (ns0, runs0) = before.get(name).copied().unwrap_or_default();
            (name.clone(), (ns.saturating_sub(ns0) as f64, runs.saturating_sub(runs0) as f64))
        })
        .collect()
}

/// The programs' whole run time per request (µs) and each one's (runs per request, ns per run).
fn per_request(d: &BTreeMap<String, (f64, f64)>, requests: u64) -> (f64, BTreeMap<String, (f64, f64)>) {
    let n = requests.max(1) as f64;
    // `+ 0.0`: an empty sum is -0.0, which would print as such.
    let us = d.values().map(|(ns, _)| ns).sum::<f64>() / 1e3 / n + 0.0;
    let each = d
        .iter()
        .filter(|(_, (_, runs))| *runs >= 1.0)
        .map(|(k, &(ns, runs))| (k.clone(), (runs / n, ns / runs)))
        .collect();
    (us, each)
}

/// One server alone (system_wide.rs): its own CPU per request, nothing else charged.
pub fn measure_alone(a: &Running, route: &str, rate: u32, d: Duration) -> Result<CpuSample> {
    let sa = a.server_pids();
    let before = Snapshot::take(&sa, None)?;
    let ok = fixed_rate(&[a.port], route, rate, d)?;
    Ok(Snapshot::take(&sa, None)?.since(&before, ok[0]))
}

fn per_request_of_ticks(ticks: u64, requests: u64) -> f64 {
    ticks as f64 * 1e6 / clock_ticks() / requests.max(1) as f64
}

/// Sends `rate` requests a second to each port for `d` from a thread on [`CLIENT_CPU`], each on
/// its own connection, the ports in turn, each at a random moment of its slot; per port the
/// number answered with a 200. A request that is due while the previous one is still answered
/// goes as soon as it is.
fn fixed_rate(ports: &[u16], route: &str, rate: u32, d: Duration) -> Result<Vec<u64>> {
    let request = format!("GET {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<u64>> {
            pin(0, CLIENT_CPU)?;
            let start = Instant::now();
            let gap = Duration::from_secs(1) / (rate * u32::try_from(ports.len())?);
            let mut ok = vec![0; ports.len()];
            let mut buf = Vec::with_capacity(4096);
            // Each request at a random moment of its slot: a strictly periodic load would keep
            // the same phase against the 250 Hz tick that samples user against system time, and
            // bias the split by whatever part of a request the tick keeps landing in.
            let mut rng = rand::thread_rng();
            for i in 0u32.. {
                let due = start + gap * i + gap.mul_f64(rand::Rng::gen::<f64>(&mut rng));
                if due >= start + d {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let which = i as usize % ports.len();
                let mut c = TcpStream::connect(("127.0.0.1", ports[which]))?;
                c.write_all(request.as_bytes())?;
                buf.clear();
                c.read_to_end(&mut buf)?;
                if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200") {
                    ok[which] += 1;
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
    /// The server threads' raw sampled user and system time (taskstats), µs.
    server_user_raw: u64,
    server_system_raw: u64,
    agent_ns: u64,
}

impl Snapshot {
    fn take(server: &[u32], agent: Option<u32>) -> Result<Snapshot> {
        let mut s = Snapshot { server_ns: 0, server_user_raw: 0, server_system_raw: 0, agent_ns: 0 };
        let mut ts = Taskstats::open()?;
        for &pid in server {
            s.server_ns += on_cpu_ns(pid);
            for tid in threads(pid) {
                // A thread gone since the listing has nothing more to add.
                if let Ok((u, sys)) = ts.cputime(tid) {
                    s.server_user_raw += u;
                    s.server_system_raw += sys;
                }
            }
        }
        if let Some(a) = agent {
            s.agent_ns = on_cpu_ns(a);
        }
        Ok(s)
    }

    fn since(&self, before: &Snapshot, requests: u64) -> CpuSample {
        let per = |ns: u64| ns as f64 / 1e3 / requests.max(1) as f64;
        let server_ns = self.server_ns.saturating_sub(before.server_ns);
        let user = self.server_user_raw.saturating_sub(before.server_user_raw) as f64;
        let system = self.server_system_raw.saturating_sub(before.server_system_raw) as f64;
        // The sampled times only split the exact on-CPU time: they come in 4 ms ticks.
        let user_share = if user + system > 0.0 { user / (user + system) } else { 0.5 };
        CpuSample {
            requests,
            server_user_us: per(server_ns) * user_share,
            server_system_us: per(server_ns) * (1.0 - user_share),
            agent_us: per(self.agent_ns.saturating_sub(before.agent_ns)),
            programs_us: 0.0,
            programs: BTreeMap::new(),
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

/// The process's live threads.
fn threads(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks.flatten().filter_map(|t| t.file_name().to_str().and_then(|n| n.parse().ok())).collect()
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

/// `kernel.bpf_stats_enabled` on while it lives (every program run then costs two clock reads
/// more, so no total is taken under it), back to what it was after.
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
