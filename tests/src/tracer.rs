//! The pytracer agent under test, attached to given pids, writing spans to a scratch file.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::env::pytracer_bin;
use crate::tmp::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_LINE: &str = "pytracer: ready";

/// What a stopped tracer left behind.
#[derive(Debug)]
pub struct TraceResult {
    /// Every line of the output file, parsed, in file order.
    pub spans: Vec<Value>,
    pub stderr: String,
}

/// A running `pytracer trace` (or `run`) in its own process group; killed on drop.
pub struct Tracer {
    child: Option<Child>,
    stderr_path: PathBuf,
    output_path: PathBuf,
    // Dropped last: the agent writes into it until killed.
    dir: TempDir,
}

impl Tracer {
    /// Run `pytracer trace --pid P... --output <tmp>/spans.jsonl [extra]` and wait for
    /// `pytracer: ready` on its stderr. Panics (showing stderr) on timeout or early exit.
    ///
    /// The frame-evaluation probe is off unless the test passes `--frame-eval`: its sampled
    /// windows would add handler attributes to whichever spans fall inside one, and the wire-level
    /// tests compare attributes exactly. tests/tests/interpreters.rs asserts the handler's code.
    pub fn start(pids: &[u32], extra_args: &[&str]) -> Tracer {
        let mut args = extra_args.to_vec();
        if !args.contains(&"--frame-eval") {
            args.extend(["--frame-eval", "off"]);
        }
        Self::start_with_bin(&pytracer_bin(), pids, &args)
    }

    /// [`Tracer::start`] with an explicit agent binary (the harness self-test uses a stand-in).
    pub fn start_with_bin(bin: &Path, pids: &[u32], extra_args: &[&str]) -> Tracer {
        let mut args = vec!["trace".to_string()];
        for pid in pids {
            args.extend(["--pid".to_string(), pid.to_string()]);
        }
        args.extend(extra_args.iter().map(ToString::to_string));
        Self::spawn(bin, &args)
    }

    /// `pytracer run --config CONFIG --output <tmp>/spans.jsonl [extra]`: discovery by the
    /// configuration's rules, as a DaemonSet runs it.
    pub fn run(config: &Path, extra_args: &[&str]) -> Tracer {
        let mut args = vec!["run".to_string(), "--config".to_string(), config.display().to_string()];
        args.extend(extra_args.iter().map(ToString::to_string));
        Self::spawn(&pytracer_bin(), &args)
    }

    fn spawn(bin: &Path, args: &[String]) -> Tracer {
        let dir = TempDir::new("tracer").expect("creating tracer scratch dir");
        let stderr_path = dir.path().join("stderr.log");
        let output_path = dir.path().join("spans.jsonl");
        let stdout_path = dir.path().join("stdout.log");

        // The subcommand, then the output, then the rest.
        let mut cmd = Command::new(bin);
        cmd.args(&args[..1])
            .arg("--output")
            .arg(&output_path)
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("creating tracer stdout file"))
            .stderr(File::create(&stderr_path).expect("creating tracer stderr file"))
            // Own group: a Ctrl-C in the terminal running the tests must not stop it early, and
            // Drop can kill anything it spawned.
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut t = Tracer { child: Some(child), stderr_path, output_path, dir };
        t.wait_ready();
        t
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.stderr_now().lines().any(|l| l.trim_end() == READY_LINE) {
                return;
            }
            let child = self.child.as_mut().expect("tracer running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "pytracer exited before `{READY_LINE}` ({status}); stderr ({}):\n{}",
                    self.stderr_path.display(),
                    self.stderr_now()
                );
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "pytracer did not print `{READY_LINE}` within {READY_TIMEOUT:?}; stderr ({}):\n{}",
                    self.stderr_path.display(),
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's pid (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stderr written so far.
    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGINT, wait up to 15 s, require exit status 0, then parse the span file.
    /// Panics with the agent's stderr on any failure.
    pub fn stop(mut self) -> TraceResult {
        let status = self.interrupt_and_wait();
        let stderr = self.stderr_now();
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                panic!("pytracer exited with {s} after SIGINT; stderr ({}):\n{stderr}", self.stderr_path.display())
            }
            None => panic!(
                "pytracer did not exit within {STOP_TIMEOUT:?} of SIGINT (killed); stderr ({}):\n{stderr}",
                self.stderr_path.display()
            ),
        }
        let text = std::fs::read_to_string(&self.output_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}; stderr:\n{stderr}", self.output_path.display()));
        let spans =
            parse_jsonl(&text).unwrap_or_else(|e| panic!("{} : {e}; stderr:\n{stderr}", self.output_path.display()));
        TraceResult { spans, stderr }
    }

    /// [`Self::stop`] for output that is not JSON lines (`--format pretty`): the output file's
    /// text and the agent's stderr.
    pub fn stop_raw(mut self) -> (String, String) {
        let status = self.interrupt_and_wait();
        let stderr = self.stderr_now();
        assert!(status.is_some_and(|s| s.success()), "pytracer did not exit cleanly ({status:?}): {stderr}");
        let text = std::fs::read_to_string(&self.output_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}; stderr:\n{stderr}", self.output_path.display()));
        (text, stderr)
    }

    /// Whether the agent is still running (it has not exited, by a crash or otherwise).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// [`Self::stop`] that never panics, for a test that reports a dead agent rather than
    /// failing at once (the fault suite): the exit status after SIGINT (None if it had already
    /// gone or had to be killed after `timeout`), and whatever it wrote (lines that do not parse
    /// left out).
    pub fn stop_lenient(mut self, timeout: Duration) -> (Option<ExitStatus>, TraceResult) {
        let status = self.signal_wait_for(libc::SIGINT, timeout);
        let text = std::fs::read_to_string(&self.output_path).unwrap_or_default();
        let spans = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        (status, TraceResult { spans, stderr: self.stderr_now() })
    }

    /// Sends `signal` (SIGKILL, SIGTERM) to the agent and waits up to 15 s for it to exit: its
    /// exit status and stderr, None if it had to be killed. What it wrote is not read: a test of
    /// a restart looks at the next agent's output.
    pub fn signal_and_wait(mut self, signal: libc::c_int) -> (Option<ExitStatus>, String) {
        let status = self.signal_wait(signal);
        (status, self.stderr_now())
    }

    /// Some(status) if it exited within the timeout, None if it had to be killed.
    fn interrupt_and_wait(&mut self) -> Option<ExitStatus> {
        self.signal_wait(libc::SIGINT)
    }

    fn signal_wait(&mut self, signal: libc::c_int) -> Option<ExitStatus> {
        self.signal_wait_for(signal, STOP_TIMEOUT)
    }

    fn signal_wait_for(&mut self, signal: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    kill_group(&mut child);
                    return None;
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) on the process group of a child we spawned with process_group(0).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One JSON value per non-empty line; the error names the offending line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}: {l}", i + 1)))
        .collect()
}
