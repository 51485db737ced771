//! libssl's plaintext: uprobes on SSL_read, SSL_read_ex, SSL_write and SSL_write_ex (entry and
//! return; on OpenSSL 3.0, on the internal functions all four call, which take the _ex arguments)
//! and on SSL_set_fd, attached per traced process (the agent's tls module).
//!
//! No OpenSSL struct is read. SSL_set_fd tells which socket an `SSL*` uses; for an `SSL*` set up
//! before the probes were attached, the socket is learnt from the read or write syscall libssl
//! makes inside the call (data.rs asks [`inside_ssl_call`]). Either way the socket is marked
//! CONN_TLS, so that its ciphertext is never sent as data. At the return of a call that moved
//! bytes, the plaintext goes out as an ordinary Read or Write record of that socket (flagged
//! DATA_FLAG_TLS): the agent's connection state, HTTP parsing and stitching take it as they take
//! syscall data. A call that returns <= 0 (WANT_READ, WANT_WRITE, an error) sends nothing.
use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    ConnKey, DropReason, EventHeader, EventKind, SslKey, CONN_CONNECTED, CONN_TLS, DATA_FLAG_TLS,
    STACK_TRIGGER_CLIENT_WRITE,
};

use super::data;
use crate::conns;
use crate::maps::{Inflight, Op, SslCall, SSL_CALLS, SSL_FDS, TLS_PENDING};
use crate::output::count_drop;
use crate::python_stack;
use crate::task::{ids, is_tracked, now_ns};
use crate::user_mem::read_u64;

/// Remembers that `ssl` uses socket `fd`, and marks the socket as carrying TLS.
#[inline(always)]
fn remember(tgid: u32, ssl: u64, fd: i32) {
    if SSL_FDS.insert(SslKey { tgid, _pad: 0, ssl }, fd, 0).is_err() {
        count_drop(DropReason::TlsMapFull);
    }
    let key = ConnKey { tgid, fd: fd as u32 };
    if !conns::mark(key, CONN_TLS) && TLS_PENDING.insert(key, ssl, 0).is_err() {
        count_drop(DropReason::TlsMapFull);
    }
}

#[inline(always)]
fn is_client(tgid: u32, fd: i32) -> bool {
    fd >= 0 && conns::get(ConnKey { tgid, fd: fd as u32 }).is_some_and(|how| how & CONN_CONNECTED != 0)
}

/// From a read or write syscall on followed socket `fd` (CONNS value `how`): whether the thread
/// is inside an SSL call, which makes the syscall's bytes ciphertext. The call learns its socket;
/// a write on a client socket whose stack was not walked at the SSL_write entry (the socket was
/// not known there) is walked now, and the call's start moves here so the walk precedes it.
#[inline(always)]
pub fn inside_ssl_call(id: u64, tgid: u32, tid: u32, fd: i32, how: u32, write: bool) -> bool {
    let Some(call) = SSL_CALLS.get_ptr_mut(id) else { return false };
    // SAFETY: a value pointer from a map lookup, valid for this program run; only this thread
    // uses its own entry.
    let call = unsafe { &mut *call };
    if call.fd != fd {
        call.fd = fd;
        remember(tgid, call.ssl, fd);
    } else if how & CONN_TLS == 0 {
        remember(tgid, call.ssl, fd);
    }
    if write && call.write != 0 && call.walked == 0 && how & CONN_CONNECTED != 0 {
        python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
        call.walked = 1;
        call.start_ns = now_ns();
    }
    true
}

/// `SSL_set_fd(SSL *ssl, int fd)`: how CPython's `_ssl` ties an SSL object to its socket.
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    let (_, tgid, _) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let ssl = ctx.arg::<u64>(0).unwrap_or(0);
    let fd = ctx.arg::<u64>(1).unwrap_or(u64::MAX) as i32;
    if ssl != 0 && fd >= 0 {
        remember(tgid, ssl, fd);
    }
    0
}

/// The entry of an SSL call: saves its arguments for the return. A write on a client socket walks
/// the Python stack first (the code that made the call), as a plain write does.
#[inline(always)]
fn enter(ctx: &ProbeContext, write: bool, ex: bool) -> u32 {
    let (id, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let ssl = ctx.arg::<u64>(0).unwrap_or(0);
    let buf = ctx.arg::<u64>(1).unwrap_or(0);
    let count_at = if ex { ctx.arg::<u64>(3).unwrap_or(0) } else { 0 };
    if ssl == 0 || buf == 0 || (ex && count_at == 0) {
        return 0;
    }
    // SAFETY: a value pointer from a map lookup, copied out at once.
    let fd = SSL_FDS.get_ptr(SslKey { tgid, _pad: 0, ssl }).map_or(-1, |fd| unsafe { *fd });
    let mut walked = 0;
    if write && is_client(tgid, fd) {
        python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
        walked = 1;
    }
    let call = SslCall { start_ns: now_ns(), ssl, buf, count_at, fd, write: u32::from(write), walked, _pad: 0 };
    if SSL_CALLS.insert(id, call, 0).is_err() {
        count_drop(DropReason::TlsMapFull);
    }
    0
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, false, false)
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, false, true)
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, true, false)
}

/// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, true, true)
}

/// The return of any of the four: the plaintext moved, as a Read or Write record of the socket.
/// Written at the return for writes too: the first SSL_write of an `SSL*` learns its socket only
/// from the write syscall inside it.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(call) = SSL_CALLS.get_ptr(id) else { return 0 };
    // SAFETY: a value pointer from a map lookup, copied out before the entry is removed.
    let call = unsafe { *call };
    let _ = SSL_CALLS.remove(id);
    // All return an int; the _ex ones (and OpenSSL's internal functions the agent may probe in
    // their place) > 0 on success with the count behind `count_at`.
    let ret = ctx.ret::<u64>() as u32 as i32;
    let moved = if call.count_at != 0 {
        if ret <= 0 {
            return 0;
        }
        read_u64(call.count_at).unwrap_or(0)
    } else if ret > 0 {
        ret as u64
    } else {
        0
    };
    if moved == 0 {
        return 0;
    }
    if call.fd < 0 {
        // No socket under this SSL object: a memory BIO (asyncio), or a socket libssl never
        // touched while we watched.
        count_drop(DropReason::TlsNoSocket);
        return 0;
    }
    let Some(how) = conns::get(ConnKey { tgid, fd: call.fd as u32 }) else {
        return 0; // a socket we do not follow, as for syscall data
    };
    let kind = if call.write != 0 { EventKind::Write } else { EventKind::Read };
    let header = EventHeader {
        kind: kind as u32,
        tgid,
        tid,
        fd: call.fd,
        start_ns: call.start_ns,
        end_ns: now_ns(),
        ret: moved as i64,
    };
    let op = if call.write != 0 { Op::WriteBuf } else { Op::ReadBuf };
    let inf = Inflight { start_ns: call.start_ns, ptr: call.buf, aux: 0, fd: call.fd, op, how, _pad: 0 };
    data::on_data(header, &inf, DATA_FLAG_TLS);
    0
}
