//! Ring-buffer records: what the kernel side writes and the agent decodes (see `decode` for the
//! agent's half). Every record starts with an [`EventHeader`] whose `kind` is an [`EventKind`].

/// Bytes of payload copied per read or write. A power of two, so the kernel side can bound a
/// length with a mask the verifier understands. Request and response heads longer than this are
/// truncated; the agent marks such spans.
pub const CAPTURE_LEN: usize = 4096;
/// Unread bytes in the 4 MiB ring buffer above which a read's or write's capture is cut to
/// [`PRESSED_CAPTURE_LEN`]. A relayed body costs a full record per 4 KiB chunk and direction
/// (uWSGI's HTTP router reads each chunk from the worker and writes it to the client): a 1 MiB
/// upload and a 1 MiB download back to back are 4 MiB of records, which filled the ring
/// whenever the agent was not scheduled within a few milliseconds, and the records dropped
/// took their byte counts with them (the span then said `response_incomplete`). The record's
/// count is what body framing needs; its bytes only matter where heads and chunk-size lines lie.
pub const PRESSURE_UNREAD_BYTES: u64 = 2 << 20;
/// The capture while the ring is past [`PRESSURE_UNREAD_BYTES`]: most request and response
/// heads still fit, and a record costs about a quarter of a full one, so the ring's second half
/// holds some 1,900 of them instead of 500.
pub const PRESSED_CAPTURE_LEN: usize = 1024;

/// How many of the `moved` bytes of a read or write to copy into its record, with `unread`
/// bytes already waiting in the ring buffer, and whether the ring's pressure (more than
/// [`PRESSURE_UNREAD_BYTES`] unread) cut them short (the record's DATA_FLAG_PRESSED).
#[inline]
pub fn capture_len(moved: u64, unread: u64) -> (usize, bool) {
    let pressed = unread > PRESSURE_UNREAD_BYTES;
    let cap = if pressed { PRESSED_CAPTURE_LEN } else { CAPTURE_LEN };
    if moved > cap as u64 {
        (cap, pressed)
    } else {
        (moved as usize, false)
    }
}

/// The scratch buffer is twice the capture window so that "offset < CAPTURE_LEN" plus
/// "length <= CAPTURE_LEN" is provably in bounds when gathering iovecs.
pub const SCRATCH_LEN: usize = 2 * CAPTURE_LEN;
/// Iovecs of a readv/writev/recvmsg/sendmsg that are gathered into the capture (bounded loop).
pub const MAX_IOVECS: usize = 4;
/// Longest socket address copied from accept (sockaddr_un is 110 bytes).
pub const SOCKADDR_LEN: usize = 112;

/// Python frames kept per stack walk, innermost first. A Flask request's handler sits about 20
/// frames deep under Gunicorn; 32 leaves room for middleware and helpers.
pub const MAX_STACK_FRAMES: usize = 32;

crate::abi_enum! {
    /// What a ring-buffer record is. The first field of every record.
    pub enum EventKind {
        /// An accepted connection; `fd` is the new socket.
        Accept = 1 => "accept",
        /// Bytes received on a tracked connection.
        Read = 2 => "read",
        /// Bytes sent on a tracked connection.
        Write = 3 => "write",
        /// A tracked connection was closed by the process.
        Close = 4 => "close",
        /// A tracked process forked (or created a thread: `child` may be a thread id).
        Fork = 5 => "fork",
        /// A tracked process exited (its whole thread group).
        Exit = 6 => "exit",
        /// One garbage collection: start_ns..end_ns is the pause.
        GcPause = 7 => "gc_pause",
        /// A thread took the GIL back: start_ns..end_ns is the wait (PyEval_RestoreThread).
        GilWait = 8 => "gil_wait",
        /// A tracked process executed a new program (same pid, new image).
        Exec = 9 => "exec",
        /// A walk of the Python stack of one thread (a [`StackEvent`]).
        Stack = 10 => "stack",
        /// A tracked process connected a socket (an [`AcceptEvent`] whose address is the peer's).
        Connect = 11 => "connect",
        /// A followed outgoing socket failed: `ret` is the negated errno a read or write returned
        /// (ECONNRESET, ECONNREFUSED after a non-blocking connect, ...) or that `SO_ERROR` held,
        /// or 0 for a read that found the peer's end of stream. A [`ProcEvent`].
        SockError = 12 => "sock_error",
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
    /// The syscall's return value: bytes transferred, or the accepted fd; for Connect the
    /// connect's own (0, or a negated errno such as -EINPROGRESS or -ECONNREFUSED).
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
/// The bytes are TLS plaintext, read from libssl's SSL_read/SSL_write (the socket's own bytes are
/// ciphertext and are not sent).
pub const DATA_FLAG_TLS: u32 = 4;
/// The capture was cut to [`PRESSED_CAPTURE_LEN`] because the ring buffer was filling up (the
/// byte count is right; bytes past the cut are counted, not parsed).
pub const DATA_FLAG_PRESSED: u32 = 8;

pub const DATA_HEADER_LEN: usize = size_of::<EventHeader>() + 8;

/// Address families as the kernel numbers them (`sa_family`, `skc_family`).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Accept and Connect records.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptEvent {
    pub header: EventHeader,
    pub listen_fd: i32,
    /// Bytes of `addr` the kernel filled in (0 when the caller passed no address buffer).
    pub addr_len: u32,
    pub addr: [u8; SOCKADDR_LEN],
    /// Connect only: the socket's own address, read from the kernel's socket at the exit.
    /// `local_family` is AF_INET (2) or AF_INET6 (10), 0 when it could not be read.
    pub local_family: u16,
    /// Host byte order.
    pub local_port: u16,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub local_addr: [u8; 16],
}

/// Close, Fork, Exit, Exec, GcPause and GilWait records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the record can be built in a literal")]
pub struct ProcEvent {
    pub header: EventHeader,
    /// Fork: the new task's id (a pid, or a thread id when a thread was created).
    pub child: u32,
    pub _pad: u32,
}

/// Why a stack walk was made.
pub const STACK_TRIGGER_FRAME_EVAL: u32 = 1;
/// A write on a connection the process opened (a database query, an HTTP call): the walk names
/// the Python code that made it.
pub const STACK_TRIGGER_CLIENT_WRITE: u32 = 2;
/// The CPU sampler (`pytracer profile`): the header's `fd` is the connection whose request the
/// thread was serving (-1: none), `ret` that request's first read's start time.
pub const STACK_TRIGGER_SAMPLE: u32 = 3;

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
    /// The frame's current instruction as the kernel read it (0 when the version's offset is not
    /// known): `f_lasti` up to 3.10, else the low 32 bits of `prev_instr`/`instr_ptr` minus the
    /// code object's address. The agent turns it into a line (cpython/lines.rs).
    pub instr: u32,
}

/// A Python stack, innermost frame first. Only `depth` frames are sent.
#[repr(C)]
#[derive(Clone, Copy)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the record can be built in a literal")]
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

#[cfg(test)]
mod capture_tests {
    use super::*;

    #[test]
    fn capture_is_cut_only_while_the_ring_fills() {
        assert_eq!(capture_len(100, 0), (100, false));
        assert_eq!(capture_len(65_536, 0), (CAPTURE_LEN, false), "cut by the window, not by pressure");
        assert_eq!(capture_len(4096, PRESSURE_UNREAD_BYTES), (CAPTURE_LEN, false), "at the threshold: not yet");
        assert_eq!(capture_len(4096, PRESSURE_UNREAD_BYTES + 1), (PRESSED_CAPTURE_LEN, true));
        assert_eq!(capture_len(300, 3 << 20), (300, false), "a short head is whole either way");
    }
}
