//! Types shared by the eBPF programs and the agent. Every type is `#[repr(C)]` and plain data:
//! the kernel side writes them into maps and the ring buffer, the agent reads them back.
#![no_std]

/// Bytes of payload copied per read or write. A power of two, so the kernel side can bound a
/// length with a mask the verifier understands. Request and response heads longer than this are
/// truncated; the agent marks such spans.
pub const CAPTURE_LEN: usize = 4096;
/// The scratch buffer is twice the capture window so that "offset < CAPTURE_LEN" plus
/// "length <= CAPTURE_LEN" is provably in bounds when gathering iovecs.
pub const SCRATCH_LEN: usize = 2 * CAPTURE_LEN;
/// Iovecs of a readv/writev/recvmsg/sendmsg that are gathered into the capture (bounded loop).
pub const MAX_IOVECS: usize = 4;
/// Longest socket address copied from accept (sockaddr_un is 110 bytes).
pub const SOCKADDR_LEN: usize = 112;

pub const MAX_TRACKED_PIDS: u32 = 16_384;
pub const MAX_CONNECTIONS: u32 = 65_536;
pub const MAX_INFLIGHT_SYSCALLS: u32 = 16_384;

/// What a ring-buffer record is. The first field of every record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An accepted connection; `fd` is the new socket.
    Accept = 1,
    /// Bytes received on a tracked connection.
    Read = 2,
    /// Bytes sent on a tracked connection.
    Write = 3,
    /// A tracked connection was closed by the process.
    Close = 4,
    /// A tracked process forked (or created a thread: `child` may be a thread id).
    Fork = 5,
    /// A tracked process exited (its whole thread group).
    Exit = 6,
    /// One garbage collection: start_ns..end_ns is the pause.
    GcPause = 7,
    /// A thread took the GIL back: start_ns..end_ns is the wait (PyEval_RestoreThread).
    GilWait = 8,
    /// A tracked process executed a new program (same pid, new image).
    Exec = 9,
    /// A walk of the Python stack of one thread (a [`StackEvent`]).
    Stack = 10,
    /// A tracked process connected a socket (an [`AcceptEvent`] whose address is the peer's).
    Connect = 11,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Accept,
            2 => Self::Read,
            3 => Self::Write,
            4 => Self::Close,
            5 => Self::Fork,
            6 => Self::Exit,
            7 => Self::GcPause,
            8 => Self::GilWait,
            9 => Self::Exec,
            10 => Self::Stack,
            11 => Self::Connect,
            _ => return None,
        })
    }
}

/// Common head of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    /// The connection's file descriptor (for Accept: the new one).
    pub fd: i32,
    /// CLOCK_MONOTONIC at syscall entry.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC at syscall exit.
    pub end_ns: u64,
    /// The syscall's return value: bytes transferred, or the accepted fd.
    pub ret: i64,
}

/// Read and Write records: the header, then `captured` bytes of payload (at most CAPTURE_LEN).
/// The record in the ring buffer is only as long as the bytes captured.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DataEvent {
    pub header: EventHeader,
    pub captured: u32,
    /// DATA_FLAG_* bits.
    pub flags: u32,
    pub data: [u8; SCRATCH_LEN],
}

/// The payload could not be read from user memory (the capture is empty, the byte count is right).
pub const DATA_FLAG_READ_FAULT: u32 = 1;
/// More iovecs than MAX_IOVECS carried data: the capture holds only the first ones.
pub const DATA_FLAG_IOV_TRUNCATED: u32 = 2;

pub const DATA_HEADER_LEN: usize = size_of::<EventHeader>() + 8;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptEvent {
    pub header: EventHeader,
    pub listen_fd: i32,
    /// Bytes of `addr` the kernel filled in (0 when the caller passed no address buffer).
    pub addr_len: u32,
    pub addr: [u8; SOCKADDR_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcEvent {
    pub header: EventHeader,
    /// Fork: the new task's id (a pid, or a thread id when a thread was created).
    pub child: u32,
    pub _pad: u32,
}

/// Key of the connection map: a socket is identified by its process and descriptor, not by the
/// thread, because a keep-alive connection may be served by several threads (gthread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub tgid: u32,
    pub fd: u32,
}

/// Value of the tracked-process map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackedProc {
    /// The tracked process it descends from (itself for a root).
    pub root_tgid: u32,
    pub _pad: u32,
}

/// Indexes of the per-CPU drop counters. Every event the kernel side cannot deliver is counted.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The ring buffer was full: the agent fell behind.
    RingBufFull = 0,
    /// The connection map was full: a new connection was not tracked.
    ConnMapFull = 1,
    /// The tracked-process map was full: a forked child was not tracked.
    ProcMapFull = 2,
    /// The in-flight syscall map was full: a read or write was not seen.
    InflightMapFull = 3,
    /// A Python stack was not sent because the ring buffer was past the share stacks may use:
    /// the requests' own records keep their room.
    StackThrottled = 4,
}

pub const DROP_REASONS: u32 = 5;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS as usize] = [
        DropReason::RingBufFull,
        DropReason::ConnMapFull,
        DropReason::ProcMapFull,
        DropReason::InflightMapFull,
        DropReason::StackThrottled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::RingBufFull => "ringbuf_full",
            DropReason::ConnMapFull => "conn_map_full",
            DropReason::ProcMapFull => "proc_map_full",
            DropReason::InflightMapFull => "inflight_map_full",
            DropReason::StackThrottled => "stack_throttled",
        }
    }
}

/// Python frames kept per stack walk, innermost first. A Flask request's handler sits about 20
/// frames deep under Gunicorn; 32 leaves room for middleware and helpers.
pub const MAX_STACK_FRAMES: usize = 32;
/// Thread states examined when looking for the current thread's (bounded loop).
pub const MAX_PY_THREADS: usize = 64;
/// An offset that a version does not have.
pub const NO_OFFSET: u32 = u32::MAX;

/// Why a stack walk was made.
pub const STACK_TRIGGER_FRAME_EVAL: u32 = 1;
/// A write on a connection the process opened (a database query, an HTTP call): the walk names
/// the Python code that made it.
pub const STACK_TRIGGER_CLIENT_WRITE: u32 = 2;

/// CONNS values: how the process got the socket.
pub const CONN_ACCEPTED: u32 = 0;
pub const CONN_CONNECTED: u32 = 1;

/// Index in the KCONFIG array map of `offsetof(struct task_struct, thread.fsbase)` (0: unknown,
/// and walks from syscalls are off).
pub const KCONFIG_TASK_FSBASE: u32 = 0;
/// Index of the least time between two frame-evaluation walks on one thread (0: walk on every
/// hit). A walk costs ~10-20 µs here against the hit's ~1.3 µs trap, and a Flask request has
/// ~120 hits: in sampled windows a few walks per request find the handler at a fraction of it.
pub const KCONFIG_WALK_GAP_NS: u32 = 1;
pub const KCONFIG_LEN: u32 = 4;

/// The walk stopped at MAX_STACK_FRAMES with more frames above.
pub const STACK_FLAG_TRUNCATED: u32 = 1;
/// A read of interpreter memory failed part way (the frames before it are good).
pub const STACK_FLAG_READ_FAULT: u32 = 2;

/// One frame of a walk: enough to name its code object from user space later, and to notice when
/// a freed code object's address was reused by another (the name pointer and first line differ).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    pub code: u64,
    pub name: u64,
    pub first_line: u32,
    pub _pad: u32,
}

/// A Python stack, innermost frame first. Only `depth` frames are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackEvent {
    pub header: EventHeader,
    pub trigger: u32,
    pub depth: u32,
    /// STACK_FLAG_* bits.
    pub flags: u32,
    pub _pad: u32,
    pub frames: [PyFrame; MAX_STACK_FRAMES],
}

pub const STACK_HEADER_LEN: usize = size_of::<EventHeader>() + 16;

/// How to walk one process's Python stack: addresses and offsets pushed by the agent per process
/// (one eBPF object serves every CPython version). Every pointer read is checked in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PyOffsets {
    /// Address of `_PyRuntime` in the process.
    pub runtime_addr: u64,
    /// Runtime → first interpreter → its thread states (`next`-linked), each with `thread_id`
    /// (pthread_self(), which is the thread's fsbase on x86_64).
    pub interpreters_head: u32,
    pub interp_threads_head: u32,
    pub tstate_next: u32,
    pub tstate_thread_id: u32,
    /// Address of `PyCode_Type` in the process: a frame whose code object's type is not this is
    /// not reported (a shim frame, or a torn read).
    pub code_type_addr: u64,
    /// Low bits cleared from a frame's code pointer (3.14+ tag it as a `_PyStackRef`).
    pub code_tag_mask: u64,
    /// Which argument register of `_PyEval_EvalFrameDefault` holds the frame entered (1 or 2),
    /// and which the thread state (0: none, 3.8).
    pub frame_arg: u32,
    pub tstate_arg: u32,
    /// Thread state → current frame: `*(tstate + tstate_frame)`, then, when `frame_indirect` is not
    /// NO_OFFSET, `*(that + frame_indirect)` (3.11 and 3.12 go through `cframe`).
    pub tstate_frame: u32,
    pub frame_indirect: u32,
    /// 3.8–3.10 start from the entered frame object, whose `f_back` is already linked; 3.11+
    /// start from the thread state (the entered frame is linked only inside the function).
    pub walk_from_tstate: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    /// Offset of the `owner` byte; frames whose owner is `owner_cstack` or above are skipped
    /// (3.12–3.13's C-stack shims at 3; 3.14's interpreter entry frames at 3 and shims at 4).
    pub frame_owner: u32,
    pub owner_cstack: u32,
    pub code_name: u32,
    pub code_first_line: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::PyOffsets {}
    // SAFETY: plain #[repr(C)] data with no padding-dependent invariants.
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::TrackedProc {}
}
