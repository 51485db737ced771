//! bench/results.md, the latency plot, and the short summary printed at the end.
use std::{collections::BTreeMap, fmt::Write as _, fs, process::Command, time::Duration};

use anyhow::{Context, Result};

use super::side_by_side::Measured;
use super::stats::{cell, describe, median_ci};
use super::{system_wide, CapacityStep, Config, Options, Run, Sample, ROUTES};
use crate::{cmd, paths};

/// Cores of this machine: at saturation every core serves, so per-request CPU is cores / rate.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64
}

struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Option<Stat> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { f64::midpoint(v[n / 2 - 1], v[n / 2]) };
    Some(Stat { median, min: v[0], max: v[n - 1] })
}

fn of<'a>(samples: &'a [Sample], c: Config, route: &str) -> impl Iterator<Item = &'a Sample> + 'a {
    let route = route.to_string();
    samples.iter().filter(move |s| s.config == c && s.route == route)
}

#[expect(clippy::too_many_lines, reason = "one report, written top to bottom in the order the page reads")]
pub fn write(
    opts: &Options,
    measured: &Measured,
    shared: &system_wide::Measured,
    capacity: &[CapacityStep],
    per_interpreter: &[super::interpreters::InterpreterCost],
    took: Duration,
) -> Result<String> {
    let samples = &measured.throughput[..];
    let runs = &measured.runs[..];
    let mut md = String::new();
    let mut summary = String::new();
    writeln!(md, "# pytracer benchmark results\n")?;
    writeln!(
        md,
        "Written by `cargo xtask bench` on {} (took {:.0} s).\n",
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        took.as_secs_f64()
    )?;
    machine(&mut md)?;
    writeln!(
        md,
        "\n## Method\n\nThe same Flask app (bench/apps/benchapp.py) on Gunicorn, 2 sync workers, on 127.0.0.1. \
         Side by side: in each of {} rounds, every configuration under test runs beside an untraced twin (A), \
         both started afresh (15 warm-up requests each), both servers on CPU 0, the load generators and agents \
         on CPU 1. First CPU per request at a fixed rate, then saturated throughput: wrk, 1 thread, {} connections, \
         {} s per route, one wrk per server at the same time, routes `/` (hello), `/users/42` (small JSON) and \
         `/work` (about 2 ms of Python CPU). Every cost is the median over rounds of the round's own ratio to its \
         twin, with a distribution-free confidence interval of the median, so the VM's slow drifts cancel.\n",
        opts.rounds, opts.connections, opts.seconds
    )?;
    let labels: Vec<String> = opts.configs.iter().map(|c| format!("**{}**", c.label())).collect();
    writeln!(md, "Configurations: {}.\n", labels.join(", "))?;

    // First: CPU per request, which resolves a few percent; then throughput side by side.
    let cpu = super::cpu_report::markdown(measured, shared);
    writeln!(md, "{cpu}")?;
    summary.push_str(&cpu);
    let throughput = throughput_markdown(&opts.configs, samples, &ROUTES);
    writeln!(md, "{throughput}")?;
    summary.push_str(&throughput);

    for &c in &opts.configs {
        let bad: u64 = samples.iter().filter(|s| s.config == c).map(|s| s.wrk.errors + s.wrk.non_2xx).sum();
        if bad > 0 {
            writeln!(md, "\n**{}: {bad} requests failed or were not 2xx**: its figures are suspect.", c.label())?;
            writeln!(summary, "!!! {}: {bad} failed or non-2xx requests", c.label())?;
        }
    }

    writeln!(md, "\n## Spans delivered against requests sent\n")?;
    writeln!(
        md,
        "Requests = warm-up requests + the fixed-rate requests answered + wrk's completed responses, to X. wrk stops with up to {} requests in flight per \
         route; the server still answers them, so a tracer that sees everything delivers between 0 and {} spans more \
         than wrk counted in each round.\n",
        opts.connections,
        3 * opts.connections
    )?;
    writeln!(md, "| configuration | round | requests | spans | spans − requests | verdict |")?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    let mut round_of: BTreeMap<Config, u32> = BTreeMap::new();
    for r in runs {
        let round = round_of.entry(r.config).or_default();
        *round += 1;
        let Some(spans) = r.counts.spans else { continue };
        let diff = spans as i64 - r.requests as i64;
        let ok = diff >= 0 && diff <= 3 * i64::from(opts.connections);
        let verdict = if ok {
            "all requests traced"
        } else if diff < 0 {
            "**MISSING SPANS**"
        } else {
            "**EXTRA SPANS**"
        };
        if !ok && matches!(r.config, Config::B | Config::C) {
            writeln!(summary, "!!! {}: round {round}: {spans} spans for {} requests", r.config.label(), r.requests)?;
        }
        writeln!(md, "| {} | {round} | {} | {spans} | {diff:+} | {verdict} |", r.config.label(), r.requests)?;
    }

    writeln!(md, "\n## The agent's own cost (pytracer)\n")?;
    writeln!(
        md,
        "Over each round's whole life (start, warm-up, both loads): {}.\n",
        describe(runs.len() / opts.configs.iter().filter(|&&c| c != Config::A).count().max(1))
    )?;
    writeln!(md, "| configuration | CPU s per 1000 requests | peak RSS MiB | kernel drops |")?;
    writeln!(md, "|---|---|---|---|")?;
    for c in [Config::B, Config::C, Config::F, Config::G] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.config == c).collect();
        if mine.is_empty() {
            continue;
        }
        let cpu: Vec<f64> =
            mine.iter().filter_map(|r| r.counts.agent_cpu_s.map(|s| 1000.0 * s / r.requests.max(1) as f64)).collect();
        let rss = mine.iter().filter_map(|r| r.counts.agent_peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let drops: u64 = mine.iter().filter_map(|r| r.counts.kernel_drops).sum();
        let cpu = cell(&cpu, 3, false);
        writeln!(md, "| {} | {cpu} | {rss:.1} | {drops} |", c.label())?;
        writeln!(summary, "agent {}: CPU s/1000 req {cpu}, peak RSS {rss:.1} MiB, kernel drops {drops}", c.key())?;
    }

    writeln!(md, "\n## Probe hits per request\n")?;
    writeln!(
        md,
        "From the agent's own /metrics at the end of each round (`pytracer run` configurations), over all requests \
         of the round. Kernel records are the syscall-tracepoint records delivered (accept, reads, writes, close); \
         GC pauses are uprobe-pair hits on the collector; GIL waits are uprobe-pair hits on PyEval_RestoreThread \
         (opt-in, F only). Python stacks are walks made by the frame-evaluation uprobe: in C only during its \
         sampled windows (100 ms every 10 s, at most one walk per thread per 250 µs), in G on every entry of _PyEval_EvalFrameDefault. Their cost shows as F \
         and G against C in the throughput table.\n"
    )?;
    writeln!(md, "| configuration | kernel records/request | GC-pause probe hits/request | GIL-wait probe hits/request | Python stacks/request |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in [Config::C, Config::F, Config::G] {
        let per = |f: fn(&super::configs::ProbeHits) -> f64| {
            stat(
                runs.iter()
                    .filter(|r| r.config == c)
                    .filter_map(|r| r.counts.probe_hits.map(|h| f(&h) / r.requests.max(1) as f64))
                    .collect(),
            )
        };
        let (Some(ev), Some(gc), Some(gil), Some(st)) =
            (per(|h| h.events), per(|h| h.gc_pauses), per(|h| h.gil_waits), per(|h| h.stacks))
        else {
            continue;
        };
        // `+ 0.0` turns a median of -0.0 into 0.0 for printing.
        writeln!(
            md,
            "| {} | {:.2} | {:.3} | {:.1} | {:.2} |",
            c.label(),
            ev.median,
            gc.median,
            gil.median + 0.0,
            st.median + 0.0
        )?;
        writeln!(summary, "probes {}: {:.2} kernel records, {:.3} GC-pause hits, {:.1} GIL-wait hits, {:.2} Python stacks per request", c.key(), ev.median, gc.median, gil.median + 0.0, st.median + 0.0)?;
    }

    if !per_interpreter.is_empty() {
        writeln!(md, "\n## Frame-evaluation probe per interpreter\n")?;
        writeln!(
            md,
            "The same app on each interpreter, `/users/42`, one run each: untraced, then `pytracer trace --frame-eval always` \
             (the opt-in mode; by default the probe is attached 100 ms every 10 s and walks at most once per 250 µs per thread). Python stacks per request are the probe's \
             hits: 3.8–3.10 enter `_PyEval_EvalFrameDefault` on every Python call, 3.11+ only from C. Added µs per request = \
             {} cores × (1/traced − 1/untraced).\n",
            cores()
        )?;
        writeln!(
            md,
            "| interpreter | untraced req/s | traced req/s | ratio | Python stacks/request | added µs/request |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for c in per_interpreter {
            let added = cores() * (1.0 / c.traced_rps - 1.0 / c.untraced_rps) * 1e6;
            writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} |",
                c.name,
                c.untraced_rps,
                c.traced_rps,
                c.traced_rps / c.untraced_rps,
                c.stacks_per_request,
                added
            )?;
            writeln!(
                summary,
                "frame-eval {}: ratio {:.2}, {:.1} stacks/request, +{:.0} µs/request",
                c.name,
                c.traced_rps / c.untraced_rps,
                c.stacks_per_request,
                added
            )?;
        }
    }

    if !capacity.is_empty() {
        writeln!(md, "\n## Capacity\n")?;
        writeln!(md, "pytracer wire-only on `/`, more connections per step.\n")?;
        writeln!(md, "| connections | req/s | requests | spans | kernel drops |")?;
        writeln!(md, "|---|---|---|---|---|")?;
        let mut best: f64 = 0.0;
        for s in capacity {
            let drops = s.counts.kernel_drops.unwrap_or(0);
            let spans = s.counts.spans.unwrap_or(0);
            if drops == 0 && spans >= s.requests {
                best = best.max(s.wrk.rps());
            }
            writeln!(md, "| {} | {:.0} | {} | {spans} | {drops} |", s.connections, s.wrk.rps(), s.requests)?;
        }
        writeln!(
            md,
            "\nLargest rate followed with zero drops: **{best:.0} req/s**. That is the most this 2-core machine \
             serves with this app; no higher rate could be generated here, so the agent's limit lies above it."
        )?;
        writeln!(summary, "capacity: {best:.0} req/s followed with zero drops (machine saturated)")?;
    }

    let wrk_share = stat(samples.iter().map(|s| (s.wrk.cpu_s + s.untraced.cpu_s) / s.wrk.duration_s).collect());
    writeln!(md, "\n## How the cores were shared\n")?;
    writeln!(
        md,
        "The two servers of a pair (2 Gunicorn workers each) share CPU 0; the two wrk processes (1 thread each), \
         pytracer and the in-process agents' sinks share CPU 1. Together the two wrk used a median of {:.0}% of \
         that CPU [{:.0}–{:.0}%].",
        wrk_share.as_ref().map_or(0.0, |s| s.median * 100.0),
        wrk_share.as_ref().map_or(0.0, |s| s.min * 100.0),
        wrk_share.as_ref().map_or(0.0, |s| s.max * 100.0)
    )?;
    writeln!(md, "\n## How to read these numbers\n")?;
    writeln!(
        md,
        "- This VM is nested: every trap into the kernel (a uprobe, a context switch) costs more than on bare metal, \
         so absolute rates are low and noisy. Compare configurations within one run, never across machines.\n\
         - The ratio is the median of each round's X req/s over its twin's, both served by the same CPU at the \
         same time; its interval is the confidence interval of that median. A 1.00 inside it is no measured cost.\n\
         - Added µs/request = (1/rate − 1/rate_A) per the one CPU both servers share, at saturation.\n\
         - For in-process agents the cost lands in the app's own workers; pytracer's lands in the kernel's syscall \
         tracepoints (counted in the app's rate) and in the agent process (the agent table).\n\
         - Latency percentiles come from wrk at fixed concurrency, so they rise with any throughput loss.\n"
    )?;
    writeln!(md, "![latency distribution](latency.png)")?;

    let out_dir = paths::repo_root().join("bench");
    fs::write(out_dir.join("results.md"), &md)?;
    plot(opts, samples)?;
    writeln!(summary, "wrote bench/results.md and bench/latency.png")?;
    Ok(summary)
}

/// The median round's percentiles per configuration and route, plotted by bench/plot.py.
fn plot(opts: &Options, samples: &[Sample]) -> Result<()> {
    let mut latency = serde_json::Map::new();
    for &c in &opts.configs {
        let mut per_route = serde_json::Map::new();
        for route in ROUTES {
            // A: its runs beside every configuration under test.
            let mut mine: Vec<&super::wrk::WrkResult> = if c == Config::A {
                samples.iter().filter(|s| s.route == route).map(|s| &s.untraced).collect()
            } else {
                of(samples, c, route).map(|s| &s.wrk).collect()
            };
            mine.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
            if let Some(m) = mine.get(mine.len() / 2) {
                per_route.insert(route.into(), serde_json::to_value(&m.percentiles_us)?);
            }
        }
        latency.insert(c.key().into(), per_route.into());
    }
    let labels: serde_json::Map<String, serde_json::Value> =
        opts.configs.iter().map(|c| (c.key().to_string(), c.label().into())).collect();
    let data = serde_json::json!({
        "routes": ROUTES,
        "configs": opts.configs.iter().map(|c| c.key()).collect::<Vec<_>>(),
        "labels": labels,
        "latency": latency,
    });
    let dir = paths::repo_root().join("bench/out");
    fs::create_dir_all(&dir)?;
    let json = dir.join("latency.json");
    fs::write(&json, serde_json::to_vec_pretty(&data)?)?;
    let python = super::super::setup::Venv::bench().dir.join("bin/python");
    cmd::run(
        Command::new(python)
            .arg(paths::repo_root().join("bench/plot.py"))
            .arg(&json)
            .arg(paths::repo_root().join("bench/latency.png")),
    )
    .context("plotting the latency distribution")
}

fn machine(md: &mut String) -> Result<()> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(ToString::to_string))
        .unwrap_or_default();
    let venv = super::super::setup::Venv::bench().dir;
    let freeze = sh(&format!("{}/bin/pip freeze 2>/dev/null", venv.display()));
    let pkgs: Vec<&str> = freeze
        .lines()
        .filter(|l| {
            ["gunicorn==", "Flask==", "opentelemetry-distro==", "opentelemetry-instrumentation-flask==", "instana=="]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    writeln!(md, "## Machine\n")?;
    writeln!(md, "- CPU: {} cores, {cpu}", cores())?;
    writeln!(md, "- Memory: {}", mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))?;
    writeln!(md, "- Kernel: {}", sh("uname -r"))?;
    writeln!(md, "- Python: {}", sh(&format!("{}/bin/python -V", venv.display())))?;
    writeln!(md, "- Packages: {}", pkgs.join(", "))?;
    writeln!(md, "- wrk: {}", sh("wrk -v 2>&1 | head -1"))?;
    writeln!(md, "- pytracer: {}", sh("git rev-parse --short HEAD"))?;
    Ok(())
}

fn sh(script: &str) -> String {
    Command::new("sh")
        .args(["-c", script])
        .current_dir(paths::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Saturated throughput side by side: per route and configuration, both servers' req/s, the
/// median of the rounds' own X/A ratios, latency, and the added µs per request at saturation.
pub fn throughput_markdown(configs: &[Config], samples: &[Sample], routes: &[&str]) -> String {
    let mut md = String::new();
    let n = configs
        .iter()
        .flat_map(|&c| routes.iter().map(move |&r| samples.iter().filter(|s| s.config == c && s.route == r).count()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "## Throughput side by side\n\nEach round, X and its untraced twin A saturated at the same time by one wrk each; \
         the two servers share CPU 0, so each gets about half of it. Figures are {}. Added µs/request = \
         1/rate − 1/rate_A, each side's rate from its share of the one server CPU, per round.\n",
        describe(n)
    );
    let _ =
        writeln!(md, "| route | configuration | A req/s | X req/s | X/A | X p50 ms | X p99 ms | added µs/request |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for &route in routes {
        for &c in configs.iter().filter(|&&c| c != Config::A) {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.config == c && s.route == route).collect();
            if mine.is_empty() {
                continue;
            }
            let col = |f: &dyn Fn(&Sample) -> f64| mine.iter().map(|s| f(s)).collect::<Vec<_>>();
            let ratio = median_ci(&col(&|s| s.wrk.rps() / s.untraced.rps().max(1e-9))).unwrap();
            // Each server had about half the CPU: its CPU per request is half a second per req/s.
            let added = col(&|s| 0.5e6 * (1.0 / s.wrk.rps().max(1e-9) - 1.0 / s.untraced.rps().max(1e-9)));
            let _ = writeln!(
                md,
                "| `{route}` | {} | {} | {} | **{:.3} [{:.3}, {:.3}]** | {} | {} | {} |",
                c.label(),
                cell(&col(&|s| s.untraced.rps()), 0, false),
                cell(&col(&|s| s.wrk.rps()), 0, false),
                ratio.median,
                ratio.lo,
                ratio.hi,
                cell(&col(&|s| s.wrk.p("50")), 2, false),
                cell(&col(&|s| s.wrk.p("99")), 2, false),
                cell(&added, 0, true),
            );
        }
    }
    for &c in configs {
        let bad: u64 = samples
            .iter()
            .filter(|s| s.config == c)
            .map(|s| s.wrk.errors + s.wrk.non_2xx + s.untraced.errors + s.untraced.non_2xx)
            .sum();
        if bad > 0 {
            let _ =
                writeln!(md, "\n**{}: {bad} requests failed or were not 2xx**: its figures are suspect.", c.label());
        }
    }
    md
}
