//! Types shared by the eBPF programs and the agent. Every type is `#[repr(C)]` and plain data:
//! the kernel side writes them into maps and the ring buffer, the agent reads them back.
//!
//! `no_std` for the kernel side; the `user` feature adds the agent's half (aya's `Pod` for map
//! values, and `decode` for ring-buffer records), which needs `std`.
#![cfg_attr(not(feature = "user"), no_std)]

mod abi_enum;
pub mod events;
pub mod maps;
pub mod names;
pub mod python;

#[cfg(feature = "user")]
pub mod decode;

pub use events::*;
pub use maps::*;
pub use python::*;
