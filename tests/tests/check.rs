//! `pytracer check` as root on this machine: every check passes, one line each in a fixed order,
//! and each running server is named with its interpreter, a containerised one with its container.
use std::process::Command;
use std::time::Duration;

use pytracer_tests::podman::{require_podman, volume, Container};
use pytracer_tests::*;

#[test]
fn check_passes_as_root_and_names_each_server() {
    if !require_podman() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = volume(&apps_dir(), "/app");
    let c = Container::run(
        &["-v", &apps],
        &["/opt/venv/bin/gunicorn", "--workers", "1", "--bind", &bind, "--chdir", "/app", "testapp:app"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(&bind).is_ok()),
        "container app did not listen:\n{}",
        c.logs()
    );

    let out = Command::new(pytracer_bin()).arg("check").output().expect("running pytracer check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let names: Vec<&str> = lines.iter().take(9).map(|l| l.split(": ").next().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "kernel",
            "btf",
            "tracefs",
            "capability CAP_BPF",
            "capability CAP_PERFMON",
            "capability CAP_SYS_ADMIN",
            "lockdown",
            "perf_event_paranoid",
            "bpf programs"
        ],
        "{stdout}"
    );
    assert!(lines.iter().take(9).all(|l| l.contains(": ok")), "{stdout}");

    let line_of = |pid: u32| {
        let prefix = format!("process {pid}: ");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no line for {pid}:\n{stdout}"))
    };
    let host = line_of(g.pid());
    assert!(host.starts_with("ok (CPython 3.11."), "{host}");
    assert!(!host.contains("container"), "{host}");
    let contained = line_of(c.pid());
    assert!(contained.starts_with("ok (CPython 3.13."), "{contained}");
    assert!(contained.ends_with(&format!(", container {})", &c.id[..12])), "{contained}");
    // Workers are their master's: no line of their own.
    for w in g.worker_pids() {
        assert!(!stdout.contains(&format!("process {w}: ")), "{stdout}");
    }
}
