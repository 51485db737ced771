//! Which syscalls an untraced server makes per request, counted by strace on all its processes
//! while it is served at a fixed rate: the other half of the share every process pays
//! (syscall_cost.rs times each class of syscall). strace stops the server at every syscall,
//! which slows it but changes no count; it is only ever run on the bench's own server, between
//! measurements.
use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::configs::{Running, TempDir};
use super::cpu::measure_alone;

/// Syscalls per request by name, over `d` at `rate` requests a second to `route`.
pub fn count(a: &Running, route: &str, rate: u32, d: Duration) -> Result<BTreeMap<String, f64>> {
    let dir = TempDir::new()?;
    let out = dir.path().join("strace.txt");
    let mut strace = Command::new("strace");
    strace.args(["-c", "-f", "-q", "-o"]).arg(&out);
    for pid in a.server_pids() {
        strace.arg("-p").arg(pid.to_string());
    }
    let mut child = strace
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run strace (`cargo xtask setup` installs it)")?;
    // strace says nothing once attached; its attaching takes a few ms per process.
    std::thread::sleep(Duration::from_millis(500));
    let served = measure_alone(a, route, rate, d);
    // SIGINT makes strace detach and write its summary.
    // SAFETY: kill on a child this process spawned and has not yet reaped.
    unsafe { libc::kill(libc::pid_t::try_from(child.id())?, libc::SIGINT) };
    let status = child.wait()?;
    let requests = served?.requests;
    if requests == 0 {
        bail!("no request to {route} was answered while strace counted syscalls");
    }
    let summary = fs::read_to_string(&out).with_context(|| format!("strace ({status}) wrote no summary"))?;
    let calls = parse(&summary);
    if calls.is_empty() {
        bail!("strace's summary lists no syscall:\n{summary}");
    }
    Ok(calls.into_iter().map(|(name, n)| (name, n as f64 / requests as f64)).collect())
}

/// Calls by syscall from `strace -c`'s table: "% time, seconds, usecs/call, calls, [errors],
/// syscall", between the dashed rule under the header and the one above the total.
fn parse(summary: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    let mut rows = summary.lines().skip_while(|l| !l.starts_with("------")).skip(1);
    for line in rows.by_ref().take_while(|l| !l.starts_with("------")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let (Some(n), Some(name)) = (fields.get(3).and_then(|n| n.parse().ok()), fields.last()) {
            calls.insert((*name).to_string(), n);
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_calls_by_syscall_with_or_without_errors() {
        let summary = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 30.00    0.003000          10       300           sendto
 20.00    0.002000           6       302       300 accept4
  0.00    0.000000           0         4           close
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000          16       606       300 total
";
        let calls = parse(summary);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls["sendto"], 300);
        assert_eq!(calls["accept4"], 302);
        assert_eq!(calls["close"], 4);
    }
}
