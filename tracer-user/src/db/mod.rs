//! Database client protocols seen from the client's side of a connection: what a traced app wrote
//! to PostgreSQL or Redis and what it read back, turned into one [`DbCall`] per round trip (an exit
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
mod in_flight;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;

#[cfg(test)]
pub(crate) mod fixtures;

pub use crate::calls::{DbCall, ProtocolStats};
pub use crate::piece::Piece;
use crate::spans::semconv;
pub use crate::spans::Attributes;
pub use mysql::MysqlConnection;
pub use postgres::PgConnection;
pub use redis::RedisConnection;

/// What a database connection's parser could not follow: the counters every client protocol
/// keeps.
pub type DbStats = ProtocolStats;

/// Longest `db.query.text` kept, in bytes (cut at a character boundary).
pub const MAX_QUERY_TEXT: usize = 2048;

/// Builds the attributes every call carries.
pub(crate) fn base_attributes(system: &'static str, operation: &str, query_text: Option<&str>) -> Attributes {
    let mut a = Attributes::default();
    a.insert(semconv::DB_SYSTEM_NAME.into(), system.into());
    if !operation.is_empty() {
        a.insert(semconv::DB_OPERATION_NAME.into(), operation.into());
    }
    if let Some(q) = query_text {
        a.insert(semconv::DB_QUERY_TEXT.into(), q.into());
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
