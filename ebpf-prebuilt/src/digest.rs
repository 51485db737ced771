//! Which files the eBPF object is built from, and their digest.
//!
//! The inputs, in this order:
//! 1. every file of the two crates the eBPF build compiles from this repository, sorted by path:
//!    `Cargo.toml`, `build.rs` if any, and everything under `src/`, of tracer-common and tracer-ebpf;
//! 2. the root Cargo.toml's `[profile.release...]` tables (aya-build always builds `--release`);
//! 3. the Cargo.lock entries of the crates.io packages tracer-ebpf depends on, directly or not
//!    ([`crate::lockfile`] says how they are found).
//!
//! Not in it: the toolchain (any nightly with bpf-linker makes a valid object) and the rest of
//! the workspace manifest. Each file goes in with its path and length, so a rename or a moved
//! byte changes the digest.
use sha2::{Digest, Sha256};
use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{lockfile, sha256_hex, Error};

/// The crates whose sources are hashed, relative to the repository root.
const CRATES: [&str; 2] = ["tracer-common", "tracer-ebpf"];

/// The files of step 1, relative to `root`, sorted.
pub fn input_files(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for krate in CRATES {
        for name in ["Cargo.toml", "build.rs"] {
            let file = Path::new(krate).join(name);
            if root.join(&file).is_file() {
                files.push(file);
            }
        }
        walk(root, &Path::new(krate).join("src"), &mut files)?;
    }
    files.sort();
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let read = |source| Error::Read { path: root.join(dir), source };
    for entry in fs::read_dir(root.join(dir)).map_err(read)? {
        let entry = entry.map_err(read)?;
        let rel = dir.join(entry.file_name());
        if entry.file_type().map_err(read)?.is_dir() {
            walk(root, &rel, files)?;
        } else {
            files.push(rel);
        }
    }
    Ok(())
}

/// The sha256 (hex) of the eBPF build's inputs in the tree at `root`.
pub fn inputs_digest(root: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    for file in input_files(root)? {
        let path = root.join(&file);
        let bytes = fs::read(&path).map_err(|source| Error::Read { path, source })?;
        hasher.update(format!("file {} {}\n", file.display(), bytes.len()));
        hasher.update(&bytes);
        hasher.update("\n");
    }
    let manifest = read(&root.join("Cargo.toml"))?;
    hasher.update("profiles\n");
    hasher.update(release_profiles(&manifest));
    let lock = read(&root.join("Cargo.lock"))?;
    hasher.update("lock\n");
    for entry in lockfile::ebpf_entries(&lock, "tracer-ebpf")? {
        hasher.update(entry);
        hasher.update("\n");
    }
    Ok(sha256_hex(&hasher.finalize()))
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })
}

/// The `[profile.release]` and `[profile.release.*]` tables of a manifest, verbatim.
fn release_profiles(manifest: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == "[profile.release]" || trimmed.starts_with("[profile.release.");
        }
        if inside && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str(trimmed);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_release_profiles_are_taken() {
        let manifest = "[workspace]\nmembers = []\n\n[profile.release]\nlto = true\n# why\n\n\
                        [profile.release.package.tracer-ebpf]\ndebug = 2\n[profile.demo]\ninherits = \"release\"\n";
        assert_eq!(
            release_profiles(manifest),
            "[profile.release]\nlto = true\n[profile.release.package.tracer-ebpf]\ndebug = 2\n"
        );
    }

    #[test]
    fn the_repository_s_inputs_are_the_two_crates_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let files = input_files(root).unwrap();
        assert!(files.contains(&PathBuf::from("tracer-ebpf/src/main.rs")), "{files:?}");
        assert!(files.contains(&PathBuf::from("tracer-common/Cargo.toml")), "{files:?}");
        assert!(files.iter().all(|f| f.starts_with("tracer-ebpf") || f.starts_with("tracer-common")), "{files:?}");
        assert!(!files.iter().any(|f| f.starts_with("tracer-ebpf/prebuilt")), "the object is not its own input");
        assert_eq!(inputs_digest(root).unwrap(), inputs_digest(root).unwrap());
    }
}
