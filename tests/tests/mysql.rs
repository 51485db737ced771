//! Issue 14 end to end: a Flask app under Gunicorn queries a private MariaDB with PyMySQL,
//! mysqlclient and mysql-connector-python (a server-side prepared statement); pytracer traces it.
//! Asserted exactly: every exit span (the drivers' own connection set-up included), its name,
//! attributes, status, parent request and Python caller.

use pytracer_tests::*;
use serde_json::{json, Value};

/// (span name, operation, query text, returned rows, error code, calling function).
type Want = (&'static str, &'static str, Option<&'static str>, Option<u64>, Option<&'static str>, &'static str);

fn expected(span: &Want, port: u16) -> Value {
    let (_, op, text, rows, code, _) = *span;
    let mut a = json!({
        "db.system.name": "mariadb",
        "db.operation.name": op,
        "db.namespace": "app",
        "server.address": "127.0.0.1",
        "server.port": port,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": port,
    });
    let o = a.as_object_mut().unwrap();
    if let Some(t) = text {
        o.insert("db.query.text".into(), json!(t));
    }
    if let Some(r) = rows {
        o.insert("db.response.returned_rows".into(), json!(r));
    }
    if let Some(c) = code {
        o.insert("db.response.status_code".into(), json!(c));
        o.insert("error.type".into(), json!(c));
    }
    a
}

#[test]
fn mysql_and_mariadb_calls_of_three_drivers_are_exit_spans() {
    if !require_privileged_mariadb() {
        return;
    }
    let db = Mariadb::start();
    let g = Gunicorn::start(db.app_opts(&GunicornOpts::sync(1)));
    let t = Tracer::start(&[g.pid()], &[]);
    let routes: [(&str, u16, &str); 4] = [
        ("/pymysql/1", 200, r#"{"name": "apple"}"#),
        ("/pymysql-fail", 500, r#"{"error": 1064}"#),
        ("/mysqlclient/banana", 200, r#"{"id": 2}"#),
        ("/connector/1", 200, r#"{"names": ["apple", "banana"]}"#),
    ];
    for (path, status, body) in routes {
        let r = get(g.port(), path);
        assert_eq!((r.status, String::from_utf8_lossy(&r.body).as_ref()), (status, body), "{path}");
    }
    let r = t.stop();
    let spans = &r.spans;
    let app = apps_dir().join("mysqlapp.py");
    let by_id = Some("SELECT name FROM items WHERE id = ?");
    let pymysql_start: [Want; 2] = [
        ("SET app", "SET", Some("SET NAMES utf8mb4"), None, None, "pymysql_connect"),
        ("SET app", "SET", Some("SET AUTOCOMMIT = ?"), None, None, "pymysql_connect"),
    ];
    let want: [(&str, &str, Vec<Want>); 4] = [
        (
            "/pymysql/1",
            "by_pymysql",
            [&pymysql_start[..], &[("SELECT app", "SELECT", by_id, Some(1), None, "pymysql_load")]].concat(),
        ),
        (
            "/pymysql-fail",
            "pymysql_fail",
            [
                &pymysql_start[..],
                &[("SELEC app", "SELEC", Some("SELEC name FROM items"), None, Some("1064"), "pymysql_bad")],
            ]
            .concat(),
        ),
        (
            "/mysqlclient/banana",
            "by_mysqlclient",
            vec![
                ("SET app", "SET", Some("SET NAMES utf8mb4"), None, None, "mysqlclient_connect"),
                ("SET app", "SET", Some("SET autocommit=?"), None, None, "mysqlclient_connect"),
                (
                    "SELECT app",
                    "SELECT",
                    Some("SELECT id FROM items WHERE name = ?"),
                    Some(1),
                    None,
                    "mysqlclient_load",
                ),
            ],
        ),
        (
            "/connector/1",
            "by_connector",
            vec![
                ("SET app", "SET", Some("SET NAMES ? COLLATE ?"), None, None, "connector_connect"),
                ("SET app", "SET", Some("SET @@session.autocommit = OFF"), None, None, "connector_connect"),
                // conn.cursor(prepared=True) checks the connection first.
                ("PING app", "PING", None, None, None, "by_connector"),
                // The prepare and the resets before each execute are no calls of their own.
                ("SELECT app", "SELECT", by_id, Some(1), None, "connector_load"),
                ("SELECT app", "SELECT", by_id, Some(1), None, "connector_load"),
            ],
        ),
    ];
    let exits: usize = want.iter().map(|w| w.2.len()).sum();
    assert_eq!(spans.len(), want.len() + exits, "{}\n{}", summarize(spans), r.stderr);
    for (path, handler, calls) in &want {
        let request = one_span(spans, path);
        assert!(request["parent_span_id"].is_null(), "{path}");
        assert_code(request, &app, handler);
        let got = children(spans, &request["span_id"]);
        assert_eq!(got.len(), calls.len(), "{path}: {}", summarize(spans));
        for (span, w) in got.iter().zip(calls) {
            let what = format!("{path} {}", w.0);
            assert_eq!(span["kind"], "client", "{what}");
            assert_eq!(span["name"], w.0, "{what}");
            assert_eq!(span["trace_id"], request["trace_id"], "{what}");
            assert_eq!(exit_attributes(span), expected(w, db.port()), "{what}");
            assert_eq!(span["status"]["code"], if w.4.is_some() { "error" } else { "unset" }, "{what}");
            assert_code(span, &app, w.5);
        }
    }
    assert!(r.stderr.contains(&format!("exit_spans={exits} ")), "{}", r.stderr);
    // The prepared statement ran server-side: prepared once, executed twice.
    let log = db.general_log();
    assert_eq!(log.matches("Prepare\tSELECT name FROM items WHERE id = ?").count(), 1, "{log}");
    assert_eq!(log.matches("Execute\tSELECT name FROM items WHERE id = ").count(), 2, "{log}");
}
