//! Checks the built eBPF object against tracer-common's `names`: the kernel side cannot spell its
//! map and program names with those constants (aya-ebpf's macros take identifiers), so a renamed
//! static or function would otherwise show up only when the agent fails to load. Reads the
//! object's symbol table with the `object` crate the agent already uses for ELF files. Skipped
//! when the object was not built (AYA_BUILD_SKIP=1), except where PYTRACER_REQUIRE_PRIVILEGED=1
//! says every check must run.
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

#[test]
fn the_object_has_exactly_the_names_the_agent_knows() {
    if OBJECT.is_empty() {
        assert!(
            std::env::var("PYTRACER_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "no eBPF object in this build (AYA_BUILD_SKIP=1?), and PYTRACER_REQUIRE_PRIVILEGED=1 requires the check"
        );
        eprintln!("no eBPF object in this build (AYA_BUILD_SKIP=1): names not checked");
        return;
    }
    let (maps, programs) = maps_and_programs(OBJECT);
    let known = |list: &[&str]| list.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
    assert_eq!(maps, known(names::map::ALL), "maps in the object vs tracer_common::names::map::ALL");
    assert_eq!(programs, known(names::program::ALL), "programs in the object vs tracer_common::names::program::ALL");
}
