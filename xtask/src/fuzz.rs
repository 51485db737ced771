//! `cargo xtask fuzz`: each cargo-fuzz target (fuzz/fuzz_targets) for a bounded time, seeded
//! from its corpus in fuzz/corpus (kept in the repo). New inputs a run finds go to a scratch
//! corpus under fuzz/target, so a run does not add thousands of files to the repository; copy the
//! ones worth keeping by hand (`cargo fuzz cmin` first). Fails on a crash and says where
//! libFuzzer left the input.
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{cmd, paths};

const TARGETS: [&str; 4] = ["http_connection", "uwsgi_request", "db_client", "mysql_client"];

pub fn run(seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let dir = paths::repo_root().join("fuzz");
    let mut rows = Vec::new();
    for target in TARGETS {
        let started = Instant::now();
        eprintln!("[fuzz] {target} for {seconds}s");
        // libFuzzer writes what it finds into the first corpus directory and only reads the rest.
        let scratch = dir.join("target").join("corpus").join(target);
        std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
        let out = Command::new("cargo")
            .current_dir(&dir)
            .args(["+nightly", "fuzz", "run", target])
            .arg(&scratch)
            .arg(dir.join("corpus").join(target))
            .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"])
            // The fuzzers exercise the agent's parsers only; they need no eBPF object.
            .env("AYA_BUILD_SKIP", "1")
            .stdin(Stdio::null())
            .output()
            .context("cannot run `cargo fuzz`")?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or_else(|| "?".into(), |v| v.trim().to_string());
        if !out.status.success() {
            let artifact = log.lines().find(|l| l.contains("Test unit written to")).unwrap_or("");
            bail!("fuzz target {target} failed after {runs} runs: {artifact}\n{}", tail(&log, 40));
        }
        rows.push((target, runs, started.elapsed().as_secs()));
    }
    println!("{:<18} {:>12} {:>8} {:>8}", "target", "executions", "crashes", "seconds");
    for (t, runs, secs) in rows {
        println!("{t:<18} {runs:>12} {:>8} {secs:>8}", 0);
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    if paths::find_program("cargo-fuzz").is_some() {
        return Ok(());
    }
    eprintln!("[fuzz] installing cargo-fuzz");
    cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
