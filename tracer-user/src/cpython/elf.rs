//! Reading an ELF64 file on demand: section and program headers, symbol tables, SystemTap SDT
//! notes, and bytes at link-time addresses. Nothing here knows about CPython; build.rs says which
//! symbols and bytes matter.
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{Endianness, ReadCache, ReadRef};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}")]
    Open(#[from] std::io::Error),
    #[error("{0}")]
    Parse(#[from] object::read::Error),
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

#[derive(Debug, Clone, Copy)]
pub struct SymbolInfo {
    pub value: u64,
    pub size: u64,
}

/// File offset of a link-time virtual address, if it lies in the file part of a segment.
pub fn vaddr_to_offset(segments: &[LoadSegment], vaddr: u64) -> Option<u64> {
    segments.iter().find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz).map(|s| s.offset + (vaddr - s.vaddr))
}

pub fn offset_to_vaddr(segments: &[LoadSegment], offset: u64) -> Option<u64> {
    segments.iter().find(|s| offset >= s.offset && offset < s.offset + s.filesz).map(|s| s.vaddr + (offset - s.offset))
}

/// Load bias from the lowest mapping of a file (its start address and file offset): what to add
/// to an ELF virtual address to get the process address. The mapping's file offset tells which
/// segment it starts.
pub fn load_bias(segments: &[LoadSegment], map_start: u64, map_offset: u64) -> Option<u64> {
    let page = page_size();
    let seg = segments.iter().find(|s| {
        let first_page = s.offset - s.offset % page;
        map_offset >= first_page && map_offset < s.offset + s.filesz.max(1)
    })?;
    // Within a segment, file offset and vaddr move together; the page rounding the loader
    // applies keeps that (p_vaddr ≡ p_offset mod page), so the identity holds at map start too.
    let vaddr_at_map_start = seg.vaddr.wrapping_sub(seg.offset).wrapping_add(map_offset);
    Some(map_start.wrapping_sub(vaddr_at_map_start))
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

pub fn open(path: &Path) -> Result<ReadCache<File>, ElfError> {
    Ok(ReadCache::new(File::open(path)?))
}

type Header = elf::FileHeader64<Endianness>;
type Data<'a> = &'a ReadCache<File>;

/// A parsed ELF64 file read on demand: only headers, symbol tables, notes and the few bytes we
/// look at are read, not the whole (often 30 MB with DWARF) file.
pub struct Elf<'a> {
    data: Data<'a>,
    endian: Endianness,
    /// `e_type`: ET_EXEC, ET_DYN, ...
    pub file_type: u16,
    sections: &'a [elf::SectionHeader64<Endianness>],
    section_names: &'a [u8],
    pub segments: Vec<LoadSegment>,
}

impl<'a> Elf<'a> {
    pub fn parse(data: Data<'a>) -> Result<Self, ElfError> {
        let header = Header::parse(data)?;
        let endian = header.endian()?;
        let table = header.sections(endian, data)?;
        let sections: &[elf::SectionHeader64<Endianness>] = table.iter().as_slice();
        let shstrndx = header.shstrndx(endian, data)? as usize;
        let section_names = match sections.get(shstrndx) {
            Some(s) => s.data(endian, data)?,
            None => &[][..],
        };
        let segments = header
            .program_headers(endian, data)?
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
        Ok(Elf { data, endian, file_type: header.e_type(endian), sections, section_names, segments })
    }

    /// Whether the file kept its full symbol table (`.symtab`), not only the exported `.dynsym`.
    pub fn has_symtab(&self) -> bool {
        self.sections.iter().any(|s| s.sh_type(self.endian) == elf::SHT_SYMTAB)
    }

    fn section_named(&self, name: &str) -> Option<&'a elf::SectionHeader64<Endianness>> {
        self.sections
            .iter()
            .find(|s| c_str_at(self.section_names, s.sh_name(self.endian) as usize) == Some(name.as_bytes()))
    }

    /// Defined symbols whose names `want` accepts, from `.dynsym` then `.symtab` (first wins).
    pub fn find_symbols(&self, want: impl Fn(&str) -> bool + Copy) -> Result<HashMap<String, SymbolInfo>, ElfError> {
        let mut found = self.find_symbols_in(elf::SHT_DYNSYM, want)?;
        for (name, info) in self.find_symbols_in(elf::SHT_SYMTAB, want)? {
            found.entry(name).or_insert(info);
        }
        Ok(found)
    }

    /// Defined symbols whose names `want` accepts, from `.dynsym` only (exported symbols).
    pub fn find_dynamic_symbols(&self, want: impl Fn(&str) -> bool) -> Result<HashMap<String, SymbolInfo>, ElfError> {
        self.find_symbols_in(elf::SHT_DYNSYM, want)
    }

    fn find_symbols_in(
        &self,
        sh_type: u32,
        want: impl Fn(&str) -> bool,
    ) -> Result<HashMap<String, SymbolInfo>, ElfError> {
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
    pub fn bytes_at_vaddr(&self, vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let offset = vaddr_to_offset(&self.segments, vaddr)?;
        let seg = self.segments.iter().find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz)?;
        if vaddr + len > seg.vaddr + seg.filesz {
            return None;
        }
        self.data.read_bytes_at(offset, len).ok()
    }

    /// The first 8 bytes as a u64 in the file's byte order.
    pub fn u64_at(&self, bytes: &[u8]) -> u64 {
        let raw: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
        match self.endian {
            Endianness::Little => u64::from_le_bytes(raw),
            Endianness::Big => u64::from_be_bytes(raw),
        }
    }

    /// The first 4 bytes as a u32 in the file's byte order.
    pub fn u32_at(&self, bytes: &[u8]) -> u32 {
        let raw: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        match self.endian {
            Endianness::Little => u32::from_le_bytes(raw),
            Endianness::Big => u32::from_be_bytes(raw),
        }
    }

    pub fn usdt_probes(&self) -> Result<Vec<UsdtProbe>, ElfError> {
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
