//! `cargo xtask test`: set-up, release build, then every test of the default members.
use anyhow::Result;
use std::env;

use crate::{cmd, paths, setup};

pub fn run(extra_args: &[String]) -> Result<()> {
    setup::run()?;
    // The end-to-end tests run the release agent, so build it (and its eBPF object) first.
    let bin = cmd::build_release("test")?;
    let mut test = cmd::cargo();
    test.args(["test", "--release", "--"])
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
    eprintln!("[test] {}", cmd::describe(&test));
    cmd::run(&mut test)
}
