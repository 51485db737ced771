//! CPython's GC pauses and GIL waits: entry/return pairs keyed by thread, each pair one record.
//!
//! The uprobes are attached per library file, so every process mapping that file traps; the
//! TRACKED check keeps the rest of the work to ours.
use aya_ebpf::{
    macros::{uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::EventKind;

use crate::maps::{GC_STARTED, GIL_REQUESTED};
use crate::output::output_proc;
use crate::task::{ids, is_tracked, now_ns};

#[inline(always)]
fn span_begin(started: &LruHashMap<u64, u64>) -> u32 {
    let (id, tgid, _) = ids();
    if is_tracked(tgid) {
        let _ = started.insert(id, now_ns(), 0);
    }
    0
}

#[inline(always)]
fn span_end(started: &LruHashMap<u64, u64>, kind: EventKind) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(start) = started.get_ptr(id) else { return 0 };
    // SAFETY: a value pointer from a map lookup, copied out before the entry is removed.
    let start = unsafe { *start };
    let _ = started.remove(id);
    output_proc(kind, tgid, tid, -1, start, now_ns(), 0);
    0
}

/// Entry of the collection function, or the gc__start USDT probe.
#[uprobe]
pub fn gc_start(_ctx: ProbeContext) -> u32 {
    span_begin(&GC_STARTED)
}

/// Return of the collection function.
#[uretprobe]
pub fn gc_return(_ctx: RetProbeContext) -> u32 {
    span_end(&GC_STARTED, EventKind::GcPause)
}

/// The gc__done USDT probe.
#[uprobe]
pub fn gc_done(_ctx: ProbeContext) -> u32 {
    span_end(&GC_STARTED, EventKind::GcPause)
}

#[uprobe]
pub fn gil_request(_ctx: ProbeContext) -> u32 {
    span_begin(&GIL_REQUESTED)
}

#[uretprobe]
pub fn gil_taken(_ctx: RetProbeContext) -> u32 {
    span_end(&GIL_REQUESTED, EventKind::GilWait)
}
