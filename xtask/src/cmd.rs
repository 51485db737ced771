//! Running commands, with the command line and exit status in every error.
use anyhow::{bail, Context, Result};
use std::{
    env,
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::paths;

/// `cargo` of the toolchain that runs xtask, with cargo's bin directory in PATH so that the eBPF
/// build (tracer-user's build.rs) finds bpf-linker even when the caller's PATH lacks it.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(paths::repo_root());
    if let Some(bin) = paths::cargo_bin_dir() {
        cmd.env("PATH", paths::path_with(&[bin]));
    }
    cmd
}

/// Runs `cargo build --release` at the repository root (the whole workspace): the eBPF object
/// and target/release/pytracer.
pub fn build_release(tag: &str) -> Result<PathBuf> {
    build(tag, &["build", "--release"])
}

/// The agent's package only: the tests' and xtask's own dependencies are not the agent's, and a
/// newcomer's first `cargo xtask demo` should not wait for them. (`cargo xtask test` builds the
/// whole workspace instead: its `cargo test` would otherwise build the agent again, with the
/// workspace's unified features.)
pub fn build_agent(tag: &str) -> Result<PathBuf> {
    build(tag, &["build", "--release", "-p", "tracer-user"])
}

fn build(tag: &str, args: &[&str]) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(args);
    eprintln!("[{tag}] {}", describe(&build));
    run(&mut build)?;
    let bin = paths::pytracer_bin();
    if !bin.exists() {
        bail!("`{}` succeeded but {} is missing", describe(&build), bin.display());
    }
    Ok(bin)
}

/// Runs with inherited stdio; fails unless the command exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs and returns stdout; fails unless the command exits 0, quoting its stderr.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", describe(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command as a shell line, with the variables it sets (PATH only when changed in front).
pub fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let value = value.to_string_lossy();
        if key == "PATH" {
            // Only the prepended part is interesting; the rest is the caller's PATH.
            let old = env::var("PATH").unwrap_or_default();
            match value.strip_suffix(old.as_str()).filter(|p| !p.is_empty()) {
                Some(front) => parts.push(format!("PATH={front}$PATH")),
                None if value == old => {}
                None => parts.push(format!("PATH={value}")),
            }
        } else {
            parts.push(format!("{}={value}", key.to_string_lossy()));
        }
    }
    let program = cmd.get_program();
    // The toolchain's full path to cargo is noise; it is the cargo that runs xtask.
    if env::var_os("CARGO").is_some_and(|cargo| cargo == program) {
        parts.push("cargo".into());
    } else {
        parts.push(program.to_string_lossy().into_owned());
    }
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
