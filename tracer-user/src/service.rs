//! The resource attributes of a traced process: service name and process identity.
use serde_json::json;

use crate::spans::semconv;

use crate::container::Identity;
use crate::procinfo::ProcInfo;
use crate::spans::Attributes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    Config,
    Environment,
    /// The pod's `app.kubernetes.io/name` label.
    PodLabel,
    WsgiModule,
    Executable,
}

/// Service name, in order: config; OTEL_SERVICE_NAME or INSTANA_SERVICE_NAME in the process's
/// environment; its pod's `app.kubernetes.io/name` label (where the runtime's bundles carry
/// labels: crate::container), as OpenTelemetry's Kubernetes conventions take it; the WSGI
/// application module on a Gunicorn or uWSGI command line; the executable's name.
pub fn service_name(configured: Option<&str>, p: &ProcInfo) -> (String, NameSource) {
    if let Some(n) = configured {
        return (n.to_string(), NameSource::Config);
    }
    for key in ["OTEL_SERVICE_NAME", "INSTANA_SERVICE_NAME"] {
        if let Some(v) = p.env(key).filter(|v| !v.trim().is_empty()) {
            return (v.trim().to_string(), NameSource::Environment);
        }
    }
    if let Some(app) = p.container.as_ref().and_then(|c| c.app_name.as_deref()) {
        return (app.to_string(), NameSource::PodLabel);
    }
    if let Some(module) = gunicorn_app_module(&p.cmdline).or_else(|| uwsgi_app_module(p)) {
        return (module, NameSource::WsgiModule);
    }
    (executable_name(p), NameSource::Executable)
}

/// The server's name when a Python interpreter runs it as a script ("gunicorn" rather than
/// "python3.11"), else the executable's file name. /proc/PID/exe stays available as
/// process.executable.path.
pub fn executable_name(p: &ProcInfo) -> String {
    if gunicorn_index(&p.cmdline).is_some() {
        return "gunicorn".into();
    }
    // uWSGI may be a Python package's entry script run by the interpreter, like Gunicorn.
    if p.cmdline.iter().take(2).any(|a| basename(a) == "uwsgi") {
        return "uwsgi".into();
    }
    p.exe_name().or_else(|| p.cmdline.first().map(|a| basename(a).to_string())).unwrap_or_else(|| "unknown".into())
}

pub fn resource(configured: Option<&str>, p: &ProcInfo) -> Attributes {
    let mut r = Attributes::default();
    r.insert(semconv::SERVICE_NAME.into(), json!(service_name(configured, p).0));
    r.insert(semconv::PROCESS_PID.into(), json!(p.pid));
    r.insert(semconv::PROCESS_EXECUTABLE_NAME.into(), json!(executable_name(p)));
    if let Some(exe) = &p.exe {
        r.insert(semconv::PROCESS_EXECUTABLE_PATH.into(), json!(exe.to_string_lossy()));
    }
    if let Some(c) = &p.container {
        insert_container(&mut r, c, std::env::var("NODE_NAME").ok().as_deref());
    }
    r
}

/// A containerised process's identity. Host processes get none of these, so their resource
/// stays what it was.
fn insert_container(r: &mut Attributes, c: &Identity, node_name: Option<&str>) {
    r.insert(semconv::CONTAINER_ID.into(), json!(c.container_id));
    let optional = [
        (semconv::K8S_POD_UID, c.pod_uid.as_deref()),
        (semconv::K8S_POD_NAME, c.pod_name.as_deref()),
        (semconv::K8S_NAMESPACE_NAME, c.namespace.as_deref()),
        (semconv::K8S_CONTAINER_NAME, c.container_name.as_deref()),
        (semconv::K8S_NODE_NAME, node_name.filter(|n| !n.is_empty())),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            r.insert(key.into(), json!(v));
        }
    }
    if let Some(vpid) = c.vpid {
        r.insert(semconv::PYTRACER_PROCESS_VPID.into(), json!(vpid));
    }
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Index of the gunicorn script (or of `-m gunicorn`) in the argument list.
fn gunicorn_index(args: &[String]) -> Option<usize> {
    args.iter().enumerate().take(4).find_map(|(i, a)| {
        let b = basename(a);
        let is_script = b == "gunicorn" || b.starts_with("gunicorn:") || b.starts_with("gunicorn ");
        let is_module = a == "gunicorn" && i > 0 && args[i - 1] == "-m";
        (is_script || is_module).then_some(i)
    })
}

/// Gunicorn options that do not take a value; every other option does.
const GUNICORN_FLAGS: &[&str] = &[
    "--reload",
    "-D",
    "--daemon",
    "--preload",
    "--reuse-port",
    "--no-sendfile",
    "--check-config",
    "--print-config",
    "--spew",
    "--capture-output",
    "-R",
    "--enable-stdio-inheritance",
    "--log-syslog",
    "--disable-redirect-access-to-syslog",
    "--proxy-protocol",
    "--do-handshake-on-connect",
    "--initgroups",
    "--strip-header-spaces",
    "--suppress-ragged-eofs",
    "-v",
    "--version",
    "-h",
    "--help",
];

/// The module of the WSGI application argument (`module:app` or `module`), e.g. "shop.wsgi".
pub fn gunicorn_app_module(args: &[String]) -> Option<String> {
    let start = gunicorn_index(args)? + 1;
    // `module:callable` is unambiguous whatever options surround it (and Gunicorn adds options
    // faster than any list here): prefer the last such argument.
    let app_spec = args[start..].iter().rev().find(|a| {
        a.split_once(':')
            .is_some_and(|(m, c)| is_module(m) && c.chars().next().is_some_and(|ch| ch.is_alphabetic() || ch == '_'))
    });
    if let Some(spec) = app_spec {
        return spec.split(':').next().map(str::to_string);
    }
    let mut positional = None;
    let mut i = start;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') {
            let takes_value = !a.contains('=') && !GUNICORN_FLAGS.contains(&a.as_str()) && a.len() > 1;
            // A short option with its value attached (-w4) takes nothing more.
            let attached = !a.starts_with("--") && a.len() > 2;
            i += if takes_value && !attached { 2 } else { 1 };
            continue;
        }
        positional = Some(a.as_str());
        i += 1;
    }
    let module = positional?.split(':').next()?.trim();
    is_module(module).then(|| module.to_string())
}

/// uWSGI's application: `--module`/`-w`/`--wsgi`, else `--wsgi-file`/`--file` (its file stem), on
/// the command line or in the `[uwsgi]` section of an `--ini` file (read through the process's
/// root and working directory, so containers and chroots work).
#[expect(clippy::many_single_char_names, reason = "an option parser: i, a, k and v read as the loop they are")]
pub fn uwsgi_app_module(p: &ProcInfo) -> Option<String> {
    let args = &p.cmdline;
    let is_uwsgi = args.iter().take(3).any(|a| basename(a) == "uwsgi" || basename(a).starts_with("uwsgi "));
    if !is_uwsgi {
        return None;
    }
    let mut options: Vec<(String, String)> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].trim_start_matches('-');
        let (key, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.to_string(), args.get(i + 1).filter(|v| !v.starts_with('-')).cloned()),
        };
        if let Some(v) = value {
            if !args[i].contains('=') {
                i += 1;
            }
            options.push((key, v));
        }
        i += 1;
    }
    for (k, v) in options.clone() {
        if k == "ini" {
            options.extend(read_ini(p.pid, &v));
        }
    }
    let get = |names: &[&str]| options.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    if let Some(m) = get(&["module", "w", "wsgi"]) {
        let m = m.split(':').next().unwrap_or_default().trim().to_string();
        return is_module(&m).then_some(m);
    }
    let file = get(&["wsgi-file", "file"])?;
    let stem = std::path::Path::new(&file).file_stem()?.to_string_lossy().into_owned();
    Some(stem)
}

/// The key/value lines of the `[uwsgi]` section of an ini file as the process sees it.
fn read_ini(pid: u32, path: &str) -> Vec<(String, String)> {
    let proc = format!("/proc/{pid}");
    let host = if path.starts_with('/') { format!("{proc}/root{path}") } else { format!("{proc}/cwd/{path}") };
    let Ok(text) = std::fs::read_to_string(host) else { return Vec::new() };
    let mut in_uwsgi = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_uwsgi = line == "[uwsgi]";
        } else if in_uwsgi && !line.starts_with([';', '#']) {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

fn is_module(m: &str) -> bool {
    m.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && m.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(args: &[&str], env: &[(&str, &str)]) -> ProcInfo {
        ProcInfo {
            pid: 42,
            ppid: 1,
            cmdline: args.iter().map(ToString::to_string).collect(),
            exe: Some("/opt/venv/bin/python3.11".into()),
            environ: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            container: None,
        }
    }

    #[test]
    fn order_of_sources() {
        let p = proc(
            &["/v/bin/python3.11", "/v/bin/gunicorn", "-w", "2", "shop.wsgi:application"],
            &[("INSTANA_SERVICE_NAME", "inst")],
        );
        assert_eq!(service_name(Some("cfg"), &p), ("cfg".into(), NameSource::Config));
        assert_eq!(service_name(None, &p), ("inst".into(), NameSource::Environment));
        let p = proc(
            &["/v/bin/python3.11", "/v/bin/gunicorn", "-w", "2", "shop.wsgi:application"],
            &[("OTEL_SERVICE_NAME", "otel"), ("INSTANA_SERVICE_NAME", "inst")],
        );
        assert_eq!(service_name(None, &p).0, "otel");
        let mut p = proc(&["/v/bin/python3.11", "/v/bin/gunicorn", "-w", "2", "shop.wsgi:application"], &[]);
        assert_eq!(service_name(None, &p), ("shop.wsgi".into(), NameSource::WsgiModule));
        p.container = Some(Identity { app_name: Some("checkout".into()), ..Identity::default() });
        assert_eq!(service_name(None, &p), ("checkout".into(), NameSource::PodLabel));
        p.environ.push(("OTEL_SERVICE_NAME".into(), "otel".into()));
        assert_eq!(service_name(None, &p), ("otel".into(), NameSource::Environment));
        let p = proc(&["/usr/sbin/nginx"], &[]);
        assert_eq!(service_name(None, &p), ("python3.11".into(), NameSource::Executable));
    }

    #[test]
    fn app_module_among_options() {
        let m = |a: &[&str]| gunicorn_app_module(&a.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(
            m(&[
                "gunicorn",
                "--bind",
                "127.0.0.1:8000",
                "--workers",
                "2",
                "--worker-class",
                "sync",
                "--chdir",
                "/x",
                "testapp:app"
            ])
            .as_deref(),
            Some("testapp")
        );
        assert_eq!(m(&["python", "-m", "gunicorn", "-w4", "--preload", "app"]).as_deref(), Some("app"));
        assert_eq!(
            m(&["/v/gunicorn", "--bind=0.0.0.0:80", "api.main:create_app()", "--reload"]).as_deref(),
            Some("api.main")
        );
        assert_eq!(m(&["/v/gunicorn", "-c", "conf.py"]), None);
        assert_eq!(m(&["uwsgi", "--http", ":80"]), None);
        // An option this parser does not know before the app.
        assert_eq!(
            m(&["/v/gunicorn", "--bind", "localhost:80", "--no-control-socket", "benchapp:app"]).as_deref(),
            Some("benchapp")
        );
    }

    #[test]
    fn uwsgi_module_wsgi_file_and_ini() {
        let p = |args: &[&str]| ProcInfo {
            pid: std::process::id(),
            cmdline: args.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        assert_eq!(
            uwsgi_app_module(&p(&["uwsgi", "--master", "--http", ":80", "--module", "shop.wsgi:application"]))
                .as_deref(),
            Some("shop.wsgi")
        );
        assert_eq!(
            uwsgi_app_module(&p(&["/v/bin/uwsgi", "-w", "api:app", "--processes", "2"])).as_deref(),
            Some("api")
        );
        assert_eq!(uwsgi_app_module(&p(&["uwsgi", "--wsgi-file=/srv/app/run.py"])).as_deref(), Some("run"));
        let dir = std::env::temp_dir().join(format!("pytracer-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("app.ini");
        std::fs::write(&ini, "[other]\nmodule = nope\n[uwsgi]\n; comment\nmaster = true\nmodule = billing.wsgi:app\n")
            .unwrap();
        assert_eq!(uwsgi_app_module(&p(&["uwsgi", "--ini", ini.to_str().unwrap()])).as_deref(), Some("billing.wsgi"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(uwsgi_app_module(&p(&["gunicorn", "--module", "x"])), None);
    }

    #[test]
    fn resource_attributes() {
        let p = proc(&["/v/bin/python3.11", "/v/bin/gunicorn", "testapp:app"], &[]);
        let r = resource(None, &p);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"service.name":"testapp","process.pid":42,"process.executable.name":"gunicorn","process.executable.path":"/opt/venv/bin/python3.11"})
        );
    }

    #[test]
    fn container_resource_attributes() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let c = Identity {
            container_id: id.into(),
            pod_uid: Some("4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60".into()),
            pod_name: Some("shop-0".into()),
            namespace: Some("prod".into()),
            container_name: Some("web".into()),
            vpid: Some(7),
            app_name: Some("shop".into()),
        };
        let mut r = Attributes::default();
        insert_container(&mut r, &c, Some("node-a"));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"container.id":id,"k8s.pod.uid":"4a6e1a52-3c47-4b0e-9f3e-1d2c3b4a5f60","k8s.pod.name":"shop-0",
                "k8s.namespace.name":"prod","k8s.container.name":"web","k8s.node.name":"node-a","pytracer.process.vpid":7})
        );
        let mut r = Attributes::default();
        insert_container(&mut r, &Identity { container_id: id.into(), ..Identity::default() }, Some(""));
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({"container.id":id}));
    }
}
