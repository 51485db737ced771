//! `cargo xtask faults`: the fault suite of tests/tests/faults.rs (ignored by `cargo xtask test`):
//! each fault against a traced Gunicorn, its results table written to bench/faults.md.
use anyhow::Result;

use crate::{cmd, paths, setup};

pub fn run() -> Result<()> {
    setup::run()?;
    let bin = cmd::build_release("faults")?;
    let report = paths::repo_root().join("bench/faults.md");
    let mut test = cmd::cargo();
    test.args(["test", "--release", "-p", "pytracer-tests", "--test", "faults", "--", "--ignored", "--nocapture"])
        .env("PYTRACER_FAULTS_REPORT", &report)
        .env("PYTRACER_REQUIRE_PRIVILEGED", "1")
        .env("PYTRACER_BIN", &bin)
        .env("PYTRACER_VENV", paths::venv_dir());
    eprintln!("[faults] {}", cmd::describe(&test));
    cmd::run(&mut test)?;
    eprintln!("[faults] report: {}", report.display());
    Ok(())
}
