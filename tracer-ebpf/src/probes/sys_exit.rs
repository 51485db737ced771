//! The exit program of the syscalls whose entry is traced (writes, connect, getsockopt): the
//! entry saved in INFLIGHT says what the call was, and the handler of that call's file finishes
//! it. Reads and accepts have exit-only programs (data.rs, accept_connect.rs) that share
//! `finish_data`.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{EventHeader, CONN_CONNECTED};

use super::{accept_connect, data};
use crate::maps::{Inflight, Op};
use crate::syscall::{arg, take, EXIT_RET};
use crate::task::{ids, now_ns};
use crate::thread_request;

pub const EINTR: i64 = 4;
pub const EAGAIN: i64 = 11;
const EISCONN: i64 = 106;
const EALREADY: i64 = 114;
const EINPROGRESS: i64 = 115;

/// An outgoing socket, by the CONNS flags its entry saved.
#[inline(always)]
fn is_client(inf: &Inflight) -> bool {
    inf.how & CONN_CONNECTED != 0
}

#[inline(always)]
fn is_write(op: Op) -> bool {
    matches!(op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg | Op::WriteNoData | Op::CipherWrite)
}

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
    finish_data(tgid, tid, &inf, ret, now_ns());
    0
}

/// The end of a read or write on a followed socket, `ret` its return value, `end_ns` now.
#[inline(always)]
pub fn finish_data(tgid: u32, tid: u32, inf: &Inflight, ret: i64, end_ns: u64) {
    if ret <= 0 {
        // A read or write on an outgoing socket that failed (a reset, a refused non-blocking
        // connect) or found the peer's end: the call ends there.
        let failed = ret != -EAGAIN && ret != -EINTR;
        if failed && is_client(inf) && !(ret == 0 && is_write(inf.op)) {
            accept_connect::sock_error(tgid, tid, inf.fd, inf.start_ns, ret);
        }
        return; // EAGAIN on non-blocking sockets and the like: nothing moved
    }
    if matches!(inf.op, Op::CipherRead | Op::CipherWrite) {
        // Ciphertext is neither data nor a request boundary: libssl's plaintext (probes/tls.rs)
        // is the data, and a TLS server's requests go unattributed by the sampler.
        return;
    }
    if !is_client(inf) {
        thread_request::on_server_data(tgid, tid, inf.fd, inf.start_ns, is_write(inf.op));
    }
    let header = EventHeader { kind: 0, tgid, tid, fd: inf.fd, start_ns: inf.start_ns, end_ns, ret };
    data::on_data(header, inf, 0);
}
