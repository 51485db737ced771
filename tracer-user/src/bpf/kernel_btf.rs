//! Offsets of kernel struct members, read from the kernel's own BTF (/sys/kernel/btf/vmlinux).
//! The stack walk started from a syscall tracepoint needs `task_struct.thread.fsbase`: on x86_64
//! it is the thread pointer, which glibc's pthread_self() returns and CPython stores as each
//! thread state's `thread_id`. That is how the kernel side finds the current thread's state.
//! aya-obj parses BTF but keeps member offsets private, so this reads just what it needs.
//! It indexes the raw bytes (where each type's record starts) instead of building every type:
//! the whole parse had been about 10 MB of the agent's peak memory, for a dozen lookups.

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
/// A type record's common header: name, info, size or referenced type.
const HEADER: usize = 12;
/// A struct or union member: name, type, offset.
const MEMBER: usize = 12;

pub struct KernelBtf {
    /// The whole file, kept as read: no copy of its sections.
    data: Vec<u8>,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Where each type's record starts in `types`. Index = type id - 1.
    starts: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or(BtfError::Malformed("truncated"))
}

/// One type's header fields.
struct Header {
    name: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// The header's third word: the referenced type for typedefs and qualifiers.
    size_or_id: u32,
}

impl KernelBtf {
    pub fn load() -> Result<KernelBtf, BtfError> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| BtfError::Read(e.to_string()))?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<KernelBtf, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (or big-endian BTF)"));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let (type_off, type_len) = (u32_at(&data, 8)? as usize, u32_at(&data, 12)? as usize);
        let (str_off, str_len) = (u32_at(&data, 16)? as usize, u32_at(&data, 20)? as usize);
        let types_at = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings_at = hdr_len + str_off..hdr_len + str_off + str_len;
        let types = data.get(types_at.clone()).ok_or(BtfError::Malformed("type section"))?;
        data.get(strings_at.clone()).ok_or(BtfError::Malformed("string section"))?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let h = header(types, at)?;
            // Bytes following the common header, by kind (linux/btf.h).
            let extra = match h.kind {
                1 | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,          // ARRAY
                KIND_STRUCT | KIND_UNION => MEMBER * h.vlen,
                6 | 13 => 8 * h.vlen,   // ENUM, FUNC_PROTO
                15 | 19 => 12 * h.vlen, // DATASEC, ENUM64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            starts.push(u32::try_from(at).map_err(|_| BtfError::Malformed("type section over 4 GiB"))?);
            at += HEADER + extra;
        }
        if at > types.len() {
            return Err(BtfError::Malformed("truncated"));
        }
        Ok(KernelBtf { data, types: types_at, strings: strings_at, starts })
    }

    fn types(&self) -> &[u8] {
        &self.data[self.types.clone()]
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.data[self.strings.clone()].get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn start(&self, id: u32) -> Option<usize> {
        self.starts.get(id.checked_sub(1)? as usize).map(|&at| at as usize)
    }

    fn header(&self, id: u32) -> Option<Header> {
        header(self.types(), self.start(id)?).ok()
    }

    /// Member `i` of struct or union `id`: (name, type, bit offset). The parse checked that
    /// every member is inside the section.
    fn member(&self, id: u32, kind_flag: bool, i: usize) -> (u32, u32, u32) {
        let at = self.start(id).unwrap_or(0) + HEADER + MEMBER * i;
        let word = |k: usize| u32_at(self.types(), at + k).unwrap_or(0);
        let raw = word(8);
        (word(0), word(4), if kind_flag { raw & 0x00ff_ffff } else { raw })
    }

    /// Strips typedefs and qualifiers (kinds 8–11, 18) to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            let Some(h) = self.header(id) else { return id };
            if !matches!(h.kind, 8..=11 | 18) {
                return id;
            }
            id = h.size_or_id;
        }
        id
    }

    /// The struct or union named `name` with the most members (a name may appear twice: a
    /// forward-declared copy has none). A scan of every type: it runs a dozen times, once.
    fn struct_named(&self, name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32)
            .filter_map(|id| self.header(id).map(|h| (id, h)))
            .filter(|(_, h)| matches!(h.kind, KIND_STRUCT | KIND_UNION) && self.str(h.name) == name)
            .max_by_key(|(_, h)| h.vlen)
            .map(|(id, _)| id)
    }

    /// Byte offset of `path` (e.g. `["thread", "fsbase"]`) inside struct `root`, looking through
    /// anonymous struct and union members.
    pub fn offset_of(&self, root: &str, path: &[&str]) -> Result<u64, BtfError> {
        let missing = || BtfError::Missing(format!("{root}.{}", path.join(".")));
        let mut id = self.struct_named(root).ok_or_else(missing)?;
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
        let h = self.header(id)?;
        if !matches!(h.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        let members = (0..h.vlen).map(|i| self.member(id, h.kind_flag, i));
        for (m_name, ty, bits) in members.clone() {
            if self.str(m_name) == name {
                return Some((u64::from(bits), ty));
            }
        }
        if depth < 4 {
            for (_, ty, bits) in members.filter(|m| m.0 == 0) {
                if let Some((inner, ty)) = self.find_member(self.resolve(ty), name, depth + 1) {
                    return Some((u64::from(bits) + inner, ty));
                }
            }
        }
        None
    }
}

fn header(types: &[u8], at: usize) -> Result<Header, BtfError> {
    let info = u32_at(types, at + 4)?;
    Ok(Header {
        name: u32_at(types, at)?,
        kind: (info >> 24) & 0x1f,
        vlen: (info & 0xffff) as usize,
        kind_flag: info >> 31 == 1,
        size_or_id: u32_at(types, at + 8)?,
    })
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

    /// A BTF blob: the header, then `types` and the string section.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_len = (types.len() * 4) as u32;
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for w in [24, 0, type_len, type_len, strings.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for w in types {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(strings);
        b
    }

    /// `struct outer { int a; struct inner { int b@4; }; }` (the inner one an anonymous member at
    /// byte 8), then a forward-declared `outer` with no members.
    fn sample() -> Vec<u8> {
        let strings = b"\0outer\0inner\0a\0b\0int\0";
        let (outer, inner, a, b, int) = (1, 7, 13, 15, 17);
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        #[rustfmt::skip]
        let types = [
            int, info(1, 0), 4, 32,             // 1: int (INT, its encoding word)
            inner, info(KIND_STRUCT, 1), 8,     // 2: struct inner
            b, 1, 32,                           //    b: int at bit 32
            outer, info(KIND_STRUCT, 2), 16,    // 3: struct outer
            a, 1, 0,                            //    a: int at bit 0
            0, 2, 64,                           //    (anonymous): struct inner at bit 64
            outer, info(KIND_STRUCT, 0), 0,     // 4: struct outer, forward-declared
        ];
        blob(&types, strings)
    }

    #[test]
    fn offsets_through_anonymous_members_of_the_full_definition() {
        let btf = KernelBtf::parse(sample()).unwrap();
        assert_eq!(btf.offset_of("outer", &["a"]), Ok(0));
        assert_eq!(btf.offset_of("outer", &["b"]), Ok(12), "8 for the anonymous member, 4 inside it");
        assert_eq!(btf.offset_of("inner", &["b"]), Ok(4));
        assert_eq!(btf.offset_of("outer", &["c"]), Err(BtfError::Missing("outer.c".into())));
        assert_eq!(btf.offset_of("nothing", &["a"]), Err(BtfError::Missing("nothing.a".into())));
    }

    #[test]
    fn bad_blobs_are_named_not_read_past() {
        let good = sample();
        assert_eq!(
            KernelBtf::parse(good[..10].to_vec()).err(),
            Some(BtfError::Malformed("bad magic (or big-endian BTF)"))
        );
        let mut cut = good.clone();
        // The type section says it is longer than the file.
        cut[12..16].copy_from_slice(&10_000u32.to_le_bytes());
        assert_eq!(KernelBtf::parse(cut).err(), Some(BtfError::Malformed("type section")));
        // The last struct claims members past the end of the type section.
        let mut long = good;
        let last = 24 + 4 * 20; // type 4's info word
        long[last..last + 4].copy_from_slice(&((KIND_STRUCT << 24) | 3).to_le_bytes());
        assert_eq!(KernelBtf::parse(long).err(), Some(BtfError::Malformed("truncated")));
    }
}
