//! One wrk run: fixed concurrency and duration, with the reporting script's JSON line parsed and
//! wrk's own CPU time measured (to show it did not starve the server).
use std::{collections::BTreeMap, os::unix::process::CommandExt, process::Command, time::Duration};

use anyhow::{bail, Context, Result};

use crate::paths;

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_s: f64,
    pub errors: u64,
    pub non_2xx: u64,
    /// Percentile (as written by the script, e.g. "99.9") → latency in microseconds.
    pub percentiles_us: BTreeMap<String, u64>,
    /// CPU seconds wrk itself used.
    pub cpu_s: f64,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.duration_s.max(1e-9)
    }

    pub fn p(&self, p: &str) -> f64 {
        self.percentiles_us.get(p).copied().unwrap_or(0) as f64 / 1000.0
    }
}

pub fn run(port: u16, route: &str, connections: u32, duration: Duration) -> Result<WrkResult> {
    spawn(port, route, connections, duration, None)?.wait()
}

/// A wrk started and not yet waited for: two run side by side (bench::pairs).
pub struct Spawned {
    child: std::process::Child,
}

/// wrk against `port`, on `cpu` only if given (set before it starts its thread, which inherits it).
pub fn spawn(port: u16, route: &str, connections: u32, duration: Duration, cpu: Option<usize>) -> Result<Spawned> {
    let script = paths::repo_root().join("bench/wrk_report.lua");
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{}s", duration.as_secs()),
        "--timeout",
        "10s",
        "-s",
    ])
    .arg(&script)
    .arg(format!("http://127.0.0.1:{port}{route}"))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if let Some(cpu) = cpu {
        // SAFETY: the hook only calls sched_setaffinity, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if super::affinity::pin_raw(0, cpu) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let child = cmd.spawn().context("cannot start wrk (it is installed by `cargo xtask setup`)")?;
    Ok(Spawned { child })
}

impl Spawned {
    pub fn wait(mut self) -> Result<WrkResult> {
        let pid = self.child.id() as libc::pid_t;
        let mut stdout = self.child.stdout.take().expect("piped");
        // wait4 gives wrk's own rusage (std's wait does not); wrk prints far less than a pipe
        // holds, so it cannot block on its output meanwhile.
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and usage are valid out-pointers.
        if unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) } < 0 {
            bail!("waiting for wrk: {}", std::io::Error::last_os_error());
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text)?;
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("WRK_JSON "))
            .with_context(|| format!("wrk printed no report (exit status {status}):\n{text}"))?;
        let mut r = parse(line)?;
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        r.cpu_s = secs(usage.ru_utime) + secs(usage.ru_stime);
        Ok(r)
    }
}

fn parse(line: &str) -> Result<WrkResult> {
    #[derive(serde::Deserialize)]
    struct Report {
        requests: u64,
        duration_us: f64,
        errors: u64,
        non_2xx: u64,
        percentiles_us: BTreeMap<String, u64>,
    }
    let r: Report = serde_json::from_str(line).with_context(|| format!("bad wrk report: {line}"))?;
    Ok(WrkResult {
        requests: r.requests,
        duration_s: r.duration_us / 1e6,
        errors: r.errors,
        non_2xx: r.non_2xx,
        percentiles_us: r.percentiles_us,
        cpu_s: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "both sides are exact: integers divided by a power of ten")]
    fn parses_the_scripts_line() {
        let r = parse(r#"{"requests":1200,"duration_us":6000000,"errors":0,"non_2xx":3,"mean_us":4000.5,"percentiles_us":{"50":3900,"99.9":12000}}"#).unwrap();
        assert_eq!((r.requests, r.errors, r.non_2xx), (1200, 0, 3));
        assert_eq!(r.rps(), 200.0);
        assert_eq!(r.p("99.9"), 12.0);
    }
}
