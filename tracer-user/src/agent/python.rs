//! The agent's view of CPython in the processes it traces: which build each runs, and the GC
//! (and opt-in GIL) probes on each library file, attached once per file.
use super::{Agent, Python};
use crate::cpython::{self, layout::Layout};
use tracer_common::names::program;

impl Agent {
    /// Identifies the process's Python build and attaches the GC (and, if asked, GIL) probes to
    /// its library file the first time that file is seen.
    pub(super) fn inspect_python(&mut self, pid: u32) -> Python {
        match cpython::inspect(pid) {
            cpython::Support::Supported { build, layout, .. } => {
                use std::os::unix::fs::MetadataExt;
                let file = std::fs::metadata(&build.host_path).map(|m| (m.dev(), m.ino())).unwrap_or_default();
                if self.probed_files.insert(file) {
                    self.attach_python_probes(&build, layout);
                }
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

    fn attach_python_probes(&mut self, build: &cpython::build::PythonBuild, layout: &Layout) {
        let offset = |name: &str| build.symbol_offsets.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        let path = build.host_path.clone();
        // The compiler may have split the collector into clones (3.8: collect.constprop.0 and .1,
        // each on its own call path): probe every one.
        let collectors: Vec<u64> =
            build.symbol_offsets.iter().filter(|(n, _)| layout.is_gc_collect_symbol(n)).map(|(_, o)| *o).collect();
        for &off in &collectors {
            for prog in [program::GC_START, program::GC_RETURN] {
                if let Err(e) = self.probes.attach_uprobe(prog, &path, off) {
                    self.metrics.attach_error("gc_probe");
                    log::warn!("no GC pause metric for {}: {e}", path.display());
                }
            }
        }
        if collectors.is_empty() {
            // A stripped build: the collector's symbol is gone, but distro builds keep the
            // gc__start/gc__done USDT probes.
            let usdt = |n: &str| build.usdt.iter().find(|p| p.provider == "python" && p.name == n);
            match (usdt("gc__start"), usdt("gc__done")) {
                (Some(start), Some(done)) => {
                    for (prog, p) in [(program::GC_START, start), (program::GC_DONE, done)] {
                        if let Err(e) = self.probes.attach_usdt(prog, &path, p.pc_offset, p.semaphore_offset) {
                            self.metrics.attach_error("gc_probe");
                            log::warn!("no GC pause metric for {}: {e}", path.display());
                        }
                    }
                }
                _ => log::warn!(
                    "no GC pause metric for {}: it has neither the symbol {} nor gc__start/gc__done USDT probes; GC counts still come from memory",
                    path.display(),
                    layout.gc_collect_fn
                ),
            }
        }
        if self.config.cpython.gil_wait {
            match offset("PyEval_RestoreThread") {
                Some(off) => {
                    for prog in [program::GIL_REQUEST, program::GIL_TAKEN] {
                        if let Err(e) = self.probes.attach_uprobe(prog, &path, off) {
                            self.metrics.attach_error("gil_probe");
                            log::warn!("no GIL wait metric for {}: {e}", path.display());
                        }
                    }
                }
                None => {
                    log::warn!("no GIL wait metric for {}: PyEval_RestoreThread not found", path.display());
                }
            }
        }
    }
}
