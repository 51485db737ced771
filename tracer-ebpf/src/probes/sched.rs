//! Process life: children of a tracked process are tracked from birth, exits and execs are told
//! to the agent, and the stack walk's per-process offsets follow each of them.
use aya_ebpf::{bindings::BPF_NOEXIST, macros::tracepoint, programs::TracePointContext};
use tracer_common::{DropReason, EventKind, TrackedProc};

use crate::maps::{PY_OFFSETS, TRACKED};
use crate::output::{count_drop, output_proc};
use crate::syscall::arg;
use crate::task::{ids, is_tracked, now_ns};

// Offsets in the sched:sched_process_fork and sched:sched_process_exit records.
const FORK_CHILD_PID: usize = 20;
const EXIT_GROUP_DEAD: usize = 32;

/// A tracked process's children are tracked from birth, before they run a single instruction.
#[tracepoint]
pub fn sched_fork(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    let Some(root) = TRACKED.get_ptr(tgid) else { return 0 };
    // SAFETY: a value pointer from a map lookup, valid for this program run.
    let root = unsafe { (*root).root_tgid };
    let Some(child) = arg::<i32>(&ctx, FORK_CHILD_PID) else { return 0 };
    let child = child as u32;
    if TRACKED.insert(child, TrackedProc { root_tgid: root, _pad: 0 }, u64::from(BPF_NOEXIST)).is_err()
        && TRACKED.get_ptr(child).is_none()
    {
        count_drop(DropReason::ProcMapFull);
        return 0;
    }
    // Same address space after fork: same interpreter at the same addresses. Copied here so the
    // child's first request can be walked before the agent hears of the child.
    if let Some(py) = PY_OFFSETS.get_ptr(tgid) {
        // SAFETY: as above.
        let py = unsafe { *py };
        let _ = PY_OFFSETS.insert(child, py, 0);
    }
    let now = now_ns();
    output_proc(EventKind::Fork, tgid, tid, -1, now, now, child);
    0
}

#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if tid != tgid {
        // A thread created by a tracked process was entered under its thread id by sched_fork.
        let _ = TRACKED.remove(tid);
        let _ = PY_OFFSETS.remove(tid);
    }
    let group_dead = arg::<u8>(&ctx, EXIT_GROUP_DEAD).unwrap_or(0) != 0;
    if !group_dead {
        return 0;
    }
    let _ = PY_OFFSETS.remove(tgid);
    if TRACKED.remove(tgid).is_err() {
        return 0;
    }
    let now = now_ns();
    output_proc(EventKind::Exit, tgid, tid, -1, now, now, 0);
    0
}

/// A tracked process that executes a new program keeps its pid (and stays tracked), but its
/// address space is new: the agent must look at it again (a uWSGI reload re-executes the master).
/// Any other process's exec is told too: the agent checks the new program's command line against
/// discovery then, instead of reading all of /proc every few seconds to find new servers (a
/// host executes a few programs a second; a rescan read hundreds of files).
#[tracepoint]
pub fn sched_exec(_ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if is_tracked(tgid) {
        // A new image: the old interpreter's addresses mean nothing now; the agent pushes new ones.
        let _ = PY_OFFSETS.remove(tgid);
    }
    let now = now_ns();
    output_proc(EventKind::Exec, tgid, tid, -1, now, now, 0);
    0
}
