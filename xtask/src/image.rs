//! `cargo xtask image`: the agent's container image, localhost/pytracer:latest, built offline from
//! deploy/Containerfile with the release agent built on this machine.
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{cmd, paths, podman};

pub const IMAGE: &str = "localhost/pytracer:latest";

pub fn run() -> Result<()> {
    crate::setup::run()?;
    let bin = cmd::build_agent("image")?;
    build(&bin)
}

/// The image around `bin` (a release agent); `cargo xtask test` calls it too, for
/// tests/tests/daemonset.rs.
pub fn build(bin: &Path) -> Result<()> {
    let root = paths::repo_root();
    let context = root.join("target/image-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    fs::copy(bin, context.join("pytracer")).context("copying the agent into the build context")?;
    fs::copy(root.join("config/pytracer.yaml"), context.join("pytracer.yaml"))?;
    let mut build = Command::new("podman");
    build
        .args(["build", "--runtime", "runc", "--build-arg", &format!("BASE_IMAGE={}", podman::BASE_IMAGE)])
        .arg("-f")
        .arg(root.join("deploy/Containerfile"))
        .args(["-t", IMAGE])
        .arg(&context)
        .stdin(Stdio::null());
    eprintln!("[image] {}", cmd::describe(&build));
    cmd::run(&mut build)?;
    let size = cmd::stdout(Command::new("podman").args(["image", "inspect", "--format", "{{.Size}}", IMAGE]))?;
    eprintln!("[image] {IMAGE}: {} bytes", size.trim());
    Ok(())
}
