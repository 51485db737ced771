//! Line numbers of frames: where each version keeps a frame's current instruction, and the
//! decoding of each version's line table, read from the code object once and cached.
//!
//! - 3.8, 3.9: `co_lnotab`, (bytecode bytes, signed line) increments; `f_lasti` counts bytes.
//! - 3.10: `co_linetable`, (bytes, signed line or -128 for none) per range; `f_lasti` counts
//!   code units (2 bytes).
//! - 3.11+: `co_linetable`, the location table of CPython's Objects/locations.md, in code
//!   units; the frame holds a pointer to its instruction (`prev_instr`, `instr_ptr` from 3.13),
//!   counted from `co_code_adaptive`.
use std::collections::HashMap;
use std::sync::Arc;

use tracer_common::PyFrame;

use super::memory::{Memory, ReadError, ReadMemory};

/// How a version's frames and code objects give a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLayout {
    /// Offset in the frame of its current instruction: `f_lasti` (an int) or a pointer.
    pub frame_instr: u64,
    pub instr_is_ptr: bool,
    /// offsetof(PyCodeObject, co_lnotab / co_linetable): a bytes object.
    pub code_line_table: u64,
    /// offsetof(PyCodeObject, co_code_adaptive): where the instructions start (3.11+).
    pub code_adaptive: u64,
    pub format: LineFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    Lnotab,
    Linetable310,
    Locations,
}

/// From the pyenv builds' DWARF (3.8–3.12) and `_Py_DebugOffsets` (3.13–3.15,
/// `interpreter_frame.instr_ptr`, `code_object.linetable`, `code_object.co_code_adaptive`).
pub fn for_minor(minor: u8) -> Option<LineLayout> {
    let (frame_instr, instr_is_ptr, code_line_table, code_adaptive, format) = match minor {
        8 | 9 => (104, false, 120, 0, LineFormat::Lnotab),
        10 => (96, false, 120, 0, LineFormat::Linetable310),
        11 => (56, true, 136, 184, LineFormat::Locations),
        12 => (56, true, 136, 192, LineFormat::Locations),
        13 => (56, true, 136, 200, LineFormat::Locations),
        14 | 15 => (56, true, 136, 208, LineFormat::Locations),
        _ => return None,
    };
    Some(LineLayout { frame_instr, instr_is_ptr, code_line_table, code_adaptive, format })
}

/// A decoded line table: `(start, end, line)` ranges in bytecode bytes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTable {
    ranges: Vec<(u32, u32, Option<u32>)>,
    format: LineFormat,
    adaptive: u64,
}

impl LineTable {
    pub fn decode(format: LineFormat, table: &[u8], first_line: u32, adaptive: u64) -> LineTable {
        let ranges = match format {
            LineFormat::Lnotab => lnotab(table, first_line),
            LineFormat::Linetable310 => linetable_310(table, first_line),
            LineFormat::Locations => locations(table, first_line),
        };
        LineTable { ranges, format, adaptive }
    }

    /// The line of the frame's current instruction, from the kernel's raw value.
    pub fn line(&self, instr: u32) -> Option<u32> {
        let byte = match self.format {
            LineFormat::Lnotab => i64::from(instr as i32),
            LineFormat::Linetable310 => i64::from(instr as i32) * 2,
            // A frame that has not started points just before its first instruction.
            LineFormat::Locations => i64::from(instr as i32) - self.adaptive as i64,
        };
        let byte = u32::try_from(byte.max(0)).ok()?;
        self.ranges.iter().find(|(s, e, _)| (*s..*e).contains(&byte)).and_then(|r| r.2)
    }
}

/// 3.8/3.9 `co_lnotab`: the line of a byte offset is the first line plus every line increment
/// whose address increment does not pass it.
fn lnotab(t: &[u8], first_line: u32) -> Vec<(u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let (mut addr, mut line) = (0u32, i64::from(first_line));
    for pair in t.chunks_exact(2) {
        let next = addr + u32::from(pair[0]);
        if next > addr {
            out.push((addr, next, u32::try_from(line).ok()));
        }
        addr = next;
        line += i64::from(pair[1] as i8);
    }
    out.push((addr, u32::MAX, u32::try_from(line).ok()));
    out
}

/// 3.10 `co_linetable`: (length in bytes, line increment or -128 for no line) per range.
fn linetable_310(t: &[u8], first_line: u32) -> Vec<(u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let (mut addr, mut line) = (0u32, i64::from(first_line));
    for pair in t.chunks_exact(2) {
        let end = addr + u32::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            u32::try_from(line).ok()
        };
        if end > addr {
            out.push((addr, end, this));
        }
        addr = end;
    }
    out
}

/// 3.11+ location table: entries of a first byte `1 cccc lll` (code, length - 1 in code units)
/// and varint data; only the start line is kept.
fn locations(t: &[u8], first_line: u32) -> Vec<(u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let (mut addr, mut line) = (0u32, i64::from(first_line));
    let mut i = 0;
    let varint = |i: &mut usize| -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        while let Some(&b) = t.get(*i) {
            *i += 1;
            v |= u64::from(b & 63) << shift;
            shift += 6;
            if b & 64 == 0 || shift > 60 {
                break;
            }
        }
        v
    };
    let svarint = |i: &mut usize| -> i64 {
        let v = varint(i);
        if v & 1 == 1 {
            -((v >> 1) as i64)
        } else {
            (v >> 1) as i64
        }
    };
    while i < t.len() {
        let first = t[i];
        i += 1;
        if first & 0x80 == 0 {
            continue; // not an entry start: resynchronise
        }
        let code = (first >> 3) & 15;
        let end = addr + (u32::from(first & 7) + 1) * 2;
        let this = match code {
            15 => None,
            14 => {
                line += svarint(&mut i);
                let _ = (varint(&mut i), varint(&mut i), varint(&mut i));
                u32::try_from(line).ok()
            }
            13 => {
                line += svarint(&mut i);
                u32::try_from(line).ok()
            }
            10..=12 => {
                line += i64::from(code - 10);
                i += 2;
                u32::try_from(line).ok()
            }
            _ => {
                i += 1;
                u32::try_from(line).ok()
            }
        };
        out.push((addr, end, this));
        addr = end;
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("line table of {len} bytes is too long")]
    TooLong { len: u64 },
}

/// Line tables longer than this are not read (the largest generated modules stay far below).
const MAX_TABLE: u64 = 256 * 1024;
const MAX_ENTRIES: usize = 16_384;

/// Reads the line table of the frame's code object (a bytes object: size at 16, data at 32).
pub fn read_table(mem: &(impl ReadMemory + ?Sized), frame: &PyFrame, l: &LineLayout) -> Result<LineTable, LineError> {
    let bytes = mem.u64(frame.code + l.code_line_table)?;
    let len = mem.u64(bytes + 16)?;
    if len > MAX_TABLE {
        return Err(LineError::TooLong { len });
    }
    let mut buf = vec![0u8; len as usize];
    mem.read(bytes + 32, &mut buf)?;
    Ok(LineTable::decode(l.format, &buf, frame.first_line, l.code_adaptive))
}

/// Decoded line tables by process and code object (the frame without its instruction: the
/// name pointer and first line guard against a reused address, as in code.rs).
#[derive(Default)]
pub struct LineCache {
    by_pid: HashMap<u32, HashMap<PyFrame, Option<Arc<LineTable>>>>,
    pub read_errors: u64,
}

impl LineCache {
    pub fn line(&mut self, pid: u32, frame: &PyFrame, l: &LineLayout) -> Option<u32> {
        let key = PyFrame { instr: 0, ..*frame };
        let cache = self.by_pid.entry(pid).or_default();
        let table = if let Some(hit) = cache.get(&key) {
            hit.clone()
        } else {
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            let t = read_table(&Memory::new(pid), &key, l).ok().map(Arc::new);
            if t.is_none() {
                self.read_errors += 1;
            }
            cache.insert(key, t.clone());
            t
        };
        table?.line(frame.instr)
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_of_3_8() {
        // Line 10 for bytes 0..6, 11 for 6..10, 14 from 10 on.
        let t = LineTable::decode(LineFormat::Lnotab, &[6, 1, 4, 3], 10, 0);
        assert_eq!(t.line(0), Some(10));
        assert_eq!(t.line(5), Some(10));
        assert_eq!(t.line(6), Some(11));
        assert_eq!(t.line(12), Some(14));
        // f_lasti is -1 before the first instruction.
        assert_eq!(t.line(u32::MAX), Some(10));
    }

    #[test]
    fn linetable_of_3_10() {
        // 4 bytes on line 21, 6 on no line, 2 on line 19: f_lasti counts code units.
        let t = LineTable::decode(LineFormat::Linetable310, &[4, 1, 6, 0x80, 2, 0xfe], 20, 0);
        assert_eq!(t.line(0), Some(21));
        assert_eq!(t.line(1), Some(21));
        assert_eq!(t.line(2), None);
        assert_eq!(t.line(5), Some(19));
    }

    #[test]
    fn locations_of_3_11() {
        // No location (RESUME's 1 unit), one-line form +1 (2 units), long form +2 over 1 unit,
        // no-column form -1 over 3 units, short form (same line) 1 unit.
        let table = [
            0x80 | (15 << 3),
            0x80 | (11 << 3) | 1,
            4,
            9,
            0x80 | (14 << 3),
            4,
            0,
            1,
            5,
            0x80 | (13 << 3) | 2,
            3,
            0x80 | (2 << 3),
            7,
        ];
        let adaptive = 184;
        let t = LineTable::decode(LineFormat::Locations, &table, 30, adaptive);
        let at = |unit: u32| t.line(adaptive as u32 + unit * 2);
        assert_eq!(at(0), None);
        assert_eq!(at(1), Some(31));
        assert_eq!(at(2), Some(31));
        assert_eq!(at(3), Some(33));
        assert_eq!(at(4), Some(32));
        assert_eq!(at(6), Some(32));
        assert_eq!(at(7), Some(32));
        assert_eq!(at(8), None);
    }

    #[test]
    fn every_walked_version_has_a_line_layout() {
        for minor in 8..=15 {
            assert!(for_minor(minor).is_some(), "3.{minor}");
        }
    }
}
