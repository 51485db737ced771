//! The agent's image (`cargo xtask image`) run by podman exactly as deploy/kubernetes/daemonset.yaml
//! runs it: the podman flags are derived from the manifest (hostPID, capabilities, read-only root,
//! no-new-privileges, user, every volume and its mount, NODE_NAME, args), so they cannot drift. A
//! Gunicorn container started after the agent, under a kubepods cgroup parent, is traced from its
//! first request with its identity; `pytracer check` passes in the same container.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pytracer_tests::podman::{require_podman, volume, Container};
use pytracer_tests::*;
use serde_json::Value;
use serde_yaml::Value as Yaml;

const AGENT_IMAGE: &str = "localhost/pytracer:latest";
const UID: &str = "7c1d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5";

fn manifest() -> (Yaml, Yaml) {
    let text = std::fs::read_to_string(workspace_root().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    let docs: Vec<Yaml> = text.split("\n---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect();
    let kind =
        |k: &str| docs.iter().find(|d| d["kind"].as_str() == Some(k)).cloned().unwrap_or_else(|| panic!("no {k}"));
    (kind("DaemonSet"), kind("ConfigMap"))
}

fn s(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// `podman run` flags for the DaemonSet's container; ConfigMap volumes are written under `dir`
/// (with the metrics port, in them and in the env, replaced by `metrics_port`, so parallel agents
/// do not collide).
fn podman_flags(ds: &Yaml, config_map: &Yaml, dir: &Path, metrics_port: u16) -> (Vec<String>, Vec<String>) {
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    let mut f: Vec<String> = vec!["--network".into(), "host".into()];
    if pod["hostPID"] == Yaml::Bool(true) {
        f.push("--pid=host".into());
    }
    assert_ne!(sc["privileged"], Yaml::Bool(true), "the DaemonSet must not be privileged");
    for cap in sc["capabilities"]["drop"].as_sequence().unwrap() {
        f.push(format!("--cap-drop={}", s(cap)));
    }
    for cap in sc["capabilities"]["add"].as_sequence().unwrap() {
        f.push(format!("--cap-add={}", s(cap)));
    }
    if sc["readOnlyRootFilesystem"] == Yaml::Bool(true) {
        f.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == Yaml::Bool(false) {
        f.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if let Some(user) = sc["runAsUser"].as_u64() {
        f.push(format!("--user={user}"));
    }
    assert_eq!(s(&sc["seccompProfile"]["type"]), "RuntimeDefault", "podman applies its default profile");
    let port = |text: &str| text.replace("0.0.0.0:9464", &format!("127.0.0.1:{metrics_port}"));
    for e in c["env"].as_sequence().unwrap() {
        let value = if let Some(v) = e["value"].as_str() {
            port(v)
        } else {
            assert_eq!(s(&e["valueFrom"]["fieldRef"]["fieldPath"]), "spec.nodeName");
            "test-node".into()
        };
        f.push(format!("--env={}={value}", s(&e["name"])));
    }
    let volumes = pod["volumes"].as_sequence().unwrap();
    for m in c["volumeMounts"].as_sequence().unwrap() {
        let v = volumes.iter().find(|v| v["name"] == m["name"]).expect("volume of the mount");
        let at = s(&m["mountPath"]);
        let ro = if m["readOnly"] == Yaml::Bool(true) { ":ro" } else { "" };
        if let Some(host) = v["hostPath"]["path"].as_str() {
            std::fs::create_dir_all(host).unwrap();
            f.push(format!("--volume={host}:{at}{ro}"));
        } else if v["configMap"].is_mapping() {
            let cm_dir: PathBuf = dir.join(s(&m["name"]));
            std::fs::create_dir_all(&cm_dir).unwrap();
            for (file, text) in config_map["data"].as_mapping().unwrap() {
                std::fs::write(cm_dir.join(s(file)), port(s(text))).unwrap();
            }
            f.push(format!("--volume={}:{at}{ro}", cm_dir.display()));
        } else if v["emptyDir"].is_mapping() {
            f.push(format!("--tmpfs={at}"));
        } else {
            panic!("a volume kind this test does not know: {v:?}");
        }
    }
    let args = c["args"].as_sequence().unwrap().iter().map(|a| s(a).to_string()).collect();
    (f, args)
}

fn agent(flags: &[String], args: &[&str], detach: bool) -> std::process::Output {
    let mut cmd = Command::new("podman");
    cmd.arg("run");
    if detach {
        cmd.arg("-d");
    } else {
        cmd.arg("--rm");
    }
    cmd.args(flags).arg(AGENT_IMAGE).args(args).stdin(Stdio::null()).output().expect("running podman")
}

fn logs(id: &str) -> (String, String) {
    let o = Command::new("podman").args(["logs", id]).output().unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn agent_container_as_the_daemonset_runs_it() {
    if !require_podman() {
        return;
    }
    let image = Command::new("podman").args(["image", "exists", AGENT_IMAGE]).status().unwrap();
    assert!(image.success(), "{AGENT_IMAGE} missing: run `cargo xtask image`");
    let dir = TempDir::new("daemonset").unwrap();
    let mport = free_port();
    let (ds, cm) = manifest();
    let (flags, args) = podman_flags(&ds, &cm, dir.path(), mport);

    let check = agent(&flags, &["check"], false);
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{out}\n{}", String::from_utf8_lossy(&check.stderr));
    assert!(out.contains("bpf programs: ok"), "{out}");

    let started = agent(&flags, &args.iter().map(String::as_str).collect::<Vec<_>>(), true);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let agent_c = Container { id: String::from_utf8_lossy(&started.stdout).trim().to_string() };
    let ready = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok() && get(mport, "/readyz").status == 200
    });
    assert!(ready, "agent not ready:\n{}", logs(&agent_c.id).1);

    // Started after the agent.
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let ready_dir = TempDir::new("ds-ready").unwrap();
    let parent = format!("/kubepods/burstable/pod{UID}/");
    let apps = volume(&apps_dir(), "/app");
    let ready_mount = format!("{}:/ready", ready_dir.path().display());
    let app = Container::run(
        &[
            "--cgroup-parent",
            &parent,
            "--hostname",
            "shop-6b7c-q9z8x",
            "-v",
            &apps,
            "-v",
            &ready_mount,
            "-e",
            "PYTRACER_TESTAPP_READY_DIR=/ready",
        ],
        &["/opt/venv/bin/gunicorn", "--workers", "1", "--bind", &bind, "--chdir", "/app", "testapp:app"],
    );
    let vpid: u32 = wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(ready_dir.path()).ok()?.find_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
    })
    .unwrap_or_else(|| panic!("app not ready:\n{}", app.logs()));
    let master = app.pid();
    let worker: u32 = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("a worker")
        .parse()
        .unwrap();
    let traced = wait_until(Duration::from_secs(15), || {
        let err = logs(&agent_c.id).1;
        // The master's tree, its worker included.
        err.contains(&format!("tracing pid {master} ("))
    });
    assert!(traced, "the agent did not pick up {master}:\n{}", logs(&agent_c.id).1);
    for _ in 0..3 {
        assert_eq!(get(port, "/hello").status, 200);
    }
    // Let the agent drain its ring buffer, then SIGTERM (a clean exit flushes).
    let stop = Command::new("podman").args(["stop", "-t", "15", &agent_c.id]).output().unwrap();
    assert!(stop.status.success());
    let (stdout, stderr) = logs(&agent_c.id);
    let spans: Vec<Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let mine: Vec<&Value> = spans.iter().filter(|s| attr_u64(s, "server.port") == Some(u64::from(port))).collect();
    assert_eq!(mine.len(), 3, "{}\n{stderr}", summarize(&spans));
    for s in mine {
        let r = &s["resource"];
        assert_eq!(r["container.id"], Value::from(app.id.as_str()));
        assert_eq!(r["k8s.pod.uid"], Value::from(UID));
        assert_eq!(r["k8s.pod.name"], Value::from("shop-6b7c-q9z8x"));
        assert_eq!(r["k8s.node.name"], Value::from("test-node"));
        assert_eq!(r["process.pid"], Value::from(worker));
        assert_eq!(r["pytracer.process.vpid"], Value::from(vpid));
        assert_eq!(span_path(s), Some("/hello"));
    }
}

/// The manifest against the Kubernetes schema (kubernetes-validate, strict: unknown fields fail);
/// the ServiceMonitor is a CRD the schema does not know, so only daemonset.yaml.
#[test]
fn manifest_validates_against_the_kubernetes_schema() {
    let validate = workspace_root().join(".venvs/k8s-validate/bin/kubernetes-validate");
    if !validate.is_file() {
        assert!(
            std::env::var("PYTRACER_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "{} missing: run `cargo xtask setup`",
            validate.display()
        );
        eprintln!("SKIPPED: {} missing: run `cargo xtask setup`", validate.display());
        return;
    }
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(workspace_root().join("deploy/kubernetes/daemonset.yaml"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let passed: Vec<&str> = text.lines().filter_map(|l| l.split(" passed for resource ").nth(1)).collect();
    assert_eq!(
        passed.iter().map(|l| l.split(' ').next().unwrap()).collect::<Vec<_>>(),
        ["namespace/pytracer", "configmap/pytracer", "daemonset/pytracer", "service/pytracer"],
        "{text}"
    );
}
