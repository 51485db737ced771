//! Puts the eBPF object (tracer-ebpf, for the bpfel target) where the agent embeds it, so a plain
//! `cargo build` builds everything:
//! - with the eBPF toolchain (bpf-linker on PATH, or PYTRACER_EBPF_FROM_SOURCE=1): built from
//!   source with nightly and bpf-linker (aya-build);
//! - without it (or with PYTRACER_EBPF_FROM_SOURCE=0): the committed object
//!   tracer-ebpf/prebuilt/tracer-ebpf.o, only if its stamp says it was built from the sources in
//!   the tree (crate ebpf-prebuilt); a stale one fails the build, naming what to run. This spares a
//!   newcomer's first build LLVM, bpf-linker and rust-src (about 4 minutes).
//!
//! With AYA_BUILD_SKIP=1 (clippy, `cargo check` on a machine without the eBPF toolchain) an empty
//! object is left in its place and the agent refuses to start.
use anyhow::{bail, Context};
use std::{env, fs, path::PathBuf};

const FROM_SOURCE: &str = "PYTRACER_EBPF_FROM_SOURCE";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let object = out_dir.join("tracer-ebpf");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo:rerun-if-env-changed={FROM_SOURCE}");
    if skip {
        if !object.exists() {
            fs::write(&object, [])?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let repo = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("..").canonicalize()?;
    let root = repo.join("tracer-ebpf");
    if from_source()? {
        let package = aya_build::Package {
            name: "tracer-ebpf",
            root_dir: root.to_str().expect("utf-8 path"),
            ..Default::default()
        };
        return aya_build::build_ebpf([package], aya_build::Toolchain::default());
    }
    // Whether bpf-linker is on PATH is not tracked (PATH differs between callers and would rebuild
    // the agent each time); a change to these files reruns this script, which then looks again.
    for input in ["tracer-ebpf", "tracer-common", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", repo.join(input).display());
    }
    match ebpf_prebuilt::current_object(&repo).context("cannot check the committed eBPF object")? {
        Ok(bytes) => {
            fs::write(&object, bytes).with_context(|| format!("cannot write {}", object.display()))?;
            println!(
                "cargo:warning=using the committed eBPF object {} (no bpf-linker on PATH, or {FROM_SOURCE}=0; \
                 {FROM_SOURCE}=1 builds it from source)",
                ebpf_prebuilt::OBJECT
            );
            Ok(())
        }
        Err(status) => bail!(
            "{}. Building the agent needs a current eBPF object: either install the eBPF toolchain with \
             `cargo xtask setup` (LLVM, bpf-linker, nightly rust-src), and the object is built from source, \
             or refresh the committed object with `{}` (which needs that toolchain too) and commit {}",
            status.explain(),
            ebpf_prebuilt::REFRESH_COMMAND,
            std::path::Path::new(ebpf_prebuilt::OBJECT).parent().expect("a directory").display(),
        ),
    }
}

/// PYTRACER_EBPF_FROM_SOURCE=1 or 0 decides; unset, whether bpf-linker is on PATH.
fn from_source() -> anyhow::Result<bool> {
    match env::var(FROM_SOURCE).as_deref() {
        Ok("1" | "true") => Ok(true),
        Ok("0" | "false") => Ok(false),
        Ok("") | Err(env::VarError::NotPresent) => {
            let path = env::var_os("PATH").unwrap_or_default();
            Ok(env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()))
        }
        Ok(other) => {
            bail!("{FROM_SOURCE}={other}: expected 1 (build the eBPF object from source) or 0 (use the committed one)")
        }
        Err(e) => bail!("{FROM_SOURCE}: {e}"),
    }
}
