//! `pytracer top`: everything pytracer traces at a glance. The agent runs as for `trace` (or
//! `run`, discovering processes), its spans going into [`stats::Stats`] instead of an output;
//! per service and route, requests per second, error share, p50/p95/p99 and the handler, the
//! exit calls per request; per worker CPU, RSS, GC collections and pauses. Live in the terminal
//! (`tui.rs`), or `--once`: trace for a while and print one plain table (`view.rs`).
mod stats;
mod tui;
mod view;
mod workers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pytracer_config::Config;

pub use view::SortBy;

use crate::agent::{self, Options, Targets};
use crate::export::sink::Format;
use stats::{Stats, StatsSink};
use workers::Workers;

pub struct TopOptions {
    /// Processes to trace; none: discover them as `run` does.
    pub pids: Vec<u32>,
    /// `Some`: trace this long, print one table, exit.
    pub once: Option<Duration>,
    pub sort: SortBy,
    pub config: Config,
    /// Where the spans also go, as JSON lines (the live view has no room for them).
    pub output: Option<Box<dyn std::io::Write + Send>>,
}

pub fn run(opts: TopOptions) -> anyhow::Result<()> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let targets = if opts.pids.is_empty() { Targets::Discover } else { Targets::Pids(opts.pids) };
    let (config, sink_stats, duration, output) = (opts.config, stats.clone(), opts.once, opts.output);
    if opts.once.is_none() {
        // The live view owns the terminal: log lines would tear it.
        log::set_max_level(log::LevelFilter::Off);
    }
    let agent = std::thread::Builder::new().name("agent".into()).spawn(move || {
        let options = Options {
            targets,
            duration,
            config,
            output: output
                .map_or_else(|| Box::new(std::io::sink()) as Box<dyn std::io::Write>, |o| o as Box<dyn std::io::Write>),
            format: Format::Json,
            metrics_addr: None,
            otlp: None,
            extra: Some(Box::new(StatsSink(sink_stats))),
            profile: None,
        };
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(agent::run(options))
    })?;
    let started = Instant::now();
    let mut workers = Workers::default();
    let result = if let Some(d) = opts.once {
        // A first CPU sample of each worker as it appears, the second at the end: its share
        // over the time it was seen.
        let mut seen = std::collections::BTreeSet::new();
        while started.elapsed() < d && !agent.is_finished() {
            let new: Vec<(u32, String)> = pids(&stats).into_iter().filter(|(p, _)| seen.insert(*p)).collect();
            workers.sample(&new);
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    } else {
        let mut source = Live { stats: stats.clone(), workers, started };
        let r = tui::run(&mut source, opts.sort);
        workers = source.workers;
        // SIGINT stops the agent as it stops `trace`: its last spans settled, probes detached.
        // SAFETY: kill(2) on our own pid.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGINT);
        }
        r
    };
    let agent_result = agent.join().map_err(|_| anyhow::anyhow!("the agent thread panicked"))?;
    log::set_max_level(log::LevelFilter::Info);
    agent_result?;
    result?;
    if opts.once.is_some() {
        let rows = view::route_rows(
            &stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            started.elapsed().as_secs_f64(),
            opts.sort,
            false,
        );
        let ws = sample_workers(&mut workers, &stats);
        print!("{}", view::plain(&rows, &ws));
    }
    Ok(())
}

/// The workers that served traced requests, with their service names.
fn pids(stats: &Mutex<Stats>) -> Vec<(u32, String)> {
    let s = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out: BTreeMap<u32, String> = BTreeMap::new();
    for ((service, _), r) in &s.routes {
        for p in &r.pids {
            out.insert(*p as u32, service.clone());
        }
    }
    out.into_iter().collect()
}

/// The workers now, with the GC pauses the agent saw of each.
fn sample_workers(workers: &mut Workers, stats: &Mutex<Stats>) -> Vec<workers::Worker> {
    let mut ws = workers.sample(&pids(stats));
    let s = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for w in &mut ws {
        w.gc_pauses = s.gc_pauses.get(&w.pid).copied().unwrap_or_default();
    }
    ws
}

struct Live {
    stats: Arc<Mutex<Stats>>,
    workers: Workers,
    started: Instant,
}

impl tui::Source for Live {
    fn rows(&mut self, sort: SortBy) -> (Vec<view::RouteRow>, Vec<workers::Worker>, String) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rows = view::route_rows(
            &self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            elapsed,
            sort,
            true,
        );
        let ws = sample_workers(&mut self.workers, &self.stats);
        let status = format!(
            " {} routes, {} workers, {elapsed:.0} s  q quit  s sort  r/e/p requests/errors/p99",
            rows.len(),
            ws.len()
        );
        (rows, ws, status)
    }
}
