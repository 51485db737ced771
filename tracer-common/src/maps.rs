//! Keys, values, sizes and indexes of the maps both sides use.

pub const MAX_TRACKED_PIDS: u32 = 16_384;
pub const MAX_CONNECTIONS: u32 = 65_536;
pub const MAX_INFLIGHT_SYSCALLS: u32 = 16_384;

/// Key of the connection map: a socket is identified by its process and descriptor, not by the
/// thread, because a keep-alive connection may be served by several threads (gthread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub tgid: u32,
    pub fd: u32,
}

/// CONNS values: how the process got the socket (bit 0), and whether it carries TLS (bit 1).
pub const CONN_ACCEPTED: u32 = 0;
pub const CONN_CONNECTED: u32 = 1;
/// Set once libssl was seen using the socket (SSL_set_fd, or a syscall inside an SSL call): its
/// bytes are ciphertext, never sent as data; the plaintext comes from the libssl probes.
pub const CONN_TLS: u32 = 2;
/// The entry of a socket the process closed: left in place for the next socket that gets its
/// descriptor number (tracer-ebpf's conns.rs says why), never a followed socket's flags.
pub const CONN_CLOSED: u32 = u32::MAX;
/// Only sockets with a descriptor number below this keep their closed entry: at most this many
/// closed entries per process stay in the map.
pub const KEEP_BELOW_FD: u32 = 32;

/// SSL objects remembered with their socket (an LRU: an `SSL*` freed without a trace ages out).
pub const MAX_TLS_SESSIONS: u32 = 65_536;

/// Key of the SSL-to-socket map: the process and its `SSL*`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the key can be built in a literal")]
pub struct SslKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

/// Value of the tracked-process map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the value can be built in a literal")]
pub struct TrackedProc {
    /// The tracked process it descends from (itself for a root).
    pub root_tgid: u32,
    pub _pad: u32,
}

/// Threads whose current request is remembered for the CPU sampler (LRU).
pub const MAX_THREAD_REQUESTS: u32 = 16_384;

/// THREAD_REQUEST values, by thread id: the accepted connection whose request the thread is
/// serving, kept only while the CPU sampler runs (KCONFIG_PROFILING). Set at the first read of a
/// request (a read on a new connection, or after the thread wrote a response on it), removed when
/// the thread closes that connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[expect(clippy::pub_underscore_fields, reason = "explicit padding, public so the value can be built in a literal")]
pub struct ThreadRequest {
    pub tgid: u32,
    pub fd: i32,
    /// Start of the request's first read (CLOCK_MONOTONIC).
    pub start_ns: u64,
    /// 1 once the thread wrote on the connection: its next read starts the next request.
    pub answered: u32,
    pub _pad: u32,
}

crate::abi_enum! {
    /// Indexes of the per-CPU drop counters. Every event the kernel side cannot deliver is counted.
    pub enum DropReason {
        /// The ring buffer was full: the agent fell behind.
        RingBufFull = 0 => "ringbuf_full",
        /// The connection map was full: a new connection was not tracked.
        ConnMapFull = 1 => "conn_map_full",
        /// The tracked-process map was full: a forked child was not tracked.
        ProcMapFull = 2 => "proc_map_full",
        /// The in-flight syscall map was full: a read or write was not seen.
        InflightMapFull = 3 => "inflight_map_full",
        /// A Python stack was not sent because the ring buffer was past the share stacks may use:
        /// the requests' own records keep their room.
        StackThrottled = 4 => "stack_throttled",
        /// An SSL_read/SSL_write moved plaintext but no followed socket was seen under that
        /// `SSL*`: memory BIOs (asyncio's SSLObject), or a socket connected before tracing began.
        /// The bytes are not attributed.
        TlsNoSocket = 5 => "tls_unattributed",
        /// The per-thread SSL call map or the SSL-to-socket map was full.
        TlsMapFull = 6 => "tls_map_full",
    }
}

/// Entries of the drop-counter map.
pub const DROP_REASONS: u32 = DropReason::COUNT as u32;

/// Index in the KCONFIG array map of `offsetof(struct task_struct, thread.fsbase)` (0: unknown,
/// and walks from syscalls are off).
pub const KCONFIG_TASK_FSBASE: u32 = 0;
/// Index of the least time between two frame-evaluation walks on one thread (0: walk on every
/// hit). A walk costs ~10-20 µs here against the hit's ~1.3 µs trap, and a Flask request has
/// ~120 hits: in sampled windows a few walks per request find the handler at a fraction of it.
pub const KCONFIG_WALK_GAP_NS: u32 = 1;
/// Indexes of the kernel struct member offsets the connect exit reads the new socket's own
/// address with (current task -> files -> fdtable -> file -> socket -> sock), from the kernel's
/// BTF. The agent cannot read it later from /proc: a short call's socket is often closed (its fd
/// even reused) before the agent sees the connect record, and same-host stitching needs it.
pub const KCONFIG_TASK_FILES: u32 = 2;
pub const KCONFIG_FILES_FDT: u32 = 3;
pub const KCONFIG_FDT_MAX_FDS: u32 = 4;
pub const KCONFIG_FDT_FD: u32 = 5;
pub const KCONFIG_FILE_PRIVATE_DATA: u32 = 6;
pub const KCONFIG_SOCKET_SK: u32 = 7;
pub const KCONFIG_SKC_FAMILY: u32 = 8;
pub const KCONFIG_SKC_NUM: u32 = 9;
pub const KCONFIG_SKC_RCV_SADDR: u32 = 10;
pub const KCONFIG_SKC_V6_RCV_SADDR: u32 = 11;
/// 1 when every offset above was found (some are legitimately 0).
pub const KCONFIG_SOCK_OFFSETS_OK: u32 = 12;
/// 1 while the CPU sampler runs (`pytracer profile`): only then is THREAD_REQUEST kept, so the
/// data path of `trace` and `run` does not pay for it.
pub const KCONFIG_PROFILING: u32 = 13;
pub const KCONFIG_LEN: u32 = 16;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with no padding-dependent invariants.
    unsafe impl aya::Pod for super::ConnKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrackedProc {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SslKey {}
    unsafe impl aya::Pod for super::ThreadRequest {}
}
