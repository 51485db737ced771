//! `cargo xtask setup`: installs what building and testing need, each step skipped when done.
use anyhow::{bail, Context, Result};
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use crate::{cmd, paths};

/// LLVM 22 matches the nightly toolchain's LLVM, which bpf-linker must link against; wrk and curl
/// drive load in tests; gdb and binutils (nm) read the DWARF and symbols of the CPython builds
/// that the layout-table test checks the table against. PostgreSQL and Redis are the real servers
/// the exit-span tests' backend app talks to (started privately by the test harness).
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "wrk",
    "curl",
    "gdb",
    "binutils",
    "python3.11",
    "python3.11-venv",
    // uWSGI compiles against the Debian interpreter's headers in .venvs/debian-3.11.
    "python3.11-dev",
    // uWSGI is built with OpenSSL (its `--https` router, tests/tests/tls.rs) only when the headers
    // are there at pip-build time; the openssl CLI makes that test's certificate, and gcc with
    // libssl-dev's libssl.a its statically linked client.
    "libssl-dev",
    "openssl",
    "gcc",
    "nginx",
    "postgresql",
    "redis-server",
    // The MySQL exit-span tests' server (tests/src/mysql.rs), and what pip needs to build
    // mysqlclient against MariaDB's Connector/C (tests/apps/requirements.txt).
    "mariadb-server",
    "libmariadb-dev",
    "pkg-config",
    // The trixie chroot of the interpreter tests (crate::chroot).
    "debootstrap",
    // The test of `pytracer top`'s live view drives it in a terminal.
    "tmux",
    // `cargo xtask bench` reads the kernel programs' run times with it.
    "bpftool",
    // ... and counts an untraced server's syscalls per request with it (bench/syscall_mix.rs).
    "strace",
    // The container tests (tests/tests/containers.rs): rootful podman with runc.
    "podman",
    "buildah",
    "runc",
    // The Prometheus test (tests/tests/prometheus.rs) runs its own private server from it.
    "prometheus",
];
/// What building the agent needs (bpf-linker links against LLVM): all the demo installs.
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"];
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// Written into the virtualenv once pip has installed requirements.txt with this interpreter.
const VENV_MARKER: &str = ".pytracer-setup";

pub fn run() -> Result<()> {
    let start = Instant::now();
    step("debian packages", || missing_debian_packages(DEBIAN_PACKAGES), install_debian_packages)?;
    step("rust-src (nightly)", rust_src_missing, |()| install_rust_src())?;
    step("bpf-linker", bpf_linker_missing, |()| install_bpf_linker())?;
    venv(&Venv::tests())?;
    venv(&Venv::debian())?;
    for series in INTERPRETER_SERIES {
        venv(&Venv::interpreter(series))?;
    }
    venv(&Venv::unsupported())?;
    venv(&Venv::routes())?;
    venv(&Venv::k8s_validate())?;
    for (name, chroot) in
        [("trixie (CPython 3.13)", crate::chroot::TRIXIE), ("sid (CPython 3.14, 3.15)", crate::chroot::SID)]
    {
        step(
            &format!("debian {name} chroot in /var/cache/pytracer-chroots"),
            || chroot.plan(),
            |wanted| chroot.install(wanted),
        )?;
    }
    step(&format!("podman configuration {}", crate::podman::CONF), crate::podman::conf_plan, |()| {
        crate::podman::install_conf()
    })?;
    step(
        &format!("container test image {} (from the trixie chroot)", crate::podman::BASE_IMAGE),
        crate::podman::image_plan,
        |wanted| crate::podman::install_image(&wanted),
    )?;
    step(
        &format!("container test image {} (uWSGI)", crate::podman::UWSGI_IMAGE),
        crate::podman::uwsgi_image_plan,
        |(wanted, version)| crate::podman::install_uwsgi_image(&wanted, &version),
    )?;
    eprintln!("[setup] done ({:.1}s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// `cargo xtask demo`'s set-up: the build's packages and toolchain, and the demo app's one small
/// virtualenv; none of the tests' servers, interpreters or chroots. The eBPF toolchain (LLVM,
/// rust-src, bpf-linker: about 4 minutes on a new machine) only when the committed eBPF object
/// is stale: the agent's build embeds a current one when bpf-linker is missing.
pub fn demo() -> Result<()> {
    let start = Instant::now();
    if ebpf_toolchain_needed()? {
        step("debian packages (build only)", || missing_debian_packages(BUILD_PACKAGES), install_debian_packages)?;
        step("rust-src (nightly)", rust_src_missing, |()| install_rust_src())?;
        step("bpf-linker", bpf_linker_missing, |()| install_bpf_linker())?;
    }
    venv(&Venv::demo())?;
    eprintln!("[setup] demo set-up done ({:.1}s)", start.elapsed().as_secs_f64());
    Ok(())
}

/// Whether the demo's build needs the eBPF toolchain: yes when the committed object does not
/// match the sources, and when bpf-linker is there (the build then prefers the sources, so the
/// rest of the toolchain must be there too).
fn ebpf_toolchain_needed() -> Result<bool> {
    let status = ebpf_prebuilt::status(&paths::repo_root())?;
    let needed = toolchain_needed(&status, bpf_linker_missing()?.is_none());
    if needed && status != ebpf_prebuilt::Status::Current {
        eprintln!("[setup] {}: the eBPF toolchain is needed to build it", status.explain());
    } else if !needed {
        eprintln!("[setup] eBPF toolchain (LLVM, rust-src, bpf-linker) ... not needed: {}", status.explain());
    }
    Ok(needed)
}

fn toolchain_needed(object: &ebpf_prebuilt::Status, has_bpf_linker: bool) -> bool {
    *object != ebpf_prebuilt::Status::Current || has_bpf_linker
}

/// The pyenv CPython series the interpreter tests run the same Flask and Django apps on.
pub const INTERPRETER_SERIES: [&str; 6] = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"];

/// A virtualenv made from pyenv's CPython with one requirements file installed.
pub struct Venv {
    pub dir: PathBuf,
    pub requirements: PathBuf,
    /// The interpreter to make it from; pyenv's newest of `series` when None.
    pub python: Option<PathBuf>,
    pub series: &'static str,
}

impl Venv {
    /// The test apps' virtualenv.
    pub fn tests() -> Venv {
        Venv {
            dir: paths::venv_dir(),
            requirements: paths::requirements_txt(),
            python: None,
            series: paths::PYTHON_SERIES,
        }
    }

    /// The demo app's: Gunicorn and Flask only.
    pub fn demo() -> Venv {
        Venv {
            dir: paths::repo_root().join(format!(".venvs/demo-{}", paths::PYTHON_SERIES)),
            requirements: paths::repo_root().join("demo/requirements.txt"),
            python: None,
            series: paths::PYTHON_SERIES,
        }
    }

    /// The test app on Debian's own python3.11: a static, stripped build with USDT probes, the
    /// other kind of build the agent must handle.
    pub fn debian() -> Venv {
        Venv {
            dir: paths::repo_root().join(".venvs/debian-3.11"),
            requirements: paths::requirements_txt(),
            python: Some(PathBuf::from("/usr/bin/python3.11")),
            series: "3.11",
        }
    }

    /// Gunicorn, Flask and Django on pyenv's CPython `series`, for the interpreter tests. One
    /// set of pins that installs on 3.8 to 3.13 (tests/apps/requirements-interpreters.txt).
    pub fn interpreter(series: &'static str) -> Venv {
        Venv {
            dir: paths::repo_root().join(format!(".venvs/interp-{series}")),
            requirements: paths::repo_root().join("tests/apps/requirements-interpreters.txt"),
            python: None,
            series,
        }
    }

    /// Gunicorn on pyenv's CPython 3.7, which pytracer does not read: spans must stay exact
    /// at the wire level.
    pub fn unsupported() -> Venv {
        Venv {
            dir: paths::repo_root().join(".venvs/interp-3.7"),
            requirements: paths::repo_root().join("tests/apps/requirements-unsupported.txt"),
            python: None,
            series: "3.7",
        }
    }

    /// The route tests' (tests/tests/routes.rs): Flask, Django 5, FastAPI and Starlette, the
    /// OpenTelemetry instrumentations whose `http.route` the oracle records, and real PyPI apps.
    pub fn routes() -> Venv {
        Venv {
            dir: paths::repo_root().join(".venvs/routes-3.11"),
            requirements: paths::repo_root().join("tests/apps/requirements-routes.txt"),
            python: None,
            series: paths::PYTHON_SERIES,
        }
    }

    /// `kubernetes-validate`, for the DaemonSet manifest's test.
    pub fn k8s_validate() -> Venv {
        Venv {
            dir: paths::repo_root().join(".venvs/k8s-validate"),
            requirements: paths::repo_root().join("deploy/kubernetes/requirements-validate.txt"),
            python: None,
            series: paths::PYTHON_SERIES,
        }
    }

    /// The benchmark's: the same app stack plus the in-process agents it compares with.
    pub fn bench() -> Venv {
        Venv {
            dir: paths::repo_root().join(".venvs/bench-3.11"),
            requirements: paths::repo_root().join("bench/requirements.txt"),
            python: None,
            series: paths::PYTHON_SERIES,
        }
    }
}

/// Creates or updates `v`; skipped quickly when its marker says it is up to date.
pub fn venv(v: &Venv) -> Result<()> {
    let name = v.dir.strip_prefix(paths::repo_root()).unwrap_or(&v.dir).display().to_string();
    step(&format!("python venv {name}"), || venv_plan(v), |plan| install_venv(v, plan))
}

/// `check` returns what is left to do, if anything; `install` does it.
fn step<T>(name: &str, check: impl FnOnce() -> Result<Option<T>>, install: impl FnOnce(T) -> Result<()>) -> Result<()> {
    let start = Instant::now();
    let todo = check().with_context(|| format!("setup step `{name}`"))?;
    match todo {
        None => eprintln!("[setup] {name} ... already installed ({:.1}s)", start.elapsed().as_secs_f64()),
        Some(todo) => {
            eprintln!("[setup] {name} ... installing");
            install(todo).with_context(|| format!("setup step `{name}`"))?;
            eprintln!("[setup] {name} ... installed ({:.1}s)", start.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn missing_debian_packages(wanted: &'static [&'static str]) -> Result<Option<Vec<&'static str>>> {
    // dpkg-query exits 1 when a package is unknown to dpkg, so read its output whatever the status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(wanted)
        .stdin(Stdio::null())
        .output()
        .context("cannot run dpkg-query (this set-up expects Debian bookworm)")?;
    let installed: HashSet<&str> = std::str::from_utf8(&out.stdout)?
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    let missing: Vec<_> = wanted.iter().copied().filter(|p| !installed.contains(p)).collect();
    Ok((!missing.is_empty()).then_some(missing))
}

#[expect(clippy::needless_pass_by_value, reason = "a set-up step's install takes what its plan returned")]
fn install_debian_packages(missing: Vec<&str>) -> Result<()> {
    eprintln!("[setup]   missing: {}", missing.join(" "));
    cmd::run(as_root("apt-get").arg("update").stdin(Stdio::null()))?;
    cmd::run(
        as_root("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
}

fn as_root(program: &str) -> Command {
    if cmd::is_root() {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        // sudo would drop DEBIAN_FRONTEND without this.
        sudo.args(["--preserve-env=DEBIAN_FRONTEND", program]);
        sudo
    }
}

fn rustup() -> Command {
    Command::new(paths::find_program("rustup").unwrap_or_else(|| "rustup".into()))
}

fn rust_src_missing() -> Result<Option<()>> {
    // tracer-user's build.rs builds the eBPF crate with `-Z build-std=core` on the nightly toolchain.
    let installed = cmd::stdout(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))
        .context("the `nightly` toolchain is needed to build the eBPF programs; install it with `rustup toolchain install nightly`")?;
    let has_rust_src = installed.lines().any(|l| l.trim() == "rust-src" || l.starts_with("rust-src-"));
    Ok((!has_rust_src).then_some(()))
}

fn install_rust_src() -> Result<()> {
    cmd::run(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

#[expect(clippy::unnecessary_wraps, reason = "the set-up step runner takes a fallible plan")]
fn bpf_linker_missing() -> Result<Option<()>> {
    let works = paths::find_program("bpf-linker").is_some_and(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    Ok((!works).then_some(()))
}

fn install_bpf_linker() -> Result<()> {
    if !Path::new(LLVM_BIN).join("llvm-config").exists() {
        bail!("{LLVM_BIN}/llvm-config is missing: bpf-linker needs the llvm-22-dev package");
    }
    // bpf-linker's build finds libLLVM through the first llvm-config in PATH.
    let mut install = cmd::cargo();
    install
        .args(["install", "bpf-linker", "--no-default-features", "--features", "llvm-22"])
        .env("PATH", paths::path_with(&[PathBuf::from(LLVM_BIN)]));
    eprintln!("[setup]   {}", cmd::describe(&install));
    cmd::run(&mut install)
}

struct VenvPlan {
    interpreter: PathBuf,
    /// The virtualenv is missing, broken, or made from another interpreter.
    create: bool,
    marker: String,
}

fn venv_plan(v: &Venv) -> Result<Option<VenvPlan>> {
    let interpreter = match &v.python {
        Some(p) => p.clone(),
        None => pyenv_python(v.series)?,
    };
    let requirements =
        fs::read_to_string(&v.requirements).with_context(|| format!("cannot read {}", v.requirements.display()))?;
    let marker =
        format!("interpreter: {}\n--- {} ---\n{requirements}", interpreter.display(), v.requirements.display());
    let venv = &v.dir;
    let python = venv.join("bin/python");
    let home = fs::read_to_string(venv.join("pyvenv.cfg")).ok().and_then(|cfg| {
        cfg.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == "home")
            .map(|(_, v)| PathBuf::from(v.trim()))
    });
    let create = !python.exists() || home.as_deref() != interpreter.parent();
    if !create && fs::read_to_string(venv.join(VENV_MARKER)).is_ok_and(|m| m == marker) {
        return Ok(None);
    }
    Ok(Some(VenvPlan { interpreter, create, marker }))
}

fn install_venv(v: &Venv, plan: VenvPlan) -> Result<()> {
    let venv = &v.dir;
    let marker = venv.join(VENV_MARKER);
    // A failed install must not leave a marker claiming the requirements are in.
    if marker.exists() {
        fs::remove_file(&marker).with_context(|| format!("cannot remove {}", marker.display()))?;
    }
    if plan.create {
        fs::create_dir_all(venv.parent().expect("venv has a parent"))?;
        let mut create = Command::new(&plan.interpreter);
        create.args(["-m", "venv", "--clear"]).arg(venv);
        eprintln!("[setup]   {}", cmd::describe(&create));
        cmd::run(&mut create)?;
    }
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args(["-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "-r"])
        .arg(&v.requirements)
        .stdin(Stdio::null());
    eprintln!("[setup]   {}", cmd::describe(&pip));
    cmd::run(&mut pip)?;
    fs::write(&marker, plan.marker).with_context(|| format!("cannot write {}", marker.display()))
}

/// The newest `$(pyenv root)/versions/3.X.N/bin/python3.X` of `series` (3.X).
fn pyenv_python(series: &str) -> Result<PathBuf> {
    let root = pyenv_root().context(
        "pyenv not found (no `pyenv` in PATH, no $PYENV_ROOT, no ~/.pyenv): install pyenv \
         (https://github.com/pyenv/pyenv), then `pyenv install 3.11`",
    )?;
    let versions = root.join("versions");
    let newest = fs::read_dir(&versions)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            // Only plain releases such as 3.11.7: not 3.11-dev, 3.11.7t or virtualenvs.
            let patch: u32 = name.strip_prefix(series)?.strip_prefix('.')?.parse().ok()?;
            Some((patch, name))
        })
        .max();
    let Some((_, version)) = newest else {
        bail!(
            "no CPython {series}.x in {}: install one with `pyenv install {series}` \
             (the tests and the demo run Gunicorn in a CPython {series} virtualenv)",
            versions.display()
        );
    };
    let python = versions.join(version).join(format!("bin/python{series}"));
    if !python.exists() {
        bail!("{} is missing: reinstall it with `pyenv install --force {series}`", python.display());
    }
    Ok(python)
}

fn pyenv_root() -> Option<PathBuf> {
    if let Some(pyenv) = paths::find_program("pyenv") {
        if let Ok(root) = cmd::stdout(Command::new(pyenv).arg("root")) {
            return Some(PathBuf::from(root.trim()));
        }
    }
    std::env::var_os("PYENV_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .or_else(|| paths::home().map(|h| h.join(".pyenv")))
        .filter(|root| root.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo installs what building needs and its app's venv, nothing the tests need: no
    /// servers, no other interpreters, no chroots, no uWSGI to compile.
    #[test]
    fn the_demo_set_up_skips_the_test_only_steps() {
        assert!(BUILD_PACKAGES.iter().all(|p| DEBIAN_PACKAGES.contains(p)), "a subset of the full set-up");
        for test_only in [
            "postgresql",
            "redis-server",
            "mariadb-server",
            "nginx",
            "debootstrap",
            "wrk",
            "gdb",
            "python3.11-dev",
            "prometheus",
        ] {
            assert!(!BUILD_PACKAGES.contains(&test_only), "{test_only}");
        }
        let src = include_str!("setup.rs");
        let demo = &src[src.find("pub fn demo()").unwrap()..];
        let demo = &demo[..demo.find("\n}\n").unwrap()];
        assert_eq!(demo.matches("venv(&").count(), 1, "one virtualenv:\n{demo}");
        assert!(!demo.contains("chroot") && !demo.contains("INTERPRETER_SERIES"), "{demo}");
        // The eBPF toolchain only when the committed object cannot stand in for it; the full
        // set-up (CI's) always installs it and builds from source.
        let (guard, guarded) =
            demo.split_once("if ebpf_toolchain_needed()? {").expect("the toolchain steps are guarded");
        let guarded = &guarded[..guarded.find("\n    }\n").unwrap()];
        assert!(!guard.contains("step(") && !guard.contains("BUILD_PACKAGES"), "{guard}");
        for toolchain_step in ["BUILD_PACKAGES", "install_rust_src", "install_bpf_linker"] {
            assert!(guarded.contains(toolchain_step), "{toolchain_step}:\n{guarded}");
        }
        let full = &src[src.find("pub fn run()").unwrap()..];
        let full = &full[..full.find("\n}\n").unwrap()];
        assert!(!full.contains("ebpf_toolchain_needed") && full.contains("install_bpf_linker()"), "{full}");
        let current = ebpf_prebuilt::Status::Current;
        let stale = ebpf_prebuilt::Status::Stale { stamped: "a".into(), tree: "b".into() };
        assert!(!toolchain_needed(&current, false));
        assert!(toolchain_needed(&current, true), "with bpf-linker the build prefers the sources");
        assert!(toolchain_needed(&stale, false));
        assert!(toolchain_needed(&ebpf_prebuilt::Status::Missing, false));
        let reqs = fs::read_to_string(Venv::demo().requirements).unwrap();
        assert!(!reqs.to_lowercase().contains("uwsgi") && reqs.contains("gunicorn==") && reqs.contains("Flask=="));
    }
}
