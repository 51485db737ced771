//! A Gunicorn master serving `tests/apps/testapp.py` on a free loopback port.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::env::{apps_dir, gunicorn_bin};
use crate::procfs;
use crate::tmp::TempDir;
use crate::wait::wait_until;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to run Gunicorn. Build with [`GunicornOpts::sync`] or [`GunicornOpts::gthread`].
#[derive(Clone, Debug)]
pub struct GunicornOpts {
    /// `sync` or `gthread` (passed to `--worker-class`).
    pub worker_class: String,
    pub workers: u32,
    /// `--threads`; only passed when set.
    pub threads: Option<u32>,
    /// Extra command-line arguments, placed before the app, e.g. `--max-requests 5`.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the master (and so the workers).
    pub env: Vec<(String, String)>,
    /// WSGI app spec, `testapp:app` by default.
    pub app: String,
    /// The virtualenv whose gunicorn runs; the default test venv when None.
    pub venv: Option<PathBuf>,
    /// Run inside this Debian chroot (made by `cargo xtask setup`), with the gunicorn of this
    /// virtualenv inside it, the test apps copied to /app: as a containerised service would.
    pub chroot: Option<(PathBuf, PathBuf)>,
}

impl GunicornOpts {
    pub fn sync(workers: u32) -> Self {
        GunicornOpts {
            worker_class: "sync".into(),
            workers,
            threads: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            app: "testapp:app".into(),
            venv: None,
            chroot: None,
        }
    }

    /// Run inside the chroot at `root` with its virtualenv `venv` (a path inside the chroot).
    pub fn chroot(mut self, root: PathBuf, venv: impl Into<PathBuf>) -> Self {
        self.chroot = Some((root, venv.into()));
        self
    }

    /// Serve another WSGI app of tests/apps, e.g. `djangoapp:application`.
    pub fn app(mut self, spec: impl Into<String>) -> Self {
        self.app = spec.into();
        self
    }

    /// Run the gunicorn of another virtualenv (another Python build).
    pub fn venv(mut self, dir: PathBuf) -> Self {
        self.venv = Some(dir);
        self
    }

    pub fn gthread(workers: u32, threads: u32) -> Self {
        GunicornOpts { worker_class: "gthread".into(), threads: Some(threads), ..Self::sync(workers) }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(ToString::to_string));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running Gunicorn master in its own process group; stopped on drop.
pub struct Gunicorn {
    child: Child,
    port: u16,
    workers: u32,
    log_path: PathBuf,
    ready_dir: PathBuf,
    // Dropped last: it must outlive the processes writing into it.
    dir: TempDir,
}

/// A port that was free a moment ago. Racy by nature; `try_start` retries on a collision.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether the venv's Gunicorn is 25 or newer (older ones have no control socket and reject
/// the option), from the name of its installed dist-info directory.
fn has_control_socket(venv: Option<&Path>) -> bool {
    let venv = venv.map_or_else(crate::env::venv_dir, Path::to_path_buf);
    let major = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|py| std::fs::read_dir(py.path().join("site-packages")).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("gunicorn-")?.strip_suffix(".dist-info")?.to_string();
            version.split('.').next()?.parse::<u32>().ok()
        })
        .next();
    major.is_none_or(|m| m >= 25)
}

/// Last `n` lines of a file, for error messages.
pub fn file_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read: {e}>"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Gunicorn {
    /// Start Gunicorn and wait until it serves; panics with the log tail on failure.
    pub fn start(opts: GunicornOpts) -> Gunicorn {
        match Self::try_start(opts) {
            Ok(g) => g,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Start Gunicorn and wait until the port accepts connections and all workers have imported
    /// the app (a marker file written by testapp.py), within 20 s.
    pub fn try_start(opts: GunicornOpts) -> Result<Gunicorn> {
        crate::server::start_retrying(|| Self::spawn(&opts))
    }

    fn spawn(opts: &GunicornOpts) -> Result<Gunicorn> {
        let dir = TempDir::new("gunicorn")?;
        let port = free_port()?;
        let log_path = dir.path().join("gunicorn.log");
        let log = File::create(&log_path)?;

        // Inside a chroot the app sees its own paths: the ready markers go to a directory under
        // the chroot's /tmp, watched from here through the host path.
        let (mut cmd, bin, venv, ready_dir, ready_env, chdir) = if let Some((root, venv_inside)) = &opts.chroot {
            let inside = PathBuf::from("/tmp").join(dir.path().file_name().expect("temp dir name"));
            let ready = root.join(inside.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(&ready)?;
            std::fs::create_dir_all(root.join("app"))?;
            for entry in std::fs::read_dir(apps_dir())? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "py") {
                    std::fs::copy(&path, root.join("app").join(path.file_name().expect("file name")))?;
                }
            }
            let mut cmd = Command::new("chroot");
            cmd.arg(root).arg(venv_inside.join("bin/gunicorn"));
            let venv_on_host = root.join(venv_inside.strip_prefix("/").unwrap_or(venv_inside));
            (cmd, PathBuf::from("chroot"), Some(venv_on_host), ready, inside, PathBuf::from("/app"))
        } else {
            let ready = dir.path().join("ready");
            std::fs::create_dir_all(&ready)?;
            let bin = opts.venv.as_ref().map_or_else(gunicorn_bin, |v| v.join("bin").join("gunicorn"));
            (Command::new(&bin), bin, opts.venv.clone(), ready.clone(), ready, apps_dir())
        };
        cmd.arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--workers")
            .arg(opts.workers.to_string())
            .arg("--worker-class")
            .arg(&opts.worker_class);
        if let Some(t) = opts.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        // Gunicorn >= 25 opens a control socket at one per-user path by default, unlinking
        // whatever is there: parallel instances would steal each other's. Give each its own.
        let sets_control =
            opts.extra_args.iter().any(|a| a.starts_with("--control-socket") || a == "--no-control-socket");
        if !sets_control && has_control_socket(venv.as_deref()) {
            cmd.arg("--control-socket").arg(dir.path().join("gunicorn.ctl"));
        }
        cmd.arg("--chdir")
            .arg(chdir)
            .args(&opts.extra_args)
            .arg(&opts.app)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTRACER_TESTAPP_READY_DIR", &ready_env)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own group, so Drop can kill the master and every worker with one signal.
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Gunicorn { child, port, workers: opts.workers, log_path, ready_dir, dir })
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut port_open = false;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "gunicorn exited during startup ({status}); log {}:\n{}",
                    self.log_path.display(),
                    file_tail(&self.log_path, 40)
                );
            }
            if !port_open {
                port_open = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            }
            let ready = self.ready_worker_pids();
            if port_open && ready.len() == self.workers as usize {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "gunicorn not ready after {:?}: port {} {}, workers {:?} of {} expected, \
                     ready {:?}; log {}:\n{}",
                    START_TIMEOUT,
                    self.port,
                    if port_open { "open" } else { "not accepting" },
                    self.worker_pids(),
                    self.workers,
                    ready,
                    self.log_path.display(),
                    file_tail(&self.log_path, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Workers that have imported the app. Under `--preload` the master imported it before
    /// forking, so every worker counts.
    fn ready_worker_pids(&self) -> Vec<u32> {
        let preloaded = self.ready_dir.join(self.pid().to_string()).exists();
        self.worker_pids().into_iter().filter(|w| preloaded || self.ready_dir.join(w.to_string()).exists()).collect()
    }

    /// The master's pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Current live worker pids (children of the master), sorted.
    pub fn worker_pids(&self) -> Vec<u32> {
        procfs::children(self.pid())
    }

    /// Wait until `n` workers exist and have imported the app, none of them in `exclude`
    /// (e.g. the workers before a `--max-requests` recycle). Returns their pids.
    pub fn wait_for_workers(&self, n: usize, exclude: &[u32], timeout: Duration) -> Vec<u32> {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.ready_worker_pids();
            last.len() == n && last.iter().all(|p| !exclude.contains(p))
        });
        assert!(
            ok,
            "expected {n} ready workers not in {exclude:?} within {timeout:?}, have {last:?}; \
             log {}:\n{}",
            self.log_path.display(),
            file_tail(&self.log_path, 40)
        );
        last
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Gunicorn's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Scratch directory of this instance (holds the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        crate::server::stop_group(&mut self.child, libc::SIGTERM, STOP_GRACE);
    }
}

impl crate::server::Started for Gunicorn {
    fn log(&self) -> String {
        Gunicorn::log(self)
    }

    fn wait_ready(&mut self) -> Result<()> {
        Gunicorn::wait_ready(self)
    }
}
