//! Podman for the container tests (tests/tests/containers.rs): its configuration for this kind of
//! machine, and the test apps' base image, made offline from the trixie chroot (no registry is
//! reachable here). See the notes in tests/tests/containers.rs.
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{chroot, cmd};

pub const CONF: &str = "/etc/containers/containers.conf";
/// crun refuses a VM whose cgroups are hybrid (v1 controllers plus a v2 tree), runc does not; and
/// a container may not ask for more rlimits than the shell that starts it has (podman's default
/// nofile is above it without CAP_SYS_RESOURCE).
const CONF_TEXT: &str = "# Written by `cargo xtask setup` (xtask/src/podman.rs).\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\n";
/// The image the container tests run their apps in: the trixie chroot (CPython 3.13, a venv with
/// Gunicorn and Flask at /opt/venv).
pub const BASE_IMAGE: &str = "localhost/pytracer-test-base";
const LABEL: &str = "pytracer.setup";

#[expect(clippy::unnecessary_wraps, reason = "the set-up step runner takes a fallible plan")]
pub fn conf_plan() -> Result<Option<()>> {
    let done =
        fs::read_to_string(CONF).is_ok_and(|t| t.contains("runtime = \"runc\"") && t.contains("default_ulimits"));
    Ok((!done).then_some(()))
}

pub fn install_conf() -> Result<()> {
    if Path::new(CONF).exists() {
        bail!("{CONF} exists without `runtime = \"runc\"` and `default_ulimits`: add them by hand:\n{CONF_TEXT}");
    }
    fs::create_dir_all("/etc/containers")?;
    fs::write(CONF, CONF_TEXT).with_context(|| format!("writing {CONF}"))
}

/// What the image is made from: the chroot's own marker (its packages, venvs, requirements).
fn wanted() -> String {
    let marker = fs::read_to_string(Path::new(chroot::TRIXIE.root).join(".pytracer-setup")).unwrap_or_default();
    let mut h = DefaultHasher::new();
    marker.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[expect(clippy::unnecessary_wraps, reason = "the set-up step runner takes a fallible plan")]
pub fn image_plan() -> Result<Option<String>> {
    let wanted = wanted();
    let label = Command::new("podman")
        .args(["image", "inspect", "--format", &format!("{{{{index .Labels \"{LABEL}\"}}}}"), BASE_IMAGE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Ok((label.as_deref() != Some(wanted.as_str())).then_some(wanted))
}

/// `tar` of the chroot into `podman import` (about 30 s, 650 MB).
pub fn install_image(wanted: &str) -> Result<()> {
    let mut tar = Command::new("tar")
        .args(["-C", chroot::TRIXIE.root, "-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let mut import = Command::new("podman");
    import
        .args([
            "import",
            "--change",
            "CMD [\"/bin/bash\"]",
            "--change",
            &format!("LABEL {LABEL}={wanted}"),
            "-",
            BASE_IMAGE,
        ])
        .stdin(tar.stdout.take().expect("piped"));
    eprintln!("[setup]   tar -C {} -c . | {}", chroot::TRIXIE.root, cmd::describe(&import));
    let imported = cmd::run(&mut import);
    let tar_status = tar.wait()?;
    imported?;
    if !tar_status.success() {
        bail!("tar of {} failed: {tar_status}", chroot::TRIXIE.root);
    }
    Ok(())
}
