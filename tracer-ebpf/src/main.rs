//! Kernel side of pytracer: syscall and scheduler tracepoints, filtered to the tracked processes.
//!
//! Cost model: every program first looks its process up in TRACKED (one hash lookup) and returns
//! when it is not there, so untraced processes pay only that; the exit-only programs of reads and
//! accepts return even before it on a value that moved nothing (EAGAIN). A run costs most of its
//! time in the hook itself, so hooks that need no entry have none (syscall::exit_args).
//!
//! Reads and writes are followed only on sockets the process accepted while tracked (CONNS),
//! which keeps file and pipe I/O out. On TLS sockets the plaintext comes from libssl's uprobes
//! instead (probes/tls.rs, attached per process), and the syscalls' ciphertext is only watched
//! for failures.
//! Programs only read user memory; they never write it.
//!
//! Layout: `maps` holds every map, `conns` keeps the followed sockets, `output` writes the ring
//! buffer and counts what it could not, `probes/` has one file per hook, `python_stack` walks
//! CPython's frames for them.
#![no_std]
#![no_main]
// A call that is not inlined is a BPF-to-BPF call: the verifier then checks the callee apart, and
// pointers to map values and context reads do not survive that well. The helpers are small and
// must sit inside the programs that use them.
#![allow(clippy::inline_always, reason = "eBPF helpers are inlined into each program on purpose")]
#![allow(clippy::needless_pass_by_value, reason = "aya's program macros hand each program its context by value")]
#![allow(clippy::similar_names, reason = "tgid and tid are the kernel's own names")]

mod conns;
mod maps;
mod output;
mod probes;
mod python_stack;
mod sock;
mod syscall;
mod task;
mod thread_request;
mod user_mem;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
