//! The agent's metrics as a real Prometheus sees them: Debian's `prometheus`, run privately
//! (tests/src/prometheus.rs), scrapes `pytracer run` every second while the Flask app, under
//! Gunicorn in one podman container and under uWSGI in another, each under a kubepods cgroup with
//! containerd's annotations, serves a known number of requests per route. Through Prometheus's
//! query API: requests per route and status equal those sent, and the CPython (GC, threads,
//! version) and process series arrive with each container's labels. Then every query of the
//! Grafana dashboard (deploy/grafana/pytracer.json) runs against the same Prometheus and finds
//! series.
use std::collections::BTreeMap;
use std::time::Duration;

use pytracer_tests::podman::{require_podman_uwsgi, App};
use pytracer_tests::prometheus::{require_prometheus, JOB};
use pytracer_tests::*;
use serde_json::Value;

const POD_UID: &str = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7";
const UWSGI_POD_UID: &str = "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e";

/// What the test sends: (method, path, route, status, times).
const SENT: &[(&str, &str, &str, u16, u32)] = &[
    ("GET", "/hello", "/hello", 200, 7),
    ("GET", "/users/3", "/users/<int:user_id>", 200, 4),
    ("GET", "/users/12", "/users/<int:user_id>", 200, 1),
    ("POST", "/items", "/items", 201, 2),
    ("GET", "/fail", "/fail", 500, 3),
    // Two full collections, so the GC series and the pause histogram have something to show.
    ("GET", "/gc/collect/2", "/gc/collect/<int:generation>", 200, 2),
];

/// `pytracer run`'s configuration: only this test's apps (their unique bind addresses are on
/// their command lines; podman's own processes carry them too, and are left out), GIL waits on
/// so the dashboard's GIL panel has data.
fn agent_config(dir: &std::path::Path, app_ports: &[u16], metrics_port: u16) -> std::path::PathBuf {
    let path = dir.join("pytracer.yaml");
    let whitelist: Vec<String> = app_ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let text = format!(
        "discovery:\n  whitelist: [{}]\n  blacklist: [podman, conmon]\n\
         metrics:\n  listen: 127.0.0.1:{metrics_port}\n\
         cpython:\n  gil_wait: true\n  frame_eval:\n    mode: 'off'\n",
        whitelist.join(", ")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The value of each sample by the given labels, for exact comparisons of a whole vector.
fn by(samples: &[Sample], labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    samples.iter().map(|s| (labels.iter().map(|l| s.label(l).to_string()).collect(), s.value)).collect()
}

/// One containerized app of the test and the pod it is in.
struct Pod {
    app: App,
    name: &'static str,
    namespace: &'static str,
    container: &'static str,
    /// What the worker said of itself after the requests (`/debug/runtime`).
    inside: Value,
}

impl Pod {
    fn start(server: &str, uid: &str, name: &'static str, namespace: &'static str, container: &'static str) -> Pod {
        let annotations = [
            format!("io.kubernetes.cri.sandbox-name={name}"),
            format!("io.kubernetes.cri.sandbox-namespace={namespace}"),
            format!("io.kubernetes.cri.container-name={container}"),
        ];
        let args: Vec<String> = annotations.into_iter().flat_map(|a| ["--annotation".to_string(), a]).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let app = if server == "uwsgi" { App::uwsgi(uid, &args) } else { App::gunicorn(uid, &args) };
        Pod { app, name, namespace, container, inside: Value::Null }
    }

    /// [`SENT`], then `/debug/runtime`: what the worker says of its own GC after the
    /// collections (the app sets thresholds so high that only explicit collections happen).
    fn send(&mut self) {
        for (method, path, _, status, times) in SENT {
            for _ in 0..*times {
                assert_eq!(request(self.app.port, method, path, &[], b"").status, *status, "{method} {path}");
            }
        }
        self.inside = serde_json::from_slice(&get(self.app.port, "/debug/runtime").body).unwrap();
    }

    /// The PromQL label matchers of its series.
    fn selector(&self) -> String {
        format!(
            "container_id=\"{}\",k8s_pod_name=\"{}\",k8s_namespace_name=\"{}\",\
             k8s_container_name=\"{}\",service_name=\"testapp\",job=\"{JOB}\"",
            self.app.container.id, self.name, self.namespace, self.container
        )
    }
}

#[test]
fn requests_runtime_and_process_metrics_through_prometheus_and_every_dashboard_query() {
    if !(require_prometheus() && require_podman_uwsgi()) {
        return;
    }
    let mut pods = [
        Pod::start("gunicorn", POD_UID, "orders-6c7d8e-p2q3r", "shop", "web"),
        Pod::start("uwsgi", UWSGI_POD_UID, "legacy-4d5e6f-s7t8u", "batch", "worker"),
    ];
    let dir = TempDir::new("prometheus-test").unwrap();
    let mport = free_port();
    let ports: Vec<u16> = pods.iter().map(|p| p.app.port).collect();
    let agent = Tracer::run(&agent_config(dir.path(), &ports, mport), &[]);
    for p in &pods {
        let master = p.app.container.pid();
        let traced =
            wait_until(Duration::from_secs(15), || agent.stderr_now().contains(&format!("tracing pid {master} (")));
        assert!(traced, "the agent did not pick up {master}:\n{}", agent.stderr_now());
    }
    let prom = Prometheus::start(&[mport]);
    for p in &mut pods {
        p.send();
    }
    for p in &pods {
        check_pod(&prom, p, &agent);
    }

    // The agent's own health: both masters and their workers traced, all readable.
    let agent_job = format!("job=\"{JOB}\"");
    let states = by(
        &prom.query(&format!("pytracer_processes{{{agent_job}}} > 0")).unwrap(),
        &["attach_state", "python_support"],
    );
    assert_eq!(states, BTreeMap::from([(vec!["traced".to_string(), "supported".to_string()], 4.0)]));
    let received = prom.query(&format!("sum(pytracer_events_received_total{{{agent_job}}})")).unwrap();
    assert!(received.len() == 1 && received[0].value > 0.0, "{received:?}");

    dashboard_queries_find_series(&prom);
    drop(prom);
    agent.stop();
}

/// One pod's series in Prometheus: requests per route and status as sent; the worker's Python
/// threads, GC counts and version as it says them; the master's and the worker's process series.
#[expect(clippy::float_cmp, reason = "the values compared are counts, exact in f64")]
fn check_pod(prom: &Prometheus, p: &Pod, agent: &Tracer) {
    let mut want: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (method, _, route, status, times) in SENT.iter().chain(&[("GET", "", "/debug/runtime", 200, 1)]) {
        *want.entry(vec![(*method).to_string(), (*route).to_string(), status.to_string()]).or_default() +=
            f64::from(*times);
    }
    let mine = p.selector();
    let requests = format!(
        "sum by (http_request_method, http_route, http_response_status_code) \
         (http_server_request_duration_seconds_count{{{mine}}})"
    );
    let labels = ["http_request_method", "http_route", "http_response_status_code"];
    let mut got = BTreeMap::new();
    let arrived = wait_until(Duration::from_secs(30), || {
        got = by(&prom.query(&requests).unwrap(), &labels);
        got == want
    });
    assert!(
        arrived,
        "{}: requests per route in Prometheus {got:?}, sent {want:?}; targets {:?}\nagent:\n{}",
        p.container,
        prom.targets(),
        agent.stderr_now()
    );

    let worker = format!("{mine},process_role=\"worker\"");
    let one = |q: &str| -> f64 {
        let s = prom.query(q).unwrap();
        assert_eq!(s.len(), 1, "{q}: {s:?}");
        s[0].value
    };
    let inside = &p.inside;
    assert_eq!(one(&format!("cpython_threads{{{worker}}}")), inside["threads"].as_f64().unwrap(), "{inside}");
    let stats = inside["gc"].as_array().unwrap();
    let gc_want: BTreeMap<Vec<String>, f64> =
        (0..3).map(|g| (vec![g.to_string()], stats[g]["collections"].as_f64().unwrap())).collect();
    assert!(gc_want[&vec!["2".to_string()]] >= 2.0, "{gc_want:?}");
    let gc = format!("cpython_gc_collections_total{{{worker}}}");
    let mut gc_got = BTreeMap::new();
    let gc_arrived = wait_until(Duration::from_secs(10), || {
        gc_got = by(&prom.query(&gc).unwrap(), &["cpython_gc_generation"]);
        gc_got == gc_want
    });
    assert!(gc_arrived, "{}: GC collections in Prometheus {gc_got:?}, gc.get_stats() {gc_want:?}", p.container);
    let python = prom.query(&format!("python_info{{{worker}}}")).unwrap();
    assert_eq!(python.len(), 1, "{python:?}");
    assert!(python[0].label("version").starts_with("3.13."), "{python:?}");
    assert_eq!((python[0].label("implementation"), python[0].value), ("cpython", 1.0));
    // Per-process series of both the master and the worker, each with the container's labels.
    let master = p.app.container.pid();
    let worker_pid = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap();
    let pids = by(&prom.query(&format!("process_memory_usage_bytes{{{mine}}} > 0")).unwrap(), &["process_role", "pid"]);
    assert_eq!(
        pids.keys().cloned().collect::<Vec<_>>(),
        [vec!["master".to_string(), master.to_string()], vec!["worker".to_string(), worker_pid.trim().to_string()]],
        "{}",
        p.container
    );
    let cpu = by(&prom.query(&format!("process_cpu_time_seconds_total{{{worker}}}")).unwrap(), &["cpu_mode"]);
    assert_eq!(cpu.keys().map(|k| k[0].as_str()).collect::<Vec<_>>(), ["system", "user"], "{cpu:?}");
    assert!(cpu.values().sum::<f64>() > 0.0, "{cpu:?}");
}

/// Every panel target's `expr` in the dashboard, with its template variables replaced as Grafana
/// replaces them for "All" (`.*`, each variable's `allValue`) and `$__rate_interval` by a minute,
/// returns series from this Prometheus; every variable's `label_values()` finds values; every
/// panel and query takes its data source from the `datasource` variable (no hard-coded uid).
fn dashboard_queries_find_series(prom: &Prometheus) {
    let path = workspace_root().join("deploy/grafana/pytracer.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").expect("a data source variable");
    assert_eq!((ds["name"].as_str(), ds["query"].as_str()), (Some("datasource"), Some("prometheus")));
    let substitute = |text: &str| -> String {
        let mut out = text.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1m");
        for v in vars.iter().filter(|v| v["type"] == "query") {
            let name = v["name"].as_str().unwrap();
            assert_eq!(v["allValue"], ".*", "${name} matches everything when All is chosen");
            out = out.replace(&format!("${{{name}}}"), ".*").replace(&format!("${name}"), ".*");
        }
        assert!(!out.contains('$'), "a variable the dashboard does not define: {out}");
        out
    };
    let uses_the_variable = |what: &str, d: &Value| {
        assert_eq!(d, &serde_json::json!({"type": "prometheus", "uid": "${datasource}"}), "{what}'s datasource");
    };

    let mut failed = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        uses_the_variable(&format!("variable {}", v["name"]), &v["datasource"]);
        let q = substitute(v["query"].as_str().unwrap());
        let args = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).expect("label_values(...)");
        let (selector, label) = args.rsplit_once(',').expect("label_values(selector, label)");
        let values = prom.label_values(label.trim(), selector.trim()).unwrap();
        if values.is_empty() {
            failed.push(format!("variable {}: {q} found no values", v["name"]));
        }
    }
    let panels: Vec<&Value> = dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();
    let types: std::collections::BTreeSet<&str> = panels.iter().filter_map(|p| p["type"].as_str()).collect();
    assert!(types.contains("heatmap") && types.contains("timeseries"), "{types:?}");
    let mut exprs = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap();
        uses_the_variable(title, &p["datasource"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            uses_the_variable(title, &t["datasource"]);
            exprs.push((title, substitute(t["expr"].as_str().unwrap())));
        }
    }
    let queries = exprs.len();
    // A rate needs two scrapes in its window after the series appeared: poll until each answers.
    let mut empty = Vec::new();
    wait_until(Duration::from_secs(20), || {
        empty.clear();
        for (title, expr) in &exprs {
            match prom.query(expr) {
                Ok(s) if s.is_empty() => empty.push(format!("{title}: no series for {expr}")),
                Ok(_) => {}
                Err(e) => empty.push(format!("{title}: {e:#}")),
            }
        }
        empty.is_empty()
    });
    failed.extend(empty);
    assert!(failed.is_empty(), "{} of {queries} dashboard queries:\n{}", failed.len(), failed.join("\n"));
    assert_eq!((panels.len(), queries), (27, 33), "every panel and query was run");
}

/// The dashboard's shape, without Prometheus: unique panel ids, panels inside Grafana's 24-column
/// grid and overlapping none, and no data source but the `datasource` variable anywhere.
#[test]
fn dashboard_is_well_formed() {
    let path = workspace_root().join("deploy/grafana/pytracer.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let ids: std::collections::BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let rect = |p: &Value| {
        let g = &p["gridPos"];
        let n = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{}: gridPos.{k}", p["title"]));
        (n("x"), n("y"), n("w"), n("h"))
    };
    for (i, a) in panels.iter().enumerate() {
        let (x, y, w, h) = rect(a);
        assert!(x + w <= 24 && w > 0 && h > 0, "{} outside the grid", a["title"]);
        for b in &panels[i + 1..] {
            let (bx, by, bw, bh) = rect(b);
            let overlap = x < bx + bw && bx < x + w && y < by + bh && by < y + h;
            assert!(!overlap, "{} overlaps {}", a["title"], b["title"]);
        }
    }
    // Every `datasource` object in the file, wherever it is, is the variable.
    let mut found = Vec::new();
    datasources(&dash, &mut found);
    let variable = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    assert!(found.len() > panels.len(), "panels and queries name their data source");
    assert!(found.iter().all(|d| **d == variable), "{found:?}");
}

/// Every value under a `datasource` key, at any depth.
fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "datasource" {
                    out.push(child);
                }
                datasources(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| datasources(c, out)),
        _ => {}
    }
}
