//! A Debian trixie chroot for the interpreter tests: Debian's own CPython 3.13 (static, stripped,
//! `_PyEval_EvalFrameDefault` starting with endbr64, USDT probes), the build a containerised
//! service on a current distribution runs. Made with debootstrap outside the repository
//! (/var/cache/pytracer-chroots), so fresh clones reuse it: it takes about 2 minutes and 0.6 GB.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{cmd, paths};

pub const TRIXIE: &str = "/var/cache/pytracer-chroots/trixie";
/// What debootstrap adds to the minimal base: the interpreter, venv, and a compiler for wheels
/// without a binary build.
const INCLUDE: &str = "python3,python3-dev,python3-venv,gcc,libc6-dev,libcrypt-dev,ca-certificates";
const MIRROR: &str = "http://deb.debian.org/debian";
const MARKER: &str = ".pytracer-setup";

fn requirements() -> PathBuf {
    paths::repo_root().join("tests/apps/requirements-interpreters.txt")
}

/// What is left to do: the marker holds the requirements the venv was made with.
pub fn plan() -> Result<Option<String>> {
    let wanted = fs::read_to_string(requirements()).context("reading tests/apps/requirements-interpreters.txt")?;
    let root = Path::new(TRIXIE);
    let done = fs::read_to_string(root.join(MARKER)).is_ok_and(|m| m == wanted) && root.join("opt/venv/bin/gunicorn").is_file();
    Ok((!done).then_some(wanted))
}

pub fn install(requirements_text: String) -> Result<()> {
    let root = Path::new(TRIXIE);
    let _ = fs::remove_file(root.join(MARKER));
    if !root.join("usr/bin/python3").is_file() {
        fs::create_dir_all(root.parent().expect("has a parent"))?;
        let mut boot = Command::new("debootstrap");
        boot.args(["--variant=minbase", &format!("--include={INCLUDE}"), "trixie"]).arg(root).arg(MIRROR).stdin(Stdio::null());
        eprintln!("[setup]   {}", cmd::describe(&boot));
        if let Err(e) = cmd::run(&mut boot) {
            // A half-made root would be taken for a finished one next time.
            let _ = fs::remove_dir_all(root);
            return Err(e);
        }
    }
    // pip verifies PyPI's certificate against the chroot's bundle; the host's is current.
    fs::copy("/etc/ssl/certs/ca-certificates.crt", root.join("etc/ssl/certs/ca-certificates.crt")).context("copying the CA bundle")?;
    fs::write(root.join("tmp/requirements-interpreters.txt"), &requirements_text)?;
    let _mounts = Mounts::new(root)?;
    let mut pip = Command::new("chroot");
    pip.arg(root)
        .args(["/bin/sh", "-c", "python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements-interpreters.txt"])
        // --no-cache-dir and a clean environment: no wheel built for another interpreter is reused.
        .env_remove("PIP_FIND_LINKS")
        .stdin(Stdio::null());
    eprintln!("[setup]   {}", cmd::describe(&pip));
    cmd::run(&mut pip)?;
    fs::write(root.join(MARKER), requirements_text).context("writing the chroot's marker")
}

/// /proc and /dev inside the chroot for as long as pip runs; unmounted on drop, error or not.
struct Mounts {
    points: Vec<PathBuf>,
}

impl Mounts {
    fn new(root: &Path) -> Result<Mounts> {
        let mut m = Mounts { points: Vec::new() };
        for (args, point) in [(vec!["-t", "proc", "proc"], "proc"), (vec!["--bind", "/dev"], "dev")] {
            let target = root.join(point);
            cmd::run(Command::new("mount").args(&args).arg(&target).stdin(Stdio::null()))?;
            m.points.push(target);
        }
        Ok(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.points.iter().rev() {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}
