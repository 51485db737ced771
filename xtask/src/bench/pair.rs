//! An untraced Gunicorn (A) and the configuration under test (X) alive at the same time, started
//! together and stopped together: the side-by-side design's unit. Both servers share
//! [`SERVER_CPU`]; the agent and the in-process agents' sinks go to [`CLIENT_CPU`].
//! pytracer's discovery whitelist selects X's server by its `--bind` port (configs.rs), so A is
//! never traced; what the tracer costs every process on the machine, A included, is measured
//! apart (system_wide.rs).
use std::thread;

use anyhow::{anyhow, Result};

use super::affinity::{pin, CLIENT_CPU, SERVER_CPU};
use super::configs::{self, Config, Counts, Env, Running};

pub struct Pair {
    pub a: Running,
    pub x: Running,
}

pub fn start(x: Config, env: &Env) -> Result<Pair> {
    let (a, x) = thread::scope(|s| {
        let a = s.spawn(|| configs::start(Config::A, env));
        let x = configs::start(x, env);
        (a.join().map_err(|_| anyhow!("starting A panicked")).and_then(|r| r), x)
    });
    let pair = Pair { a: a?, x: x? };
    for r in [&pair.a, &pair.x] {
        for pid in r.server_pids() {
            pin(pid, SERVER_CPU)?;
        }
        for pid in r.helper_pids() {
            pin(pid, CLIENT_CPU)?;
        }
    }
    Ok(pair)
}

impl Pair {
    /// Both stopped; X's counts (A has none worth keeping).
    pub fn stop(self) -> Result<Counts> {
        let x = self.x.stop();
        self.a.stop()?;
        x
    }
}
