//! The rounds of the side-by-side design: for each configuration under test X, a fresh pair
//! (pair.rs) per round serves first the fixed-rate CPU measurement (cpu.rs, and the kernel
//! programs' run times in a window of their own) and then saturated wrk runs, one wrk per server at the same
//! time, both on the load generator's CPU, so that A and X share the server CPU and one round's
//! X/A ratio of requests per second sees one moment of the machine.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::affinity::CLIENT_CPU;
use super::configs::{Config, Env};
use super::cpu::{measure_pair, PairSample};
use super::{pair, wrk, Run, Sample};

#[derive(Debug, Clone)]
pub struct Plan {
    /// Configurations under test (A, if listed, is left out: it is in every pair).
    pub configs: Vec<Config>,
    pub rounds: u32,
    pub cpu_routes: Vec<&'static str>,
    /// Requests per second to each server.
    pub rate: u32,
    pub cpu_seconds: u64,
    pub wrk_routes: Vec<&'static str>,
    pub wrk_seconds: u64,
    pub connections: u32,
}

impl Plan {
    pub fn tested(&self) -> impl Iterator<Item = Config> + '_ {
        self.configs.iter().copied().filter(|&c| c != Config::A)
    }
}

pub struct Measured {
    pub plan: Plan,
    /// (route, X) → one sample per round.
    pub cpu: BTreeMap<(&'static str, Config), Vec<PairSample>>,
    pub throughput: Vec<Sample>,
    pub runs: Vec<Run>,
}

/// Between a pair's warm-up and its first measurement.
const SETTLE: Duration = Duration::from_secs(3);

pub fn measure(env: &Env, plan: &Plan) -> Result<Measured> {
    let mut m = Measured { plan: plan.clone(), cpu: BTreeMap::new(), throughput: Vec::new(), runs: Vec::new() };
    for round in 1..=plan.rounds {
        for x in plan.tested() {
            eprintln!("[bench] round {round}/{}: A untraced beside {}", plan.rounds, x.label());
            let p = pair::start(x, env)?;
            // The agent's start-up work outlives its warm-up requests (the route tables it reads
            // at each worker's first request, its first rescans): measured at once, the first
            // route's window had carried it, 16.5 µs of agent per request on `/` against 11.0
            // on `/users/42`. It is paid once per process, not per request.
            std::thread::sleep(SETTLE);
            let mut requests = p.x.warm_up_requests;
            for &route in &plan.cpu_routes {
                let s =
                    measure_pair(&p.a, &p.x, route, plan.rate, Duration::from_secs(plan.cpu_seconds), round % 2 == 0)?;
                eprintln!(
                    "[bench]   cpu {route:<10} A {:>6.1} µs/request ({} requests), X {:>6.1} (server {:.1} + {:.1}, agent {:.1}; programs {:.1}; {} requests): {:+.1}%",
                    s.a.total_us(),
                    s.a.requests,
                    s.x.total_us(),
                    s.x.server_user_us,
                    s.x.server_system_us,
                    s.x.agent_us,
                    s.x.programs_us,
                    s.x.requests,
                    s.added_pct()
                );
                requests += s.x.requests + s.x_stats_requests;
                m.cpu.entry((route, x)).or_default().push(s);
            }
            for &route in &plan.wrk_routes {
                let d = Duration::from_secs(plan.wrk_seconds);
                let wa = wrk::spawn(p.a.port, route, plan.connections, d, Some(CLIENT_CPU))?;
                let wx = wrk::spawn(p.x.port, route, plan.connections, d, Some(CLIENT_CPU))?;
                let (untraced, w) = (wa.wait()?, wx.wait()?);
                eprintln!(
                    "[bench]   wrk {route:<10} A {:>7.1} req/s, X {:>7.1} req/s: {:.3}×",
                    untraced.rps(),
                    w.rps(),
                    w.rps() / untraced.rps().max(1e-9)
                );
                requests += w.requests;
                m.throughput.push(Sample { config: x, route, wrk: w, untraced });
            }
            let counts = p.stop()?;
            m.runs.push(Run { config: x, requests, counts });
        }
    }
    Ok(m)
}
