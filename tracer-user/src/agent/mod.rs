//! The event loop: kernel events in, spans out. One thread; the kernel programs do the filtering,
//! so the loop only sees the traced processes' connections and process lifecycle. Each kind of
//! event is handled in its own room: `procs` (process life), `server` (accepted connections),
//! `client` (outgoing calls), `handlers` and `frame_eval` (Python stacks), `telemetry` (counters).
use std::io::Write;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use pytracer_config::Config;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::bpf::events::{decode, Event};
use crate::bpf::probes::Probes;
use crate::clock::Clock;
use crate::cpython;
use crate::export::otlp;
use crate::export::sink::{Format, Sinks, SpanSink};
use crate::http::redact::Redaction;
use crate::metrics::{self, Metrics};
use crate::piece::Piece;
use crate::procinfo::ProcInfo;
use crate::spans::Span;
use crate::stats::Stats;

mod adopt;
mod client;
mod drain_timer;
mod execs;
mod frame_eval;
mod handlers;
mod ids;
mod procs;
mod profile;
mod python;
mod route_tables;
mod routing;
mod server;
mod telemetry;
mod tls;

use procs::{Python, Traced};
use server::Conn;

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
    /// JSON lines or pretty lines.
    pub format: Format,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where to export spans over OTLP/HTTP, if anywhere (JSON lines are always written).
    pub otlp: Option<otlp::Settings>,
    /// One more destination (`pytracer top`'s statistics).
    pub extra: Option<Box<dyn SpanSink>>,
    /// `pytracer profile`: the CPU sampler on, and where its files go.
    pub profile: Option<crate::profile::Settings>,
}

struct Agent {
    probes: Probes,
    config: Config,
    clock: Clock,
    /// Where finished spans go: JSON lines, and OTLP when configured.
    sink: Sinks,
    // Looked up on every record: foldhash, not SipHash.
    procs: foldhash::HashMap<u32, Traced>,
    /// `pytracer run`'s rescans of /proc.
    rescanner: crate::discovery::Rescanner,
    /// `pytracer run`'s execs to look at (execs.rs); None when tracing given pids.
    execs: Option<execs::PendingExecs>,
    /// Accepted connections (server.rs).
    server: server::ServerSide,
    stats: Stats,
    reported_drops: u64,
    metrics: Metrics,
    /// Each traced process's GC (and GIL) probes (python.rs).
    python_probes: python::PythonProbes,
    frame_eval: frame_eval::FrameEvalProbes,
    samples: handlers::Samples,
    code_cache: cpython::code::CodeCache,
    /// Outgoing connections (client.rs).
    client: client::ClientSide,
    /// Span ids fixed early and spans waiting for their caller (ids.rs).
    ids: ids::IdState,
    /// Each worker's route table (route_tables.rs).
    routes: route_tables::RouteTables,
    /// The configured secrets and captured headers.
    redaction: Redaction,
    /// Each process's libssl probes (tls.rs).
    tls: tls::TlsProbes,
    /// Connections older than the agent, until their first request boundary (adopt.rs).
    adopted: adopt::Adopted,
    /// The CPU sampler's samples (`pytracer profile` only).
    profiler: Option<profile::Profiler>,
}

/// How often the ring buffer is drained. Each drain is a wake-up, a timer and a write of the
/// spans, and it starts on caches the traced app has since cooled: at 400 requests/s the agent
/// spent 24.5 µs per request draining every 40 ms, 14–16 µs every 100 ms and 13–14 µs every
/// 250 ms; at 300 requests/s, 9.7–13.7 µs every 250 ms and 7.8–8.3 µs every second. Spans are
/// that much later (OpenTelemetry's SDKs batch for 5 s); a busy server never waits so long, as
/// the kernel side wakes the agent early when 512 KiB wait.
const DRAIN_GAP: Duration = Duration::from_secs(1);
/// Rescans and bursts free memory too: it goes back to the kernel every half minute.
const TRIM_EVERY_TICKS: u64 = 30;

pub async fn run(opts: Options) -> anyhow::Result<()> {
    if let Targets::Pids(pids) = &opts.targets {
        // Fail on a mistyped pid before paying for loading the programs.
        for &pid in pids {
            read_target(pid)?;
        }
    }
    let redaction = Redaction::new(&opts.config.http.secrets, &opts.config.http.capture_headers)?;
    let (mut probes, ring) = Probes::load()?;
    let fe = &opts.config.cpython.frame_eval;
    // `always` is for exact attribution: every hit walks. Sampled windows walk a few times per request.
    probes.set_walk_gap(if fe.mode == pytracer_config::FrameEvalMode::Sampled {
        fe.min_walk_gap_us * 1000
    } else {
        0
    })?;
    let (metrics, mut registry) = Metrics::new();
    let adoption_metrics = metrics::adoption::Adoption::registered(&mut registry);
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut scrapes = None;
    if let Some(addr) = opts.metrics_addr {
        let listener = metrics::server::bind(addr).await?;
        log::info!("metrics at http://{}/metrics", listener.local_addr()?);
        let (sync, asks) = tokio::sync::mpsc::channel(8);
        scrapes = Some(asks);
        let before = metrics::server::BeforeScrape { sync, procfs: metrics.procfs_sampler() };
        tokio::spawn(metrics::server::serve(listener, std::sync::Arc::new(registry), ready.clone(), before));
    }
    let mut agent = Agent {
        // Before `probes` moves in.
        profiler: opts.profile.map(|s| profile::Profiler::start(&mut probes, s)).transpose()?,
        probes,
        config: opts.config,
        clock: Clock::new(),
        procs: foldhash::HashMap::default(),
        rescanner: crate::discovery::Rescanner::default(),
        execs: None,
        server: server::ServerSide::default(),
        stats: Stats::default(),
        reported_drops: 0,
        metrics,
        sink: Sinks {
            lines: opts.format.sink(opts.output),
            extra: opts.extra,
            otlp: opts.otlp.map(|s| {
                log::info!("exporting spans over OTLP/HTTP to {}", s.url);
                otlp::Exporter::start(s)
            }),
        },
        python_probes: python::PythonProbes::default(),
        frame_eval: frame_eval::FrameEvalProbes::default(),
        samples: handlers::Samples::default(),
        code_cache: cpython::code::CodeCache::default(),
        client: client::ClientSide::default(),
        ids: ids::IdState::default(),
        routes: route_tables::RouteTables::default(),
        redaction,
        tls: tls::TlsProbes::default(),
        adopted: adopt::Adopted::new(adoption_metrics),
    };
    // Loaded, attached and bound: what is left to do needs only a few capabilities.
    match crate::privileges::drop_unneeded() {
        Ok(d) => log::debug!(
            "capabilities kept: {} ({} dropped{})",
            d.kept.join(", "),
            d.dropped,
            if d.bounding { ", bounding set cut" } else { "" }
        ),
        Err(e) => log::warn!("keeping every capability: {e}"),
    }
    match opts.targets {
        Targets::Pids(pids) => {
            for pid in pids {
                agent.trace_tree(pid)?;
            }
        }
        Targets::Discover => {
            agent.execs = Some(execs::PendingExecs::default());
            agent.rescan();
        }
    }
    agent.tick();
    // What loading and the first scan freed (the kernel's BTF among it) back to the kernel.
    crate::heap::trim();
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    log::info!("ready");
    log::info!("tracing {} processes: {}", agent.procs.len(), agent.pid_list());
    agent.event_loop(ring, opts.duration, scrapes).await?;
    agent.finish()
}

impl Agent {
    /// Records, timers and signals until a signal or the deadline; the ring drained at the end.
    async fn event_loop(
        &mut self,
        ring: RingBuf<MapData>,
        duration: Option<Duration>,
        mut scrapes: Option<Scrapes>,
    ) -> anyhow::Result<()> {
        // SAFETY: the ring buffer owns its map fd and lives as long as the AsyncFd that wraps it.
        let mut ring =
            unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
        // The kernel side wakes the agent only when the ring buffer fills up; otherwise the agent
        // drains it on a timer, every DRAIN_GAP, so spans are at most that late.
        let mut drain_timer =
            drain_timer::DrainTimer::new().map_err(|e| anyhow::anyhow!("cannot make the drain timer: {e}"))?;
        // Sets the first sampled frame-evaluation window's time, so that the first drain is due
        // by then.
        self.frame_eval_windows();
        drain_timer.set(self.frame_eval.timer_due(Instant::now() + DRAIN_GAP), DRAIN_GAP)?;
        let rescan_every = Duration::from_secs_f64(self.config.discovery.rescan_interval_seconds);
        // Rescans go by the ticks' scheduled instants, not by when the last scan ended: measured
        // from its end, the next tick two seconds on was always a little short of 2 s, and the
        // default 2 s rescan ran every 3 s.
        let mut last_scan = start;
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                }
                fired = drain_timer.wait() => {
                    fired?;
                    self.drain(ring.get_mut());
                    self.frame_eval_windows();
                    // Sooner when a sampled frame-evaluation window is due to open or close.
                    let due = self.frame_eval.timer_due(Instant::now() + DRAIN_GAP);
                    drain_timer.set(due, DRAIN_GAP)?;
                }
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                () = sleep_until(deadline) => break,
                Some(done) = next_scrape(&mut scrapes) => {
                    // Records that wait for the next drain count in this scrape already.
                    self.drain(ring.get_mut());
                    self.sync_metrics();
                    let _ = done.send(());
                    // Scrapes that arrived meanwhile get this same sync, not one each: a burst
                    // of scrapes costs the event loop one.
                    while let Some(done) = scrapes.as_mut().and_then(|s| s.try_recv().ok()) {
                        let _ = done.send(());
                    }
                }
                at = tick.tick() => {
                    self.tick();
                    ticks += 1;
                    if ticks.is_multiple_of(TRIM_EVERY_TICKS) {
                        crate::heap::trim();
                    }
                    self.tls_recheck();
                    // Discovering (`pytracer run`) is having execs to look at.
                    let overflowed = self.check_execs();
                    if self.execs.is_some() && (overflowed || at.duration_since(last_scan) >= rescan_every) {
                        self.rescan();
                        last_scan = at;
                    }
                }
            }
        }
        self.drain(ring.get_mut());
        Ok(())
    }
}

pub(crate) fn read_target(pid: u32) -> anyhow::Result<ProcInfo> {
    ProcInfo::read(pid)
        .map_err(|e| anyhow::anyhow!("no process with pid {pid} ({e}); check the pid with `pytracer discover`"))
}

/// The metrics server's requests to sync the metrics before a scrape.
type Scrapes = tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>;

async fn next_scrape(scrapes: &mut Option<Scrapes>) -> Option<tokio::sync::oneshot::Sender<()>> {
    match scrapes {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Agent {
    /// Handles every record waiting; how many there were.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> usize {
        let mut n = 0;
        while let Some(record) = ring.next() {
            self.handle(&record);
            n += 1;
        }
        self.settle_awaiting(false);
        if let Err(e) = self.sink.flush() {
            log::error!("cannot write spans: {e}");
        }
        n
    }

    fn handle(&mut self, record: &[u8]) {
        self.stats.events += 1;
        self.metrics.event_received();
        let ev = match decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.bad_records += 1;
                log::warn!("skipped a kernel record: {e}");
                return;
            }
        };
        if !self.adoption_gate(&ev) {
            return;
        }
        match ev {
            Event::Accept { h, listen_fd, addr } => self.on_accept((h.tgid, h.fd), h.tid, listen_fd, addr),
            Event::Read { h, data, flags } | Event::Write { h, data, flags } => {
                let is_read = matches!(ev, Event::Read { .. });
                let tls = flags & tracer_common::DATA_FLAG_TLS != 0;
                if flags & tracer_common::DATA_FLAG_PRESSED != 0 {
                    self.stats.pressed_captures += 1;
                }
                let piece = Piece { data, len: h.ret as u64, start_ns: h.start_ns, end_ns: h.end_ns };
                if self.is_client(h.tgid, h.fd) {
                    self.on_client_data(h.tgid, h.tid, h.fd, &piece, !is_read, tls);
                } else {
                    self.on_server_data((h.tgid, h.fd), h.tid, &piece, is_read, tls);
                }
            }
            Event::Close { h } => {
                self.on_client_close(h.tgid, h.fd, h.end_ns);
                self.on_server_close((h.tgid, h.fd));
            }
            Event::Fork { h, child } => self.on_fork(h.tgid, child),
            Event::Exit { h } => self.on_exit(h.tgid, h.end_ns),
            Event::Exec { h } => self.on_exec(h.tgid),
            Event::Connect { h, addr, local } => self.on_connect(&h, addr, local),
            Event::SockError { h } => self.on_client_failure(&h),
            Event::Stack { h, frames, trigger, .. } if trigger == tracer_common::STACK_TRIGGER_SAMPLE => {
                self.on_profile_sample(h.tgid, h.fd, h.start_ns, &frames);
            }
            Event::Stack { h, frames, trigger, .. } => self.on_stack(h.tgid, h.tid, h.start_ns, trigger, &frames),
            Event::GcPause { h } | Event::GilWait { h } => {
                let secs = h.end_ns.saturating_sub(h.start_ns) as f64 / 1e9;
                let Some(t) = self.procs.get(&h.tgid) else { return };
                if matches!(ev, Event::GcPause { .. }) {
                    self.metrics.observe_gc_pause(&t.labels, secs);
                    self.sink.gc_pause(h.tgid, h.end_ns.saturating_sub(h.start_ns));
                } else {
                    self.metrics.observe_gil_wait(&t.labels, secs);
                }
            }
        }
    }

    /// Hands a finished span to the sinks (JSON lines, OTLP); a span no sink took is counted lost.
    fn emit(&mut self, span: &Span) {
        match self.sink.send(span) {
            Ok(()) => self.stats.spans += 1,
            Err(e) => {
                self.stats.spans_lost += 1;
                log::error!("cannot write a span: {e}");
            }
        }
    }
}
