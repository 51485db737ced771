//! The CPU sampler: a cpu-clock perf event on every CPU (attached only by `pytracer profile`)
//! walks the Python stack of whatever traced thread it interrupts. Any other task (an untraced
//! process, the idle task) costs one hash lookup.
use aya_ebpf::{macros::perf_event, programs::PerfEventContext};
use tracer_common::STACK_TRIGGER_SAMPLE;

use crate::python_stack::{self, RequestTag, NO_REQUEST};
use crate::task::{ids, is_tracked};
use crate::thread_request;

#[perf_event]
pub fn profile_sample(_ctx: PerfEventContext) -> u32 {
    let (_, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let tag = thread_request::current(tgid, tid).map_or(NO_REQUEST, |r| RequestTag { fd: r.fd, start_ns: r.start_ns });
    python_stack::walk_current_tagged(tgid, tid, STACK_TRIGGER_SAMPLE, tag);
    0
}
