//! The one exit program of every traced syscall: the entry saved in INFLIGHT says what the call
//! was, and the handler of that call's file finishes it.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::EventHeader;

use super::{accept_connect, data};
use crate::maps::{Op, INFLIGHT};
use crate::syscall::{arg, EXIT_RET};
use crate::task::{ids, now_ns};

const EINPROGRESS: i64 = 115;

/// Attached to the exit of every syscall whose entry is traced: the saved entry tells what the
/// call was.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(inf) = INFLIGHT.get_ptr(id) else { return 0 };
    // SAFETY: a value pointer from a map lookup, copied out before the entry is removed.
    let inf = unsafe { *inf };
    let _ = INFLIGHT.remove(id);
    let Some(ret) = arg::<i64>(&ctx, EXIT_RET) else { return 0 };
    // A non-blocking connect returns EINPROGRESS and completes later: the socket is ours anyway.
    if inf.op == Op::Connect && (ret == 0 || ret == -EINPROGRESS) {
        accept_connect::on_connected(tgid, tid, &inf);
        return 0;
    }
    if ret < 0 {
        return 0; // EAGAIN on non-blocking sockets and the like: nothing moved
    }
    let header = EventHeader { kind: 0, tgid, tid, fd: inf.fd, start_ns: inf.start_ns, end_ns: now_ns(), ret };
    if inf.op == Op::Accept {
        accept_connect::on_accepted(header, &inf);
    } else if ret > 0 {
        data::on_data(header, &inf);
    }
    0
}
