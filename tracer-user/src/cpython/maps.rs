//! /proc/PID/maps: which files a process has mapped, where, and how the agent can open them.
use std::path::{Path, PathBuf};

/// One line of /proc/PID/maps that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub inode: u64,
    /// As the process sees it; without the ` (deleted)` suffix.
    pub path: String,
    pub deleted: bool,
}

/// Parse /proc/PID/maps, keeping only file-backed mappings.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<MapEntry> {
    // address perms offset dev inode path — the path may contain spaces, so split off five
    // fields and keep the rest.
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.trim_start();
    if !path.starts_with('/') {
        return None; // anonymous, [heap], [vdso], ...
    }
    let (start, end) = fields[0].split_once('-')?;
    let (path, deleted) = strip_deleted(path);
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(fields[2], 16).ok()?,
        inode: fields[4].parse().ok()?,
        path: path.to_string(),
        deleted,
    })
}

pub(super) fn strip_deleted(path: &str) -> (&str, bool) {
    match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    }
}

/// How to recognize the executable's mapping: by path, or by inode when the path differs
/// (overlay file systems, namespaces).
#[derive(Debug, Clone, Default)]
pub struct ExeId {
    pub path: Option<String>,
    pub inode: Option<u64>,
}

impl ExeId {
    pub(super) fn of(proc_dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let link = proc_dir.join("exe");
        ExeId {
            path: std::fs::read_link(&link).ok().map(|p| strip_deleted(&p.to_string_lossy()).0.to_string()),
            inode: std::fs::metadata(&link).ok().map(|m| m.ino()),
        }
    }

    pub(super) fn matches(&self, entry: &MapEntry) -> bool {
        self.path.as_deref() == Some(entry.path.as_str()) || (entry.inode != 0 && self.inode == Some(entry.inode))
    }
}

/// The first mapping (lowest address, as maps is sorted) of the first file that `want` accepts.
pub(super) fn lowest_mapping(maps: &[MapEntry], want: impl Fn(&MapEntry) -> bool) -> Option<&MapEntry> {
    let first = maps.iter().find(|m| want(m))?;
    maps.iter().filter(|m| m.path == first.path).min_by_key(|m| m.start)
}

/// The lowest mapping of the executable, if the maps show it.
pub(super) fn executable<'m>(maps: &'m [MapEntry], exe: &ExeId) -> Option<&'m MapEntry> {
    lowest_mapping(maps, |m| exe.matches(m))
}

/// The lowest mapping of a `libpython3*` library, if one is mapped.
pub(super) fn libpython(maps: &[MapEntry]) -> Option<&MapEntry> {
    lowest_mapping(maps, |m| basename(&m.path).starts_with("libpython3"))
}

/// Where the agent can open a file the process has mapped. /proc/PID/root/<path> works for
/// chroots and containers; /proc/PID/map_files/ also works when the file was deleted or the maps
/// path is not valid under the process's root. The inode from maps picks the right one.
pub(crate) fn host_path(proc_dir: &Path, entry: &MapEntry) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let rooted = proc_dir.join("root").join(entry.path.trim_start_matches('/'));
    let by_map = proc_dir.join("map_files").join(format!("{:x}-{:x}", entry.start, entry.end));
    let candidates = [rooted.clone(), by_map];
    let same_file = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| entry.inode == 0 || m.ino() == entry.inode);
    candidates.into_iter().find(same_file).unwrap_or(rooted)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let text = "\
7f1c2a000000-7f1c2a086000 r--p 00000000 fd:01 1234 /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
7f1c2a086000-7f1c2a332000 r-xp 00086000 fd:01 1234 /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
55d0-55e0 r--p 00000000 fd:01 99 /srv/my app/python3.13 (deleted)
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[1].offset, 0x86000);
        assert_eq!(maps[1].inode, 1234);
        assert_eq!(maps[2].path, "/srv/my app/python3.13");
        assert!(maps[2].deleted);
    }
}
