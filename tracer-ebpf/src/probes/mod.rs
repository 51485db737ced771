//! One file per hook. Each program is named in tracer_common::names::program, and the agent
//! attaches it (tracer-user's bpf/probes.rs). A new hook: a file here, its `mod` line below, its
//! name in names.rs, and its attachment on the agent's side.
mod accept_connect;
mod close;
mod data;
mod frame_eval;
mod gc_gil;
mod sampler;
mod sched;
mod sys_exit;
mod tls;
