//! Which CPython build does a running process use?
//!
//! Everything here is read from outside the process: `/proc/PID/maps` says which file holds the
//! interpreter and where it is mapped, and the ELF file itself (opened through `/proc/PID/root`,
//! so containers and chroots work) gives the symbols, the version, the USDT notes and the segment
//! layout needed to turn file addresses into process addresses and uprobe file offsets.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{Endianness, ReadCache, ReadRef};

/// Oldest interpreter the agent reads: the struct offsets it knows start at 3.8.
pub const MIN_SUPPORTED: Version = Version::new(3, 8, 0);

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
const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    /// 0 when only major.minor is known (see [`VersionSource::FileName`]).
    pub micro: u8,
}

impl Version {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Self {
        Version { major, minor, micro }
    }

    /// Decode `PY_VERSION_HEX`: major<<24 | minor<<16 | micro<<8 | level<<4 | serial.
    pub fn from_hex(hex: u64) -> Self {
        Version::new((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8)
    }

    /// Ignores micro: layouts change between minor releases, not micro ones.
    pub fn at_least(&self, major: u8, minor: u8) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

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

/// One SystemTap SDT probe from `.note.stapsdt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    /// The argument spec, e.g. `-8@%r12`.
    pub args: String,
    /// File virtual address of the probe site, already corrected for prelink (`.stapsdt.base`).
    pub pc: u64,
    /// File virtual address of the semaphore (a u16 counter), 0 if the probe has none.
    pub semaphore: u64,
    /// Link-time address of `.stapsdt.base` recorded in the note.
    pub base: u64,
    /// File offset of `pc`: what a uprobe attaches at.
    pub pc_offset: u64,
    /// File offset of the semaphore (uprobe `ref_ctr_offset`), 0 if none.
    pub semaphore_offset: u64,
}

/// A PT_LOAD segment: the mapping between file offsets and virtual addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
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
        vaddr_to_offset(&self.segments, vaddr)
    }

    /// Load bias from the lowest mapping of this file: what to add to an ELF virtual address to
    /// get the process address. The mapping's file offset tells which segment it starts.
    pub fn load_bias(&self, lowest: &MapEntry) -> Option<u64> {
        let page = page_size();
        let seg = self.segments.iter().find(|s| {
            let first_page = s.offset - s.offset % page;
            lowest.offset >= first_page && lowest.offset < s.offset + s.filesz.max(1)
        })?;
        // Within a segment, file offset and vaddr move together; the page rounding the loader
        // applies keeps that (p_vaddr ≡ p_offset mod page), so the identity holds at map start too.
        let vaddr_at_map_start = seg.vaddr.wrapping_sub(seg.offset).wrapping_add(lowest.offset);
        Some(lowest.start.wrapping_sub(vaddr_at_map_start))
    }
}

/// One line of /proc/PID/maps that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub inode: u64,
    /// As the process sees it; without the ` (deleted)` suffix.
    pub path: String,
    pub deleted: bool,
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
        vaddr_to_offset(&self.segments, vaddr)
    }

    /// Process address of a file offset (for reading memory near a probe site).
    pub fn offset_to_addr(&self, offset: u64) -> Option<u64> {
        offset_to_vaddr(&self.segments, offset).map(|v| v.wrapping_add(self.load_bias))
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

/// How to recognize the executable's mapping: by path, or by inode when the path differs
/// (overlay file systems, namespaces).
#[derive(Debug, Clone, Default)]
pub struct ExeId {
    pub path: Option<String>,
    pub inode: Option<u64>,
}

impl ExeId {
    fn of(proc_dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let link = proc_dir.join("exe");
        ExeId {
            path: std::fs::read_link(&link).ok().map(|p| strip_deleted(&p.to_string_lossy()).0.to_string()),
            inode: std::fs::metadata(&link).ok().map(|m| m.ino()),
        }
    }

    fn matches(&self, entry: &MapEntry) -> bool {
        self.path.as_deref() == Some(entry.path.as_str()) || (entry.inode != 0 && self.inode == Some(entry.inode))
    }
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
    if let Some(exe_map) = lowest_mapping(maps, |m| exe.matches(m)) {
        let path = host_path(proc_dir, exe_map);
        match defines_runtime(&path) {
            Ok(true) => return Ok((exe_map, Linkage::Static, identify_file(&path)?)),
            Ok(false) => {}
            Err(e) => exe_error = Some(e),
        }
    }
    if let Some(lib_map) = lowest_mapping(maps, |m| basename(&m.path).starts_with("libpython3")) {
        let path = host_path(proc_dir, lib_map);
        return Ok((lib_map, Linkage::Shared, identify_file(&path)?));
    }
    if let Some(e) = exe_error {
        return Err(e);
    }
    let exe_name = exe.path.clone().unwrap_or_else(|| "unknown executable".into());
    Err(Unsupported::NotPython { pid, exe: exe_name })
}

/// The first mapping (lowest address, as maps is sorted) of the first file that `want` accepts.
fn lowest_mapping(maps: &[MapEntry], want: impl Fn(&MapEntry) -> bool) -> Option<&MapEntry> {
    let first = maps.iter().find(|m| want(m))?;
    maps.iter().filter(|m| m.path == first.path).min_by_key(|m| m.start)
}

/// Where the agent can open a file the process has mapped. /proc/PID/root/<path> works for
/// chroots and containers; /proc/PID/map_files/ also works when the file was deleted or the maps
/// path is not valid under the process's root. The inode from maps picks the right one.
fn host_path(proc_dir: &Path, entry: &MapEntry) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let rooted = proc_dir.join("root").join(entry.path.trim_start_matches('/'));
    let by_map = proc_dir.join("map_files").join(format!("{:x}-{:x}", entry.start, entry.end));
    let candidates = [rooted.clone(), by_map];
    let same_file = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| entry.inode == 0 || m.ino() == entry.inode);
    candidates.into_iter().find(same_file).unwrap_or(rooted)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn strip_deleted(path: &str) -> (&str, bool) {
    match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    }
}

/// Parse /proc/PID/maps, keeping only file-backed mappings.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<MapEntry> {
    // address perms offset dev inode path — the path may contain spaces, so split off five
    // fields and keep the rest.
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.trim_start();
    if !path.starts_with('/') {
        return None; // anonymous, [heap], [vdso], ...
    }
    let (start, end) = fields[0].split_once('-')?;
    let (path, deleted) = strip_deleted(path);
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(fields[2], 16).ok()?,
        inode: fields[4].parse().ok()?,
        path: path.to_string(),
        deleted,
    })
}

/// Parse an ELF file that should hold a CPython 3 interpreter.
pub fn identify_file(path: &Path) -> Result<ElfFacts, Unsupported> {
    let file = open(path)?;
    let cache = ReadCache::new(file);
    let elf = Elf::parse(path, &cache)?;
    let bad = |e: object::read::Error| Unsupported::BadElf { path: path.into(), error: e.to_string() };

    let wanted = [RUNTIME_SYMBOL, VERSION_SYMBOL, CODE_TYPE_SYMBOL];
    let found = elf.find_symbols(|n| wanted.contains(&n) || is_probe_symbol(n)).map_err(bad)?;
    let runtime = found.get(RUNTIME_SYMBOL).copied();
    let debug_offsets = runtime.and_then(|s| elf.debug_offsets(s.value));
    let (version, version_source) = elf
        .version_from_symbol(found.get(VERSION_SYMBOL).copied())
        .map(|v| (v, VersionSource::PyVersionSymbol))
        .or(debug_offsets.map(|d| (d.version, VersionSource::DebugOffsets)))
        .or(version_from_file_name(path).map(|v| (v, VersionSource::FileName)))
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
        elf_type: elf.elf_type,
        runtime_vaddr: runtime.value,
        version,
        version_source,
        debug_offsets,
        stripped: !elf.has_section_type(elf::SHT_SYMTAB),
        usdt: elf.usdt_probes().map_err(bad)?,
        symbol_offsets: elf.probe_offsets(&found),
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
    let file = open(path)?;
    let cache = ReadCache::new(file);
    let Ok(elf) = Elf::parse(path, &cache) else {
        return Ok(false); // a script interpreter that is not ELF is simply not Python's host
    };
    let found = elf.find_symbols_in(elf::SHT_DYNSYM, |n| n == RUNTIME_SYMBOL);
    Ok(found.is_ok_and(|f| f.contains_key(RUNTIME_SYMBOL)))
}

fn open(path: &Path) -> Result<File, Unsupported> {
    File::open(path).map_err(|e| Unsupported::Unreadable { path: path.into(), error: e.to_string() })
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

/// `libpython3.11.so.1.0`, `libpython3.6m.so`, `python3.13`, `python3.13t` → major.minor.
pub fn version_from_file_name(path: &Path) -> Option<Version> {
    let name = path.file_name()?.to_str()?;
    let after = &name[name.find("python")? + "python".len()..];
    let (major, rest) = after.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Version::new(major.parse().ok()?, minor.parse().ok()?, 0))
}

fn vaddr_to_offset(segments: &[LoadSegment], vaddr: u64) -> Option<u64> {
    segments.iter().find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz).map(|s| s.offset + (vaddr - s.vaddr))
}

fn offset_to_vaddr(segments: &[LoadSegment], offset: u64) -> Option<u64> {
    segments.iter().find(|s| offset >= s.offset && offset < s.offset + s.filesz).map(|s| s.vaddr + (offset - s.offset))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[derive(Debug, Clone, Copy)]
struct SymbolInfo {
    value: u64,
    size: u64,
}

type Header = elf::FileHeader64<Endianness>;
type Data<'a> = &'a ReadCache<File>;

/// A parsed ELF64 file read on demand: only headers, symbol tables, notes and the few bytes we
/// look at are read, not the whole (often 30 MB with DWARF) file.
struct Elf<'a> {
    data: Data<'a>,
    endian: Endianness,
    elf_type: u16,
    sections: &'a [elf::SectionHeader64<Endianness>],
    section_names: &'a [u8],
    segments: Vec<LoadSegment>,
}

impl<'a> Elf<'a> {
    fn parse(path: &Path, data: Data<'a>) -> Result<Self, Unsupported> {
        let bad = |e: object::read::Error| Unsupported::BadElf { path: path.into(), error: e.to_string() };
        let header = Header::parse(data).map_err(bad)?;
        let endian = header.endian().map_err(bad)?;
        let table = header.sections(endian, data).map_err(bad)?;
        let sections: &[elf::SectionHeader64<Endianness>] = table.iter().as_slice();
        let shstrndx = header.shstrndx(endian, data).map_err(bad)? as usize;
        let section_names = match sections.get(shstrndx) {
            Some(s) => s.data(endian, data).map_err(bad)?,
            None => &[][..],
        };
        let segments = header
            .program_headers(endian, data)
            .map_err(bad)?
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .map(|p| LoadSegment {
                vaddr: p.p_vaddr(endian),
                offset: p.p_offset(endian),
                filesz: p.p_filesz(endian),
                memsz: p.p_memsz(endian),
                flags: p.p_flags(endian),
            })
            .collect();
        Ok(Elf { data, endian, elf_type: header.e_type(endian), sections, section_names, segments })
    }

    fn has_section_type(&self, sh_type: u32) -> bool {
        self.sections.iter().any(|s| s.sh_type(self.endian) == sh_type)
    }

    fn section_named(&self, name: &str) -> Option<&'a elf::SectionHeader64<Endianness>> {
        self.sections
            .iter()
            .find(|s| c_str_at(self.section_names, s.sh_name(self.endian) as usize) == Some(name.as_bytes()))
    }

    /// Defined symbols whose names `want` accepts, from `.dynsym` then `.symtab` (first wins).
    fn find_symbols(&self, want: impl Fn(&str) -> bool + Copy) -> object::read::Result<HashMap<String, SymbolInfo>> {
        let mut found = self.find_symbols_in(elf::SHT_DYNSYM, want)?;
        for (name, info) in self.find_symbols_in(elf::SHT_SYMTAB, want)? {
            found.entry(name).or_insert(info);
        }
        Ok(found)
    }

    fn find_symbols_in(
        &self,
        sh_type: u32,
        want: impl Fn(&str) -> bool,
    ) -> object::read::Result<HashMap<String, SymbolInfo>> {
        let mut found = HashMap::new();
        let Some(table) = self.sections.iter().find(|s| s.sh_type(self.endian) == sh_type) else {
            return Ok(found);
        };
        // Read the whole table and its strings at once: per-symbol reads would be one syscall
        // each, and .symtab has 10k+ entries.
        let symbols: &[elf::Sym64<Endianness>] = table.data_as_array(self.endian, self.data)?;
        let strings = match self.sections.get(table.sh_link(self.endian) as usize) {
            Some(s) => s.data(self.endian, self.data)?,
            None => return Ok(found),
        };
        for sym in symbols {
            if sym.st_shndx(self.endian) == elf::SHN_UNDEF || sym.st_value(self.endian) == 0 {
                continue;
            }
            let Some(name) = c_str_at(strings, sym.st_name(self.endian) as usize) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if want(name) && !found.contains_key(name) {
                let info = SymbolInfo { value: sym.st_value(self.endian), size: sym.st_size(self.endian) };
                found.insert(name.to_string(), info);
            }
        }
        Ok(found)
    }

    /// Bytes stored in the file at a link-time address (None for .bss and unmapped addresses).
    fn bytes_at_vaddr(&self, vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let offset = vaddr_to_offset(&self.segments, vaddr)?;
        let seg = self.segments.iter().find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz)?;
        if vaddr + len > seg.vaddr + seg.filesz {
            return None;
        }
        self.data.read_bytes_at(offset, len).ok()
    }

    fn u64_at(&self, bytes: &[u8]) -> u64 {
        let raw: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
        match self.endian {
            Endianness::Little => u64::from_le_bytes(raw),
            Endianness::Big => u64::from_be_bytes(raw),
        }
    }

    /// `Py_Version` is `const unsigned long` = PY_VERSION_HEX, in .rodata (3.11+).
    fn version_from_symbol(&self, sym: Option<SymbolInfo>) -> Option<Version> {
        let sym = sym?;
        let len = if sym.size == 4 { 4 } else { 8 };
        let bytes = self.bytes_at_vaddr(sym.value, len)?;
        let hex = if len == 4 {
            let raw: [u8; 4] = bytes.try_into().ok()?;
            u64::from(match self.endian {
                Endianness::Little => u32::from_le_bytes(raw),
                Endianness::Big => u32::from_be_bytes(raw),
            })
        } else {
            self.u64_at(bytes)
        };
        Some(Version::from_hex(hex)).filter(|v| v.major == 3)
    }

    /// 3.13+ put `_Py_DebugOffsets` first in `_PyRuntime` (its own `.PyRuntime` section) with
    /// initialized data, so the cookie is in the file. Older runtimes start with other fields
    /// (or live in .bss), and the cookie check rejects them.
    fn debug_offsets(&self, runtime_vaddr: u64) -> Option<DebugOffsetsHeader> {
        let bytes = self.bytes_at_vaddr(runtime_vaddr, 24)?;
        if &bytes[..8] != DEBUG_COOKIE {
            return None;
        }
        let version_hex = self.u64_at(&bytes[8..16]);
        let version = Version::from_hex(version_hex);
        (version.major == 3).then(|| DebugOffsetsHeader {
            version_hex,
            version,
            free_threaded: self.u64_at(&bytes[16..24]) != 0,
        })
    }

    fn probe_offsets(&self, found: &HashMap<String, SymbolInfo>) -> Vec<(String, u64)> {
        let mut names: Vec<&String> = found.keys().filter(|n| is_probe_symbol(n)).collect();
        // Exact names in PROBE_SYMBOLS order, each followed by its clones, for a stable order.
        names.sort_by_key(|n| {
            let base = PROBE_SYMBOLS.iter().position(|p| n.starts_with(p)).unwrap_or(usize::MAX);
            (base, n.len(), (*n).clone())
        });
        names.into_iter().filter_map(|n| Some((n.clone(), vaddr_to_offset(&self.segments, found[n].value)?))).collect()
    }

    fn usdt_probes(&self) -> object::read::Result<Vec<UsdtProbe>> {
        let Some(section) = self.section_named(".note.stapsdt") else {
            return Ok(Vec::new());
        };
        // Prelink moves sections but not the addresses inside notes; the difference between
        // .stapsdt.base's current address and the one a note recorded corrects both pc and
        // semaphore (SystemTap's UserSpaceProbeImplementation, libbpf usdt.c).
        let base_now = self.section_named(".stapsdt.base").map(|s| s.sh_addr(self.endian));
        let mut probes = Vec::new();
        let Some(mut notes) = section.notes(self.endian, self.data)? else {
            return Ok(probes);
        };
        while let Some(note) = notes.next()? {
            if note.name() != b"stapsdt" || note.n_type(self.endian) != 3 {
                continue; // NT_STAPSDT = 3
            }
            if let Some(probe) = self.parse_stapsdt(note.desc(), base_now) {
                probes.push(probe);
            }
        }
        Ok(probes)
    }

    fn parse_stapsdt(&self, desc: &[u8], base_now: Option<u64>) -> Option<UsdtProbe> {
        if desc.len() < 24 {
            return None;
        }
        let (mut pc, base, mut semaphore) =
            (self.u64_at(&desc[0..8]), self.u64_at(&desc[8..16]), self.u64_at(&desc[16..24]));
        if let Some(now) = base_now.filter(|_| base != 0) {
            let delta = now.wrapping_sub(base);
            pc = pc.wrapping_add(delta);
            if semaphore != 0 {
                semaphore = semaphore.wrapping_add(delta);
            }
        }
        let mut strings = desc[24..].split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned());
        let provider = strings.next()?;
        let name = strings.next()?;
        let args = strings.next().unwrap_or_default();
        Some(UsdtProbe {
            provider,
            name,
            args,
            pc,
            semaphore,
            base,
            pc_offset: vaddr_to_offset(&self.segments, pc)?,
            semaphore_offset: if semaphore == 0 { 0 } else { vaddr_to_offset(&self.segments, semaphore)? },
        })
    }
}

fn c_str_at(table: &[u8], start: usize) -> Option<&[u8]> {
    let rest = table.get(start..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
        // SAFETY: both iovecs describe valid buffers of `len` bytes (remote is checked by the kernel).
        let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &raw const local, 1, &raw const remote, 1, 0) };
        assert_eq!(n, len as isize, "process_vm_readv at {addr:#x}: {}", io::Error::last_os_error());
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
            if want_version.at_least(3, 13) {
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
    fn maps_lines() {
        let text = "\
7f1c2a000000-7f1c2a086000 r--p 00000000 fd:01 1234 /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
7f1c2a086000-7f1c2a332000 r-xp 00086000 fd:01 1234 /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
55d0-55e0 r--p 00000000 fd:01 99 /srv/my app/python3.13 (deleted)
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[1].offset, 0x86000);
        assert_eq!(maps[1].inode, 1234);
        assert_eq!(maps[2].path, "/srv/my app/python3.13");
        assert!(maps[2].deleted);
    }

    #[test]
    fn load_bias_from_segments() {
        let facts = ElfFacts {
            path: "x".into(),
            elf_type: elf::ET_DYN,
            runtime_vaddr: 0x54e540,
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
                LoadSegment { vaddr: 0x86000, offset: 0x86000, filesz: 0x2ab3e9, memsz: 0x2ab3e9, flags: 5 },
                LoadSegment { vaddr: 0x49e5e0, offset: 0x49d5e0, filesz: 0xd0198, memsz: 0x142488, flags: 6 },
            ],
        };
        let entry =
            |start, offset| MapEntry { start, end: start + 0x1000, offset, inode: 1, path: "x".into(), deleted: false };
        assert_eq!(facts.load_bias(&entry(0x7f00_0000_0000, 0)), Some(0x7f00_0000_0000));
        // Starting from the data segment's page (vaddr 0x49e000 ↔ offset 0x49d000).
        assert_eq!(facts.load_bias(&entry(0x7f00_0049_e000, 0x49d000)), Some(0x7f00_0000_0000));
        // A non-PIE executable mapped at its link address has no bias.
        assert_eq!(facts.load_bias(&entry(0, 0)), Some(0));
        assert_eq!(facts.vaddr_to_offset(0x49e5e8), Some(0x49d5e8));
        assert_eq!(facts.vaddr_to_offset(0x5a0000), None, ".bss has no file bytes");
    }

    #[test]
    fn names_and_versions() {
        let v = |s: &str| version_from_file_name(Path::new(s));
        assert_eq!(v("/usr/lib/libpython3.11.so.1.0"), Some(Version::new(3, 11, 0)));
        assert_eq!(v("libpython3.6m.so.1.0"), Some(Version::new(3, 6, 0)));
        assert_eq!(v("/usr/bin/python3.13t"), Some(Version::new(3, 13, 0)));
        assert_eq!(v("/usr/bin/uwsgi"), None);
        assert_eq!(Version::from_hex(0x030d05f0), Version::new(3, 13, 5));
        assert!(is_probe_symbol("collect.constprop.0"));
        assert!(is_probe_symbol("gc_collect_main"));
        assert!(!is_probe_symbol("collections_exec"));
        assert!(!is_probe_symbol("collect.cold"));
    }
}
