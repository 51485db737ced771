//! Where things are: the repository, its virtualenv, the built agent, cargo's binaries.
use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

/// CPython series of the test and demo virtualenv.
pub const PYTHON_SERIES: &str = "3.11";

pub fn repo_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent directory").to_path_buf()
}

pub fn venv_dir() -> PathBuf {
    repo_root().join(".venvs").join(format!("cpython-{PYTHON_SERIES}"))
}

pub fn requirements_txt() -> PathBuf {
    repo_root().join("tests/apps/requirements.txt")
}

pub fn pytracer_bin() -> PathBuf {
    repo_root().join("target/release/pytracer")
}

pub fn home() -> Option<PathBuf> {
    env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// `$CARGO_HOME/bin`, where `cargo install` and rustup put binaries.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    match env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        Some(cargo_home) => Some(PathBuf::from(cargo_home).join("bin")),
        None => home().map(|h| h.join(".cargo/bin")),
    }
}

/// Finds an executable in PATH, then in cargo's bin directory (which a non-login shell, e.g. CI,
/// may not have in PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path).chain(cargo_bin_dir()).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// PATH with `dirs` in front, leaving out those already in it.
pub fn path_with(dirs: &[PathBuf]) -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let existing: Vec<PathBuf> = env::split_paths(&current).collect();
    let front: Vec<PathBuf> = dirs.iter().filter(|d| !existing.contains(d)).cloned().collect();
    env::join_paths(front.into_iter().chain(existing)).expect("PATH entries contain no ':'")
}
