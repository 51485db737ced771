//! The current task: its ids, whether it is tracked, the time.
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};

use crate::maps::TRACKED;

/// (pid_tgid, tgid, tid) of the current task.
#[inline(always)]
pub fn ids() -> (u64, u32, u32) {
    let id = bpf_get_current_pid_tgid();
    (id, (id >> 32) as u32, id as u32)
}

#[inline(always)]
pub fn is_tracked(tgid: u32) -> bool {
    TRACKED.get_ptr(tgid).is_some()
}

/// CLOCK_MONOTONIC, the clock of every record's times.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}
