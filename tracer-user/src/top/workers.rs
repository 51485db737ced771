//! The workers `top` shows: CPU share and RSS from procfs, GC collections read from the
//! interpreter (as the metrics do), sampled once per refresh.
use std::collections::HashMap;
use std::time::Instant;

use crate::cpython::interpreter::Interpreter;
use crate::metrics::process;

#[derive(Debug, Clone)]
pub struct Worker {
    pub pid: u32,
    pub service: String,
    /// Share of one CPU since the previous refresh, in percent.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// Collections of every generation since the interpreter started; `None` when unreadable.
    pub gc_collections: Option<u64>,
    /// Its collections' pauses seen since `top` started (filled from the agent's GC probes).
    pub gc_pauses: super::stats::GcPauses,
}

#[derive(Default)]
pub struct Workers {
    last: HashMap<u32, (Instant, f64)>,
    interpreters: HashMap<u32, Option<Interpreter>>,
}

impl Workers {
    /// Figures for `pids` (with their service names) now; gone processes are left out.
    pub fn sample(&mut self, pids: &[(u32, String)]) -> Vec<Worker> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (pid, service) in pids {
            let Some(s) = process::sample(*pid) else {
                self.last.remove(pid);
                self.interpreters.remove(pid);
                continue;
            };
            let cpu = s.user_s + s.system_s;
            let cpu_percent = match self.last.insert(*pid, (now, cpu)) {
                Some((at, before)) if now > at => 100.0 * (cpu - before) / (now - at).as_secs_f64(),
                _ => 0.0,
            };
            let interp = self.interpreters.entry(*pid).or_insert_with(|| Interpreter::open(*pid).ok());
            let gc_collections =
                interp.as_ref().and_then(|i| i.gc_snapshot().ok()).map(|g| g.gc.iter().map(|s| s.collections).sum());
            out.push(Worker {
                pid: *pid,
                service: service.clone(),
                cpu_percent,
                rss_bytes: s.rss_bytes,
                gc_collections,
                gc_pauses: super::stats::GcPauses::default(),
            });
        }
        out
    }
}
