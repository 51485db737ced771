//! Checks the built eBPF object against tracer-common's `names`: the kernel side cannot spell its
//! map and program names with those constants (aya-ebpf's macros take identifiers), so a renamed
//! static or function would otherwise show up only when the agent fails to load. Reads the
//! object's symbol table with the `object` crate the agent already uses for ELF files. Skipped
//! when the object was not built (AYA_BUILD_SKIP=1), except where PYTRACER_REQUIRE_PRIVILEGED=1
//! says every check must run. Also checks that the object loads without the kernel's BTF, as the
//! agent loads it (bpf/probes.rs).
use std::collections::BTreeSet;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use tracer_common::names;

use super::probes::OBJECT;

/// The object's global maps (symbols in the `maps` section) and programs (global functions
/// outside `.text`, which holds only helpers such as memcpy).
fn maps_and_programs(elf: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let file = object::File::parse(elf).expect("an ELF object");
    let (mut maps, mut programs) = (BTreeSet::new(), BTreeSet::new());
    for sym in file.symbols().filter(ObjectSymbol::is_global) {
        let Some(section) = sym.section_index().and_then(|i| file.section_by_index(i).ok()) else { continue };
        let (Ok(name), Ok(section)) = (sym.name(), section.name()) else { continue };
        match sym.kind() {
            SymbolKind::Data if section == "maps" => maps.insert(name.to_string()),
            SymbolKind::Text if section != ".text" => programs.insert(name.to_string()),
            _ => false,
        };
    }
    (maps, programs)
}

/// The length of the CO-RE relocation table in `.BTF.ext` (0 when its header predates it):
/// relocations against the kernel's types, the one thing aya's loader needs the kernel BTF for.
fn core_relocation_bytes(elf: &[u8]) -> u32 {
    let file = object::File::parse(elf).expect("an ELF object");
    let Some(ext) = file.section_by_name(".BTF.ext") else { return 0 };
    let ext = ext.data().expect("readable .BTF.ext");
    let word = |at: usize| u32::from_le_bytes(ext[at..at + 4].try_into().unwrap());
    // linux/btf.h btf_ext_header: magic, version, flags, hdr_len, then offset/length pairs for
    // func_info, line_info and (in a header of 32 bytes or more) core_relo.
    if word(4) < 32 {
        return 0;
    }
    word(28)
}

/// Whether the object was built into this binary; false is allowed only outside CI.
fn object_built(what: &str) -> bool {
    if OBJECT.is_empty() {
        assert!(
            std::env::var("PYTRACER_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "no eBPF object in this build (AYA_BUILD_SKIP=1?), and PYTRACER_REQUIRE_PRIVILEGED=1 requires the check"
        );
        eprintln!("no eBPF object in this build (AYA_BUILD_SKIP=1): {what} not checked");
        return false;
    }
    true
}

#[test]
fn the_object_loads_without_kernel_btf() {
    if !object_built("CO-RE relocations") {
        return;
    }
    assert_eq!(
        core_relocation_bytes(OBJECT),
        0,
        "the eBPF object has CO-RE relocations: Probes::load must pass the kernel's BTF to aya's loader"
    );
}

#[test]
fn the_object_has_exactly_the_names_the_agent_knows() {
    if !object_built("names") {
        return;
    }
    let (maps, programs) = maps_and_programs(OBJECT);
    let known = |list: &[&str]| list.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
    assert_eq!(maps, known(names::map::ALL), "maps in the object vs tracer_common::names::map::ALL");
    assert_eq!(programs, known(names::program::ALL), "programs in the object vs tracer_common::names::program::ALL");
}
