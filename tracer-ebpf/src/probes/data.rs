//! Reads and writes on followed sockets. A write's entry saves its buffer arguments (and, on a
//! client socket, walks the Python stack that made the call), and its exit (sys_exit) copies the
//! bytes moved into a Write record. A read is hooked at its exit only: its arguments come back
//! from the registers (syscall::exit_args), and the bytes it moved go into a Read record.
//!
//! Why writes keep their entry: a client call's span starts at its first write's entry, and a
//! large upload spends its time inside that write. A read's entry time is only when the thread
//! began waiting, which the spans do not use: a request starts when its bytes arrive.
use super::{accept_connect, tls};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    capture_len, ConnKey, DataEvent, EventHeader, EventKind, CAPTURE_LEN, CONN_CONNECTED, CONN_TLS,
    DATA_FLAG_IOV_TRUNCATED, DATA_FLAG_PRESSED, DATA_FLAG_READ_FAULT, DATA_HEADER_LEN, MAX_IOVECS, SCRATCH_LEN,
    STACK_TRIGGER_CLIENT_WRITE,
};

use crate::conns;
use crate::maps::{Inflight, Op, SCRATCH};
use crate::output::{output_bytes_at, unread};
use crate::python_stack;
use crate::syscall::{arg, exit_args, save, ARG0, ARG1, ARG2, EAGAIN, EINTR, EXIT_RET};
use crate::task::{ids, is_tracked, now_ns};
use crate::thread_request;
use crate::user_mem::{read_u64, read_user};

/// An outgoing socket, by the CONNS flags its entry saved.
#[inline(always)]
fn is_client(inf: &Inflight) -> bool {
    inf.how & CONN_CONNECTED != 0
}

#[inline(always)]
fn is_write(op: Op) -> bool {
    matches!(op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg | Op::WriteNoData | Op::CipherWrite)
}

/// The CONNS flags of `fd` when the process follows it, and whether its bytes are TLS ciphertext
/// (inside an SSL call, or on a socket marked CONN_TLS), whose plaintext the libssl probes send.
#[inline(always)]
fn followed(id: u64, tgid: u32, tid: u32, fd: i32, write: bool) -> Option<(u32, bool)> {
    if fd < 0 {
        return None;
    }
    let how = conns::get(ConnKey { tgid, fd: fd as u32 })?;
    let cipher = tls::inside_ssl_call(id, tgid, tid, fd, how, write) || how & CONN_TLS != 0;
    Some((how, cipher))
}

#[inline(always)]
fn enter_write(ctx: &TracePointContext, op: Op) -> u32 {
    let (id, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let (Some(fd), Some(ptr)) = (arg::<u64>(ctx, ARG0), arg::<u64>(ctx, ARG1)) else {
        return 0;
    };
    let fd = fd as i32;
    let Some((how, cipher)) = followed(id, tgid, tid, fd, true) else { return 0 };
    if cipher {
        // Saved only for its failures.
        save(id, Op::CipherWrite, fd, 0, 0, how);
        return 0;
    }
    if how & CONN_CONNECTED != 0 && op != Op::WriteNoData {
        // An outgoing call (a query, an HTTP request): which Python code made it.
        python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
    }
    let aux = if op == Op::WriteIov { arg::<u64>(ctx, ARG2).unwrap_or(0) } else { 0 };
    save(id, op, fd, ptr, aux, how);
    0
}

/// The exit of a read: (fd, buffer, aux) from the registers, `aux` the iovec count for readv.
#[inline(always)]
fn exit_read(ctx: &TracePointContext, op: Op) -> u32 {
    let Some(ret) = arg::<i64>(ctx, EXIT_RET) else { return 0 };
    if ret == -EAGAIN || ret == -EINTR {
        return 0; // nothing moved and nothing failed: decided before any lookup
    }
    let (id, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let Some([fd, ptr, aux]) = exit_args() else { return 0 };
    let fd = fd as i32;
    let Some((how, cipher)) = followed(id, tgid, tid, fd, false) else { return 0 };
    let now = now_ns();
    let op = if cipher { Op::CipherRead } else { op };
    let aux = if op == Op::ReadIov { aux } else { 0 };
    let inf = Inflight { start_ns: now, ptr, aux, fd, op, how, _pad: 0 };
    finish_data(tgid, tid, &inf, ret, now);
    0
}

/// read, recvfrom: (fd, buf, ...)
#[tracepoint]
pub fn exit_read_buf(ctx: TracePointContext) -> u32 {
    exit_read(&ctx, Op::ReadBuf)
}

/// write, sendto: (fd, buf, ...)
#[tracepoint]
pub fn enter_write_buf(ctx: TracePointContext) -> u32 {
    enter_write(&ctx, Op::WriteBuf)
}

/// readv: (fd, iov, iovcnt)
#[tracepoint]
pub fn exit_read_iov(ctx: TracePointContext) -> u32 {
    exit_read(&ctx, Op::ReadIov)
}

/// writev: (fd, iov, iovcnt)
#[tracepoint]
pub fn enter_write_iov(ctx: TracePointContext) -> u32 {
    enter_write(&ctx, Op::WriteIov)
}

/// recvmsg: (fd, msghdr, flags)
#[tracepoint]
pub fn exit_read_msg(ctx: TracePointContext) -> u32 {
    exit_read(&ctx, Op::ReadMsg)
}

/// sendmsg: (fd, msghdr, flags)
#[tracepoint]
pub fn enter_write_msg(ctx: TracePointContext) -> u32 {
    enter_write(&ctx, Op::WriteMsg)
}

/// sendfile64: (out_fd, in_fd, offset, count)
#[tracepoint]
pub fn enter_sendfile(ctx: TracePointContext) -> u32 {
    enter_write(&ctx, Op::WriteNoData)
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
    on_data(header, inf, 0);
}

/// The exit of a read or write that moved bytes (or of an SSL call, its plaintext): copies up to
/// CAPTURE_LEN of them (PRESSED_CAPTURE_LEN while the ring buffer fills). `flags`: DATA_FLAG_*
/// bits the caller already knows.
#[inline(always)]
pub fn on_data(mut header: EventHeader, inf: &Inflight, flags: u32) {
    let Some(ev) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot, used by one program at a time on this CPU.
    let ev = unsafe { &mut *ev };
    header.kind = if is_write(inf.op) { EventKind::Write as u32 } else { EventKind::Read as u32 };
    ev.header = header;
    ev.flags = flags;
    // Past PRESSURE_UNREAD_BYTES the capture is cut rather than the record lost: the byte count
    // is what follows a body, and a dropped record took it with it (tracer_common::capture_len).
    let unread = unread();
    let (want, pressed) = capture_len(header.ret as u64, unread);
    if pressed {
        ev.flags |= DATA_FLAG_PRESSED;
    }
    let captured = match inf.op {
        Op::ReadBuf | Op::WriteBuf => {
            if read_user::<CAPTURE_LEN>(ev.data.as_mut_ptr(), want, inf.ptr) {
                want
            } else {
                ev.flags |= DATA_FLAG_READ_FAULT;
                0
            }
        }
        Op::ReadIov | Op::WriteIov => gather_iov(ev, inf.ptr, inf.aux, want),
        Op::ReadMsg | Op::WriteMsg => {
            // struct user_msghdr: msg_iov at 16, msg_iovlen at 24.
            let iov = read_u64(inf.ptr + 16).unwrap_or(0);
            let n = read_u64(inf.ptr + 24).unwrap_or(0);
            gather_iov(ev, iov, n, want)
        }
        Op::WriteNoData | Op::Connect | Op::SoError | Op::CipherRead | Op::CipherWrite | Op::Done => 0,
    };
    ev.captured = captured as u32;
    let size = DATA_HEADER_LEN + (captured & (SCRATCH_LEN - 1));
    // SAFETY: `size` is at most the record's own size (header plus SCRATCH_LEN bytes).
    let bytes = unsafe { core::slice::from_raw_parts(core::ptr::from_ref::<DataEvent>(ev).cast::<u8>(), size) };
    output_bytes_at(bytes, unread);
}

/// Copies up to `want` bytes from the first MAX_IOVECS iovecs into the scratch record.
#[inline(always)]
fn gather_iov(ev: &mut DataEvent, iov: u64, count: u64, want: usize) -> usize {
    let mut off: usize = 0;
    for i in 0..MAX_IOVECS {
        if i as u64 >= count || off >= want {
            break;
        }
        let base = iov + (i as u64) * 16;
        let (Some(ptr), Some(len)) = (read_u64(base), read_u64(base + 8)) else {
            ev.flags |= DATA_FLAG_READ_FAULT;
            break;
        };
        let mut take = want - off;
        if len < take as u64 {
            take = len as usize;
        }
        // off < CAPTURE_LEN (masked so the verifier sees it) and take <= CAPTURE_LEN, and the
        // buffer is 2 * CAPTURE_LEN long.
        // SAFETY: as above, the destination stays inside `ev.data`.
        let dst = unsafe { ev.data.as_mut_ptr().add(off & (CAPTURE_LEN - 1)) };
        if !read_user::<CAPTURE_LEN>(dst, take, ptr) {
            ev.flags |= DATA_FLAG_READ_FAULT;
            break;
        }
        off += take;
        if i == MAX_IOVECS - 1 && (i as u64) + 1 < count && off < want {
            ev.flags |= DATA_FLAG_IOV_TRUNCATED;
        }
    }
    off
}
