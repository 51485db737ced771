//! Ring-buffer records, decoded by tracer-common's user half next to their `#[repr(C)]` layouts.
pub use tracer_common::decode::{decode, DecodeError, Event};
