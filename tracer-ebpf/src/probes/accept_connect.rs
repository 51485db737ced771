//! accept/accept4 and connect: the entries save the address arguments; at the exit (sys_exit)
//! the socket joins CONNS and an Accept or Connect record carries the peer's address.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    AcceptEvent, ConnKey, DropReason, EventHeader, EventKind, CONN_ACCEPTED, CONN_CONNECTED, SOCKADDR_LEN,
};

use crate::maps::{Inflight, Op, CONNS};
use crate::output::{count_drop, output};
use crate::sock::local_addr;
use crate::syscall::{arg, save, ARG0, ARG1, ARG2};
use crate::task::{ids, is_tracked, now_ns};
use crate::user_mem::read_user;

/// accept/accept4 (fd, addr, addrlen pointer) and connect (fd, addr, addrlen): the same three
/// arguments, saved for the exit.
#[inline(always)]
fn enter_with_addr(ctx: &TracePointContext, op: Op) -> u32 {
    let (id, tgid, _) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let (Some(fd), Some(addr), Some(len)) = (arg::<u64>(ctx, ARG0), arg::<u64>(ctx, ARG1), arg::<u64>(ctx, ARG2))
    else {
        return 0;
    };
    save(id, op, fd as i32, addr, len);
    0
}

#[tracepoint]
pub fn enter_accept(ctx: TracePointContext) -> u32 {
    enter_with_addr(&ctx, Op::Accept)
}

/// connect: (fd, uservaddr, addrlen)
#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    enter_with_addr(&ctx, Op::Connect)
}

/// The exit of a successful (or in-progress) connect: the socket is followed as a client one.
#[inline(always)]
pub fn on_connected(tgid: u32, tid: u32, inf: &Inflight) {
    if inf.fd < 0 {
        return;
    }
    if CONNS.insert(ConnKey { tgid, fd: inf.fd as u32 }, CONN_CONNECTED, 0).is_err() {
        count_drop(DropReason::ConnMapFull);
        return;
    }
    let header = EventHeader {
        kind: EventKind::Connect as u32,
        tgid,
        tid,
        fd: inf.fd,
        start_ns: inf.start_ns,
        end_ns: now_ns(),
        ret: 0,
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

/// The exit of a successful accept: the new socket (the return value) is followed as a server one.
#[inline(always)]
pub fn on_accepted(mut header: EventHeader, inf: &Inflight) {
    let key = ConnKey { tgid: header.tgid, fd: header.ret as u32 };
    if CONNS.insert(key, CONN_ACCEPTED, 0).is_err() {
        count_drop(DropReason::ConnMapFull);
        return;
    }
    header.kind = EventKind::Accept as u32;
    header.fd = header.ret as i32;
    let mut ev = AcceptEvent {
        header,
        listen_fd: inf.fd,
        addr_len: 0,
        addr: [0; SOCKADDR_LEN],
        local_family: 0,
        local_port: 0,
        local_addr: [0; 16],
    };
    if inf.ptr != 0 && inf.aux != 0 {
        // SAFETY: the helper checks the (user) address.
        if let Ok(len) = unsafe { bpf_probe_read_user(inf.aux as *const u32) } {
            let len = if len as usize > SOCKADDR_LEN { SOCKADDR_LEN } else { len as usize };
            if len > 0 && read_user::<SOCKADDR_LEN>(ev.addr.as_mut_ptr(), len, inf.ptr) {
                ev.addr_len = len as u32;
            }
        }
    }
    output(&ev);
}
