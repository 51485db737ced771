//! The agent's view of CPython in the processes it traces: which build each runs, and the GC
//! (and opt-in GIL) probes of each traced process. They are attached for that process only: a
//! probe on a library file for every process would trap in every Python mapping the same file,
//! traced or not (and, for USDT, raise the semaphore in all of them); a forked child is attached
//! again, as a per-process uprobe is not inherited.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Agent, Python};
use crate::bpf::probes::{UprobeLink, UsdtLink};
use crate::cpython::{self, layout::Layout};
use tracer_common::names::program;

/// One probe of a Python build, by file offset.
#[derive(Debug, Clone, Copy)]
enum Site {
    Uprobe { program: &'static str, offset: u64, what: Metric },
    Usdt { program: &'static str, offset: u64, semaphore: u64 },
}

/// Which metric a probe serves: what a failed attach is counted as and says is missing.
#[derive(Debug, Clone, Copy)]
enum Metric {
    GcPause,
    GilWait,
}

impl Metric {
    fn attach_error(self) -> &'static str {
        match self {
            Metric::GcPause => "gc_probe",
            Metric::GilWait => "gil_probe",
        }
    }

    fn missing(self) -> &'static str {
        match self {
            Metric::GcPause => "no GC pause metric",
            Metric::GilWait => "no GIL wait metric",
        }
    }
}

/// One attached probe; a USDT link detaches when dropped.
enum Link {
    Uprobe(UprobeLink),
    Usdt(UsdtLink),
}

/// The probes of each traced process, and where they go in it.
#[derive(Default)]
pub(super) struct PythonProbes {
    /// Each library file's sites, by (device, inode): worked out (and any missing probe said)
    /// once per file, not once per process. Not by path: each process reaches the same file
    /// through its own /proc/PID/root.
    by_file: HashMap<(u64, u64), Rc<[Site]>>,
    /// Each process's library path and sites, for its forked children.
    of_pid: HashMap<u32, (PathBuf, Rc<[Site]>)>,
    links: HashMap<u32, Vec<Link>>,
}

impl Agent {
    /// Identifies the process's Python build and attaches its GC (and, if asked, GIL) probes.
    pub(super) fn inspect_python(&mut self, pid: u32) -> Python {
        match cpython::inspect(pid) {
            cpython::Support::Supported { build, layout, .. } => {
                use std::os::unix::fs::MetadataExt;
                let file = std::fs::metadata(&build.host_path).map(|m| (m.dev(), m.ino())).unwrap_or_default();
                let gil_wait = self.config.cpython.gil_wait;
                let sites = Rc::clone(
                    self.python_probes
                        .by_file
                        .entry(file)
                        .or_insert_with(|| python_sites(&build, layout, gil_wait).into()),
                );
                self.python_attach(pid, build.host_path.clone(), sites);
                self.prepare_stack_walk(pid, &build, layout);
                Python::Supported { runtime_addr: build.runtime_addr, layout, version: build.version.to_string() }
            }
            cpython::Support::Unsupported { reason, label } => {
                if label != "not_python" {
                    log::warn!("pid {pid}: {reason}");
                }
                Python::Unsupported { label }
            }
        }
    }

    /// A forked child maps its parent's interpreter: the same sites, its own probes.
    pub(super) fn python_forked(&mut self, parent: u32, child: u32) {
        if let Some((path, sites)) = self.python_probes.of_pid.get(&parent).cloned() {
            self.python_attach(child, path, sites);
        }
    }

    /// The process exited or executed another program: its probes go.
    pub(super) fn python_forget(&mut self, pid: u32) {
        self.python_probes.of_pid.remove(&pid);
        let links = self.python_probes.links.remove(&pid).unwrap_or_default();
        self.python_detach(links);
    }

    fn python_detach(&mut self, links: Vec<Link>) {
        for link in links {
            match link {
                Link::Uprobe(link) => self.probes.detach_uprobe(link),
                Link::Usdt(link) => drop(link),
            }
        }
    }

    fn python_attach(&mut self, pid: u32, path: PathBuf, sites: Rc<[Site]>) {
        // Looked at again (an event of a process not yet known): its probes are not doubled.
        self.python_forget(pid);
        let mut links = Vec::new();
        for &site in sites.iter() {
            let (attached, metric) = match site {
                Site::Uprobe { program, offset, what } => {
                    (self.probes.attach_uprobe(program, pid, &path, offset).map(Link::Uprobe), what)
                }
                Site::Usdt { program, offset, semaphore } => {
                    (self.probes.attach_usdt(program, pid, &path, offset, semaphore).map(Link::Usdt), Metric::GcPause)
                }
            };
            match attached {
                Ok(link) => links.push(link),
                // A short-lived child that exited before its probes went on: nothing of it is
                // left unseen, so it is no attach error. The probes it did get go.
                Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => {
                    self.python_detach(links);
                    return;
                }
                Err(e) => {
                    self.metrics.attach_error(metric.attach_error());
                    log::warn!("pid {pid}: {} for {}: {e}", metric.missing(), path.display());
                }
            }
        }
        self.python_probes.links.insert(pid, links);
        self.python_probes.of_pid.insert(pid, (path, sites));
    }

    /// Pushes the process's offsets to the kernel's stack walk and records where its
    /// frame-evaluation probe goes. A build the walk cannot read keeps wire-only spans.
    fn prepare_stack_walk(&mut self, pid: u32, build: &cpython::build::PythonBuild, layout: &Layout) {
        let offsets = match cpython::walk::offsets(build, layout) {
            Ok(o) => o,
            Err(e) => {
                log::warn!("pid {pid}: {e}");
                return;
            }
        };
        let Some(entry) = build.symbol_offset(cpython::build::EVAL_FRAME_SYMBOL) else {
            log::warn!(
                "pid {pid}: {} has no {} symbol; spans stay without handler code",
                build.host_path.display(),
                cpython::build::EVAL_FRAME_SYMBOL
            );
            return;
        };
        if let Err(e) = self.probes.set_py_offsets(pid, offsets) {
            log::warn!("pid {pid}: {e}");
            return;
        }
        // A probe on endbr64 itself costs ~8x more here than on the instruction after it.
        let offset = if build.eval_frame_endbr64 { entry + 4 } else { entry };
        self.frame_eval_site(pid, super::frame_eval::Site { path: build.host_path.clone(), offset });
    }
}

/// Where a build's GC (and, with `gil_wait`, GIL) probes go; what cannot be probed is said once
/// here, per library file.
fn python_sites(build: &cpython::build::PythonBuild, layout: &Layout, gil_wait: bool) -> Vec<Site> {
    let path = build.host_path.display();
    let mut sites = Vec::new();
    // The compiler may have split the collector into clones (3.8: collect.constprop.0 and .1,
    // each on its own call path): probe every one.
    for (_, offset) in build.symbol_offsets.iter().filter(|(n, _)| layout.is_gc_collect_symbol(n)) {
        for program in [program::GC_START, program::GC_RETURN] {
            sites.push(Site::Uprobe { program, offset: *offset, what: Metric::GcPause });
        }
    }
    if sites.is_empty() {
        // A stripped build: the collector's symbol is gone, but distro builds keep the
        // gc__start/gc__done USDT probes.
        let usdt = |n: &str| build.usdt.iter().find(|p| p.provider == "python" && p.name == n);
        match (usdt("gc__start"), usdt("gc__done")) {
            (Some(start), Some(done)) => {
                for (program, p) in [(program::GC_START, start), (program::GC_DONE, done)] {
                    sites.push(Site::Usdt { program, offset: p.pc_offset, semaphore: p.semaphore_offset });
                }
            }
            _ => log::warn!(
                "no GC pause metric for {path}: it has neither the symbol {} nor gc__start/gc__done USDT probes; GC counts still come from memory",
                layout.gc_collect_fn
            ),
        }
    }
    if gil_wait {
        match build.symbol_offsets.iter().find(|(n, _)| n == "PyEval_RestoreThread") {
            Some((_, offset)) => {
                for program in [program::GIL_REQUEST, program::GIL_TAKEN] {
                    sites.push(Site::Uprobe { program, offset: *offset, what: Metric::GilWait });
                }
            }
            None => log::warn!("no GIL wait metric for {path}: PyEval_RestoreThread not found"),
        }
    }
    sites
}
