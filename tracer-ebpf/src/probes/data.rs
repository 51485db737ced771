//! Reads and writes on followed sockets: the entries save the buffer arguments (and, for a write
//! on a client socket, walk the Python stack that made the call); at the exit (sys_exit) the
//! bytes moved are copied into a Read or Write record.
use super::tls;
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    capture_len, ConnKey, DataEvent, EventHeader, EventKind, CAPTURE_LEN, CONN_CONNECTED, CONN_TLS,
    DATA_FLAG_IOV_TRUNCATED, DATA_FLAG_PRESSED, DATA_FLAG_READ_FAULT, DATA_HEADER_LEN, MAX_IOVECS, SCRATCH_LEN,
    STACK_TRIGGER_CLIENT_WRITE,
};

use crate::maps::{Inflight, Op, CONNS, SCRATCH};
use crate::output::{output_bytes_at, unread};
use crate::python_stack;
use crate::syscall::{arg, save, ARG0, ARG1, ARG2};
use crate::task::{ids, is_tracked};
use crate::user_mem::{read_u64, read_user};

#[inline(always)]
fn enter_data(ctx: &TracePointContext, op: Op) -> u32 {
    let (id, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let (Some(fd), Some(ptr)) = (arg::<u64>(ctx, ARG0), arg::<u64>(ctx, ARG1)) else {
        return 0;
    };
    let fd = fd as i32;
    if fd < 0 {
        return 0;
    }
    let Some(how) = CONNS.get_ptr(ConnKey { tgid, fd: fd as u32 }) else { return 0 };
    // SAFETY: a value pointer from a map lookup, valid for this program run.
    let how = unsafe { *how };
    let write = matches!(op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg | Op::WriteNoData);
    if tls::inside_ssl_call(id, tgid, tid, fd, how, write) || how & CONN_TLS != 0 {
        // Ciphertext: the libssl probes send its plaintext. Saved only for its failures.
        save(id, if write { Op::CipherWrite } else { Op::CipherRead }, fd, 0, 0, how);
        return 0;
    }
    if how & CONN_CONNECTED != 0 && matches!(op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg) {
        // An outgoing call (a query, an HTTP request): which Python code made it.
        python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
    }
    let aux = match op {
        Op::ReadIov | Op::WriteIov => arg::<u64>(ctx, ARG2).unwrap_or(0),
        _ => 0,
    };
    save(id, op, fd, ptr, aux, how);
    0
}

/// read, recvfrom: (fd, buf, ...)
#[tracepoint]
pub fn enter_read_buf(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::ReadBuf)
}

/// write, sendto: (fd, buf, ...)
#[tracepoint]
pub fn enter_write_buf(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::WriteBuf)
}

/// readv: (fd, iov, iovcnt)
#[tracepoint]
pub fn enter_read_iov(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::ReadIov)
}

/// writev: (fd, iov, iovcnt)
#[tracepoint]
pub fn enter_write_iov(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::WriteIov)
}

/// recvmsg: (fd, msghdr, flags)
#[tracepoint]
pub fn enter_read_msg(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::ReadMsg)
}

/// sendmsg: (fd, msghdr, flags)
#[tracepoint]
pub fn enter_write_msg(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::WriteMsg)
}

/// sendfile64: (out_fd, in_fd, offset, count)
#[tracepoint]
pub fn enter_sendfile(ctx: TracePointContext) -> u32 {
    enter_data(&ctx, Op::WriteNoData)
}

/// The exit of a read or write that moved bytes (or of an SSL call, its plaintext): copies up to
/// CAPTURE_LEN of them (PRESSED_CAPTURE_LEN while the ring buffer fills). `flags`: DATA_FLAG_*
/// bits the caller already knows.
#[inline(always)]
pub fn on_data(mut header: EventHeader, inf: &Inflight, flags: u32) {
    let Some(ev) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot, used by one program at a time on this CPU.
    let ev = unsafe { &mut *ev };
    let write = matches!(inf.op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg | Op::WriteNoData);
    header.kind = if write { EventKind::Write as u32 } else { EventKind::Read as u32 };
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
        Op::WriteNoData | Op::Accept | Op::Connect | Op::SoError | Op::CipherRead | Op::CipherWrite | Op::Done => 0,
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
