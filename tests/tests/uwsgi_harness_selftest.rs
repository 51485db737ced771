//! Tests of the uWSGI and nginx harness alone: no agent, no root. Every front-end serves the
//! test app's exact responses, and the harness finds the master, workers and router.

use pytracer_tests::*;

fn check_routes(port: u16) {
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        ("GET", "/hello", b"", 200, "hello"),
        ("GET", "/users/7", b"", 200, "{\"id\": 7}"),
        ("POST", "/items", b"abc", 201, "created 3"),
        ("GET", "/fail", b"", 500, "boom"),
    ];
    for &(method, path, body, status, want) in cases {
        let r = request(port, method, path, &[], body);
        assert_eq!(r.status, status, "{method} {path} on port {port}: {r:?}");
        assert_eq!(r.text(), want, "{method} {path} on port {port}");
    }
}

/// Two workers, distinct from the master and the router, and /pid is served by one of them.
fn check_processes(u: &Uwsgi, http_port: u16) {
    let workers = u.worker_pids();
    assert_eq!(workers.len(), 2, "{workers:?}; log:\n{}", u.log());
    assert!(!workers.contains(&u.pid()), "{workers:?} vs master {}", u.pid());
    if u.mode() == UwsgiMode::HttpRouter {
        let router = u.router_pid().expect("router pid");
        assert!(!workers.contains(&router), "{workers:?} vs router {router}");
        assert_ne!(router, u.pid());
    } else {
        assert_eq!(u.router_pid(), None);
    }
    let served: u32 = get(http_port, "/pid").text().parse().expect("/pid returns a number");
    assert!(workers.contains(&served), "/pid {served} not in {workers:?}");
}

fn opts(mode: UwsgiMode) -> UwsgiOpts {
    UwsgiOpts::new(mode, 2).threads(2)
}

#[test]
fn http_socket_serves() {
    if !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::HttpSocket));
    check_routes(u.port());
    check_processes(&u, u.port());
}

#[test]
fn http_router_serves() {
    if !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::HttpRouter));
    assert_ne!(u.workers_port(), Some(u.port()));
    check_routes(u.port());
    check_processes(&u, u.port());
}

#[test]
fn http_router_with_unix_internal_socket_serves() {
    if !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::HttpRouter).unix_socket(true));
    assert!(u.workers_socket_path().is_some());
    check_routes(u.port());
    check_processes(&u, u.port());
}

#[test]
fn uwsgi_socket_behind_nginx_serves() {
    if !require_uwsgi_nginx() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::UwsgiSocket));
    let n = Nginx::start_uwsgi_pass(u.port());
    check_routes(n.port());
    check_processes(&u, n.port());
    assert_eq!(n.worker_pids().len(), 1);
    assert!(n.access_log().contains("GET /hello"), "{}", n.access_log());
}

#[test]
fn unix_uwsgi_socket_behind_nginx_serves() {
    if !require_uwsgi_nginx() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::UwsgiSocket).unix_socket(true));
    let path = u.socket_path().expect("unix socket").to_path_buf();
    assert_eq!(u.upstream(), Upstream::Unix(path));
    let n = Nginx::start_uwsgi_pass(u.upstream());
    check_routes(n.port());
    check_processes(&u, n.port());
}

#[test]
fn lazy_apps_on_and_off_serve() {
    if !require_uwsgi() {
        return;
    }
    for mode in [UwsgiMode::HttpSocket, UwsgiMode::HttpRouter] {
        for lazy in [false, true] {
            let u = Uwsgi::start(opts(mode).lazy_apps(lazy));
            check_routes(u.port());
            check_processes(&u, u.port());
            // Who imported the app: the master once (it forked the workers with the app
            // loaded), or each worker after the fork.
            let ready = std::fs::read_dir(u.dir().join("ready"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap().parse::<u32>().unwrap())
                .collect::<Vec<_>>();
            let mut ready = ready;
            ready.sort_unstable();
            if lazy {
                assert_eq!(ready, u.worker_pids(), "{mode:?} lazy");
            } else {
                assert_eq!(ready, vec![u.pid()], "{mode:?} not lazy");
            }
        }
    }
}

#[test]
fn ini_file_serves_and_hides_the_module() {
    if !require_uwsgi() {
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::HttpSocket).ini(true));
    let cmdline = u.command().join(" ");
    assert!(cmdline.contains("--ini"), "{cmdline}");
    assert!(!cmdline.contains("testapp"), "{cmdline}");
    let ini = std::fs::read_to_string(u.dir().join("app.ini")).unwrap();
    assert!(ini.contains("module = testapp:app"), "{ini}");
    check_routes(u.port());
    check_processes(&u, u.port());
}

#[test]
fn reload_replaces_workers() {
    if !require_uwsgi() {
        return;
    }
    for lazy in [false, true] {
        // uWSGI 2.0 delays replacing a worker younger than --min-worker-lifetime (10 s by
        // default), and this test reloads right after start.
        let u = Uwsgi::start(opts(UwsgiMode::HttpSocket).lazy_apps(lazy).args(&["--min-worker-lifetime", "0"]));
        let before = u.worker_pids();
        u.reload();
        let after = u.wait_for_workers(2, &before);
        assert!(procfs::is_alive(u.pid()), "master survives a reload");
        check_routes(u.port());
        assert!(after.iter().all(|p| !before.contains(p)));
        let before = after;
        u.reload_sighup();
        u.wait_for_workers(2, &before);
        check_routes(u.port());
    }
}

#[test]
fn max_requests_recycles_a_worker() {
    if !require_uwsgi() {
        return;
    }
    // uWSGI 2.0 recycles no worker younger than --min-worker-lifetime (10 s by default).
    let u = Uwsgi::start(UwsgiOpts::http_socket(1).lazy_apps(true).args(&[
        "--max-requests",
        "3",
        "--min-worker-lifetime",
        "0",
    ]));
    let before = u.worker_pids();
    for _ in 0..3 {
        assert_eq!(get(u.port(), "/hello").status, 200);
    }
    let after = u.wait_for_workers(1, &before);
    assert_ne!(before, after);
    assert_eq!(get(u.port(), "/hello").text(), "hello");
}

#[test]
fn debian_venv_serves() {
    let venv = debian_venv_dir();
    if !venv.join("bin/uwsgi").is_file() {
        assert!(
            !std::env::var("PYTRACER_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1"),
            "{}/bin/uwsgi missing; run `cargo xtask setup`",
            venv.display()
        );
        eprintln!("SKIPPED: no {}/bin/uwsgi", venv.display());
        return;
    }
    let u = Uwsgi::start(opts(UwsgiMode::HttpSocket).venv(venv));
    check_routes(u.port());
}
