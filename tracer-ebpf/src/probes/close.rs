//! close: a followed socket is no longer followed (conns.rs), and a Close record ends its
//! connection.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{ConnKey, EventKind};

use crate::conns;
use crate::maps::TLS_PENDING;
use crate::output::output_proc;
use crate::syscall::{arg, ARG0};
use crate::task::{ids, is_tracked, now_ns};
use crate::thread_request;

#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let Some(fd) = arg::<u64>(&ctx, ARG0) else { return 0 };
    let key = ConnKey { tgid, fd: fd as u32 };
    if !conns::unfollow(key) {
        // Not a connection we follow; a socket given to libssl that never connected is forgotten.
        let _ = TLS_PENDING.remove(key);
        return 0;
    }
    thread_request::on_close(tgid, tid, fd as i32);
    let now = now_ns();
    output_proc(EventKind::Close, tgid, tid, fd as i32, now, now, 0);
    0
}
