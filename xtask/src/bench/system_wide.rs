//! The share of pytracer's cost that every process on the machine pays, traced or not: its
//! syscall tracepoints put every task on the slow syscall path, and their entry programs run
//! (and return early) in every process. The side-by-side A pays it too, so the side-by-side
//! ratio leaves it out; this measures it apart, sequentially: one untraced Gunicorn, its CPU per
//! request with no agent, with pytracer running as deployed but tracking nothing, and with no
//! agent again, back to back in each round: each round's ratio is on / mean(off before, off
//! after) − 1, so a steady drift within the round cancels. That direct measure cannot resolve
//! a share this small on this VM, so each phase also times one syscall of each class
//! (syscall_cost.rs), and the first round counts the server's syscalls per request
//! (syscall_mix.rs): their product is the share, per round.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::affinity::{pin, CLIENT_CPU, SERVER_CPU};
use super::configs::{self, Config, Env};
use super::cpu::{measure_alone, CpuSample};
use super::syscall_cost::{self, Class, Costs};
use super::syscall_mix;

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

/// One round's syscall timings: without the idle agent, with it, and without it again.
#[derive(Debug, Clone)]
pub struct SyscallRound {
    pub off: [Costs; 2],
    pub on: Costs,
}

impl SyscallRound {
    pub fn off_ns(&self, class: Class) -> f64 {
        f64::midpoint(self.off[0][class.index()], self.off[1][class.index()])
    }

    /// What the idle agent adds to one syscall of `class`, ns.
    pub fn added_ns(&self, class: Class) -> f64 {
        self.on[class.index()] - self.off_ns(class)
    }
}

pub struct Measured {
    pub opts: Options,
    pub samples: BTreeMap<&'static str, Vec<OffOn>>,
    pub syscalls: Vec<SyscallRound>,
    /// The untraced server's syscalls per request, by route and name (first round).
    pub mix: BTreeMap<&'static str, BTreeMap<String, f64>>,
}

impl Measured {
    /// The route's syscalls per request by class.
    pub fn per_class(&self, route: &str) -> Costs {
        let mut n = [0.0; 4];
        for (name, calls) in self.mix.get(route).into_iter().flatten() {
            n[Class::of(name).index()] += calls;
        }
        n
    }

    /// Round by round: what the idle agent adds to the route's syscalls of one request, µs.
    pub fn per_syscall_us(&self, route: &str) -> Vec<f64> {
        let n = self.per_class(route);
        self.syscalls
            .iter()
            .map(|costs| Class::ALL.iter().map(|&c| n[c.index()] * costs.added_ns(c)).sum::<f64>() / 1000.0)
            .collect()
    }

    /// [`Measured::per_syscall_us`] as a share of the same round's CPU per request without the
    /// agent.
    pub fn per_syscall_pct(&self, route: &str) -> Vec<f64> {
        let Some(samples) = self.samples.get(route) else { return Vec::new() };
        self.per_syscall_us(route)
            .iter()
            .zip(samples)
            .map(|(us, cpu)| 100.0 * us / cpu.off_us(CpuSample::total_us).max(1e-9))
            .collect()
    }
}

pub fn measure(env: &Env, opts: &Options) -> Result<Measured> {
    let d = Duration::from_secs(opts.seconds);
    let mut samples: BTreeMap<&'static str, Vec<OffOn>> = BTreeMap::new();
    let mut syscalls = Vec::new();
    let mut mix = BTreeMap::new();
    for round in 1..=opts.rounds {
        let a = configs::start(Config::A, env)?;
        for pid in a.server_pids() {
            pin(pid, SERVER_CPU)?;
        }
        let mut phases: [BTreeMap<&'static str, CpuSample>; 3] = Default::default();
        let mut timed: [Costs; 3] = Default::default();
        for (phase, (got, costs)) in phases.iter_mut().zip(&mut timed).enumerate() {
            let agent = if phase == 1 { Some(configs::start_idle_agent(env)?) } else { None };
            if let Some(agent) = &agent {
                pin(agent.pid(), CLIENT_CPU)?;
            }
            // The syscalls are timed before each route and after the last: this VM has spells of
            // a second or more in which every syscall is some 50 ns slower, with or without a
            // tracer, and the fastest of bursts spread over the phase leaves them out.
            let mut fastest = syscall_cost::measure()?;
            for &route in &opts.routes {
                let s = measure_alone(&a, route, opts.rate, d)?;
                eprintln!(
                    "[bench] system-wide round {round}/{} {route:<10} {} {:>7.1} µs/request",
                    opts.rounds,
                    if agent.is_some() { "idle agent" } else { "no agent  " },
                    s.total_us()
                );
                got.insert(route, s);
                fastest = syscall_cost::fastest(fastest, syscall_cost::measure()?);
            }
            *costs = fastest;
            eprintln!(
                "[bench] system-wide round {round}/{} syscalls ns: {}",
                opts.rounds,
                Class::ALL.map(|c| format!("{} {:.1}", c.representative(), costs[c.index()])).join(", ")
            );
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
        if round == 1 {
            for &route in &opts.routes {
                mix.insert(route, syscall_mix::count(&a, route, MIX_RATE, d)?);
            }
        }
        a.stop()?;
        let [off_costs0, on_costs, off_costs1] = timed;
        syscalls.push(SyscallRound { off: [off_costs0, off_costs1], on: on_costs });
        let [mut off0, mut on, mut off1] = phases;
        for &route in &opts.routes {
            let (Some(o0), Some(on), Some(o1)) = (off0.remove(route), on.remove(route), off1.remove(route)) else {
                continue;
            };
            samples.entry(route).or_default().push(OffOn { off: [o0, o1], on });
        }
    }
    Ok(Measured { opts: opts.clone(), samples, syscalls, mix })
}

/// Requests a second while strace counts syscalls: strace makes each syscall a few µs dearer, so
/// fewer than the timed phases' keep the server from queueing.
pub const MIX_RATE: u32 = 100;

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

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: values with few binary digits")]
    fn the_per_syscall_share_is_each_class_count_times_its_added_time() {
        let cpu = |us: f64| CpuSample { requests: 10, server_user_us: us, ..Default::default() };
        let mix = [("getppid", 1.0), ("shutdown", 3.0), ("close", 1.0), ("recvfrom", 2.0), ("sendto", 0.5)];
        let m = Measured {
            opts: Options { routes: vec!["/"], rounds: 1, seconds: 1, rate: 1 },
            samples: BTreeMap::from([("/", vec![OffOn { off: [cpu(1000.0), cpu(1000.0)], on: cpu(1000.0) }])]),
            // Added: 50 ns with no program, 200 with an entry one, 150 with an exit one, 300 with both.
            syscalls: vec![SyscallRound { off: [[100.0; 4], [200.0; 4]], on: [200.0, 350.0, 300.0, 450.0] }],
            mix: BTreeMap::from([("/", mix.iter().map(|&(n, c)| (n.to_string(), c)).collect())]),
        };
        assert_eq!(m.per_class("/"), [4.0, 1.0, 2.0, 0.5]);
        let ns = 4.0 * 50.0 + 200.0 + 2.0 * 150.0 + 0.5 * 300.0;
        assert_eq!(m.per_syscall_us("/"), vec![ns / 1000.0]);
        assert_eq!(m.per_syscall_pct("/"), vec![100.0 * ns / 1000.0 / 1000.0]);
    }
}
