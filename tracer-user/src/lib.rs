//! pytracer: zero-touch tracing of Python web servers from outside the process.
pub mod agent;
pub mod bpf;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod cpython;
pub mod db;
pub mod discovery;
pub mod export;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod piece;
pub mod procinfo;
pub mod protocols;
pub mod service;
pub mod sockaddr;
pub mod spans;
// The old name, until every importer says `spans`.
pub use spans as span;
pub mod stats;
