//! `cargo xtask bench`: what pytracer costs the traced app, side by side with the in-process
//! agents users would otherwise install, and what the agent itself costs.
//!
//! Side by side: in every round each configuration under test runs at the same time as an
//! untraced twin (A) on the same CPU, and each figure is the median over rounds of that round's
//! own X/A ratio, with a distribution-free confidence interval of the median (stats.rs). This
//! nested VM drifts by a third between runs seconds apart; A and X, served in turn, see the same
//! moment. What the tracer costs every process (A included) is measured apart (system_wide.rs).
mod affinity;
mod configs;
pub mod cpu;
mod cpu_report;
mod interpreters;
mod pair;
mod report;
mod side_by_side;
mod stats;
mod syscall_cost;
mod syscall_mix;
mod system_wide;
mod taskstats;
mod wrk;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cmd, setup};
pub use configs::Config;

pub const ROUTES: [&str; 3] = ["/", "/users/42", "/work"];

/// The routes the cost budget names, measured at a fixed rate.
const CPU_ROUTES: [&str; 2] = ["/", "/users/42"];

/// Requests per second to each server of a pair: both together keep the server CPU about half
/// busy untraced here, so neither queues behind the other.
const RATE: u32 = 300;

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: u32,
    pub seconds: u64,
    pub connections: u32,
    pub configs: Vec<Config>,
}

/// One saturated wrk run of a configuration under test, and its untraced twin's beside it.
pub struct Sample {
    pub config: Config,
    pub route: &'static str,
    pub wrk: wrk::WrkResult,
    pub untraced: wrk::WrkResult,
}

/// One configuration's life in one round: requests sent against spans delivered.
pub struct Run {
    pub config: Config,
    pub requests: u64,
    pub counts: configs::Counts,
}

/// One step of the capacity search: pytracer (B) under more and more concurrency.
pub struct CapacityStep {
    pub connections: u32,
    pub wrk: wrk::WrkResult,
    pub requests: u64,
    pub counts: configs::Counts,
}

/// `cargo xtask bench --quick`: the same side-by-side design, A beside C (or the configurations
/// given), 7 rounds of 3 s per route at the fixed rate and 3 s of saturated `/`, and the
/// system-wide share over 5 rounds of 2 s phases: about 3½ minutes, printed, results.md untouched.
pub fn quick(configs: Vec<Config>) -> Result<()> {
    setup::run()?;
    let venv = setup::Venv::bench();
    setup::venv(&venv)?;
    let pytracer = cmd::build_release("bench")?;
    let env = configs::Env { venv: venv.dir, pytracer };
    let plan = side_by_side::Plan {
        configs,
        rounds: 7,
        cpu_routes: CPU_ROUTES.to_vec(),
        rate: RATE,
        cpu_seconds: 3,
        wrk_routes: vec!["/"],
        wrk_seconds: 3,
        connections: 4,
    };
    let measured = side_by_side::measure(&env, &plan)?;
    let shared = system_wide::measure(
        &env,
        &system_wide::Options { routes: CPU_ROUTES.to_vec(), rounds: 5, seconds: 2, rate: RATE },
    )?;
    println!("{}", cpu_report::markdown(&measured, &shared));
    println!("{}", report::throughput_markdown(&plan.configs, &measured.throughput, &plan.wrk_routes));
    Ok(())
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    setup::run()?;
    let venv = setup::Venv::bench();
    setup::venv(&venv)?;
    let pytracer = cmd::build_release("bench")?;
    let env = configs::Env { venv: venv.dir, pytracer };
    let duration = Duration::from_secs(opts.seconds);

    let plan = side_by_side::Plan {
        configs: opts.configs.clone(),
        rounds: opts.rounds,
        cpu_routes: CPU_ROUTES.to_vec(),
        rate: RATE,
        cpu_seconds: opts.seconds,
        wrk_routes: ROUTES.to_vec(),
        wrk_seconds: opts.seconds,
        connections: opts.connections,
    };
    let measured = side_by_side::measure(&env, &plan)?;
    let shared = system_wide::measure(
        &env,
        &system_wide::Options {
            routes: CPU_ROUTES.to_vec(),
            rounds: opts.rounds.div_ceil(2).max(7),
            seconds: opts.seconds,
            rate: RATE,
        },
    )?;

    let mut capacity = Vec::new();
    if opts.configs.contains(&Config::B) {
        for connections in [8, 32, 128] {
            eprintln!("[bench] capacity: pytracer wire-only, {connections} connections on /");
            let running = configs::start(Config::B, &env)?;
            let w = wrk::run(running.port, "/", connections, duration)?;
            let requests = running.warm_up_requests + w.requests;
            let counts = running.stop()?;
            capacity.push(CapacityStep { connections, wrk: w, requests, counts });
        }
    }

    let per_interpreter = interpreters::measure(&env.pytracer, opts.seconds.min(4), opts.connections)?;

    let summary = report::write(opts, &measured, &shared, &capacity, &per_interpreter, started.elapsed())?;
    println!("{summary}");
    Ok(())
}
