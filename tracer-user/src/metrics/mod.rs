//! Prometheus metrics of the traced processes and of the agent, served at `/metrics`.
//!
//! Names are the OpenTelemetry semantic-convention names in Prometheus form (base units, `_total`
//! on counters). Labels are bounded: no raw paths, no ids besides the pid of a live process, and a
//! process's series are removed a grace period after it exits.
pub mod adoption;
mod exchange_series;
pub mod process;
pub mod server;
mod totals;

pub use totals::Total;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
use prometheus_client::registry::Registry;

use crate::calls::ProtocolStats;
use crate::http::connection::Exchange;
use process::ProcessSampler;

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct ProcLabels {
    pub service_name: String,
    pub pid: u32,
    /// "master" for a process traced by itself (the one discovered or named), "worker" for the
    /// processes it forked.
    pub process_role: String,
    /// A containerised process's `container_id`, `k8s_pod_name`, `k8s_namespace_name`,
    /// `k8s_container_name` (those known). Empty on the host, whose series keep their labels.
    pub container: Vec<(&'static str, String)>,
}

impl ProcLabels {
    /// The labels of a process with this resource (crate::container's attributes, renamed the
    /// way Prometheus names OpenTelemetry attributes).
    pub fn container_of(resource: &crate::spans::Attributes) -> Vec<(&'static str, String)> {
        use crate::spans::semconv;
        [
            ("container_id", semconv::CONTAINER_ID),
            ("k8s_pod_name", semconv::K8S_POD_NAME),
            ("k8s_namespace_name", semconv::K8S_NAMESPACE_NAME),
            ("k8s_container_name", semconv::K8S_CONTAINER_NAME),
        ]
        .into_iter()
        .filter_map(|(label, key)| resource.get(key).and_then(|v| v.as_str()).map(|v| (label, v.to_string())))
        .collect()
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("service_name", self.service_name.clone()),
            ("pid", self.pid.to_string()),
            ("process_role", self.process_role.clone()),
        ];
        v.extend(self.container.iter().cloned());
        v
    }

    /// These labels and more.
    fn with(&self, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut v = self.pairs();
        v.extend(more.iter().map(|(k, val)| (*k, (*val).to_string())));
        v
    }
}

/// An HTTP call a traced process made (OpenTelemetry's `http.client.request.duration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpClientLabels {
    service_name: String,
    pid: u32,
    process_role: String,
    http_request_method: String,
    http_response_status_code: String,
    server_address: String,
    server_port: String,
    error_type: String,
}

/// A database call a traced process made (OpenTelemetry's `db.client.operation.duration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbClientLabels {
    service_name: String,
    pid: u32,
    process_role: String,
    db_system_name: String,
    db_operation_name: String,
    server_address: String,
    server_port: String,
    error_type: String,
}

/// A connect a traced process made that failed: no protocol was spoken, so it is in neither
/// client family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectFailureLabels {
    service_name: String,
    pid: u32,
    process_role: String,
    server_address: String,
    server_port: String,
    error_type: String,
}

/// One client call, as the metrics label it: empty strings for what the call does not have.
#[derive(Debug, Clone, Default)]
pub struct ClientCall<'a> {
    /// `http`, or the database's `db.system.name`.
    pub system: &'a str,
    /// The HTTP method, or `db.operation.name`.
    pub operation: &'a str,
    pub status_code: &'a str,
    pub server_address: &'a str,
    pub server_port: &'a str,
    pub error_type: &'a str,
    pub seconds: f64,
}

/// The series a process's client calls made, removed with its others.
#[derive(Default)]
struct ClientSeries {
    http: HashSet<HttpClientLabels>,
    db: HashSet<DbClientLabels>,
    connects: HashSet<ConnectFailureLabels>,
}

impl EncodeLabelSet for ProcLabels {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.pairs().encode(encoder)
    }
}

/// A process's labels with the request's method, status code and route.
type HttpLabels = Vec<(&'static str, String)>;

/// A process's labels plus one more (`cpu_mode` or `type`).
type ProcKindLabels = Vec<(&'static str, String)>;

fn with_kind(p: &ProcLabels, key: &'static str, value: &str) -> ProcKindLabels {
    p.with(&[(key, value)])
}

/// A process's labels with `version` and `implementation`.
type InfoLabels = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// What a synced counter's last value is remembered by, to add only its growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Synced {
    Dropped(&'static str),
    Total(Total),
    Otlp(&'static str),
    StitchMissed(&'static str),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolEventLabels {
    /// `postgresql`, `redis`, `http`.
    protocol: String,
    /// A counter of [`ProtocolStats`]: `desyncs`, `resyncs`, `given_up`, ...
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    cpu_mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    attach_state: String,
    python_support: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_buckets() -> Histogram {
    // The OpenTelemetry HTTP semantic conventions' advised boundaries.
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0])
}

fn pause_buckets() -> Histogram {
    Histogram::new([0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
}

fn size_buckets() -> Histogram {
    Histogram::new([0.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8])
}

/// The families the agent updates; the registry that encodes them is shared with the server.
pub struct Metrics {
    request_duration: Hist<HttpLabels>,
    http_client_duration: Hist<HttpClientLabels>,
    db_client_duration: Hist<DbClientLabels>,
    client_series: HashMap<u32, ClientSeries>,
    connect_failures: Family<ConnectFailureLabels, Counter>,
    request_body: Hist<HttpLabels>,
    response_body: Hist<HttpLabels>,
    active_requests: Family<ProcLabels, Gauge>,
    /// The procfs families, sampled at each scrape (process.rs).
    procfs: Arc<Mutex<ProcessSampler>>,
    events_received: Counter,
    events_dropped: Family<ReasonLabels, Counter>,
    processes: Family<StateLabels, Gauge>,
    attach_errors: Family<ReasonLabels, Counter>,
    /// Agent counters kept elsewhere (Stats, the exporter), in `Total::ALL` order.
    totals: [Counter; Total::ALL.len()],
    otlp_spans: Family<OutcomeLabels, Counter>,
    stitch_missed: Family<ReasonLabels, Counter>,
    route_tables: Family<ResultLabels, Counter>,
    route_checks: Family<ResultLabels, Counter>,
    profile_give_ups: Family<ReasonLabels, Counter>,
    protocol_events: Family<ProtocolEventLabels, Counter>,
    gc_collections: Family<ProcKindLabels, Counter>,
    gc_collected: Family<ProcKindLabels, Counter>,
    gc_uncollectable: Family<ProcKindLabels, Counter>,
    gc_pause: Hist<ProcLabels>,
    gil_wait: Hist<ProcLabels>,
    python_threads: Family<ProcLabels, Gauge>,
    python_info: Family<InfoLabels, Gauge>,
    /// python_info's label set per pid, to remove it on expiry.
    info_of: HashMap<u32, InfoLabels>,
    /// Last interpreter snapshot per pid: GC counters grow by the difference.
    last_python: HashMap<u32, crate::cpython::runtime::Snapshot>,
    routes: crate::http::route::Routes,
    /// Every HTTP label set of a pid, so its series can be removed when it is gone.
    http_series: HashMap<u32, HashSet<HttpLabels>>,
    /// The request histograms' handles, by process and (method, status, route).
    exchange_series: exchange_series::ExchangeSeries,
    /// Each traced process's labels, to remove its series when it is gone.
    labels_of: HashMap<u32, ProcLabels>,
    /// Last values of counters the agent keeps elsewhere (Stats, kernel drop map).
    synced: HashMap<Synced, u64>,
    exited: HashMap<u32, Instant>,
}

impl Metrics {
    pub fn new() -> (Metrics, Registry) {
        let mut r = Registry::default();
        let m = Metrics {
            request_duration: Family::new_with_constructor(duration_buckets),
            http_client_duration: Family::new_with_constructor(duration_buckets),
            db_client_duration: Family::new_with_constructor(duration_buckets),
            client_series: HashMap::new(),
            connect_failures: Family::default(),
            request_body: Family::new_with_constructor(size_buckets),
            response_body: Family::new_with_constructor(size_buckets),
            active_requests: Family::default(),
            procfs: Arc::default(),
            events_received: Counter::default(),
            events_dropped: Family::default(),
            processes: Family::default(),
            attach_errors: Family::default(),
            totals: Default::default(),
            otlp_spans: Family::default(),
            stitch_missed: Family::default(),
            route_tables: Family::default(),
            route_checks: Family::default(),
            profile_give_ups: Family::default(),
            protocol_events: Family::default(),
            gc_collections: Family::default(),
            gc_collected: Family::default(),
            gc_uncollectable: Family::default(),
            gc_pause: Family::new_with_constructor(pause_buckets),
            gil_wait: Family::new_with_constructor(pause_buckets),
            python_threads: Family::default(),
            python_info: Family::default(),
            info_of: HashMap::new(),
            last_python: HashMap::new(),
            routes: crate::http::route::Routes::default(),
            http_series: HashMap::new(),
            exchange_series: exchange_series::ExchangeSeries::default(),
            labels_of: HashMap::new(),
            synced: HashMap::new(),
            exited: HashMap::new(),
        };
        m.register(&mut r);
        (m, r)
    }

    /// The families of the calls traced processes make.
    fn register_client(&self, r: &mut Registry) {
        r.register(
            "pytracer_client_connect_failures",
            "Connects made by the traced process that failed, by peer and error_type",
            self.connect_failures.clone(),
        );
        r.register(
            "http_client_request_duration_seconds",
            "Duration of HTTP calls made by the traced process, as the caller waited, by error_type",
            self.http_client_duration.clone(),
        );
        r.register(
            "db_client_operation_duration_seconds",
            "Duration of database calls made by the traced process, as the caller waited, by error_type",
            self.db_client_duration.clone(),
        );
    }

    /// The families sampled at each scrape (process.rs).
    fn register_procfs(&self, r: &mut Registry) {
        let procfs = self.procfs.lock().unwrap_or_else(PoisonError::into_inner);
        r.register("process_cpu_time_seconds", "CPU time of the traced process by cpu_mode", procfs.cpu_time.clone());
        r.register("process_memory_usage_bytes", "Resident memory of the traced process", procfs.memory_usage.clone());
        r.register(
            "process_memory_virtual_bytes",
            "Virtual memory of the traced process",
            procfs.memory_virtual.clone(),
        );
        r.register("process_thread_count", "Threads of the traced process", procfs.thread_count.clone());
        r.register(
            "process_open_file_descriptor_count",
            "Open file descriptors of the traced process",
            procfs.open_fds.clone(),
        );
        r.register(
            "process_context_switches",
            "Context switches of the traced process by type",
            procfs.context_switches.clone(),
        );
        r.register("process_paging_faults", "Page faults of the traced process by type", procfs.paging_faults.clone());
        r.register("pytracer_cpu_time_seconds", "The agent's own CPU time", procfs.agent_cpu.clone());
        r.register("pytracer_memory_usage_bytes", "The agent's own resident memory", procfs.agent_memory.clone());
    }

    /// Every family under its exported name and help.
    fn register(&self, r: &mut Registry) {
        self.register_client(r);
        self.register_procfs(r);
        r.register(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, from the wire",
            self.request_duration.clone(),
        );
        r.register(
            "http_server_request_body_size_bytes",
            "Size of HTTP server request bodies",
            self.request_body.clone(),
        );
        r.register(
            "http_server_response_body_size_bytes",
            "Size of HTTP server response bodies",
            self.response_body.clone(),
        );
        r.register(
            "http_server_active_requests",
            "HTTP requests received and not yet answered",
            self.active_requests.clone(),
        );
        r.register(
            "cpython_gc_collections",
            "Collections per generation, as gc.get_stats() counts them",
            self.gc_collections.clone(),
        );
        r.register(
            "cpython_gc_collected_objects",
            "Objects collected per generation, as gc.get_stats() counts them",
            self.gc_collected.clone(),
        );
        r.register(
            "cpython_gc_uncollectable_objects",
            "Uncollectable objects per generation, as gc.get_stats() counts them",
            self.gc_uncollectable.clone(),
        );
        r.register(
            "cpython_gc_pause_seconds",
            "Duration of each garbage collection (entry to return of the collector)",
            self.gc_pause.clone(),
        );
        r.register(
            "cpython_gil_wait_seconds",
            "Time threads waited to take the GIL back (PyEval_RestoreThread); opt-in",
            self.gil_wait.clone(),
        );
        r.register("cpython_threads", "Python thread states of the interpreter", self.python_threads.clone());
        r.register("python_info", "Python runtime of the process (value 1)", self.python_info.clone());
        r.register("pytracer_events_received", "Kernel events the agent received", self.events_received.clone());
        r.register(
            "pytracer_events_dropped",
            "Events or data the agent could not use, by reason",
            self.events_dropped.clone(),
        );
        r.register(
            "pytracer_processes",
            "Traced processes by attach state and Python support state",
            self.processes.clone(),
        );
        r.register(
            "pytracer_attach_errors",
            "Processes the agent failed to trace, by reason",
            self.attach_errors.clone(),
        );
        for t in Total::ALL {
            let (name, help) = t.describe();
            r.register(name, help, self.totals[t as usize].clone());
        }
        r.register("pytracer_otlp_spans", "Spans handed to the OTLP exporter, by outcome: exported, queue_full (dropped), failed (dropped after retries)", self.otlp_spans.clone());
        r.register(
            "pytracer_stitch_missed",
            "Server spans whose client was a traced connection on this host but that stayed roots, by reason: call_not_seen (the caller's call was not seen within 50 ms), ids_fixed_early (an exit span needed the ids first)",
            self.stitch_missed.clone(),
        );
        self.register_routes(r);
        r.register(
            "pytracer_client_protocol_events",
            "What the parsers of outgoing connections could not follow, by protocol and event (see ProtocolStats)",
            self.protocol_events.clone(),
        );
    }

    /// The route tables' own counters.
    fn register_routes(&self, r: &mut Registry) {
        r.register(
            "pytracer_route_tables",
            "Route tables read from applications' memory, by result: read, reused (a sibling worker's), no_app (no Flask, Django, Starlette or FastAPI app found yet), torn or read_error (the app changed under the read: read again later), too_large, budget, or why the interpreter cannot be read",
            self.route_tables.clone(),
        );
        r.register(
            "pytracer_route_checks",
            "Requests whose handler was seen both in a stack walk and in the route table, by result: agree, disagree (details at debug level)",
            self.route_checks.clone(),
        );
        r.register(
            "pytracer_profile_give_ups",
            "What `pytracer profile` left out, by reason: sample_over_limit (past the samples kept), sample_unknown_process (no readable interpreter), frame_unnamed (code object unreadable), line_unread (line table unreadable)",
            self.profile_give_ups.clone(),
        );
    }

    /// `route`: the framework's route when the app's table matched; else the label is the
    /// path's template.
    pub fn observe_exchange(&mut self, p: &ProcLabels, x: &Exchange, path: &str, route: Option<&str>) {
        let guessed;
        let route = if let Some(r) = route {
            r
        } else {
            guessed = self.routes.label(&p.service_name, path);
            guessed.as_str()
        };
        let (method, status) = (x.request.method.as_str(), x.response.as_ref().map(|r| r.status));
        let series = match self.exchange_series.get(p, method, status, route) {
            Some(s) => s.clone(),
            None => self.new_series(p, (method.to_string(), status, route.to_string())),
        };
        let secs = x.end_ns.saturating_sub(x.start_ns) as f64 / 1e9;
        series.duration.observe(secs);
        series.request_body.observe(x.request_body as f64);
        if let Some(h) = &series.response_body {
            h.observe(x.response_body as f64);
        }
    }

    /// The request histograms' series of a label set seen for the first time (for this process).
    fn new_series(&mut self, p: &ProcLabels, key: exchange_series::ExchangeKey) -> exchange_series::Series {
        let status = key.1.map_or(String::new(), |s| s.to_string());
        let labels: HttpLabels =
            p.with(&[("http_request_method", &key.0), ("http_response_status_code", &status), ("http_route", &key.2)]);
        let s = exchange_series::Series {
            duration: self.request_duration.get_or_create(&labels).clone(),
            request_body: self.request_body.get_or_create(&labels).clone(),
            // The key's status says whether there is a response (and so a body size).
            response_body: key.1.map(|_| self.response_body.get_or_create(&labels).clone()),
        };
        self.http_series.entry(p.pid).or_default().insert(labels);
        self.exchange_series.insert(p, key, s.clone());
        s
    }

    /// A connect a traced process made failed.
    pub fn client_connect_failed(&mut self, p: &ProcLabels, server_address: &str, server_port: &str, error_type: &str) {
        let l = ConnectFailureLabels {
            service_name: p.service_name.clone(),
            pid: p.pid,
            process_role: p.process_role.clone(),
            server_address: server_address.to_string(),
            server_port: server_port.to_string(),
            error_type: error_type.to_string(),
        };
        self.connect_failures.get_or_create(&l).inc();
        self.client_series.entry(p.pid).or_default().connects.insert(l);
    }

    /// One call a traced process made, in the HTTP or the database family by its system.
    pub fn observe_client_call(&mut self, p: &ProcLabels, c: &ClientCall<'_>) {
        let series = self.client_series.entry(p.pid).or_default();
        if c.system == "http" {
            let l = HttpClientLabels {
                service_name: p.service_name.clone(),
                pid: p.pid,
                process_role: p.process_role.clone(),
                http_request_method: c.operation.to_string(),
                http_response_status_code: c.status_code.to_string(),
                server_address: c.server_address.to_string(),
                server_port: c.server_port.to_string(),
                error_type: c.error_type.to_string(),
            };
            self.http_client_duration.get_or_create(&l).observe(c.seconds);
            series.http.insert(l);
        } else {
            let l = DbClientLabels {
                service_name: p.service_name.clone(),
                pid: p.pid,
                process_role: p.process_role.clone(),
                db_system_name: c.system.to_string(),
                db_operation_name: c.operation.to_string(),
                server_address: c.server_address.to_string(),
                server_port: c.server_port.to_string(),
                error_type: c.error_type.to_string(),
            };
            self.db_client_duration.get_or_create(&l).observe(c.seconds);
            series.db.insert(l);
        }
    }

    /// Interpreter counters are cumulative since the process started; the metric follows them.
    pub fn observe_python(&mut self, p: &ProcLabels, snap: &crate::cpython::runtime::Snapshot) {
        let prev = self.last_python.insert(p.pid, *snap).unwrap_or_default();
        for (g, (now, before)) in snap.gc.iter().zip(prev.gc.iter()).enumerate() {
            let l = with_kind(p, "cpython_gc_generation", &g.to_string());
            self.gc_collections.get_or_create(&l).inc_by(now.collections.saturating_sub(before.collections));
            self.gc_collected.get_or_create(&l).inc_by(now.collected.saturating_sub(before.collected));
            self.gc_uncollectable.get_or_create(&l).inc_by(now.uncollectable.saturating_sub(before.uncollectable));
        }
        self.python_threads.get_or_create(p).set(i64::from(snap.threads));
    }

    pub fn set_python_info(&mut self, p: &ProcLabels, version: &str) {
        let l: InfoLabels = p.with(&[("version", version), ("implementation", "cpython")]);
        self.python_info.get_or_create(&l).set(1);
        self.info_of.insert(p.pid, l);
    }

    pub fn observe_gc_pause(&mut self, p: &ProcLabels, secs: f64) {
        self.gc_pause.get_or_create(p).observe(secs);
    }

    pub fn observe_gil_wait(&mut self, p: &ProcLabels, secs: f64) {
        self.gil_wait.get_or_create(p).observe(secs);
    }

    pub fn set_active_requests(&mut self, p: &ProcLabels, n: usize) {
        self.active_requests.get_or_create(p).set(n as i64);
    }

    pub fn event_received(&self) {
        self.events_received.inc();
    }

    /// Adds to `events_dropped{reason}` what `total` grew by since the last call.
    pub fn sync_dropped(&mut self, reason: &'static str, total: u64) {
        let d = self.delta(Synced::Dropped(reason), total);
        // Created even at 0, so that every reason is visible before its first drop.
        self.events_dropped.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc_by(d);
    }

    /// Adds to counter `t` what `total` grew by since the last call.
    pub fn sync_total(&mut self, t: Total, total: u64) {
        let d = self.delta(Synced::Total(t), total);
        self.totals[t as usize].inc_by(d);
    }

    pub fn route_table(&mut self, result: &str) {
        self.route_tables.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    pub fn profile_give_up(&mut self, reason: &'static str) {
        self.profile_give_ups.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
    }

    pub fn route_check(&mut self, agree: bool) {
        let result = if agree { "agree" } else { "disagree" };
        self.route_checks.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    /// Adds to `stitch_missed{reason}` what `total` grew by since the last call.
    pub fn sync_stitch_missed(&mut self, reason: &'static str, total: u64) {
        let d = self.delta(Synced::StitchMissed(reason), total);
        self.stitch_missed.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc_by(d);
    }

    pub fn sync_otlp(&mut self, outcome: &'static str, total: u64) {
        let d = self.delta(Synced::Otlp(outcome), total);
        self.otlp_spans.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc_by(d);
    }

    /// Adds what a client connection's parser could not follow since its last report.
    pub fn client_protocol_events(&self, protocol: &str, grown: &ProtocolStats) {
        for (event, n) in grown.events() {
            if n > 0 {
                let l = ProtocolEventLabels { protocol: protocol.to_string(), event: event.to_string() };
                self.protocol_events.get_or_create(&l).inc_by(n);
            }
        }
    }

    pub fn attach_error(&self, reason: &str) {
        self.attach_errors.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
    }

    fn delta(&mut self, key: Synced, total: u64) -> u64 {
        let last = self.synced.insert(key, total).unwrap_or(0);
        total.saturating_sub(last)
    }

    /// Traced processes by Python support state (`supported`, or why not).
    pub fn set_process_states(&mut self, states: &HashMap<&'static str, usize>) {
        self.processes.clear();
        for (support, n) in states {
            self.processes
                .get_or_create(&StateLabels { attach_state: "traced".into(), python_support: support.to_string() })
                .set(*n as i64);
        }
    }

    /// The traced processes whose procfs figures the next scrape samples.
    pub fn set_processes(&mut self, procs: &[ProcLabels]) {
        for p in procs {
            // The latest labels: those the process's series are removed by when it is gone.
            self.labels_of.insert(p.pid, p.clone());
        }
        self.procfs.lock().unwrap_or_else(PoisonError::into_inner).set_live(procs);
    }

    /// What the metrics server calls before it encodes a scrape.
    pub fn procfs_sampler(&self) -> Arc<Mutex<ProcessSampler>> {
        self.procfs.clone()
    }

    pub fn process_exited(&mut self, pid: u32) {
        self.exited.insert(pid, Instant::now());
    }

    /// Removes every series of processes that exited more than `grace` ago.
    pub fn expire(&mut self, grace: Duration) {
        let gone: Vec<u32> = self.exited.iter().filter(|(_, t)| t.elapsed() >= grace).map(|(p, _)| *p).collect();
        for pid in gone {
            self.exited.remove(&pid);
            self.exchange_series.remove(pid);
            for l in self.http_series.remove(&pid).unwrap_or_default() {
                self.request_duration.remove(&l);
                self.request_body.remove(&l);
                self.response_body.remove(&l);
            }
            let client = self.client_series.remove(&pid).unwrap_or_default();
            for l in client.http {
                self.http_client_duration.remove(&l);
            }
            for l in client.db {
                self.db_client_duration.remove(&l);
            }
            for l in client.connects {
                self.connect_failures.remove(&l);
            }
            if let Some(l) = self.info_of.remove(&pid) {
                self.python_info.remove(&l);
            }
            if let Some(p) = self.labels_of.remove(&pid) {
                self.procfs.lock().unwrap_or_else(PoisonError::into_inner).forget(&p);
                for g in [&self.active_requests, &self.python_threads] {
                    g.remove(&p);
                }
                self.gc_pause.remove(&p);
                self.gil_wait.remove(&p);
                if self.last_python.remove(&pid).is_some() {
                    for g in 0..crate::cpython::runtime::GENERATIONS {
                        let l = with_kind(&p, "cpython_gc_generation", &g.to_string());
                        for f in [&self.gc_collections, &self.gc_collected, &self.gc_uncollectable] {
                            f.remove(&l);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::connection::Connection;
    use crate::piece::Piece;

    fn encode(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    fn exchange() -> Exchange {
        let mut c = Connection::default();
        let req = b"GET /users/42 HTTP/1.1\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        c.on_read(&Piece { data: req, len: req.len() as u64, start_ns: 0, end_ns: 1 });
        c.on_write(&Piece { data: resp, len: resp.len() as u64, start_ns: 2, end_ns: 30_000_000 })
            .finished
            .pop()
            .unwrap()
    }

    #[test]
    fn red_metrics_and_expiry() {
        let (mut m, r) = Metrics::new();
        let p =
            ProcLabels { service_name: "shop".into(), pid: 7, process_role: "worker".into(), ..ProcLabels::default() };
        m.observe_exchange(&p, &exchange(), "/users/42", None);
        let text = encode(&r);
        let line = "http_server_request_duration_seconds_bucket{le=\"0.05\",service_name=\"shop\",pid=\"7\",process_role=\"worker\",http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\"} 1";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("_bucket{le=\"0.025\",service_name=\"shop\""), "{text}");
        assert!(text.contains("http_server_response_body_size_bytes_sum{service_name=\"shop\",pid=\"7\""), "{text}");
        m.process_exited(7);
        m.expire(Duration::from_hours(1));
        assert!(encode(&r).contains("pid=\"7\""));
        m.expire(Duration::ZERO);
        assert!(!encode(&r).contains("pid=\"7\""), "{}", encode(&r));
    }

    #[test]
    fn client_calls_are_timed_by_family_and_error_type() {
        let (mut m, r) = Metrics::new();
        let p =
            ProcLabels { service_name: "shop".into(), pid: 7, process_role: "worker".into(), ..ProcLabels::default() };
        let call = |system, operation, error_type| ClientCall {
            system,
            operation,
            server_address: "127.0.0.1",
            server_port: "5432",
            error_type,
            seconds: 0.2,
            ..ClientCall::default()
        };
        m.observe_client_call(&p, &call("http", "GET", "no_response"));
        m.observe_client_call(&p, &call("postgresql", "SELECT", ""));
        m.client_connect_failed(&p, "127.0.0.1", "6379", "connection_refused");
        m.client_connect_failed(&p, "127.0.0.1", "6379", "connection_refused");
        let text = encode(&r);
        for line in [
            "pytracer_client_connect_failures_total{service_name=\"shop\",pid=\"7\",process_role=\"worker\",server_address=\"127.0.0.1\",server_port=\"6379\",error_type=\"connection_refused\"} 2",
            "http_client_request_duration_seconds_bucket{le=\"0.25\",service_name=\"shop\",pid=\"7\",process_role=\"worker\",http_request_method=\"GET\",http_response_status_code=\"\",server_address=\"127.0.0.1\",server_port=\"5432\",error_type=\"no_response\"} 1",
            "db_client_operation_duration_seconds_bucket{le=\"0.25\",service_name=\"shop\",pid=\"7\",process_role=\"worker\",db_system_name=\"postgresql\",db_operation_name=\"SELECT\",server_address=\"127.0.0.1\",server_port=\"5432\",error_type=\"\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        m.process_exited(7);
        m.expire(Duration::ZERO);
        assert!(!encode(&r).contains("pid=\"7\""), "{}", encode(&r));
    }

    #[test]
    fn dropped_counters_follow_totals() {
        let (mut m, r) = Metrics::new();
        m.sync_dropped("ringbuf_full", 0);
        assert!(encode(&r).contains("pytracer_events_dropped_total{reason=\"ringbuf_full\"} 0"));
        m.sync_dropped("ringbuf_full", 5);
        m.sync_dropped("ringbuf_full", 12);
        assert!(encode(&r).contains("pytracer_events_dropped_total{reason=\"ringbuf_full\"} 12"));
    }

    #[test]
    fn client_protocol_events_are_counted_by_protocol_and_event() {
        let (m, r) = Metrics::new();
        let grown = ProtocolStats { desyncs: 2, resyncs: 1, ..ProtocolStats::default() };
        m.client_protocol_events("postgresql", &grown);
        m.client_protocol_events(
            "postgresql",
            &ProtocolStats { desyncs: 1, given_up: true, ..ProtocolStats::default() },
        );
        m.client_protocol_events("redis", &ProtocolStats { unmatched_replies: 4, ..ProtocolStats::default() });
        let text = encode(&r);
        for line in [
            "pytracer_client_protocol_events_total{protocol=\"postgresql\",event=\"desyncs\"} 3",
            "pytracer_client_protocol_events_total{protocol=\"postgresql\",event=\"resyncs\"} 1",
            "pytracer_client_protocol_events_total{protocol=\"postgresql\",event=\"given_up\"} 1",
            "pytracer_client_protocol_events_total{protocol=\"redis\",event=\"unmatched_replies\"} 4",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("event=\"calls_lost\""), "nothing grew: no series\n{text}");
    }

    #[test]
    fn process_metrics_of_a_live_process() {
        let (mut m, r) = Metrics::new();
        let me = ProcLabels {
            service_name: "self".into(),
            pid: std::process::id(),
            process_role: "master".into(),
            ..ProcLabels::default()
        };
        m.set_processes(&[me]);
        m.procfs_sampler().lock().unwrap().sample();
        let text = encode(&r);
        for name in [
            "process_cpu_time_seconds_total",
            "process_memory_usage_bytes",
            "process_thread_count",
            "process_open_file_descriptor_count",
            "process_context_switches_total",
            "process_paging_faults_total",
            "pytracer_memory_usage_bytes",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
