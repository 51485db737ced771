//! Offsets of kernel struct members, read from the kernel's own BTF (/sys/kernel/btf/vmlinux).
//! The stack walk started from a syscall tracepoint needs `task_struct.thread.fsbase`: on x86_64
//! it is the thread pointer, which glibc's pthread_self() returns and CPython stores as each
//! thread state's `thread_id`. That is how the kernel side finds the current thread's state.
//! aya-obj parses BTF but keeps member offsets private, so this reads just what it needs.
use std::collections::HashMap;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("cannot read /sys/kernel/btf/vmlinux: {0}; the kernel needs CONFIG_DEBUG_INFO_BTF for stack walks from syscalls")]
    Read(String),
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name: u32,
    /// The header's third word: the referenced type for typedefs and qualifiers.
    size_or_id: u32,
    members: Vec<Member>,
}

pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index = type id - 1.
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or(BtfError::Malformed("truncated"))
}

impl KernelBtf {
    pub fn load() -> Result<KernelBtf, BtfError> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| BtfError::Read(e.to_string()))?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<KernelBtf, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (or big-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_raw =
            data.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or(BtfError::Malformed("type section"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section"))?
            .to_vec();
        let mut types = Vec::new();
        let mut at = 0;
        while at < types_raw.len() {
            let name = u32_at(types_raw, at)?;
            let info = u32_at(types_raw, at + 4)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let size_or_id = u32_at(types_raw, at + 8)?;
            at += 12;
            let mut members = Vec::new();
            // Bytes following the common header, by kind (linux/btf.h).
            let extra = match kind {
                1 | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,          // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + 12 * i;
                        let raw = u32_at(types_raw, m + 8)?;
                        let bit_offset = if kind_flag { raw & 0x00ff_ffff } else { raw };
                        members.push(Member { name: u32_at(types_raw, m)?, ty: u32_at(types_raw, m + 4)?, bit_offset });
                    }
                    12 * vlen
                }
                6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
                15 | 19 => 12 * vlen, // DATASEC, ENUM64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            at += extra;
            types.push(Type { kind, name, size_or_id, members });
        }
        let mut btf = KernelBtf { strings, types, by_name: HashMap::new() };
        for (i, t) in btf.types.iter().enumerate() {
            if matches!(t.kind, KIND_STRUCT | KIND_UNION) {
                let name = btf.str(t.name).to_string();
                btf.by_name.entry(name).or_default().push(i as u32 + 1);
            }
        }
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Strips typedefs and qualifiers (kinds 8–11, 18) to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            let Some(t) = id.checked_sub(1).and_then(|i| self.types.get(i as usize)) else { return id };
            if !matches!(t.kind, 8..=11 | 18) {
                return id;
            }
            id = t.size_or_id;
        }
        id
    }

    /// Byte offset of `path` (e.g. `["thread", "fsbase"]`) inside struct `root`, looking through
    /// anonymous struct and union members.
    pub fn offset_of(&self, root: &str, path: &[&str]) -> Result<u64, BtfError> {
        let missing = || BtfError::Missing(format!("{root}.{}", path.join(".")));
        let ids = self.by_name.get(root).ok_or_else(missing)?;
        // A struct name may appear twice (a forward-declared copy has no members).
        let mut id = *ids.iter().max_by_key(|id| self.types[**id as usize - 1].members.len()).ok_or_else(missing)?;
        let mut total = 0u64;
        for name in path {
            let (bits, ty) = self.find_member(id, name, 0).ok_or_else(missing)?;
            total += bits;
            id = self.resolve(ty);
        }
        if !total.is_multiple_of(8) {
            return Err(BtfError::Malformed("bitfield member"));
        }
        Ok(total / 8)
    }

    fn find_member(&self, id: u32, name: &str, depth: u32) -> Option<(u64, u32)> {
        let t = self.types.get(id.checked_sub(1)? as usize)?;
        for m in &t.members {
            if self.str(m.name) == name {
                return Some((u64::from(m.bit_offset), m.ty));
            }
        }
        if depth < 4 {
            for m in t.members.iter().filter(|m| m.name == 0) {
                if let Some((bits, ty)) = self.find_member(self.resolve(m.ty), name, depth + 1) {
                    return Some((u64::from(m.bit_offset) + bits, ty));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_struct_fsbase_of_this_kernel() {
        let btf = match KernelBtf::load() {
            Ok(b) => b,
            Err(e) => {
                assert!(std::env::var("PYTRACER_REQUIRE_PRIVILEGED").as_deref() != Ok("1"), "{e}");
                return;
            }
        };
        let thread = btf.offset_of("task_struct", &["thread"]).unwrap();
        let fsbase = btf.offset_of("thread_struct", &["fsbase"]).unwrap();
        assert!(thread > 1000 && fsbase < 256, "thread at {thread}, fsbase at {fsbase}");
        assert_eq!(btf.offset_of("task_struct", &["thread", "fsbase"]).unwrap(), thread + fsbase);
        assert!(btf.offset_of("task_struct", &["no_such_member"]).is_err());
        // The connect exit's path to a socket's own address: every member is there.
        for (_, root, path) in super::super::probes::SOCK_MEMBERS {
            assert!(btf.offset_of(root, path).is_ok(), "{root}.{}", path.join("."));
        }
    }
}
