//! The parser against bytes captured from psycopg and PostgreSQL (crate::db::fixtures), cut
//! every which way.
use super::messages::{error_fields, returned_rows};
use super::*;
use crate::calls::{ClientProtocol, DbCall};
use crate::db::fixtures::*;
use crate::db::DbStats;

/// The whole captured session, in order; the large Bind's write captured to 4096 bytes.
fn session() -> Vec<Sys> {
    vec![
        full(W, PG_SSL_REQUEST),
        full(R, PG_SSL_NO),
        full(W, PG_STARTUP),
        full(R, PG_STARTUP_REPLY),
        full(W, PG_SIMPLE_QUERY),
        full(R, PG_SIMPLE_REPLY),
        full(W, PG_EXTENDED),
        full(R, PG_EXTENDED_REPLY),
        full(W, PG_BAD_QUERY),
        full(R, PG_BAD_QUERY_REPLY),
        full(W, PG_PREPARE),
        full(R, PG_PREPARE_REPLY),
        full(W, PG_BIND_PREPARED),
        full(R, PG_BIND_PREPARED_REPLY),
        full(W, PG_BIND_PREPARED_2),
        full(R, PG_BIND_PREPARED_2_REPLY),
        (W, PG_LARGE_INSERT, PG_LARGE_INSERT_LEN),
        full(W, PG_LARGE_INSERT_TAIL),
        full(R, PG_LARGE_INSERT_REPLY),
        full(W, PG_LENGTH_QUERY),
        full(R, PG_LENGTH_REPLY),
        full(W, PG_TERMINATE),
    ]
}

/// Feeds syscall `i` as a piece with start 100*i and end 100*i+50; returns every call.
fn run(c: &mut PgConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script(c, script)
}

/// Feeds every syscall one byte at a time, each byte its own piece (uncaptured bytes of a
/// partly captured syscall as one piece with no data).
fn run_bytewise(c: &mut PgConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script_bytewise(c, script)
}

/// (operation, query text, error, SQLSTATE) of a call.
type Summary = (String, Option<String>, Option<String>, Option<String>);

fn summary(calls: &[DbCall]) -> Vec<Summary> {
    calls
        .iter()
        .map(|c| {
            let code = c.attributes.get("db.response.status_code").and_then(|v| v.as_str()).map(str::to_string);
            (c.operation.clone(), c.query_text.clone(), c.error.clone(), code)
        })
        .collect()
}

#[expect(clippy::unnecessary_wraps, reason = "shorthand for the Some(..) fields of expected summaries")]
fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

fn expected() -> Vec<Summary> {
    let sel = |q: &str| ("SELECT".to_string(), s(q), None, None);
    vec![
        sel("SELECT count(*) FROM items WHERE name <> ?"),
        sel("SELECT name FROM items WHERE id = $1"),
        ("SELEC".to_string(), s("SELEC name FROM items"), s("syntax error at or near \"SELEC\""), s("42601")),
        sel("SELECT name FROM items WHERE id = $1 AND name <> $2"),
        sel("SELECT name FROM items WHERE id = $1 AND name <> $2"),
        ("INSERT".to_string(), s("INSERT INTO items VALUES ($1, $2)"), None, None),
        sel("SELECT length(name) FROM items WHERE id = ?"),
    ]
}

#[test]
fn captured_session_gives_one_call_per_query() {
    let mut c = PgConnection::new();
    let calls = run(&mut c, &session());
    assert_eq!(summary(&calls), expected());
    assert_eq!((c.user(), c.database()), (Some("postgres"), Some("app")));
    assert_eq!(c.stats(), &DbStats::default());
    assert_eq!(c.in_flight(), 0);

    // Times: first write of the call to the read that completed it.
    let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert_eq!(times, [(400, 550), (600, 750), (800, 950), (1200, 1350), (1400, 1550), (1600, 1850), (1900, 2050)]);

    let simple = &calls[0];
    assert_eq!(simple.system, "postgresql");
    assert_eq!(crate::spans::db_client::name(simple), "SELECT app");
    assert_eq!(
        serde_json::to_value(&simple.attributes).unwrap(),
        serde_json::json!({
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.query.text": "SELECT count(*) FROM items WHERE name <> ?",
            "db.namespace": "app",
            "db.response.returned_rows": 1,
        })
    );
    let err = &calls[2];
    assert_eq!(err.attributes["error.type"], "42601");
    assert_eq!(err.attributes["db.response.status_code"], "42601");
    assert!(!calls[5].attributes.contains_key("db.response.returned_rows"), "INSERT 0 1 returns no rows");
}

#[test]
fn one_byte_pieces_give_the_same_calls() {
    let mut c = PgConnection::new();
    let calls = run_bytewise(&mut c, &session());
    assert_eq!(summary(&calls), expected());
    assert_eq!(c.stats(), &DbStats::default());
    // The large insert starts at its first byte's write and ends with its reply's last byte.
    let insert = &calls[5];
    assert!(insert.start_ns < insert.end_ns);
}

#[test]
fn several_messages_per_piece_in_both_directions() {
    // Two queries pipelined in one write, both replies in one read, then the extended query
    // split at an awkward place (inside the Bind's length field).
    let mut both = PG_SIMPLE_QUERY.to_vec();
    both.extend_from_slice(PG_BAD_QUERY);
    let mut replies = PG_SIMPLE_REPLY.to_vec();
    replies.extend_from_slice(PG_BAD_QUERY_REPLY);
    let both: &'static [u8] = Box::leak(both.into_boxed_slice());
    let replies: &'static [u8] = Box::leak(replies.into_boxed_slice());
    let split = PG_EXTENDED.iter().position(|&b| b == b'B').unwrap() + 3;
    let script = vec![
        full(W, PG_STARTUP),
        full(R, PG_STARTUP_REPLY),
        full(W, both),
        full(R, replies),
        full(W, &PG_EXTENDED[..split]),
        full(W, &PG_EXTENDED[split..]),
        full(R, &PG_EXTENDED_REPLY[..7]),
        full(R, &PG_EXTENDED_REPLY[7..]),
    ];
    let mut c = PgConnection::new();
    let calls = run(&mut c, &script);
    let e = expected();
    assert_eq!(summary(&calls), vec![e[0].clone(), e[2].clone(), e[1].clone()]);
    // The pipelined pair: both start with the one write, end with the one read.
    assert_eq!((calls[0].start_ns, calls[0].end_ns, calls[1].start_ns, calls[1].end_ns), (200, 350, 200, 350));
    assert_eq!((calls[2].start_ns, calls[2].end_ns), (400, 750));
}

#[test]
fn a_request_cut_by_the_capture_is_one_call_and_the_next_write_resyncs() {
    // The large Bind and the Describe/Execute/Sync after it in one write: the later headers
    // are beyond the 4096 captured bytes.
    let total = PG_LARGE_INSERT_LEN + PG_LARGE_INSERT_TAIL.len() as u64;
    let script = vec![
        full(W, PG_STARTUP),
        full(R, PG_STARTUP_REPLY),
        (W, PG_LARGE_INSERT, total),
        full(R, PG_LARGE_INSERT_REPLY),
        full(W, PG_LENGTH_QUERY),
        full(R, PG_LENGTH_REPLY),
    ];
    let mut c = PgConnection::new();
    let calls = run(&mut c, &script);
    assert_eq!(summary(&calls), vec![expected()[5].clone(), expected()[6].clone()]);
    assert_eq!((calls[0].start_ns, calls[0].end_ns), (200, 350));
    assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_requests: 1, ..DbStats::default() });
}

/// A reply larger than the capture: RowDescription, 300 DataRows, CommandComplete, ReadyForQuery.
fn big_reply() -> &'static [u8] {
    let mut r = PG_SIMPLE_REPLY[..31].to_vec(); // RowDescription
    for i in 0..300u32 {
        let v = format!("{i:020}");
        r.push(b'D');
        r.extend_from_slice(&(4 + 2 + 4 + v.len() as u32).to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&(v.len() as u32).to_be_bytes());
        r.extend_from_slice(v.as_bytes());
    }
    r.extend_from_slice(b"C\x00\x00\x00\x0fSELECT 300\x00Z\x00\x00\x00\x05I");
    Box::leak(r.into_boxed_slice())
}

#[test]
fn a_reply_cut_by_the_capture_ends_when_the_client_writes_again() {
    let big = big_reply();
    assert!(big.len() > 2 * CAPTURE);
    let (first, second) = big.split_at(big.len() / 2);
    let script = vec![
        full(W, PG_STARTUP),
        full(R, PG_STARTUP_REPLY),
        full(W, PG_SIMPLE_QUERY),
        // Two reads, each captured to 4096 bytes: the headers after that are not seen.
        (R, &first[..CAPTURE], first.len() as u64),
        (R, &second[..CAPTURE], second.len() as u64),
        full(W, PG_EXTENDED),
        full(R, PG_EXTENDED_REPLY),
        full(W, PG_SIMPLE_QUERY),
        (R, &big[..CAPTURE], big.len() as u64),
    ];
    let mut c = PgConnection::new();
    let calls = run(&mut c, &script);
    let e = expected();
    assert_eq!(summary(&calls), vec![e[0].clone(), e[1].clone(), e[0].clone()]);
    // The first ends with the last read before the next write; the last one at close.
    let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert_eq!(times, [(200, 450), (500, 650), (700, 850)]);
    // Its status (CommandComplete) was not seen.
    assert!(!calls[0].attributes.contains_key("db.response.returned_rows"));
    assert_eq!(c.stats(), &DbStats { desyncs: 2, resyncs: 1, unframed_replies: 2, ..DbStats::default() });

    // Fully captured, the same reply is followed to its ReadyForQuery.
    let mut c = PgConnection::new();
    let calls = run(&mut c, &[full(W, PG_STARTUP), full(R, PG_STARTUP_REPLY), full(W, PG_SIMPLE_QUERY), full(R, big)]);
    assert_eq!(calls[0].attributes["db.response.returned_rows"], 300);
    assert_eq!(c.stats(), &DbStats::default());
}

#[test]
fn garbage_loses_framing_and_is_counted() {
    let script =
        vec![full(W, PG_STARTUP), full(R, PG_STARTUP_REPLY), full(W, b"\xff\xff\xff\xff\xff\xff"), full(W, b"junk")];
    let mut c = PgConnection::new();
    assert!(run(&mut c, &script).is_empty());
    assert_eq!(c.stats().desyncs, 1);
    assert!(!c.stats().given_up);
}

#[test]
fn attached_mid_stream_it_waits_for_a_message_boundary() {
    let script = vec![
        // The tail of a reply: no boundary.
        full(R, &PG_STARTUP_REPLY[100..]),
        full(W, PG_EXTENDED),
        full(R, PG_EXTENDED_REPLY),
        // A statement prepared before the agent came: its text is unknown.
        full(W, PG_BIND_PREPARED),
        full(R, PG_BIND_PREPARED_REPLY),
    ];
    let mut c = PgConnection::mid_stream();
    let calls = run(&mut c, &script);
    assert_eq!(summary(&calls), vec![expected()[1].clone(), (String::new(), None, None, None)]);
    assert_eq!(c.stats().resyncs, 2);
    assert_eq!(c.database(), None);
}

#[test]
fn tls_and_cancel_connections_are_given_up() {
    let mut c = PgConnection::new();
    run(&mut c, &[full(W, PG_SSL_REQUEST), full(R, b"S"), full(W, b"\x16\x03\x01\x00\x05hello")]);
    assert!(c.stats().given_up);
    let cancel: &[u8] = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02";
    assert!(looks_like_startup(cancel));
    let mut c = PgConnection::new();
    run(&mut c, &[full(W, cancel)]);
    assert!(c.stats().given_up);
}

#[test]
fn close_before_the_reply_reports_the_call_with_an_error() {
    let mut c = PgConnection::new();
    let calls = run(
        &mut c,
        &[full(W, PG_STARTUP), full(R, PG_STARTUP_REPLY), full(W, PG_SIMPLE_QUERY), full(R, &PG_SIMPLE_REPLY[..20])],
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].error.as_deref(), Some("connection closed before the reply"));
    assert_eq!(calls[0].attributes["error.type"], "connection_closed");
    assert_eq!((calls[0].start_ns, calls[0].end_ns), (200, 350));
}

#[test]
fn closed_statements_are_forgotten() {
    let close: &[u8] = b"C\x00\x00\x00\x0cS_pg3_0\x00";
    let script = vec![
        full(W, PG_STARTUP),
        full(R, PG_STARTUP_REPLY),
        full(W, PG_PREPARE),
        full(R, PG_PREPARE_REPLY),
        full(W, close),
        full(W, PG_BIND_PREPARED),
        full(R, PG_BIND_PREPARED_REPLY),
    ];
    let mut c = PgConnection::new();
    assert_eq!(summary(&run(&mut c, &script)), vec![(String::new(), None, None, None)]);
}

#[test]
fn error_fields_and_row_counts() {
    let body = &PG_BAD_QUERY_REPLY[5..];
    assert_eq!(error_fields(body), ("42601".into(), "syntax error at or near \"SELEC\"".into()));
    // Cut by the capture in the middle of the message.
    assert_eq!(error_fields(&body[..40]), ("42601".into(), "syntax error at or".into()));
    assert_eq!(returned_rows("SELECT 3"), Some(3));
    assert_eq!(returned_rows("INSERT 0 1"), None);
    assert_eq!(returned_rows("FETCH 10"), Some(10));
    assert_eq!(returned_rows("BEGIN"), None);
}

/// Every syscall cut into pieces at random places (a piece that starts past the capture has
/// no data): the calls do not depend on where the cuts fall.
#[test]
fn random_piece_boundaries_give_the_same_calls() {
    for seed in 0..300u64 {
        let mut c = PgConnection::new();
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
        feed_garbage(&mut PgConnection::new(), &session()[..4], seed);
    }
}
