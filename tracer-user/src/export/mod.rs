//! Where spans go: the sink the agent writes to, and the OTLP/HTTP exporter behind it.
pub mod otlp;
pub mod pretty;
pub mod proto;
pub mod sink;
