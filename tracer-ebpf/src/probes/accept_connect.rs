//! accept/accept4 and connect. An accept is hooked at its exit only: its arguments come back
//! from the registers (syscall::exit_args), the new socket joins CONNS and an Accept record
//! carries the peer's address. A connect's entry saves its address arguments and walks the
//! Python stack that connects; at the exit (sys_exit) the socket joins CONNS and a Connect record
//! carries the peer's address. A connect that failed still sends its record (with the error), so
//! the failed call gets a span; and getsockopt(SO_ERROR), how a non-blocking connect learns it
//! failed, sends that error.
//!
//! Why accept has no entry program: most of a pre-fork server's accepts fail with EAGAIN (two of
//! three per request for a Gunicorn sync worker), and an exit-only program drops those on its
//! return value alone, with no entry run, map write or clock read. (An exit-only program that
//! read both addresses from the new socket, sock.rs's walk, was measured slower than an entry:
//! 6.4–6.7 µs per request against 5.3–5.9; the registers give the user's sockaddr for free.)
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    AcceptEvent, ConnKey, EventHeader, EventKind, ProcEvent, CONN_ACCEPTED, CONN_CONNECTED, CONN_TLS, SOCKADDR_LEN,
    STACK_TRIGGER_CLIENT_WRITE,
};

use crate::conns;
use crate::maps::{Inflight, Op, TLS_PENDING};
use crate::output::output;
use crate::python_stack;
use crate::sock::local_addr;
use crate::syscall::{arg, exit_args, save, ARG0, ARG1, ARG2, ARG3, EXIT_RET};
use crate::task::{ids, is_tracked, now_ns};
use crate::user_mem::read_user;

/// accept/accept4: (fd, upeer_sockaddr, upeer_addrlen pointer), from the registers. The new
/// socket (the return value) is followed as a server one.
#[tracepoint]
pub fn exit_accept(ctx: TracePointContext) -> u32 {
    let Some(ret) = arg::<i64>(&ctx, EXIT_RET) else { return 0 };
    if ret < 0 {
        return 0; // EAGAIN on a shared listening socket, mostly: decided before any lookup
    }
    let (_, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let Some([listen_fd, addr, len_ptr]) = exit_args() else { return 0 };
    let key = ConnKey { tgid, fd: ret as u32 };
    if !conns::follow(key, CONN_ACCEPTED) {
        return 0;
    }
    let now = now_ns();
    let header =
        EventHeader { kind: EventKind::Accept as u32, tgid, tid, fd: ret as i32, start_ns: now, end_ns: now, ret };
    let mut ev = AcceptEvent {
        header,
        listen_fd: listen_fd as i32,
        addr_len: 0,
        addr: [0; SOCKADDR_LEN],
        local_family: 0,
        local_port: 0,
        local_addr: [0; 16],
    };
    if addr != 0 && len_ptr != 0 {
        // SAFETY: the helper checks the (user) address.
        if let Ok(len) = unsafe { bpf_probe_read_user(len_ptr as *const u32) } {
            let len = if len as usize > SOCKADDR_LEN { SOCKADDR_LEN } else { len as usize };
            if len > 0 && read_user::<SOCKADDR_LEN>(ev.addr.as_mut_ptr(), len, addr) {
                ev.addr_len = len as u32;
            }
        }
    }
    output(&ev);
    0
}

/// connect: (fd, uservaddr, addrlen). The Python code that connects is walked here: a connect
/// that fails has no write to name its caller. One TRACKED lookup: every process's connects
/// run this.
#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let (id, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
    if let (Some(fd), Some(addr), Some(len)) = (arg::<u64>(&ctx, ARG0), arg::<u64>(&ctx, ARG1), arg::<u64>(&ctx, ARG2))
    {
        save(id, Op::Connect, fd as i32, addr, len, 0);
    }
    0
}

const SOL_SOCKET: u64 = 1;
const SO_ERROR: u64 = 4;

/// getsockopt: (fd, level, optname, optval, optlen). Only SO_ERROR on a followed outgoing socket
/// is kept: the value a non-blocking connect's failure is read from.
#[tracepoint]
pub fn enter_getsockopt(ctx: TracePointContext) -> u32 {
    let (id, tgid, _) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let (Some(fd), Some(level), Some(name), Some(val)) =
        (arg::<u64>(&ctx, ARG0), arg::<u64>(&ctx, ARG1), arg::<u64>(&ctx, ARG2), arg::<u64>(&ctx, ARG3))
    else {
        return 0;
    };
    if level != SOL_SOCKET || name != SO_ERROR || val == 0 {
        return 0;
    }
    let Some(how) = conns::get(ConnKey { tgid, fd: fd as u32 }) else { return 0 };
    if how & CONN_CONNECTED == 0 {
        return 0;
    }
    save(id, Op::SoError, fd as i32, val, 0, how);
    0
}

/// The exit of getsockopt(SO_ERROR): a non-zero error is the socket's failure.
#[inline(always)]
pub fn on_so_error(tgid: u32, tid: u32, inf: &Inflight) {
    let mut err: i32 = 0;
    if !read_user::<4>(core::ptr::from_mut(&mut err).cast::<u8>(), 4, inf.ptr) || err <= 0 {
        return;
    }
    sock_error(tgid, tid, inf.fd, inf.start_ns, -i64::from(err));
}

/// A SockError record: `ret` is the negated errno, or 0 for an end of stream.
#[inline(always)]
pub fn sock_error(tgid: u32, tid: u32, fd: i32, start_ns: u64, ret: i64) {
    let ev = ProcEvent {
        header: EventHeader { kind: EventKind::SockError as u32, tgid, tid, fd, start_ns, end_ns: now_ns(), ret },
        child: 0,
        _pad: 0,
    };
    output(&ev);
}

/// The exit of a connect. A successful (or in-progress) one makes the socket followed as a client
/// one; a failed one only sends its record, `ret` its error.
#[inline(always)]
pub fn on_connected(tgid: u32, tid: u32, inf: &Inflight, ret: i64, followed: bool) {
    if inf.fd < 0 {
        return;
    }
    if followed {
        let key = ConnKey { tgid, fd: inf.fd as u32 };
        // A socket libssl was given before it connected carries TLS from its first byte.
        let tls = if TLS_PENDING.remove(key).is_ok() { CONN_TLS } else { 0 };
        if !conns::follow(key, CONN_CONNECTED | tls) {
            return;
        }
    }
    let header = EventHeader {
        kind: EventKind::Connect as u32,
        tgid,
        tid,
        fd: inf.fd,
        start_ns: inf.start_ns,
        end_ns: now_ns(),
        ret,
    };
    let mut ev = AcceptEvent {
        header,
        listen_fd: -1,
        addr_len: 0,
        addr: [0; SOCKADDR_LEN],
        local_family: 0,
        local_port: 0,
        local_addr: [0; 16],
    };
    // Read now: the agent sees this record later, when a short call's socket may be gone.
    if let Some((family, port, addr)) = local_addr(inf.fd) {
        (ev.local_family, ev.local_port, ev.local_addr) = (family, port, addr);
    }
    let len = if inf.aux as usize > SOCKADDR_LEN { SOCKADDR_LEN } else { inf.aux as usize };
    if inf.ptr != 0 && len > 0 && read_user::<SOCKADDR_LEN>(ev.addr.as_mut_ptr(), len, inf.ptr) {
        ev.addr_len = len as u32;
    }
    output(&ev);
}
