//! Checks the built eBPF object against tracer-common's `names`: the kernel side cannot spell its
//! map and program names with those constants (aya-ebpf's macros take identifiers), so a renamed
//! static or function would otherwise show up only when the agent fails to load. Reads the ELF
//! symbol table directly, needing neither root nor a parser crate. Skipped when the object was
//! not built (AYA_BUILD_SKIP=1).
use std::collections::BTreeSet;

use tracer_common::names;

use super::probes::OBJECT;

const SHT_SYMTAB: u32 = 2;
const STB_GLOBAL: u8 = 1;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(b[at..at + 2].try_into().unwrap()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

fn c_str(b: &[u8], at: usize) -> &str {
    let rest = &b[at..];
    std::str::from_utf8(&rest[..rest.iter().position(|&c| c == 0).unwrap()]).unwrap()
}

struct Section {
    name: String,
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
}

/// The object's global maps (symbols in the `maps` section) and programs (global functions
/// outside `.text`, which holds only helpers such as memcpy).
fn maps_and_programs(elf: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF object");
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(elf, 0x28), u16_at(elf, 0x3a), u16_at(elf, 0x3c), u16_at(elf, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names_at = u64_at(elf, header(shstrndx) + 0x18);
    let sections: Vec<Section> = (0..shnum)
        .map(|i| {
            let h = header(i);
            Section {
                name: c_str(elf, names_at + u32_at(elf, h) as usize).to_string(),
                kind: u32_at(elf, h + 4),
                offset: u64_at(elf, h + 0x18),
                size: u64_at(elf, h + 0x20),
                link: u32_at(elf, h + 0x28) as usize,
            }
        })
        .collect();
    let symtab = sections.iter().find(|s| s.kind == SHT_SYMTAB).expect("a symbol table");
    let strings = sections[symtab.link].offset;
    let (mut maps, mut programs) = (BTreeSet::new(), BTreeSet::new());
    for sym in elf[symtab.offset..symtab.offset + symtab.size].chunks_exact(24) {
        let (info, shndx) = (sym[4], u16_at(sym, 6));
        let Some(section) = sections.get(shndx) else { continue };
        if info >> 4 != STB_GLOBAL {
            continue;
        }
        let name = c_str(elf, strings + u32_at(sym, 0) as usize).to_string();
        match info & 0xf {
            STT_OBJECT if section.name == "maps" => maps.insert(name),
            STT_FUNC if section.name != ".text" => programs.insert(name),
            _ => false,
        };
    }
    (maps, programs)
}

#[test]
fn the_object_has_exactly_the_names_the_agent_knows() {
    if OBJECT.is_empty() {
        eprintln!("no eBPF object in this build (AYA_BUILD_SKIP=1): names not checked");
        return;
    }
    let (maps, programs) = maps_and_programs(OBJECT);
    let known = |list: &[&str]| list.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
    assert_eq!(maps, known(names::map::ALL), "maps in the object vs tracer_common::names::map::ALL");
    assert_eq!(programs, known(names::program::ALL), "programs in the object vs tracer_common::names::program::ALL");
}
