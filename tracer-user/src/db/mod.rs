//! Database client protocols seen from the client's side of a connection: what a traced app wrote
//! to PostgreSQL or Redis and what it read back, turned into one [`Call`] per round trip (an exit
//! span's worth of facts).
//!
//! The input is the same as HTTP's: [`Piece`]s of which only a bounded prefix was captured. Writes
//! are what the client sent, reads what it received. Only framing and the few fields a span needs
//! are read; everything else (row data, bulk values, long parameters) is skipped by its declared
//! length, so a large result costs nothing to follow.
//!
//! When framing itself was not captured (a reply or request longer than the capture whose later
//! headers fell beyond it), the parsers lean on the client waiting for its replies, as psycopg
//! (outside pipeline mode) and redis-py do: a request cut short is taken as one call; a reply cut
//! short ends, without its status, at the last read before the client writes again (or closes),
//! and the next write and the read after it start at message boundaries again. Everything of the
//! kind is counted in [`DbStats`]. A connection that switches to TLS, or whose start-up cannot be
//! followed, is given up on.
//!
//! The conventions have no attribute for a Redis command's key count: it is `db.redis.key_count`
//! here, set when the command's key positions are known ([`redis::key_count`]).
//!
//! Attribute names follow the OpenTelemetry database semantic conventions (`db.system.name`,
//! `db.query.text`, `db.operation.name`, `db.namespace`, `db.response.status_code`,
//! `error.type`, `db.operation.batch.size`).
pub mod postgres;
pub mod redis;
pub mod sql;

#[cfg(test)]
mod fixtures;

pub use crate::piece::Piece;
pub use crate::span::Attributes;
pub use postgres::PgConnection;
pub use redis::RedisConnection;

/// A client protocol recognised from the first bytes a client wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Redis,
}

impl Protocol {
    /// The `db.system.name` value.
    pub fn system(self) -> &'static str {
        match self {
            Protocol::Postgres => postgres::SYSTEM,
            Protocol::Redis => redis::SYSTEM,
        }
    }
}

/// Recognises a PostgreSQL StartupMessage, SSLRequest, GSSENCRequest or CancelRequest, or a Redis
/// request (RESP array of bulk strings, or an inline command such as `PING`), from the first bytes
/// a client wrote on a connection. HTTP requests, and anything else, give None.
pub fn detect(first_write: &[u8]) -> Option<Protocol> {
    if postgres::looks_like_startup(first_write) {
        Some(Protocol::Postgres)
    } else if redis::looks_like_request(first_write) {
        Some(Protocol::Redis)
    } else {
        None
    }
}

/// One database round trip, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
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

impl Call {
    /// A span name per the conventions: `{operation}`, plus the namespace when known.
    pub fn span_name(&self) -> String {
        match self.attributes.get("db.namespace").and_then(|v| v.as_str()) {
            Some(ns) if !self.operation.is_empty() => format!("{} {ns}", self.operation),
            _ if !self.operation.is_empty() => self.operation.clone(),
            _ => self.system.to_string(),
        }
    }
}

/// What a connection's parser could not follow. Each counter only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbStats {
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

/// Longest `db.query.text` kept, in bytes (cut at a character boundary).
pub const MAX_QUERY_TEXT: usize = 2048;

/// Builds the attributes every call carries.
pub(crate) fn base_attributes(system: &'static str, operation: &str, query_text: Option<&str>) -> Attributes {
    let mut a = Attributes::new();
    a.insert("db.system.name".into(), system.into());
    if !operation.is_empty() {
        a.insert("db.operation.name".into(), operation.into());
    }
    if let Some(q) = query_text {
        a.insert("db.query.text".into(), q.into());
    }
    a
}

/// `p` with no more data than it moved (a defence against a malformed record).
pub(crate) fn clamp<'a>(p: &Piece<'a>) -> Piece<'a> {
    let n = p.data.len().min(usize::try_from(p.len).unwrap_or(usize::MAX));
    Piece { data: &p.data[..n], ..*p }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_recognises_each_client_and_rejects_http() {
        assert_eq!(detect(fixtures::PG_SSL_REQUEST), Some(Protocol::Postgres));
        assert_eq!(detect(fixtures::PG_STARTUP), Some(Protocol::Postgres));
        assert_eq!(detect(fixtures::REDIS_HELLO), Some(Protocol::Redis));
        assert_eq!(detect(b"PING\r\n"), Some(Protocol::Redis));
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), Some(Protocol::Redis));
        // Only the first bytes of a longer write.
        assert_eq!(detect(&fixtures::PG_STARTUP[..8]), Some(Protocol::Postgres));
        assert_eq!(detect(b"*3\r\n$3\r\nS"), Some(Protocol::Redis));
        for not in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /items/1 HTTP/1.1\r\n",
            b"POST /x HTTP/1.0\r\n",
            b"PRI * HTTP/2.0\r\n",
            b"",
            b"\x00\x00",
            b"\x00\x00\x00\x08\x00\x00\x00\x00",
            b"*",
            b"*x\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(detect(not), None, "{not:?}");
        }
    }

    #[test]
    fn pieces_claiming_more_data_than_moved_are_clamped() {
        let mut c = RedisConnection::new();
        // Two bytes moved, but the record carries a whole command.
        c.on_write(&Piece { data: fixtures::REDIS_GET, len: 2, start_ns: 0, end_ns: 1 });
        assert_eq!(c.in_flight(), 0);
        let mut pg = PgConnection::new();
        pg.on_write(&Piece { data: fixtures::PG_STARTUP, len: 3, start_ns: 0, end_ns: 1 });
        assert_eq!(pg.database(), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }

    /// What tests/apps/backend.py's `GET /items/1` sends and receives (checked against an
    /// strace of the app under Gunicorn: the same bytes as these fixtures), and the calls the
    /// exit spans are made of.
    #[test]
    fn backend_items_route_as_the_app_speaks_it() {
        use fixtures::*;
        let piece =
            |d: &'static [u8], i: u64| Piece { data: d, len: d.len() as u64, start_ns: i * 10, end_ns: i * 10 + 5 };
        let mut pg = PgConnection::new();
        let mut calls = Vec::new();
        let pg_script: [(bool, &'static [u8]); 9] = [
            (true, PG_SSL_REQUEST),
            (false, PG_SSL_NO),
            (true, PG_STARTUP),
            (false, PG_STARTUP_REPLY),
            // load_item: cur.execute("SELECT name FROM items WHERE id = %s", (item_id,))
            (true, PG_EXTENDED),
            (false, PG_EXTENDED_REPLY),
            // count_items: conn.execute("SELECT count(*) ... <> 'gone'", prepare=False)
            (true, PG_SIMPLE_QUERY),
            (false, PG_SIMPLE_REPLY),
            (true, PG_TERMINATE),
        ];
        for (i, (write, d)) in pg_script.into_iter().enumerate() {
            let p = piece(d, i as u64);
            calls.extend(if write { pg.on_write(&p) } else { pg.on_read(&p) });
        }
        calls.extend(pg.on_close());
        let mut redis = RedisConnection::new();
        let redis_script: [(bool, &'static [u8]); 14] = [
            // redis-py's connection handshake.
            (true, REDIS_HELLO),
            (false, REDIS_HELLO_REPLY),
            (true, REDIS_MAINT),
            (false, REDIS_MAINT_REPLY),
            (true, REDIS_SETINFO_NAME),
            (false, REDIS_SETINFO_NAME_REPLY),
            (true, REDIS_SETINFO_VER),
            (false, REDIS_SETINFO_VER_REPLY),
            // cache_get (a miss on the first request), cache_set, record_hit's pipeline.
            (true, REDIS_GET),
            (false, REDIS_GET_MISSING_REPLY),
            (true, REDIS_SET),
            (false, REDIS_SET_REPLY),
            (true, REDIS_PIPELINE),
            (false, REDIS_PIPELINE_REPLY),
        ];
        for (i, (write, d)) in redis_script.into_iter().enumerate() {
            let p = piece(d, 100 + i as u64);
            calls.extend(if write { redis.on_write(&p) } else { redis.on_read(&p) });
        }
        calls.extend(redis.on_close());
        let got: Vec<(&str, &str, Option<&str>, Option<&str>)> = calls
            .iter()
            .map(|c| (c.system, c.operation.as_str(), c.query_text.as_deref(), c.error.as_deref()))
            .collect();
        let setinfo_err = Some("ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.");
        assert_eq!(
            got,
            [
                ("postgresql", "SELECT", Some("SELECT name FROM items WHERE id = $1"), None),
                ("postgresql", "SELECT", Some("SELECT count(*) FROM items WHERE name <> ?"), None),
                ("redis", "HELLO", Some("HELLO ?"), None),
                (
                    "redis",
                    "CLIENT MAINT_NOTIFICATIONS",
                    Some("CLIENT MAINT_NOTIFICATIONS ? ? ?"),
                    Some("ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.")
                ),
                ("redis", "CLIENT SETINFO", Some("CLIENT SETINFO ? ?"), setinfo_err),
                ("redis", "CLIENT SETINFO", Some("CLIENT SETINFO ? ?"), setinfo_err),
                ("redis", "GET", Some("GET ?"), None),
                ("redis", "SET", Some("SET ? ? ? ?"), None),
                ("redis", "BATCH", Some("INCRBY ? ?; EXPIRE ? ?"), None),
            ]
        );
        assert_eq!((calls[0].start_ns, calls[0].end_ns), (40, 55));
        assert_eq!(calls[0].attributes["db.namespace"], "app");
    }
}
