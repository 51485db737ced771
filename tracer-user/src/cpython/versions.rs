//! The one place that says, for each CPython minor version the agent reads, where its offsets come
//! from: which layout.rs row, whether `_Py_DebugOffsets` is read from the live process (and where
//! each field sits inside it), which tag bits a frame's code pointer carries, and which layout.rs
//! GC row describes its GC state. Everything else in cpython/ asks here instead of comparing minor
//! numbers.
//!
//! Adding a version: one [`Spec`] in [`SPECS`] (with its `_Py_DebugOffsets` positions, 3.13+),
//! plus a layout.rs row if it has a table of its own.
use super::layout::{self, GcLayout};
use super::version::Version;

/// Where the offsets used for a process came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The per-version table in layout.rs (3.8–3.12), checked against DWARF by a test.
    Table,
    /// `_Py_DebugOffsets` read from the live process (3.13+).
    DebugOffsets,
}

impl LayoutSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutSource::Table => "table",
            LayoutSource::DebugOffsets => "_Py_DebugOffsets",
        }
    }
}

/// Byte positions of the fields we use inside one version's `_Py_DebugOffsets`, and its size.
/// The struct grows with each version, so the positions are known per minor version: 3.13's are
/// checked against the DWARF of pyenv's 3.13 by the layout test; 3.14's and 3.15's were measured
/// with `offsetof` against Debian sid's headers (python3.14-dev 3.14.10, python3.15-dev 3.15.2)
/// and agree with the values those interpreters store.
#[derive(Debug, PartialEq, Eq)]
pub struct DebugOffsetsPositions {
    pub fields: &'static [(&'static str, u64)],
    pub size: usize,
}

impl DebugOffsetsPositions {
    /// Position of a field; every field debug_offsets.rs asks for is in every version's list.
    pub fn of(&self, field: &str) -> u64 {
        self.get(field).expect("known field")
    }

    /// Position of a field only some versions have (3.15's gc.generation_stats).
    pub fn get(&self, field: &str) -> Option<u64> {
        self.fields.iter().find(|(n, _)| *n == field).map(|f| f.1)
    }
}

/// Where one minor version's offsets come from.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub minor: u8,
    /// The layout.rs row used: the version's own, or (for a version without a table) an older
    /// row that supplies what `_Py_DebugOffsets` lacks.
    pub row: u8,
    /// `Some`: the stack walk and thread list come from the live process's `_Py_DebugOffsets`, at
    /// these positions. `None`: everything comes from the row.
    pub debug_offsets: Option<DebugOffsetsPositions>,
    /// Low bits to clear from a frame's code pointer: 3.14 made `f_executable` a tagged
    /// `_PyStackRef` (and moved the C-stack shim's owner value from 3 to 4; 3 is now the
    /// interpreter's entry frame: both are not code).
    pub code_tag_mask: u64,
    /// The layout.rs GC row of this version (`_Py_DebugOffsets` says where the GC state is, not
    /// what is in it). `None`: not known, so no GC metrics (`python_support="stack_walk_only"`).
    pub gc: Option<GcLayout>,
}

const fn table(minor: u8) -> Spec {
    Spec { minor, row: minor, debug_offsets: None, code_tag_mask: 0, gc: Some(layout::GC_3_8_TO_3_13) }
}

/// Oldest first, one per minor version, no gaps.
pub const SPECS: [Spec; 8] = [
    table(8),
    table(9),
    table(10),
    table(11),
    table(12),
    Spec {
        minor: 13,
        row: 13,
        debug_offsets: Some(DebugOffsetsPositions { fields: FIELDS_3_13, size: 584 }),
        code_tag_mask: 0,
        gc: Some(layout::GC_3_8_TO_3_13),
    },
    Spec {
        minor: 14,
        row: 13,
        debug_offsets: Some(DebugOffsetsPositions { fields: FIELDS_3_14, size: 760 }),
        code_tag_mask: 3,
        gc: Some(layout::GC_3_14),
    },
    Spec {
        minor: 15,
        row: 13,
        debug_offsets: Some(DebugOffsetsPositions { fields: FIELDS_3_15, size: 888 }),
        code_tag_mask: 3,
        gc: Some(layout::GC_3_15),
    },
];

/// The object layout row (object_layout.rs) of a minor version: each has its own.
pub fn objects_for_minor(minor: u8) -> Option<&'static super::object_layout::ObjectLayout> {
    for_minor(minor).and_then(|s| super::object_layout::for_minor(s.minor))
}

/// Oldest interpreter the agent reads.
pub const MIN_SUPPORTED: Version = Version::new(3, SPECS[0].minor, 0);

/// The spec of a CPython 3 minor version, if the agent reads it.
pub fn for_version(version: Version) -> Option<&'static Spec> {
    if version.major != 3 {
        return None;
    }
    for_minor(version.minor)
}

pub fn for_minor(minor: u8) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.minor == minor)
}

/// "3.8 to 3.15 are: tables for 3.8 to 3.12, _Py_DebugOffsets for 3.13 to 3.15", for messages.
pub fn supported_summary() -> String {
    format!(
        "{} are: tables for {}, _Py_DebugOffsets for {}",
        range(|_| true),
        range(|s| s.debug_offsets.is_none()),
        debug_offsets_range()
    )
}

/// "3.13 to 3.15": the versions whose `_Py_DebugOffsets` layout is known.
pub fn debug_offsets_range() -> String {
    range(|s| s.debug_offsets.is_some())
}

fn range(want: impl Fn(&Spec) -> bool) -> String {
    let mut minors = SPECS.iter().filter(|s| want(s)).map(|s| s.minor);
    let first = minors.next().unwrap_or_default();
    let last = minors.last().unwrap_or(first);
    format!("3.{first} to 3.{last}")
}

/// 3.13's `_Py_DebugOffsets`.
const FIELDS_3_13: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("thread_state.next", 168),
    ("thread_state.current_frame", 184),
    ("thread_state.thread_id", 192),
    ("interpreter_frame.previous", 232),
    ("interpreter_frame.executable", 240),
    ("interpreter_frame.owner", 264),
    ("code_object.filename", 280),
    ("code_object.name", 288),
    ("code_object.qualname", 296),
    ("code_object.firstlineno", 312),
    ("pyobject.ob_type", 360),
    ("unicode_object.asciiobject_size", 560),
    ("interpreter_state.imports_modules", 88),
    ("interpreter_state.gc", 80),
    ("gc.collecting", 576),
];

/// 3.14 inserted fields in the thread state and frame groups.
const FIELDS_3_14: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("thread_state.next", 192),
    ("thread_state.current_frame", 208),
    ("thread_state.thread_id", 216),
    ("interpreter_frame.previous", 256),
    ("interpreter_frame.executable", 264),
    ("interpreter_frame.owner", 288),
    ("code_object.filename", 320),
    ("code_object.name", 328),
    ("code_object.qualname", 336),
    ("code_object.firstlineno", 352),
    ("pyobject.ob_type", 408),
    ("unicode_object.asciiobject_size", 640),
    ("interpreter_state.imports_modules", 96),
    ("interpreter_state.gc", 88),
    ("gc.collecting", 656),
];

/// 3.15 added thread-state fields (holds_gil, last profiled frame) and an err_stackitem group.
const FIELDS_3_15: &[(&str, u64)] = &[
    ("runtime_state.interpreters_head", 40),
    ("interpreter_state.threads_head", 72),
    ("thread_state.next", 192),
    ("thread_state.current_frame", 208),
    ("thread_state.thread_id", 240),
    ("interpreter_frame.previous", 320),
    ("interpreter_frame.executable", 328),
    ("interpreter_frame.owner", 352),
    ("code_object.filename", 384),
    ("code_object.name", 392),
    ("code_object.qualname", 400),
    ("code_object.firstlineno", 416),
    ("pyobject.ob_type", 472),
    ("unicode_object.asciiobject_size", 736),
    ("interpreter_state.imports_modules", 96),
    ("interpreter_state.gc", 88),
    ("gc.collecting", 760),
    ("gc.generation_stats_size", 776),
    ("gc.generation_stats", 784),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::layout;

    #[test]
    fn one_spec_per_minor_without_gaps() {
        for (pair, next) in SPECS.iter().zip(SPECS.iter().skip(1)) {
            assert_eq!(pair.minor + 1, next.minor);
        }
        assert_eq!(MIN_SUPPORTED, Version::new(3, 8, 0));
        assert!(for_version(Version::new(2, 13, 0)).is_none());
        assert!(for_version(Version::new(3, 7, 0)).is_none());
        assert!(for_version(Version::new(3, 16, 0)).is_none());
        assert_eq!(supported_summary(), "3.8 to 3.15 are: tables for 3.8 to 3.12, _Py_DebugOffsets for 3.13 to 3.15");
        assert_eq!(debug_offsets_range(), "3.13 to 3.15");
    }

    /// No supported version is left at `python_support="stack_walk_only"` by its spec.
    #[test]
    fn every_version_has_a_gc_row() {
        for s in &SPECS {
            assert!(s.gc.is_some(), "3.{}", s.minor);
        }
        assert_eq!(for_minor(14).and_then(|s| s.gc), Some(layout::GC_3_14));
        assert_eq!(for_minor(15).and_then(|s| s.gc), Some(layout::GC_3_15));
    }

    /// A row used as it is must already say what its spec says; a row under `_Py_DebugOffsets`
    /// must exist and every field debug_offsets.rs reads must have a position.
    #[test]
    fn specs_agree_with_their_rows() {
        for s in &SPECS {
            let row = layout::for_minor(s.row).unwrap_or_else(|| panic!("3.{}: no layout row 3.{}", s.minor, s.row));
            match &s.debug_offsets {
                None => {
                    assert_eq!(s.row, s.minor);
                    assert_eq!(row.frames.code_tag_mask, s.code_tag_mask, "3.{}", s.minor);
                    assert_eq!(row.gc, s.gc, "3.{}", s.minor);
                }
                Some(p) => {
                    assert!(p.fields.iter().all(|(_, at)| *at as usize + 8 <= p.size), "3.{}", s.minor);
                    assert!(FIELDS_3_13.iter().all(|(f, _)| p.get(f).is_some()), "3.{}", s.minor);
                }
            }
        }
    }
}
