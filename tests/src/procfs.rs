//! Just enough /proc reading to find a Gunicorn master's workers.

use std::fs;

/// Parent pid and one-letter state of a process, from /proc/<pid>/stat.
pub fn ppid_and_state(pid: u32) -> Option<(u32, char)> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((parent, state))
}

/// Live (non-zombie) children of `parent`, sorted. Scans /proc rather than reading
/// `task/*/children`, which needs CONFIG_PROC_CHILDREN and misses children of other threads.
pub fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, state)) = ppid_and_state(pid) {
            if ppid == parent && state != 'Z' && state != 'X' {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

pub fn is_alive(pid: u32) -> bool {
    matches!(ppid_and_state(pid), Some((_, s)) if s != 'Z' && s != 'X')
}
