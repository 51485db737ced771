//! A Gunicorn master serving `tests/apps/testapp.py` on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::env::{apps_dir, gunicorn_bin};
use crate::procfs;
use crate::server::{free_port, option_value, secs, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;
use crate::wait::wait_until;

/// Gunicorn's defaults for `--timeout` and `--graceful-timeout` (`gunicorn --help`: 30 and 30).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[must_use]
    pub fn chroot(mut self, root: PathBuf, venv: impl Into<PathBuf>) -> Self {
        self.chroot = Some((root, venv.into()));
        self
    }

    /// Serve another WSGI app of tests/apps, e.g. `djangoapp:application`.
    #[must_use]
    pub fn app(mut self, spec: impl Into<String>) -> Self {
        self.app = spec.into();
        self
    }

    /// Run the gunicorn of another virtualenv (another Python build).
    #[must_use]
    pub fn venv(mut self, dir: PathBuf) -> Self {
        self.venv = Some(dir);
        self
    }

    pub fn gthread(workers: u32, threads: u32) -> Self {
        GunicornOpts { worker_class: "gthread".into(), threads: Some(threads), ..Self::sync(workers) }
    }

    #[must_use]
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(ToString::to_string));
        self
    }

    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--timeout` (`-t`): a worker silent for longer, booting included, is killed and replaced.
    fn timeout(&self) -> Duration {
        secs(option_value(&self.extra_args, &["--timeout", "-t"])).unwrap_or(DEFAULT_TIMEOUT)
    }

    /// `--graceful-timeout`: how long the master lets workers finish on a stop or restart.
    fn graceful_timeout(&self) -> Duration {
        secs(option_value(&self.extra_args, &["--graceful-timeout"])).unwrap_or(DEFAULT_GRACEFUL_TIMEOUT)
    }
}

/// A running Gunicorn master in its own process group; stopped on drop.
pub struct Gunicorn {
    server: Server,
    port: u16,
    workers: u32,
    /// `--timeout` of this instance.
    timeout: Duration,
    /// `--graceful-timeout` of this instance.
    graceful_timeout: Duration,
    ready_dir: PathBuf,
    /// The port has accepted a connection (checked until it has, during the start).
    port_open: bool,
    // Dropped last: it must outlive the processes writing into it.
    dir: TempDir,
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
        .find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("gunicorn-")?.strip_suffix(".dist-info")?.to_string();
            version.split('.').next()?.parse::<u32>().ok()
        });
    major.is_none_or(|m| m >= 25)
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
    /// the app (a marker file written by testapp.py), within `--timeout` (a worker that has not
    /// booted by then is killed by the master) plus [`MARGIN`].
    pub fn try_start(opts: GunicornOpts) -> Result<Gunicorn> {
        // The retries own the options.
        crate::server::start_retrying(move || Self::spawn(&opts))
    }

    fn spawn(opts: &GunicornOpts) -> Result<Gunicorn> {
        let dir = TempDir::new("gunicorn")?;
        let port = free_port()?;

        // Inside a chroot the app sees its own paths: the ready markers go to a directory under
        // the chroot's /tmp, watched from here through the host path.
        let (mut cmd, venv, ready_dir, ready_env, chdir) = if let Some((root, venv_inside)) = &opts.chroot {
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
            (cmd, Some(venv_on_host), ready, inside, PathBuf::from("/app"))
        } else {
            let ready = dir.path().join("ready");
            std::fs::create_dir_all(&ready)?;
            let bin = opts.venv.as_ref().map_or_else(gunicorn_bin, |v| v.join("bin").join("gunicorn"));
            (Command::new(&bin), opts.venv.clone(), ready.clone(), ready, apps_dir())
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
            .envs(opts.env.iter().map(|(k, v)| (k, v)));
        // SIGTERM: graceful shutdown, the master waiting up to --graceful-timeout for its workers.
        let stop = Stop { signal: libc::SIGTERM, grace: opts.graceful_timeout() + MARGIN };
        let server = Server::spawn("gunicorn", &mut cmd, dir.path().join("gunicorn.log"), stop)?;
        Ok(Gunicorn {
            server,
            port,
            workers: opts.workers,
            timeout: opts.timeout(),
            graceful_timeout: opts.graceful_timeout(),
            ready_dir,
            port_open: false,
            dir,
        })
    }

    /// Workers that have imported the app. Under `--preload` the master imported it before
    /// forking, so every worker counts.
    fn ready_worker_pids(&self) -> Vec<u32> {
        let preloaded = self.ready_dir.join(self.pid().to_string()).exists();
        self.worker_pids().into_iter().filter(|w| preloaded || self.ready_dir.join(w.to_string()).exists()).collect()
    }

    /// The master's pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Current live worker pids (children of the master), sorted.
    pub fn worker_pids(&self) -> Vec<u32> {
        procfs::children(self.pid())
    }

    /// How long replacing a worker may take: the old one has up to `--graceful-timeout` to
    /// finish, the new one up to `--timeout` to boot; plus [`MARGIN`].
    pub fn worker_wait(&self) -> Duration {
        self.timeout.max(self.graceful_timeout) + MARGIN
    }

    /// Wait, for [`Gunicorn::worker_wait`], until `n` workers exist and have imported the app,
    /// none of them in `exclude` (e.g. the workers before a `--max-requests` recycle). Returns
    /// their pids.
    pub fn wait_for_workers(&self, n: usize, exclude: &[u32]) -> Vec<u32> {
        let timeout = self.worker_wait();
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.ready_worker_pids();
            last.len() == n && last.iter().all(|p| !exclude.contains(p))
        });
        assert!(
            ok,
            "expected {n} ready workers not in {exclude:?} within {timeout:?}, have {last:?}; {}",
            self.server.log_tail()
        );
        last
    }

    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// Gunicorn's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Scratch directory of this instance (holds the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Started for Gunicorn {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// A worker that has not imported the app within `--timeout` is killed by the master.
    fn ready_timeout(&self) -> Duration {
        self.timeout + MARGIN
    }

    fn is_ready(&mut self) -> bool {
        // One connection, early: a probe connection made later reaches a worker about when a
        // test's agent attaches, and the agent would see its end without its start.
        self.port_open = self.port_open || tcp_accepts(self.port);
        self.port_open && self.ready_worker_pids().len() == self.workers as usize
    }

    fn progress(&self) -> String {
        format!(
            "port {} {}, workers {:?} of {} expected, ready {:?}",
            self.port,
            if tcp_accepts(self.port) { "open" } else { "not accepting" },
            self.worker_pids(),
            self.workers,
            self.ready_worker_pids()
        )
    }
}
