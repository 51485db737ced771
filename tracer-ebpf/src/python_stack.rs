//! Walks the Python stack of the current thread from outside the interpreter, for every CPython
//! version the agent knows: the agent pushes each process's offsets into PY_OFFSETS, and every
//! pointer is read with bpf_probe_read_user (a bad pointer is a failed read, never a fault).
//!
//! Triggered from the frame-evaluation uprobe. That probe is attached only to the processes and
//! for the windows the agent chooses (see the agent's frame_eval module): it fires ~120 times per
//! Flask request, far too often to leave on by default.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
    macros::{map, uprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use tracer_common::*;

use crate::{count_drop, ids, wakeup_flags, EVENTS};
use aya_ebpf::bindings::BPF_RB_AVAIL_DATA;

/// Unread bytes in the 4 MiB ring buffer above which stacks are not sent.
const STACK_SHARE_BYTES: u64 = 1 << 20;

#[map]
pub static PY_OFFSETS: HashMap<u32, PyOffsets> = HashMap::with_max_entries(MAX_TRACKED_PIDS, 0);

/// Kernel facts from the agent (KCONFIG_* indexes), read from the kernel's BTF.
#[map]
static KCONFIG: Array<u64> = Array::with_max_entries(KCONFIG_LEN, 0);

/// When each thread last walked from the frame-evaluation probe (for KCONFIG_WALK_GAP_NS).
#[map]
static LAST_WALK: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16_384, 0);

#[map]
static STACK_SCRATCH: PerCpuArray<StackScratch> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of a frame and of a code object read at once: one helper call per object instead of one
/// per field. Every offset used fits (the largest, 3.11's co_name, ends at 128); the extra 8
/// bytes let an offset masked below BLOCK be read as a u64 without leaving the buffer.
const BLOCK: usize = 128;

#[repr(C)]
pub struct StackScratch {
    ev: StackEvent,
    frame: [u8; BLOCK + 8],
    code: [u8; BLOCK + 8],
}

/// Frames examined per walk, including skipped shim frames.
const MAX_STEPS: usize = MAX_STACK_FRAMES + 8;

#[inline(always)]
fn read_block(dst: &mut [u8; BLOCK + 8], src: u64) -> bool {
    unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr() as *mut _, BLOCK as u32, src as *const _) == 0 }
}

#[inline(always)]
fn u64_at(b: &[u8; BLOCK + 8], off: u32) -> u64 {
    let off = off as usize & (BLOCK - 1);
    unsafe { core::ptr::read_unaligned(b.as_ptr().add(off) as *const u64) }
}

#[inline(always)]
fn u32_at(b: &[u8; BLOCK + 8], off: u32) -> u32 {
    let off = off as usize & (BLOCK - 1);
    unsafe { core::ptr::read_unaligned(b.as_ptr().add(off) as *const u32) }
}

#[inline(always)]
fn u8_at(b: &[u8; BLOCK + 8], off: u32) -> u8 {
    b[off as usize & (BLOCK - 1)]
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const u64) }.ok()
}

/// Entry of `_PyEval_EvalFrameDefault` (after its endbr64, when it has one).
#[uprobe]
pub fn py_frame_eval(ctx: ProbeContext) -> u32 {
    let (_, tgid, tid) = ids();
    let Some(off) = PY_OFFSETS.get_ptr(tgid) else { return 0 };
    let off = unsafe { *off };
    let gap = KCONFIG.get(KCONFIG_WALK_GAP_NS).copied().unwrap_or(0);
    if gap != 0 {
        let now = unsafe { bpf_ktime_get_ns() };
        if let Some(last) = LAST_WALK.get_ptr(tid) {
            if now.wrapping_sub(unsafe { *last }) < gap {
                return 0;
            }
        }
        let _ = LAST_WALK.insert(tid, now, 0);
    }
    // Constant argument indexes only: the verifier rejects a context read at a variable offset.
    let a0 = ctx.arg::<u64>(0).unwrap_or(0);
    let a1 = ctx.arg::<u64>(1).unwrap_or(0);
    let pick = |i: u32| {
        if i == 0 {
            a0
        } else if i == 1 {
            a1
        } else {
            0
        }
    };
    let entered = pick(off.frame_arg);
    let tstate = pick(off.tstate_arg);
    walk(&off, tgid, tid, entered, tstate, STACK_TRIGGER_FRAME_EVAL);
    0
}

/// Walks the current thread's stack from a syscall tracepoint (no frame argument there): finds
/// the thread's state by its thread id, which is the task's fsbase.
#[inline(always)]
pub fn walk_current(tgid: u32, tid: u32, trigger: u32) {
    let Some(off) = PY_OFFSETS.get_ptr(tgid) else { return };
    let off = unsafe { *off };
    let Some(fsbase_at) = KCONFIG.get(KCONFIG_TASK_FSBASE) else { return };
    let fsbase_at = *fsbase_at;
    if fsbase_at == 0 {
        return;
    }
    let task = unsafe { bpf_get_current_task() };
    let Ok(fsbase) = (unsafe { bpf_probe_read_kernel((task + fsbase_at) as *const u64) }) else { return };
    let Some(interp) = read_u64(off.runtime_addr + off.interpreters_head as u64) else { return };
    if interp == 0 {
        return;
    }
    let Some(first) = read_u64(interp + off.interp_threads_head as u64) else { return };
    let mut c = FindThread {
        next: off.tstate_next as u64,
        thread_id: off.tstate_thread_id as u64,
        want: fsbase,
        tstate: first,
        found: 0,
    };
    unsafe {
        generated::bpf_loop(
            MAX_PY_THREADS as u32,
            find_thread as *mut core::ffi::c_void,
            &mut c as *mut FindThread as *mut core::ffi::c_void,
            0,
        );
    }
    if c.found == 0 {
        return;
    }
    let frame = current_frame(&off, c.found);

    // Nothing to visit before the thread's current frame: start there.
    let off = PyOffsets { walk_from_tstate: 0, ..off };
    walk_from(&off, tgid, tid, frame, trigger);
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
    let c = unsafe { &mut *(ctx as *mut FindThread) };
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
    let Some(f) = read_u64(tstate + off.tstate_frame as u64) else { return 0 };
    if off.frame_indirect == NO_OFFSET || f == 0 {
        return f;
    }
    read_u64(f + off.frame_indirect as u64).unwrap_or(0)
}

/// Records the frame at `frame` (when it is Python code) and returns its `previous` link, or
/// None when the frame cannot be read.
#[inline(always)]
fn visit(off: &PyOffsets, s: &mut StackScratch, frame: u64) -> Option<u64> {
    if !read_block(&mut s.frame, frame) {
        return None;
    }
    let code = u64_at(&s.frame, off.frame_code) & !off.code_tag_mask;
    let shim = off.frame_owner != NO_OFFSET && u8_at(&s.frame, off.frame_owner) as u32 >= off.owner_cstack;
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
            f._pad = 0;
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
    let c = unsafe { &mut *(ctx as *mut WalkCtx) };
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return 1 };
    let s = unsafe { &mut *s };
    if c.frame == 0 {
        return 1;
    }
    if s.ev.depth as usize >= MAX_STACK_FRAMES {
        s.ev.flags |= STACK_FLAG_TRUNCATED;
        return 1;
    }
    match visit(&c.off, s, c.frame) {
        Some(next) => {
            c.frame = next;
            0
        }
        None => {
            s.ev.flags |= STACK_FLAG_READ_FAULT;
            1
        }
    }
}

#[inline(always)]
fn walk(off: &PyOffsets, tgid: u32, tid: u32, first: u64, tstate: u64, trigger: u32) {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    let s = unsafe { &mut *s };
    s.ev.depth = 0;
    s.ev.flags = 0;
    let Some(previous) = visit(off, s, first) else { return };
    // 3.11+ link the entered frame to its caller only inside the function: the rest of the
    // stack hangs off the thread state.
    let frame = if off.walk_from_tstate != 0 { current_frame(off, tstate) } else { previous };
    finish_walk(off, tgid, tid, frame, trigger);
}

#[inline(always)]
fn walk_from(off: &PyOffsets, tgid: u32, tid: u32, frame: u64, trigger: u32) {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    let s = unsafe { &mut *s };
    s.ev.depth = 0;
    s.ev.flags = 0;
    finish_walk(off, tgid, tid, frame, trigger);
}

/// Walks from `frame` outwards with bpf_loop, then sends what was found. The scratch record is
/// looked up again after the loop, and its depth read as volatile: the callback wrote it through
/// its own pointer, which a `&mut` held across the call would let the compiler ignore.
#[inline(always)]
fn finish_walk(off: &PyOffsets, tgid: u32, tid: u32, frame: u64, trigger: u32) {
    let start = unsafe { bpf_ktime_get_ns() };
    let mut c = WalkCtx { off: *off, frame };
    unsafe {
        generated::bpf_loop(
            MAX_STEPS as u32,
            step as *mut core::ffi::c_void,
            &mut c as *mut WalkCtx as *mut core::ffi::c_void,
            0,
        );
    }
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else { return };
    let depth = unsafe { core::ptr::read_volatile(&(*s).ev.depth) } as usize;
    let s = unsafe { &mut *s };
    if depth == 0 || depth > MAX_STACK_FRAMES {
        return;
    }
    // Stacks may fill only part of the ring buffer: a burst of them (a frame-evaluation window
    // on a busy server) must not crowd out the records that make the spans.
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > STACK_SHARE_BYTES {
        count_drop(DropReason::StackThrottled);
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    s.ev.header =
        EventHeader { kind: EventKind::Stack as u32, tgid, tid, fd: -1, start_ns: start, end_ns: now, ret: 0 };
    s.ev.trigger = trigger;
    s.ev._pad = 0;
    let size = STACK_HEADER_LEN + depth * core::mem::size_of::<PyFrame>();
    let bytes = unsafe { core::slice::from_raw_parts(&s.ev as *const StackEvent as *const u8, size) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
        count_drop(DropReason::RingBufFull);
    }
}
