//! What syscall programs share: their tracepoint records' layout, the entry saved for the exit,
//! and the arguments an exit-only program reads back from the registers.
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated},
    programs::TracePointContext,
    EbpfContext,
};
use tracer_common::DropReason;

use crate::maps::{Inflight, Op, INFLIGHT};
use crate::output::count_drop;
use crate::task::now_ns;

// Offsets in the syscalls:sys_enter_* records (see the tracepoints' format files): the common
// header and __syscall_nr take 16 bytes, then each argument is 8 bytes wide.
pub const ARG0: usize = 16;
pub const ARG1: usize = 24;
pub const ARG2: usize = 32;
pub const ARG3: usize = 40;
/// The return value in syscalls:sys_exit_* records.
pub const EXIT_RET: usize = 16;

/// The errors after which a read or write is retried: nothing moved and nothing failed.
pub const EINTR: i64 = 4;
pub const EAGAIN: i64 = 11;

/// A field of a tracepoint record, loaded straight from the context: the verifier checks a
/// constant offset into a tracepoint record, so no bpf_probe_read helper call is needed (one
/// fewer call per argument on every traced syscall).
#[inline(always)]
#[expect(
    clippy::unnecessary_wraps,
    reason = "callers read record fields like every other fallible read; this one cannot fail"
)]
pub fn arg<T: Copy>(ctx: &TracePointContext, off: usize) -> Option<T> {
    // SAFETY: `off` is a constant inside the record (the offsets above and in sched.rs come from
    // the tracepoints' format files); the verifier refuses the program otherwise.
    Some(unsafe { core::ptr::read_unaligned(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) })
}

/// x86_64 `struct pt_regs` (arch/x86/include/asm/ptrace.h): the registers the first three
/// syscall arguments came in, rdx, rsi and rdi, sit side by side from byte 96.
const PT_REGS_DX: u64 = 96;

/// The first three arguments of the syscall this exit ends, read from the registers the task
/// entered the kernel with: a syscall does not change its saved user registers (only `ax`, the
/// return value), so an exit needs no entry program to know its arguments. That saves a program
/// run, a map write and a clock read on every call; an entry program is left only where the
/// entry's time matters (a client's first write starts its span) or its state (close).
#[inline(always)]
pub fn exit_args() -> Option<[u64; 3]> {
    // SAFETY: helpers without memory arguments; the task pointer is the kernel's own, and the
    // registers are read through bpf_probe_read_kernel, which checks the address.
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) } as u64;
    if regs == 0 {
        return None;
    }
    // SAFETY: as above.
    let [dx, si, di] = unsafe { bpf_probe_read_kernel((regs + PT_REGS_DX) as *const [u64; 3]) }.ok()?;
    Some([di, si, dx])
}

/// Saves a syscall's entry for its exit (sys_exit), keyed by thread: in place in the thread's
/// entry when it has one (see INFLIGHT), `how` the socket's CONNS flags.
#[inline(always)]
pub fn save(id: u64, op: Op, fd: i32, ptr: u64, aux: u64, how: u32) {
    let v = Inflight { start_ns: now_ns(), ptr, aux, fd, op, how, _pad: 0 };
    if let Some(slot) = INFLIGHT.get_ptr_mut(id) {
        // SAFETY: a value pointer from a map lookup, valid for this program run; only this
        // thread's programs use its entry, and they do not run concurrently.
        unsafe { *slot = v };
        return;
    }
    if INFLIGHT.insert(id, v, 0).is_err() {
        count_drop(DropReason::InflightMapFull);
    }
}

/// The entry saved by this thread's syscall, taken (marked done) for its exit.
#[inline(always)]
pub fn take(id: u64) -> Option<Inflight> {
    let slot = INFLIGHT.get_ptr_mut(id)?;
    // SAFETY: as in `save`.
    let inf = unsafe { *slot };
    if inf.op == Op::Done {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*slot).op = Op::Done };
    Some(inf)
}
