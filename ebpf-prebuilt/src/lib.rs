//! The eBPF object committed at [`OBJECT`], and the stamp at [`STAMP`] that says which sources it
//! was built from, so that a machine without the eBPF toolchain (nightly rust-src, bpf-linker,
//! LLVM) can build the agent, and a stale object is caught rather than embedded.
//!
//! The stamp's `inputs` is a sha256 over everything the eBPF build reads from this repository
//! ([`inputs_digest`]); its `object` is the object's own sha256, so a damaged or half-written
//! object is refused too. The toolchain line is for people: any nightly with bpf-linker makes a
//! valid object, so it is not checked.
mod digest;
mod lockfile;

use sha2::{Digest, Sha256};
use std::{
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

pub use digest::{input_files, inputs_digest};

/// The committed object, relative to the repository root.
pub const OBJECT: &str = "tracer-ebpf/prebuilt/tracer-ebpf.o";
/// Its stamp, relative to the repository root.
pub const STAMP: &str = "tracer-ebpf/prebuilt/tracer-ebpf.o.stamp";
/// What refreshes both.
pub const REFRESH_COMMAND: &str = "cargo xtask ebpf-object";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a stamp written by `{REFRESH_COMMAND}`: no `{key}` line")]
    BadStamp { path: PathBuf, key: &'static str },
    #[error("Cargo.lock has no entry for `{0}`, which the eBPF crate depends on")]
    NotInLock(String),
}

/// What the stamp file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// [`inputs_digest`] of the tree the object was built from.
    pub inputs: String,
    /// sha256 of the object.
    pub object: String,
    /// The toolchain that built it (informational).
    pub toolchain: String,
}

/// Whether the committed object can stand in for a build from source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Current,
    /// No object or no stamp.
    Missing,
    /// The sources changed since the object was built.
    Stale {
        stamped: String,
        tree: String,
    },
    /// The object is not the one the stamp was written for.
    Damaged {
        stamped: String,
        actual: String,
    },
}

impl Status {
    /// One sentence for a person: what is wrong and what to run.
    pub fn explain(&self) -> String {
        match self {
            Status::Current => format!("{OBJECT} matches the eBPF sources"),
            Status::Missing => format!("{OBJECT} or its stamp {STAMP} is missing"),
            Status::Stale { stamped, tree } => format!(
                "{OBJECT} is stale: it was built from eBPF inputs {stamped}, the tree's are {tree} \
                 (tracer-ebpf, tracer-common or their Cargo.lock entries changed)"
            ),
            Status::Damaged { stamped, actual } => {
                format!("{OBJECT} is damaged: its sha256 is {actual}, the stamp {STAMP} says {stamped}")
            }
        }
    }
}

impl Stamp {
    pub fn read(root: &Path) -> Result<Option<Stamp>, Error> {
        let path = root.join(STAMP);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let field = |key: &'static str| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| Error::BadStamp { path: path.clone(), key })
        };
        Ok(Some(Stamp { inputs: field("inputs")?, object: field("object")?, toolchain: field("toolchain")? }))
    }

    fn render(&self) -> String {
        format!(
            "# The eBPF object beside this file, for machines without the eBPF toolchain (tracer-user/build.rs).\n\
             # `inputs` is the sha256 of the eBPF sources it was built from (ebpf-prebuilt/src/digest.rs says\n\
             # which files); `object` is the object's own sha256. Rewritten by `{REFRESH_COMMAND}`.\n\
             inputs {}\nobject {}\ntoolchain {}\n",
            self.inputs, self.object, self.toolchain
        )
    }
}

/// Compares the committed object and stamp with the tree at `root`.
pub fn status(root: &Path) -> Result<Status, Error> {
    Ok(load(root)?.0)
}

/// The committed object's bytes, when it is current.
pub fn current_object(root: &Path) -> Result<Result<Vec<u8>, Status>, Error> {
    let (status, object) = load(root)?;
    Ok(match (status, object) {
        (Status::Current, Some(object)) => Ok(object),
        (status, _) => Err(status),
    })
}

fn load(root: &Path) -> Result<(Status, Option<Vec<u8>>), Error> {
    let Some(stamp) = Stamp::read(root)? else { return Ok((Status::Missing, None)) };
    let path = root.join(OBJECT);
    let object = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Status::Missing, None)),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let actual = sha256_hex(&object);
    if actual != stamp.object {
        return Ok((Status::Damaged { stamped: stamp.object, actual }, None));
    }
    let tree = inputs_digest(root)?;
    if tree != stamp.inputs {
        return Ok((Status::Stale { stamped: stamp.inputs, tree }, None));
    }
    Ok((Status::Current, Some(object)))
}

/// Commits `object`, built from the tree at `root` by `toolchain`, with its stamp.
pub fn write(root: &Path, object: &[u8], toolchain: &str) -> Result<Stamp, Error> {
    let stamp = Stamp { inputs: inputs_digest(root)?, object: sha256_hex(object), toolchain: toolchain.to_owned() };
    let path = root.join(OBJECT);
    let dir = path.parent().expect("OBJECT has a directory");
    fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })?;
    fs::write(&path, object).map_err(|source| Error::Write { path, source })?;
    let path = root.join(STAMP);
    fs::write(&path, stamp.render()).map_err(|source| Error::Write { path, source })?;
    Ok(stamp)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with the eBPF build's inputs only, in a directory of its own.
    fn tree(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("ebpf-prebuilt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (file, text) in [
            ("Cargo.toml", "[workspace]\n[profile.release.package.tracer-ebpf]\ndebug = 2\n"),
            ("Cargo.lock", "version = 4\n\n[[package]]\nname = \"tracer-ebpf\"\nversion = \"0.1.0\"\n"),
            ("tracer-ebpf/Cargo.toml", "[package]\nname = \"tracer-ebpf\"\n"),
            ("tracer-ebpf/src/main.rs", "fn main() {}\n"),
            ("tracer-common/Cargo.toml", "[package]\nname = \"tracer-common\"\n"),
            ("tracer-common/src/lib.rs", "\n"),
        ] {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        root
    }

    #[test]
    fn a_written_object_is_current_until_a_source_changes() {
        let root = tree("stale");
        assert_eq!(status(&root).unwrap(), Status::Missing);
        let stamp = write(&root, b"\x7fELF object", "rustc nightly; bpf-linker").unwrap();
        assert_eq!(Stamp::read(&root).unwrap().as_ref(), Some(&stamp));
        assert_eq!(current_object(&root).unwrap(), Ok(b"\x7fELF object".to_vec()));
        fs::write(root.join("tracer-common/src/lib.rs"), "// changed\n").unwrap();
        let tree_digest = inputs_digest(&root).unwrap();
        assert_ne!(tree_digest, stamp.inputs);
        assert_eq!(status(&root).unwrap(), Status::Stale { stamped: stamp.inputs.clone(), tree: tree_digest });
        // A profile change (the eBPF build is a release build) makes it stale too; another table does not.
        fs::write(root.join("tracer-common/src/lib.rs"), "\n").unwrap();
        assert_eq!(status(&root).unwrap(), Status::Current);
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\n[profile.release.package.tracer-ebpf]\ndebug = 2\n[profile.demo]\n",
        )
        .unwrap();
        assert_eq!(status(&root).unwrap(), Status::Current);
        fs::write(root.join("Cargo.toml"), "[workspace]\n[profile.release]\nlto = true\n").unwrap();
        assert!(matches!(status(&root).unwrap(), Status::Stale { .. }));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_damaged_object_is_refused() {
        let root = tree("damaged");
        let stamp = write(&root, b"\x7fELF object", "rustc nightly; bpf-linker").unwrap();
        fs::write(root.join(OBJECT), b"\x7fELF objec").unwrap();
        assert_eq!(
            current_object(&root).unwrap(),
            Err(Status::Damaged { stamped: stamp.object, actual: sha256_hex(b"\x7fELF objec") })
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
