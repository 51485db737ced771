//! Issue 6 end to end: on every pyenv CPython from 3.8 to 3.13, Gunicorn serving Flask and
//! Django, traced with the frame-evaluation probe always on. Every span names the application
//! function that handled it (code.function.name, code.file.path, code.line.number), exactly.
use pytracer_tests::*;
use serde_json::Value;

fn assert_handler(span: &Value, (seen_as, source): (&std::path::Path, &std::path::Path), function: &str, series: &str) {
    let what = format!(
        "CPython {series}, {} {}",
        attr_str(span, "http.request.method").unwrap_or("?"),
        span_path(span).unwrap_or("?")
    );
    assert_eq!(attr_str(span, "code.function.name"), Some(function), "{what}: {span}");
    assert_eq!(attr_str(span, "code.file.path"), Some(seen_as.to_str().unwrap()), "{what}");
    assert_eq!(attr_u64(span, "code.line.number"), Some(first_line_of(source, function)), "{what}");
}

/// (method, path, body, status, handler)
type Case = (&'static str, &'static str, &'static [u8], u16, &'static str);

fn traced_handlers(series: &str, app: &str, file: &str, cases: &[Case]) {
    traced_handlers_in(interpreter_venv_dir(series), series, app, file, cases);
}

fn traced_handlers_in(venv: std::path::PathBuf, series: &str, app: &str, file: &str, cases: &[Case]) {
    let file = apps_dir().join(file);
    traced_with(GunicornOpts::sync(2).venv(venv).app(app), series, app, (&file, &file), cases);
}

/// `file`: the app's path as the traced process sees it (code.file.path), and where its source
/// is read on this host (for the expected line numbers).
fn traced_with(
    opts: GunicornOpts,
    series: &str,
    app: &str,
    file: (&std::path::Path, &std::path::Path),
    cases: &[Case],
) {
    let g = Gunicorn::start(opts);
    let t = Tracer::start(&[g.pid()], &["--frame-eval", "always"]);
    let mut sent = Vec::new();
    for (method, path, body, status, _) in cases {
        sent.push(send(g.port(), method, path, body, *status));
    }
    let r = t.stop();
    assert_eq!(r.spans.len(), cases.len(), "CPython {series} {app}: {}\n{}", summarize(&r.spans), r.stderr);
    for (s, (_, _, _, _, handler)) in sent.iter().zip(cases) {
        let mine = spans_of_client(&r.spans, s.client_port);
        assert_eq!(mine.len(), 1, "CPython {series}: client port {}", s.client_port);
        assert_handler(mine[0], file, handler, series);
    }
}

#[test]
fn flask_handlers_on_every_interpreter() {
    if !require_interpreters() {
        return;
    }
    for series in INTERPRETER_SERIES {
        traced_handlers(
            series,
            "testapp:app",
            "testapp.py",
            &[
                ("GET", "/hello", b"", 200, "hello"),
                ("GET", "/users/42", b"", 200, "user"),
                ("POST", "/items", b"name=x", 201, "create_item"),
                ("GET", "/hello", b"", 200, "hello"),
            ],
        );
    }
}

/// Debian's python3.11: a static, stripped executable (no libpython mapped), CET-enabled.
#[test]
fn flask_handlers_on_debian_static_python() {
    if !require_privileged_debian() {
        return;
    }
    traced_handlers_in(
        debian_venv_dir(),
        "3.11 (Debian, static)",
        "testapp:app",
        "testapp.py",
        &[
            ("GET", "/hello", b"", 200, "hello"),
            ("GET", "/users/42", b"", 200, "user"),
            ("POST", "/items", b"name=x", 201, "create_item"),
        ],
    );
}

/// Debian's own builds in chroots: trixie's 3.13.5, sid's 3.14 and 3.15. Static, stripped,
/// `_PyEval_EvalFrameDefault` starting with endbr64 (the probe goes after it), offsets from
/// `_Py_DebugOffsets` (3.14+ also tag the frame's code pointer), files reached through
/// /proc/PID/root; the app's files are the chroot's paths.
#[test]
fn flask_and_django_handlers_in_debian_chroots() {
    let venvs = [("trixie", "/opt/venv", "3.13"), ("sid", "/opt/venv-3.14", "3.14"), ("sid", "/opt/venv-3.15", "3.15")];
    if !require_chroot_venvs(&venvs.map(|(suite, venv, _)| (suite, venv))) {
        return;
    }
    for (suite, venv, version) in venvs {
        for (app, file, cases) in [
            (
                "testapp:app",
                "testapp.py",
                &[("GET", "/hello", &b""[..], 200, "hello"), ("GET", "/users/42", b"", 200, "user")][..],
            ),
            (
                "djangoapp:application",
                "djangoapp.py",
                &[
                    ("GET", "/articles/2024/hello-world/", &b""[..], 200, "article"),
                    ("GET", "/health/", b"", 200, "health"),
                ][..],
            ),
        ] {
            let seen_as = std::path::Path::new("/app").join(file);
            let series = format!("{version} (Debian {suite}, chroot)");
            traced_with(
                GunicornOpts::sync(2).chroot(debian_chroot(suite), venv).app(app),
                &series,
                app,
                (&seen_as, &apps_dir().join(file)),
                cases,
            );
        }
    }
}

#[test]
fn django_handlers_on_every_interpreter() {
    if !require_interpreters() {
        return;
    }
    for series in INTERPRETER_SERIES {
        traced_handlers(
            series,
            "djangoapp:application",
            "djangoapp.py",
            &[
                ("GET", "/articles/2024/hello-world/", b"", 200, "article"),
                ("GET", "/health/", b"", 200, "health"),
                ("GET", "/articles/1999/x/", b"", 200, "article"),
            ],
        );
    }
}

/// CPython 3.7 has no layout table: the process is traced wire-only, its spans exact, and the
/// agent says why.
#[test]
fn unsupported_interpreter_gets_wire_spans() {
    if !require_interpreters() {
        return;
    }
    let venv = interpreter_venv_dir("3.7");
    let g = Gunicorn::start(GunicornOpts::sync(1).venv(venv).app("wsgiapp:application"));
    let t = Tracer::start(&[g.pid()], &["--frame-eval", "always"]);
    let hello = send(g.port(), "GET", "/hello", b"", 200);
    let missing = send(g.port(), "GET", "/nope/12", b"", 404);
    let r = t.stop();
    assert_eq!(r.spans.len(), 2, "{}", summarize(&r.spans));
    for s in [&hello, &missing] {
        let mine = spans_of_client(&r.spans, s.client_port);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0]["attributes"], expected_attributes(s, g.port()), "wire-level attributes only, no code.*");
    }
    assert!(r.stderr.contains("is Python 3.7") && r.stderr.contains("supports Python 3.8 and later"), "{}", r.stderr);
}

/// The default mode: the probe is attached only in windows. Every span carries the handler
/// (from the app's route table); the stack walk sees it only for requests served inside a window,
/// and there it must agree with the table: the checks count those, and none disagrees.
#[test]
fn sampled_windows_name_handlers_only_inside_windows() {
    if !require_interpreters() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(1).venv(interpreter_venv_dir("3.11")));
    let dir = TempDir::new("sampled").unwrap();
    let config = dir.path().join("pytracer.yaml");
    // Windows of 300 ms every second, walking every hit inside them.
    std::fs::write(&config, "cpython:\n  frame_eval:\n    mode: sampled\n    window_ms: 300\n    every_seconds: 1\n    min_walk_gap_us: 0\n    in_routed_processes: true\n").unwrap();
    let mport = free_port();
    let t = Tracer::start(
        &[g.pid()],
        &[
            "--config",
            config.to_str().unwrap(),
            "--frame-eval",
            "sampled",
            "--metrics-addr",
            &format!("127.0.0.1:{mport}"),
        ],
    );
    let mut sent = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(4) {
        sent.push(send(g.port(), "GET", "/users/42", b"", 200));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let m = scrape(mport);
    let r = t.stop();
    assert_eq!(r.spans.len(), sent.len(), "{}", summarize(&r.spans));
    let file = apps_dir().join("testapp.py");
    for s in &r.spans {
        assert_handler(s, (&file, &file), "user", "3.11 sampled");
    }
    let checks = |result: &str| sum(&m, "pytracer_route_checks_total", &[("result", result)]) as usize;
    // About 30% of the time is inside a window; the first opens 1 s after start.
    assert!(checks("agree") * 10 >= sent.len(), "{} of {} requests walked", checks("agree"), sent.len());
    assert!(
        checks("agree") < sent.len(),
        "outside windows the probe is detached: {} of {}",
        checks("agree"),
        sent.len()
    );
    assert_eq!(checks("disagree"), 0, "the stack walk and the route table name the same handler");
}
