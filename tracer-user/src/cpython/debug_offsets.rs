//! `_Py_DebugOffsets`, which CPython 3.13+ keeps at the start of `_PyRuntime` for out-of-process
//! tools: read from the live process (not the file), so a build whose structs differ from our
//! tables still walks right. Only 3.13's own layout of the struct is known here; the positions
//! below are checked against the DWARF of pyenv's 3.13 by the layout test.
use super::build::Version;
use super::layout::{FrameLayout, Layout};
use super::memory::{Memory, ReadError};

pub const COOKIE: &[u8; 8] = b"xdebugpy";

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
}

/// The layout for a live 3.13 process: the table's GC fields (not in `_Py_DebugOffsets`) with
/// everything the stack walk and thread list need taken from the process itself.
pub fn read(mem: &Memory, runtime_addr: u64, file_version: Version, table: &Layout) -> Result<Layout, DebugOffsetsError> {
    let mut raw = vec![0u8; SIZE_3_13];
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
        let at = FIELDS_3_13.iter().find(|(n, _)| *n == name).expect("known field").1;
        let value = u(at);
        // Offsets into interpreter structs: anything beyond 64 KiB is a corrupt read.
        if value > 0xffff {
            return Err(DebugOffsetsError::Implausible { field: name, value });
        }
        Ok(value)
    };
    if field("pyobject.ob_type")? != 8 {
        return Err(DebugOffsetsError::Implausible { field: "pyobject.ob_type", value: u(360) });
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
        ..table.frames
    };
    Ok(Layout {
        runtime_interpreters_head: field("runtime_state.interpreters_head")?,
        interp_threads_head: field("interpreter_state.threads_head")?,
        tstate_next: field("thread_state.next")?,
        tstate_thread_id: field("thread_state.thread_id")?,
        frames,
        ..*table
    })
}
