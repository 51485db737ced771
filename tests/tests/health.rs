//! The kubelet's probes on the metrics server: `/healthz` while the agent runs, `/readyz` once its
//! programs are loaded and its first scan (here: the named process tree) is done.
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
