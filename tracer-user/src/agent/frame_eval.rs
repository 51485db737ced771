//! When the stack-walking uprobe on `_PyEval_EvalFrameDefault` is attached, per traced process.
//! It traps ~120 times per Flask request, so by default it is attached only for short windows, and
//! not at all in processes whose route table already names each span's handler, nor in those
//! that have not served a connection (a Gunicorn master, a worker not yet given one);
//! `always` keeps it on. Per process (never for every process mapping the library), and a forked
//! child needs its own attachment: a per-process uprobe is not inherited.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pytracer_config::{FrameEval, FrameEvalMode};

use super::Agent;
use tracer_common::names::program;

use crate::bpf::probes::UprobeLink;

/// Where the probe goes in one process's interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Site {
    pub path: PathBuf,
    /// File offset of the first instruction after any endbr64.
    pub offset: u64,
}

#[derive(Default)]
pub(super) struct FrameEvalProbes {
    sites: HashMap<u32, Site>,
    links: HashMap<u32, UprobeLink>,
    /// Processes that accepted (or were adopted with) a connection: the only ones whose stacks
    /// can name a request's handler. The master's windows had been 2.4% of the agent's CPU
    /// under load (an attach and a detach every window) and traps in a process serving nothing.
    serving: HashSet<u32>,
    /// Sampled mode: when the current window closes, or when the next one opens.
    window_end: Option<Instant>,
    next_window: Option<Instant>,
    attach_errors: u64,
}

impl FrameEvalProbes {
    /// When the drain timer should fire next: at `at`, or earlier when an open window closes
    /// before (the probe costs the traced app on every hit, so a window ends on time) or the next
    /// one opens (a window opened at the next 1 s drain instead would be late by up to a second,
    /// and windows of 300 ms every second had covered 7% of the time instead of 30%).
    pub(super) fn timer_due(&self, at: Instant) -> Instant {
        self.window_end.or(self.next_window).map_or(at, |edge| at.min(edge))
    }

    fn on(&self, cfg: &FrameEval) -> bool {
        match cfg.mode {
            FrameEvalMode::Always => true,
            FrameEvalMode::Sampled => self.window_end.is_some(),
            FrameEvalMode::Off => false,
        }
    }
}

impl Agent {
    /// A process whose interpreter the walk can read: attach now if a window is open (or always).
    pub(super) fn frame_eval_site(&mut self, pid: u32, site: Site) {
        self.frame_eval.sites.insert(pid, site);
        if self.frame_eval.on(&self.config.cpython.frame_eval) && self.wants_window(pid) {
            self.frame_eval_attach(pid);
        }
    }

    /// Whether a sampled window is worth its traps in `pid`: only in a process that serves
    /// connections, and not where the route table already gives every span its handler, unless
    /// the configuration asks for the cross-check.
    fn wants_window(&self, pid: u32) -> bool {
        let cfg = &self.config.cpython.frame_eval;
        cfg.mode != FrameEvalMode::Sampled
            || (self.frame_eval.serving.contains(&pid) && (cfg.in_routed_processes || !self.routes.has_table(pid)))
    }

    /// `pid` has a server connection: from the next sampled window on, it is walked too.
    pub(super) fn frame_eval_serving(&mut self, pid: u32) {
        self.frame_eval.serving.insert(pid);
    }

    pub(super) fn frame_eval_site_of(&self, pid: u32) -> Option<Site> {
        self.frame_eval.sites.get(&pid).cloned()
    }

    pub(super) fn frame_eval_forget(&mut self, pid: u32) {
        self.frame_eval.sites.remove(&pid);
        self.frame_eval.serving.remove(&pid);
        if let Some(link) = self.frame_eval.links.remove(&pid) {
            self.probes.detach_uprobe(link);
        }
    }

    fn frame_eval_attach(&mut self, pid: u32) {
        if self.frame_eval.links.contains_key(&pid) {
            return;
        }
        let Some(site) = self.frame_eval.sites.get(&pid) else { return };
        match self.probes.attach_uprobe(program::PY_FRAME_EVAL, pid, &site.path, site.offset) {
            Ok(link) => {
                self.frame_eval.links.insert(pid, link);
            }
            Err(e) => {
                self.frame_eval.attach_errors += 1;
                self.metrics.attach_error("frame_eval_probe");
                if self.frame_eval.attach_errors <= 3 {
                    log::warn!("no handler code for pid {pid}: {e}");
                }
            }
        }
    }

    /// Opens and closes sampled windows; called from the drain timer (see `timer_due`).
    pub(super) fn frame_eval_windows(&mut self) {
        let cfg = self.config.cpython.frame_eval.clone();
        if cfg.mode != FrameEvalMode::Sampled {
            return;
        }
        let now = Instant::now();
        match self.frame_eval.window_end {
            Some(end) if now >= end => {
                self.frame_eval.window_end = None;
                self.frame_eval.next_window = Some(
                    (now + Duration::from_secs_f64(cfg.every_seconds))
                        .checked_sub(Duration::from_millis(cfg.window_ms))
                        .unwrap(),
                );
                let links: Vec<_> = self.frame_eval.links.drain().collect();
                for (_, link) in links {
                    self.probes.detach_uprobe(link);
                }
            }
            Some(_) => {}
            None => {
                // The first window opens a little after start, once the servers are found.
                let next = *self.frame_eval.next_window.get_or_insert(now + Duration::from_secs(1));
                if now >= next {
                    self.frame_eval.window_end = Some(now + Duration::from_millis(cfg.window_ms));
                    let pids: Vec<u32> =
                        self.frame_eval.sites.keys().copied().filter(|&pid| self.wants_window(pid)).collect();
                    for pid in pids {
                        self.frame_eval_attach(pid);
                    }
                }
            }
        }
    }
}
