//! The event loop: kernel events in, spans out. One thread; the kernel programs do the filtering,
//! so the loop only sees the traced processes' connections and process lifecycle.
use std::collections::HashMap;
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
use crate::discovery;
use crate::http::attributes::{server_span, ConnContext};
use crate::http::connection::{Connection, Outcome};
use crate::http::stream::Piece;
use crate::procinfo::{self, ProcInfo};
use crate::service;
use crate::sockaddr;
use crate::span::Attributes;
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
}

struct Conn {
    http: Connection,
    ctx: ConnContext,
}

struct Agent {
    probes: Probes,
    config: Config,
    clock: Clock,
    out: std::io::BufWriter<Box<dyn Write>>,
    /// Resource attributes of every traced process, by pid.
    procs: HashMap<u32, Attributes>,
    conns: HashMap<(u32, i32), Conn>,
    /// Local address of each listening socket, by (pid, fd).
    listeners: HashMap<(u32, i32), Option<(IpAddr, u16)>>,
    stats: Stats,
    reported_drops: u64,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    if let Targets::Pids(pids) = &opts.targets {
        // Fail on a mistyped pid before paying for loading the programs.
        for &pid in pids {
            ProcInfo::read(pid).map_err(|e| anyhow::anyhow!("no process with pid {pid} ({e}); check the pid with `pytracer discover`"))?;
        }
    }
    let (probes, ring) = Probes::load()?;
    let mut agent = Agent {
        probes,
        config: opts.config,
        clock: Clock::new(),
        out: std::io::BufWriter::new(opts.output),
        procs: HashMap::new(),
        conns: HashMap::new(),
        listeners: HashMap::new(),
        stats: Stats::default(),
        reported_drops: 0,
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
    eprintln!("pytracer: ready");
    eprintln!("pytracer: tracing {} processes: {}", agent.procs.len(), agent.pid_list());

    // SAFETY: the ring buffer owns its map fd and lives as long as the AsyncFd that wraps it.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let rescan_every = Duration::from_secs_f64(agent.config.discovery.rescan_interval_seconds);
    let mut last_scan = Instant::now();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                agent.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until(deadline) => break,
            _ = tick.tick() => {
                agent.report_drops();
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
        let info = ProcInfo::read(pid).map_err(|e| anyhow::anyhow!("no process with pid {pid} ({e}); check the pid with `pytracer discover`"))?;
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
        let resource = service::resource(self.config.service.name.as_deref(), info);
        self.procs.insert(pid, resource);
        Ok(())
    }

    fn rescan(&mut self) {
        for c in discovery::scan(&self.config.discovery) {
            if c.decision.is_traced() && !self.procs.contains_key(&c.pid) {
                match self.trace_tree(c.pid) {
                    Ok(()) => eprintln!("pytracer: tracing pid {} ({})", c.pid, c.cmdline),
                    Err(e) => eprintln!("pytracer: cannot trace pid {}: {e:#}", c.pid),
                }
            }
        }
    }

    fn pid_list(&self) -> String {
        let mut pids: Vec<_> = self.procs.keys().copied().collect();
        pids.sort();
        pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
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
                let ctx = ConnContext { client: sockaddr::decode(addr), local: self.listener_addr(h.tgid, listen_fd) };
                let old = self.conns.insert((h.tgid, h.fd), Conn { http: Connection::default(), ctx });
                if let Some(mut old) = old {
                    // The close of the previous socket on this fd was not seen.
                    let out = old.http.on_close();
                    self.settle(h.tgid, &old.ctx, out);
                }
            }
            Event::Read { h, data, .. } | Event::Write { h, data, .. } => {
                let is_read = matches!(ev, Event::Read { .. });
                let Some(conn) = self.conns.get_mut(&(h.tgid, h.fd)) else {
                    self.stats.unknown_connection += 1;
                    return;
                };
                let piece = Piece { data, len: h.ret as u64, start_ns: h.start_ns, end_ns: h.end_ns };
                let out = if is_read { conn.http.on_read(&piece) } else { conn.http.on_write(&piece) };
                let ctx = conn.ctx.clone();
                self.settle(h.tgid, &ctx, out);
            }
            Event::Close { h } => {
                if let Some(mut conn) = self.conns.remove(&(h.tgid, h.fd)) {
                    let out = conn.http.on_close();
                    self.settle(h.tgid, &conn.ctx, out);
                }
            }
            Event::Fork { h, child } => self.on_fork(h.tgid, child),
            Event::Exit { h } => self.on_exit(h.tgid),
        }
    }

    fn settle(&mut self, tgid: u32, ctx: &ConnContext, out: Outcome) {
        self.stats.malformed_requests += out.malformed_requests as u64;
        self.stats.malformed_responses += out.malformed_responses as u64;
        self.stats.unmatched_responses += out.unmatched_responses as u64;
        for x in out.finished {
            let resource = self.procs.get(&tgid).cloned().unwrap_or_else(|| self.resolve(tgid));
            let clock = self.clock;
            let span = server_span(&x, ctx, &self.config.http.redact_query_keys, resource, |t| clock.to_unix_ns(t));
            if x.incomplete.is_some() {
                self.stats.incomplete_exchanges += 1;
            }
            let written = serde_json::to_writer(&mut self.out, &span).map_err(std::io::Error::from).and_then(|_| self.out.write_all(b"\n"));
            match written {
                Ok(()) => self.stats.spans += 1,
                Err(e) => {
                    self.stats.spans_lost += 1;
                    eprintln!("pytracer: cannot write a span: {e}");
                }
            }
        }
    }

    /// Resource of a process we did not see start (it is gone or raced us): what /proc still says.
    fn resolve(&mut self, pid: u32) -> Attributes {
        let info = ProcInfo::read(pid).unwrap_or(ProcInfo { pid, ..Default::default() });
        let r = service::resource(self.config.service.name.as_deref(), &info);
        self.procs.insert(pid, r.clone());
        r
    }

    fn on_fork(&mut self, parent: u32, child: u32) {
        // The fork tracepoint also fires for new threads; only processes matter here.
        match procinfo::tgid_of(child) {
            Some(tgid) if tgid != child => return,
            _ => {}
        }
        let resource = match ProcInfo::read(child) {
            Ok(info) => service::resource(self.config.service.name.as_deref(), &info),
            Err(_) => {
                // Already gone: it looked like its parent.
                let mut r = self.procs.get(&parent).cloned().unwrap_or_default();
                r.insert("process.pid".into(), child.into());
                r
            }
        };
        self.procs.insert(child, resource);
        eprintln!("pytracer: following pid {child} (forked by {parent})");
    }

    fn on_exit(&mut self, tgid: u32) {
        let keys: Vec<_> = self.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            if let Some(mut conn) = self.conns.remove(&k) {
                let out = conn.http.on_close();
                self.settle(tgid, &conn.ctx, out);
            }
        }
        self.probes.forget_connections(tgid);
        self.listeners.retain(|k, _| k.0 != tgid);
        if self.procs.remove(&tgid).is_some() {
            eprintln!("pytracer: pid {tgid} exited; still tracing {} processes", self.procs.len());
        }
    }

    /// The local address of a listening socket, from the process's own view of its network
    /// namespace (/proc/PID/net/tcp{,6}). Looked up once per listener.
    fn listener_addr(&mut self, tgid: u32, fd: i32) -> Option<(IpAddr, u16)> {
        *self.listeners.entry((tgid, fd)).or_insert_with(|| {
            use procfs::process::{FDTarget, Process};
            let p = Process::new(tgid as i32).ok()?;
            let FDTarget::Socket(inode) = p.fd_from_fd(fd).ok()?.target else { return None };
            let tcp = p.tcp().unwrap_or_default().into_iter().chain(p.tcp6().unwrap_or_default());
            tcp.into_iter().find(|e| e.inode == inode).map(|e| (e.local_address.ip(), e.local_address.port()))
        })
    }

    fn report_drops(&mut self) {
        let drops = self.probes.drops();
        let total: u64 = drops.iter().map(|d| d.1).sum();
        if total > self.reported_drops {
            let detail: Vec<String> = drops.iter().filter(|d| d.1 > 0).map(|(r, n)| format!("{}={n}", r.name())).collect();
            eprintln!("pytracer: warning: {} kernel events dropped so far ({})", total, detail.join(", "));
            self.reported_drops = total;
        }
        self.stats.kernel_drops = drops;
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.report_drops();
        self.stats.in_flight_at_exit = self.conns.values().map(|c| c.http.in_flight() as u64).sum();
        self.out.flush()?;
        eprintln!("pytracer: {}", self.stats.summary());
        Ok(())
    }
}
