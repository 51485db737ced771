//! Which container and Kubernetes pod a process runs in, from the node alone: its cgroup path
//! (container id, pod uid), the container runtime's bundle `config.json` (pod, namespace and
//! container names from the annotations the runtime writes), and, when no bundle is readable,
//! the pod's own `HOSTNAME` and service-account namespace file. No API server is asked, so the
//! identity is there from a pod's first instruction.
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The container runtime whose cgroup naming a path matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A bare 64-hex directory (cgroupfs driver: containerd, CRI-O or runc alike).
    Unknown,
}

/// What a process's `/proc/PID/cgroup` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    /// In the API's form, with dashes (the systemd driver writes underscores).
    pub pod_uid: Option<String>,
}

/// A containerised process's identity, as resource attributes want it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub container_id: String,
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    /// The pid inside the container's pid namespace (the innermost `NSpid`).
    pub vpid: Option<u32>,
    /// The pod's `app.kubernetes.io/name` label, where the runtime's bundles carry the pod's
    /// labels (CRI-O: its sandbox's `io.kubernetes.cri-o.Labels`); a service name.
    pub app_name: Option<String>,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id as runtimes write it: 64 hex digits.
fn container_hex(s: &str) -> Option<&str> {
    (s.len() == 64 && is_hex(s)).then_some(s)
}

/// A pod uid: a UUID (8-4-4-4-12) or, for a static pod, the 32-hex hash the kubelet uses.
fn pod_uid(s: &str) -> Option<String> {
    let dashed = s.replace('_', "-");
    let groups: Vec<&str> = dashed.split('-').collect();
    let uuid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| is_hex(g));
    let hash = dashed.len() == 32 && is_hex(&dashed);
    (uuid || hash).then(|| dashed.to_ascii_lowercase())
}

/// The name prefixes of runtimes' container cgroups (a systemd scope, or a plain directory).
const PREFIXES: [(&str, Runtime); 4] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
];

/// The container id of one cgroup path component, with the runtime its name says.
fn container_in(segment: &str) -> Option<(String, Runtime)> {
    let scope = segment.strip_suffix(".scope").unwrap_or(segment);
    // A runtime's monitor (conmon) has its own scope next to the container's: not the container.
    if scope.contains("-conmon-") {
        return None;
    }
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = scope.strip_prefix(prefix).and_then(container_hex) {
            return Some((id.to_string(), runtime));
        }
    }
    // containerd with the systemd driver on a cgroup v2 node nested under its service:
    // `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`.
    let mut parts = segment.rsplit(':');
    if let (Some(id), Some(kind)) = (parts.next(), parts.next()) {
        let runtime = match kind {
            "cri-containerd" => Some(Runtime::Containerd),
            "crio" => Some(Runtime::CriO),
            "docker" => Some(Runtime::Docker),
            _ => None,
        };
        if let (Some(id), Some(runtime)) = (container_hex(id), runtime) {
            return Some((id.to_string(), runtime));
        }
    }
    container_hex(segment).map(|id| (id.to_string(), Runtime::Unknown))
}

/// The pod uid a kubepods component names: `kubepods-burstable-pod<uid>.slice` (systemd driver,
/// underscores for dashes), `kubepods-pod<uid>.slice` (guaranteed QoS), or `pod<uid>` under a
/// `kubepods` directory (cgroupfs driver).
fn pod_in(segment: &str, under_kubepods: bool) -> Option<String> {
    if let Some(slice) = segment.split(':').next().and_then(|s| s.strip_suffix(".slice")) {
        if slice.starts_with("kubepods") {
            return slice.rsplit_once("-pod").and_then(|(_, uid)| pod_uid(uid));
        }
    }
    under_kubepods.then(|| segment.strip_prefix("pod").and_then(pod_uid)).flatten()
}

/// One cgroup path's identity.
fn parse_path(path: &str) -> CgroupIdentity {
    let mut out = CgroupIdentity::default();
    let mut under_kubepods = false;
    let mut parent: Option<&str> = None;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if let Some(uid) = pod_in(segment, under_kubepods) {
            out.pod_uid = Some(uid);
        }
        if let Some((id, mut runtime)) = container_in(segment) {
            // Docker's cgroupfs driver: `/docker/<id>`.
            if runtime == Runtime::Unknown && parent == Some("docker") {
                runtime = Runtime::Docker;
            }
            out.container_id = Some(id);
            out.runtime = Some(runtime);
        }
        under_kubepods |= segment.starts_with("kubepods");
        parent = Some(segment);
    }
    out
}

/// The identity in a `/proc/PID/cgroup` text: the first line (v2's `0::` line or any v1
/// hierarchy's) that names a container. A process outside containers has none.
pub fn parse_cgroup(text: &str) -> CgroupIdentity {
    let mut best = CgroupIdentity::default();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        let found = parse_path(path);
        if found.container_id.is_some() {
            return found;
        }
        if best.pod_uid.is_none() {
            best.pod_uid = found.pod_uid;
        }
    }
    best
}

/// The innermost pid of `NSpid` in `/proc/PID/status`, when the process is in a pid namespace
/// other than the host's (one pid means it is in the agent's own).
pub fn parse_nspid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Vec<u32> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    (pids.len() > 1).then(|| pids.last().copied()).flatten()
}

/// Pod name, namespace, container name, pod uid; the pod's sandbox and `app.kubernetes.io/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    pub pod_uid: Option<String>,
    /// The pod's sandbox (infra) container, whose bundle has the pod's own labels under CRI-O.
    pub sandbox_id: Option<String>,
    pub app_name: Option<String>,
}

/// The label OpenTelemetry's Kubernetes conventions take a service name from.
const APP_NAME_LABEL: &str = "app.kubernetes.io/name";

/// The Kubernetes names in an OCI runtime spec's annotations: containerd's `io.kubernetes.cri.*`,
/// CRI-O's (and podman's `kube play`) `io.kubernetes.pod.*` / `io.kubernetes.container.name`.
/// CRI-O also writes the CRI labels as a JSON object in `io.kubernetes.cri-o.Labels`: on a pod's
/// sandbox these are the pod's labels, `app.kubernetes.io/name` among them (containerd writes
/// none of them into the bundle).
pub fn parse_annotations(config_json: &str) -> Names {
    let Ok(v) = serde_json::from_str::<Value>(config_json) else { return Names::default() };
    let Some(a) = v.get("annotations").and_then(Value::as_object) else { return Names::default() };
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| a.get(*k).and_then(Value::as_str)).filter(|s| !s.is_empty()).map(str::to_string)
    };
    Names {
        pod_name: get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
        namespace: get(&["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]),
        container_name: get(&["io.kubernetes.cri.container-name", "io.kubernetes.container.name"]),
        pod_uid: get(&["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"]),
        sandbox_id: get(&["io.kubernetes.cri-o.SandboxID", "io.kubernetes.cri.sandbox-id"]),
        app_name: get(&["io.kubernetes.cri-o.Labels"])
            .and_then(|labels| serde_json::from_str::<Value>(&labels).ok())
            .and_then(|labels| labels.get(APP_NAME_LABEL)?.as_str().map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty()),
    }
}

/// Where runtimes keep a container's bundle `config.json`, in the order tried: containerd's
/// Kubernetes namespace, CRI-O's and rootful podman's run root, podman's graph root, Docker's.
pub fn bundle_candidates(id: &str) -> Vec<PathBuf> {
    [
        format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"),
        format!("/run/containers/storage/overlay-containers/{id}/userdata/config.json"),
        format!("/var/lib/containers/storage/overlay-containers/{id}/userdata/config.json"),
        format!("/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/config.json"),
        format!("/run/containerd/io.containerd.runtime.v2.task/moby/{id}/config.json"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// `identity` for a live process: None when it is not in a container.
pub fn read(pid: u32, environ: &[(String, String)]) -> Option<Identity> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cgroup = parse_cgroup(&std::fs::read_to_string(proc.join("cgroup")).ok()?);
    let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
    let mut bundle = cgroup.container_id.as_deref().and_then(read_bundle).unwrap_or_default();
    if bundle.app_name.is_none() {
        // The pod's labels are on its sandbox. The id is checked as one, since it comes from a
        // file and goes into a path.
        let sandbox = bundle
            .sandbox_id
            .as_deref()
            .filter(|s| container_hex(s).is_some() && Some(*s) != cgroup.container_id.as_deref());
        bundle.app_name = sandbox.and_then(read_bundle).and_then(|n| n.app_name);
    }
    identity(&cgroup, bundle, parse_nspid(&status), environ, &proc.join("root"))
}

/// The annotations of the first bundle of container `id` found.
fn read_bundle(id: &str) -> Option<Names> {
    bundle_candidates(id).iter().find_map(|p| std::fs::read_to_string(p).ok()).map(|text| parse_annotations(&text))
}

/// Puts the sources together. In a pod (its uid known) whose bundle was unreadable, the pod name
/// is its `HOSTNAME` (the kubelet sets it to the pod's name) and the namespace its service
/// account's namespace file, read through the process's root.
pub fn identity(
    cgroup: &CgroupIdentity,
    names: Names,
    vpid: Option<u32>,
    environ: &[(String, String)],
    root: &Path,
) -> Option<Identity> {
    let container_id = cgroup.container_id.clone()?;
    let pod_uid = cgroup.pod_uid.clone().or(names.pod_uid);
    let in_pod = pod_uid.is_some();
    let pod_name = names.pod_name.or_else(|| {
        in_pod
            .then(|| environ.iter().find(|(k, _)| k == "HOSTNAME").map(|(_, v)| v.trim().to_string()))
            .flatten()
            .filter(|v| !v.is_empty())
    });
    let namespace = names.namespace.or_else(|| {
        in_pod
            .then(|| std::fs::read_to_string(service_account_namespace(root)).ok())
            .flatten()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    Some(Identity {
        container_id,
        pod_uid,
        pod_name,
        namespace,
        container_name: names.container_name,
        vpid,
        app_name: names.app_name,
    })
}

/// The kubelet mounts the service account at /var/run/secrets/kubernetes.io/serviceaccount. Most
/// images make /var/run a symlink to `/run`, and an absolute link under /proc/PID/root resolves
/// against the agent's root, not the container's: follow it by hand.
fn service_account_namespace(root: &Path) -> PathBuf {
    const UNDER_RUN: &str = "secrets/kubernetes.io/serviceaccount/namespace";
    let var_run = root.join("var/run");
    match std::fs::read_link(&var_run) {
        Ok(target) => {
            let inside = target.strip_prefix("/").unwrap_or(&target);
            let base = if target.is_absolute() { root.join(inside) } else { root.join("var").join(inside) };
            base.join(UNDER_RUN)
        }
        Err(_) => var_run.join(UNDER_RUN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60";
    const UID_: &str = "4a6e1a52_3c47_4b0e_9f3e_1d2c3b4a5f60";

    fn ids(text: &str) -> (Option<String>, Option<Runtime>, Option<String>) {
        let c = parse_cgroup(text);
        (c.container_id, c.runtime, c.pod_uid)
    }

    fn both(runtime: Runtime, uid: Option<&str>) -> (Option<String>, Option<Runtime>, Option<String>) {
        (Some(ID.to_string()), Some(runtime), uid.map(str::to_string))
    }

    #[test]
    fn containerd_systemd_cgroup_v2() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&text), both(Runtime::Containerd, Some(UID)));
        // Guaranteed QoS has no class slice.
        let text = format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(ids(&text), both(Runtime::Containerd, Some(UID)));
        // Nested under containerd's own service (kind, cgroup v2).
        let text =
            format!("0::/system.slice/containerd.service/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{ID}\n");
        assert_eq!(ids(&text), both(Runtime::Containerd, Some(UID)));
    }

    #[test]
    fn containerd_cgroupfs_v1() {
        let text = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n11:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(ids(&text), both(Runtime::Unknown, Some(UID)));
        let text = format!("3:cpu,cpuacct:/kubepods/pod{UID}/{ID}\n");
        assert_eq!(ids(&text), both(Runtime::Unknown, Some(UID)));
    }

    #[test]
    fn crio_and_its_conmon() {
        let text = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(ids(&text), both(Runtime::CriO, Some(UID)));
        let conmon = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(ids(&conmon), (None, None, Some(UID.to_string())));
        let text = format!("4:memory:/kubepods/besteffort/pod{UID}/crio-{ID}\n");
        assert_eq!(ids(&text), both(Runtime::CriO, Some(UID)));
    }

    #[test]
    fn docker_shapes() {
        assert_eq!(ids(&format!("0::/system.slice/docker-{ID}.scope\n")), both(Runtime::Docker, None));
        assert_eq!(ids(&format!("9:devices:/docker/{ID}\n8:pids:/docker/{ID}\n")), both(Runtime::Docker, None));
        // dockershim under kubepods, cgroupfs driver.
        assert_eq!(ids(&format!("5:cpu:/kubepods/burstable/pod{UID}/{ID}\n")), both(Runtime::Unknown, Some(UID)));
    }

    #[test]
    fn podman_shapes() {
        assert_eq!(ids(&format!("0::/libpod_parent/libpod-{ID}\n")), both(Runtime::Podman, None));
        assert_eq!(
            ids(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            both(Runtime::Podman, None),
            "podman's --cgroups=split puts the payload one level down"
        );
        assert_eq!(
            ids(&format!(
                "7:memory:/kubepods/burstable/pod{UID}/libpod-{ID}\n0::/kubepods/burstable/pod{UID}/libpod-{ID}\n"
            )),
            both(Runtime::Podman, Some(UID))
        );
        assert_eq!(ids(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")), (None, None, None));
    }

    #[test]
    fn static_pod_hash_uid() {
        let hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let text = format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(ids(&text), both(Runtime::Containerd, Some(hash)));
    }

    #[test]
    fn host_processes_have_no_identity() {
        assert_eq!(parse_cgroup("0::/init.scope\n"), CgroupIdentity::default());
        assert_eq!(parse_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"), CgroupIdentity::default());
        assert_eq!(parse_cgroup("12:pids:/\n0::/\n"), CgroupIdentity::default());
        // Not 64 hex: a session or a short id, never a container.
        assert_eq!(parse_cgroup("0::/system.slice/docker-1234.scope\n"), CgroupIdentity::default());
        // `pod...` outside kubepods is no pod.
        assert_eq!(parse_cgroup(&format!("0::/srv/pod{UID}/x\n")), CgroupIdentity::default());
        assert_eq!(parse_cgroup(""), CgroupIdentity::default());
    }

    #[test]
    fn nspid() {
        assert_eq!(parse_nspid("Name:\tpython3\nNSpid:\t20149\t1\n"), Some(1));
        assert_eq!(parse_nspid("NSpid:\t20149\t812\t7\n"), Some(7));
        assert_eq!(parse_nspid("NSpid:\t20149\n"), None);
        assert_eq!(parse_nspid("Name:\tx\n"), None);
    }

    #[test]
    fn containerd_and_crio_annotations() {
        let containerd = r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.container-name":"web","io.kubernetes.cri.sandbox-name":"shop-7d9f-abcde",
            "io.kubernetes.cri.sandbox-namespace":"prod","io.kubernetes.cri.sandbox-uid":"4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60"}}"#;
        let names = |p: &str, n: &str, c: &str| Names {
            pod_name: Some(p.into()),
            namespace: Some(n.into()),
            container_name: Some(c.into()),
            pod_uid: Some(UID.into()),
            ..Names::default()
        };
        assert_eq!(parse_annotations(containerd), names("shop-7d9f-abcde", "prod", "web"));
        let crio = r#"{"annotations":{"io.kubernetes.pod.name":"api-0","io.kubernetes.pod.namespace":"default",
            "io.kubernetes.container.name":"app","io.kubernetes.pod.uid":"4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60",
            "io.kubernetes.cri-o.ContainerType":"container"}}"#;
        assert_eq!(parse_annotations(crio), names("api-0", "default", "app"));
        // CRI-O: the container names its sandbox; the sandbox's labels are the pod's.
        let container = r#"{"annotations":{"io.kubernetes.pod.name":"api-0","io.kubernetes.cri-o.SandboxID":"ab12",
            "io.kubernetes.cri-o.Labels":"{\"io.kubernetes.container.name\":\"app\"}"}}"#;
        let got = parse_annotations(container);
        assert_eq!((got.sandbox_id.as_deref(), got.app_name), (Some("ab12"), None));
        let sandbox = r#"{"annotations":{"io.kubernetes.cri-o.ContainerType":"sandbox",
            "io.kubernetes.cri-o.Labels":"{\"app.kubernetes.io/name\":\"checkout\",\"io.kubernetes.pod.name\":\"api-0\"}"}}"#;
        assert_eq!(parse_annotations(sandbox).app_name.as_deref(), Some("checkout"));
        let broken = r#"{"annotations":{"io.kubernetes.cri-o.Labels":"{not json"}}"#;
        assert_eq!(parse_annotations(broken), Names::default());
        let got = parse_annotations(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"cd34"}}"#);
        assert_eq!(got.sandbox_id.as_deref(), Some("cd34"));
        assert_eq!(
            parse_annotations(r#"{"annotations":{"org.opencontainers.image.stopSignal":"15"}}"#),
            Names::default()
        );
        assert_eq!(parse_annotations(r#"{"process":{}}"#), Names::default());
        assert_eq!(parse_annotations("not json"), Names::default());
    }

    #[test]
    fn fallbacks_from_the_pod_itself() {
        let root = std::env::temp_dir().join(format!("pytracer-pod-root-{}", std::process::id()));
        let sa = root.join("var/run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::write(sa.join("namespace"), "shop\n").unwrap();
        let env = vec![("HOSTNAME".to_string(), "web-5f6c-xk2p9".to_string())];
        let in_pod = CgroupIdentity {
            container_id: Some(ID.into()),
            runtime: Some(Runtime::Containerd),
            pod_uid: Some(UID.into()),
        };
        assert_eq!(
            identity(&in_pod, Names::default(), Some(1), &env, &root),
            Some(Identity {
                container_id: ID.into(),
                pod_uid: Some(UID.into()),
                pod_name: Some("web-5f6c-xk2p9".into()),
                namespace: Some("shop".into()),
                container_name: None,
                vpid: Some(1),
                app_name: None,
            })
        );
        // The bundle's names win over the fallbacks.
        let names = Names { pod_name: Some("p".into()), namespace: Some("n".into()), ..Names::default() };
        let got = identity(&in_pod, names, None, &env, &root).unwrap();
        assert_eq!((got.pod_name.as_deref(), got.namespace.as_deref()), (Some("p"), Some("n")));
        // A container outside a pod: a hostname is no pod name.
        let plain = CgroupIdentity { pod_uid: None, ..in_pod.clone() };
        assert_eq!(
            identity(&plain, Names::default(), Some(1), &env, &root),
            Some(Identity { container_id: ID.into(), vpid: Some(1), ..Identity::default() })
        );
        assert_eq!(identity(&CgroupIdentity::default(), Names::default(), None, &env, &root), None);
        std::fs::remove_dir_all(&root).unwrap();

        // /var/run -> /run, as in Debian images: the link is the container's, not the host's.
        let sa = root.join("run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::write(sa.join("namespace"), "billing").unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        let got = identity(&in_pod, Names::default(), None, &env, &root).unwrap();
        assert_eq!(got.namespace.as_deref(), Some("billing"));
        std::fs::remove_file(root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
        let got = identity(&in_pod, Names::default(), None, &env, &root).unwrap();
        assert_eq!(got.namespace.as_deref(), Some("billing"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn own_process_reads() {
        // Whatever this test runs in, reading itself must not fail or panic.
        let _ = read(std::process::id(), &[]);
    }
}
