//! `pytracer top`: the plain table of `--once` against known traffic (exact counts and error
//! shares per route), and the live view driven in tmux (it shows the routes, `q` quits).
use std::process::Command;
use std::time::{Duration, Instant};

use pytracer_tests::*;

/// Requests to the test app while `top` traces: 30 × /users/N (200), 10 × /fail (500), 5 ×
/// /nope (404: no rule, so its row is the path's template), 2 × /gc/collect/2 (full collections,
/// whose pauses the workers' rows show).
fn traffic(port: u16) {
    for i in 0..30 {
        assert_eq!(get(port, &format!("/users/{i}")).status, 200);
    }
    for _ in 0..10 {
        assert_eq!(get(port, "/fail").status, 500);
    }
    for _ in 0..5 {
        assert_eq!(get(port, "/nope").status, 404);
    }
    for _ in 0..2 {
        assert_eq!(get(port, "/gc/collect/2").status, 200);
    }
}

#[test]
fn top_once_counts_every_request_by_route() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let top = Command::new(pytracer_bin())
        .args(["top", "--once", "--duration", "8", "--pid", &g.pid().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pytracer top");
    // The agent says it is ready on stderr; the requests must come after.
    std::thread::sleep(Duration::from_secs(3));
    traffic(g.port());
    let out = top.wait_with_output().expect("pytracer top");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("pytracer: ready"), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..3], ["SERVICE", "ROUTE", "REQS"], "{stdout}");
    let row = |route: &str| {
        rows.iter().find(|r| r.get(1) == Some(&route)).unwrap_or_else(|| panic!("no row for {route}:\n{stdout}"))
    };
    let (_, _, user_line) = testapp_view("GET", "/users/1").unwrap();
    let (_, _, fail_line) = testapp_view("GET", "/fail").unwrap();
    // SERVICE ROUTE REQS REQ/S ERR% P50 P95 P99 HANDLER...
    let users = row("/users/<int:user_id>");
    assert_eq!((users[0], users[2], users[4]), ("testapp", "30", "0.0"), "{stdout}");
    assert_eq!(users[8..], ["user()".to_string(), format!("testapp.py:{user_line}")], "{stdout}");
    let fail = row("/fail");
    assert_eq!((fail[2], fail[4]), ("10", "100.0"), "{stdout}");
    assert_eq!(fail[8..], ["fail()".to_string(), format!("testapp.py:{fail_line}")], "{stdout}");
    let nope = row("/nope");
    assert_eq!((nope[2], nope[4], nope[8]), ("5", "0.0", "-"), "no rule, no handler: {stdout}");
    let route_rows = rows.iter().take_while(|r| !r.is_empty()).count() - 1;
    assert_eq!(row("/gc/collect/<int:generation>")[2], "2", "{stdout}");
    assert_eq!(route_rows, 4, "four routes and nothing else: {stdout}");
    // The workers that served: each with its pid.
    let workers = g.worker_pids();
    let worker_rows: Vec<&Vec<&str>> = rows.iter().skip_while(|r| r.first() != Some(&"PID")).skip(1).collect();
    assert!(!worker_rows.is_empty(), "{stdout}");
    let mut paused_ms = 0.0;
    // PID SERVICE CPU% RSS GC-COLLECTIONS GC-PAUSE-ms GC-MAX-ms
    for w in worker_rows {
        assert_eq!(w.len(), 7, "{w:?}");
        assert!(workers.contains(&w[0].parse().unwrap()), "{w:?} is a worker of {workers:?}");
        assert_eq!(w[1], "testapp");
        let (total, max): (f64, f64) = (w[5].parse().unwrap(), w[6].parse().unwrap());
        assert!(max <= total, "{w:?}");
        paused_ms += total;
    }
    assert!(paused_ms > 0.0, "the two full collections paused a worker: {stdout}");
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux (installed by cargo xtask setup)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn live_top_shows_routes_and_quits_on_q() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1));
    let dir = TempDir::new("top").unwrap();
    let done = dir.path().join("exited");
    let session = format!("pytracer-top-{}", std::process::id());
    let cmd = format!("{} top --pid {}; echo $? > {}", pytracer_bin().display(), g.pid(), done.display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "200", "-y", "40", &cmd]);
    let _cleanup = KillSession(session.clone());
    std::thread::sleep(Duration::from_secs(3));
    traffic(g.port());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if screen.contains("/users/<int:user_id>") && screen.contains("/fail") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(screen.contains("/users/<int:user_id>") && screen.contains("user()"), "the live view:\n{screen}");
    assert!(screen.contains("routes (sorted by requests)"), "{screen}");
    tmux(&["send-keys", "-t", &session, "s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let sorted = tmux(&["capture-pane", "-p", "-t", &session]);
    assert!(sorted.contains("routes (sorted by errors)"), "`s` sorts by the next column:\n{sorted}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::fs::read_to_string(&done).unwrap_or_else(|_| panic!("`q` did not end pytracer top"));
    assert_eq!(status.trim(), "0", "exit status after q");
}

/// Ends the tmux session whatever the test's outcome.
struct KillSession(String);

impl Drop for KillSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}
