//! What the frame-evaluation probe costs on each interpreter: the bench app on every pyenv
//! CPython of the interpreter tests and on Debian's static 3.11, first untraced, then traced with
//! `--frame-eval always` (the opt-in mode). Probe hits (Python stacks) per request and the time
//! each request gained; the default mode opens the probe only in short windows.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::configs::{bench_dir, free_port, get, start_pytracer, wait_for_port, Env, TempDir};
use super::wrk;
use crate::{paths, setup, supervised::Supervised};
use anyhow::{Context, Result};

pub struct InterpreterCost {
    pub name: String,
    pub untraced_rps: f64,
    pub traced_rps: f64,
    pub stacks_per_request: f64,
}

const ROUTE: &str = "/users/42";

fn venvs() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = setup::INTERPRETER_SERIES
        .iter()
        .map(|s| (format!("pyenv {s} (shared)"), paths::repo_root().join(format!(".venvs/interp-{s}"))))
        .collect();
    v.push(("Debian 3.11 (static)".into(), paths::repo_root().join(".venvs/debian-3.11")));
    v
}

fn start_gunicorn(venv: &Path, port: u16, dir: &Path) -> Result<Supervised> {
    let child = Command::new(venv.join("bin/gunicorn"))
        .args(["--workers", "2", "--worker-class", "sync", "--bind", &format!("127.0.0.1:{port}"), "--chdir"])
        .arg(bench_dir().join("apps"))
        .arg("benchapp:app")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gunicorn.log"))?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start gunicorn of {}", venv.display()))?;
    Ok(Supervised::new("gunicorn", child, libc::SIGTERM))
}

fn stacks(metrics_port: u16) -> Result<f64> {
    // The agent refreshes its counters once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let text = get(metrics_port, "/metrics")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("pytracer_python_stacks_total "))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum())
}

pub fn measure(pytracer: &Path, seconds: u64, connections: u32) -> Result<Vec<InterpreterCost>> {
    let duration = Duration::from_secs(seconds);
    let mut out = Vec::new();
    for (name, venv) in venvs() {
        eprintln!("[bench] frame-eval cost on {name}");
        let dir = TempDir::new()?;
        let port = free_port()?;
        let mut gunicorn = start_gunicorn(&venv, port, dir.path())?;
        wait_for_port(port, &gunicorn, Duration::from_secs(30))?;
        for _ in 0..10 {
            get(port, ROUTE)?;
        }
        let untraced = wrk::run(port, ROUTE, connections, duration)?;
        let mport = free_port()?;
        let env = Env { venv: venv.clone(), pytracer: pytracer.to_path_buf() };
        let pid = gunicorn.pid().to_string();
        let maddr = format!("127.0.0.1:{mport}");
        let (mut agent, _, _) = start_pytracer(
            &env,
            &["trace", "--pid", &pid, "--frame-eval", "always", "--metrics-addr", &maddr],
            dir.path(),
        )?;
        let before = stacks(mport)?;
        let traced = wrk::run(port, ROUTE, connections, duration)?;
        let during = stacks(mport)? - before;
        agent.stop()?;
        gunicorn.stop()?;
        out.push(InterpreterCost {
            name,
            untraced_rps: untraced.rps(),
            traced_rps: traced.rps(),
            stacks_per_request: during / traced.requests.max(1) as f64,
        });
    }
    Ok(out)
}
