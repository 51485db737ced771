//! What the kernel's stack walk needs for one process: addresses and offsets in the
//! `tracer_common::PyOffsets` form pushed into the PY_OFFSETS map.
use tracer_common::{PyOffsets, NO_OFFSET};

use super::build::PythonBuild;
use super::layout::Layout;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkUnsupported {
    #[error("{0} defines no PyCode_Type symbol, so frames cannot be checked; spans stay without handler code")]
    NoCodeType(String),
    #[error("an offset of the {0} layout does not fit the kernel's 128-byte read window")]
    OffsetTooLarge(&'static str),
}

/// The kernel reads this many bytes of a frame or code object at once.
const BLOCK: u64 = tracer_common::STACK_READ_BLOCK as u64;

pub fn offsets(build: &PythonBuild, layout: &Layout) -> Result<PyOffsets, WalkUnsupported> {
    let f = &layout.frames;
    let code_type_addr =
        build.code_type_addr.ok_or_else(|| WalkUnsupported::NoCodeType(build.host_path.display().to_string()))?;
    for (name, off, len) in [
        ("frame code", f.frame_code, 8),
        ("frame previous", f.frame_previous, 8),
        ("frame owner", f.frame_owner.unwrap_or(0), 1),
        ("code name", f.code_name, 8),
        ("code first line", f.code_first_line, 4),
    ] {
        if off + len > BLOCK {
            return Err(WalkUnsupported::OffsetTooLarge(name));
        }
    }
    let o = |v: Option<u64>| v.map_or(NO_OFFSET, |v| v as u32);
    // Without it frames still get their function, only not their line.
    let lines = super::lines::for_minor(layout.minor).filter(|l| l.frame_instr + 8 <= BLOCK);
    Ok(PyOffsets {
        runtime_addr: build.runtime_addr,
        interpreters_head: layout.runtime_interpreters_head as u32,
        interp_threads_head: layout.interp_threads_head as u32,
        tstate_next: layout.tstate_next as u32,
        tstate_thread_id: layout.tstate_thread_id as u32,
        code_type_addr,
        code_tag_mask: f.code_tag_mask,
        frame_arg: u32::from(f.eval_frame_arg),
        tstate_arg: f.eval_tstate_arg.map_or(NO_OFFSET, u32::from),
        tstate_frame: f.tstate_frame as u32,
        frame_indirect: o(f.cframe_current_frame),
        // 3.11+ link the entered frame to its caller only inside the function.
        walk_from_tstate: u32::from(f.frame_owner.is_some()),
        frame_code: f.frame_code as u32,
        frame_previous: f.frame_previous as u32,
        frame_owner: o(f.frame_owner),
        owner_cstack: f.owner_cstack.map_or(NO_OFFSET, u32::from),
        code_name: f.code_name as u32,
        code_first_line: f.code_first_line as u32,
        frame_instr: lines.map_or(NO_OFFSET, |l| l.frame_instr as u32),
        instr_is_ptr: lines.map_or(0, |l| u32::from(l.instr_is_ptr)),
        _pad: 0,
    })
}
