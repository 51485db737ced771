//! Builds the eBPF object (tracer-ebpf) for the bpfel target with nightly and bpf-linker, so a plain
//! `cargo build` builds everything. With AYA_BUILD_SKIP=1 (clippy, `cargo check` on a machine
//! without the eBPF toolchain) an empty object is left in its place and the agent refuses to start.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let object = out_dir.join("tracer-ebpf");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !object.exists() {
            fs::write(&object, [])?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../tracer-ebpf");
    let root = root.canonicalize()?;
    let package =
        aya_build::Package { name: "tracer-ebpf", root_dir: root.to_str().expect("utf-8 path"), ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
