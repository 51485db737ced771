//! `cargo xtask bench`: what pytracer costs the traced app, side by side with the in-process
//! agents users would otherwise install, and what the agent itself costs.
//!
//! Configurations are alternated (A B C D E F A B C D E F ...) so that slow drifts of this nested VM
//! hit all of them alike; medians are reported with the min and max across rounds.
mod configs;
pub mod cpu;
mod interpreters;
mod report;
mod wrk;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cmd, setup};
pub use configs::Config;

pub const ROUTES: [&str; 3] = ["/", "/users/42", "/work"];

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: u32,
    pub seconds: u64,
    pub connections: u32,
    pub configs: Vec<Config>,
}

/// One wrk run.
pub struct Sample {
    pub config: Config,
    pub route: &'static str,
    pub wrk: wrk::WrkResult,
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

/// The fixed-rate measurement's settings: well below saturation (about 8% of the server's CPU
/// untraced), on the routes the cost budget names.
fn cpu_options(configs: Vec<Config>, rounds: u32, seconds: u64) -> cpu::Options {
    cpu::Options { configs, routes: vec!["/", "/users/42"], rounds, seconds, rate: 400 }
}

/// `cargo xtask bench --quick`: CPU per request only, untraced against pytracer as deployed (A
/// and C, or the configurations given), 7 rounds of 4 s per route: about 3 minutes, printed,
/// results.md untouched.
pub fn quick(configs: Vec<Config>) -> Result<()> {
    setup::run()?;
    let venv = setup::Venv::bench();
    setup::venv(&venv)?;
    let pytracer = cmd::build_release("bench")?;
    let env = configs::Env { venv: venv.dir, pytracer };
    let measured = cpu::measure(&env, &cpu_options(configs, 7, 4))?;
    println!("{}", measured.markdown());
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

    let mut samples = Vec::new();
    let mut runs = Vec::new();
    for round in 1..=opts.rounds {
        for &config in &opts.configs {
            eprintln!("[bench] round {round}/{} {}", opts.rounds, config.label());
            let running = configs::start(config, &env)?;
            let mut requests = running.warm_up_requests;
            for route in ROUTES {
                let w = wrk::run(running.port, route, opts.connections, duration)?;
                eprintln!(
                    "[bench]   {route:<10} {:>8.1} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms",
                    w.rps(),
                    w.p("50"),
                    w.p("99")
                );
                requests += w.requests;
                samples.push(Sample { config, route, wrk: w });
            }
            let counts = running.stop()?;
            runs.push(Run { config, requests, counts });
        }
    }

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
    let cpu = cpu::measure(&env, &cpu_options(opts.configs.clone(), opts.rounds.max(7), opts.seconds))?;

    let summary = report::write(opts, &samples, &runs, &capacity, &per_interpreter, &cpu, started.elapsed())?;
    println!("{summary}");
    Ok(())
}
