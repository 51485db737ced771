//! Walks the Python stack of the current thread from outside the interpreter, for every CPython
//! version the agent knows: the agent pushes each process's offsets into PY_OFFSETS, and every
//! pointer is read with bpf_probe_read_user (a bad pointer is a failed read, never a fault).
//!
//! Started by the frame-evaluation uprobe (probes/frame_eval.rs) and by writes on client
//! sockets (probes/data.rs).
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated};
use tracer_common::{
    DropReason, EventHeader, EventKind, PyFrame, PyOffsets, KCONFIG_TASK_FSBASE, MAX_PY_THREADS, MAX_STACK_FRAMES,
    NO_OFFSET, STACK_FLAG_READ_FAULT, STACK_FLAG_TRUNCATED, STACK_HEADER_LEN, STACK_READ_BLOCK,
};

use crate::maps::{StackScratch, KCONFIG, PY_OFFSETS, STACK_SCRATCH};
use crate::output::{count_drop, output_bytes, room_for_stacks};
use crate::task::now_ns;
use crate::user_mem::read_u64;

const BLOCK: usize = STACK_READ_BLOCK;

/// Frames examined per walk, including skipped shim frames.
const MAX_STEPS: usize = MAX_STACK_FRAMES + 8;

#[inline(always)]
fn read_block(dst: &mut [u8; BLOCK + 8], src: u64) -> bool {
    // SAFETY: `dst` has BLOCK (+ 8) bytes; the helper checks `src`.
    unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr().cast(), BLOCK as u32, src as *const _) == 0 }
}

#[inline(always)]
fn u64_at(b: &[u8; BLOCK + 8], off: u32) -> u64 {
    let off = off as usize & (BLOCK - 1);
    // SAFETY: off < BLOCK and the buffer has 8 more bytes.
    unsafe { core::ptr::read_unaligned(b.as_ptr().add(off).cast::<u64>()) }
}

#[inline(always)]
fn u32_at(b: &[u8; BLOCK + 8], off: u32) -> u32 {
    let off = off as usize & (BLOCK - 1);
    // SAFETY: as in u64_at.
    unsafe { core::ptr::read_unaligned(b.as_ptr().add(off).cast::<u32>()) }
}

#[inline(always)]
fn u8_at(b: &[u8; BLOCK + 8], off: u32) -> u8 {
    b[off as usize & (BLOCK - 1)]
}

/// Walks from the frame entered (`entered`, from the probe's arguments), or from the thread
/// state's current frame when the version links the entered frame only inside the function.
#[inline(always)]
pub fn walk(off: &PyOffsets, tgid: u32, tid: u32, entered: u64, tstate: u64, trigger: u32) {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot, used by one program at a time on this CPU.
    let s = unsafe { &mut *s };
    s.ev.depth = 0;
    s.ev.flags = 0;
    let Some(previous) = visit(off, s, entered) else { return };
    // 3.11+ link the entered frame to its caller only inside the function: the rest of the
    // stack hangs off the thread state.
    let frame = if off.walk_from_tstate != 0 { current_frame(off, tstate) } else { previous };
    finish_walk(off, tgid, tid, frame, trigger, NO_REQUEST);
}

/// What a walk's record says of the request its thread serves: the connection's fd and the
/// request's start (the sampler's; other walks send NO_REQUEST).
#[derive(Clone, Copy)]
pub struct RequestTag {
    pub fd: i32,
    pub start_ns: u64,
}

pub const NO_REQUEST: RequestTag = RequestTag { fd: -1, start_ns: 0 };

/// Walks the current thread's stack from a syscall tracepoint (no frame argument there): finds
/// the thread's state by its thread id, which is the task's fsbase.
#[inline(always)]
pub fn walk_current(tgid: u32, tid: u32, trigger: u32) {
    walk_current_tagged(tgid, tid, trigger, NO_REQUEST);
}

/// As walk_current, the record tagged with the request the thread serves.
#[inline(always)]
pub fn walk_current_tagged(tgid: u32, tid: u32, trigger: u32, tag: RequestTag) {
    let Some(off) = PY_OFFSETS.get_ptr(tgid) else { return };
    // SAFETY: a value pointer from a map lookup, valid for this program run.
    let off = unsafe { *off };
    let Some(fsbase_at) = KCONFIG.get(KCONFIG_TASK_FSBASE) else { return };
    let fsbase_at = *fsbase_at;
    if fsbase_at == 0 {
        return;
    }
    // SAFETY: helpers; the kernel read is checked by the helper.
    let task = unsafe { bpf_get_current_task() };
    let Ok(fsbase) = (unsafe { bpf_probe_read_kernel((task + fsbase_at) as *const u64) }) else { return };
    let Some(interp) = read_u64(off.runtime_addr + u64::from(off.interpreters_head)) else { return };
    if interp == 0 {
        return;
    }
    let Some(first) = read_u64(interp + u64::from(off.interp_threads_head)) else { return };
    let mut c = FindThread {
        next: u64::from(off.tstate_next),
        thread_id: u64::from(off.tstate_thread_id),
        want: fsbase,
        tstate: first,
        found: 0,
    };
    // SAFETY: bpf_loop calls `find_thread` with the pointer given, to `c` on this stack.
    unsafe {
        generated::bpf_loop(
            MAX_PY_THREADS as u32,
            find_thread as *mut core::ffi::c_void,
            (&raw mut c).cast::<core::ffi::c_void>(),
            0,
        );
    }
    if c.found == 0 {
        return;
    }
    let frame = current_frame(&off, c.found);

    // Nothing to visit before the thread's current frame: start there.
    let off = PyOffsets { walk_from_tstate: 0, ..off };
    walk_from(&off, tgid, tid, frame, trigger, tag);
}

#[repr(C)]
struct FindThread {
    next: u64,
    thread_id: u64,
    want: u64,
    tstate: u64,
    found: u64,
}

#[inline(never)]
extern "C" fn find_thread(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: the FindThread that walk_current passed to bpf_loop.
    let c = unsafe { &mut *ctx.cast::<FindThread>() };
    if c.tstate == 0 {
        return 1;
    }
    if read_u64(c.tstate + c.thread_id) == Some(c.want) {
        c.found = c.tstate;
        return 1;
    }
    match read_u64(c.tstate + c.next) {
        Some(n) => {
            c.tstate = n;
            0
        }
        None => 1,
    }
}

#[inline(always)]
fn current_frame(off: &PyOffsets, tstate: u64) -> u64 {
    if tstate == 0 {
        return 0;
    }
    let Some(f) = read_u64(tstate + u64::from(off.tstate_frame)) else { return 0 };
    if off.frame_indirect == NO_OFFSET || f == 0 {
        return f;
    }
    read_u64(f + u64::from(off.frame_indirect)).unwrap_or(0)
}

/// Records the frame at `frame` (when it is Python code) and returns its `previous` link, or
/// None when the frame cannot be read.
#[inline(always)]
fn visit(off: &PyOffsets, s: &mut StackScratch, frame: u64) -> Option<u64> {
    if !read_block(&mut s.frame, frame) {
        return None;
    }
    let code = u64_at(&s.frame, off.frame_code) & !off.code_tag_mask;
    let shim = off.frame_owner != NO_OFFSET && u32::from(u8_at(&s.frame, off.frame_owner)) >= off.owner_cstack;
    if !shim && code != 0 && read_block(&mut s.code, code) && u64_at(&s.code, 8) == off.code_type_addr {
        // The depth lives in the map value, not in a register: the verifier then sees it as an
        // unknown bounded number, so the states of successive iterations prune instead of
        // multiplying.
        let d = s.ev.depth as usize;
        if d < MAX_STACK_FRAMES {
            let f = &mut s.ev.frames[d];
            f.code = code;
            f.name = u64_at(&s.code, off.code_name);
            f.first_line = u32_at(&s.code, off.code_first_line);
            f.instr = if off.frame_instr == NO_OFFSET {
                0
            } else if off.instr_is_ptr != 0 {
                // Only the distance from the code object matters (the agent knows where its
                // bytecode starts), and it is small.
                u64_at(&s.frame, off.frame_instr).wrapping_sub(code) as u32
            } else {
                u32_at(&s.frame, off.frame_instr)
            };
            s.ev.depth = d as u32 + 1;
        }
    }
    Some(u64_at(&s.frame, off.frame_previous))
}

/// State of one walk, shared with the bpf_loop callback through the caller's stack.
#[repr(C)]
struct WalkCtx {
    off: PyOffsets,
    frame: u64,
}

/// One step of the walk. bpf_loop has the verifier check this body once, instead of once per
/// iteration and branch combination (an unrolled 40-step walk exceeded the 1M-instruction limit).
#[inline(never)]
extern "C" fn step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: the WalkCtx that finish_walk passed to bpf_loop.
    let c = unsafe { &mut *ctx.cast::<WalkCtx>() };
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return 1 };
    // SAFETY: the per-CPU scratch slot, used by one program at a time on this CPU.
    let s = unsafe { &mut *s };
    if c.frame == 0 {
        return 1;
    }
    if s.ev.depth as usize >= MAX_STACK_FRAMES {
        s.ev.flags |= STACK_FLAG_TRUNCATED;
        return 1;
    }
    if let Some(next) = visit(&c.off, s, c.frame) {
        c.frame = next;
        0
    } else {
        s.ev.flags |= STACK_FLAG_READ_FAULT;
        1
    }
}

#[inline(always)]
fn walk_from(off: &PyOffsets, tgid: u32, tid: u32, frame: u64, trigger: u32, tag: RequestTag) {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: as in step.
    let s = unsafe { &mut *s };
    s.ev.depth = 0;
    s.ev.flags = 0;
    finish_walk(off, tgid, tid, frame, trigger, tag);
}

/// Walks from `frame` outwards with bpf_loop, then sends what was found. The scratch record is
/// looked up again after the loop, and its depth read as volatile: the callback wrote it through
/// its own pointer, which a `&mut` held across the call would let the compiler ignore.
#[inline(always)]
fn finish_walk(off: &PyOffsets, tgid: u32, tid: u32, frame: u64, trigger: u32, tag: RequestTag) {
    let start = now_ns();
    let mut c = WalkCtx { off: *off, frame };
    // SAFETY: bpf_loop calls `step` with the pointer given, to `c` on this stack.
    unsafe {
        generated::bpf_loop(
            MAX_STEPS as u32,
            step as *mut core::ffi::c_void,
            (&raw mut c).cast::<core::ffi::c_void>(),
            0,
        );
    }
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot (see above for why volatile).
    let depth = unsafe { core::ptr::read_volatile(&raw const (*s).ev.depth) } as usize;
    // SAFETY: as above.
    let s = unsafe { &mut *s };
    if depth == 0 || depth > MAX_STACK_FRAMES {
        return;
    }
    if !room_for_stacks() {
        count_drop(DropReason::StackThrottled);
        return;
    }
    s.ev.header = EventHeader {
        kind: EventKind::Stack as u32,
        tgid,
        tid,
        fd: tag.fd,
        start_ns: start,
        end_ns: now_ns(),
        ret: tag.start_ns as i64,
    };
    s.ev.trigger = trigger;
    s.ev._pad = 0;
    let size = STACK_HEADER_LEN + depth * size_of::<PyFrame>();
    // SAFETY: `size` is at most the record's own size (depth <= MAX_STACK_FRAMES).
    let bytes = unsafe { core::slice::from_raw_parts((&raw const s.ev).cast::<u8>(), size) };
    output_bytes(bytes);
}
