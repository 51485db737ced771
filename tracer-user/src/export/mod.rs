//! Where spans go besides the JSON lines.
pub mod otlp;
pub mod proto;
