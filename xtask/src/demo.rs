//! `cargo xtask demo`: the bundled Flask app under Gunicorn, traced by pytracer, with traffic.
//!
//! Gunicorn and pytracer run in process groups of their own, so the terminal's Ctrl-C reaches only
//! xtask, which then stops them in order: traffic, pytracer (flushes its last spans), Gunicorn.
use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, BufReader, ErrorKind},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    process::{ChildStderr, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{cmd, paths, setup, supervised::Supervised, traffic};

const READY_LINE: &str = "pytracer: ready";
const GUNICORN_START_TIMEOUT: Duration = Duration::from_secs(20);
const PYTRACER_READY_TIMEOUT: Duration = Duration::from_mins(1);
const POLL: Duration = Duration::from_millis(100);

/// Set by the SIGINT/SIGTERM/SIGHUP handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn run(port: u16, duration: Option<Duration>) -> Result<()> {
    setup::demo()?;
    let pytracer_bin = cmd::build_agent("demo")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    ensure_port_free(addr)?;
    if !cmd::is_root() {
        // Ask for the password now, in the foreground: pytracer later runs in a background
        // process group, where sudo cannot read the terminal.
        cmd::run(Command::new("sudo").arg("-v")).context("pytracer needs root; sudo failed")?;
    }

    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
        // A closed terminal or ssh session: stop Gunicorn and the agent as on Ctrl-C, rather
        // than leave them holding the demo's port.
        libc::signal(libc::SIGHUP, handler);
    }

    let mut gunicorn = start_gunicorn(addr)?;
    eprintln!("[demo] gunicorn master pid {} serving the demo app on http://{addr}", gunicorn.pid());
    // At a terminal, with no time limit: the live view, the spans in a file.
    if duration.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return live(&pytracer_bin, addr, gunicorn);
    }
    let mut pytracer = start_pytracer(&pytracer_bin, gunicorn.pid())?;
    if interrupted() {
        return stop_all(pytracer, gunicorn);
    }
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let traffic = traffic::start(addr, stop_traffic.clone());
    match duration {
        Some(d) => eprintln!("[demo] tracing; sending requests for {}s; spans follow on stdout", d.as_secs()),
        None => eprintln!("[demo] tracing; sending requests; spans follow on stdout; Ctrl-C stops"),
    }

    let start = Instant::now();
    while !interrupted() && duration.is_none_or(|d| start.elapsed() < d) {
        if let Some(status) = pytracer.child.try_wait()? {
            eprintln!("[demo] pytracer exited on its own ({status}); stopping");
            break;
        }
        if let Some(status) = gunicorn.child.try_wait()? {
            eprintln!("[demo] gunicorn exited on its own ({status}); stopping");
            break;
        }
        thread::sleep(POLL);
    }

    eprintln!("[demo] stopping");
    stop_traffic.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    stop_all(pytracer, gunicorn)
}

/// `pytracer top` in the foreground until `q`, with traffic, the spans also written to a file.
fn live(bin: &std::path::Path, addr: SocketAddr, mut gunicorn: Supervised) -> Result<()> {
    let spans = std::env::temp_dir().join(format!("pytracer-demo-spans-{}.jsonl", std::process::id()));
    let mut command = if cmd::is_root() { Command::new(bin) } else { sudo(bin) };
    command.args(["top", "--pid", &gunicorn.pid().to_string(), "--output"]).arg(&spans);
    eprintln!("[demo] {}", cmd::describe(&command));
    eprintln!("[demo] spans also go to {} (JSON lines); q quits", spans.display());
    thread::sleep(Duration::from_secs(2));
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let traffic = traffic::start(addr, stop_traffic.clone());
    let status = command.status().with_context(|| format!("cannot start `{}`", cmd::describe(&command)));
    stop_traffic.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    gunicorn.stop()?;
    let status = status?;
    if !status.success() {
        bail!("pytracer top exited with {status}");
    }
    eprintln!("[demo] stopped; the spans are in {}", spans.display());
    Ok(())
}

fn sudo(bin: &std::path::Path) -> Command {
    let mut sudo = Command::new("sudo");
    sudo.arg("-n").arg(bin);
    sudo
}

fn stop_all(mut pytracer: Supervised, mut gunicorn: Supervised) -> Result<()> {
    let pytracer_status = pytracer.stop();
    let gunicorn_status = gunicorn.stop();
    let pytracer_status = pytracer_status?;
    gunicorn_status?;
    if !pytracer_status.success() {
        bail!("pytracer exited with {pytracer_status}");
    }
    eprintln!("[demo] stopped");
    Ok(())
}

fn ensure_port_free(addr: SocketAddr) -> Result<()> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AddrInUse => bail!(
            "port {} on {} is already in use by another program; stop it or pick another port with --port",
            addr.port(),
            addr.ip()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot bind {addr}")),
    }
}

fn start_gunicorn(addr: SocketAddr) -> Result<Supervised> {
    let venv = setup::Venv::demo().dir;
    let mut command = Command::new(venv.join("bin/gunicorn"));
    command
        .args(["--workers", "2", "--worker-class", "sync", "--bind"])
        .arg(addr.to_string())
        .arg("--chdir")
        .arg(paths::repo_root().join("demo"))
        .arg("app:app")
        .stdin(Stdio::null())
        // Gunicorn's log (stderr) goes to the terminal: startup lines, and the reason if it fails.
        .process_group(0);
    eprintln!("[demo] {}", cmd::describe(&command));
    let child = command.spawn().with_context(|| format!("cannot start `{}`", cmd::describe(&command)))?;
    let mut gunicorn = Supervised::new("gunicorn", child, libc::SIGTERM);

    let deadline = Instant::now() + GUNICORN_START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, POLL).is_ok() {
            return Ok(gunicorn);
        }
        if let Some(status) = gunicorn.child.try_wait()? {
            bail!("gunicorn exited before listening on {addr} ({status}); its log is above");
        }
        if interrupted() {
            bail!("interrupted while waiting for gunicorn");
        }
        if Instant::now() > deadline {
            gunicorn.stop()?;
            bail!("gunicorn did not listen on {addr} within {}s", GUNICORN_START_TIMEOUT.as_secs());
        }
        thread::sleep(POLL);
    }
}

enum StderrEvent {
    Ready,
    Closed,
}

fn start_pytracer(bin: &std::path::Path, pid: u32) -> Result<Supervised> {
    // sudo relays the SIGINT sent to it on stop.
    let mut command = if cmd::is_root() { Command::new(bin) } else { sudo(bin) };
    // Routes and handlers come from the app's route table in the default mode; pretty lines are
    // what a person at the terminal reads (JSON lines stay the default for pipes and files).
    command
        .args(["trace", "--format", "pretty", "--pid", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0);
    eprintln!("[demo] {}", cmd::describe(&command));
    let mut child = command.spawn().with_context(|| format!("cannot start `{}`", cmd::describe(&command)))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut pytracer = Supervised::new("pytracer", child, libc::SIGINT);

    let (events, ready) = mpsc::channel();
    thread::spawn(move || forward_stderr(stderr, events));
    let deadline = Instant::now() + PYTRACER_READY_TIMEOUT;
    loop {
        match ready.recv_timeout(POLL) {
            Ok(StderrEvent::Ready) => return Ok(pytracer),
            Ok(StderrEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = pytracer.child.wait()?;
                bail!("pytracer exited before printing `{READY_LINE}` ({status}); its messages are above");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if interrupted() {
            // Leave the shutdown to the caller, which stops both processes in order.
            return Ok(pytracer);
        }
        if Instant::now() > deadline {
            pytracer.stop()?;
            bail!("pytracer did not print `{READY_LINE}` within {}s", PYTRACER_READY_TIMEOUT.as_secs());
        }
    }
}

/// Copies pytracer's stderr to ours, except the ready line, which it reports instead.
#[expect(clippy::needless_pass_by_value, reason = "a thread's body: it owns its end of the channel")]
fn forward_stderr(stderr: ChildStderr, events: mpsc::Sender<StderrEvent>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.trim_end() == READY_LINE {
            let _ = events.send(StderrEvent::Ready);
        } else {
            eprintln!("{line}");
        }
    }
    let _ = events.send(StderrEvent::Closed);
}
