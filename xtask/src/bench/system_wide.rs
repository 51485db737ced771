//! The share of pytracer's cost that every process on the machine pays, traced or not: its
//! syscall tracepoints put every task on the slow syscall path, and their entry programs run
//! (and return early) in every process. The side-by-side A pays it too, so the side-by-side
//! ratio leaves it out; this measures it apart, sequentially: one untraced Gunicorn, its CPU per
//! request with no agent and with pytracer running as deployed but tracking nothing, the two
//! phases back to back in each round (their order swapped every other round so a steady drift
//! cancels), each round's ratio on/off − 1.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::affinity::{pin, CLIENT_CPU, SERVER_CPU};
use super::configs::{self, Config, Env};
use super::cpu::{measure_alone, CpuSample};

#[derive(Debug, Clone)]
pub struct Options {
    pub routes: Vec<&'static str>,
    pub rounds: u32,
    pub seconds: u64,
    pub rate: u32,
}

/// One round of one route: the server's CPU per request without and with the idle agent.
#[derive(Debug, Clone)]
pub struct OffOn {
    pub off: CpuSample,
    pub on: CpuSample,
}

impl OffOn {
    pub fn added_pct(&self) -> f64 {
        100.0 * (self.on.total_us() / self.off.total_us().max(1e-9) - 1.0)
    }
}

pub struct Measured {
    pub opts: Options,
    pub samples: BTreeMap<&'static str, Vec<OffOn>>,
}

pub fn measure(env: &Env, opts: &Options) -> Result<Measured> {
    let d = Duration::from_secs(opts.seconds);
    let mut samples: BTreeMap<&'static str, Vec<OffOn>> = BTreeMap::new();
    for round in 1..=opts.rounds {
        let a = configs::start(Config::A, env)?;
        for pid in a.server_pids() {
            pin(pid, SERVER_CPU)?;
        }
        let mut off = BTreeMap::new();
        let mut on = BTreeMap::new();
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for with_agent in order {
            let agent = if with_agent { Some(configs::start_idle_agent(env)?) } else { None };
            if let Some(agent) = &agent {
                pin(agent.pid(), CLIENT_CPU)?;
            }
            for &route in &opts.routes {
                let s = measure_alone(&a, route, opts.rate, d)?;
                eprintln!(
                    "[bench] system-wide round {round}/{} {route:<10} {} {:>7.1} µs/request",
                    opts.rounds,
                    if with_agent { "idle agent" } else { "no agent  " },
                    s.total_us()
                );
                if with_agent { &mut on } else { &mut off }.insert(route, s);
            }
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
        a.stop()?;
        for &route in &opts.routes {
            let (Some(off), Some(on)) = (off.remove(route), on.remove(route)) else { continue };
            samples.entry(route).or_default().push(OffOn { off, on });
        }
    }
    Ok(Measured { opts: opts.clone(), samples })
}
