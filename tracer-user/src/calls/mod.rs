//! What a client protocol is to the agent: a parser fed an outgoing connection's writes and reads
//! in order, reporting one [`Call`] per finished round trip (an exit span's worth of facts) and
//! counting, in [`ProtocolStats`], what it could not follow.
//!
//! Neutral ground: this module knows no protocol. Each one implements [`ClientProtocol`] in its
//! own folder (`db/postgres/`, `db/redis/`, `http/client.rs`), and `crate::protocols::detect`
//! picks the one a connection speaks from its first write.
use crate::piece::Piece;

/// A span's attributes (the same map as `spans::Attributes`, named here so that this neutral
/// module depends on no span code), in insertion order. Names are nearly all the semantic
/// conventions' constants: borrowed, they cost no allocation (a span has about 20 of them);
/// only names built at run time (captured headers) are owned. Hashed with foldhash: SipHash
/// was the larger part of filling the map.
pub type Attributes =
    indexmap::IndexMap<std::borrow::Cow<'static, str>, serde_json::Value, foldhash::fast::RandomState>;

/// One client connection's parser. Writes are what the client sent, reads what it received.
pub trait ClientProtocol: Send {
    /// What the client wrote.
    fn on_write(&mut self, p: &Piece) -> Vec<Call>;
    /// What the client read.
    fn on_read(&mut self, p: &Piece) -> Vec<Call>;
    /// The connection ended: calls still waiting for their reply are returned with an error.
    fn on_close(&mut self) -> Vec<Call>;
    /// What the parser could not follow so far.
    fn stats(&self) -> &ProtocolStats;
    /// The protocol's name, the `protocol` label of its metrics: `postgresql`, `redis`, `http`.
    fn protocol(&self) -> &'static str;
}

/// One finished call, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Db(DbCall),
    Http(HttpCall),
}

impl Call {
    /// Entry of the first write that carried the call's first byte (monotonic ns, as the kernel's).
    pub fn start_ns(&self) -> u64 {
        match self {
            Call::Db(c) => c.start_ns,
            Call::Http(c) => c.start_ns,
        }
    }

    /// Exit of the read that completed the reply (or of the last syscall seen).
    pub fn end_ns(&self) -> u64 {
        match self {
            Call::Db(c) => c.end_ns,
            Call::Http(c) => c.end_ns,
        }
    }

    /// The call got no complete reply (the connection ended first).
    pub fn unanswered(&self) -> bool {
        match self {
            Call::Db(c) => c.error.is_some(),
            Call::Http(c) => c.incomplete.is_some(),
        }
    }
}

/// One database round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct DbCall {
    /// Entry of the first write that carried the call's first byte (monotonic ns, as the kernel's).
    pub start_ns: u64,
    /// Exit of the read that completed the reply (or of the last syscall seen, when the
    /// connection ended first).
    pub end_ns: u64,
    /// `postgresql` or `redis`.
    pub system: &'static str,
    /// `db.operation.name`: `SELECT`, `INSERT`, `GET`, `CLIENT SETINFO`, `BATCH`, ...
    pub operation: String,
    /// `db.query.text`, literals replaced by `?` (PostgreSQL), or the command with every argument
    /// replaced by `?` (Redis).
    pub query_text: Option<String>,
    /// Every attribute of the span, `db.system.name`, `db.operation.name` and `db.query.text`
    /// included.
    pub attributes: Attributes,
    /// The server's error message (ErrorResponse `M`, Redis `-ERR ...`), or why the call has no
    /// reply (connection closed).
    pub error: Option<String>,
}

/// One HTTP request the client sent and what it got back: what a client span needs of the
/// exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// Entry of the write that carried the request's first bytes.
    pub start_ns: u64,
    /// Exit of the read that completed the response (or of the last syscall seen).
    pub end_ns: u64,
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The request's `Host` header.
    pub host: Option<String>,
    /// The request's own `traceparent` header: the app propagates context itself.
    pub traceparent: Option<String>,
    /// The response's status code, when a response head was read.
    pub status: Option<u16>,
    /// Why the exchange ended without a complete response.
    pub incomplete: Option<&'static str>,
    /// Every header of the request and of the response, for those the configuration captures.
    pub request_headers: Vec<(std::borrow::Cow<'static, str>, String)>,
    pub response_headers: Vec<(std::borrow::Cow<'static, str>, String)>,
}

/// What a connection's parser could not follow. Each counter only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolStats {
    /// Times the framing was lost (message headers not captured, or not valid).
    pub desyncs: u64,
    /// Times the parser found a message boundary again after losing it.
    pub resyncs: u64,
    /// Calls dropped because the framing was lost while they were in flight.
    pub calls_lost: u64,
    /// Calls whose reply could not be followed to its end (later headers beyond the capture):
    /// ended at the last read before the client wrote again or closed, without the reply's
    /// status.
    pub unframed_replies: u64,
    /// Requests whose end was beyond the capture: taken as one call.
    pub unframed_requests: u64,
    /// Replies that matched no request (a reply whose request was not seen).
    pub unmatched_replies: u64,
    /// The connection switched to TLS (or GSSAPI encryption), or was given up on: nothing more is
    /// parsed.
    pub given_up: bool,
}

impl ProtocolStats {
    /// Every counter by name (the `event` label of its metric); `given_up` counts connections.
    pub fn events(&self) -> [(&'static str, u64); 7] {
        [
            ("desyncs", self.desyncs),
            ("resyncs", self.resyncs),
            ("calls_lost", self.calls_lost),
            ("unframed_replies", self.unframed_replies),
            ("unframed_requests", self.unframed_requests),
            ("unmatched_replies", self.unmatched_replies),
            ("given_up", u64::from(self.given_up)),
        ]
    }

    /// What grew since `earlier` (an older copy of the same connection's stats).
    #[must_use]
    pub fn since(&self, earlier: &ProtocolStats) -> ProtocolStats {
        ProtocolStats {
            desyncs: self.desyncs.saturating_sub(earlier.desyncs),
            resyncs: self.resyncs.saturating_sub(earlier.resyncs),
            calls_lost: self.calls_lost.saturating_sub(earlier.calls_lost),
            unframed_replies: self.unframed_replies.saturating_sub(earlier.unframed_replies),
            unframed_requests: self.unframed_requests.saturating_sub(earlier.unframed_requests),
            unmatched_replies: self.unmatched_replies.saturating_sub(earlier.unmatched_replies),
            given_up: self.given_up && !earlier.given_up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_since_an_earlier_copy() {
        let before = ProtocolStats { desyncs: 1, resyncs: 1, ..ProtocolStats::default() };
        let now = ProtocolStats { desyncs: 3, resyncs: 1, given_up: true, ..ProtocolStats::default() };
        let d = now.since(&before);
        assert_eq!(d, ProtocolStats { desyncs: 2, given_up: true, ..ProtocolStats::default() });
        assert_eq!(d.events()[0], ("desyncs", 2));
        assert_eq!(d.events()[6], ("given_up", 1));
        assert_eq!(now.since(&now), ProtocolStats::default());
    }
}
