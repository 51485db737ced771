//! The agent's side of the kernel programs: loading and attaching them, and decoding their events.
pub mod events;
pub mod kernel_btf;
#[cfg(test)]
mod object_names;
pub mod probes;
pub mod usdt;
