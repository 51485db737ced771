//! The parser against bytes captured from redis-py and Redis (crate::db::fixtures), cut every
//! which way.
use super::*;
use crate::calls::{ClientProtocol, DbCall};
use crate::db::fixtures::*;
use crate::db::DbStats;

fn session() -> Vec<Sys> {
    vec![
        full(W, REDIS_HELLO),
        full(R, REDIS_HELLO_REPLY),
        full(W, REDIS_MAINT),
        full(R, REDIS_MAINT_REPLY),
        full(W, REDIS_SETINFO_NAME),
        full(R, REDIS_SETINFO_NAME_REPLY),
        full(W, REDIS_SETINFO_VER),
        full(R, REDIS_SETINFO_VER_REPLY),
        full(W, REDIS_SET),
        full(R, REDIS_SET_REPLY),
        full(W, REDIS_GET),
        full(R, REDIS_GET_REPLY),
        full(W, REDIS_GET_MISSING),
        full(R, REDIS_GET_MISSING_REPLY),
        full(W, REDIS_PIPELINE),
        full(R, REDIS_PIPELINE_REPLY),
        full(W, REDIS_HSET),
        full(R, REDIS_HSET_REPLY),
        full(W, REDIS_MGET),
        full(R, REDIS_MGET_REPLY),
        full(W, REDIS_LPUSH),
        full(R, REDIS_LPUSH_REPLY),
        full(W, REDIS_SET_BIG_HEAD),
        (W, REDIS_SET_BIG_VALUE, REDIS_SET_BIG_VALUE_LEN),
        full(W, REDIS_SET_BIG_CRLF),
        full(R, REDIS_SET_BIG_REPLY),
        full(W, REDIS_GET_BIG),
        (R, REDIS_GET_BIG_REPLY, REDIS_GET_BIG_REPLY_LEN),
        full(W, REDIS_DEL),
        full(R, REDIS_DEL_REPLY),
    ]
}

fn run(c: &mut RedisConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script(c, script)
}

fn run_bytewise(c: &mut RedisConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script_bytewise(c, script)
}

/// (operation, query text, key count, error) of each call.
fn summary(calls: &[DbCall]) -> Vec<(String, String, Option<u64>, Option<String>)> {
    calls
        .iter()
        .map(|c| {
            let keys = c.attributes.get("db.redis.key_count").and_then(serde_json::Value::as_u64);
            (c.operation.clone(), c.query_text.clone().unwrap_or_default(), keys, c.error.clone())
        })
        .collect()
}

fn expected() -> Vec<(String, String, Option<u64>, Option<String>)> {
    let ok = |op: &str, text: &str, keys: Option<u64>| (op.to_string(), text.to_string(), keys, None);
    let err = |op: &str, text: &str, e: &str| (op.to_string(), text.to_string(), None, Some(e.to_string()));
    vec![
        ok("HELLO", "HELLO ?", Some(0)),
        err(
            "CLIENT MAINT_NOTIFICATIONS",
            "CLIENT MAINT_NOTIFICATIONS ? ? ?",
            "ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.",
        ),
        err("CLIENT SETINFO", "CLIENT SETINFO ? ?", "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."),
        err("CLIENT SETINFO", "CLIENT SETINFO ? ?", "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."),
        ok("SET", "SET ? ? ? ?", Some(1)),
        ok("GET", "GET ?", Some(1)),
        ok("GET", "GET ?", Some(1)),
        ok("BATCH", "INCRBY ? ?; EXPIRE ? ?", Some(2)),
        ok("HSET", "HSET ? ? ? ? ?", Some(1)),
        ok("MGET", "MGET ? ? ?", Some(3)),
        (
            "LPUSH".to_string(),
            "LPUSH ? ?".to_string(),
            Some(1),
            Some("WRONGTYPE Operation against a key holding the wrong kind of value".to_string()),
        ),
        ok("SET", "SET ? ?", Some(1)),
        ok("GET", "GET ?", Some(1)),
        ok("DEL", "DEL ? ?", Some(2)),
    ]
}

#[test]
fn captured_session_gives_one_call_per_command_or_pipeline() {
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &session());
    assert_eq!(summary(&calls), expected());
    assert_eq!(c.stats(), &DbStats::default());
    let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert_eq!(
        times,
        [
            (0, 150),
            (200, 350),
            (400, 550),
            (600, 750),
            (800, 950),
            (1000, 1150),
            (1200, 1350),
            (1400, 1550),
            (1600, 1750),
            (1800, 1950),
            (2000, 2150),
            (2200, 2550),
            (2600, 2750),
            (2800, 2950)
        ]
    );
    assert_eq!(
        serde_json::to_value(&calls[7].attributes).unwrap(),
        serde_json::json!({
            "db.system.name": "redis",
            "db.operation.name": "BATCH",
            "db.query.text": "INCRBY ? ?; EXPIRE ? ?",
            "db.operation.batch.size": 2,
            "db.redis.key_count": 2,
        })
    );
    assert_eq!(calls[10].attributes["db.response.status_code"], "WRONGTYPE");
    assert_eq!(calls[10].attributes["error.type"], "WRONGTYPE");
    assert_eq!(calls[1].attributes["error.type"], "ERR");
    assert_eq!(calls[0].system, "redis");
    // Never a value or a key in what is exported.
    let all = format!("{calls:?}");
    for secret in ["apple", "item:1", "hits:1", "yyyy", "redis-py", "8.1.0"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
}

#[test]
fn one_byte_pieces_give_the_same_calls() {
    let mut c = RedisConnection::new();
    let calls = run_bytewise(&mut c, &session());
    assert_eq!(summary(&calls), expected());
    assert_eq!(c.stats(), &DbStats::default());
}

#[test]
fn pipelined_commands_written_in_pieces_pair_with_replies_in_order() {
    // A pipeline written in two writes (no read between them), replies in three reads.
    let script = vec![
        full(W, REDIS_SET),
        full(W, REDIS_GET),
        full(R, b"+OK\r\n$5\r"),
        full(R, b"\nap"),
        full(R, b"ple\r\n"),
        full(W, REDIS_GET_MISSING),
        full(R, REDIS_GET_MISSING_REPLY),
    ];
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &script);
    let ops: Vec<(&str, u64, u64)> = calls.iter().map(|c| (c.operation.as_str(), c.start_ns, c.end_ns)).collect();
    assert_eq!(ops, [("BATCH", 0, 450), ("GET", 500, 650)]);
    assert_eq!(calls[0].query_text.as_deref(), Some("SET ? ? ? ?; GET ?"));
    assert_eq!(calls[0].attributes["db.operation.batch.size"], 2);
}

#[test]
fn resp3_pushes_and_attributes_pair_with_nothing() {
    let script = vec![
        full(W, REDIS_GET),
        // An attribute before the reply, a push message, then the reply itself.
        full(R, b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        full(R, b"*2\r\n%1\r\n+k\r\n~1\r\n#t\r\n!21\r\nSYNTAX invalid syntax\r\n"),
        full(W, REDIS_GET),
        full(R, b"!21\r\nSYNTAX invalid syntax\r\n"),
    ];
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &script);
    let s = summary(&calls);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!((calls[0].end_ns, calls[0].error.as_deref()), (250, None));
    assert_eq!(calls[1].error.as_deref(), Some("SYNTAX invalid syntax"));
    assert_eq!(calls[1].attributes["error.type"], "SYNTAX");
    assert_eq!(c.stats(), &DbStats::default());
}

#[test]
fn inline_commands() {
    let script = vec![
        full(W, b"PING\r\n"),
        full(R, b"+PONG\r\n"),
        full(W, b"get  foo\r\nEXISTS a b c\n"),
        full(R, b"$-1\r\n:2\r\n"),
    ];
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &script);
    assert_eq!(
        summary(&calls),
        vec![
            ("PING".to_string(), "PING".to_string(), Some(0), None),
            ("BATCH".to_string(), "GET ?; EXISTS ? ? ?".to_string(), Some(4), None)
        ]
    );
}

#[test]
fn a_reply_cut_by_the_capture_ends_when_the_client_writes_again() {
    let script = vec![
        full(W, REDIS_GET),
        // Not even the header was captured.
        (R, b"", 11),
        full(W, REDIS_GET),
        full(R, REDIS_GET_REPLY),
    ];
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &script);
    let get = ("GET".to_string(), "GET ?".to_string(), Some(1), None);
    assert_eq!(summary(&calls), vec![get.clone(), get]);
    assert_eq!((calls[0].start_ns, calls[0].end_ns, calls[1].start_ns, calls[1].end_ns), (0, 150, 200, 350));
    assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_replies: 1, ..DbStats::default() });
}

#[test]
fn large_values_beyond_the_capture() {
    // MGET of three 3000-byte values: the third's header is beyond the 4096 captured bytes
    // of the one read; the reply continues in a second read.
    let v = "v".repeat(3000);
    let reply = format!("*3\r\n$3000\r\n{v}\r\n$3000\r\n{v}\r\n$3000\r\n{v}\r\n");
    let reply: &'static [u8] = Box::leak(reply.into_bytes().into_boxed_slice());
    let (r1, r2) = reply.split_at(8000);
    // MSET of two 5000-byte values in one write: the second key's header is not captured.
    let w = "w".repeat(5000);
    let mset = format!("*5\r\n$4\r\nMSET\r\n$2\r\nk1\r\n$5000\r\n{w}\r\n$2\r\nk2\r\n$5000\r\n{w}\r\n");
    let mset: &'static [u8] = Box::leak(mset.into_bytes().into_boxed_slice());
    let script = vec![
        full(W, REDIS_MGET),
        (R, &r1[..CAPTURE], r1.len() as u64),
        full(R, r2),
        (W, &mset[..CAPTURE], mset.len() as u64),
        full(R, b"+OK\r\n"),
        full(W, REDIS_GET),
        full(R, REDIS_GET_REPLY),
    ];
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &script);
    assert_eq!(
        summary(&calls),
        vec![
            ("MGET".to_string(), "MGET ? ? ?".to_string(), Some(3), None),
            ("MSET".to_string(), "MSET ? ? ? ?".to_string(), Some(2), None),
            ("GET".to_string(), "GET ?".to_string(), Some(1), None),
        ]
    );
    let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert_eq!(times, [(0, 250), (300, 450), (500, 650)]);
    assert_eq!(
        c.stats(),
        &DbStats { desyncs: 2, resyncs: 2, unframed_replies: 1, unframed_requests: 1, ..DbStats::default() }
    );
}

#[test]
fn malformed_request_loses_framing() {
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &[full(W, b"*2\r\nGET\r\n"), full(R, b"-ERR Protocol error\r\n")]);
    assert!(calls.is_empty());
    assert_eq!(c.stats(), &DbStats { desyncs: 1, unmatched_replies: 1, ..DbStats::default() });
}

#[test]
fn close_before_the_reply_reports_the_call_with_an_error() {
    let mut c = RedisConnection::new();
    let calls = run(&mut c, &[full(W, REDIS_SET), full(R, b"+O")]);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "SET");
    assert_eq!(calls[0].error.as_deref(), Some("connection closed before the reply"));
    assert_eq!((calls[0].start_ns, calls[0].end_ns), (0, 150));
}

#[test]
fn key_counts() {
    assert_eq!(key_count("GET", 2, None), Some(1));
    assert_eq!(key_count("SET", 5, None), Some(1));
    assert_eq!(key_count("DEL", 4, None), Some(3));
    assert_eq!(key_count("MSET", 7, None), Some(3));
    assert_eq!(key_count("BLPOP", 4, None), Some(2));
    assert_eq!(key_count("RENAME", 3, None), Some(2));
    assert_eq!(key_count("PING", 1, None), Some(0));
    assert_eq!(key_count("EVAL", 6, Some(2)), Some(2));
    assert_eq!(key_count("EVAL", 6, None), None);
    assert_eq!(key_count("XREADGROUP", 8, None), None);
    // EVAL's numkeys comes from the command itself.
    let mut c = RedisConnection::new();
    let eval: &[u8] = b"*5\r\n$4\r\nEVAL\r\n$6\r\nreturn\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\nb\r\n";
    let calls = run(&mut c, &[full(W, eval), full(R, b"_\r\n")]);
    assert_eq!(calls[0].attributes["db.redis.key_count"], 2);
}

#[test]
fn request_detection() {
    assert!(looks_like_request(REDIS_HELLO));
    assert!(looks_like_request(REDIS_PIPELINE));
    assert!(looks_like_request(b"*1"));
    assert!(looks_like_request(b"ping\r\n"));
    assert!(looks_like_request(b"AUTH secret\r\n"));
    assert!(!looks_like_request(b"GET / HTTP/1.1\r\n"));
    assert!(!looks_like_request(b"PING"));
    assert!(!looks_like_request(b"*1\r\n+x"));
    assert!(!looks_like_request(b"$5\r\n"));
}

/// Every syscall cut into pieces at random places (a piece that starts past the capture has
/// no data): the calls do not depend on where the cuts fall.
#[test]
fn random_piece_boundaries_give_the_same_calls() {
    for seed in 0..300u64 {
        let mut c = RedisConnection::new();
        let calls = replay_with_random_cuts(&mut c, &session(), seed);
        assert_eq!(summary(&calls), expected(), "seed {seed}");
        assert_eq!(c.stats(), &DbStats::default(), "seed {seed}");
    }
}

/// Arbitrary bytes in both directions, after a real start: no panic, and what was lost is
/// counted.
#[test]
fn garbage_never_panics() {
    for seed in 0..500u64 {
        feed_garbage(&mut RedisConnection::new(), &session()[..4], seed);
    }
}
