//! What /proc says about a process, read once when it starts being traced.
use std::path::PathBuf;

use procfs::process::Process;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub cmdline: Vec<String>,
    /// Target of /proc/PID/exe (absent for kernel threads or when it cannot be read).
    pub exe: Option<PathBuf>,
    pub environ: Vec<(String, String)>,
    /// Its container and pod, when it runs in one (read with the environment: its fallbacks
    /// need it).
    pub container: Option<crate::container::Identity>,
}

impl ProcInfo {
    pub fn read(pid: u32) -> Result<ProcInfo, procfs::ProcError> {
        let mut info = ProcInfo::read_identity(pid)?;
        let p = Process::new(pid as i32)?;
        info.environ = p
            .environ()
            .map(|env| {
                env.into_iter()
                    .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        info.container = crate::container::read(pid, &info.environ);
        Ok(info)
    }

    /// Everything but the environment: what discovery needs of every process on each scan.
    pub fn read_identity(pid: u32) -> Result<ProcInfo, procfs::ProcError> {
        let p = Process::new(pid as i32)?;
        let stat = p.stat()?;
        Ok(ProcInfo {
            pid,
            ppid: stat.ppid as u32,
            cmdline: p.cmdline().unwrap_or_default(),
            exe: p.exe().ok(),
            environ: Vec::new(),
            container: None,
        })
    }

    pub fn cmdline_string(&self) -> String {
        self.cmdline.join(" ")
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.environ.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn exe_name(&self) -> Option<String> {
        self.exe.as_ref().and_then(|e| e.file_name()).map(|n| n.to_string_lossy().into_owned())
    }
}

/// The thread-group id of a task id, or None when the task is gone.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// Every live process as (pid, ppid).
pub fn all_parents() -> Vec<(u32, u32)> {
    let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
    all.filter_map(Result::ok).filter_map(|p| p.stat().ok().map(|s| (s.pid as u32, s.ppid as u32))).collect()
}

/// The descendants of `roots` (children, grandchildren, ...), from a (pid, ppid) list.
pub fn descendants(roots: &[u32], parents: &[(u32, u32)]) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in parents {
            if ppid == parent && !roots.contains(&pid) && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_walks_the_tree() {
        let parents = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (20, 1)];
        let mut d = descendants(&[10], &parents);
        d.sort_unstable();
        assert_eq!(d, [11, 12, 13]);
    }

    #[test]
    fn reads_own_process() {
        let me = ProcInfo::read(std::process::id()).unwrap();
        assert!(!me.cmdline.is_empty());
        assert_eq!(tgid_of(std::process::id()), Some(std::process::id()));
    }
}
