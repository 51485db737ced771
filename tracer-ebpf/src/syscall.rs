//! What syscall programs share: their tracepoint records' layout, and the entry saved for the exit.
use aya_ebpf::programs::TracePointContext;
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

/// A field of a tracepoint record.
#[inline(always)]
pub fn arg<T>(ctx: &TracePointContext, off: usize) -> Option<T> {
    // SAFETY: a checked read (bpf_probe_read) of the record at a constant offset.
    unsafe { ctx.read_at::<T>(off) }.ok()
}

/// Saves a syscall's entry for its exit (sys_exit), keyed by thread.
#[inline(always)]
pub fn save(id: u64, op: Op, fd: i32, ptr: u64, aux: u64) {
    let v = Inflight { start_ns: now_ns(), ptr, aux, fd, op };
    if INFLIGHT.insert(id, v, 0).is_err() {
        count_drop(DropReason::InflightMapFull);
    }
}
