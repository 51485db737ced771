//! Names of code objects: qualified name, file and first line, read with process_vm_readv and
//! cached. A code object can be freed and its address reused by another; the kernel reports each
//! frame's name pointer and first line next to the code address, and the cache key includes
//! them, so a reused address with another function behind it is a miss, not a wrong name.
use std::collections::HashMap;
use std::sync::Arc;

use tracer_common::PyFrame;

use super::layout::FrameLayout;
use super::memory::{Memory, ReadError, ReadMemory};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_qualname` (3.11+), else `co_name`.
    pub qualname: String,
    pub file: String,
    pub first_line: u32,
}

/// Strings longer than this are cut (a path or a name; no real one is near it).
const MAX_STR: u64 = 1024;
/// Entries kept per process before the cache is emptied and refilled.
const MAX_ENTRIES: usize = 16_384;

#[derive(Default)]
pub struct CodeCache {
    by_pid: HashMap<u32, HashMap<PyFrame, Option<Arc<CodeInfo>>>>,
    pub misses: u64,
    pub read_errors: u64,
}

impl CodeCache {
    pub fn resolve(&mut self, pid: u32, frame: &PyFrame, layout: &FrameLayout) -> Option<Arc<CodeInfo>> {
        // One entry per code object, whatever instruction its frame was at.
        let frame = &PyFrame { instr: 0, ..*frame };
        let cache = self.by_pid.entry(pid).or_default();
        if let Some(hit) = cache.get(frame) {
            return hit.clone();
        }
        self.misses += 1;
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        let info = if let Ok(i) = read_code(&Memory::new(pid), frame, layout) {
            Some(Arc::new(i))
        } else {
            self.read_errors += 1;
            None
        };
        cache.insert(*frame, info.clone());
        info
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("code object at {0:#x} changed under the read (freed and reused)")]
    Changed(u64),
    #[error("string object at {0:#x} is not a compact str")]
    NotString(u64),
}

pub fn read_code(mem: &(impl ReadMemory + ?Sized), frame: &PyFrame, l: &FrameLayout) -> Result<CodeInfo, CodeError> {
    let code = frame.code;
    let name_ptr = mem.u64(code + l.code_name)?;
    let mut line = [0u8; 4];
    mem.read(code + l.code_first_line, &mut line)?;
    // What the kernel saw must still be what is there: else the object was freed and reused.
    if name_ptr != frame.name || u32::from_ne_bytes(line) != frame.first_line {
        return Err(CodeError::Changed(code));
    }
    let qualname = match l.code_qualname {
        Some(off) => read_str(mem, mem.u64(code + off)?, l)?,
        None => read_str(mem, name_ptr, l)?,
    };
    let file = read_str(mem, mem.u64(code + l.code_filename)?, l)?;
    Ok(CodeInfo { qualname, file, first_line: frame.first_line })
}

/// A `str` object's text. Compact strings only (every name and path the compiler makes is one).
pub fn read_str(mem: &(impl ReadMemory + ?Sized), obj: u64, l: &FrameLayout) -> Result<String, CodeError> {
    // PyASCIIObject: ob_refcnt, ob_type, length (16), hash (24), state (32).
    let mut head = [0u8; 40];
    mem.read(obj, &mut head)?;
    let len = u64::from_ne_bytes(head[16..24].try_into().unwrap()).min(MAX_STR);
    let state = u32::from_ne_bytes(head[32..36].try_into().unwrap());
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    if !compact || !matches!(kind, 1 | 2 | 4) {
        return Err(CodeError::NotString(obj));
    }
    // Non-ASCII compact strings have the PyCompactUnicodeObject fields before their data:
    // utf8_length and utf8 (and, up to 3.11, wstr_length).
    let data = if ascii {
        obj + l.unicode_ascii_size
    } else {
        obj + l.unicode_ascii_size + if l.unicode_ascii_size == 48 { 24 } else { 16 }
    };
    let mut buf = vec![0u8; (len * u64::from(kind)) as usize];
    mem.read(data, &mut buf)?;
    Ok(match kind {
        1 => buf.iter().map(|&b| b as char).collect(),
        2 => {
            String::from_utf16_lossy(&buf.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect::<Vec<_>>())
        }
        _ => buf.chunks_exact(4).filter_map(|c| char::from_u32(u32::from_ne_bytes(c.try_into().unwrap()))).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::layout;
    use crate::cpython::memory::LocalMemory;

    const BASE: u64 = 0x5500_0000;
    const CODE: u64 = BASE;

    /// A compact str object at `at`: PyASCIIObject's length and state, then the characters.
    fn put_str(mem: &mut LocalMemory, l: &FrameLayout, at: u64, text: &str) {
        let (kind, ascii) = if text.is_ascii() { (1u32, true) } else { (4, false) };
        mem.put_u64(at + 16, text.chars().count() as u64);
        mem.put_u32(at + 32, (kind << 2) | (1 << 5) | (u32::from(ascii) << 6));
        let data = if ascii { at + l.unicode_ascii_size } else { at + l.unicode_ascii_size + 16 };
        if ascii {
            mem.put(data, text.as_bytes());
        } else {
            let wide: Vec<u8> = text.chars().flat_map(|c| u32::from(c).to_ne_bytes()).collect();
            mem.put(data, &wide);
        }
    }

    /// A 3.12 code object with its name, qualified name and file, as the kernel would report it.
    fn fake_code(l: &FrameLayout) -> (LocalMemory, PyFrame) {
        let mut mem = LocalMemory::new(BASE, 0x1000);
        let (name, qualname, file) = (BASE + 0x200, BASE + 0x400, BASE + 0x600);
        put_str(&mut mem, l, name, "handle");
        put_str(&mut mem, l, qualname, "Café.handle");
        put_str(&mut mem, l, file, "/srv/app/views.py");
        mem.put_u64(CODE + l.code_name, name);
        mem.put_u64(CODE + l.code_qualname.unwrap(), qualname);
        mem.put_u64(CODE + l.code_filename, file);
        mem.put_u32(CODE + l.code_first_line, 42);
        (mem, PyFrame { code: CODE, name, first_line: 42, instr: 0 })
    }

    #[test]
    fn reads_a_code_object_from_local_memory() {
        let l = &layout::for_minor(12).unwrap().frames;
        let (mem, frame) = fake_code(l);
        let info = read_code(&mem, &frame, l).unwrap();
        assert_eq!(info, CodeInfo { qualname: "Café.handle".into(), file: "/srv/app/views.py".into(), first_line: 42 });
        assert_eq!(read_str(&mem, frame.name, l).unwrap(), "handle");
    }

    #[test]
    fn a_reused_code_address_is_a_change_not_a_wrong_name() {
        let l = &layout::for_minor(12).unwrap().frames;
        let (mem, frame) = fake_code(l);
        let moved = PyFrame { first_line: 43, ..frame };
        assert!(matches!(read_code(&mem, &moved, l), Err(CodeError::Changed(CODE))));
        assert!(matches!(read_str(&mem, CODE, l), Err(CodeError::NotString(CODE))));
    }
}
