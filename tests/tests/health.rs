//! The kubelet's probes on the metrics server: `/healthz` while the agent runs, `/readyz` once its
//! programs are loaded and its first scan (here: the named process tree) is done. And what the
//! agent keeps of its privileges once it is ready.
use pytracer_tests::*;

#[test]
fn healthz_and_readyz_once_ready() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let mport = free_port();
    let t = Tracer::start(&[g.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    let health = get(mport, "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let ready = get(mport, "/readyz");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let other = get(mport, "/");
    assert_eq!((other.status, other.text().as_str()), (404, "pytracer serves /metrics, /healthz and /readyz\n"));
    assert_eq!(get(mport, "/metrics").status, 200);
    t.stop();
}

/// The capability sets of a process, from /proc/PID/status (hex masks), and no_new_privs.
fn capabilities(pid: u32) -> Vec<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn once_ready_the_agent_keeps_only_the_capabilities_it_needs() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let mport = free_port();
    // `always`: the frame-evaluation uprobe is attached after the drop, as libssl's are.
    let t = Tracer::start(&[g.pid()], &["--frame-eval", "always", "--metrics-addr", &format!("127.0.0.1:{mport}")]);
    // CAP_DAC_READ_SEARCH 2, CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39.
    let kept = format!("{:016x}", (1u64 << 2) | (1 << 19) | (1 << 21) | (1 << 38) | (1 << 39));
    let none = "0000000000000000".to_string();
    let expected: Vec<(String, String)> = [
        ("CapInh", none.clone()),
        ("CapPrm", kept.clone()),
        ("CapEff", kept.clone()),
        ("CapBnd", kept),
        ("CapAmb", none),
        ("NoNewPrivs", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(capabilities(t.pid().unwrap()), expected);
    let sent: Vec<_> = (0..3).map(|_| send(g.port(), "GET", "/users/42", b"", 200)).collect();
    let m = scrape(mport);
    let r = t.stop();
    assert_eq!(r.spans.len(), sent.len(), "{}", summarize(&r.spans));
    for s in &r.spans {
        assert_code(s, &apps_dir().join("testapp.py"), "user");
    }
    assert_eq!(sum(&m, "pytracer_attach_errors_total", &[]) as u64, 0, "a probe attached after the drop failed");
}
