//! The share of pytracer's cost that every process on the machine pays, traced or not: its
//! syscall tracepoints put every task on the slow syscall path, and their entry programs run
//! (and return early) in every process. The side-by-side A pays it too, so the side-by-side
//! ratio leaves it out; this measures it apart, sequentially: one untraced Gunicorn, its CPU per
//! request with no agent, with pytracer running as deployed but tracking nothing, and with no
//! agent again, back to back in each round: each round's ratio is on / mean(off before, off
//! after) − 1, so a steady drift within the round cancels.
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

/// One round of one route: the server's CPU per request without the idle agent, with it, and
/// without it again.
#[derive(Debug, Clone)]
pub struct OffOn {
    pub off: [CpuSample; 2],
    pub on: CpuSample,
}

impl OffOn {
    /// The mean of the two phases without the agent.
    pub fn off_us(&self, f: fn(&CpuSample) -> f64) -> f64 {
        f64::midpoint(f(&self.off[0]), f(&self.off[1]))
    }

    pub fn added_pct(&self) -> f64 {
        100.0 * (self.on.total_us() / self.off_us(CpuSample::total_us).max(1e-9) - 1.0)
    }

    /// The added system time alone, as a share of the CPU per request without the agent. The
    /// slow syscall path and the early returns run in the kernel, so this is where the share
    /// lands; the user time of phases seconds apart carries mostly this VM's drift (a tenth
    /// either way), which the total's ratio keeps.
    pub fn added_system_pct(&self) -> f64 {
        let off = self.off_us(|s| s.server_system_us);
        100.0 * (self.on.server_system_us - off) / self.off_us(CpuSample::total_us).max(1e-9)
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
        let mut phases: [BTreeMap<&'static str, CpuSample>; 3] = Default::default();
        for (phase, got) in phases.iter_mut().enumerate() {
            let agent = if phase == 1 { Some(configs::start_idle_agent(env)?) } else { None };
            if let Some(agent) = &agent {
                pin(agent.pid(), CLIENT_CPU)?;
            }
            for &route in &opts.routes {
                let s = measure_alone(&a, route, opts.rate, d)?;
                eprintln!(
                    "[bench] system-wide round {round}/{} {route:<10} {} {:>7.1} µs/request",
                    opts.rounds,
                    if agent.is_some() { "idle agent" } else { "no agent  " },
                    s.total_us()
                );
                got.insert(route, s);
            }
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
        a.stop()?;
        let [mut off0, mut on, mut off1] = phases;
        for &route in &opts.routes {
            let (Some(o0), Some(on), Some(o1)) = (off0.remove(route), on.remove(route), off1.remove(route)) else {
                continue;
            };
            samples.entry(route).or_default().push(OffOn { off: [o0, o1], on });
        }
    }
    Ok(Measured { opts: opts.clone(), samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: values with few binary digits")]
    fn the_kernel_time_share_is_the_system_time_added_over_the_total() {
        let off = |user: f64, system: f64| CpuSample {
            requests: 10,
            server_user_us: user,
            server_system_us: system,
            ..Default::default()
        };
        let r = OffOn { off: [off(700.0, 100.0), off(740.0, 140.0)], on: off(660.0, 136.0) };
        // Without: 840 µs a request, 120 of them system; with: 796, 136.
        assert_eq!(r.added_system_pct(), 100.0 * 16.0 / 840.0);
        assert_eq!(r.added_pct(), 100.0 * (796.0 / 840.0 - 1.0));
    }
}
