//! The frame-evaluation uprobe: walks the Python stack each time a frame is entered.
//!
//! Attached only to the processes and for the windows the agent chooses (see the agent's
//! frame_eval module): it fires ~120 times per Flask request, far too often to leave on by
//! default. KCONFIG_WALK_GAP_NS thins it further per thread.
use aya_ebpf::{macros::uprobe, programs::ProbeContext};
use tracer_common::{KCONFIG_WALK_GAP_NS, STACK_TRIGGER_FRAME_EVAL};

use crate::maps::{KCONFIG, LAST_WALK, PY_OFFSETS};
use crate::python_stack;
use crate::task::{ids, now_ns};

/// Entry of `_PyEval_EvalFrameDefault` (after its endbr64, when it has one).
#[uprobe]
pub fn py_frame_eval(ctx: ProbeContext) -> u32 {
    let (_, tgid, tid) = ids();
    let Some(off) = PY_OFFSETS.get_ptr(tgid) else { return 0 };
    // SAFETY: a value pointer from a map lookup, valid for this program run.
    let off = unsafe { *off };
    let gap = KCONFIG.get(KCONFIG_WALK_GAP_NS).copied().unwrap_or(0);
    if gap != 0 {
        let now = now_ns();
        if let Some(last) = LAST_WALK.get_ptr(tid) {
            // SAFETY: as above.
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
    python_stack::walk(&off, tgid, tid, entered, tstate, STACK_TRIGGER_FRAME_EVAL);
    0
}
