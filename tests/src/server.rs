//! What every server the tests start has in common: a child process in its own process group,
//! its stdout and stderr in a log file kept for failure messages, a readiness wait, and a stop of
//! the whole group on drop. The specific harnesses (Gunicorn, uWSGI, nginx, PostgreSQL, Redis)
//! wrap a [`Server`] and implement [`Started`] for their readiness.
//!
//! Every wait is derived from the server's own timeout for the same thing plus [`MARGIN`], never
//! shorter: a harness that gives up before the server itself would have is a flaky test.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::wait::wait_until;

/// What a harness waits beyond the server's own timeout: the time to notice (polling), to fork
/// and to log, on a loaded 2-core machine.
pub const MARGIN: Duration = Duration::from_secs(10);

/// Lines of log shown in failure messages.
const TAIL_LINES: usize = 40;
/// A stop slower than this is reported (on stderr, not captured): it slows the suite down.
const SLOW_STOP: Duration = Duration::from_secs(5);

/// A port that was free a moment ago. Racy by nature; [`start_retrying`] retries on a collision.
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether 127.0.0.1:`port` accepts a TCP connection.
pub(crate) fn tcp_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
}

/// Last `n` lines of a file, for error messages.
pub fn file_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read: {e}>"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The value of a command-line option given as `--name VALUE` or `--name=VALUE` (any of
/// `names`); the last one wins, as in the servers' own parsers.
pub(crate) fn option_value<'a>(args: &'a [String], names: &[&str]) -> Option<&'a str> {
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        for n in names {
            if a == n {
                found = args.get(i + 1).map(String::as_str);
            } else if let Some(v) = a.strip_prefix(n).and_then(|rest| rest.strip_prefix('=')) {
                found = Some(v);
            }
        }
    }
    found
}

/// A whole number of seconds, as the servers' timeout options take.
pub(crate) fn secs(value: Option<&str>) -> Option<Duration> {
    value.and_then(|v| v.trim().parse().ok()).map(Duration::from_secs)
}

/// How a server is asked to stop, and how long it may take before its group is killed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop {
    pub signal: libc::c_int,
    /// The server's own bound on its shutdown, plus [`MARGIN`].
    pub grace: Duration,
}

/// A server process in its own process group, its output in a log file; stopped on drop.
#[derive(Debug)]
pub struct Server {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    stop: Stop,
}

impl Server {
    /// Spawns `cmd` with stdin from /dev/null and stdout and stderr into a new `log_path`, in its
    /// own process group, so that one signal reaches the master and every worker.
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log_path: PathBuf, stop: Stop) -> Result<Server> {
        let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {name} ({})", cmd.get_program().to_string_lossy()))?;
        Ok(Server { name, child, log_path, stop })
    }

    /// The server's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Its combined stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log's path and last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        format!("log {}:\n{}", self.log_path.display(), file_tail(&self.log_path, TAIL_LINES))
    }

    /// Sends `sig` to the server's main process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on a child we spawned and have not reaped (Drop reaps it).
        unsafe {
            libc::kill(self.pid_t(), sig);
        }
    }

    /// Its exit status, if it has exited.
    pub(crate) fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    fn pid_t(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t")
    }
}

impl Drop for Server {
    /// The stop signal to the main process, up to the grace for it to exit, then SIGKILL to the
    /// whole group, which also takes workers orphaned by a master that died first.
    fn drop(&mut self) {
        let started = Instant::now();
        self.signal(self.stop.signal);
        wait_until(self.stop.grace, || !matches!(self.child.try_wait(), Ok(None)));
        // SAFETY: kill(2) on our child's process group; ESRCH when it is gone already is harmless.
        unsafe {
            libc::kill(-self.pid_t(), libc::SIGKILL);
        }
        let _ = self.child.wait();
        let took = started.elapsed();
        if took > SLOW_STOP {
            // Straight to fd 2: libtest would hide an eprintln! of a passing test.
            let _ = writeln!(std::io::stderr(), "pytracer-tests: {} took {took:?} to stop", self.name);
        }
    }
}

/// A server wrapper's readiness, for [`wait_ready`] and [`start_retrying`].
pub(crate) trait Started: Sized {
    fn server(&self) -> &Server;
    fn server_mut(&mut self) -> &mut Server;
    /// How long the start may take: the server's own bound on it plus [`MARGIN`].
    fn ready_timeout(&self) -> Duration;
    /// Whether it is ready; called every poll, may remember what it has seen already.
    fn is_ready(&mut self) -> bool;
    /// What is ready and what is not yet, for the timeout message.
    fn progress(&self) -> String {
        String::new()
    }
    /// What to show of the server in an error message.
    fn diagnostics(&self) -> String {
        self.server().log_tail()
    }
    /// All its output, searched for a port collision.
    fn output(&self) -> String {
        self.server().log()
    }
}

/// Polls until `s` is ready; fails, with its diagnostics, when it exits or its ready timeout passes.
pub(crate) fn wait_ready<S: Started>(s: &mut S) -> Result<()> {
    let timeout = s.ready_timeout();
    let mut exited = Ok(None);
    let ready = wait_until(timeout, || {
        exited = s.server_mut().try_wait();
        !matches!(exited, Ok(None)) || s.is_ready()
    });
    if let Some(status) = exited? {
        bail!("{} exited during startup ({status}); {}", s.server().name(), s.diagnostics());
    }
    if !ready {
        bail!("{} not ready after {timeout:?}: {}; {}", s.server().name(), s.progress(), s.diagnostics());
    }
    Ok(())
}

/// Spawns and waits until ready. The port is picked free, but another process may take it before
/// the server binds it, so a start that failed on "Address already in use" is tried again (with a
/// fresh `spawn`, so on another port).
pub(crate) fn start_retrying<S: Started>(mut spawn: impl FnMut() -> Result<S>) -> Result<S> {
    let mut last_err = None;
    for _ in 0..3 {
        let mut s = spawn()?;
        match wait_ready(&mut s) {
            Ok(()) => return Ok(s),
            Err(e) => {
                let collided = s.output().contains("Address already in use");
                last_err = Some(e);
                if !collided {
                    break;
                }
                // Dropping `s` stops what is left of it.
            }
        }
    }
    Err(last_err.expect("at least one attempt"))
}
