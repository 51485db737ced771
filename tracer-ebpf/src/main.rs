//! Kernel side of pytracer: syscall and scheduler tracepoints, filtered to the tracked processes.
//!
//! Cost model: every program first looks its process up in TRACKED (one hash lookup) and returns
//! when it is not there, so untraced processes pay only that. Reads and writes are followed only
//! on sockets the process accepted while tracked (CONNS), which keeps file and pipe I/O out.
//! Programs only read user memory; they never write it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, tracepoint, uprobe, uretprobe},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::*;

mod python_stack;
use python_stack::PY_OFFSETS;

#[map]
static TRACKED: HashMap<u32, TrackedProc> = HashMap::with_max_entries(MAX_TRACKED_PIDS, 0);

#[map]
static CONNS: HashMap<ConnKey, u32> = HashMap::with_max_entries(MAX_CONNECTIONS, 0);

/// Arguments saved at syscall entry, keyed by pid_tgid, read back at exit. LRU so that a thread
/// that dies inside a syscall cannot leak an entry forever.
#[map]
static INFLIGHT: LruHashMap<u64, Inflight> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

/// 4 MiB: at this machine's saturation (~5000 req/s) the agent drains about 10 MB/s, so this is
/// ~0.4 s of slack for a stalled agent. Its pages count in the agent's RSS (mapped twice), so
/// bigger is not free. Overflow is counted in DROPS.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU assembly area for a data record: too big for the 512-byte BPF stack.
#[map]
static SCRATCH: PerCpuArray<DataEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASONS, 0);

#[derive(Clone, Copy)]
#[repr(C)]
struct Inflight {
    start_ns: u64,
    /// Buffer, iovec array or msghdr pointer; for accept the sockaddr pointer.
    ptr: u64,
    /// iovec count; for accept the addrlen pointer.
    aux: u64,
    fd: i32,
    op: Op,
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Op {
    Accept,
    ReadBuf,
    WriteBuf,
    ReadIov,
    WriteIov,
    ReadMsg,
    WriteMsg,
    /// sendfile: bytes go out but there is nothing to copy from user memory.
    WriteNoData,
    /// connect: `ptr` is the peer address, `aux` its length.
    Connect,
}

// Offsets in the syscalls:sys_enter_* records (see the tracepoints' format files): the common
// header and __syscall_nr take 16 bytes, then each argument is 8 bytes wide.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const EXIT_RET: usize = 16;
// sched:sched_process_fork and sched:sched_process_exit.
const FORK_CHILD_PID: usize = 20;
const EXIT_GROUP_DEAD: usize = 32;

/// Unread bytes above which a record wakes the agent. Below it the agent is not woken: it drains
/// on its own timer. A wakeup per record cost the traced app about 100 µs per request on this
/// machine (irq_work, context switches, the agent's epoll round trip, on 2 shared cores).
const WAKEUP_BYTES: u64 = 512 * 1024;

#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn count_drop(reason: DropReason) {
    if let Some(p) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn ids() -> (u64, u32, u32) {
    let id = bpf_get_current_pid_tgid();
    (id, (id >> 32) as u32, id as u32)
}

#[inline(always)]
fn is_tracked(tgid: u32) -> bool {
    TRACKED.get_ptr(tgid).is_some()
}

#[inline(always)]
fn save(id: u64, op: Op, fd: i32, ptr: u64, aux: u64) {
    let v = Inflight { start_ns: unsafe { bpf_ktime_get_ns() }, ptr, aux, fd, op };
    if INFLIGHT.insert(id, v, 0).is_err() {
        count_drop(DropReason::InflightMapFull);
    }
}

#[inline(always)]
fn arg<T>(ctx: &TracePointContext, off: usize) -> Option<T> {
    unsafe { ctx.read_at::<T>(off) }.ok()
}

// ---- syscall entries -------------------------------------------------------------------------

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
    if unsafe { *how } == CONN_CONNECTED && matches!(op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg) {
        // An outgoing call (a query, an HTTP request): which Python code made it.
        python_stack::walk_current(tgid, tid, STACK_TRIGGER_CLIENT_WRITE);
    }
    let aux = match op {
        Op::ReadIov | Op::WriteIov => arg::<u64>(ctx, ARG2).unwrap_or(0),
        _ => 0,
    };
    save(id, op, fd, ptr, aux);
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

/// connect: (fd, uservaddr, addrlen)
#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    enter_with_addr(&ctx, Op::Connect)
}

#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    let Some(fd) = arg::<u64>(&ctx, ARG0) else { return 0 };
    let key = ConnKey { tgid, fd: fd as u32 };
    if CONNS.remove(key).is_err() {
        return 0; // not a connection we follow
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = ProcEvent {
        header: EventHeader {
            kind: EventKind::Close as u32,
            tgid,
            tid,
            fd: fd as i32,
            start_ns: now,
            end_ns: now,
            ret: 0,
        },
        child: 0,
        _pad: 0,
    };
    output(&ev);
    0
}

// ---- syscall exits ---------------------------------------------------------------------------

/// Attached to the exit of every syscall whose entry is traced above: the saved entry tells
/// what the call was.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(inf) = INFLIGHT.get_ptr(id) else { return 0 };
    let inf = unsafe { *inf };
    let _ = INFLIGHT.remove(id);
    let Some(ret) = arg::<i64>(&ctx, EXIT_RET) else { return 0 };
    // A non-blocking connect returns EINPROGRESS and completes later: the socket is ours anyway.
    if inf.op == Op::Connect && (ret == 0 || ret == -EINPROGRESS) {
        on_connected(tgid, tid, &inf);
        return 0;
    }
    if ret < 0 {
        return 0; // EAGAIN on non-blocking sockets and the like: nothing moved
    }
    let header = EventHeader {
        kind: 0,
        tgid,
        tid,
        fd: inf.fd,
        start_ns: inf.start_ns,
        end_ns: unsafe { bpf_ktime_get_ns() },
        ret,
    };
    if inf.op == Op::Accept {
        on_accepted(header, &inf);
    } else if ret > 0 {
        on_data(header, &inf);
    }
    0
}

const EINPROGRESS: i64 = 115;

#[inline(always)]
fn on_connected(tgid: u32, tid: u32, inf: &Inflight) {
    if inf.fd < 0 {
        return;
    }
    if CONNS.insert(ConnKey { tgid, fd: inf.fd as u32 }, CONN_CONNECTED, 0).is_err() {
        count_drop(DropReason::ConnMapFull);
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let header = EventHeader {
        kind: EventKind::Connect as u32,
        tgid,
        tid,
        fd: inf.fd,
        start_ns: inf.start_ns,
        end_ns: now,
        ret: 0,
    };
    let mut ev = AcceptEvent { header, listen_fd: -1, addr_len: 0, addr: [0; SOCKADDR_LEN] };
    let len = if inf.aux as usize > SOCKADDR_LEN { SOCKADDR_LEN } else { inf.aux as usize };
    if inf.ptr != 0 && len > 0 && read_user::<SOCKADDR_LEN>(ev.addr.as_mut_ptr(), len, inf.ptr) {
        ev.addr_len = len as u32;
    }
    output(&ev);
}

#[inline(always)]
fn on_accepted(mut header: EventHeader, inf: &Inflight) {
    let key = ConnKey { tgid: header.tgid, fd: header.ret as u32 };
    if CONNS.insert(key, CONN_ACCEPTED, 0).is_err() {
        count_drop(DropReason::ConnMapFull);
        return;
    }
    header.kind = EventKind::Accept as u32;
    header.fd = header.ret as i32;
    let mut ev = AcceptEvent { header, listen_fd: inf.fd, addr_len: 0, addr: [0; SOCKADDR_LEN] };
    if inf.ptr != 0 && inf.aux != 0 {
        if let Ok(len) = unsafe { bpf_probe_read_user(inf.aux as *const u32) } {
            let len = if len as usize > SOCKADDR_LEN { SOCKADDR_LEN } else { len as usize };
            if len > 0 && read_user::<SOCKADDR_LEN>(ev.addr.as_mut_ptr(), len, inf.ptr) {
                ev.addr_len = len as u32;
            }
        }
    }
    output(&ev);
}

#[inline(always)]
fn on_data(mut header: EventHeader, inf: &Inflight) {
    let Some(ev) = SCRATCH.get_ptr_mut(0) else { return };
    let ev = unsafe { &mut *ev };
    let write = matches!(inf.op, Op::WriteBuf | Op::WriteIov | Op::WriteMsg | Op::WriteNoData);
    header.kind = if write { EventKind::Write as u32 } else { EventKind::Read as u32 };
    ev.header = header;
    ev.flags = 0;
    let want = if header.ret as u64 > CAPTURE_LEN as u64 { CAPTURE_LEN } else { header.ret as usize };
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
            let iov = unsafe { bpf_probe_read_user((inf.ptr + 16) as *const u64) }.unwrap_or(0);
            let n = unsafe { bpf_probe_read_user((inf.ptr + 24) as *const u64) }.unwrap_or(0);
            gather_iov(ev, iov, n, want)
        }
        Op::WriteNoData | Op::Accept | Op::Connect => 0,
    };
    ev.captured = captured as u32;
    let size = DATA_HEADER_LEN + (captured & (SCRATCH_LEN - 1));
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const DataEvent as *const u8, size) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
        count_drop(DropReason::RingBufFull);
    }
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
        let ptr = unsafe { bpf_probe_read_user(base as *const u64) };
        let len = unsafe { bpf_probe_read_user((base + 8) as *const u64) };
        let (Ok(ptr), Ok(len)) = (ptr, len) else {
            ev.flags |= DATA_FLAG_READ_FAULT;
            break;
        };
        let mut take = want - off;
        if len < take as u64 {
            take = len as usize;
        }
        // off < CAPTURE_LEN (masked so the verifier sees it) and take <= CAPTURE_LEN, and the
        // buffer is 2 * CAPTURE_LEN long.
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

/// Reads `len` user bytes, with `len` clamped to MAX in a way the verifier can bound: the caller
/// guarantees `dst` has MAX bytes of room.
#[inline(always)]
fn read_user<const MAX: usize>(dst: *mut u8, len: usize, src: u64) -> bool {
    let len = if len > MAX { MAX } else { len };
    if len == 0 {
        return true;
    }
    unsafe { generated::bpf_probe_read_user(dst as *mut _, len as u32, src as *const _) == 0 }
}

#[inline(always)]
fn output<T>(ev: &T) {
    if EVENTS.output::<T>(ev, wakeup_flags()).is_err() {
        count_drop(DropReason::RingBufFull);
    }
}

// ---- process life ----------------------------------------------------------------------------

/// A tracked process's children are tracked from birth, before they run a single instruction.
#[tracepoint]
pub fn sched_fork(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    let Some(root) = TRACKED.get_ptr(tgid) else { return 0 };
    let root = unsafe { (*root).root_tgid };
    let Some(child) = arg::<i32>(&ctx, FORK_CHILD_PID) else { return 0 };
    let child = child as u32;
    if TRACKED.insert(child, TrackedProc { root_tgid: root, _pad: 0 }, BPF_NOEXIST as u64).is_err()
        && TRACKED.get_ptr(child).is_none()
    {
        count_drop(DropReason::ProcMapFull);
        return 0;
    }
    // Same address space after fork: same interpreter at the same addresses. Copied here so the
    // child's first request can be walked before the agent hears of the child.
    if let Some(py) = PY_OFFSETS.get_ptr(tgid) {
        let py = unsafe { *py };
        let _ = PY_OFFSETS.insert(child, py, 0);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = ProcEvent {
        header: EventHeader { kind: EventKind::Fork as u32, tgid, tid, fd: -1, start_ns: now, end_ns: now, ret: 0 },
        child,
        _pad: 0,
    };
    output(&ev);
    0
}

#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if tid != tgid {
        // A thread created by a tracked process was entered under its thread id by sched_fork.
        let _ = TRACKED.remove(tid);
        let _ = PY_OFFSETS.remove(tid);
    }
    let group_dead = arg::<u8>(&ctx, EXIT_GROUP_DEAD).unwrap_or(0) != 0;
    if !group_dead {
        return 0;
    }
    let _ = PY_OFFSETS.remove(tgid);
    if TRACKED.remove(tgid).is_err() {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = ProcEvent {
        header: EventHeader { kind: EventKind::Exit as u32, tgid, tid, fd: -1, start_ns: now, end_ns: now, ret: 0 },
        child: 0,
        _pad: 0,
    };
    output(&ev);
    0
}

/// A tracked process that executes a new program keeps its pid (and stays tracked), but its
/// address space is new: the agent must look at it again (a uWSGI reload re-executes the master).
#[tracepoint]
pub fn sched_exec(_ctx: TracePointContext) -> u32 {
    let (_, tgid, tid) = ids();
    if !is_tracked(tgid) {
        return 0;
    }
    // A new image: the old interpreter's addresses mean nothing now; the agent pushes new ones.
    let _ = PY_OFFSETS.remove(tgid);
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = ProcEvent {
        header: EventHeader { kind: EventKind::Exec as u32, tgid, tid, fd: -1, start_ns: now, end_ns: now, ret: 0 },
        child: 0,
        _pad: 0,
    };
    output(&ev);
    0
}

// ---- CPython: GC pauses and GIL waits ------------------------------------------------------
//
// Entry/return pairs keyed by thread. The uprobes are attached per library file, so every
// process mapping that file traps; the TRACKED check keeps the rest of the work to ours.

#[map]
static GC_STARTED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

#[map]
static GIL_REQUESTED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

#[inline(always)]
fn span_begin(started: &LruHashMap<u64, u64>) -> u32 {
    let (id, tgid, _) = ids();
    if is_tracked(tgid) {
        let _ = started.insert(id, unsafe { bpf_ktime_get_ns() }, 0);
    }
    0
}

#[inline(always)]
fn span_end(started: &LruHashMap<u64, u64>, kind: EventKind) -> u32 {
    let (id, tgid, tid) = ids();
    let Some(start) = started.get_ptr(id) else { return 0 };
    let start = unsafe { *start };
    let _ = started.remove(id);
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = ProcEvent {
        header: EventHeader { kind: kind as u32, tgid, tid, fd: -1, start_ns: start, end_ns: now, ret: 0 },
        child: 0,
        _pad: 0,
    };
    output(&ev);
    0
}

/// Entry of the collection function, or the gc__start USDT probe.
#[uprobe]
pub fn gc_start(_ctx: ProbeContext) -> u32 {
    span_begin(&GC_STARTED)
}

/// Return of the collection function.
#[uretprobe]
pub fn gc_return(_ctx: RetProbeContext) -> u32 {
    span_end(&GC_STARTED, EventKind::GcPause)
}

/// The gc__done USDT probe.
#[uprobe]
pub fn gc_done(_ctx: ProbeContext) -> u32 {
    span_end(&GC_STARTED, EventKind::GcPause)
}

#[uprobe]
pub fn gil_request(_ctx: ProbeContext) -> u32 {
    span_begin(&GIL_REQUESTED)
}

#[uretprobe]
pub fn gil_taken(_ctx: RetProbeContext) -> u32 {
    span_end(&GIL_REQUESTED, EventKind::GilWait)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
