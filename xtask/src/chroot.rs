//! Debian chroots for the interpreter tests: Debian's own CPython builds (static, stripped,
//! `_PyEval_EvalFrameDefault` starting with endbr64, USDT probes), the builds a containerised
//! service on a current distribution runs. trixie has 3.13; sid has 3.14 and, from its own
//! package, 3.15. Made with debootstrap outside the repository (/var/cache/pytracer-chroots), so
//! fresh clones reuse them: each takes 1–2 minutes and about 0.6 GB.
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{cmd, paths};

pub struct Chroot {
    pub suite: &'static str,
    pub root: &'static str,
    /// Packages installed with apt inside, after debootstrap.
    pub packages: &'static [&'static str],
    /// (interpreter inside the chroot, virtualenv it makes there)
    pub venvs: &'static [(&'static str, &'static str)],
}

pub const TRIXIE: Chroot = Chroot {
    suite: "trixie",
    root: "/var/cache/pytracer-chroots/trixie",
    packages: &[],
    venvs: &[("python3", "/opt/venv")],
};

pub const SID: Chroot = Chroot {
    suite: "sid",
    root: "/var/cache/pytracer-chroots/sid",
    packages: &["python3.14-dev", "python3.14-venv", "python3.15", "python3.15-dev", "python3.15-venv"],
    venvs: &[("python3.14", "/opt/venv-3.14"), ("python3.15", "/opt/venv-3.15")],
};

/// What debootstrap adds to the minimal base: the interpreter, venv, and a compiler for wheels
/// without a binary build (MarkupSafe on 3.15).
const INCLUDE: &str = "python3,python3-dev,python3-venv,gcc,libc6-dev,libcrypt-dev,ca-certificates";
const MIRROR: &str = "http://deb.debian.org/debian";
const MARKER: &str = ".pytracer-setup";

fn requirements() -> String {
    fs::read_to_string(paths::repo_root().join("tests/apps/requirements-interpreters.txt")).unwrap_or_default()
}

impl Chroot {
    /// The marker holds what the chroot was made with: packages, venvs and requirements.
    fn wanted(&self) -> String {
        format!("packages: {:?}\nvenvs: {:?}\n{}", self.packages, self.venvs, requirements())
    }

    /// Some(what to write in the marker) when something is left to do.
    #[expect(clippy::unnecessary_wraps, reason = "the set-up step runner takes a fallible plan")]
    pub fn plan(&self) -> Result<Option<String>> {
        let root = Path::new(self.root);
        let wanted = self.wanted();
        let done = fs::read_to_string(root.join(MARKER)).is_ok_and(|m| m == wanted)
            && self.venvs.iter().all(|(_, v)| root.join(v.trim_start_matches('/')).join("bin/gunicorn").is_file());
        Ok((!done).then_some(wanted))
    }

    pub fn install(&self, wanted: String) -> Result<()> {
        let root = Path::new(self.root);
        let _ = fs::remove_file(root.join(MARKER));
        if !root.join("usr/bin/python3").is_file() {
            fs::create_dir_all(root.parent().expect("has a parent"))?;
            let mut boot = Command::new("debootstrap");
            boot.args(["--variant=minbase", &format!("--include={INCLUDE}"), self.suite])
                .arg(root)
                .arg(MIRROR)
                .stdin(Stdio::null());
            eprintln!("[setup]   {}", cmd::describe(&boot));
            if let Err(e) = cmd::run(&mut boot) {
                // A half-made root would be taken for a finished one next time.
                let _ = fs::remove_dir_all(root);
                return Err(e);
            }
        }
        // pip checks PyPI's certificate against the chroot's bundle; the host's is current.
        fs::copy("/etc/ssl/certs/ca-certificates.crt", root.join("etc/ssl/certs/ca-certificates.crt"))
            .context("copying the CA bundle")?;
        // sid's Release file can be older than apt's validity window between mirror pushes.
        fs::write(root.join("etc/apt/apt.conf.d/99pytracer"), "Acquire::Check-Valid-Until \"false\";\n")?;
        fs::write(root.join("tmp/requirements-interpreters.txt"), requirements())?;
        let _mounts = Mounts::new(root)?;
        let mut script = String::from("set -e\n");
        if !self.packages.is_empty() {
            let _ = write!(
                script,
                "apt-get update -q\nDEBIAN_FRONTEND=noninteractive apt-get install -y -q {}\n",
                self.packages.join(" ")
            );
        }
        for (python, venv) in self.venvs {
            // --no-cache-dir: a wheel built for another interpreter is never reused.
            let _ = write!(
                script,
                "{python} -m venv {venv}\n{venv}/bin/pip install -q --no-cache-dir --disable-pip-version-check -r /tmp/requirements-interpreters.txt\n"
            );
        }
        let mut run = Command::new("chroot");
        run.arg(root).args(["/bin/sh", "-c", &script]).env_remove("PIP_FIND_LINKS").stdin(Stdio::null());
        eprintln!("[setup]   chroot {} /bin/sh -c <{} lines>", self.root, script.lines().count());
        cmd::run(&mut run)?;
        fs::write(root.join(MARKER), wanted).context("writing the chroot's marker")
    }
}

/// /proc and /dev inside the chroot for as long as apt and pip run; unmounted on drop, error or not.
struct Mounts {
    points: Vec<std::path::PathBuf>,
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
