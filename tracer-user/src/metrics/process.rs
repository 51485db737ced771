//! Per-process figures from procfs, the same for every process whether Python or not. An agent
//! outside the process can give these per Gunicorn worker, which the Prometheus client's
//! multiprocess mode cannot.
use std::collections::HashMap;

use procfs::process::Process;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

use super::{with_kind, ModeLabels, ProcKindLabels, ProcLabels};

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub user_s: f64,
    pub system_s: f64,
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub voluntary: u64,
    pub involuntary: u64,
    pub major_faults: u64,
    pub minor_faults: u64,
}

pub fn sample(pid: u32) -> Option<Sample> {
    let p = Process::new(pid as i32).ok()?;
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    Some(Sample {
        user_s: stat.utime as f64 / ticks,
        system_s: stat.stime as f64 / ticks,
        rss_bytes: stat.rss * procfs::page_size(),
        virtual_bytes: stat.vsize,
        threads: stat.num_threads.max(0) as u64,
        open_fds: p.fd_count().unwrap_or(0) as u64,
        voluntary: status.voluntary_ctxt_switches.unwrap_or(0),
        involuntary: status.nonvoluntary_ctxt_switches.unwrap_or(0),
        major_faults: stat.majflt,
        minor_faults: stat.minflt,
    })
}

type F64Counter = Counter<f64, std::sync::atomic::AtomicU64>;

/// The procfs families, filled when a scrape asks for them rather than on a timer: reading every
/// traced process's stat, status and fd directory once a second was a fifth of an idle agent's
/// CPU, for figures a scrape every 15 s reads once. Sampled at the scrape, they are also fresher.
/// Shared (behind a mutex) between the agent, which says which processes are traced, and the
/// metrics server, which samples them before it encodes.
#[derive(Default)]
pub struct ProcessSampler {
    pub(super) cpu_time: Family<ProcKindLabels, F64Counter>,
    pub(super) memory_usage: Family<ProcLabels, Gauge>,
    pub(super) memory_virtual: Family<ProcLabels, Gauge>,
    pub(super) thread_count: Family<ProcLabels, Gauge>,
    pub(super) open_fds: Family<ProcLabels, Gauge>,
    pub(super) context_switches: Family<ProcKindLabels, Counter>,
    pub(super) paging_faults: Family<ProcKindLabels, Counter>,
    pub(super) agent_cpu: Family<ModeLabels, F64Counter>,
    pub(super) agent_memory: Gauge,
    /// The traced processes, as the agent last said.
    live: Vec<ProcLabels>,
    /// Last sample per pid: counters grow by the difference.
    last: HashMap<u32, Sample>,
    last_agent: Sample,
}

impl ProcessSampler {
    /// The processes the next sample reads.
    pub fn set_live(&mut self, procs: &[ProcLabels]) {
        if self.live != procs {
            self.live = procs.to_vec();
        }
    }

    /// Reads procfs for every traced process and the agent itself.
    pub fn sample(&mut self) {
        for p in &self.live {
            let Some(s) = sample(p.pid) else { continue };
            let prev = self.last.get(&p.pid).copied().unwrap_or_default();
            self.cpu_time.get_or_create(&with_kind(p, "cpu_mode", "user")).inc_by((s.user_s - prev.user_s).max(0.0));
            self.cpu_time
                .get_or_create(&with_kind(p, "cpu_mode", "system"))
                .inc_by((s.system_s - prev.system_s).max(0.0));
            let switches =
                [("voluntary", s.voluntary, prev.voluntary), ("involuntary", s.involuntary, prev.involuntary)];
            for (t, now, before) in switches {
                self.context_switches.get_or_create(&with_kind(p, "type", t)).inc_by(now.saturating_sub(before));
            }
            let faults = [("major", s.major_faults, prev.major_faults), ("minor", s.minor_faults, prev.minor_faults)];
            for (t, now, before) in faults {
                self.paging_faults.get_or_create(&with_kind(p, "type", t)).inc_by(now.saturating_sub(before));
            }
            self.memory_usage.get_or_create(p).set(s.rss_bytes as i64);
            self.memory_virtual.get_or_create(p).set(s.virtual_bytes as i64);
            self.thread_count.get_or_create(p).set(s.threads as i64);
            self.open_fds.get_or_create(p).set(s.open_fds as i64);
            self.last.insert(p.pid, s);
        }
        if let Some(s) = sample(std::process::id()) {
            let prev = self.last_agent;
            self.agent_cpu
                .get_or_create(&ModeLabels { cpu_mode: "user".into() })
                .inc_by((s.user_s - prev.user_s).max(0.0));
            self.agent_cpu
                .get_or_create(&ModeLabels { cpu_mode: "system".into() })
                .inc_by((s.system_s - prev.system_s).max(0.0));
            self.agent_memory.set(s.rss_bytes as i64);
            self.last_agent = s;
        }
    }

    /// Removes an exited process's series.
    pub fn forget(&mut self, p: &ProcLabels) {
        self.live.retain(|l| l.pid != p.pid);
        self.last.remove(&p.pid);
        for g in [&self.memory_usage, &self.memory_virtual, &self.thread_count, &self.open_fds] {
            g.remove(p);
        }
        for k in ["user", "system"] {
            self.cpu_time.remove(&with_kind(p, "cpu_mode", k));
        }
        for t in ["voluntary", "involuntary"] {
            self.context_switches.remove(&with_kind(p, "type", t));
        }
        for t in ["major", "minor"] {
            self.paging_faults.remove(&with_kind(p, "type", t));
        }
    }
}
