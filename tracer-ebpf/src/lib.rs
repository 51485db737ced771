#![no_std]
// Exists so tracer-user can name this crate as a build-dependency: cargo then reruns its build.rs
// (which builds the real eBPF binary) whenever this crate changes.
