//! Process life: which processes are traced, and what happens when one forks, executes another
//! program or exits. A traced process's resource (span attributes), metric labels and Python
//! build are decided here, once per process.
use crate::cpython::layout::Layout;
use crate::metrics::ProcLabels;
use crate::procinfo::{self, ProcInfo};
use crate::service;
use crate::spans::{semconv, Resource};

use super::{read_target, Agent};

/// A process being traced.
pub(super) struct Traced {
    /// Span resource attributes.
    pub(super) resource: Resource,
    /// Metric labels.
    pub(super) labels: ProcLabels,
    pub(super) python: Python,
}

/// What the agent can read of a traced process's interpreter.
#[derive(Clone)]
pub(super) enum Python {
    Supported {
        runtime_addr: u64,
        layout: &'static Layout,
        version: String,
    },
    /// Wire-only; the label is the `python_support` metric label.
    Unsupported {
        label: &'static str,
    },
}

impl Agent {
    pub(super) fn trace_tree(&mut self, pid: u32) -> anyhow::Result<()> {
        let info = read_target(pid)?;
        self.track(pid, pid, &info)?;
        for child in procinfo::descendants(&[pid], &procinfo::all_parents()) {
            if let Ok(info) = ProcInfo::read(child) {
                self.track(child, pid, &info)?;
            }
        }
        Ok(())
    }

    fn track(&mut self, pid: u32, root: u32, info: &ProcInfo) -> anyhow::Result<()> {
        self.probes.track(pid, root)?;
        // Now that its new connections are followed: the ones it already had.
        self.adopt_connections(pid);
        let python = self.inspect_python(pid);
        self.tls_inspect(pid);
        let traced = self.traced(info, pid == root, python);
        self.procs.insert(pid, traced);
        if pid != root {
            self.routes.forked(info.ppid, pid, info.cmdline_string());
        }
        Ok(())
    }

    fn traced(&mut self, info: &ProcInfo, master: bool, python: Python) -> Traced {
        let resource = service::resource(self.config.service.name.as_deref(), info);
        let labels = ProcLabels {
            service_name: resource[semconv::SERVICE_NAME].as_str().unwrap_or_default().to_string(),
            pid: info.pid,
            process_role: if master { "master" } else { "worker" }.into(),
            container: ProcLabels::container_of(&resource),
        };
        if let Python::Supported { version, .. } = &python {
            self.metrics.set_python_info(&labels, version);
        }
        Traced { resource: Resource::new(resource), labels, python }
    }

    pub(super) fn rescan(&mut self) {
        let procs = &self.procs;
        let found = self.rescanner.scan_traced(&self.config.discovery, |pid| procs.contains_key(&pid));
        for (pid, cmdline) in found {
            // A descendant of one found earlier in this same scan is traced with it.
            if self.procs.contains_key(&pid) {
                continue;
            }
            self.start_tracing(pid, &cmdline);
        }
    }

    /// Traces a process discovery picked, and its descendants.
    pub(super) fn start_tracing(&mut self, pid: u32, cmdline: &str) {
        match self.trace_tree(pid) {
            Ok(()) => log::info!("tracing pid {pid} ({cmdline})"),
            Err(e) => {
                // A process that exited between the scan and the attach is not an agent fault.
                let gone = procinfo::tgid_of(pid).is_none();
                self.metrics.attach_error(if gone { "process_gone" } else { "map_update" });
                log::warn!("cannot trace pid {pid}: {e:#}");
            }
        }
    }

    pub(super) fn pid_list(&self) -> String {
        let mut pids: Vec<_> = self.procs.keys().copied().collect();
        pids.sort_unstable();
        pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    pub(super) fn resolve(&mut self, pid: u32) {
        let info = ProcInfo::read(pid).unwrap_or(ProcInfo { pid, ..Default::default() });
        let python = self.inspect_python(pid);
        self.tls_inspect(pid);
        let traced = self.traced(&info, false, python);
        self.procs.insert(pid, traced);
    }

    pub(super) fn on_fork(&mut self, parent: u32, child: u32) {
        // The fork tracepoint also fires for new threads; only processes matter here.
        match procinfo::tgid_of(child) {
            Some(tgid) if tgid != child => return,
            _ => {}
        }
        // A forked child has its parent's address space: same interpreter, same addresses.
        let python = self.procs.get(&parent).map_or(Python::Unsupported { label: "not_python" }, |p| p.python.clone());
        if let Some(site) = self.frame_eval_site_of(parent) {
            self.frame_eval_site(child, site);
        }
        // Read before anything slower (attaching its TLS probes): a short-lived child may be a
        // zombie by then, whose command line and executable are gone.
        let info = ProcInfo::read(child).ok().filter(|i| !i.cmdline.is_empty());
        self.tls_forked(parent, child);
        self.python_forked(parent, child);
        let traced = if let Some(info) = info {
            self.traced(&info, false, python)
        } else {
            // Already gone: it looked like its parent.
            let parent = self.procs.get(&parent);
            let mut resource = parent.map(|p| (*p.resource).clone()).unwrap_or_default();
            resource.insert(semconv::PROCESS_PID.into(), child.into());
            let resource = Resource::new(resource);
            let service_name = parent.map(|p| p.labels.service_name.clone()).unwrap_or_default();
            let container = parent.map(|p| p.labels.container.clone()).unwrap_or_default();
            Traced {
                resource,
                labels: ProcLabels { service_name, pid: child, process_role: "worker".into(), container },
                python,
            }
        };
        self.procs.insert(child, traced);
        // The child runs its parent's program until it executes another.
        let cmdline = ProcInfo::read_identity(child).map(|i| i.cmdline_string()).unwrap_or_default();
        self.routes.forked(parent, child, cmdline);
        log::info!("following pid {child} (forked by {parent})");
    }

    /// Same pid, new program: its Python build, addresses and command line are all new.
    pub(super) fn on_exec(&mut self, tgid: u32) {
        let Some(old) = self.procs.get(&tgid) else {
            self.exec_seen(tgid);
            return;
        };
        let master = old.labels.process_role == "master";
        let info = ProcInfo::read(tgid).unwrap_or(ProcInfo { pid: tgid, ..Default::default() });
        self.frame_eval_forget(tgid);
        self.tls_forget(tgid);
        self.python_forget(tgid);
        self.code_cache.forget(tgid);
        self.profile_forget(tgid);
        self.routes.forget(tgid);
        let python = self.inspect_python(tgid);
        self.tls_inspect(tgid);
        let traced = self.traced(&info, master, python);
        self.procs.insert(tgid, traced);
        log::info!("pid {tgid} executed {}", info.cmdline_string());
    }

    /// `at_ns`: when it exited (kernel clock).
    pub(super) fn on_exit(&mut self, tgid: u32, at_ns: u64) {
        let keys: Vec<_> = self.server.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            if let Some(mut conn) = self.remove_conn(k) {
                let out = conn.http.on_close();
                self.settle(k, &mut conn, out);
            }
        }
        self.probes.forget_connections(tgid);
        self.server.listeners.retain(|k, _| k.0 != tgid);
        self.forget_clients(tgid, at_ns);
        self.ids.assigned.retain(|k, _| k.0 != tgid);
        self.frame_eval_forget(tgid);
        self.tls_forget(tgid);
        self.python_forget(tgid);
        self.code_cache.forget(tgid);
        self.profile_forget(tgid);
        self.samples.forget(tgid);
        self.routes.forget(tgid);
        if self.procs.remove(&tgid).is_some() {
            self.metrics.process_exited(tgid);
            log::info!("pid {tgid} exited; still tracing {} processes", self.procs.len());
        }
    }
}
