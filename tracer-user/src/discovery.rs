//! Which processes to trace: the Instana host agent's Python autodiscovery rules. A process is a
//! candidate when its command line contains a whitelist entry (case-sensitive substring), and is
//! then ignored when it also contains a blacklist entry, or when it runs no Python: a substring
//! also matches `tail -f /var/log/uwsgi.log` or `cargo test --test uwsgi_spans`, and a traced
//! process's every descendant is traced too.
use std::collections::HashSet;
use std::os::unix::fs::DirEntryExt;

use pytracer_config::Discovery;
use serde::Serialize;

use crate::procinfo::ProcInfo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    Traced { reason: String },
    Ignored { reason: String },
}

impl Decision {
    pub fn is_traced(&self) -> bool {
        matches!(self, Decision::Traced { .. })
    }
}

/// What a process's executable says about the Python in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// A Python interpreter, uWSGI, or an executable that maps libpython.
    Python,
    /// Something else (its executable's name).
    Other(String),
    /// The executable cannot be read: the command line decides alone.
    Unknown,
}

/// The decision for one command line; None when the process is not a candidate at all.
pub fn decide(cmdline: &str, runs: &Runs, rules: &Discovery) -> Option<Decision> {
    let Some(white) = rules.whitelist.iter().find(|w| cmdline.contains(w.as_str())) else {
        return (*runs == Runs::Python)
            .then(|| Decision::Ignored { reason: "no whitelist entry in the command line".into() });
    };
    if let Some(black) = rules.blacklist.iter().find(|b| cmdline.contains(b.as_str())) {
        return Some(Decision::Ignored { reason: format!("command line contains blacklisted \"{black}\"") });
    }
    if let Runs::Other(exe) = runs {
        return Some(Decision::Ignored {
            reason: format!(
                "command line contains whitelisted \"{white}\", but {exe} is neither Python nor uWSGI and maps no libpython"
            ),
        });
    }
    Some(Decision::Traced { reason: format!("command line contains whitelisted \"{white}\"") })
}

/// Whether process `pid` (its executable's file name `exe`) runs Python. The libpython check
/// reads /proc/PID/maps, so it is made only for a whitelisted command line whose executable's
/// name says neither.
fn runs(pid: u32, exe: Option<String>, cmdline: &str, rules: &Discovery) -> Runs {
    let Some(exe) = exe else { return Runs::Unknown };
    if exe.starts_with("python") || exe.contains("uwsgi") {
        return Runs::Python;
    }
    let whitelisted = rules.whitelist.iter().any(|w| cmdline.contains(w.as_str()));
    let maps_libpython =
        whitelisted && std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("/libpython"));
    if maps_libpython {
        Runs::Python
    } else {
        Runs::Other(exe)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub pid: u32,
    pub ppid: u32,
    pub cmdline: String,
    #[serde(flatten)]
    pub decision: Decision,
    /// The Python build the process runs, or why it cannot be read (traced candidates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonSummary>,
}

/// What `discover` says of a process's Python build.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PythonSummary {
    Supported {
        version: String,
        version_source: String,
        linkage: String,
        stripped: bool,
        free_threaded: bool,
        usdt_probes: usize,
        path: String,
        /// Where the interpreter offsets come from: the repo's table or `_Py_DebugOffsets`.
        offsets: String,
        /// The handler's code on spans: "yes", or why not.
        stack_walk: String,
        /// `_PyEval_EvalFrameDefault` starts with endbr64 (its probe then goes 4 bytes in).
        eval_frame_endbr64: bool,
        /// The app's routes: "flask, 12 rules (gapp:app)", or why there are none (a master
        /// that has not loaded the app, Django before its first request).
        routes: String,
    },
    Unsupported {
        unsupported: String,
    },
}

impl PythonSummary {
    pub fn of(pid: u32) -> PythonSummary {
        match crate::cpython::inspect(pid) {
            crate::cpython::Support::Supported { build, layout, layout_source } => PythonSummary::Supported {
                stack_walk: match crate::cpython::walk::offsets(&build, layout) {
                    Ok(_) if build.symbol_offset(crate::cpython::build::EVAL_FRAME_SYMBOL).is_some() => "yes".into(),
                    Ok(_) => format!("no: no {} symbol", crate::cpython::build::EVAL_FRAME_SYMBOL),
                    Err(e) => format!("no: {e}"),
                },
                offsets: layout_source.as_str().into(),
                eval_frame_endbr64: build.eval_frame_endbr64,
                routes: match crate::routes::read::read(pid) {
                    Ok((t, _)) => format!("{}, {} rules ({})", t.framework.as_str(), t.len(), t.found_at),
                    Err(e) => format!("none: {e}"),
                },
                version: build.version.to_string(),
                version_source: format!("{:?}", build.version_source),
                linkage: format!("{:?}", build.kind).to_lowercase(),
                stripped: build.stripped,
                free_threaded: build.free_threaded,
                usdt_probes: build.usdt.len(),
                path: build.mapped_path.display().to_string(),
            },
            crate::cpython::Support::Unsupported { reason, .. } => PythonSummary::Unsupported { unsupported: reason },
        }
    }

    /// One short column for the table.
    pub fn short(&self) -> String {
        match self {
            PythonSummary::Supported { version, linkage, stripped, usdt_probes, .. } => {
                format!(
                    "{version} {linkage}{}{}",
                    if *stripped { " stripped" } else { "" },
                    if *usdt_probes > 0 { " usdt" } else { "" }
                )
            }
            PythonSummary::Unsupported { .. } => "unsupported".into(),
        }
    }
}

/// Scans /proc. The agent itself is never a candidate. `describe_python` identifies each traced
/// candidate's Python build (an ELF parse per process): for `discover`, not for `run`'s rescans.
pub fn scan(rules: &Discovery, describe_python: bool) -> Vec<Candidate> {
    let me = std::process::id();
    let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
    let mut out: Vec<Candidate> = all
        .filter_map(Result::ok)
        .filter(|p| p.pid as u32 != me)
        .filter_map(|p| ProcInfo::read_identity(p.pid as u32).ok())
        .filter(|p| !p.cmdline.is_empty())
        .filter_map(|p| {
            let cmdline = p.cmdline_string();
            decide(&cmdline, &runs(p.pid, p.exe_name(), &cmdline, rules), rules).map(|decision| {
                let python = (describe_python && decision.is_traced()).then(|| PythonSummary::of(p.pid));
                Candidate { pid: p.pid, ppid: p.ppid, cmdline, decision, python }
            })
        })
        .collect();
    out.sort_by_key(|c| c.pid);
    out
}

/// `run`'s rescans, and what they remember between two: which /proc entries are kernel threads
/// (or zombies), whose command line stays empty for as long as their pid lives. A host has
/// hundreds of kernel threads, most of what a rescan used to read.
#[derive(Default)]
pub struct Rescanner {
    /// By (pid, inode of /proc/PID): a reused pid is a new /proc entry with a new inode.
    blank: HashSet<(u32, u64)>,
    buf: Vec<u8>,
}

impl Rescanner {
    /// The processes `scan` would say are traced, as (pid, command line), by pid, leaving out
    /// those `known` says are traced already. Whether a process is traced depends on its command
    /// line alone, so this reads only that (one file per process, not `scan`'s stat, command line
    /// and executable link): a rescan every 2 s read every process on the machine three times.
    pub fn scan_traced(&mut self, rules: &Discovery, known: impl Fn(u32) -> bool) -> Vec<(u32, String)> {
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut blank = HashSet::with_capacity(self.blank.len());
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let key = (pid, entry.ino());
            if pid == me || known(pid) {
                continue;
            }
            if self.blank.contains(&key) {
                blank.insert(key);
                continue;
            }
            let Some(cmdline) = cmdline_of(pid, &mut self.buf) else {
                // A process in the middle of an exec can show an empty command line for a moment;
                // a kernel thread (or a zombie) is the one without an executable as well.
                let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
                if exe.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                    blank.insert(key);
                }
                continue;
            };
            if is_traced(pid, &cmdline, rules) {
                out.push((pid, cmdline));
            }
        }
        // Entries gone from /proc are forgotten: the set stays the size of the process table.
        self.blank = blank;
        out.sort_by_key(|c| c.0);
        out
    }

    /// The command line of process `pid` when `scan` would say it is traced, read now: for a
    /// process that has just executed a new program (the kernel tells its exec).
    pub fn check(&mut self, pid: u32, rules: &Discovery) -> Option<String> {
        let cmdline = cmdline_of(pid, &mut self.buf)?;
        is_traced(pid, &cmdline, rules).then_some(cmdline)
    }
}

/// `decide`'s verdict for a process with a readable command line. The executable is looked at
/// only for a whitelisted command line (a few processes).
fn is_traced(pid: u32, cmdline: &str, rules: &Discovery) -> bool {
    if !rules.whitelist.iter().any(|w| cmdline.contains(w.as_str())) {
        return false;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()));
    decide(cmdline, &runs(pid, exe, cmdline, rules), rules).is_some_and(|d| d.is_traced())
}

/// /proc/PID/cmdline's arguments joined by spaces, as `ProcInfo::cmdline_string` gives them
/// (empty arguments left out); None when unreadable, not UTF-8 or empty. Read into `buf`, kept
/// between calls: /proc answers a read with all it has up to the size asked, so a short read is
/// the end, and one read (no size query, no read of the end) does for most command lines.
fn cmdline_of(pid: u32, buf: &mut Vec<u8>) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).ok()?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    let raw = std::str::from_utf8(&buf[..len]).ok()?;
    let joined = raw.split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_traced_agrees_with_scan() {
        // A Python child whose command line no other process has.
        let arg = format!("1000.{}", std::process::id());
        let mut child =
            // Debian's own, not a pyenv shim that executes another program under that name.
            std::process::Command::new("/usr/bin/python3").args(["-c", "import time; time.sleep(100)", &arg]).spawn().unwrap();
        let cmdline = format!("/usr/bin/python3 -c import time; time.sleep(100) {arg}");
        // Until the child has executed python3, /proc shows this test's own command line: the
        // scans below would race the exec (one saw the child, the next did not, on a busy CI).
        let proc_cmdline = format!("/proc/{}/cmdline", child.id());
        for _ in 0..500 {
            if std::fs::read(&proc_cmdline).is_ok_and(|c| c.windows(arg.len()).any(|w| w == arg.as_bytes())) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let rules = Discovery { whitelist: vec![cmdline.clone()], ..Discovery::default() };
        let full: Vec<(u32, String)> =
            scan(&rules, false).into_iter().filter(|c| c.decision.is_traced()).map(|c| (c.pid, c.cmdline)).collect();
        let mut rescanner = Rescanner::default();
        let quick = rescanner.scan_traced(&rules, |_| false);
        // The second scan skips the kernel threads the first found, and what `known` names.
        let again = rescanner.scan_traced(&rules, |_| false);
        let known = rescanner.scan_traced(&rules, |pid| pid == child.id());
        let checked = rescanner.check(child.id(), &rules);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(checked.as_deref(), Some(cmdline.as_str()));
        assert_eq!(quick, vec![(child.id(), cmdline)]);
        assert_eq!(quick, full);
        assert_eq!(again, quick);
        assert_eq!(known, vec![]);
    }

    fn rules() -> Discovery {
        Discovery::default()
    }

    const PY: &Runs = &Runs::Python;

    fn other(exe: &str) -> Runs {
        Runs::Other(exe.into())
    }

    #[test]
    fn whitelist_then_blacklist() {
        let d = decide("/v/bin/python /v/bin/gunicorn app:app", PY, &rules()).unwrap();
        assert_eq!(d, Decision::Traced { reason: "command line contains whitelisted \"gunicorn\"".into() });
        let d = decide("pipenv run gunicorn app:app", &other("pipenv"), &rules()).unwrap();
        assert_eq!(d, Decision::Ignored { reason: "command line contains blacklisted \"pipenv\"".into() });
        assert_eq!(decide("/usr/bin/uwsgi --http :80", PY, &rules()).map(|d| d.is_traced()), Some(true));
    }

    #[test]
    fn case_sensitive_substring() {
        assert_eq!(decide("/opt/Gunicorn/run", &other("run"), &rules()), None);
        assert_eq!(decide("/x/mygunicornwrapper", &Runs::Unknown, &rules()).map(|d| d.is_traced()), Some(true));
        assert_eq!(decide("python manage.py runserver", PY, &rules()).map(|d| d.is_traced()), Some(false));
    }

    #[test]
    fn a_whitelisted_command_line_without_python_is_ignored() {
        for (cmdline, exe) in [("tail -f /var/log/uwsgi.log", "tail"), ("cargo test --test uwsgi_spans", "cargo")] {
            let d = decide(cmdline, &other(exe), &rules()).unwrap();
            assert_eq!(
                d,
                Decision::Ignored {
                    reason: format!(
                        "command line contains whitelisted \"uwsgi\", but {exe} is neither Python nor uWSGI and maps no libpython"
                    )
                }
            );
        }
    }

    #[test]
    fn python_without_whitelist_entry_is_listed_as_ignored() {
        let d = decide("python3 worker.py", PY, &rules()).unwrap();
        assert_eq!(d, Decision::Ignored { reason: "no whitelist entry in the command line".into() });
        assert_eq!(decide("bash", &other("bash"), &rules()), None);
    }
}
