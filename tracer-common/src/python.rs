//! What the kernel's stack walk needs to know about one process's interpreter.

/// Thread states examined when looking for the current thread's (bounded loop).
pub const MAX_PY_THREADS: usize = 64;
/// An offset that a version does not have.
pub const NO_OFFSET: u32 = u32::MAX;
/// Bytes of a frame and of a code object the kernel reads at once: one helper call per object
/// instead of one per field. Every offset the agent pushes must fit in it with its field (the
/// largest, 3.11's co_name, ends at 128). A power of two: the kernel masks offsets with it.
pub const STACK_READ_BLOCK: usize = 128;

/// How to walk one process's Python stack: addresses and offsets pushed by the agent per process
/// (one eBPF object serves every CPython version). Every pointer read is checked in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the value can be built in a literal")]
pub struct PyOffsets {
    /// Address of `_PyRuntime` in the process.
    pub runtime_addr: u64,
    /// Runtime → first interpreter → its thread states (`next`-linked), each with `thread_id`
    /// (pthread_self(), which is the thread's fsbase on x86_64).
    pub interpreters_head: u32,
    pub interp_threads_head: u32,
    pub tstate_next: u32,
    pub tstate_thread_id: u32,
    /// Address of `PyCode_Type` in the process: a frame whose code object's type is not this is
    /// not reported (a shim frame, or a torn read).
    pub code_type_addr: u64,
    /// Low bits cleared from a frame's code pointer (3.14+ tag it as a `_PyStackRef`).
    pub code_tag_mask: u64,
    /// Which argument register of `_PyEval_EvalFrameDefault` holds the frame entered (1 or 2),
    /// and which the thread state (0: none, 3.8).
    pub frame_arg: u32,
    pub tstate_arg: u32,
    /// Thread state → current frame: `*(tstate + tstate_frame)`, then, when `frame_indirect` is not
    /// NO_OFFSET, `*(that + frame_indirect)` (3.11 and 3.12 go through `cframe`).
    pub tstate_frame: u32,
    pub frame_indirect: u32,
    /// 3.8–3.10 start from the entered frame object, whose `f_back` is already linked; 3.11+
    /// start from the thread state (the entered frame is linked only inside the function).
    pub walk_from_tstate: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    /// Offset of the `owner` byte; frames whose owner is `owner_cstack` or above are skipped
    /// (3.12–3.13's C-stack shims at 3; 3.14's interpreter entry frames at 3 and shims at 4).
    pub frame_owner: u32,
    pub owner_cstack: u32,
    pub code_name: u32,
    pub code_first_line: u32,
    /// Where a frame keeps its current instruction (NO_OFFSET: not known): `f_lasti`, an int,
    /// up to 3.10; `prev_instr`/`instr_ptr`, a pointer, from 3.11 (`instr_is_ptr` = 1).
    pub frame_instr: u32,
    pub instr_is_ptr: u32,
    pub _pad: u32,
}

// SAFETY: plain #[repr(C)] data with no padding-dependent invariants.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PyOffsets {}
