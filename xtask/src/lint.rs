//! `cargo xtask lint`: the committed eBPF object's stamp, then formatting and clippy (the
//! workspace's lint table, warnings denied) over every crate: the default members, the eBPF crate
//! for its own target, and the fuzz targets' formatting. CI runs it before the tests, so a warning fails the build where it was written.
use anyhow::Result;

use crate::{cmd, paths};

pub fn run() -> Result<()> {
    // A stale committed eBPF object would be embedded by machines without the eBPF toolchain.
    eprintln!("[lint] committed eBPF object {}: its stamp against the sources", ebpf_prebuilt::OBJECT);
    crate::ebpf_object::check_current(&paths::repo_root())?;
    let mut fmt = cmd::cargo();
    fmt.args(["fmt", "--all", "--check"]);
    step(&mut fmt)?;
    // The fuzz crate is its own workspace (cargo-fuzz builds it apart).
    let mut fuzz_fmt = cmd::cargo();
    fuzz_fmt.args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"]);
    step(&mut fuzz_fmt)?;
    let mut clippy = cmd::cargo();
    // The agent's build script would compile the eBPF object; clippy only needs the Rust code.
    clippy.env("AYA_BUILD_SKIP", "1").args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    step(&mut clippy)?;
    // The kernel programs build only for the BPF target, with nightly and build-std (as aya-build
    // builds them), so clippy sees them only there.
    let mut ebpf = std::process::Command::new("rustup");
    ebpf.current_dir(paths::repo_root().join("tracer-ebpf")).args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ]);
    step(&mut ebpf)?;
    eprintln!("[lint] clean");
    Ok(())
}

fn step(c: &mut std::process::Command) -> Result<()> {
    eprintln!("[lint] {}", cmd::describe(c));
    cmd::run(c)
}
