//! `cargo xtask test`: set-up, release build, then every test of the default members.
use anyhow::{bail, Context, Result};
use std::env;
use std::io::{Read, Write};
use std::process::Stdio;

use crate::{cmd, paths, setup};

pub fn run(extra_args: &[String]) -> Result<()> {
    setup::run()?;
    // The end-to-end tests run the release agent, so build it (and its eBPF object) first.
    let bin = cmd::build_release("test")?;
    // The agent's image, for the DaemonSet test (seconds when only the binary changed).
    crate::image::build(&bin)?;
    let mut test = cmd::cargo();
    // --no-fail-fast: every test binary runs even after one failed, so one log shows every
    // failure; cargo still exits non-zero at the end when any failed.
    test.args(["test", "--release", "--no-fail-fast", "--"])
        // The end-to-end tests start servers and trace them; running them side by side would mix
        // their processes and ports.
        .arg("--test-threads=1")
        .args(extra_args)
        .env("PYTRACER_BIN", &bin)
        .env("PYTRACER_VENV", paths::venv_dir());
    match env::var("PYTRACER_REQUIRE_PRIVILEGED") {
        Ok(v) => eprintln!("[test] PYTRACER_REQUIRE_PRIVILEGED={v} (passed through)"),
        Err(_) => eprintln!(
            "[test] privileged tests that cannot run are skipped; PYTRACER_REQUIRE_PRIVILEGED=1 makes them fail"
        ),
    }
    let line = cmd::describe(&test);
    eprintln!("[test] {line}");

    // The test binaries' output (their `test result:` lines included) is cargo's stdout: pass it
    // on as it comes, and keep it to add the results up.
    let mut child = test.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot start `{line}`"))?;
    let mut pipe = child.stdout.take().context("cargo's stdout")?;
    let mut out = std::io::stdout();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading cargo's output"),
        };
        out.write_all(&chunk[..n])?;
        out.flush()?;
        seen.extend_from_slice(&chunk[..n]);
    }
    let status = child.wait()?;
    let totals = Totals::of(&String::from_utf8_lossy(&seen));
    println!("{} passed, {} failed", totals.passed, totals.failed);
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    if totals.failed > 0 {
        bail!("{} tests failed", totals.failed);
    }
    Ok(())
}

/// Passed and failed tests, summed over every `test result:` line (one per test binary).
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn of(output: &str) -> Totals {
        let mut t = Totals::default();
        // e.g. `test result: FAILED. 11 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; ...`
        for line in output.lines().filter_map(|l| l.trim_start().strip_prefix("test result: ")) {
            for part in line.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => t.passed += n,
                    "failed" => t.failed += n,
                    _ => {}
                }
            }
        }
        t
    }
}
