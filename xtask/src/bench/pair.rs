//! An untraced Gunicorn (A) and the configuration under test (X) alive at the same time, started
//! one after the other and stopped together: the side-by-side design's unit. Both servers share
//! [`SERVER_CPU`]; the agent and the in-process agents' sinks go to [`CLIENT_CPU`].
//! pytracer's discovery whitelist selects X's server by its `--bind` port (configs.rs), so A is
//! never traced; what the tracer costs every process on the machine, A included, is measured
//! apart (system_wide.rs).
use anyhow::Result;

use super::affinity::{pin, CLIENT_CPU, SERVER_CPU};
use super::configs::{self, Config, Counts, Env, Running};

pub struct Pair {
    pub a: Running,
    pub x: Running,
}

/// Starts of X a pair tries. An in-process agent's start-up can fail on its own: once the Instana
/// sensor did not announce to its stub within 30 s, in the last round of a full run, which ended
/// 45 minutes of measurement with nothing written.
const X_ATTEMPTS: u32 = 3;

pub fn start(x: Config, env: &Env) -> Result<Pair> {
    // One after the other: each picks free ports by binding port 0 and letting go, which two
    // starts at once could both be given.
    let a = configs::start(Config::A, env)?;
    let mut attempt = 1;
    let started = loop {
        match configs::start(x, env) {
            Ok(r) => break r,
            Err(e) if attempt < X_ATTEMPTS => {
                eprintln!("[bench] {} did not start (attempt {attempt} of {X_ATTEMPTS}): {e:#}; again", x.label());
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let pair = Pair { a, x: started };
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
