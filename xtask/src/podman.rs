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

/// The uWSGI container's image: [`BASE_IMAGE`] with uWSGI compiled against its CPython
/// (tests/apps/uwsgi.Containerfile), at the version tests/apps/requirements.txt pins.
pub const UWSGI_IMAGE: &str = "localhost/pytracer-test-uwsgi";

/// The `uWSGI==X` pin of tests/apps/requirements.txt: the one version every test builds.
fn uwsgi_version() -> Result<String> {
    let path = crate::paths::requirements_txt();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("uWSGI=="))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no `uWSGI==VERSION` line in {}", path.display()))
}

fn uwsgi_containerfile() -> std::path::PathBuf {
    crate::paths::repo_root().join("tests/apps/uwsgi.Containerfile")
}

/// What the uWSGI image is made from: the base image's id, the Containerfile and the version.
fn uwsgi_wanted() -> Result<(String, String)> {
    let base = cmd::stdout(Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", BASE_IMAGE]))
        .with_context(|| format!("{BASE_IMAGE} is made first"))?;
    let file = fs::read_to_string(uwsgi_containerfile())?;
    let version = uwsgi_version()?;
    let mut h = DefaultHasher::new();
    (base.trim(), file, &version).hash(&mut h);
    Ok((format!("{:016x}", h.finish()), version))
}

/// Some((label, uWSGI version)) when the image is missing or was made from something else.
pub fn uwsgi_image_plan() -> Result<Option<(String, String)>> {
    let (wanted, version) = uwsgi_wanted()?;
    let label = Command::new("podman")
        .args(["image", "inspect", "--format", &format!("{{{{index .Labels \"{LABEL}\"}}}}"), UWSGI_IMAGE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Ok((label.as_deref() != Some(wanted.as_str())).then_some((wanted, version)))
}

/// `podman build` of tests/apps/uwsgi.Containerfile (about a minute: uWSGI compiles), with an
/// empty context: the Containerfile copies nothing in.
pub fn install_uwsgi_image(wanted: &str, version: &str) -> Result<()> {
    let context = crate::paths::repo_root().join("target/uwsgi-image-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    let mut build = Command::new("podman");
    build
        .args(["build", "--runtime", "runc"])
        .args(["--build-arg", &format!("BASE_IMAGE={BASE_IMAGE}")])
        .args(["--build-arg", &format!("UWSGI_VERSION={version}")])
        .args(["--label", &format!("{LABEL}={wanted}")])
        .arg("-f")
        .arg(uwsgi_containerfile())
        .args(["-t", UWSGI_IMAGE])
        .arg(&context)
        .stdin(Stdio::null());
    eprintln!("[setup]   {}", cmd::describe(&build));
    cmd::run(&mut build)
}
