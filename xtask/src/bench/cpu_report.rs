//! The markdown of the CPU-per-request measurements: side by side (cpu.rs), its split for the
//! cost budget, the system-wide share (system_wide.rs), and each kernel program's runs × cost.
use std::fmt::Write as _;

use super::configs::Config;
use super::cpu::{CpuSample, PairSample};
use super::side_by_side::Measured;
use super::stats::{cell, describe, median_ci};
use super::syscall_cost::Class;
use super::system_wide;

/// Where one round's added CPU per request went, X against A: the server's user time; its
/// system time beyond the kernel programs, against A's system time (the tracepoints' machinery:
/// records built for the programs, the slow syscall path); the programs; the agent; in all.
fn split(s: &PairSample) -> [f64; 5] {
    let (x, a) = (&s.x, &s.a);
    [
        x.server_user_us - a.server_user_us,
        (x.server_system_us - x.programs_us) - a.server_system_us,
        x.programs_us,
        x.agent_us,
        x.total_us() - a.total_us(),
    ]
}

pub fn markdown(m: &Measured, shared: &system_wide::Measured) -> String {
    let mut out = String::new();
    let p = &m.plan;
    let n = m.cpu.values().map(Vec::len).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "## CPU per request at a fixed rate, side by side\n\n\
         In each of {} rounds an untraced Gunicorn (A) and the configuration under test (X) run at the same time, \
         both started afresh, both (master and 2 sync workers each) pinned to CPU 0; the load generator, the agent \
         and the in-process agents' sinks are on CPU 1. One load thread sends {} requests/s to each, in turn \
         (A, X, A, X …; X first in even rounds), one request per connection, for {} s per route, so both see the \
         same moment of this drifting VM. Server time is the exact on-CPU time of the server's processes (schedstat), \
         split into user and system by the threads' raw user and system ticks over the window (taskstats; \
         /proc's are rescaled by the process's whole life), which come 250 a second: the split is the coarse \
         part, the total exact. X is charged besides with the agent's on-CPU time. These totals are taken \
         with `kernel.bpf_stats_enabled` off, as in production (on, it adds two clock reads to every program \
         run). Kernel programs come from a window of their own right after, stats on: the agent's programs' \
         run time per request of X over a quarter of the time of the pair again, less what they cost per \
         second while A alone is served as long (their early returns in A's and the rest of the machine's \
         syscalls, scaled to the pair's time): they run inside the syscalls, so they are part of system time. irq+softirq is the whole machine's, per request of either server. \
         \"Added\" is each round's (X ÷ A) − 1 of server + agent time. Figures are {}.\n",
        p.rounds,
        p.rate,
        p.cpu_seconds,
        describe(n)
    );
    let _ = writeln!(out, "| route | configuration | requests/round (A, X) | A µs | X server user µs | X server system µs | of which kernel programs µs | agent µs | X µs | added vs A | irq+softirq µs |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &route in &p.cpu_routes {
        for x in p.tested() {
            let Some(s) = m.cpu.get(&(route, x)) else { continue };
            let col = |f: &dyn Fn(&PairSample) -> f64| s.iter().map(f).collect::<Vec<_>>();
            let reqs = |f: fn(&PairSample) -> u64| s.iter().map(f).sum::<u64>() / s.len().max(1) as u64;
            let _ = writeln!(
                out,
                "| `{route}` | {} | {}, {} | {} | {} | {} | {} | {} | {} | {}% | {} |",
                x.label(),
                reqs(|r| r.a.requests),
                reqs(|r| r.x.requests),
                cell(&col(&|r| r.a.total_us()), 1, false),
                cell(&col(&|r| r.x.server_user_us), 1, false),
                cell(&col(&|r| r.x.server_system_us), 1, false),
                cell(&col(&|r| r.x.programs_us), 2, false),
                cell(&col(&|r| r.x.agent_us), 1, false),
                cell(&col(&|r| r.x.total_us()), 1, false),
                cell(&col(&PairSample::added_pct), 1, true),
                cell(&col(&|r| r.irq_us), 1, false),
            );
        }
    }

    out.push_str(&split_markdown(m, n));
    out.push_str(&shared_markdown(m, shared));

    for x in p.tested() {
        let Some(first) = p.cpu_routes.first() else { continue };
        let Some(last) = m.cpu.get(&(*first, x)).and_then(|s| s.last()) else { continue };
        if last.x.programs.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\nKernel programs of {} on `{first}` (last round), per request of X: runs per request × ns per run, net of \
             the runs while A alone was served (the load generator's `connect` stays: its entry program runs in the \
             client's syscalls, once per request to either server; on a busy machine the subtraction is noisy)\n",
            x.label()
        );
        let _ = writeln!(out, "| program | runs/request | ns/run | ns/request |\n|---|---|---|---|");
        for (name, (runs, ns)) in &last.x.programs {
            let _ = writeln!(out, "| `{name}` | {runs:.2} | {ns:.0} | {:.0} |", runs * ns);
        }
    }
    out
}

/// The split of the added CPU per request (see [`split`]), with the agent's peak RSS.
fn split_markdown(m: &Measured, n: usize) -> String {
    let mut out = String::new();
    let p = &m.plan;
    let _ = writeln!(
        out,
        "\n### Where the added CPU goes\n\n\
         Per request, each round's X against its A; {}, in µs and (after) as a share of A's CPU per request. Kernel \
         machinery is X's system time beyond its kernel programs' run time, against A's system time (which holds \
         the programs' early returns in A's syscalls: the share every process pays, below). The parts add up to \"added in all\" round by round (their medians need not). The agent's \
         peak RSS is the largest over rounds (VmHWM).\n",
        describe(n)
    );
    let _ = writeln!(out, "| route | configuration | server user | kernel machinery | kernel programs | agent | added in all | agent peak RSS MiB |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for &route in &p.cpu_routes {
        for x in p.tested() {
            let Some(s) = m.cpu.get(&(route, x)) else { continue };
            let part = |i: usize| {
                let us: Vec<f64> = s.iter().map(|r| split(r)[i]).collect();
                let pct: Vec<f64> = s.iter().map(|r| 100.0 * split(r)[i] / r.a.total_us().max(1e-9)).collect();
                format!("{} µs ({}%)", cell(&us, 1, true), cell(&pct, 1, true))
            };
            let rss = m
                .runs
                .iter()
                .filter(|r| r.config == x)
                .filter_map(|r| r.counts.agent_peak_rss_kib)
                .max()
                .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0));
            let _ = writeln!(
                out,
                "| `{route}` | {} | {} | {} | {} | {} | {} | {rss} |",
                x.label(),
                part(0),
                part(1),
                part(2),
                part(3),
                part(4)
            );
        }
    }

    out
}

/// The share every process pays: per syscall (the figure), directly (the cross-check), and
/// pytracer's added CPU with it.
fn shared_markdown(m: &Measured, shared: &system_wide::Measured) -> String {
    let mut out = String::new();
    let o = &shared.opts;
    let n = shared.samples.values().map(Vec::len).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\n### The share every process pays\n\n\
         pytracer's syscall tracepoints put every task on the slow syscall path, and in every process the hooked \
         syscalls build the tracepoints' records and run their programs, which return early: the side-by-side A \
         pays that too, so the ratios above leave it out. It is measured apart, sequentially: one untraced \
         Gunicorn pinned as above, with no agent, with `pytracer run` (every probe, a whitelist that matches no \
         process) running on CPU 1, and with no agent again, back to back in each of {} rounds. Figures are {}.\n\n\
         **Per syscall.** In each phase one syscall of each class (what pytracer attaches to it) is timed on CPU 0: \
         the fastest of 50 interleaved slices of 10,000 calls, in bursts before each route and after the last, so \
         that slices the VM or an interrupt took from, and this VM's spells of a second or more in which every \
         syscall is some 50 ns slower with or without a tracer, are left out. \"Added\" is the time with the agent − the mean of the two without. The classes come from the \
         agent's own table of tracepoints (`tracer_common::names::TRACEPOINTS`).\n",
        o.rounds,
        describe(n)
    );
    let _ = writeln!(out, "| class | timed syscall | no agent ns | idle agent ns | added ns |\n|---|---|---|---|---|");
    for class in Class::ALL {
        let col = |f: &dyn Fn(&system_wide::SyscallRound) -> f64| shared.syscalls.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            class.label(),
            class.representative(),
            cell(&col(&|r| r.off_ns(class)), 1, false),
            cell(&col(&|r| r.on[class.index()]), 1, false),
            cell(&col(&|r| r.added_ns(class)), 1, true),
        );
    }
    let _ = writeln!(
        out,
        "\nThe untraced server's syscalls per request, all its processes, counted by `strace -c -f` at {} requests/s \
         for {} s per route in the first round (after its timed phases), by class; times each round's added ns, that \
         is what the agent adds to a request's syscalls, and its share of that round's CPU per request without the \
         agent (below). The timed loops run with warm caches, so this is the floor of the share; the direct measure \
         after it bounds it from above.\n",
        system_wide::MIX_RATE,
        o.seconds
    );
    let _ = writeln!(
        out,
        "| route | syscalls/request | no program | entry | exit | both | added µs/request | share of CPU per request |\n|---|---|---|---|---|---|---|---|"
    );
    for &route in &o.routes {
        let per = shared.per_class(route);
        let names: Vec<String> = shared
            .mix
            .get(route)
            .into_iter()
            .flatten()
            .filter(|(_, calls)| **calls >= 0.05)
            .map(|(name, calls)| format!("{name} {calls:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "| `{route}` | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {}% |",
            names.join(", "),
            per[0],
            per[1],
            per[2],
            per[3],
            cell(&shared.per_syscall_us(route), 2, true),
            cell(&shared.per_syscall_pct(route), 2, true),
        );
    }

    out.push_str(&direct_markdown(shared));
    out.push_str(&total_markdown(m, shared));
    out
}

/// The share measured directly, on the server's own CPU per request: the cross-check.
fn direct_markdown(shared: &system_wide::Measured) -> String {
    let mut out = String::new();
    let o = &shared.opts;
    let _ = writeln!(
        out,
        "\n**Directly**, the server's own CPU per request at {} requests/s for {} s per route in each phase; \
         \"added\" is each round's with ÷ (mean of the two without) − 1, so a steady drift within the round cancels. \
         The slow path and the early returns run in the kernel, so \"in kernel time\" is the system time added, as a \
         share of the CPU per request without the agent. Phases seconds apart carry this VM's drift, which this \
         cannot resolve below a few percent: it is the cross-check, not the figure.\n",
        o.rate, o.seconds
    );
    let _ = writeln!(
        out,
        "| route | no agent µs | idle agent µs | server system µs (no agent → idle agent) | added | added in kernel time |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for &route in &o.routes {
        let Some(s) = shared.samples.get(route) else { continue };
        let col = |f: &dyn Fn(&system_wide::OffOn) -> f64| s.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "| `{route}` | {} | {} | {} → {} | {}% | {}% |",
            cell(&col(&|r| r.off_us(CpuSample::total_us)), 1, false),
            cell(&col(&|r| r.on.total_us()), 1, false),
            cell(&col(&|r| r.off_us(|s| s.server_system_us)), 1, false),
            cell(&col(&|r| r.on.server_system_us), 1, false),
            cell(&col(&system_wide::OffOn::added_pct), 1, true),
            cell(&col(&system_wide::OffOn::added_system_pct), 1, true),
        );
    }

    out
}

/// pytracer's added CPU per request in all: the side-by-side median plus the per-syscall share's,
/// the interval the sum of the two intervals' ends, whose confidence is at least 1 − (the two
/// intervals' miss chances) whatever the two measurements' dependence.
fn total_markdown(m: &Measured, shared: &system_wide::Measured) -> String {
    let mut out = String::new();
    let o = &shared.opts;
    let _ = writeln!(
        out,
        "\npytracer's added CPU per request in all: the side-by-side \"added\" plus the share every process pays, \
         per syscall. The interval adds the two intervals' ends; its confidence is at least \
         1 − (1 − c₁) − (1 − c₂), as given.\n"
    );
    let _ = writeln!(
        out,
        "| route | configuration | side by side | share every process pays, per syscall | added in all |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for &route in &o.routes {
        let Some(sw) = median_ci(&shared.per_syscall_pct(route)) else { continue };
        for x in m.plan.tested().filter(|x| matches!(x, Config::B | Config::C | Config::F | Config::G)) {
            let Some(sbs) = m
                .cpu
                .get(&(route, x))
                .and_then(|s| median_ci(&s.iter().map(PairSample::added_pct).collect::<Vec<_>>()))
            else {
                continue;
            };
            let conf = 100.0 * (1.0 - (1.0 - sbs.confidence) - (1.0 - sw.confidence));
            let _ = writeln!(
                out,
                "| `{route}` | {} | {:+.1}% [{:+.1}, {:+.1}] | {:+.2}% [{:+.2}, {:+.2}] | **{:+.1}% [{:+.1}, {:+.1}]** (≥ {conf:.1}%) |",
                x.label(),
                sbs.median,
                sbs.lo,
                sbs.hi,
                sw.median,
                sw.lo,
                sw.hi,
                sbs.median + sw.median,
                sbs.lo + sw.lo,
                sbs.hi + sw.hi,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: sums of values with few binary digits")]
    fn the_split_adds_up_to_the_added_cpu() {
        let a = CpuSample { requests: 10, server_user_us: 600.0, server_system_us: 100.0, ..Default::default() };
        let x = CpuSample {
            requests: 10,
            server_user_us: 610.0,
            server_system_us: 130.0,
            agent_us: 25.0,
            programs_us: 12.5,
            ..Default::default()
        };
        let parts = split(&PairSample { a, x, irq_us: 0.0, x_stats_requests: 0 });
        assert_eq!(parts, [10.0, 17.5, 12.5, 25.0, 65.0]);
        assert_eq!(parts[..4].iter().sum::<f64>(), parts[4]);
    }
}
