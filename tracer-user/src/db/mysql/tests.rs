//! The parser against bytes captured from PyMySQL, mysqlclient and mysql-connector-python
//! talking to MariaDB (crate::db::fixtures), cut every which way.
use super::packets::{greeting, login, Login, CLIENT_DEPRECATE_EOF, MARIADB_CLIENT_CACHE_METADATA};
use super::*;
use crate::calls::{ClientProtocol, DbCall};
use crate::db::fixtures::*;
use crate::db::{DbStats, Piece};

/// Feeds syscall `i` as a piece with start 100*i and end 100*i+50; returns every call.
fn run(c: &mut MysqlConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script(c, script)
}

/// Feeds every syscall one byte at a time (the bytes beyond the capture as one piece).
fn run_bytewise(c: &mut MysqlConnection, script: &[Sys]) -> Vec<DbCall> {
    run_script_bytewise(c, script)
}

/// (system, operation, query text, namespace, returned rows, error code) of a call.
type Summary = (&'static str, String, Option<String>, Option<String>, Option<u64>, Option<String>);

fn summary(calls: &[DbCall]) -> Vec<Summary> {
    calls
        .iter()
        .map(|c| {
            let text = |k: &str| c.attributes.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let code = text("error.type");
            if code.as_deref() != Some("connection_closed") {
                assert_eq!(code, text("db.response.status_code"), "{c:?}");
            }
            assert_eq!(c.attributes["db.system.name"], c.system);
            let rows = c.attributes.get("db.response.returned_rows").and_then(serde_json::Value::as_u64);
            (c.system, c.operation.clone(), c.query_text.clone(), text("db.namespace"), rows, code)
        })
        .collect()
}

fn call(op: &str, text: Option<&str>, rows: Option<u64>, code: Option<&str>) -> Summary {
    ("mariadb", op.into(), text.map(Into::into), Some("app".into()), rows, code.map(Into::into))
}

fn sel(text: &str, rows: u64) -> Summary {
    call("SELECT", Some(text), Some(rows), None)
}

fn set(text: &str) -> Summary {
    call("SET", Some(text), None, None)
}

/// Every captured session and the calls it holds.
fn sessions() -> Vec<(&'static str, &'static [u8], Vec<Summary>)> {
    let pymysql_start = || vec![set("SET NAMES utf8mb4"), set("SET AUTOCOMMIT = ?")];
    let connector_start =
        || vec![set("SET NAMES ? COLLATE ?"), set("SET @@session.autocommit = OFF"), call("PING", None, None, None)];
    let by_id = "SELECT name FROM items WHERE id = ?";
    vec![
        ("pymysql", MY_PYMYSQL, [pymysql_start(), vec![sel(by_id, 1)]].concat()),
        (
            "pymysql_fail",
            MY_PYMYSQL_FAIL,
            [pymysql_start(), vec![call("SELEC", Some("SELEC name FROM items"), None, Some("1064"))]].concat(),
        ),
        (
            "mysqlclient",
            MY_MYSQLCLIENT,
            vec![set("SET NAMES utf8mb4"), set("SET autocommit=?"), sel("SELECT id FROM items WHERE name = ?", 1)],
        ),
        ("connector", MY_CONNECTOR, [connector_start(), vec![sel(by_id, 1), sel(by_id, 1)]].concat()),
        (
            "pymysql_extras",
            MY_PYMYSQL_EXTRAS,
            [
                pymysql_start(),
                vec![
                    sel("SELECT REPEAT(?, ?) AS big", 1),
                    // The literal runs past the capture.
                    sel("SELECT LENGTH(?", 1),
                    sel("SELECT ?; SELECT id FROM items ORDER BY id", 4),
                    call("PING", None, None, None),
                    call("INIT_DB", None, None, Some("1044")),
                    call("INIT_DB", None, None, None),
                    call("USE", Some("USE `app`"), None, None),
                    sel("SELECT id, name FROM items ORDER BY id", 3),
                ],
            ]
            .concat(),
        ),
        ("auth_switch", MY_AUTH_SWITCH, [connector_start(), vec![sel("SELECT ?", 1)]].concat()),
        (
            "connector_extras",
            MY_CONNECTOR_EXTRAS,
            [
                connector_start(),
                vec![
                    call("SELEC", Some("SELEC name FROM items WHERE id = ?"), None, Some("1064")),
                    sel("SELECT id, name FROM items WHERE id > ? ORDER BY id", 2),
                ],
            ]
            .concat(),
        ),
    ]
}

#[test]
fn captured_sessions_give_one_call_per_command() {
    for (name, file, want) in sessions() {
        let mut c = MysqlConnection::new();
        let calls = run(&mut c, &records(file));
        assert_eq!(summary(&calls), want, "{name}");
        assert_eq!(c.stats(), &DbStats::default(), "{name}");
        assert_eq!((c.in_flight(), c.system(), c.database()), (0, "mariadb", Some("app")), "{name}");
        for call in &calls {
            assert!(call.end_ns > call.start_ns, "{name}: {call:?}");
        }
    }
}

#[test]
fn calls_last_from_the_command_to_the_end_of_its_reply() {
    // /pymysql/1: syscalls 3 (SET NAMES) to 4, 5 to 6, 7 (the SELECT) to 8.
    let calls = run(&mut MysqlConnection::new(), &records(MY_PYMYSQL));
    let spans: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert_eq!(spans, [(300, 450), (500, 650), (700, 850)]);
    // mysql-connector reads a reply's header and payload apart: the call ends at the last read.
    let calls = run(&mut MysqlConnection::new(), &records(MY_CONNECTOR));
    let select = &calls[3];
    assert_eq!((select.start_ns, select.end_ns), (2800, 3850), "COM_STMT_EXECUTE (its reset is not a call)");
    let err = &run(&mut MysqlConnection::new(), &records(MY_PYMYSQL_FAIL))[2];
    assert_eq!(
        err.error.as_deref(),
        Some(
            "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server \
             version for the right syntax to use near 'SELEC name FROM items' at line 1"
        )
    );
}

#[test]
fn prepared_statements_are_remembered_until_closed() {
    let script = records(MY_CONNECTOR);
    let mut c = MysqlConnection::new();
    // Up to and including the PREPARE_OK's last packet (syscall 24), before the executes.
    run_some(&mut c, &script[..25]);
    assert_eq!(c.statements(), 1);
    run_some(&mut c, &script[25..]);
    assert_eq!(c.statements(), 0, "COM_STMT_CLOSE forgets it");
}

fn run_some(c: &mut MysqlConnection, script: &[Sys]) {
    for &(d, data, len) in script {
        let p = Piece { data, len, start_ns: 0, end_ns: 1 };
        match d {
            W => c.on_write(&p),
            R => c.on_read(&p),
        };
    }
}

#[test]
fn one_byte_pieces_give_the_same_calls() {
    for (name, file, want) in sessions() {
        let mut c = MysqlConnection::new();
        assert_eq!(summary(&run_bytewise(&mut c, &records(file))), want, "{name}");
        assert_eq!(c.stats(), &DbStats::default(), "{name}");
    }
}

/// Every syscall cut into pieces at random places (a piece that starts past the capture has
/// no data): the calls do not depend on where the cuts fall.
#[test]
fn random_piece_boundaries_give_the_same_calls() {
    for (name, file, want) in sessions() {
        for seed in 0..200u64 {
            let mut c = MysqlConnection::new();
            let calls = replay_with_random_cuts(&mut c, &records(file), seed);
            assert_eq!(summary(&calls), want, "{name} seed {seed}");
            assert_eq!(c.stats(), &DbStats::default(), "{name} seed {seed}");
        }
    }
}

/// The sessions cut short at every syscall (the capture or the connection ended there): no
/// panic, the calls answered so far reported, the one in flight closed with an error.
#[test]
fn sessions_cut_at_any_syscall_report_what_was_answered() {
    for (name, file, want) in sessions() {
        let script = records(file);
        for cut in 0..script.len() {
            let mut c = MysqlConnection::new();
            let calls = run(&mut c, &script[..cut]);
            let answered: Vec<Summary> = summary(&calls).into_iter().filter(|s| calls_error(s) != "closed").collect();
            assert!(want.starts_with(&answered), "{name} cut at {cut}: {answered:?}");
            assert!(calls.iter().filter(|c| c.error.as_deref() == Some(attributes::CLOSED)).count() <= 1);
        }
    }
}

fn calls_error(s: &Summary) -> &str {
    match s.5.as_deref() {
        Some("connection_closed") => "closed",
        _ => "",
    }
}

/// A reply whose packet headers fell beyond the capture (a result of many rows read in large
/// reads): it ends at the last read before the client writes again; the next call is whole.
#[test]
fn a_reply_cut_by_the_capture_ends_when_the_client_writes_again() {
    let script = records(MY_PYMYSQL_EXTRAS);
    // The multi-result reply (syscall 14), its first 40 bytes only captured: the headers of its
    // later packets are lost.
    let mut cut = script.clone();
    cut[14].1 = &cut[14].1[..40];
    let mut c = MysqlConnection::new();
    let calls = run(&mut c, &cut);
    let got = summary(&calls);
    assert_eq!(got[4], call("SELECT", Some("SELECT ?; SELECT id FROM items ORDER BY id"), Some(0), None));
    assert_eq!((calls[4].start_ns, calls[4].end_ns), (1300, 1450));
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(got[5..], summary(&run(&mut MysqlConnection::new(), &script))[5..]);
    assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_replies: 1, ..DbStats::default() });
}

/// A command whose later packet header was not captured: taken as written whole; the next
/// write that starts a command resynchronises.
#[test]
fn a_request_cut_by_the_capture_resyncs_at_the_next_command() {
    let script = records(MY_PYMYSQL);
    let mut c = MysqlConnection::new();
    run_some(&mut c, &script[..3]);
    // A COM_QUERY of two packets, the first 16 MiB - 1 long: the second's header is not
    // captured (the capture is 4096 bytes of the first).
    let mut big = vec![0xff, 0xff, 0xff, 0x00, 0x03];
    big.extend_from_slice(b"SELECT 'x");
    big.resize(4096, b'x');
    let p = Piece { data: &big, len: 0x00ff_ffff + 4 + 10, start_ns: 1000, end_ns: 1001 };
    assert!(c.on_write(&p).is_empty());
    let ok = b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00";
    let calls = c.on_read(&Piece { data: ok, len: ok.len() as u64, start_ns: 1100, end_ns: 1101 });
    let got = summary(&calls);
    assert_eq!(got, [call("SELECT", Some("SELECT ?"), None, None)]);
    // The next command is followed again.
    let mut calls = run(&mut c, &script[7..]);
    calls.retain(|c| c.operation == "SELECT");
    assert_eq!(summary(&calls), [sel("SELECT name FROM items WHERE id = ?", 1)]);
    assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_requests: 1, ..DbStats::default() });
}

/// A reply the parser takes for longer than it is (here the server's packets after the column
/// count were never seen): the client's next command shows it had ended.
#[test]
fn a_reply_misread_as_longer_ends_at_the_next_command() {
    let script = records(MY_PYMYSQL);
    let mut cut = script[..9].to_vec();
    cut[8].1 = &cut[8].1[..5];
    cut[8].2 = 5;
    // The client writes again: SET NAMES, and its OK.
    cut.extend_from_slice(&script[3..5]);
    let mut c = MysqlConnection::new();
    let calls = run(&mut c, &cut);
    let got = summary(&calls);
    assert_eq!(got[2..], [sel("SELECT name FROM items WHERE id = ?", 0), set("SET NAMES utf8mb4")]);
    assert_eq!((calls[2].start_ns, calls[2].end_ns), (700, 850), "ended at the last read");
    assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_replies: 1, ..DbStats::default() });
}

#[test]
fn the_database_of_a_use_statement() {
    for (sql, db) in [
        ("USE app", Some("app")),
        ("use `other db`", None),
        ("  USE `shop`;", Some("shop")),
        ("USE", None),
        ("USER()", None),
        ("SELECT 1", None),
    ] {
        assert_eq!(session::used_database(sql).as_deref(), db, "{sql}");
    }
}

#[test]
fn tls_connections_are_given_up() {
    let mut c = MysqlConnection::new();
    let calls = run(&mut c, &records(MY_SSL));
    assert!(calls.is_empty());
    assert_eq!(c.stats(), &DbStats { given_up: true, ..DbStats::default() });
}

#[test]
fn close_before_the_reply_reports_the_call_with_an_error() {
    let script = records(MY_PYMYSQL);
    let mut c = MysqlConnection::new();
    let calls = run(&mut c, &script[..8]);
    let last = calls.last().unwrap();
    assert_eq!(last.operation, "SELECT");
    assert_eq!(last.error.as_deref(), Some(attributes::CLOSED));
    assert_eq!(last.attributes["error.type"], "connection_closed");
    assert_eq!(last.end_ns, 750, "the last syscall seen");
}

#[test]
fn greeting_and_handshake_fields() {
    let g = greeting(&MY_GREETING[4..]).unwrap();
    assert_eq!(g.version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
    // MariaDB's own capabilities (progress, bulk, extended and cached metadata) above bit 32.
    assert_eq!(g.capabilities, 0x1d_81ff_f7fe);
    let response = |file: &'static [u8]| {
        let (_, data, len) = records(file)[if file == MY_CONNECTOR { 2 } else { 1 }];
        login(&data[4..], len as u32 - 4)
    };
    assert_eq!(response(MY_PYMYSQL), Login::Response { capabilities: 0x003a_a20d, database: Some("app".into()) });
    let Login::Response { capabilities, .. } = response(MY_MYSQLCLIENT) else { panic!() };
    assert_eq!(capabilities & MARIADB_CLIENT_CACHE_METADATA, MARIADB_CLIENT_CACHE_METADATA);
    assert_eq!(capabilities & CLIENT_DEPRECATE_EOF, 0);
    assert_eq!(response(MY_SSL), Login::SslRequest);
    let mut c = MysqlConnection::new();
    run_some(&mut c, &records(MY_MYSQLCLIENT)[..3]);
    assert_eq!(c.capabilities(), 0x1d_00bf_a28c & 0x1d_81ff_f7fe);
}

#[test]
fn a_server_that_is_not_mariadb_is_mysql() {
    // The same greeting with MySQL's version string (same length).
    let mut g = MY_GREETING.to_vec();
    let at = g.windows(7).position(|w| w == b"MariaDB").unwrap();
    g[at..at + 7].copy_from_slice(b"MySQLxx");
    let mut c = MysqlConnection::new();
    c.on_read(&Piece { data: &g, len: g.len() as u64, start_ns: 0, end_ns: 1 });
    let script = records(MY_PYMYSQL);
    let calls = run(&mut c, &script[1..]);
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.system == "mysql" && c.attributes["db.system.name"] == "mysql"));
}

/// Arbitrary bytes in both directions, after a real start: no panic, and what was lost is
/// counted.
#[test]
fn garbage_never_panics() {
    let start = records(MY_PYMYSQL);
    for seed in 0..500u64 {
        feed_garbage(&mut MysqlConnection::new(), &start[..3], seed);
        feed_garbage(&mut MysqlConnection::new(), &start[..1], seed);
    }
}

#[test]
fn garbage_after_the_login_is_counted() {
    let start = records(MY_PYMYSQL);
    let mut c = MysqlConnection::new();
    run_some(&mut c, &start[..3]);
    // A write that is not a command (sequence id 5).
    c.on_write(&Piece { data: b"\x05\x00\x00\x05\x03SELEC", len: 9, start_ns: 0, end_ns: 1 });
    assert_eq!(c.stats().desyncs, 1);
    assert_eq!(c.in_flight(), 0);
}
