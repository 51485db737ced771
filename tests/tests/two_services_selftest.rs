//! The two-service app without the agent: a private PostgreSQL and Redis, the backend querying
//! them and the frontend calling the backend, each on Gunicorn. Pins down the exact responses
//! (and the database state behind them) that the tracing tests assert on.

use pytracer_tests::*;

#[test]
fn postgres_and_redis_start_private_and_stop_on_drop() {
    if !require_two_services() {
        return;
    }
    let pg = Postgres::start();
    assert_eq!(
        pg.psql(PG_DATABASE, "SELECT id, name FROM items ORDER BY id").unwrap(),
        "1|apple\n2|banana\n3|cherry\n"
    );
    assert!(pg.socket_path().exists(), "{}", pg.socket_path().display());
    let redis = Redis::start();
    assert_eq!(redis.command(&["SET", "k", "v"]).unwrap(), b"+OK\r\n");
    assert_eq!(redis.command(&["GET", "k"]).unwrap(), b"$1\r\nv\r\n");
    assert!(redis.socket_path().exists());
    let (pg_pid, redis_pid) = (pg.pid(), redis.pid());
    let (pg_port, redis_port) = (pg.port(), redis.port());
    drop(pg);
    drop(redis);
    for pid in [pg_pid, redis_pid] {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still running");
    }
    for port in [pg_port, redis_port] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still open");
    }
}

#[test]
fn frontend_calls_backend_which_queries_postgres_and_redis() {
    if !require_two_services() {
        return;
    }
    let s = TwoServices::start(&GunicornOpts::sync(1));

    // Straight to the backend: the first request finds nothing in the cache.
    let r = get(s.backend.port(), "/items/1");
    assert_eq!(r.status, 200, "{r:?}\n{}", s.backend.log());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"id": 1, "name": "apple", "count": 3, "cached": null, "hits": 1}"#);
    let r = get(s.backend.port(), "/items/1");
    assert_eq!(r.text(), r#"{"id": 1, "name": "apple", "count": 3, "cached": "apple", "hits": 2}"#);

    // Through the frontend.
    let r = get(s.frontend.port(), "/order/2");
    assert_eq!(r.status, 200, "{r:?}\n{}\n{}", s.frontend.log(), s.backend.log());
    assert_eq!(
        r.text(),
        r#"{"order": 2, "backend_status": 200, "item": {"id": 2, "name": "banana", "count": 3, "cached": null, "hits": 1}}"#
    );
    let r = get(s.frontend.port(), "/order/9");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), r#"{"order": 9, "backend_status": 404, "item": {"id": 9, "error": "not found"}}"#);

    // Bad SQL: the server's ErrorResponse becomes a 500.
    let r = get(s.backend.port(), "/fail-db");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), r#"{"error": "SyntaxError", "sqlstate": "42601"}"#);

    // What the servers saw.
    assert_eq!(s.redis.command(&["GET", "item:2"]).unwrap(), b"$6\r\nbanana\r\n");
    assert_eq!(s.redis.command(&["GET", "hits:1"]).unwrap(), b"$1\r\n2\r\n");
    assert_eq!(s.redis.command(&["EXISTS", "item:9"]).unwrap(), b":0\r\n");
    let log = s.pg.log();
    for stmt in [
        "SELECT name FROM items WHERE id = $1",
        "SELECT count(*) FROM items WHERE name <> 'gone'",
        "SELEC name FROM items",
    ] {
        assert!(log.contains(stmt), "{stmt:?} not in the PostgreSQL log:\n{log}");
    }
}
