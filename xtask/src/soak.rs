//! `cargo xtask soak --minutes N`: the long run of tests/tests/soak.rs (ignored by `cargo xtask
//! test`): mixed load against traced Gunicorns for N minutes, then spans against requests,
//! the agent's memory, fd and map slopes and its drops, in bench/out/soak.md.
use anyhow::{bail, Result};

use crate::{cmd, paths, setup};

pub fn run(minutes: f64) -> Result<()> {
    if !(minutes.is_finite() && minutes > 0.0) {
        bail!("--minutes must be a positive number, not {minutes}");
    }
    setup::run()?;
    let bin = cmd::build_release("soak")?;
    let mut test = cmd::cargo();
    test.args(["test", "--release", "-p", "pytracer-tests", "--test", "soak", "--", "--ignored", "--nocapture"])
        .env("PYTRACER_SOAK_MINUTES", minutes.to_string())
        .env("PYTRACER_REQUIRE_PRIVILEGED", "1")
        .env("PYTRACER_BIN", &bin)
        .env("PYTRACER_VENV", paths::venv_dir());
    eprintln!("[soak] {}", cmd::describe(&test));
    cmd::run(&mut test)?;
    eprintln!("[soak] report: {}", paths::repo_root().join("bench/out/soak.md").display());
    Ok(())
}
