//! Per-process figures from procfs, the same for every process whether Python or not. An agent
//! outside the process can give these per Gunicorn worker, which the Prometheus client's
//! multiprocess mode cannot.
use procfs::process::Process;

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
