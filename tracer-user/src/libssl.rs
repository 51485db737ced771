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
    /// By symbol name (those of [`SYMBOLS`] the file defines; always `SSL_read`).
    pub functions: HashMap<&'static str, Function>,
}

#[derive(Debug, thiserror::Error)]
pub enum LibsslError {
    #[error("cannot read /proc/{pid}/maps: {error}")]
    Maps { pid: u32, error: std::io::Error },
}

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
    let mut functions = HashMap::new();
    for name in SYMBOLS {
        let Some(sym) = found.get(name) else { continue };
        let Some(entry) = elf::vaddr_to_offset(&elf.segments, sym.value) else { continue };
        let endbr = elf.bytes_at_vaddr(sym.value, 4).is_some_and(|b| b == ENDBR64);
        functions.insert(name, Function { entry, after_endbr64: if endbr { entry + 4 } else { entry } });
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
        assert_eq!(libs[0].functions.len(), SYMBOLS.len());
        assert_eq!(libs, again, "the second look comes from the cache");
        assert_eq!(finder.seen.values().filter(|f| f.is_some()).count(), 1);
    }
}
