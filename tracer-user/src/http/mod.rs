//! HTTP/1.x as seen on the wire: reassembly of each direction, request/response pairing, and the
//! span attributes of a finished exchange.
pub mod attributes;
pub mod client;
pub mod connection;
pub mod redact;
pub mod stream;
pub mod traceparent;
pub mod uwsgi;
