//! `_Py_DebugOffsets`, which CPython 3.13+ keeps at the start of `_PyRuntime` for out-of-process
//! tools: read from the live process (not the file), so a build whose structs differ from our
//! tables still walks right. The struct itself grows with each version, so where each field sits
//! in it is known per minor version: 3.13's positions are checked against the DWARF of pyenv's
//! 3.13 by the layout test; 3.14's and 3.15's were measured with `offsetof` against Debian sid's
//! headers (python3.14-dev 3.14.10, python3.15-dev 3.15.2) and agree with the values those
//! interpreters store.
use super::build::Version;
use super::layout::{FrameLayout, Layout};
use super::memory::{Memory, ReadError};

pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Byte positions of the fields we use inside one version's `_Py_DebugOffsets`, and its size.
pub(crate) struct Positions {
    pub minor: u8,
    pub fields: &'static [(&'static str, u64)],
    pub size: usize,
}

pub(crate) const VERSIONS: [Positions; 3] = [
    Positions { minor: 13, fields: FIELDS_3_13, size: SIZE_3_13 },
    Positions { minor: 14, fields: FIELDS_3_14, size: 760 },
    Positions { minor: 15, fields: FIELDS_3_15, size: 888 },
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
];

/// Byte positions of the fields we use inside 3.13's `_Py_DebugOffsets`.
pub(crate) const FIELDS_3_13: &[(&str, u64)] = &[
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
];
/// sizeof(_Py_DebugOffsets) in 3.13.
pub(crate) const SIZE_3_13: usize = 584;

#[derive(Debug, thiserror::Error)]
pub enum DebugOffsetsError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("_PyRuntime does not start with the _Py_DebugOffsets cookie \"xdebugpy\"; the process is not the CPython 3.13+ it claims to be, so spans stay wire-only")]
    Cookie,
    #[error("_Py_DebugOffsets says CPython {live}, the library says {file}; restart the process if its library was replaced")]
    Version { live: Version, file: Version },
    #[error("_Py_DebugOffsets field {field} = {value} is not plausible; spans stay wire-only")]
    Implausible { field: &'static str, value: u64 },
    #[error("CPython {0} has a _Py_DebugOffsets layout pytracer does not know (3.13 to 3.15 are known); spans stay wire-only")]
    UnknownLayout(Version),
}

/// The layout for a live 3.13+ process: `base`'s GC fields (not in `_Py_DebugOffsets` before
/// 3.15) with everything the stack walk and thread list need taken from the process itself.
pub fn read(
    mem: &Memory,
    runtime_addr: u64,
    file_version: Version,
    base: &Layout,
) -> Result<Layout, DebugOffsetsError> {
    let pos = VERSIONS
        .iter()
        .find(|p| p.minor == file_version.minor)
        .ok_or(DebugOffsetsError::UnknownLayout(file_version))?;
    let mut raw = vec![0u8; pos.size];
    mem.read(runtime_addr, &mut raw)?;
    if &raw[..8] != COOKIE {
        return Err(DebugOffsetsError::Cookie);
    }
    let u = |at: u64| u64::from_ne_bytes(raw[at as usize..at as usize + 8].try_into().unwrap());
    let live = Version::from_hex(u(8));
    if (live.major, live.minor) != (file_version.major, file_version.minor) {
        return Err(DebugOffsetsError::Version { live, file: file_version });
    }
    let field = |name: &'static str| -> Result<u64, DebugOffsetsError> {
        let at = pos.fields.iter().find(|(n, _)| *n == name).expect("known field").1;
        let value = u(at);
        // Offsets into interpreter structs: anything beyond 64 KiB is a corrupt read.
        if value > 0xffff {
            return Err(DebugOffsetsError::Implausible { field: name, value });
        }
        Ok(value)
    };
    let ob_type = field("pyobject.ob_type")?;
    if ob_type != 8 {
        return Err(DebugOffsetsError::Implausible { field: "pyobject.ob_type", value: ob_type });
    }
    let owner = field("interpreter_frame.owner")?;
    let frames = FrameLayout {
        tstate_frame: field("thread_state.current_frame")?,
        cframe_current_frame: None,
        frame_code: field("interpreter_frame.executable")?,
        frame_previous: field("interpreter_frame.previous")?,
        frame_owner: Some(owner),
        code_filename: field("code_object.filename")?,
        code_name: field("code_object.name")?,
        code_qualname: Some(field("code_object.qualname")?),
        code_first_line: field("code_object.firstlineno")?,
        unicode_ascii_size: field("unicode_object.asciiobject_size")?,
        // 3.14 made f_executable a tagged stack reference and moved the C-stack shim's owner
        // value from 3 to 4 (3 is now the interpreter's entry frame): both are not code.
        code_tag_mask: if file_version.minor >= 14 { 3 } else { 0 },
        ..base.frames
    };
    Ok(Layout {
        minor: file_version.minor,
        runtime_interpreters_head: field("runtime_state.interpreters_head")?,
        interp_threads_head: field("interpreter_state.threads_head")?,
        tstate_next: field("thread_state.next")?,
        tstate_thread_id: field("thread_state.thread_id")?,
        frames,
        // GC structures changed in 3.14 (the incremental collector): no table for them.
        gc_known: file_version.minor == 13 && base.gc_known,
        ..*base
    })
}
