//! The libssl probes of each traced process: where its OpenSSL is (crate::libssl), attached for
//! that process only (a probe for every process mapping libssl would trap in all of them), and a
//! forked child attached again (a per-process uprobe is not inherited).
//!
//! `ssl` is usually imported lazily (at the first HTTPS call, or when a worker loads its app), so
//! a process without OpenSSL is looked at again, with a doubling delay (1 s to 30 s).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracer_common::names::program;

use super::Agent;
use crate::bpf::probes::UprobeLink;
use crate::libssl::{self, Library};

const FIRST_RECHECK: Duration = Duration::from_secs(1);
const LAST_RECHECK: Duration = Duration::from_secs(30);

/// Which program goes on which function: (program, function, on its entry rather than past its
/// endbr64). Uretprobes go on the entry; every call shares one return program.
type Site = (&'static str, &'static str, bool);

/// OpenSSL 3.0 with its internal functions found (libssl's WRITE_INTERNAL): they take the _ex
/// functions' arguments, so the _ex entry programs serve them, and they see every SSL_write(_ex)
/// and SSL_read(_ex).
const INTERNAL_SITES: [Site; 5] = [
    (program::SSL_SET_FD, libssl::SSL_SET_FD, false),
    (program::SSL_WRITE_EX, libssl::WRITE_INTERNAL, true),
    (program::SSL_READ_EX, libssl::READ_INTERNAL, true),
    (program::SSL_RETURN, libssl::WRITE_INTERNAL, true),
    (program::SSL_RETURN, libssl::READ_INTERNAL, true),
];

/// Any other OpenSSL: the four public functions.
const PUBLIC_SITES: [Site; 9] = [
    (program::SSL_SET_FD, libssl::SSL_SET_FD, false),
    (program::SSL_READ, libssl::SSL_READ, false),
    (program::SSL_READ_EX, libssl::SSL_READ_EX, false),
    (program::SSL_WRITE, libssl::SSL_WRITE, false),
    (program::SSL_WRITE_EX, libssl::SSL_WRITE_EX, false),
    (program::SSL_RETURN, libssl::SSL_READ, true),
    (program::SSL_RETURN, libssl::SSL_READ_EX, true),
    (program::SSL_RETURN, libssl::SSL_WRITE, true),
    (program::SSL_RETURN, libssl::SSL_WRITE_EX, true),
];

/// The probe sites of one OpenSSL copy.
fn sites(lib: &Library) -> &'static [Site] {
    let internal = [libssl::WRITE_INTERNAL, libssl::READ_INTERNAL].iter().all(|n| lib.functions.contains_key(n));
    if internal {
        &INTERNAL_SITES
    } else {
        &PUBLIC_SITES
    }
}

#[derive(Default)]
pub(super) struct TlsProbes {
    finder: libssl::Finder,
    /// Each process's OpenSSL copies, once found.
    libraries: HashMap<u32, Vec<Library>>,
    links: HashMap<u32, Vec<UprobeLink>>,
    /// Processes without OpenSSL yet: when to look again, and the delay after that.
    pending: HashMap<u32, (Instant, Duration)>,
}

impl TlsProbes {
    /// Mapped files that could not be read to look for OpenSSL in them.
    pub(super) fn unreadable_files(&self) -> u64 {
        self.finder.unreadable
    }
}

impl Agent {
    /// A newly traced (or re-executed) process: its OpenSSL now, or a later look.
    pub(super) fn tls_inspect(&mut self, pid: u32) {
        match self.tls.finder.find(pid) {
            Ok(libs) if !libs.is_empty() => {
                self.tls.pending.remove(&pid);
                self.tls_attach(pid, libs);
            }
            Ok(_) => {
                let delay = self.tls.pending.get(&pid).map_or(FIRST_RECHECK, |(_, d)| (*d * 2).min(LAST_RECHECK));
                self.tls.pending.insert(pid, (Instant::now() + delay, delay));
            }
            Err(e) => {
                self.tls.pending.remove(&pid);
                log::debug!("pid {pid}: no TLS probes: {e}");
            }
        }
    }

    /// A forked child maps its parent's OpenSSL: the same sites, its own probes.
    pub(super) fn tls_forked(&mut self, parent: u32, child: u32) {
        match self.tls.libraries.get(&parent).cloned() {
            Some(libs) => self.tls_attach(child, libs),
            None => self.tls_inspect(child),
        }
    }

    /// Called once a second: processes whose look is due.
    pub(super) fn tls_recheck(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self.tls.pending.iter().filter(|(_, (at, _))| *at <= now).map(|(p, _)| *p).collect();
        for pid in due {
            if self.procs.contains_key(&pid) {
                self.tls_inspect(pid);
            } else {
                self.tls.pending.remove(&pid);
            }
        }
    }

    pub(super) fn tls_forget(&mut self, pid: u32) {
        self.tls.pending.remove(&pid);
        self.tls.libraries.remove(&pid);
        for link in self.tls.links.remove(&pid).unwrap_or_default() {
            self.probes.detach_uprobe(link);
        }
    }

    fn tls_attach(&mut self, pid: u32, libs: Vec<Library>) {
        let mut links = Vec::new();
        for lib in &libs {
            for &(prog, function, on_entry) in sites(lib) {
                let Some(f) = lib.functions.get(function) else { continue };
                let offset = if on_entry { f.entry } else { f.after_endbr64 };
                match self.probes.attach_uprobe(prog, pid, &lib.path, offset) {
                    Ok(link) => links.push(link),
                    Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                        // A short-lived child that exited before its probes went on: nothing of
                        // it is left unseen, so it is no attach error. The probes it did get go.
                        for link in links {
                            self.probes.detach_uprobe(link);
                        }
                        return;
                    }
                    Err(e) => {
                        self.metrics.attach_error("tls_probe");
                        log::warn!("pid {pid}: HTTPS stays unparsed: {e}");
                    }
                }
            }
            log::info!("pid {pid}: TLS probes on {}", lib.path.display());
        }
        self.tls.links.entry(pid).or_default().extend(links);
        self.tls.libraries.insert(pid, libs);
    }
}
