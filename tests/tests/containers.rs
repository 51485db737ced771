//! Processes in containers, traced from the host: rootful podman runs the test app in the image
//! `cargo xtask setup` imports from the trixie chroot, under a kubepods-shaped cgroup parent
//! (`/kubepods/burstable/pod<uid>/libpod-<id>`, the cgroupfs driver's layout). Every span's
//! resource carries the container's identity as the node alone knows it: `container.id` and
//! `k8s.pod.uid` from /proc/PID/cgroup, the names from the bundle's annotations (containerd's keys
//! here, passed with `--annotation`) or, without them, the pod's HOSTNAME and its service-account
//! namespace file, and the in-container pid.
use std::time::Duration;

use pytracer_tests::podman::{require_podman, volume, Container};
use pytracer_tests::*;
use serde_json::{json, Value};

const UID_A: &str = "4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60";
const UID_B: &str = "9b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

struct App {
    container: Container,
    port: u16,
    /// The worker's pid inside the container: its ready marker's name (testready.py).
    worker_vpid: u32,
    _ready: TempDir,
}

fn start_app(uid: &str, extra: &[&str]) -> App {
    let ready = TempDir::new("container-ready").unwrap();
    let port = free_port();
    let parent = format!("/kubepods/burstable/pod{uid}/");
    let apps = volume(&apps_dir(), "/app");
    let ready_mount = format!("{}:/ready", ready.path().display());
    let mut args =
        vec!["--cgroup-parent", &parent, "-v", &apps, "-v", &ready_mount, "-e", "PYTRACER_TESTAPP_READY_DIR=/ready"];
    args.extend(extra);
    let bind = format!("127.0.0.1:{port}");
    let container = Container::run(
        &args,
        &["/opt/venv/bin/gunicorn", "--workers", "1", "--bind", &bind, "--chdir", "/app", "testapp:app"],
    );
    let worker_vpid = wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(ready.path()).ok()?.find_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
    })
    .unwrap_or_else(|| panic!("the app in {} did not get ready:\n{}", container.id, container.logs()));
    App { container, port, worker_vpid, _ready: ready }
}

#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
#[expect(clippy::many_single_char_names, reason = "a and b are the two apps, r the trace, m the scrape")]
fn container_and_pod_identity_on_every_span() {
    if !require_podman() {
        return;
    }
    // A: containerd's annotations in the bundle (podman writes --annotation into its config.json).
    let a = start_app(
        UID_A,
        &[
            "--annotation",
            "io.kubernetes.cri.sandbox-name=shop-7d9f-abcde",
            "--annotation",
            "io.kubernetes.cri.sandbox-namespace=prod",
            "--annotation",
            "io.kubernetes.cri.container-name=web",
        ],
    );
    // B: no annotations: the pod name is its hostname, the namespace the service account's file,
    // mounted where the kubelet mounts it.
    let sa = TempDir::new("serviceaccount").unwrap();
    std::fs::write(sa.path().join("namespace"), "billing").unwrap();
    let sa_mount = volume(sa.path(), "/var/run/secrets/kubernetes.io/serviceaccount");
    let b = start_app(UID_B, &["--hostname", "billing-5f6c-xk2p9", "-v", &sa_mount]);

    let mport = free_port();
    let t = Tracer::start(&[a.container.pid(), b.container.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    for _ in 0..2 {
        assert_eq!(get(a.port, "/hello").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(b.port, "/hello").status, 200);
    }
    // The same identity on the metrics: per request and per process (sampled once a second).
    let count = "http_server_request_duration_seconds_count";
    let labels_a = [
        ("container_id", a.container.id.as_str()),
        ("k8s_pod_name", "shop-7d9f-abcde"),
        ("k8s_namespace_name", "prod"),
        ("k8s_container_name", "web"),
        ("http_route", "/hello"),
    ];
    let labels_b = [
        ("container_id", b.container.id.as_str()),
        ("k8s_pod_name", "billing-5f6c-xk2p9"),
        ("k8s_namespace_name", "billing"),
    ];
    let counted = wait_until(Duration::from_secs(10), || {
        let m = scrape(mport);
        sum(&m, count, &labels_a) == 2.0
            && sum(&m, count, &labels_b) == 3.0
            && sum(&m, "process_memory_usage_bytes", &labels_a[..1]) > 0.0
    });
    let m = scrape(mport);
    assert!(counted, "{:?}", m.iter().filter(|l| l.name == count).collect::<Vec<_>>());
    assert_eq!(sum(&m, count, &[]), 5.0);
    let r = t.stop();

    let on_port = |port: u16| -> Vec<&Value> {
        r.spans.iter().filter(|s| attr_u64(s, "server.port") == Some(u64::from(port))).collect()
    };
    let (spans_a, spans_b) = (on_port(a.port), on_port(b.port));
    assert_eq!((spans_a.len(), spans_b.len(), r.spans.len()), (2, 3, 5), "{}", summarize(&r.spans));

    let expected = |app: &App, span: &Value, k8s: Value| {
        let res = &span["resource"];
        let pid = res["process.pid"].as_u64().expect("process.pid");
        let exe = res["process.executable.path"].as_str().unwrap_or_default();
        assert!(exe.ends_with("/python3.13"), "{exe}");
        let mut want = json!({
            "service.name": "testapp",
            "process.pid": pid,
            "process.executable.name": "gunicorn",
            "process.executable.path": exe,
            "container.id": app.container.id,
            "pytracer.process.vpid": app.worker_vpid,
        });
        want.as_object_mut().unwrap().extend(k8s.as_object().unwrap().clone());
        assert_eq!(res, &want);
        assert_eq!(span_path(span), Some("/hello"));
    };
    for s in spans_a {
        expected(
            &a,
            s,
            json!({"k8s.pod.uid": UID_A, "k8s.pod.name": "shop-7d9f-abcde", "k8s.namespace.name": "prod", "k8s.container.name": "web"}),
        );
    }
    for s in spans_b {
        expected(
            &b,
            s,
            json!({"k8s.pod.uid": UID_B, "k8s.pod.name": "billing-5f6c-xk2p9", "k8s.namespace.name": "billing"}),
        );
    }
}
