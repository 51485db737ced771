//! Which CPython build does a running process use?
//!
//! Everything here is read from outside the process: `/proc/PID/maps` (maps.rs) says which file
//! holds the interpreter and where it is mapped, and the ELF file itself (elf.rs, opened through
//! `/proc/PID/root`, so containers and chroots work) gives the symbols, the version, the USDT
//! notes and the segment layout needed to turn file addresses into process addresses and uprobe
//! file offsets. This file decides which mapping is the interpreter and what its file says.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::debug_offsets::COOKIE as DEBUG_COOKIE;
use super::elf::{self, Elf, ElfError, SymbolInfo};
pub use super::elf::{LoadSegment, UsdtProbe};
use super::maps;
pub use super::maps::{parse_maps, ExeId, MapEntry};
pub use super::version::Version;
/// Oldest interpreter the agent reads: the struct offsets it knows start there (versions.rs).
pub use super::versions::MIN_SUPPORTED;

/// Functions we may attach uprobes to. The GC ones are local symbols, so they are only found
/// in builds that kept `.symtab`.
const PROBE_SYMBOLS: &[&str] =
    &["PyEval_RestoreThread", EVAL_FRAME_SYMBOL, "gc_collect_main", "collect_with_callback", "collect"];

const RUNTIME_SYMBOL: &str = "_PyRuntime";
pub const EVAL_FRAME_SYMBOL: &str = "_PyEval_EvalFrameDefault";
/// The type object of code objects: the stack walk checks each frame's code against it.
const CODE_TYPE_SYMBOL: &str = "PyCode_Type";
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
const VERSION_SYMBOL: &str = "Py_Version";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// The interpreter is linked into the executable (Debian's /usr/bin/python3.X, static uWSGI).
    Static,
    /// The interpreter lives in a mapped `libpython3.X.so` (pyenv `--enable-shared`, most embedders).
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The `Py_Version` constant (3.11+): exact, including micro.
    PyVersionSymbol,
    /// The version field of `_Py_DebugOffsets` at the start of `_PyRuntime` (3.13+).
    DebugOffsets,
    /// `libpython3.X.so` / `python3.X`: major.minor only.
    FileName,
}

/// The head of `_Py_DebugOffsets` (3.13+): `char cookie[8]; u64 version; u64 free_threaded;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugOffsetsHeader {
    pub version_hex: u64,
    pub version: Version,
    pub free_threaded: bool,
}

/// What the ELF file alone says, independent of any process.
#[derive(Debug, Clone)]
pub struct ElfFacts {
    pub path: PathBuf,
    pub elf_type: u16,
    /// Link-time address of `_PyRuntime`.
    pub runtime_vaddr: u64,
    pub version: Version,
    pub version_source: VersionSource,
    pub debug_offsets: Option<DebugOffsetsHeader>,
    pub stripped: bool,
    pub usdt: Vec<UsdtProbe>,
    pub symbol_offsets: Vec<(String, u64)>,
    pub segments: Vec<LoadSegment>,
    /// Link-time address of `PyCode_Type`.
    pub code_type_vaddr: Option<u64>,
    /// `_PyEval_EvalFrameDefault` starts with `endbr64` (CET builds such as Debian's 3.13+): a
    /// uprobe on that instruction is about 8× dearer than on the next one.
    pub eval_frame_endbr64: bool,
}

impl ElfFacts {
    /// File offset of a link-time virtual address, if it lies in the file part of a segment.
    pub fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        elf::vaddr_to_offset(&self.segments, vaddr)
    }

    /// Load bias from the lowest mapping of this file: what to add to an ELF virtual address to
    /// get the process address.
    pub fn load_bias(&self, lowest: &MapEntry) -> Option<u64> {
        elf::load_bias(&self.segments, lowest.start, lowest.offset)
    }
}

/// Everything the agent needs about the interpreter of one process.
#[derive(Debug, Clone)]
pub struct PythonBuild {
    pub pid: u32,
    /// The mapped file as the process sees it (/proc/PID/maps path) and as the agent can open it
    /// (through /proc/PID/root/... so containers and chroots work).
    pub mapped_path: PathBuf,
    pub host_path: PathBuf,
    pub kind: Linkage,
    pub version: Version,
    pub version_source: VersionSource,
    /// No `.symtab`: only exported symbols, so no `gc_collect_main` and friends.
    pub stripped: bool,
    /// 3.13+: from `_Py_DebugOffsets.free_threaded`; else false.
    pub free_threaded: bool,
    /// 3.13+: the head of `_Py_DebugOffsets`, when its cookie was found.
    pub debug_offsets: Option<DebugOffsetsHeader>,
    pub usdt: Vec<UsdtProbe>,
    /// Add to an ELF virtual address to get the address in the process.
    pub load_bias: u64,
    /// Address of `_PyRuntime` in the process.
    pub runtime_addr: u64,
    /// File offsets of the functions in [`PROBE_SYMBOLS`] that exist, plus compiler clones of
    /// them (`collect.constprop.0` in 3.8) under their own names.
    pub symbol_offsets: Vec<(String, u64)>,
    pub segments: Vec<LoadSegment>,
    /// Address of `PyCode_Type` in the process.
    pub code_type_addr: Option<u64>,
    pub eval_frame_endbr64: bool,
}

impl PythonBuild {
    pub fn symbol_offset(&self, name: &str) -> Option<u64> {
        self.symbol_offsets.iter().find(|(n, _)| n == name).map(|(_, o)| *o)
    }

    pub fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        elf::vaddr_to_offset(&self.segments, vaddr)
    }

    /// Process address of a file offset (for reading memory near a probe site).
    pub fn offset_to_addr(&self, offset: u64) -> Option<u64> {
        elf::offset_to_vaddr(&self.segments, offset).map(|v| v.wrapping_add(self.load_bias))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("process {pid} does not exist (it may have exited); check the pid")]
    NoSuchProcess { pid: u32 },
    #[error(
        "process {pid} ({exe}) is not a CPython 3 process: it maps no libpython3 and its executable \
         does not define _PyRuntime; point the agent at the Python worker process instead"
    )]
    NotPython { pid: u32, exe: String },
    #[error(
        "{path} looks like a Python library but defines no _PyRuntime symbol (CPython 3.7+ has it); \
         the build is too old or not CPython"
    )]
    NoRuntimeSymbol { path: PathBuf },
    #[error(
        "cannot tell the Python version of {path}: no Py_Version symbol, no _Py_DebugOffsets and no \
         version in the file name; this build is not supported"
    )]
    UnknownVersion { path: PathBuf },
    #[error("{path} is Python {version}; the agent supports Python {}.{} and later: upgrade the interpreter", MIN_SUPPORTED.major, MIN_SUPPORTED.minor)]
    TooOld { path: PathBuf, version: Version },
    #[error("cannot read {path}: {error}; the agent needs root (or CAP_SYS_PTRACE) to read another process's files")]
    Unreadable { path: PathBuf, error: String },
    #[error("{path} is not a 64-bit ELF file the agent can parse: {error}")]
    BadElf { path: PathBuf, error: String },
    #[error(
        "no segment of {path} matches its mapping at {start:#x} (file offset {offset:#x}); the file on \
         disk may have been replaced since the process started: restart the process"
    )]
    NoLoadBias { path: PathBuf, start: u64, offset: u64 },
}

impl Unsupported {
    fn from_elf(path: &Path, e: ElfError) -> Self {
        match e {
            ElfError::Open(e) => Unsupported::Unreadable { path: path.into(), error: e.to_string() },
            ElfError::Parse(e) => Unsupported::BadElf { path: path.into(), error: e.to_string() },
        }
    }
}

/// Identify the Python build that process `pid` runs.
pub fn identify(pid: u32) -> Result<PythonBuild, Unsupported> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let maps_path = proc_dir.join("maps");
    let maps_text = std::fs::read_to_string(&maps_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Unsupported::NoSuchProcess { pid },
        _ => Unsupported::Unreadable { path: maps_path.clone(), error: e.to_string() },
    })?;
    let maps = parse_maps(&maps_text);
    let exe = ExeId::of(&proc_dir);
    identify_from_maps(pid, &proc_dir, &maps, &exe)
}

/// The pure part of [`identify`]: `proc_dir` is only used to open files (root/, map_files/).
pub fn identify_from_maps(
    pid: u32,
    proc_dir: &Path,
    maps: &[MapEntry],
    exe: &ExeId,
) -> Result<PythonBuild, Unsupported> {
    let (lowest, kind, facts) = pick_interpreter(pid, proc_dir, maps, exe)?;
    if facts.version < MIN_SUPPORTED {
        return Err(Unsupported::TooOld { path: facts.path.clone(), version: facts.version });
    }
    let load_bias = facts.load_bias(lowest).ok_or_else(|| Unsupported::NoLoadBias {
        path: facts.path.clone(),
        start: lowest.start,
        offset: lowest.offset,
    })?;
    Ok(PythonBuild {
        pid,
        mapped_path: PathBuf::from(&lowest.path),
        host_path: facts.path.clone(),
        kind,
        version: facts.version,
        version_source: facts.version_source,
        stripped: facts.stripped,
        free_threaded: facts.debug_offsets.is_some_and(|d| d.free_threaded),
        debug_offsets: facts.debug_offsets,
        usdt: facts.usdt,
        load_bias,
        runtime_addr: facts.runtime_vaddr.wrapping_add(load_bias),
        symbol_offsets: facts.symbol_offsets,
        segments: facts.segments,
        code_type_addr: facts.code_type_vaddr.map(|v| v.wrapping_add(load_bias)),
        eval_frame_endbr64: facts.eval_frame_endbr64,
    })
}

/// The executable wins when it defines `_PyRuntime`: a static interpreter that also maps a
/// libpython (pulled in by some extension) resolves every `_PyRuntime` reference to its own
/// copy, so the library's copy is never used.
fn pick_interpreter<'m>(
    pid: u32,
    proc_dir: &Path,
    maps: &'m [MapEntry],
    exe: &ExeId,
) -> Result<(&'m MapEntry, Linkage, ElfFacts), Unsupported> {
    // An unreadable executable (say, replaced on disk) must not hide a libpython that is fine,
    // so its error only surfaces when there is nothing else to look at.
    let mut exe_error = None;
    if let Some(exe_map) = maps::executable(maps, exe) {
        let path = maps::host_path(proc_dir, exe_map);
        match defines_runtime(&path) {
            Ok(true) => return Ok((exe_map, Linkage::Static, identify_file(&path)?)),
            Ok(false) => {}
            Err(e) => exe_error = Some(e),
        }
    }
    if let Some(lib_map) = maps::libpython(maps) {
        let path = maps::host_path(proc_dir, lib_map);
        return Ok((lib_map, Linkage::Shared, identify_file(&path)?));
    }
    if let Some(e) = exe_error {
        return Err(e);
    }
    let exe_name = exe.path.clone().unwrap_or_else(|| "unknown executable".into());
    Err(Unsupported::NotPython { pid, exe: exe_name })
}

/// Parse an ELF file that should hold a CPython 3 interpreter.
pub fn identify_file(path: &Path) -> Result<ElfFacts, Unsupported> {
    let bad = |e: ElfError| Unsupported::from_elf(path, e);
    let cache = elf::open(path).map_err(bad)?;
    let elf = Elf::parse(&cache).map_err(bad)?;

    let wanted = [RUNTIME_SYMBOL, VERSION_SYMBOL, CODE_TYPE_SYMBOL];
    let found = elf.find_symbols(|n| wanted.contains(&n) || is_probe_symbol(n)).map_err(bad)?;
    let runtime = found.get(RUNTIME_SYMBOL).copied();
    let debug_offsets = runtime.and_then(|s| debug_offsets_header(&elf, s.value));
    let (version, version_source) = version_from_symbol(&elf, found.get(VERSION_SYMBOL).copied())
        .map(|v| (v, VersionSource::PyVersionSymbol))
        .or(debug_offsets.map(|d| (d.version, VersionSource::DebugOffsets)))
        .or(super::version::from_file_name(path).map(|v| (v, VersionSource::FileName)))
        .ok_or_else(|| match runtime {
            None => Unsupported::NoRuntimeSymbol { path: path.into() },
            Some(_) => Unsupported::UnknownVersion { path: path.into() },
        })?;
    let Some(runtime) = runtime else {
        // 3.6 and older have no _PyRuntime; say "too old" when we know that is the reason.
        return Err(if version < MIN_SUPPORTED {
            Unsupported::TooOld { path: path.into(), version }
        } else {
            Unsupported::NoRuntimeSymbol { path: path.into() }
        });
    };

    Ok(ElfFacts {
        path: path.into(),
        elf_type: elf.file_type,
        runtime_vaddr: runtime.value,
        version,
        version_source,
        debug_offsets,
        stripped: !elf.has_symtab(),
        usdt: elf.usdt_probes().map_err(bad)?,
        symbol_offsets: probe_offsets(&elf, &found),
        segments: elf.segments.clone(),
        code_type_vaddr: found.get(CODE_TYPE_SYMBOL).map(|s| s.value),
        eval_frame_endbr64: found
            .get(EVAL_FRAME_SYMBOL)
            .and_then(|s| elf.bytes_at_vaddr(s.value, 4))
            .is_some_and(|b| b == ENDBR64),
    })
}

/// Cheap check used on every executable: only `.dynsym` is read, where `_PyRuntime` sits
/// whenever the interpreter is linked in (3.7+ exports it).
fn defines_runtime(path: &Path) -> Result<bool, Unsupported> {
    let cache = elf::open(path).map_err(|e| Unsupported::from_elf(path, e))?;
    let Ok(elf) = Elf::parse(&cache) else {
        return Ok(false); // a script interpreter that is not ELF is simply not Python's host
    };
    let found = elf.find_dynamic_symbols(|n| n == RUNTIME_SYMBOL);
    Ok(found.is_ok_and(|f| f.contains_key(RUNTIME_SYMBOL)))
}

/// `gc_collect_main`, and also clones such as `collect.constprop.0`, which are separate
/// functions the compiler split off and where the work really happens in some builds.
fn is_probe_symbol(name: &str) -> bool {
    PROBE_SYMBOLS.iter().any(|p| name == *p || name.strip_prefix(p).is_some_and(is_clone_suffix))
}

fn is_clone_suffix(rest: &str) -> bool {
    // `.part.N` and `.cold` pieces are not function entries, so they are left out.
    [".constprop.", ".isra."].iter().any(|s| rest.starts_with(s)) && !rest.contains(".cold")
}

/// `Py_Version` is `const unsigned long` = PY_VERSION_HEX, in .rodata (3.11+).
fn version_from_symbol(elf: &Elf<'_>, sym: Option<SymbolInfo>) -> Option<Version> {
    let sym = sym?;
    let len = if sym.size == 4 { 4 } else { 8 };
    let bytes = elf.bytes_at_vaddr(sym.value, len)?;
    let hex = if len == 4 { u64::from(elf.u32_at(bytes)) } else { elf.u64_at(bytes) };
    Some(Version::from_hex(hex)).filter(|v| v.major == 3)
}

/// 3.13+ put `_Py_DebugOffsets` first in `_PyRuntime` (its own `.PyRuntime` section) with
/// initialized data, so the cookie is in the file. Older runtimes start with other fields
/// (or live in .bss), and the cookie check rejects them.
fn debug_offsets_header(elf: &Elf<'_>, runtime_vaddr: u64) -> Option<DebugOffsetsHeader> {
    let bytes = elf.bytes_at_vaddr(runtime_vaddr, 24)?;
    if &bytes[..8] != DEBUG_COOKIE {
        return None;
    }
    let version_hex = elf.u64_at(&bytes[8..16]);
    let version = Version::from_hex(version_hex);
    (version.major == 3).then(|| DebugOffsetsHeader {
        version_hex,
        version,
        free_threaded: elf.u64_at(&bytes[16..24]) != 0,
    })
}

fn probe_offsets(elf: &Elf<'_>, found: &HashMap<String, SymbolInfo>) -> Vec<(String, u64)> {
    let mut names: Vec<&String> = found.keys().filter(|n| is_probe_symbol(n)).collect();
    // Exact names in PROBE_SYMBOLS order, each followed by its clones, for a stable order.
    names.sort_by_key(|n| {
        let base = PROBE_SYMBOLS.iter().position(|p| n.starts_with(p)).unwrap_or(usize::MAX);
        (base, n.len(), (*n).clone())
    });
    names.into_iter().filter_map(|n| Some((n.clone(), elf::vaddr_to_offset(&elf.segments, found[n].value)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::memory::{Memory, ReadMemory};
    use crate::cpython::versions;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Kills only the child it started, also when an assertion fails.
    struct Sleeper(Child);

    impl Sleeper {
        fn start(program: &str, args: &[&str]) -> Option<Self> {
            let child = Command::new(program).args(args).spawn().ok()?;
            Some(Sleeper(child))
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Wait until the interpreter has mapped what `ready` looks for (libpython or .PyRuntime).
    fn wait_for_maps(pid: u32, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
                if ready(&maps) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process {pid} did not map the interpreter in time");
    }

    /// Read another process's memory: proves that load_bias maps file addresses correctly.
    fn read_process(pid: u32, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        Memory::new(pid).read(addr, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        buf
    }

    /// The code at PyEval_RestoreThread in the process equals the file's bytes at its offset.
    fn assert_code_matches(build: &PythonBuild) {
        let offset = build.symbol_offset("PyEval_RestoreThread").expect("PyEval_RestoreThread");
        let addr = build.offset_to_addr(offset).expect("offset maps to an address");
        let in_process = read_process(build.pid, addr, 16);
        let in_file = std::fs::read(&build.host_path).unwrap()[offset as usize..][..16].to_vec();
        assert_eq!(in_process, in_file, "bias {:#x} is wrong", build.load_bias);
    }

    fn pyenv_python(version: &str) -> Option<PathBuf> {
        let minor = version.rsplit_once('.')?.0;
        let path = PathBuf::from(format!("/root/.pyenv/versions/{version}/bin/python{minor}"));
        path.exists().then_some(path)
    }

    fn require_privileged() -> bool {
        std::env::var("PYTRACER_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
    }

    #[test]
    fn pyenv_shared_builds() {
        let versions = [
            ("3.8.18", Version::new(3, 8, 0), VersionSource::FileName),
            ("3.9.18", Version::new(3, 9, 0), VersionSource::FileName),
            ("3.10.13", Version::new(3, 10, 0), VersionSource::FileName),
            ("3.11.7", Version::new(3, 11, 7), VersionSource::PyVersionSymbol),
            ("3.12.1", Version::new(3, 12, 1), VersionSource::PyVersionSymbol),
            ("3.13.0", Version::new(3, 13, 0), VersionSource::PyVersionSymbol),
        ];
        let mut ran = 0;
        for (dir, want_version, want_source) in versions {
            let Some(python) = pyenv_python(dir) else {
                assert!(!require_privileged(), "pyenv Python {dir} is missing");
                eprintln!("SKIPPED: pyenv Python {dir} is not installed");
                continue;
            };
            let proc =
                Sleeper::start(python.to_str().unwrap(), &["-c", "import time; time.sleep(30)"]).expect("start python");
            wait_for_maps(proc.pid(), |m| m.contains("libpython3"));
            let build = identify(proc.pid()).unwrap_or_else(|e| panic!("{dir}: {e}"));
            eprintln!(
                "{dir}: version {} via {:?}, {:?}, bias {:#x}, runtime {:#x}, stripped {}, free-threaded {}, \
                 debug offsets {:?}, symbols {:?}, path {}",
                build.version,
                build.version_source,
                build.kind,
                build.load_bias,
                build.runtime_addr,
                build.stripped,
                build.free_threaded,
                build.debug_offsets,
                build.symbol_offsets,
                build.mapped_path.display(),
            );
            assert_eq!(build.kind, Linkage::Shared, "{dir}");
            assert_eq!(build.version, want_version, "{dir}");
            assert_eq!(build.version_source, want_source, "{dir}");
            assert!(!build.stripped, "{dir}");
            assert_ne!(build.runtime_addr, 0, "{dir}");
            assert!(build.usdt.is_empty(), "{dir}");
            assert!(build.symbol_offset("PyEval_RestoreThread").is_some(), "{dir}");
            assert!(
                build.symbol_offsets.iter().any(|(n, _)| n.starts_with("gc_collect_main") || n.starts_with("collect")),
                "{dir}: no GC function among {:?}",
                build.symbol_offsets
            );
            assert!(build.host_path.starts_with(format!("/proc/{}/", proc.pid())), "{dir}");
            assert_code_matches(&build);
            if versions::for_version(want_version).is_some_and(|s| s.debug_offsets.is_some()) {
                let debug = build.debug_offsets.expect("3.13 has _Py_DebugOffsets");
                assert_eq!(debug.version, want_version);
                assert!(!build.free_threaded);
                assert_eq!(&read_process(proc.pid(), build.runtime_addr, 8), DEBUG_COOKIE);
            } else {
                assert!(build.debug_offsets.is_none(), "{dir}");
            }
            ran += 1;
        }
        eprintln!("checked {ran} pyenv interpreters");
    }

    #[test]
    fn pyenv_too_old() {
        for (dir, minor) in [("3.6.15", 6), ("3.7.16", 7)] {
            let Some(python) = pyenv_python(dir) else {
                eprintln!("SKIPPED: pyenv Python {dir} is not installed");
                continue;
            };
            let proc =
                Sleeper::start(python.to_str().unwrap(), &["-c", "import time; time.sleep(30)"]).expect("start python");
            wait_for_maps(proc.pid(), |m| m.contains("libpython3"));
            let err = identify(proc.pid()).expect_err("too old");
            eprintln!("{dir}: {err}");
            assert!(matches!(err, Unsupported::TooOld { version, .. } if version.minor == minor), "{dir}: {err:?}");
        }
    }

    #[test]
    fn debian_static_build_with_usdt() {
        let python = "/usr/bin/python3.11";
        if !Path::new(python).exists() {
            assert!(!require_privileged(), "{python} is missing (install Debian's python3.11)");
            eprintln!("SKIPPED: {python} is not installed");
            return;
        }
        let proc = Sleeper::start(python, &["-c", "import time; time.sleep(30)"]).expect("start python");
        // The executable is mapped before exec returns; wait for the interpreter to be running.
        wait_for_maps(proc.pid(), |m| m.contains("libc.so"));
        let build = identify(proc.pid()).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "debian: version {} via {:?}, {:?}, bias {:#x}, runtime {:#x}, stripped {}, symbols {:?}",
            build.version,
            build.version_source,
            build.kind,
            build.load_bias,
            build.runtime_addr,
            build.stripped,
            build.symbol_offsets
        );
        for p in &build.usdt {
            eprintln!(
                "  usdt {}:{} pc {:#x} (offset {:#x}) semaphore {:#x} (offset {:#x}) base {:#x} args {:?}",
                p.provider, p.name, p.pc, p.pc_offset, p.semaphore, p.semaphore_offset, p.base, p.args
            );
        }
        assert_eq!(build.kind, Linkage::Static);
        assert!(build.stripped);
        assert_eq!((build.version.major, build.version.minor), (3, 11));
        assert_eq!(build.version_source, VersionSource::PyVersionSymbol);
        for name in ["gc__start", "gc__done"] {
            let probe = build
                .usdt
                .iter()
                .find(|p| p.provider == "python" && p.name == name)
                .unwrap_or_else(|| panic!("no python:{name}"));
            assert_ne!(probe.semaphore, 0, "{name}");
            assert_ne!(probe.semaphore_offset, 0, "{name}");
        }
        assert_code_matches(&build);
        // The semaphore is a u16 counter in .probes; it reads 0 while nothing is attached.
        let sem = &build.usdt[0];
        let value = read_process(proc.pid(), sem.semaphore.wrapping_add(build.load_bias), 2);
        assert_eq!(value, [0, 0]);
    }

    #[test]
    fn non_python_process() {
        let proc = Sleeper::start("sleep", &["30"]).expect("start sleep");
        wait_for_maps(proc.pid(), |m| m.contains("libc.so"));
        let err = identify(proc.pid()).expect_err("sleep is not Python");
        eprintln!("{err}");
        assert!(matches!(err, Unsupported::NotPython { .. }), "{err:?}");
    }

    #[test]
    fn missing_process() {
        // Above the kernel's maximum pid (4194304), so it can never exist.
        let err = identify(4_194_305 + 7).expect_err("no such pid");
        eprintln!("{err}");
        assert!(matches!(err, Unsupported::NoSuchProcess { .. }), "{err:?}");
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn load_bias_from_segments() {
        let facts = ElfFacts {
            path: "x".into(),
            elf_type: object::elf::ET_DYN,
            runtime_vaddr: 0x0054_e540,
            version: Version::new(3, 11, 7),
            version_source: VersionSource::PyVersionSymbol,
            debug_offsets: None,
            stripped: false,
            usdt: vec![],
            symbol_offsets: vec![],
            code_type_vaddr: None,
            eval_frame_endbr64: false,
            segments: vec![
                LoadSegment { vaddr: 0, offset: 0, filesz: 0x853c8, memsz: 0x853c8, flags: 4 },
                LoadSegment { vaddr: 0x86000, offset: 0x86000, filesz: 0x002a_b3e9, memsz: 0x002a_b3e9, flags: 5 },
                LoadSegment { vaddr: 0x0049_e5e0, offset: 0x0049_d5e0, filesz: 0xd0198, memsz: 0x0014_2488, flags: 6 },
            ],
        };
        let entry =
            |start, offset| MapEntry { start, end: start + 0x1000, offset, inode: 1, path: "x".into(), deleted: false };
        assert_eq!(facts.load_bias(&entry(0x7f00_0000_0000, 0)), Some(0x7f00_0000_0000));
        // Starting from the data segment's page (vaddr 0x49e000 ↔ offset 0x49d000).
        assert_eq!(facts.load_bias(&entry(0x7f00_0049_e000, 0x0049_d000)), Some(0x7f00_0000_0000));
        // A non-PIE executable mapped at its link address has no bias.
        assert_eq!(facts.load_bias(&entry(0, 0)), Some(0));
        assert_eq!(facts.vaddr_to_offset(0x0049_e5e8), Some(0x0049_d5e8));
        assert_eq!(facts.vaddr_to_offset(0x005a_0000), None, ".bss has no file bytes");
    }

    #[test]
    fn probe_symbol_names() {
        assert!(is_probe_symbol("collect.constprop.0"));
        assert!(is_probe_symbol("gc_collect_main"));
        assert!(!is_probe_symbol("collections_exec"));
        assert!(!is_probe_symbol("collect.cold"));
    }
}
