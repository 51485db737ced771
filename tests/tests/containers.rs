//! Processes in containers, traced from the host: rootful podman runs the test app in the image
//! `cargo xtask setup` imports from the trixie chroot, under a kubepods-shaped cgroup parent
//! (`/kubepods/burstable/pod<uid>/libpod-<id>`, the cgroupfs driver's layout). Every span's
//! resource carries the container's identity as the node alone knows it: `container.id` and
//! `k8s.pod.uid` from /proc/PID/cgroup, the names from the bundle's annotations (containerd's keys
//! here, passed with `--annotation`) or, without them, the pod's HOSTNAME and its service-account
//! namespace file, and the in-container pid. A second test lays a runc container out as
//! containerd does for a pod (bundle path, annotations, cgroupfs path).
use std::time::Duration;

use pytracer_tests::podman::{require_podman, require_podman_uwsgi, volume, App};
use pytracer_tests::*;
use serde_json::{json, Value};

const UID_A: &str = "4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60";
const UID_B: &str = "9b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
#[expect(clippy::many_single_char_names, reason = "a and b are the two apps, r the trace, m the scrape")]
fn container_and_pod_identity_on_every_span() {
    if !require_podman() {
        return;
    }
    // A: containerd's annotations in the bundle (podman writes --annotation into its config.json).
    let a = App::gunicorn(
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
    let b = App::gunicorn(UID_B, &["--hostname", "billing-5f6c-xk2p9", "-v", &sa_mount]);

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

/// A Gunicorn app and a uWSGI app, each in its own container and pod, traced by one agent: one
/// span per request, each with its own container's identity, the worker's in-container pid, its
/// server as the executable and the Flask rule as the route.
#[test]
fn gunicorn_and_uwsgi_each_in_its_own_container() {
    if !require_podman_uwsgi() {
        return;
    }
    let pod = |name: &str, namespace: &str, container: &str| {
        [
            format!("io.kubernetes.cri.sandbox-name={name}"),
            format!("io.kubernetes.cri.sandbox-namespace={namespace}"),
            format!("io.kubernetes.cri.container-name={container}"),
        ]
        .into_iter()
        .flat_map(|a| ["--annotation".to_string(), a])
        .collect::<Vec<_>>()
    };
    let g_args = pod("front-6d7e-a1b2c", "web", "gunicorn");
    let u_args = pod("legacy-8f9a-d3e4f", "batch", "uwsgi");
    let g = App::gunicorn(UID_A, &g_args.iter().map(String::as_str).collect::<Vec<_>>());
    let u = App::uwsgi(UID_B, &u_args.iter().map(String::as_str).collect::<Vec<_>>());

    let t = Tracer::start(&[g.container.pid(), u.container.pid()], &[]);
    let sent = [(&g, "/hello", 2), (&g, "/users/3", 1), (&u, "/hello", 3), (&u, "/users/5", 2)];
    for (app, path, times) in sent {
        for _ in 0..times {
            assert_eq!(get(app.port, path).status, 200, "{path} on {}", app.container.id);
        }
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), 8, "{}", summarize(&r.spans));
    for (app, server, uid, (pod_name, namespace, container)) in [
        (&g, "gunicorn", UID_A, ("front-6d7e-a1b2c", "web", "gunicorn")),
        (&u, "uwsgi", UID_B, ("legacy-8f9a-d3e4f", "batch", "uwsgi")),
    ] {
        let mine: Vec<&Value> =
            r.spans.iter().filter(|s| attr_u64(s, "server.port") == Some(u64::from(app.port))).collect();
        let routes: Vec<(Option<&str>, Option<&str>)> =
            mine.iter().map(|s| (span_path(s), attr_str(s, "http.route"))).collect();
        let want: Vec<(Option<&str>, Option<&str>)> = sent
            .iter()
            .filter(|(a, _, _)| a.port == app.port)
            .flat_map(|(_, path, times)| {
                let route = if path.starts_with("/users/") { "/users/<int:user_id>" } else { "/hello" };
                std::iter::repeat_n((Some(*path), Some(route)), *times)
            })
            .collect();
        assert_eq!(routes, want, "{server}: {}", summarize(&r.spans));
        for s in mine {
            let res = &s["resource"];
            let exe = res["process.executable.path"].as_str().unwrap_or_default();
            // Gunicorn is a script the interpreter runs; uWSGI embeds it.
            let binary = if server == "gunicorn" { "/python3.13" } else { "/opt/venv/bin/uwsgi" };
            assert!(exe.ends_with(binary), "{server}: {exe}");
            assert_eq!(
                res,
                &json!({
                    "service.name": "testapp",
                    "process.pid": res["process.pid"],
                    "process.executable.name": server,
                    "process.executable.path": exe,
                    "container.id": app.container.id,
                    "k8s.pod.uid": uid,
                    "k8s.pod.name": pod_name,
                    "k8s.namespace.name": namespace,
                    "k8s.container.name": container,
                    "pytracer.process.vpid": app.worker_vpid,
                }),
                "{server}"
            );
        }
    }
}

/// A runc container laid out as a Kubernetes runtime lays out a pod's: its bundle where that
/// runtime keeps it, with that runtime's annotations in its config.json, and a cgroupfs path
/// under `/kubepods/besteffort/pod<uid>/`. Serves the test app on the host's network.
struct RuncContainer {
    id: String,
    /// Removed on drop (the bundle's directory, or the one above it that is the container's).
    dirs: Vec<std::path::PathBuf>,
    port: u16,
    /// The Gunicorn master's host pid.
    master: u32,
    /// The worker's pid inside the container.
    vpid: u32,
    /// Where the worker marks itself ready.
    ready: TempDir,
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runc").args(["delete", "-f", &self.id]).status();
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A 64-hex container id unique to this run.
fn container_id(salt: u64) -> String {
    let seed = (u64::from(std::process::id()) << 20 ^ u64::from(free_port())) ^ salt;
    format!("{:016x}{:016x}{:016x}{:016x}", seed, seed ^ 0xa5a5, seed ^ 0x5a5a, seed ^ 0xffff)
}

impl RuncContainer {
    /// `runc run -d` of the trixie chroot with `bundle/config.json` carrying `annotations` and
    /// `cgroups_path`; `remove` is what to delete afterwards. Waits for the app's worker.
    fn run(
        id: &str,
        bundle: &std::path::Path,
        remove: &std::path::Path,
        cgroups_path: &str,
        annotations: &Value,
    ) -> Self {
        std::fs::create_dir_all(bundle).unwrap();
        let ready = TempDir::new("runc-ready").unwrap();
        let port = free_port();
        let mut c =
            RuncContainer { id: id.to_string(), dirs: vec![remove.to_path_buf()], port, master: 0, vpid: 0, ready };
        let spec = std::process::Command::new("runc").arg("spec").arg("--bundle").arg(bundle).status().unwrap();
        assert!(spec.success(), "runc spec");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
        config["root"] = json!({"path": debian_chroot("trixie"), "readonly": true});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!([
            "/opt/venv/bin/gunicorn",
            "--workers",
            "1",
            "--bind",
            format!("127.0.0.1:{port}"),
            "--chdir",
            "/app",
            "testapp:app"
        ]);
        config["process"]["env"].as_array_mut().unwrap().push(json!("PYTRACER_TESTAPP_READY_DIR=/ready"));
        // The host's network, as the test reaches the app on 127.0.0.1.
        config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "network");
        config["linux"]["cgroupsPath"] = json!(cgroups_path);
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/app", "type": "bind", "source": apps_dir(), "options": ["rbind", "ro"]}));
        mounts.push(
            json!({"destination": "/ready", "type": "bind", "source": c.ready.path(), "options": ["rbind", "rw"]}),
        );
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
        config["annotations"] = annotations.clone();
        std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = bundle.join("runc.log");
        let run = std::process::Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(&c.id)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(bundle.join("runc.err")).unwrap())
            .status()
            .unwrap();
        assert!(run.success(), "runc run: {}", std::fs::read_to_string(bundle.join("runc.err")).unwrap_or_default());
        c.vpid = wait_for(Duration::from_secs(30), || {
            std::fs::read_dir(c.ready.path()).ok()?.find_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("app not ready: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        let state = std::process::Command::new("runc").args(["state", &c.id]).output().unwrap();
        let state: Value = serde_json::from_slice(&state.stdout).unwrap();
        c.master = u32::try_from(state["pid"].as_u64().unwrap()).unwrap();
        c
    }
}

/// The identity attributes of a span's resource, in a fixed order.
fn identity_of(span: &Value) -> Vec<(&'static str, Value)> {
    let res = span["resource"].as_object().unwrap();
    [
        "service.name",
        "container.id",
        "k8s.pod.uid",
        "k8s.pod.name",
        "k8s.namespace.name",
        "k8s.container.name",
        "pytracer.process.vpid",
    ]
    .iter()
    .map(|k| (*k, res.get(*k).cloned().unwrap_or(Value::Null)))
    .collect()
}

/// containerd's layout: the bundle at /run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/
/// with containerd's annotations, the cgroup `/kubepods/besteffort/pod<uid>/<id>` (cgroupfs
/// driver: a bare 64-hex directory).
#[test]
fn containerd_layout_run_by_runc() {
    if !require_podman() {
        return;
    }
    let uid = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b";
    let id = container_id(1);
    let bundle = std::path::PathBuf::from(format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}"));
    let annotations = json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-name": "cart-5d6e7f-h4j2k",
        "io.kubernetes.cri.sandbox-namespace": "store",
        "io.kubernetes.cri.sandbox-uid": uid,
        "io.kubernetes.cri.container-name": "app",
    });
    let c = RuncContainer::run(&id, &bundle, &bundle, &format!("/kubepods/besteffort/pod{uid}/{id}"), &annotations);

    let t = Tracer::start(&[c.master], &[]);
    for _ in 0..2 {
        assert_eq!(get(c.port, "/hello").status, 200);
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), 2, "{}", summarize(&r.spans));
    for s in &r.spans {
        assert_eq!(
            identity_of(s),
            [
                ("service.name", json!("testapp")),
                ("container.id", json!(id)),
                ("k8s.pod.uid", json!(uid)),
                ("k8s.pod.name", json!("cart-5d6e7f-h4j2k")),
                ("k8s.namespace.name", json!("store")),
                ("k8s.container.name", json!("app")),
                ("pytracer.process.vpid", json!(c.vpid)),
            ]
        );
        assert_eq!(span_path(s), Some("/hello"));
    }
}

/// CRI-O's layout: the bundle at /run/containers/storage/overlay-containers/<id>/userdata/ with
/// CRI-O's annotations, naming its pod's sandbox, whose own bundle (only its config.json here)
/// carries the pod's labels; the cgroup `/kubepods/besteffort/pod<uid>/crio-<id>`. The service
/// name is the pod's `app.kubernetes.io/name`, on the spans and the metrics.
#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn crio_layout_names_the_service_from_the_pods_label() {
    if !require_podman() {
        return;
    }
    let uid = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";
    let (id, sandbox) = (container_id(2), container_id(3));
    let storage = std::path::Path::new("/run/containers/storage/overlay-containers");
    let pod_labels = json!({
        "app.kubernetes.io/name": "checkout",
        "io.kubernetes.pod.name": "checkout-7f8g9h-k2l3m",
        "io.kubernetes.pod.namespace": "payments",
        "io.kubernetes.pod.uid": uid,
    });
    let sandbox_dir = storage.join(&sandbox);
    std::fs::create_dir_all(sandbox_dir.join("userdata")).unwrap();
    let sandbox_config = json!({"ociVersion": "1.0.2", "annotations": {
        "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.Labels": pod_labels.to_string(),
    }});
    std::fs::write(sandbox_dir.join("userdata/config.json"), sandbox_config.to_string()).unwrap();
    let container_labels = json!({
        "io.kubernetes.container.name": "api",
        "io.kubernetes.pod.name": "checkout-7f8g9h-k2l3m",
        "io.kubernetes.pod.namespace": "payments",
        "io.kubernetes.pod.uid": uid,
    });
    let annotations = json!({
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.SandboxID": sandbox,
        "io.kubernetes.cri-o.Labels": container_labels.to_string(),
        "io.kubernetes.pod.name": "checkout-7f8g9h-k2l3m",
        "io.kubernetes.pod.namespace": "payments",
        "io.kubernetes.pod.uid": uid,
        "io.kubernetes.container.name": "api",
    });
    let mut c = RuncContainer::run(
        &id,
        &storage.join(&id).join("userdata"),
        &storage.join(&id),
        &format!("/kubepods/besteffort/pod{uid}/crio-{id}"),
        &annotations,
    );
    c.dirs.push(sandbox_dir);

    let mport = free_port();
    let t = Tracer::start(&[c.master], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    for _ in 0..3 {
        assert_eq!(get(c.port, "/hello").status, 200);
    }
    let labels =
        [("service_name", "checkout"), ("container_id", id.as_str()), ("k8s_pod_name", "checkout-7f8g9h-k2l3m")];
    let count = "http_server_request_duration_seconds_count";
    let counted = wait_until(Duration::from_secs(10), || sum(&scrape(mport), count, &labels) == 3.0);
    assert!(counted, "{:?}", scrape(mport).iter().filter(|l| l.name == count).collect::<Vec<_>>());
    let r = t.stop();
    assert_eq!(r.spans.len(), 3, "{}", summarize(&r.spans));
    for s in &r.spans {
        assert_eq!(
            identity_of(s),
            [
                ("service.name", json!("checkout")),
                ("container.id", json!(id)),
                ("k8s.pod.uid", json!(uid)),
                ("k8s.pod.name", json!("checkout-7f8g9h-k2l3m")),
                ("k8s.namespace.name", json!("payments")),
                ("k8s.container.name", json!("api")),
                ("pytracer.process.vpid", json!(c.vpid)),
            ]
        );
    }
}
