//! Every map of the object, with the kernel-only types of their values. The agent finds them by
//! name (tracer_common::names::map, checked against the built object by the agent's tests).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    ConnKey, DataEvent, PyOffsets, SslKey, StackEvent, ThreadRequest, TrackedProc, DROP_REASONS, KCONFIG_LEN,
    MAX_CONNECTIONS, MAX_INFLIGHT_SYSCALLS, MAX_THREAD_REQUESTS, MAX_TLS_SESSIONS, MAX_TRACKED_PIDS, STACK_READ_BLOCK,
};

// ---- processes and connections ---------------------------------------------------------------

#[map]
pub static TRACKED: HashMap<u32, TrackedProc> = HashMap::with_max_entries(MAX_TRACKED_PIDS, 0);

/// The followed sockets and their CONN_* flags; read and written through conns.rs only.
#[map]
pub static CONNS: HashMap<ConnKey, u32> = HashMap::with_max_entries(MAX_CONNECTIONS, 0);

/// Arguments saved at syscall entry, keyed by pid_tgid, read back at exit. LRU so that a thread
/// that dies inside a syscall cannot leak an entry forever. A thread's entry is written in place
/// and marked `Op::Done` at the exit instead of being deleted and inserted again: that is one
/// map operation per program run instead of two, on the hottest path there is.
#[map]
pub static INFLIGHT: LruHashMap<u64, Inflight> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Inflight {
    pub start_ns: u64,
    /// Buffer, iovec array or msghdr pointer; for connect the sockaddr pointer.
    pub ptr: u64,
    /// iovec count; for connect the sockaddr's length.
    pub aux: u64,
    pub fd: i32,
    pub op: Op,
    /// The socket's CONNS flags at entry (0 for connect), so that the exit needs no
    /// second lookup to know a client socket from a server one.
    pub how: u32,
    pub _pad: u32,
}

/// Which syscall an INFLIGHT entry was saved by (or, for the exit-only reads, which one a read
/// record describes), grouped by argument layout.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
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
    /// getsockopt(SOL_SOCKET, SO_ERROR) on a followed outgoing socket: `ptr` is the int's address.
    SoError,
    /// A read or write of TLS ciphertext (inside an SSL call, or on a socket marked CONN_TLS):
    /// its bytes are not sent (the libssl probes send the plaintext), its failures are.
    CipherRead,
    CipherWrite,
    /// The entry's exit has run: nothing is in flight on this thread.
    Done,
}

// ---- TLS: libssl calls in flight, and each SSL object's socket ---------------------------------

/// The SSL_read/SSL_write call each thread is in, from its entry to its return. LRU like
/// INFLIGHT: a thread that dies inside the call cannot leak its entry.
#[map]
pub static SSL_CALLS: LruHashMap<u64, SslCall> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

/// The socket of each `SSL*`, from SSL_set_fd or from a syscall made inside an SSL call.
#[map]
pub static SSL_FDS: LruHashMap<SslKey, i32> = LruHashMap::with_max_entries(MAX_TLS_SESSIONS, 0);

/// Sockets given to SSL_set_fd before they were followed (wrapped, then connected: Python's
/// `SSLSocket.connect`): the connect's exit marks them CONN_TLS at once, so that the handshake's
/// ciphertext is never sent. Cleared by the close of the descriptor.
#[map]
pub static TLS_PENDING: LruHashMap<ConnKey, u64> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct SslCall {
    pub start_ns: u64,
    pub ssl: u64,
    /// The caller's plaintext buffer.
    pub buf: u64,
    /// SSL_read_ex/SSL_write_ex: where the byte count is written (0 for SSL_read/SSL_write, whose
    /// return value is the count).
    pub count_at: u64,
    /// The socket, -1 until known.
    pub fd: i32,
    /// 1 for a write.
    pub write: u32,
    /// The Python stack was walked for this call (a write on a client socket).
    pub walked: u32,
    pub _pad: u32,
}

// ---- output ----------------------------------------------------------------------------------

/// 4 MiB: at this machine's saturation (~5000 req/s) the agent drains about 10 MB/s, so this is
/// ~0.4 s of slack for a stalled agent. Its pages count in the agent's RSS (mapped twice), so
/// bigger is not free. Overflow is counted in DROPS.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU assembly area for a data record: too big for the 512-byte BPF stack.
#[map]
pub static SCRATCH: PerCpuArray<DataEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASONS, 0);

// ---- CPython: GC pauses and GIL waits (entry time by thread) ----------------------------------

#[map]
pub static GC_STARTED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

#[map]
pub static GIL_REQUESTED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_INFLIGHT_SYSCALLS, 0);

// ---- CPython: stack walks --------------------------------------------------------------------

#[map]
pub static PY_OFFSETS: HashMap<u32, PyOffsets> = HashMap::with_max_entries(MAX_TRACKED_PIDS, 0);

/// Kernel facts from the agent (KCONFIG_* indexes), read from the kernel's BTF.
#[map]
pub static KCONFIG: Array<u64> = Array::with_max_entries(KCONFIG_LEN, 0);

/// When each thread last walked from the frame-evaluation probe (for KCONFIG_WALK_GAP_NS).
#[map]
pub static LAST_WALK: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16_384, 0);

#[map]
pub static STACK_SCRATCH: PerCpuArray<StackScratch> = PerCpuArray::with_max_entries(1, 0);

/// The stack record being built, and the last frame and code object read. The extra 8 bytes
/// let an offset masked below STACK_READ_BLOCK be read as a u64 without leaving the buffer.
#[repr(C)]
pub struct StackScratch {
    pub ev: StackEvent,
    pub frame: [u8; STACK_READ_BLOCK + 8],
    pub code: [u8; STACK_READ_BLOCK + 8],
}

// ---- CPU sampler: which request each thread is serving ---------------------------------------

/// By thread id (thread_request.rs keeps it). LRU: a thread that dies mid-request cannot leak.
#[map]
pub static THREAD_REQUEST: LruHashMap<u32, ThreadRequest> = LruHashMap::with_max_entries(MAX_THREAD_REQUESTS, 0);
