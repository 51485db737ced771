//! `cargo xtask ebpf-object`: builds the eBPF object from source and commits it with its stamp
//! (crate ebpf-prebuilt), for machines without the eBPF toolchain.
//!
//! The build is the agent's own build script with PYTRACER_EBPF_FROM_SOURCE=1, run by `cargo
//! check` (which runs build scripts but compiles no agent code), so the committed object is made
//! exactly as a build from source makes it.
use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{cmd, paths};

pub fn run() -> Result<()> {
    let root = paths::repo_root();
    let mut check = cmd::cargo();
    check
        .env("PYTRACER_EBPF_FROM_SOURCE", "1")
        .env_remove("AYA_BUILD_SKIP")
        .args(["check", "--package", "tracer-user", "--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped());
    eprintln!("[ebpf-object] {}", cmd::describe(&check));
    let out = check.output().with_context(|| format!("cannot start `{}`", cmd::describe(&check)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): the eBPF toolchain is needed (`cargo xtask setup` installs it)",
            cmd::describe(&check),
            out.status
        );
    }
    let out_dir = build_script_out_dir(&String::from_utf8_lossy(&out.stdout))?;
    let built = out_dir.join("tracer-ebpf");
    let object = std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    if object.is_empty() {
        bail!("{} is empty: the build script skipped the eBPF build", built.display());
    }
    let stamp = ebpf_prebuilt::write(&root, &object, &toolchain()?)?;
    eprintln!(
        "[ebpf-object] wrote {} ({} bytes, sha256 {}) and {} (inputs {}); commit both",
        ebpf_prebuilt::OBJECT,
        object.len(),
        stamp.object,
        ebpf_prebuilt::STAMP,
        stamp.inputs
    );
    Ok(())
}

/// tracer-user's OUT_DIR, from cargo's `build-script-executed` message (sent for a fresh build
/// script too).
fn build_script_out_dir(messages: &str) -> Result<PathBuf> {
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_agent = message["reason"] == "build-script-executed"
            && message["package_id"].as_str().is_some_and(|id| id.contains("tracer-user"));
        if let (true, Some(dir)) = (is_agent, message["out_dir"].as_str()) {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("cargo reported no build-script-executed message for tracer-user")
}

/// The nightly rustc and bpf-linker that built the object, for the stamp's reader.
fn toolchain() -> Result<String> {
    let rustc = cmd::stdout(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))?;
    let linker = paths::find_program("bpf-linker").context("bpf-linker not found")?;
    let linker = cmd::stdout(Command::new(linker).arg("--version"))?;
    Ok(format!("{}; {}", rustc.trim(), linker.trim()))
}

/// Fails, naming the command, unless the committed object matches the sources in `root`.
pub fn check_current(root: &Path) -> Result<()> {
    match ebpf_prebuilt::status(root)? {
        ebpf_prebuilt::Status::Current => Ok(()),
        status => bail!(
            "{}: run `{}` and commit {}",
            status.explain(),
            ebpf_prebuilt::REFRESH_COMMAND,
            Path::new(ebpf_prebuilt::OBJECT).parent().expect("a directory").display()
        ),
    }
}
