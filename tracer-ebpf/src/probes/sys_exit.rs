//! The exit program of the syscalls whose entry is traced (writes, connect, getsockopt): the
//! entry saved in INFLIGHT says what the call was, and the handler of that call's file finishes
//! it. Reads and accepts have exit-only programs of their own (data.rs, accept_connect.rs).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::{accept_connect, data};
use crate::maps::Op;
use crate::syscall::{arg, take, EXIT_RET};
use crate::task::{ids, now_ns};

const EISCONN: i64 = 106;
const EALREADY: i64 = 114;
const EINPROGRESS: i64 = 115;

/// Attached to the exit of every syscall whose entry is traced: the saved entry tells what the
/// call was.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(inf) = take(id) else { return 0 };
    let Some(ret) = arg::<i64>(&ctx, EXIT_RET) else { return 0 };
    // A non-blocking connect returns EINPROGRESS and completes later: the socket is ours anyway.
    // Any other error is a failed call, reported but not followed.
    if inf.op == Op::Connect {
        if ret != -EALREADY && ret != -EISCONN {
            accept_connect::on_connected(tgid, tid, &inf, ret, ret == 0 || ret == -EINPROGRESS);
        }
        return 0;
    }
    if inf.op == Op::SoError {
        if ret == 0 {
            accept_connect::on_so_error(tgid, tid, &inf);
        }
        return 0;
    }
    data::finish_data(tgid, tid, &inf, ret, now_ns());
    0
}
