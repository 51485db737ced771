//! HTTP/1.x (and uwsgi requests) as seen on the wire: heads, body framing, reassembly of each
//! direction, request/response pairing, the client side as a client protocol, and the wire's
//! guess at a route.
pub mod chunked;
pub mod client;
pub mod connection;
pub mod head;
pub mod http1;
pub mod redact;
pub mod route;
pub mod stream;
pub mod traceparent;
pub mod uwsgi;
