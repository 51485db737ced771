//! The name of every map and program in the eBPF object, which is how the agent finds them.
//!
//! aya-ebpf's macros name a map after its static and a program after its function, and take no
//! constant in their place; so the kernel side spells these as identifiers, and the agent's unit
//! test `bpf::object_names` checks the built object against [`map::ALL`] and [`program::ALL`] both
//! ways (nothing missing, nothing unlisted).

/// Map names (the statics in tracer-ebpf's maps.rs).
pub mod map {
    pub const TRACKED: &str = "TRACKED";
    pub const CONNS: &str = "CONNS";
    pub const INFLIGHT: &str = "INFLIGHT";
    pub const EVENTS: &str = "EVENTS";
    pub const SCRATCH: &str = "SCRATCH";
    pub const DROPS: &str = "DROPS";
    pub const GC_STARTED: &str = "GC_STARTED";
    pub const GIL_REQUESTED: &str = "GIL_REQUESTED";
    pub const PY_OFFSETS: &str = "PY_OFFSETS";
    pub const KCONFIG: &str = "KCONFIG";
    pub const LAST_WALK: &str = "LAST_WALK";
    pub const STACK_SCRATCH: &str = "STACK_SCRATCH";
    pub const SSL_CALLS: &str = "SSL_CALLS";
    pub const SSL_FDS: &str = "SSL_FDS";
    pub const TLS_PENDING: &str = "TLS_PENDING";
    pub const THREAD_REQUEST: &str = "THREAD_REQUEST";

    /// Every map of the object.
    pub const ALL: &[&str] = &[
        TRACKED,
        CONNS,
        INFLIGHT,
        EVENTS,
        SCRATCH,
        DROPS,
        GC_STARTED,
        GIL_REQUESTED,
        PY_OFFSETS,
        KCONFIG,
        LAST_WALK,
        STACK_SCRATCH,
        SSL_CALLS,
        SSL_FDS,
        TLS_PENDING,
        THREAD_REQUEST,
    ];
}

/// Program names (the functions under tracer-ebpf's probes/).
pub mod program {
    // Syscall entries (probes/accept_connect.rs, data.rs, close.rs), their one exit, and the
    // exit-only programs of reads and accepts.
    pub const EXIT_ACCEPT: &str = "exit_accept";
    pub const ENTER_CONNECT: &str = "enter_connect";
    pub const ENTER_GETSOCKOPT: &str = "enter_getsockopt";
    pub const EXIT_READ_BUF: &str = "exit_read_buf";
    pub const ENTER_WRITE_BUF: &str = "enter_write_buf";
    pub const EXIT_READ_IOV: &str = "exit_read_iov";
    pub const ENTER_WRITE_IOV: &str = "enter_write_iov";
    pub const EXIT_READ_MSG: &str = "exit_read_msg";
    pub const ENTER_WRITE_MSG: &str = "enter_write_msg";
    pub const ENTER_SENDFILE: &str = "enter_sendfile";
    pub const ENTER_CLOSE: &str = "enter_close";
    pub const SYS_EXIT: &str = "sys_exit";
    // Process life (probes/sched.rs).
    pub const SCHED_FORK: &str = "sched_fork";
    pub const SCHED_EXIT: &str = "sched_exit";
    pub const SCHED_EXEC: &str = "sched_exec";
    // CPython uprobes (probes/gc_gil.rs, probes/frame_eval.rs).
    pub const GC_START: &str = "gc_start";
    pub const GC_RETURN: &str = "gc_return";
    pub const GC_DONE: &str = "gc_done";
    pub const GIL_REQUEST: &str = "gil_request";
    pub const GIL_TAKEN: &str = "gil_taken";
    pub const PY_FRAME_EVAL: &str = "py_frame_eval";
    // libssl uprobes (probes/tls.rs).
    pub const SSL_SET_FD: &str = "ssl_set_fd";
    pub const SSL_READ: &str = "ssl_read";
    pub const SSL_READ_EX: &str = "ssl_read_ex";
    pub const SSL_WRITE: &str = "ssl_write";
    pub const SSL_WRITE_EX: &str = "ssl_write_ex";
    pub const SSL_RETURN: &str = "ssl_return";
    // The CPU sampler (probes/sampler.rs).
    pub const PROFILE_SAMPLE: &str = "profile_sample";

    /// Every program of the object.
    pub const ALL: &[&str] = &[
        EXIT_ACCEPT,
        ENTER_CONNECT,
        ENTER_GETSOCKOPT,
        EXIT_READ_BUF,
        ENTER_WRITE_BUF,
        EXIT_READ_IOV,
        ENTER_WRITE_IOV,
        EXIT_READ_MSG,
        ENTER_WRITE_MSG,
        ENTER_SENDFILE,
        ENTER_CLOSE,
        SYS_EXIT,
        SCHED_FORK,
        SCHED_EXIT,
        SCHED_EXEC,
        GC_START,
        GC_RETURN,
        GC_DONE,
        GIL_REQUEST,
        GIL_TAKEN,
        PY_FRAME_EVAL,
        SSL_SET_FD,
        SSL_READ,
        SSL_READ_EX,
        SSL_WRITE,
        SSL_WRITE_EX,
        SSL_RETURN,
        PROFILE_SAMPLE,
    ];
}

/// Program name → the tracepoints it serves (category, names), as the agent attaches them; the
/// bench reads it too, to tell in which syscalls every process runs a program. Programs are
/// grouped by argument layout. Reads and accepts are hooked at their exit only (their arguments
/// come from the registers); the other syscalls have an entry program, and one exit program
/// serves them all (it finds the saved entry by thread id).
pub const TRACEPOINTS: &[(&str, &str, &[&str])] = &[
    (program::EXIT_ACCEPT, "syscalls", &["sys_exit_accept", "sys_exit_accept4"]),
    (program::EXIT_READ_BUF, "syscalls", &["sys_exit_read", "sys_exit_recvfrom"]),
    (program::EXIT_READ_IOV, "syscalls", &["sys_exit_readv"]),
    (program::EXIT_READ_MSG, "syscalls", &["sys_exit_recvmsg"]),
    (program::ENTER_WRITE_BUF, "syscalls", &["sys_enter_write", "sys_enter_sendto"]),
    (program::ENTER_WRITE_IOV, "syscalls", &["sys_enter_writev"]),
    (program::ENTER_WRITE_MSG, "syscalls", &["sys_enter_sendmsg"]),
    (program::ENTER_SENDFILE, "syscalls", &["sys_enter_sendfile64"]),
    (program::ENTER_CLOSE, "syscalls", &["sys_enter_close"]),
    (program::ENTER_CONNECT, "syscalls", &["sys_enter_connect"]),
    (program::ENTER_GETSOCKOPT, "syscalls", &["sys_enter_getsockopt"]),
    (
        program::SYS_EXIT,
        "syscalls",
        &[
            "sys_exit_write",
            "sys_exit_sendto",
            "sys_exit_writev",
            "sys_exit_sendmsg",
            "sys_exit_sendfile64",
            "sys_exit_connect",
            "sys_exit_getsockopt",
        ],
    ),
    (program::SCHED_FORK, "sched", &["sched_process_fork"]),
    (program::SCHED_EXIT, "sched", &["sched_process_exit"]),
    (program::SCHED_EXEC, "sched", &["sched_process_exec"]),
];
