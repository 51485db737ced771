//! Where a process's OpenSSL is: the mapped object that defines `SSL_read` (the system's
//! libssl.so.3, or OpenSSL linked statically into the interpreter or into `_ssl*.so`), and the
//! file offsets of the functions the TLS probes go on. Read from /proc/PID/maps, each file opened
//! through /proc/PID/root (a container's or chroot's file, not the host's).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cpython::elf::{self, Elf, ElfError};
use crate::cpython::maps::{host_path, parse_maps, MapEntry};

/// The functions probed, by their symbol names. `SSL_read` is the one that says "this is OpenSSL".
pub const SSL_SET_FD: &str = "SSL_set_fd";
pub const SSL_READ: &str = "SSL_read";
pub const SSL_READ_EX: &str = "SSL_read_ex";
pub const SSL_WRITE: &str = "SSL_write";
pub const SSL_WRITE_EX: &str = "SSL_write_ex";
const SYMBOLS: [&str; 5] = [SSL_SET_FD, SSL_READ, SSL_READ_EX, SSL_WRITE, SSL_WRITE_EX];

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// One function's probe site in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// The file offset of the function's entry (what a uretprobe goes on).
    pub entry: u64,
    /// The entry, past its endbr64 when it has one: a uprobe on endbr64 itself costs several
    /// times more on this kind of machine.
    pub after_endbr64: u64,
}

/// OpenSSL's functions in one mapped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Where the agent opens it (under /proc/PID/root).
    pub path: PathBuf,
    /// By symbol name (those of [`SYMBOLS`] the file defines; always `SSL_read`), and, when
    /// found, [`WRITE_INTERNAL`] and [`READ_INTERNAL`].
    pub functions: HashMap<&'static str, Function>,
}

/// OpenSSL 3.0's `ssl_write_internal(SSL *, const void *, size_t, size_t *written)` and
/// `ssl_read_internal(SSL *, void *, size_t, size_t *readbytes)`: what SSL_write(_ex) and
/// SSL_read(_ex) all call, with the _ex functions' own arguments and 1 for success. They are not
/// exported, so they are found from SSL_write_ex's and SSL_read_ex's code. Probing them instead of
/// the four public functions halves the probes, and their first instruction is a `push` the
/// kernel emulates, where the public ones start with a `sub` it must single-step (measured here:
/// ~25 µs per SSL call single-stepped).
pub const WRITE_INTERNAL: &str = "ssl_write_internal";
pub const READ_INTERNAL: &str = "ssl_read_internal";

/// The whole body of OpenSSL 3.0's SSL_write_ex and SSL_read_ex up to the clamp of the result:
/// `sub $8,%rsp; call <internal>; xor %edx,%edx; test %eax,%eax; cmovs %edx,%eax`. Any other shape
/// (OpenSSL 3.2+'s SSL_write_ex2, other compilers) keeps the public functions probed.
const EX_PREFIX: [u8; 4] = [0x48, 0x83, 0xec, 0x08];
const EX_SUFFIX: [u8; 7] = [0x31, 0xd2, 0x85, 0xc0, 0x0f, 0x48, 0xc2];
/// How far into SSL_write/SSL_read their call of the internal function is looked for.
const CALL_SCAN: u64 = 160;

/// The callee of an `_ex` function of the 3.0 shape at `vaddr`, as a link-time address.
fn ex_callee(elf: &Elf<'_>, vaddr: u64) -> Option<u64> {
    let code = elf.bytes_at_vaddr(vaddr, 16)?;
    if code[..4] != EX_PREFIX || code[4] != 0xe8 || code[9..16] != EX_SUFFIX {
        return None;
    }
    let rel = i32::from_le_bytes(code[5..9].try_into().ok()?);
    Some((vaddr + 9).wrapping_add_signed(i64::from(rel)))
}

/// Whether the function at `vaddr` calls `target` (a `call rel32`) within its first bytes.
fn calls(elf: &Elf<'_>, vaddr: u64, target: u64) -> bool {
    let Some(code) = elf.bytes_at_vaddr(vaddr, CALL_SCAN) else { return false };
    (0..code.len().saturating_sub(4)).any(|i| {
        code[i] == 0xe8
            && i32::from_le_bytes(code[i + 1..i + 5].try_into().expect("4 bytes"))
                .checked_add(i32::try_from(i + 5).unwrap_or(i32::MAX))
                .is_some_and(|rel| (vaddr.wrapping_add_signed(i64::from(rel))) == target)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LibsslError {
    #[error("cannot read /proc/{pid}/maps: {error}")]
    Maps { pid: u32, error: std::io::Error },
}

/// Files remembered by [`Finder`] (a process maps ~50-100).
const MAX_FILES_SEEN: usize = 8192;

/// A file's identity across processes: each reaches it through its own /proc/PID/root.
pub type FileId = (u64, u64);

/// Files already looked at, by identity: whether (and where) each holds OpenSSL. A library
/// mapped by every worker is parsed once.
#[derive(Default)]
pub struct Finder {
    seen: HashMap<FileId, Option<HashMap<&'static str, Function>>>,
    /// Files that could not be parsed (counted, not retried).
    pub unreadable: u64,
}

impl Finder {
    /// The OpenSSL copies `pid` has mapped now (usually one; a process may map libssl and an
    /// `_ssl` with its own static copy). Empty when it has none yet: `ssl` is imported lazily.
    pub fn find(&mut self, pid: u32) -> Result<Vec<Library>, LibsslError> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let text = std::fs::read_to_string(proc_dir.join("maps")).map_err(|error| LibsslError::Maps { pid, error })?;
        let maps = parse_maps(&text);
        let mut found = Vec::new();
        let mut done: Vec<&str> = Vec::new();
        for entry in &maps {
            if done.contains(&entry.path.as_str()) {
                continue;
            }
            done.push(&entry.path);
            if let Some(lib) = self.look_at(&proc_dir, entry) {
                found.push(lib);
            }
        }
        Ok(found)
    }

    fn look_at(&mut self, proc_dir: &Path, entry: &MapEntry) -> Option<Library> {
        use std::os::unix::fs::MetadataExt;
        let path = host_path(proc_dir, entry);
        let meta = std::fs::metadata(&path).ok()?;
        let id = (meta.dev(), meta.ino());
        let functions = if let Some(known) = self.seen.get(&id) {
            known.clone()
        } else {
            let functions = functions_in(&path).unwrap_or_else(|e| {
                self.unreadable += 1;
                log::debug!("{}: not searched for OpenSSL: {e}", path.display());
                None
            });
            if self.seen.len() >= MAX_FILES_SEEN {
                // Every file any traced process ever mapped: forgotten wholesale now and then
                // rather than kept forever (the next look parses again).
                self.seen.clear();
            }
            self.seen.insert(id, functions.clone());
            functions
        }?;
        Some(Library { path, functions })
    }
}

/// The probed functions `path` defines, if it defines `SSL_read`; None for any other file.
pub fn functions_in(path: &Path) -> Result<Option<HashMap<&'static str, Function>>, ElfError> {
    let cache = elf::open(path)?;
    let Ok(elf) = Elf::parse(&cache) else { return Ok(None) }; // not an ELF file (a locale archive)
    let found = elf.find_symbols(|n| SYMBOLS.contains(&n))?;
    if !found.contains_key(SSL_READ) {
        return Ok(None);
    }
    let site = |vaddr: u64| {
        let entry = elf::vaddr_to_offset(&elf.segments, vaddr)?;
        let endbr = elf.bytes_at_vaddr(vaddr, 4).is_some_and(|b| b == ENDBR64);
        Some(Function { entry, after_endbr64: if endbr { entry + 4 } else { entry } })
    };
    let mut functions = HashMap::new();
    for name in SYMBOLS {
        if let Some(f) = found.get(name).and_then(|sym| site(sym.value)) {
            functions.insert(name, f);
        }
    }
    for (ex, plain, internal) in [(SSL_WRITE_EX, SSL_WRITE, WRITE_INTERNAL), (SSL_READ_EX, SSL_READ, READ_INTERNAL)] {
        let (Some(ex_sym), Some(plain_sym)) = (found.get(ex), found.get(plain)) else { continue };
        // Only when the plain function goes through it too: then the internal one sees all.
        if let Some(callee) = ex_callee(&elf, ex_sym.value).filter(|&c| calls(&elf, plain_sym.value, c)) {
            if let Some(f) = site(callee) {
                functions.insert(internal, f);
            }
        }
    }
    Ok(Some(functions))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system's libssl, if this machine has it (Debian's libssl3): its functions are found.
    #[test]
    fn finds_the_functions_of_the_system_libssl() {
        let path = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if !path.exists() {
            return;
        }
        let f = functions_in(path).unwrap().expect("libssl defines SSL_read");
        // Debian bookworm's OpenSSL 3.0: both internal functions found, each starting with a push.
        for name in [WRITE_INTERNAL, READ_INTERNAL] {
            let code = std::fs::read(path).unwrap();
            let at = usize::try_from(f[name].entry).unwrap();
            assert!(code[at] == 0x41 || (0x50..=0x57).contains(&code[at]), "{name} starts with a push: {:x}", code[at]);
        }
        for name in SYMBOLS {
            let site = f[name];
            assert!(site.after_endbr64 == site.entry || site.after_endbr64 == site.entry + 4, "{name}: {site:?}");
        }
        assert_eq!(functions_in(Path::new("/bin/sh")).unwrap(), None, "a program without OpenSSL");
    }

    /// A Python that imported `ssl` maps the system's libssl: found, once, with every function.
    #[test]
    fn finds_the_libssl_a_python_process_mapped() {
        if !Path::new("/usr/bin/python3").exists() {
            return;
        }
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import ssl, sys; print(flush=True); sys.stdin.read()"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let mut finder = Finder::default();
        let libs = finder.find(child.id()).unwrap();
        let again = finder.find(child.id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(libs.len(), 1, "{libs:?}");
        assert!(libs[0].path.to_string_lossy().contains("libssl.so"), "{:?}", libs[0].path);
        assert_eq!(libs[0].functions.len(), SYMBOLS.len() + 2, "{:?}", libs[0].functions.keys());
        assert_eq!(libs, again, "the second look comes from the cache");
        assert_eq!(finder.seen.values().filter(|f| f.is_some()).count(), 1);
    }
}
