//! A uWSGI master serving `tests/apps/testapp.py`, in one of its three front-ends: workers
//! speaking HTTP themselves (`--http-socket`), an HTTP router process forwarding uwsgi packets to
//! the workers (`--http` plus an internal `--socket`), or bare uwsgi-protocol workers
//! (`--socket`) for nginx's `uwsgi_pass` (see [`crate::nginx`]).
//!
//! uWSGI's signals are not Gunicorn's: SIGTERM *reloads* a 2.0 master (unless `--die-on-term`),
//! SIGHUP reloads gracefully, SIGINT and SIGQUIT shut it down (workers are "buried" after
//! about 1 s). Drop sends SIGINT.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::env::{apps_dir, venv_dir};
use crate::procfs;
use crate::server::{free_port, option_value, secs, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;
use crate::wait::wait_until;

/// uWSGI bounds no part of its start-up (importing the app, forking, binding), so this is the
/// harness's own choice: ample for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// `--worker-reload-mercy` default (`uwsgi --help`): how long a worker may take to reload or
/// shut down before the master kills it. `--reload-mercy` (the master's wait for all of them)
/// is unset by default, and then the worker's mercy is what bounds a reload.
const DEFAULT_WORKER_RELOAD_MERCY: Duration = Duration::from_mins(1);
/// `--min-worker-lifetime` default (`uwsgi --help`): a younger worker's reload is put off.
const DEFAULT_MIN_WORKER_LIFETIME: Duration = Duration::from_secs(10);

/// The `uwsgi` of the default test venv.
pub fn uwsgi_bin() -> PathBuf {
    venv_dir().join("bin").join("uwsgi")
}

/// Which uWSGI front-end the test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UwsgiMode {
    /// `--http-socket ADDR`: each worker accepts and parses HTTP itself.
    HttpSocket,
    /// `--http ADDR --socket INTERNAL`: a router process (child of the master) accepts HTTP and
    /// forwards uwsgi packets to the workers on the internal socket.
    HttpRouter,
    /// `--socket ADDR`: workers speak the uwsgi binary protocol (what nginx's `uwsgi_pass` sends).
    UwsgiSocket,
}

/// Where a uwsgi-protocol socket listens: what [`crate::nginx::Nginx::start_uwsgi_pass`] targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    Tcp(u16),
    Unix(PathBuf),
}

impl From<u16> for Upstream {
    fn from(port: u16) -> Self {
        Upstream::Tcp(port)
    }
}

impl From<&Path> for Upstream {
    fn from(path: &Path) -> Self {
        Upstream::Unix(path.to_path_buf())
    }
}

impl From<PathBuf> for Upstream {
    fn from(path: PathBuf) -> Self {
        Upstream::Unix(path)
    }
}

/// How to run uWSGI. Build with [`UwsgiOpts::http_socket`], [`UwsgiOpts::http_router`] or
/// [`UwsgiOpts::uwsgi_socket`], then the builder methods.
#[derive(Clone, Debug)]
#[expect(clippy::struct_excessive_bools, reason = "each is one independent uWSGI on/off option")]
pub struct UwsgiOpts {
    pub mode: UwsgiMode,
    /// `--processes`.
    pub processes: u32,
    /// `--threads`; only passed when set.
    pub threads: Option<u32>,
    /// `--lazy-apps`: each worker imports the app after the fork (else the master imports it
    /// once, before forking).
    pub lazy_apps: bool,
    /// `--enable-threads` (Python threads with one uWSGI thread per worker).
    pub enable_threads: bool,
    /// `--master`; true by default.
    pub master: bool,
    /// Bind the workers' socket on a unix path in the scratch dir instead of loopback TCP
    /// (`--http-socket`/`--socket`; in `HttpRouter` mode the internal socket, the router itself
    /// stays on TCP).
    pub unix_socket: bool,
    /// Write every option into `<tmp>/app.ini` and run `uwsgi --ini <tmp>/app.ini [extra args]`:
    /// the command line then names neither the module nor the sockets.
    pub ini: bool,
    /// More `key = value` lines for the ini file (only with `ini`).
    pub ini_lines: Vec<(String, String)>,
    /// Extra command-line arguments, after the generated ones, e.g. `--max-requests 5`
    /// (which needs `--min-worker-lifetime 0` too: uWSGI 2.0 does not recycle a worker younger
    /// than 10 s), or `--harakiri 2`.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the master (and so the workers).
    pub env: Vec<(String, String)>,
    /// `--module`, `testapp:app` by default (found through `--chdir tests/apps`).
    pub module: String,
    /// The virtualenv whose `bin/uwsgi` runs; the default test venv when None.
    pub venv: Option<PathBuf>,
    /// `HttpRouter` mode only: the router speaks HTTPS (`--https ADDR,CERT,KEY`) with this
    /// certificate and key instead of HTTP.
    pub https: Option<(PathBuf, PathBuf)>,
}

impl UwsgiOpts {
    pub fn new(mode: UwsgiMode, processes: u32) -> Self {
        UwsgiOpts {
            mode,
            processes,
            threads: None,
            lazy_apps: false,
            enable_threads: false,
            master: true,
            unix_socket: false,
            ini: false,
            ini_lines: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            module: "testapp:app".into(),
            venv: None,
            https: None,
        }
    }

    pub fn http_socket(processes: u32) -> Self {
        Self::new(UwsgiMode::HttpSocket, processes)
    }

    pub fn http_router(processes: u32) -> Self {
        Self::new(UwsgiMode::HttpRouter, processes)
    }

    pub fn uwsgi_socket(processes: u32) -> Self {
        Self::new(UwsgiMode::UwsgiSocket, processes)
    }

    #[must_use]
    pub fn threads(mut self, n: u32) -> Self {
        self.threads = Some(n);
        self
    }

    #[must_use]
    pub fn lazy_apps(mut self, on: bool) -> Self {
        self.lazy_apps = on;
        self
    }

    #[must_use]
    pub fn enable_threads(mut self, on: bool) -> Self {
        self.enable_threads = on;
        self
    }

    #[must_use]
    pub fn master(mut self, on: bool) -> Self {
        self.master = on;
        self
    }

    #[must_use]
    pub fn unix_socket(mut self, on: bool) -> Self {
        self.unix_socket = on;
        self
    }

    #[must_use]
    pub fn ini(mut self, on: bool) -> Self {
        self.ini = on;
        self
    }

    #[must_use]
    pub fn ini_line(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ini_lines.push((key.into(), value.into()));
        self
    }

    #[must_use]
    pub fn module(mut self, m: impl Into<String>) -> Self {
        self.module = m.into();
        self
    }

    /// An HTTPS router (`HttpRouter` mode) with this certificate and key.
    #[must_use]
    pub fn https(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.https = Some((cert.into(), key.into()));
        self
    }

    /// Run the uwsgi of another virtualenv (another Python build).
    #[must_use]
    pub fn venv(mut self, dir: PathBuf) -> Self {
        self.venv = Some(dir);
        self
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

    fn bin(&self) -> PathBuf {
        self.venv.as_ref().map_or_else(uwsgi_bin, |v| v.join("bin").join("uwsgi"))
    }

    /// A seconds-valued uWSGI option as this instance gets it: from the extra arguments (which
    /// come last on the command line, so win), else from the ini lines.
    fn option_secs(&self, name: &str) -> Option<Duration> {
        secs(option_value(&self.extra_args, &[&format!("--{name}")])).or_else(|| {
            let from_ini = self.ini_lines.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            secs(from_ini.filter(|_| self.ini))
        })
    }

    /// The longest a reload may keep an old worker: `--worker-reload-mercy`, or `--reload-mercy`
    /// when longer.
    fn reload_mercy(&self) -> Duration {
        let worker = self.option_secs("worker-reload-mercy").unwrap_or(DEFAULT_WORKER_RELOAD_MERCY);
        self.option_secs("reload-mercy").map_or(worker, |m| m.max(worker))
    }

    /// How long replacing workers (reload, `--max-requests`, a kill) may take: the reload put
    /// off for `--min-worker-lifetime`, then the old worker's reload mercy; plus [`MARGIN`].
    fn worker_wait(&self) -> Duration {
        self.option_secs("min-worker-lifetime").unwrap_or(DEFAULT_MIN_WORKER_LIFETIME) + self.reload_mercy() + MARGIN
    }
}

/// Where the spawned instance listens.
#[derive(Clone, Debug)]
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

impl Listen {
    fn spec(&self) -> String {
        match self {
            Listen::Tcp(p) => format!("127.0.0.1:{p}"),
            Listen::Unix(p) => p.display().to_string(),
        }
    }

    fn accepts(&self) -> bool {
        match self {
            Listen::Tcp(p) => tcp_accepts(*p),
            Listen::Unix(p) => UnixStream::connect(p).is_ok(),
        }
    }
}

/// A running uWSGI master in its own process group; stopped on drop.
pub struct Uwsgi {
    server: Server,
    opts: UwsgiOpts,
    /// What clients connect to: the HTTP port (router's in `HttpRouter` mode) or the uwsgi socket.
    front: Listen,
    /// The workers' socket (differs from `front` in `HttpRouter` mode only).
    workers_sock: Listen,
    fifo: PathBuf,
    command: Vec<String>,
    ready_dir: PathBuf,
    /// The front socket has accepted a connection (checked until it has, during the start).
    front_open: bool,
    // Dropped last: it must outlive the processes writing into it.
    dir: TempDir,
}

impl Uwsgi {
    /// Start uWSGI and wait until it serves; panics with the log tail on failure.
    pub fn start(opts: UwsgiOpts) -> Uwsgi {
        match Self::try_start(opts) {
            Ok(u) => u,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Start uWSGI and wait, within 20 s, until its front socket accepts connections, all
    /// `processes` workers exist and have the app imported (testapp.py's marker file: the
    /// master's without `--lazy-apps`, each worker's with it), and in `HttpRouter` mode the
    /// router process exists.
    pub fn try_start(opts: UwsgiOpts) -> Result<Uwsgi> {
        // The retries own the options.
        crate::server::start_retrying(move || Self::spawn(&opts))
    }

    /// The options as (name, value) pairs; a flag has value None.
    fn options(opts: &UwsgiOpts, front: &Listen, workers: &Listen, fifo: &Path) -> Vec<(String, Option<String>)> {
        let mut o: Vec<(String, Option<String>)> = Vec::new();
        let mut kv = |k: &str, v: Option<String>| o.push((k.to_string(), v));
        if opts.master {
            kv("master", None);
        }
        kv("processes", Some(opts.processes.to_string()));
        if let Some(t) = opts.threads {
            kv("threads", Some(t.to_string()));
        }
        if opts.enable_threads {
            kv("enable-threads", None);
        }
        if opts.lazy_apps {
            kv("lazy-apps", None);
        }
        match opts.mode {
            UwsgiMode::HttpSocket => kv("http-socket", Some(front.spec())),
            UwsgiMode::HttpRouter => {
                match &opts.https {
                    Some((cert, key)) => {
                        kv("https", Some(format!("{},{},{}", front.spec(), cert.display(), key.display())));
                    }
                    None => kv("http", Some(front.spec())),
                }
                kv("socket", Some(workers.spec()));
            }
            UwsgiMode::UwsgiSocket => kv("socket", Some(front.spec())),
        }
        kv("module", Some(opts.module.clone()));
        kv("chdir", Some(apps_dir().display().to_string()));
        if opts.master {
            kv("master-fifo", Some(fifo.display().to_string()));
        }
        // Exit when the app fails to import, instead of serving 500s in "full dynamic mode".
        kv("need-app", None);
        o
    }

    fn spawn(opts: &UwsgiOpts) -> Result<Uwsgi> {
        let dir = TempDir::new("uwsgi")?;
        let ready_dir = dir.path().join("ready");
        let fifo = dir.path().join("fifo");
        std::fs::create_dir_all(&ready_dir)?;

        let unix = |name: &str| Listen::Unix(dir.path().join(name));
        let (front, workers_sock) = match (opts.mode, opts.unix_socket) {
            (UwsgiMode::HttpRouter, false) => (Listen::Tcp(free_port()?), Listen::Tcp(free_port()?)),
            (UwsgiMode::HttpRouter, true) => (Listen::Tcp(free_port()?), unix("uwsgi.sock")),
            (UwsgiMode::HttpSocket, true) => (unix("http.sock"), unix("http.sock")),
            (UwsgiMode::UwsgiSocket, true) => (unix("uwsgi.sock"), unix("uwsgi.sock")),
            (_, false) => {
                let p = Listen::Tcp(free_port()?);
                (p.clone(), p)
            }
        };
        let options = Self::options(opts, &front, &workers_sock, &fifo);

        let bin = opts.bin();
        let mut args: Vec<String> = Vec::new();
        if opts.ini {
            let ini = dir.path().join("app.ini");
            let mut text = String::from("[uwsgi]\n");
            for (k, v) in &options {
                let _ = writeln!(text, "{k} = {}", v.as_deref().unwrap_or("true"));
            }
            for (k, v) in &opts.ini_lines {
                let _ = writeln!(text, "{k} = {v}");
            }
            std::fs::write(&ini, text).with_context(|| format!("writing {}", ini.display()))?;
            args.push("--ini".into());
            args.push(ini.display().to_string());
        } else {
            for (k, v) in options {
                args.push(format!("--{k}"));
                args.extend(v);
            }
        }
        args.extend(opts.extra_args.iter().cloned());

        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTRACER_TESTAPP_READY_DIR", &ready_dir)
            .envs(opts.env.iter().map(|(k, v)| (k, v)));
        // SIGINT shuts uWSGI down (SIGTERM would reload a uWSGI 2.0 master); its workers have
        // their reload mercy to go.
        let stop = Stop { signal: libc::SIGINT, grace: opts.reload_mercy() + MARGIN };
        let server = Server::spawn("uwsgi", &mut cmd, dir.path().join("uwsgi.log"), stop)?;
        let mut command = vec![bin.display().to_string()];
        command.extend(args);
        Ok(Uwsgi { server, opts: opts.clone(), front, workers_sock, fifo, command, ready_dir, front_open: false, dir })
    }

    /// Workers that have the app imported: without `--lazy-apps` the master imported it before
    /// forking (after each reload too), so every worker counts once the master's marker exists.
    fn ready_worker_pids(&self) -> Vec<u32> {
        let preloaded = !self.opts.lazy_apps && self.ready_dir.join(self.pid().to_string()).exists();
        self.worker_pids().into_iter().filter(|w| preloaded || self.ready_dir.join(w.to_string()).exists()).collect()
    }

    /// The master's pid (also the process group id). Without `--master`, the first worker.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The TCP port clients connect to: the workers' HTTP port (`HttpSocket`), the router's
    /// (`HttpRouter`), or the uwsgi socket (`UwsgiSocket`). Panics when that is a unix socket.
    pub fn port(&self) -> u16 {
        match &self.front {
            Listen::Tcp(p) => *p,
            Listen::Unix(p) => panic!("uwsgi listens on unix socket {}, not TCP", p.display()),
        }
    }

    /// The unix socket path clients connect to, when `unix_socket` is set (not in `HttpRouter`
    /// mode, whose front is TCP: see [`Uwsgi::workers_socket_path`]).
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.front {
            Listen::Unix(p) => Some(p),
            Listen::Tcp(_) => None,
        }
    }

    /// The workers' TCP port: the internal `--socket` in `HttpRouter` mode, else [`Uwsgi::port`].
    pub fn workers_port(&self) -> Option<u16> {
        match &self.workers_sock {
            Listen::Tcp(p) => Some(*p),
            Listen::Unix(_) => None,
        }
    }

    /// The workers' unix socket path, if they listen on one.
    pub fn workers_socket_path(&self) -> Option<&Path> {
        match &self.workers_sock {
            Listen::Unix(p) => Some(p),
            Listen::Tcp(_) => None,
        }
    }

    /// The uwsgi-protocol socket for nginx (`UwsgiSocket` mode).
    pub fn upstream(&self) -> Upstream {
        assert_eq!(
            self.opts.mode,
            UwsgiMode::UwsgiSocket,
            "only a --socket uWSGI speaks the uwsgi protocol to its clients"
        );
        match &self.front {
            Listen::Tcp(p) => Upstream::Tcp(*p),
            Listen::Unix(p) => Upstream::Unix(p.clone()),
        }
    }

    pub fn mode(&self) -> UwsgiMode {
        self.opts.mode
    }

    pub fn opts(&self) -> &UwsgiOpts {
        &self.opts
    }

    /// The exact command line run (binary first).
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// Pids uWSGI logged with `spawned uWSGI <kind> N (pid: P...)` (or `respawned`), kind being
    /// e.g. `http` for the router, in log order.
    fn logged_pids(&self, kind: &str) -> Vec<u32> {
        let needle = format!("uWSGI {kind} ");
        self.log()
            .lines()
            .filter(|l| l.contains("spawned") && l.contains(&needle))
            .filter_map(|l| {
                let rest = &l[l.find("pid: ")? + 5..];
                let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                rest[..end].parse().ok()
            })
            .collect()
    }

    /// The HTTP router process (`HttpRouter` mode): a child of the master, which logs
    /// `spawned uWSGI http 1 (pid: P)` for it. Its cmdline and comm are the master's (uWSGI
    /// renames processes only with `--auto-procname`/`--procname*`).
    pub fn router_pid(&self) -> Option<u32> {
        let children = procfs::children(self.pid());
        self.logged_pids("http").into_iter().rev().find(|p| children.contains(p))
    }

    /// Current live worker pids, sorted: the master's children but the router (with `master`
    /// off, the first process and its children).
    pub fn worker_pids(&self) -> Vec<u32> {
        let routers = self.logged_pids("http");
        let mut w: Vec<u32> = procfs::children(self.pid()).into_iter().filter(|p| !routers.contains(p)).collect();
        if !self.opts.master && procfs::is_alive(self.pid()) {
            w.push(self.pid());
            w.sort_unstable();
        }
        w
    }

    /// How long replacing workers may take: `--min-worker-lifetime` plus the reload mercy
    /// (`--worker-reload-mercy`, or `--reload-mercy` when longer) plus [`MARGIN`], from this
    /// instance's options or uWSGI's defaults (10 s and 60 s).
    pub fn worker_wait(&self) -> Duration {
        self.opts.worker_wait()
    }

    /// Wait, for [`Uwsgi::worker_wait`], until `n` workers exist and have the app imported, none
    /// of them in `exclude` (e.g. the workers before a `--max-requests` recycle or a reload).
    /// Returns their pids.
    pub fn wait_for_workers(&self, n: usize, exclude: &[u32]) -> Vec<u32> {
        let timeout = self.worker_wait();
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.ready_worker_pids();
            last.len() == n && last.iter().all(|p| !exclude.contains(p))
        });
        assert!(
            ok,
            "expected {n} ready uwsgi workers not in {exclude:?} within {timeout:?}, have {last:?}; {}",
            self.server.log_tail()
        );
        last
    }

    /// Send a command to the master FIFO (`--master-fifo`), e.g. `r` (graceful reload), `R`
    /// (brutal reload), `w` (reload workers only), `q` (graceful stop).
    pub fn fifo_command(&self, cmd: &str) {
        assert!(self.opts.master, "the master FIFO needs --master");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .unwrap_or_else(|e| panic!("opening master fifo {}: {e}", self.fifo.display()));
        f.write_all(cmd.as_bytes()).unwrap_or_else(|e| panic!("writing {cmd:?} to {}: {e}", self.fifo.display()));
    }

    /// Graceful reload through the master FIFO (`r`). Without `--lazy-apps` the master re-execs
    /// itself (same pid), imports the app again and forks new workers; with it, only the
    /// workers are replaced. Follow with [`Uwsgi::wait_for_workers`] excluding the old pids.
    pub fn reload(&self) {
        self.fifo_command("r");
    }

    /// Graceful reload by SIGHUP to the master.
    pub fn reload_sighup(&self) {
        self.signal_master(libc::SIGHUP);
    }

    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// uWSGI's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Scratch directory of this instance (log, fifo, ini, unix sockets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn signal_master(&self, sig: libc::c_int) {
        self.server.signal(sig);
    }
}

impl Started for Uwsgi {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    fn ready_timeout(&self) -> Duration {
        START_TIMEOUT
    }

    fn is_ready(&mut self) -> bool {
        // One connection, early: a probe connection made later reaches a worker about when a
        // test's agent attaches, and the agent would see its end without its start.
        self.front_open = self.front_open || self.front.accepts();
        let router_ok = self.opts.mode != UwsgiMode::HttpRouter || self.router_pid().is_some();
        self.front_open && router_ok && self.ready_worker_pids().len() == self.opts.processes as usize
    }

    fn progress(&self) -> String {
        format!(
            "{} {}, workers {:?} of {} expected, ready {:?}, router {:?}; command {:?}",
            self.front.spec(),
            if self.front.accepts() { "open" } else { "not accepting" },
            self.worker_pids(),
            self.opts.processes,
            self.ready_worker_pids(),
            self.router_pid(),
            self.command
        )
    }
}
