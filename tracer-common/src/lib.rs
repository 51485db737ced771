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

pub const DATA_HEADER_LEN: usize = core::mem::size_of::<EventHeader>() + 8;

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
}

pub const DROP_REASONS: u32 = 4;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS as usize] = [
        DropReason::RingBufFull,
        DropReason::ConnMapFull,
        DropReason::ProcMapFull,
        DropReason::InflightMapFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::RingBufFull => "ringbuf_full",
            DropReason::ConnMapFull => "conn_map_full",
            DropReason::ProcMapFull => "proc_map_full",
            DropReason::InflightMapFull => "inflight_map_full",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with no padding-dependent invariants.
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::TrackedProc {}
}
