//! The event loop: kernel events in, spans out. One thread; the kernel programs do the filtering,
//! so the loop only sees the traced processes' connections and process lifecycle.
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use pytracer_config::Config;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::bpf::events::{decode, Event};
use crate::bpf::probes::Probes;
use crate::clock::Clock;
use crate::cpython::{self, layout::Layout};

mod client;
mod frame_eval;
mod handlers;
mod python;
mod routing;
use crate::discovery;
use crate::export::otlp;
use crate::http::connection::{Connection, Outcome};
use crate::http::traceparent::{self, Incoming};
use crate::metrics::{self, Metrics, ProcLabels};
use crate::piece::Piece;
use crate::procinfo::{self, ProcInfo};
use crate::service;
use crate::sockaddr;
use crate::span::Attributes;
use crate::spans::semconv;
use crate::spans::server::{server_span, ConnContext};
use crate::stats::Stats;

/// Which processes to trace.
pub enum Targets {
    /// These pids and their descendants (`pytracer trace`).
    Pids(Vec<u32>),
    /// Whatever discovery finds, continuously (`pytracer run`).
    Discover,
}

pub struct Options {
    pub targets: Targets,
    pub duration: Option<Duration>,
    pub config: Config,
    pub output: Box<dyn Write>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where to export spans over OTLP/HTTP, if anywhere (JSON lines are always written).
    pub otlp: Option<otlp::Settings>,
}

/// A process being traced.
struct Traced {
    /// Span resource attributes.
    resource: Attributes,
    /// Metric labels.
    labels: ProcLabels,
    python: Python,
}

/// What the agent can read of a traced process's interpreter.
#[derive(Clone)]
enum Python {
    Supported {
        runtime_addr: u64,
        layout: &'static Layout,
        version: String,
    },
    /// Wire-only; the label is the `python_support` metric label.
    Unsupported {
        label: &'static str,
    },
}

struct Conn {
    http: Connection,
    ctx: ConnContext,
    /// The listening socket it was accepted on, for requests that need the server's address.
    listen_fd: i32,
    /// The thread that last read from it: the one serving its current request.
    tid: u32,
    /// Requests on this connection that a worker answered for us (uWSGI's HTTP router): the
    /// worker's pid, and the request's method and target to match it, in order.
    routed: Routed,
}

type Routed = std::collections::VecDeque<(u32, String, String)>;

struct Agent {
    probes: Probes,
    config: Config,
    clock: Clock,
    out: std::io::BufWriter<Box<dyn Write>>,
    procs: HashMap<u32, Traced>,
    conns: HashMap<(u32, i32), Conn>,
    /// Local address of each listening socket, by (pid, fd).
    listeners: HashMap<(u32, i32), Option<(IpAddr, u16)>>,
    /// Accepted TCP connections by client address, to find the router connection a uwsgi
    /// request came through (its REMOTE_ADDR/REMOTE_PORT are the router's client).
    by_client: HashMap<(IpAddr, u16), (u32, i32)>,
    stats: Stats,
    reported_drops: u64,
    metrics: Metrics,
    exporter: Option<otlp::Exporter>,
    /// Library files, by (device, inode), whose GC (and GIL) probes were attached or found
    /// impossible to attach. Not by path: each process reaches the same file through its own
    /// /proc/PID/root, and a second attach would trap twice for nothing.
    probed_files: HashSet<(u64, u64)>,
    frame_eval: frame_eval::FrameEvalProbes,
    samples: handlers::Samples,
    code_cache: cpython::code::CodeCache,
    /// Connections the traced processes opened (connect), by (pid, fd).
    clients: HashMap<(u32, i32), client::ClientConn>,
    /// Their local addresses, for same-host stitching.
    clients_by_local: HashMap<(IpAddr, u16), (u32, i32)>,
    /// Ids fixed early for requests still being served, by (pid, fd, request start).
    assigned: HashMap<(u32, i32, u64), crate::span::SpanIds>,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    if let Targets::Pids(pids) = &opts.targets {
        // Fail on a mistyped pid before paying for loading the programs.
        for &pid in pids {
            read_target(pid)?;
        }
    }
    let (mut probes, ring) = Probes::load()?;
    let fe = &opts.config.cpython.frame_eval;
    // `always` is for exact attribution: every hit walks. Sampled windows walk a few times per request.
    probes.set_walk_gap(if fe.mode == pytracer_config::FrameEvalMode::Sampled {
        fe.min_walk_gap_us * 1000
    } else {
        0
    })?;
    let (metrics, registry) = Metrics::new();
    if let Some(addr) = opts.metrics_addr {
        let listener = metrics::server::bind(addr).await?;
        eprintln!("pytracer: metrics at http://{}/metrics", listener.local_addr()?);
        tokio::spawn(metrics::server::serve(listener, std::sync::Arc::new(registry)));
    }
    let mut agent = Agent {
        probes,
        config: opts.config,
        clock: Clock::new(),
        out: std::io::BufWriter::new(opts.output),
        procs: HashMap::new(),
        conns: HashMap::new(),
        listeners: HashMap::new(),
        by_client: HashMap::new(),
        stats: Stats::default(),
        reported_drops: 0,
        metrics,
        exporter: opts.otlp.map(|s| {
            eprintln!("pytracer: exporting spans over OTLP/HTTP to {}", s.url);
            otlp::Exporter::start(s)
        }),
        probed_files: HashSet::new(),
        frame_eval: Default::default(),
        samples: Default::default(),
        code_cache: Default::default(),
        clients: HashMap::new(),
        clients_by_local: HashMap::new(),
        assigned: HashMap::new(),
    };
    let discover = match opts.targets {
        Targets::Pids(pids) => {
            for pid in pids {
                agent.trace_tree(pid)?;
            }
            false
        }
        Targets::Discover => {
            agent.rescan();
            true
        }
    };
    agent.tick();
    eprintln!("pytracer: ready");
    eprintln!("pytracer: tracing {} processes: {}", agent.procs.len(), agent.pid_list());

    // SAFETY: the ring buffer owns its map fd and lives as long as the AsyncFd that wraps it.
    let mut ring =
        unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel side wakes the agent only when the ring buffer fills up; otherwise the agent
    // drains it on this timer, so spans are at most this late.
    let mut drain_timer = tokio::time::interval(Duration::from_millis(10));
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rescan_every = Duration::from_secs_f64(agent.config.discovery.rescan_interval_seconds);
    let mut last_scan = Instant::now();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                agent.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = drain_timer.tick() => {
                agent.drain(ring.get_mut());
                agent.frame_eval_windows();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = sleep_until(deadline) => break,
            _ = tick.tick() => {
                agent.tick();
                if discover && last_scan.elapsed() >= rescan_every {
                    agent.rescan();
                    last_scan = Instant::now();
                }
            }
        }
    }
    agent.drain(ring.get_mut());
    agent.finish()
}

fn read_target(pid: u32) -> anyhow::Result<ProcInfo> {
    ProcInfo::read(pid)
        .map_err(|e| anyhow::anyhow!("no process with pid {pid} ({e}); check the pid with `pytracer discover`"))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Agent {
    /// Tracks `pid` and every process already below it (Gunicorn's existing workers). The root is
    /// tracked first so that a worker forked during the scan is caught by the kernel instead.
    fn trace_tree(&mut self, pid: u32) -> anyhow::Result<()> {
        let info = read_target(pid)?;
        self.track(pid, pid, &info)?;
        for child in procinfo::descendants(&[pid], &procinfo::all_parents()) {
            if let Ok(info) = ProcInfo::read(child) {
                self.track(child, pid, &info)?;
            }
        }
        Ok(())
    }

    fn track(&mut self, pid: u32, root: u32, info: &ProcInfo) -> anyhow::Result<()> {
        self.probes.track(pid, root)?;
        let python = self.inspect_python(pid);
        let traced = self.traced(info, pid == root, python);
        self.procs.insert(pid, traced);
        Ok(())
    }

    fn traced(&mut self, info: &ProcInfo, master: bool, python: Python) -> Traced {
        let resource = service::resource(self.config.service.name.as_deref(), info);
        let labels = ProcLabels {
            service_name: resource[semconv::SERVICE_NAME].as_str().unwrap_or_default().to_string(),
            pid: info.pid,
            process_role: if master { "master" } else { "worker" }.into(),
        };
        if let Python::Supported { version, .. } = &python {
            self.metrics.set_python_info(&labels, version);
        }
        Traced { resource, labels, python }
    }

    fn rescan(&mut self) {
        for c in discovery::scan(&self.config.discovery, false) {
            if c.decision.is_traced() && !self.procs.contains_key(&c.pid) {
                match self.trace_tree(c.pid) {
                    Ok(()) => eprintln!("pytracer: tracing pid {} ({})", c.pid, c.cmdline),
                    Err(e) => {
                        // A process that exited between the scan and the attach is not an agent fault.
                        let gone = procinfo::tgid_of(c.pid).is_none();
                        self.metrics.attach_error(if gone { "process_gone" } else { "map_update" });
                        eprintln!("pytracer: cannot trace pid {}: {e:#}", c.pid);
                    }
                }
            }
        }
    }

    fn pid_list(&self) -> String {
        let mut pids: Vec<_> = self.procs.keys().copied().collect();
        pids.sort_unstable();
        pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(record) = ring.next() {
            self.handle(&record);
        }
        if let Err(e) = self.out.flush() {
            eprintln!("pytracer: cannot write spans: {e}");
        }
    }

    fn handle(&mut self, record: &[u8]) {
        self.stats.events += 1;
        self.metrics.event_received();
        let ev = match decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.bad_records += 1;
                eprintln!("pytracer: skipped a kernel record: {e}");
                return;
            }
        };
        match ev {
            Event::Accept { h, listen_fd, addr } => {
                let ctx = ConnContext { client: sockaddr::decode(addr), local: None };
                if let sockaddr::Peer::Inet { ip, port } = ctx.client {
                    self.by_client.insert((ip, port), (h.tgid, h.fd));
                }
                let old = self.conns.insert(
                    (h.tgid, h.fd),
                    Conn { http: Connection::default(), ctx, listen_fd, tid: h.tid, routed: Routed::new() },
                );
                if let Some(mut old) = old {
                    // The close of the previous socket on this fd was not seen.
                    let out = old.http.on_close();
                    self.settle(h.tgid, h.fd, old.tid, &mut old.ctx, old.listen_fd, &mut old.routed, out);
                }
            }
            Event::Read { h, data, .. } | Event::Write { h, data, .. } => {
                let is_read = matches!(ev, Event::Read { .. });
                if self.is_client(h.tgid, h.fd) {
                    let piece = Piece { data, len: h.ret as u64, start_ns: h.start_ns, end_ns: h.end_ns };
                    self.on_client_data(h.tgid, h.tid, h.fd, &piece, !is_read);
                    return;
                }
                let Some(conn) = self.conns.get_mut(&(h.tgid, h.fd)) else {
                    self.stats.unknown_connection += 1;
                    return;
                };
                if is_read {
                    conn.tid = h.tid;
                }
                let tid = conn.tid;
                let piece = Piece { data, len: h.ret as u64, start_ns: h.start_ns, end_ns: h.end_ns };
                let out = if is_read { conn.http.on_read(&piece) } else { conn.http.on_write(&piece) };
                if out != Outcome::default() {
                    let (mut ctx, listen_fd, mut routed) =
                        (conn.ctx.clone(), conn.listen_fd, std::mem::take(&mut conn.routed));
                    self.settle(h.tgid, h.fd, tid, &mut ctx, listen_fd, &mut routed, out);
                    if let Some(conn) = self.conns.get_mut(&(h.tgid, h.fd)) {
                        conn.ctx.local = ctx.local;
                        conn.routed = routed;
                    }
                }
            }
            Event::Close { h } => {
                self.on_client_close(h.tgid, h.fd);
                if let Some(mut conn) = self.remove_conn((h.tgid, h.fd)) {
                    let out = conn.http.on_close();
                    self.settle(h.tgid, h.fd, conn.tid, &mut conn.ctx, conn.listen_fd, &mut conn.routed, out);
                }
            }
            Event::Fork { h, child } => self.on_fork(h.tgid, child),
            Event::Exit { h } => self.on_exit(h.tgid),
            Event::Exec { h } => self.on_exec(h.tgid),
            Event::Connect { h, addr } => self.on_connect(h.tgid, h.fd, addr),
            Event::Stack { h, frames, trigger, .. } => self.on_stack(h.tgid, h.tid, h.start_ns, trigger, &frames),
            Event::GcPause { h } | Event::GilWait { h } => {
                let secs = h.end_ns.saturating_sub(h.start_ns) as f64 / 1e9;
                let Some(t) = self.procs.get(&h.tgid) else { return };
                if matches!(ev, Event::GcPause { .. }) {
                    self.metrics.observe_gc_pause(&t.labels, secs);
                } else {
                    self.metrics.observe_gil_wait(&t.labels, secs);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        tgid: u32,
        fd: i32,
        tid: u32,
        ctx: &mut ConnContext,
        listen_fd: i32,
        routed: &mut Routed,
        out: Outcome,
    ) {
        self.stats.malformed_requests += u64::from(out.malformed_requests);
        self.stats.malformed_responses += u64::from(out.malformed_responses);
        self.stats.unmatched_responses += u64::from(out.unmatched_responses);
        for x in out.finished {
            if self.hand_to_router(tgid, &x) {
                self.stats.routed += 1;
                continue;
            }
            // The process that ran the code: the worker a router handed this request to.
            let served_by = match routed.front() {
                Some((w, m, t)) if *m == x.request.method && *t == x.request.target => {
                    let w = *w;
                    routed.pop_front();
                    w
                }
                _ => tgid,
            };
            if !self.procs.contains_key(&served_by) {
                self.resolve(served_by);
            }
            // Only a request without a usable Host header needs the listener's own address.
            let host_port = x
                .request
                .header("host")
                .is_some_and(|h| h.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()));
            if !host_port && ctx.local.is_none() {
                ctx.local = self.listener_addr(tgid, listen_fd);
            }
            let traced = &self.procs[&served_by];
            let path = x.request.target.split('?').next().unwrap_or_default();
            self.metrics.observe_exchange(&traced.labels, &x, path);
            let clock = self.clock;
            let resource = traced.resource.clone();
            let incoming = traceparent::parse(x.request.header("traceparent"), x.request.header("tracestate"));
            if let Incoming::Invalid(_) = &incoming {
                self.stats.invalid_traceparent += 1;
            }
            let client = match ctx.client {
                sockaddr::Peer::Inet { ip, port } => Some((ip, port)),
                _ => None,
            };
            let ids = match self.take_server_ids(tgid, fd, x.start_ns) {
                Some(ids) => ids,
                None => self.ids_for_request(&incoming, client),
            };
            if !ids.sampled {
                // The caller decided not to record this trace: metrics count it, no span.
                self.stats.unsampled += 1;
                continue;
            }
            let mut span =
                server_span(&x, ctx, ids, &self.config.http.redact_query_keys, resource, |t| clock.to_unix_ns(t));
            if served_by == tgid {
                if let Some(code) = self.samples.handler(tgid, tid, x.start_ns, x.end_ns) {
                    span.set_code(&code);
                }
            }
            if x.incomplete.is_some() {
                self.stats.incomplete_exchanges += 1;
            }
            self.emit(span);
        }
    }

    /// Writes a span as a JSON line and hands it to the OTLP exporter.
    fn emit(&mut self, span: crate::span::Span) {
        let written = serde_json::to_writer(&mut self.out, &span)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Some(e) = &self.exporter {
            e.send(span);
        }
        match written {
            Ok(()) => self.stats.spans += 1,
            Err(e) => {
                self.stats.spans_lost += 1;
                eprintln!("pytracer: cannot write a span: {e}");
            }
        }
    }

    /// A process we did not see start (it is gone or raced us): what /proc still says.
    fn resolve(&mut self, pid: u32) {
        let info = ProcInfo::read(pid).unwrap_or(ProcInfo { pid, ..Default::default() });
        let python = self.inspect_python(pid);
        let traced = self.traced(&info, false, python);
        self.procs.insert(pid, traced);
    }

    fn on_fork(&mut self, parent: u32, child: u32) {
        // The fork tracepoint also fires for new threads; only processes matter here.
        match procinfo::tgid_of(child) {
            Some(tgid) if tgid != child => return,
            _ => {}
        }
        // A forked child has its parent's address space: same interpreter, same addresses.
        let python = self.procs.get(&parent).map_or(Python::Unsupported { label: "not_python" }, |p| p.python.clone());
        if let Some(site) = self.frame_eval_site_of(parent) {
            self.frame_eval_site(child, site);
        }
        let traced = if let Ok(info) = ProcInfo::read(child) {
            self.traced(&info, false, python)
        } else {
            // Already gone: it looked like its parent.
            let parent = self.procs.get(&parent);
            let mut resource = parent.map(|p| p.resource.clone()).unwrap_or_default();
            resource.insert(semconv::PROCESS_PID.into(), child.into());
            let service_name = parent.map(|p| p.labels.service_name.clone()).unwrap_or_default();
            Traced { resource, labels: ProcLabels { service_name, pid: child, process_role: "worker".into() }, python }
        };
        self.procs.insert(child, traced);
        eprintln!("pytracer: following pid {child} (forked by {parent})");
    }

    /// Same pid, new program: its Python build, addresses and command line are all new.
    fn on_exec(&mut self, tgid: u32) {
        let Some(old) = self.procs.get(&tgid) else { return };
        let master = old.labels.process_role == "master";
        let info = ProcInfo::read(tgid).unwrap_or(ProcInfo { pid: tgid, ..Default::default() });
        self.frame_eval_forget(tgid);
        self.code_cache.forget(tgid);
        let python = self.inspect_python(tgid);
        let traced = self.traced(&info, master, python);
        self.procs.insert(tgid, traced);
        eprintln!("pytracer: pid {tgid} executed {}", info.cmdline_string());
    }

    fn on_exit(&mut self, tgid: u32) {
        let keys: Vec<_> = self.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            if let Some(mut conn) = self.remove_conn(k) {
                let out = conn.http.on_close();
                self.settle(tgid, k.1, conn.tid, &mut conn.ctx, conn.listen_fd, &mut conn.routed, out);
            }
        }
        self.probes.forget_connections(tgid);
        self.listeners.retain(|k, _| k.0 != tgid);
        self.forget_clients(tgid);
        self.assigned.retain(|k, _| k.0 != tgid);
        self.frame_eval_forget(tgid);
        self.code_cache.forget(tgid);
        self.samples.forget(tgid);
        if self.procs.remove(&tgid).is_some() {
            self.metrics.process_exited(tgid);
            eprintln!("pytracer: pid {tgid} exited; still tracing {} processes", self.procs.len());
        }
    }

    /// The local address of a listening socket, looked up once per listener.
    fn listener_addr(&mut self, tgid: u32, fd: i32) -> Option<(IpAddr, u16)> {
        *self.listeners.entry((tgid, fd)).or_insert_with(|| match sockaddr::local_addr_of(tgid, fd) {
            Some(sockaddr::Peer::Inet { ip, port }) => Some((ip, port)),
            _ => None,
        })
    }

    /// Once a second: drop counters, procfs samples, expiry of exited processes' series.
    fn tick(&mut self) {
        self.report_drops();
        let s = &self.stats;
        let user_side = [
            ("bad_record", s.bad_records),
            ("unknown_connection", s.unknown_connection),
            ("malformed_request", s.malformed_requests),
            ("malformed_response", s.malformed_responses),
            ("unmatched_response", s.unmatched_responses),
            ("span_write_failed", s.spans_lost),
            ("interpreter_read_error", s.interpreter_read_errors),
            // A code object freed (or its memory unreadable) before its name was read: that
            // frame is left out of its stack.
            ("code_object_unreadable", self.code_cache.read_errors),
        ];
        let kernel_side: Vec<_> = s.kernel_drops.iter().map(|(r, n)| (r.name(), *n)).collect();
        for (reason, total) in kernel_side.into_iter().chain(user_side) {
            self.metrics.sync_dropped(reason, total);
        }
        self.metrics.sync_total("pytracer_traceparent_invalid", self.stats.invalid_traceparent);
        self.metrics.sync_total("pytracer_spans_unsampled", self.stats.unsampled);
        self.metrics.sync_total("pytracer_exit_spans", self.stats.exit_spans);
        self.metrics.sync_total("pytracer_spans_stitched", self.stats.stitched);
        self.metrics.sync_total("pytracer_client_connections_unparsed", self.stats.unparsed_client_connections);
        self.metrics.sync_total("pytracer_python_stacks", self.samples.stacks);
        if let Some(e) = &self.exporter {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &e.counters;
            for (outcome, n) in [
                ("exported", c.exported.load(Relaxed)),
                ("queue_full", c.queue_full.load(Relaxed)),
                ("failed", c.failed.load(Relaxed)),
            ] {
                self.metrics.sync_otlp(outcome, n);
            }
            self.metrics.sync_total("pytracer_otlp_retries", c.retries.load(Relaxed));
        }
        let mut active: HashMap<u32, usize> = HashMap::new();
        for ((tgid, _), c) in &self.conns {
            *active.entry(*tgid).or_default() += c.http.in_flight();
        }
        let labels: Vec<ProcLabels> = self.procs.values().map(|t| t.labels.clone()).collect();
        for l in &labels {
            self.metrics.set_active_requests(l, active.get(&l.pid).copied().unwrap_or(0));
        }
        self.metrics.sample(&labels);
        let mut states: HashMap<&'static str, usize> = HashMap::new();
        for t in self.procs.values() {
            let label = match &t.python {
                // 3.14+: handler code on spans, but no GC table for the runtime metrics.
                Python::Supported { layout, .. } if !layout.gc_known => "stack_walk_only",
                Python::Supported { runtime_addr, layout, .. } => {
                    match cpython::runtime::snapshot(&cpython::memory::Memory::new(t.labels.pid), *runtime_addr, layout)
                    {
                        Ok(snap) => self.metrics.observe_python(&t.labels, &snap),
                        // A process in the middle of starting or exiting; counted, retried next tick.
                        Err(_) => self.stats.interpreter_read_errors += 1,
                    }
                    "supported"
                }
                Python::Unsupported { label } => label,
            };
            *states.entry(label).or_default() += 1;
        }
        self.metrics.set_process_states(&states);
        self.metrics.expire(Duration::from_secs_f64(self.config.metrics.exited_process_grace_seconds));
    }

    fn report_drops(&mut self) {
        let drops = self.probes.drops();
        let total: u64 = drops.iter().map(|d| d.1).sum();
        if total > self.reported_drops {
            let detail: Vec<String> =
                drops.iter().filter(|d| d.1 > 0).map(|(r, n)| format!("{}={n}", r.name())).collect();
            eprintln!("pytracer: warning: {} kernel events dropped so far ({})", total, detail.join(", "));
            self.reported_drops = total;
        }
        self.stats.kernel_drops = drops;
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if let Some(mut e) = self.exporter.take() {
            // Sends what is queued; bounded by the retry budget.
            e.shutdown();
            use std::sync::atomic::Ordering::Relaxed;
            let c = &e.counters;
            eprintln!(
                "pytracer: OTLP: exported={} queue_full={} failed={} retries={}",
                c.exported.load(Relaxed),
                c.queue_full.load(Relaxed),
                c.failed.load(Relaxed),
                c.retries.load(Relaxed)
            );
        }
        self.report_drops();
        self.stats.in_flight_at_exit = self.conns.values().map(|c| c.http.in_flight() as u64).sum();
        self.out.flush()?;
        eprintln!("pytracer: {}", self.stats.summary());
        eprintln!(
            "pytracer: python stacks={} without_app_frame={} code_lookups={} code_read_errors={}",
            self.samples.stacks, self.samples.without_app_frame, self.code_cache.misses, self.code_cache.read_errors
        );
        Ok(())
    }
}
