//! The Cargo.lock entries the eBPF object depends on.
//!
//! From tracer-ebpf's entry, every package reachable through `dependencies`, build and proc-macro
//! dependencies included (the lock file does not tell them apart, and they do shape the object),
//! without descending into the workspace's other path packages: their sources are hashed whole,
//! and tracer-common's lock dependencies are the agent's optional ones (its `user` feature, which
//! the eBPF build does not enable). An entry goes in verbatim, so a version or checksum change
//! makes the object stale.
use std::collections::BTreeSet;

use crate::Error;

struct Entry<'a> {
    name: &'a str,
    version: &'a str,
    /// None for a path package of the workspace.
    source: Option<&'a str>,
    dependencies: Vec<&'a str>,
    text: String,
}

fn parse(lock: &str) -> Vec<Entry<'_>> {
    let mut entries = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        // A block runs to the next table header ([metadata] in old lock files) or the end.
        let block = block.split("\n[").next().unwrap_or(block);
        let value = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"'))
        };
        let dependencies = block
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split(']').next().unwrap_or(""))
            .map(|list| list.split(',').map(|d| d.trim().trim_matches('"')).filter(|d| !d.is_empty()).collect())
            .unwrap_or_default();
        let text = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        entries.push(Entry {
            name: value("name").unwrap_or(""),
            version: value("version").unwrap_or(""),
            source: value("source"),
            dependencies,
            text,
        });
    }
    entries
}

/// The entries of `root` and everything it depends on (see the module doc), sorted.
pub(crate) fn ebpf_entries(lock: &str, root: &str) -> Result<Vec<String>, Error> {
    let entries = parse(lock);
    // A dependency is written `name`, or `name version` (or `name version (source)`) when the
    // lock holds several versions of it.
    let find = |dep: &str| {
        let mut words = dep.split_whitespace();
        let name = words.next().unwrap_or("");
        let version = words.next();
        entries
            .iter()
            .position(|e| e.name == name && version.is_none_or(|v| v == e.version))
            .ok_or_else(|| Error::NotInLock(dep.to_owned()))
    };
    let start = find(root)?;
    let mut seen = BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(i) = todo.pop() {
        for dep in &entries[i].dependencies {
            let d = find(dep)?;
            if entries[d].source.is_some() && seen.insert(d) {
                todo.push(d);
            }
        }
    }
    let mut texts: Vec<String> = seen.into_iter().filter(|&i| i != start).map(|i| entries[i].text.clone()).collect();
    texts.sort();
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"version = 4

[[package]]
name = "aya-ebpf"
version = "0.2.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aa"
dependencies = [
 "syn 2.0.1",
]

[[package]]
name = "libc"
version = "0.2.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "syn"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "syn"
version = "2.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "tracer-common"
version = "0.1.0"
dependencies = [
 "libc",
]

[[package]]
name = "tracer-ebpf"
version = "0.1.0"
dependencies = [
 "aya-ebpf",
 "tracer-common",
]
"#;

    #[test]
    fn the_closure_follows_crates_io_packages_by_version_and_stops_at_path_packages() {
        let entries = ebpf_entries(LOCK, "tracer-ebpf").unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.lines().nth(1).unwrap()).collect();
        assert_eq!(names, ["version = \"0.2.1\"", "version = \"2.0.1\""]);
        assert!(entries[0].starts_with("name = \"aya-ebpf\"") && entries[1].starts_with("name = \"syn\""));
    }

    #[test]
    fn a_missing_dependency_is_an_error() {
        let lock = LOCK.replace("name = \"aya-ebpf\"", "name = \"aya-bpf\"");
        assert!(matches!(ebpf_entries(&lock, "tracer-ebpf"), Err(Error::NotInLock(d)) if d == "aya-ebpf"));
    }
}
