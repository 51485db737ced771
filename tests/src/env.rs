//! Where the harness finds its inputs, and whether a test may run at all.
//!
//! A missing prerequisite skips a test on a developer machine but fails it in CI: there
//! `PYTRACER_REQUIRE_PRIVILEGED=1` is set so that a green run cannot mean "nothing ran".

use std::io::Write;
use std::path::{Path, PathBuf};

/// The Cargo workspace root (parent of the tests crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests crate has a parent directory").to_path_buf()
}

/// The Python venv holding gunicorn and Flask: `$PYTRACER_VENV`, else `<root>/.venvs/cpython-3.11`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("PYTRACER_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join(".venvs").join("cpython-3.11"),
    }
}

pub fn gunicorn_bin() -> PathBuf {
    venv_dir().join("bin").join("gunicorn")
}

/// The agent under test: `$PYTRACER_BIN`, else `<root>/target/release/pytracer`.
pub fn pytracer_bin() -> PathBuf {
    match std::env::var_os("PYTRACER_BIN") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join("target").join("release").join("pytracer"),
    }
}

/// Directory holding `testapp.py` (Gunicorn is started with `--chdir` here).
pub fn apps_dir() -> PathBuf {
    workspace_root().join("tests").join("apps")
}

fn ci_requires_privileged() -> bool {
    std::env::var("PYTRACER_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// libtest names each test's thread after the test; fall back for other runners.
fn current_test_name() -> String {
    std::thread::current().name().filter(|n| *n != "main").unwrap_or("<unknown test>").to_string()
}

/// Skip (return false) or, under `PYTRACER_REQUIRE_PRIVILEGED=1`, panic when something is missing.
pub(crate) fn gate(missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    assert!(
        !ci_requires_privileged(),
        "privileged test cannot run: {reason}; CI requires it (PYTRACER_REQUIRE_PRIVILEGED=1)"
    );
    // Straight to fd 2 rather than eprintln!, which libtest captures and hides for passing
    // tests: a skip must be visible, or a green run could hide that nothing ran.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED: {}: {reason}", current_test_name());
    false
}

fn missing_venv() -> Vec<String> {
    let g = gunicorn_bin();
    if g.is_file() {
        vec![]
    } else {
        vec![format!("{} not found (set PYTRACER_VENV or run `cargo xtask setup`)", g.display())]
    }
}

/// True when end-to-end tests can run: root, the pytracer binary and the venv's gunicorn exist.
/// Use as `if !require_privileged() { return; }`.
pub fn require_privileged() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        missing.push(format!("not running as root (euid {euid})"));
    }
    let bin = pytracer_bin();
    if !bin.is_file() {
        missing.push(format!("{} not found (set PYTRACER_BIN or build with `cargo build --release`)", bin.display()));
    }
    missing.extend(missing_venv());
    gate(&missing)
}

/// The test app's virtualenv on Debian's python3.11 (static, stripped, with USDT probes):
/// `$PYTRACER_DEBIAN_VENV`, else `<root>/.venvs/debian-3.11`.
pub fn debian_venv_dir() -> PathBuf {
    match std::env::var_os("PYTRACER_DEBIAN_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join(".venvs").join("debian-3.11"),
    }
}

/// [`require_privileged`], plus the Debian-python virtualenv.
pub fn require_privileged_debian() -> bool {
    let g = debian_venv_dir().join("bin").join("gunicorn");
    if !g.is_file() {
        return gate(&[format!("{} not found (set PYTRACER_DEBIAN_VENV or run `cargo xtask setup`)", g.display())]);
    }
    require_privileged()
}

/// Like [`require_privileged`] but only needs the venv: for tests of the harness and the app.
pub fn require_venv() -> bool {
    gate(&missing_venv())
}

/// CPython series the interpreter tests cover, each in `.venvs/interp-<series>` (pyenv builds).
pub const INTERPRETER_SERIES: [&str; 6] = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"];

/// The virtualenv of one interpreter series, made by `cargo xtask setup`.
pub fn interpreter_venv_dir(series: &str) -> PathBuf {
    workspace_root().join(".venvs").join(format!("interp-{series}"))
}

/// [`require_privileged`], plus the virtualenv of every series in [`INTERPRETER_SERIES`] and of
/// 3.7 (the unsupported one). An absent interpreter is named in the skip (and fails CI).
pub fn require_interpreters() -> bool {
    let missing: Vec<String> = INTERPRETER_SERIES
        .iter()
        .chain(&["3.7"])
        .map(|s| interpreter_venv_dir(s).join("bin").join("gunicorn"))
        .filter(|g| !g.is_file())
        .map(|g| format!("{} not found (run `cargo xtask setup`)", g.display()))
        .collect();
    gate(&missing) && require_privileged()
}

/// The Debian chroots `cargo xtask setup` makes with debootstrap, outside the repository so a
/// fresh clone reuses them: `$PYTRACER_CHROOTS/<suite>`, else /var/cache/pytracer-chroots/<suite>.
/// trixie has CPython 3.13.5 in /opt/venv; sid has 3.14 in /opt/venv-3.14 and 3.15 in
/// /opt/venv-3.15. All are Debian's static, stripped, CET builds with USDT probes.
pub fn debian_chroot(suite: &str) -> PathBuf {
    match std::env::var_os("PYTRACER_CHROOTS") {
        Some(v) if !v.is_empty() => PathBuf::from(v).join(suite),
        _ => PathBuf::from("/var/cache/pytracer-chroots").join(suite),
    }
}

/// [`require_privileged`], plus these (chroot suite, virtualenv inside it).
pub fn require_chroot_venvs(venvs: &[(&str, &str)]) -> bool {
    let missing: Vec<String> = venvs
        .iter()
        .map(|(suite, venv)| debian_chroot(suite).join(venv.trim_start_matches('/')).join("bin/gunicorn"))
        .filter(|g| !g.is_file())
        .map(|g| format!("{} not found (run `cargo xtask setup`)", g.display()))
        .collect();
    gate(&missing) && require_privileged()
}

/// [`require_privileged`], plus the gunicorn of each of these virtualenvs (e.g. the route
/// tests' `.venvs/routes-3.11`).
pub fn require_venvs(venvs: &[PathBuf]) -> bool {
    let missing: Vec<String> = venvs
        .iter()
        .map(|v| v.join("bin").join("gunicorn"))
        .filter(|g| !g.is_file())
        .map(|g| format!("{} not found (run `cargo xtask setup`)", g.display()))
        .collect();
    gate(&missing) && require_privileged()
}
