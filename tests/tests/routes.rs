//! Route and handler on every span: `http.route`, the span name `"{METHOD} {http.route}"` and the
//! view's `code.function.name`, `code.file.path`, `code.line.number`, read by the agent from the
//! route tables of a running Flask, Django or Starlette/FastAPI app, in the agent's default mode.
//!
//! What each span must say comes from the oracle (tests/apps/route_oracle.py), run with the
//! server's own interpreter and virtualenv: the framework's own router (Werkzeug's `match`,
//! `django.urls.resolve`, Starlette's `Route.matches`) and, in `.venvs/routes-3.11` where
//! OpenTelemetry's instrumentations are installed, the `http.route` those instrumentations write
//! for the same request. Both must agree, and the span must equal them.
//!
//! - the matrix: every interpreter (pyenv 3.8–3.13, Debian's static 3.11, trixie's 3.13, sid's
//!   3.14 and 3.15) × Flask, Django and Starlette (FastAPI on the routes venv), one Gunicorn per
//!   cell and one agent per interpreter;
//! - feature cases on the routes venv: every converter, blueprints, include/namespace/re_path,
//!   class-based views, an app factory, ProxyFix, `--preload`, uWSGI's three modes, 404 and 405,
//!   and a route added while serving;
//! - real applications from PyPI (httpbin, httpbinx, Django's admin site);
//! - `pytracer routes --pid PID --json`.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pytracer_tests::*;
use serde_json::{json, Value};

/// (method, path, status the app answers)
type Req = (&'static str, &'static str, u16);

/// The route tests' virtualenv (tests/apps/requirements-routes.txt): Flask, Django 5, FastAPI,
/// the OpenTelemetry instrumentations and the PyPI apps.
fn routes_venv() -> PathBuf {
    workspace_root().join(".venvs").join("routes-3.11")
}

const UVICORN_WORKER: &str = "uvicorn.workers.UvicornWorker";

/// Where a server and its oracle run: a virtualenv on this host, or one inside a Debian chroot
/// (the apps copied to /app by the Gunicorn harness).
#[derive(Clone, Debug)]
enum Py {
    Host(PathBuf),
    Chroot(PathBuf, &'static str),
}

impl Py {
    fn gunicorn(&self, app: &str, worker_class: &str) -> GunicornOpts {
        let mut opts = GunicornOpts::sync(1).app(app);
        opts.worker_class = worker_class.into();
        match self {
            Py::Host(venv) => opts.venv(venv.clone()),
            Py::Chroot(root, venv) => opts.chroot(root.clone(), *venv),
        }
    }

    /// The oracle's lines for `requests` (see tests/apps/route_oracle.py), one per request.
    fn oracle(&self, app: &str, otel: bool, requests: &[Req]) -> Vec<Value> {
        let mut args: Vec<String> = vec![app.into()];
        if otel {
            args.push("--otel".into());
        }
        for (method, path, _) in requests {
            args.extend([(*method).to_string(), (*path).to_string()]);
        }
        let lines = parse_jsonl(&self.run_oracle(&args)).expect("the oracle prints JSON lines");
        assert_eq!(lines.len(), requests.len(), "one oracle line per request: {lines:?}");
        lines
    }

    /// Runs the oracle with the server's interpreter; its standard output.
    fn run_oracle(&self, args: &[String]) -> String {
        let mut cmd = match self {
            Py::Host(venv) => {
                let mut c = Command::new(venv.join("bin/python"));
                c.arg(apps_dir().join("route_oracle.py"));
                c
            }
            Py::Chroot(root, venv) => {
                // The Gunicorn harness copied tests/apps/*.py to the chroot's /app when it started.
                let mut c = Command::new("chroot");
                c.arg(root).arg(Path::new(venv).join("bin/python")).arg("/app/route_oracle.py");
                c
            }
        };
        // Deprecation warnings (uvicorn.workers, Starlette's TestClient on httpx) are not answers.
        let out = cmd.args(args).env("PYTHONWARNINGS", "ignore").output().expect("running the route oracle");
        assert!(
            out.status.success(),
            "route oracle {self:?} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("the oracle prints UTF-8")
    }
}

/// What a request's span must carry, from one oracle line.
#[derive(Debug, PartialEq)]
struct Expected {
    route: Option<String>,
    /// (code.function.name, code.file.path, code.line.number)
    code: Option<(String, String, u64)>,
}

/// The span's expected route and handler. Django's `path("")` route is the empty string, which
/// OpenTelemetry's Django middleware does not write (it sets http.route only when the route is
/// truthy): such a span has no http.route. Where the oracle also drove the request through
/// OpenTelemetry's instrumentation, its http.route must be the router's, and its status the one
/// the test expects.
fn expected(line: &Value, status: u16, what: &str) -> Expected {
    let router = &line["router"];
    let route = router["route"].as_str().filter(|r| !r.is_empty()).map(String::from);
    if let Some(otel) = line.get("otel") {
        assert_eq!(otel["http.route"].as_str(), route.as_deref(), "{what}: router and OpenTelemetry disagree: {line}");
        assert_eq!(otel["status"], json!(status), "{what}: the app's status under its test client: {line}");
    }
    let code = router["function"].as_str().map(|f| {
        (
            f.to_string(),
            router["file"].as_str().expect("a function has a file").to_string(),
            router["line"].as_u64().expect("a function has a line"),
        )
    });
    Expected { route, code }
}

/// What is wrong with the span of `sent`, if anything: it must carry exactly `exp`. Collected
/// rather than asserted one by one, so a failing test lists every wrong span at once.
fn check_span(span: &Value, sent: &Sent, exp: &Expected, what: &str) -> Option<String> {
    let got = Expected {
        route: attr_str(span, "http.route").map(String::from),
        code: attr_str(span, "code.function.name").map(|f| {
            (
                f.to_string(),
                attr_str(span, "code.file.path").unwrap_or("<no code.file.path>").to_string(),
                attr_u64(span, "code.line.number").unwrap_or(0),
            )
        }),
    };
    let name = exp.route.as_ref().map_or_else(|| sent.method.to_string(), |r| format!("{} {r}", sent.method));
    let mut wrong = Vec::new();
    if got != *exp {
        wrong.push(format!("got {got:?}, want {exp:?}"));
    }
    // No code.file.path or code.line.number without a function either.
    if exp.code.is_none() && !(attr(span, "code.file.path").is_null() && attr(span, "code.line.number").is_null()) {
        wrong.push("code.file.path/code.line.number without a function".into());
    }
    if span["name"] != json!(name) {
        wrong.push(format!("name {}, want {name:?}", span["name"]));
    }
    if attr_str(span, "http.request.method") != Some(sent.method)
        || attr_u64(span, "http.response.status_code") != Some(u64::from(sent.status))
    {
        wrong.push(format!("method/status not {} {}", sent.method, sent.status));
    }
    if !attr_str(span, "url.template").is_some_and(|t| t.starts_with('/')) {
        wrong.push("no url.template (it stays)".into());
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{what}: {}
    span: {span}",
            wrong.join("; ")
        )
    })
}

/// Panics listing every wrong span.
fn assert_all_right(wrong: &[String], checked: usize) {
    assert!(wrong.is_empty(), "{} of {checked} spans wrong:\n{}", wrong.len(), wrong.join("\n"));
}

/// The one span of the connection `sent` used to the server on `server_port`: with several
/// servers in one run, two connections to different servers may get the same client port.
fn span_at<'a>(spans: &'a [Value], sent: &Sent, server_port: u16, what: &str) -> &'a Value {
    let mine: Vec<&Value> = spans_of_client(spans, sent.client_port)
        .into_iter()
        .filter(|s| s["attributes"]["server.port"].as_u64() == Some(u64::from(server_port)))
        .collect();
    assert_eq!(mine.len(), 1, "{what}: one span for client port {}; spans:\n{}", sent.client_port, summarize(spans));
    mine[0]
}

/// The one span of the connection `sent` used.
fn span_of<'a>(spans: &'a [Value], sent: &Sent, what: &str) -> &'a Value {
    let mine = spans_of_client(spans, sent.client_port);
    assert_eq!(mine.len(), 1, "{what}: one span for client port {}; spans:\n{}", sent.client_port, summarize(spans));
    mine[0]
}

/// One server of a test: the app it serves and the requests it gets.
struct Cell {
    label: String,
    py: Py,
    app: &'static str,
    worker_class: &'static str,
    extra_args: &'static [&'static str],
    requests: &'static [Req],
    otel: bool,
}

impl Cell {
    fn new(label: impl Into<String>, py: &Py, app: &'static str, requests: &'static [Req]) -> Cell {
        Cell { label: label.into(), py: py.clone(), app, worker_class: "sync", extra_args: &[], requests, otel: false }
    }

    #[must_use]
    fn asgi(mut self) -> Cell {
        self.worker_class = UVICORN_WORKER;
        self
    }

    #[must_use]
    fn otel(mut self) -> Cell {
        self.otel = true;
        self
    }

    #[must_use]
    fn args(mut self, args: &'static [&'static str]) -> Cell {
        self.extra_args = args;
        self
    }
}

/// The agent in its default mode (no `--frame-eval` override: the route table alone names the
/// handler, on every span).
fn default_tracer(pids: &[u32]) -> Tracer {
    Tracer::start_with_bin(&pytracer_bin(), pids, &[])
}

/// Starts one Gunicorn per cell, one agent for all of them, sends every cell's requests (each on
/// its own connection), and checks every span against the oracle.
fn run_cells(cells: &[Cell]) {
    let servers: Vec<Gunicorn> =
        cells.iter().map(|c| Gunicorn::start(c.py.gunicorn(c.app, c.worker_class).args(c.extra_args))).collect();
    let pids: Vec<u32> = servers.iter().map(Gunicorn::pid).collect();
    let t = default_tracer(&pids);
    let sent: Vec<Vec<Sent>> = cells
        .iter()
        .zip(&servers)
        .map(|(c, g)| c.requests.iter().map(|(m, p, status)| send(g.port(), m, p, b"", *status)).collect())
        .collect();
    let r = t.stop();
    let total: usize = cells.iter().map(|c| c.requests.len()).sum();
    assert_eq!(r.spans.len(), total, "one span per request:\n{}\n{}", summarize(&r.spans), r.stderr);
    let mut wrong = Vec::new();
    for ((cell, sent), g) in cells.iter().zip(&sent).zip(&servers) {
        let lines = cell.py.oracle(cell.app, cell.otel, cell.requests);
        for ((s, line), (_, _, status)) in sent.iter().zip(&lines).zip(cell.requests) {
            let what = format!("{} {}: {} {}", cell.label, cell.app, s.method, s.target);
            let span = span_at(&r.spans, s, g.port(), &what);
            let pid = span["resource"]["process.pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            assert!(pid.is_some_and(|p| g.worker_pids().contains(&p)), "{what}: a worker's span: {span}");
            wrong.extend(check_span(span, s, &expected(line, *status, &what), &what));
        }
    }
    assert_all_right(&wrong, total);
}

// --- The matrix ----------------------------------------------------------------------------------

/// A handful per framework: converters, a blueprint or include prefix, a class-based view, a
/// decorated view, 404 and 405.
const FLASK_MATRIX: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/c/int/5", 200),
    ("GET", "/shop/items/9", 200),
    ("GET", "/view/3", 200),
    ("GET", "/decorated", 200),
    ("GET", "/missing", 404),
    ("GET", "/only-post", 405),
];
const DJANGO_MATRIX: &[Req] = &[
    ("GET", "/health/", 200),
    ("GET", "/c/int/5/", 200),
    ("GET", "/shop/items/4/reviews/great/", 200),
    ("GET", "/view/3/", 200),
    ("GET", "/decorated/", 200),
    ("GET", "/missing/", 404),
    ("GET", "/only-post/", 405),
];
const STARLETTE_MATRIX: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/items/5", 200),
    ("GET", "/hello/bob", 200),
    ("GET", "/api/users/u1", 200),
    ("GET", "/missing", 404),
    ("GET", "/only-post", 405),
];

fn matrix(label: &str, py: &Py) {
    run_cells(&[
        Cell::new(label, py, "routes_flask_app:app", FLASK_MATRIX),
        Cell::new(label, py, "djroutes:application", DJANGO_MATRIX),
        Cell::new(label, py, "routes_starlette:app", STARLETTE_MATRIX).asgi(),
    ]);
}

fn pyenv_matrix(series: &str) {
    let venv = interpreter_venv_dir(series);
    if !require_venvs(std::slice::from_ref(&venv)) {
        return;
    }
    matrix(&format!("CPython {series}"), &Py::Host(venv));
}

#[test]
fn matrix_cpython_3_8() {
    pyenv_matrix("3.8");
}

#[test]
fn matrix_cpython_3_9() {
    pyenv_matrix("3.9");
}

#[test]
fn matrix_cpython_3_10() {
    pyenv_matrix("3.10");
}

#[test]
fn matrix_cpython_3_11() {
    pyenv_matrix("3.11");
}

#[test]
fn matrix_cpython_3_12() {
    pyenv_matrix("3.12");
}

#[test]
fn matrix_cpython_3_13() {
    pyenv_matrix("3.13");
}

/// Debian's python3.11: static, stripped, no libpython mapped.
#[test]
fn matrix_debian_static_3_11() {
    if !require_privileged_debian() {
        return;
    }
    matrix("Debian 3.11 (static)", &Py::Host(debian_venv_dir()));
}

fn chroot_matrix(suite: &str, venv: &'static str, version: &str) {
    if !require_chroot_venvs(&[(suite, venv)]) {
        return;
    }
    matrix(&format!("{version} (Debian {suite}, chroot)"), &Py::Chroot(debian_chroot(suite), venv));
}

#[test]
fn matrix_trixie_3_13() {
    chroot_matrix("trixie", "/opt/venv", "3.13");
}

#[test]
fn matrix_sid_3_14() {
    chroot_matrix("sid", "/opt/venv-3.14", "3.14");
}

#[test]
fn matrix_sid_3_15() {
    chroot_matrix("sid", "/opt/venv-3.15", "3.15");
}

/// The routes venv: Flask 3.1, Django 5.2 and FastAPI, each also checked against OpenTelemetry's
/// own http.route.
#[test]
fn matrix_routes_venv_with_opentelemetry() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[
        Cell::new("routes 3.11", &py, "routes_flask_app:app", FLASK_MATRIX).otel(),
        Cell::new("routes 3.11", &py, "djroutes:application", DJANGO_MATRIX).otel(),
        Cell::new("routes 3.11", &py, "routes_fastapi:app", FASTAPI_CASES).asgi().otel(),
    ]);
}

// --- Feature cases (routes venv) -----------------------------------------------------------------

/// Every Werkzeug converter (and what each refuses: 404), the blueprint's prefix, the MethodView
/// (GET, POST, HEAD served by get; DELETE not implemented: 405), the decorated view, 405 on a
/// POST-only rule, and the strict-slash redirect (no route).
const FLASK_CASES: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/c/default/x", 200),
    ("GET", "/c/string/ab", 200),
    ("GET", "/c/string/abc", 404),
    ("GET", "/c/int/5", 200),
    ("GET", "/c/int/-5", 404),
    ("GET", "/c/signed/-3", 200),
    ("GET", "/c/float/1.5", 200),
    ("GET", "/c/path/a/b/c", 200),
    ("GET", "/c/uuid/12345678-1234-5678-1234-567812345678", 200),
    ("GET", "/c/any/a", 200),
    ("GET", "/c/any/c", 404),
    ("GET", "/decorated", 200),
    ("GET", "/only-post", 405),
    ("POST", "/only-post", 200),
    ("GET", "/dir", 308),
    ("GET", "/dir/", 200),
    ("GET", "/view/3", 200),
    ("POST", "/view/3", 201),
    ("HEAD", "/view/3", 200),
    ("DELETE", "/view/3", 405),
    ("GET", "/shop/", 200),
    ("GET", "/shop/items/9", 200),
    ("GET", "/missing", 404),
];

#[test]
fn flask_converters_blueprints_and_views() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[Cell::new("flask", &py, "routes_flask_app:app", FLASK_CASES).otel()]);
}

/// The app made by a factory Gunicorn calls (`module:create_app()`): no module-level app object.
#[test]
fn flask_app_factory() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[Cell::new("flask factory", &py, "routes_flask:create_app()", FLASK_MATRIX).otel()]);
}

/// Gunicorn serves werkzeug's ProxyFix, which holds the Flask app.
#[test]
fn flask_behind_proxyfix() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[Cell::new("flask ProxyFix", &py, "routes_flask_app:proxied", FLASK_MATRIX).otel()]);
}

/// `--preload`: the master imported the app before forking; the workers' tables are copies.
#[test]
fn flask_and_django_preloaded() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[
        Cell::new("flask --preload", &py, "routes_flask_app:app", FLASK_MATRIX).args(&["--preload"]).otel(),
        Cell::new("django --preload", &py, "djroutes:application", DJANGO_MATRIX).args(&["--preload"]).otel(),
    ]);
}

/// Every path() converter and a registered one, re_path, include() nested twice with namespaces
/// and of a plain list, a class-based View (HEAD served by get), require_http_methods' 405 (the
/// URL resolved: the route is set and the decorated view named), APPEND_SLASH's redirect (no
/// route), the empty route of path("") (no http.route), and 404.
const DJANGO_CASES: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/health", 301),
    ("GET", "/health/", 200),
    ("GET", "/c/int/5/", 200),
    ("GET", "/c/str/abc/", 200),
    ("GET", "/c/slug/a-b/", 200),
    ("GET", "/c/uuid/12345678-1234-5678-1234-567812345678/", 200),
    ("GET", "/c/path/a/b", 200),
    ("GET", "/c/year/2024/", 200),
    ("GET", "/c/year/24/", 404),
    ("GET", "/archive/1999/", 200),
    ("GET", "/decorated/", 200),
    ("GET", "/only-post/", 405),
    ("POST", "/only-post/", 200),
    ("GET", "/shop/", 200),
    ("GET", "/shop/items/4/", 200),
    ("GET", "/shop/items/4/reviews/great/", 200),
    ("GET", "/listed/here/", 200),
    ("GET", "/view/3/", 200),
    ("POST", "/view/3/", 201),
    ("HEAD", "/view/3/", 200),
    ("GET", "/missing/", 404),
];

#[test]
fn django_converters_includes_and_views() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[Cell::new("django", &py, "djroutes:application", DJANGO_CASES).otel()]);
}

/// Typed, plain and path parameters, the APIRouter's prefix, the Mount (OpenTelemetry's route
/// is the Mount's own path), 405 (the route is set, no view runs; FastAPI's GET routes do not
/// answer HEAD), and 404.
const FASTAPI_CASES: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/items/5", 200),
    ("GET", "/items/x", 404),
    ("GET", "/hello/bob", 200),
    ("HEAD", "/hello/bob", 405),
    ("GET", "/files/a/b.txt", 200),
    ("GET", "/only-post", 405),
    ("POST", "/only-post", 200),
    ("GET", "/api/users/u1", 200),
    ("GET", "/sub/ping", 200),
    ("GET", "/missing", 404),
];

/// The plain Starlette app: a Route answers HEAD with its GET endpoint.
const STARLETTE_CASES: &[Req] = &[
    ("GET", "/", 200),
    ("GET", "/items/5", 200),
    ("GET", "/items/x", 404),
    ("GET", "/hello/bob", 200),
    ("HEAD", "/hello/bob", 200),
    ("GET", "/files/a/b.txt", 200),
    ("GET", "/only-post", 405),
    ("POST", "/only-post", 200),
    ("GET", "/api/users/u1", 200),
    ("GET", "/missing", 404),
];

#[test]
fn fastapi_and_starlette_routes() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[
        Cell::new("fastapi", &py, "routes_fastapi:app", FASTAPI_CASES).asgi().otel(),
        Cell::new("starlette", &py, "routes_starlette:app", STARLETTE_CASES).asgi().otel(),
    ]);
}

/// uWSGI in its three modes serving the Flask app (the default test venv's uWSGI and Flask 3.1):
/// the route and handler as under Gunicorn, on the worker's span.
#[test]
fn flask_under_uwsgi_every_mode() {
    if !require_privileged() || !require_uwsgi_nginx() {
        return;
    }
    let py = Py::Host(venv_dir());
    let lines = py.oracle("routes_flask_app:app", false, FLASK_MATRIX);
    let mut wrong = Vec::new();
    for mode in [UwsgiMode::HttpSocket, UwsgiMode::HttpRouter, UwsgiMode::UwsgiSocket] {
        let u = Uwsgi::start(UwsgiOpts::new(mode, 1).module("routes_flask_app:app"));
        let nginx = (mode == UwsgiMode::UwsgiSocket).then(|| Nginx::start_uwsgi_pass(u.upstream()));
        let port = nginx.as_ref().map_or_else(|| u.port(), Nginx::port);
        let t = default_tracer(&[u.pid()]);
        let sent: Vec<Sent> = FLASK_MATRIX.iter().map(|(m, p, status)| send(port, m, p, b"", *status)).collect();
        let r = t.stop();
        assert_eq!(r.spans.len(), sent.len(), "uWSGI {mode:?}: {}\n{}", summarize(&r.spans), r.stderr);
        for ((s, line), (_, _, status)) in sent.iter().zip(&lines).zip(FLASK_MATRIX) {
            let what = format!("uWSGI {mode:?}: {} {}", s.method, s.target);
            // Behind nginx too: the span's client is the one nginx passes (REMOTE_ADDR/PORT).
            let span = span_of(&r.spans, s, &what);
            wrong.extend(check_span(span, s, &expected(line, *status, &what), &what));
        }
    }
    assert_all_right(&wrong, 3 * FLASK_MATRIX.len());
}

/// Complete lines of the agent's output so far (the last may be half written).
fn spans_so_far(t: &Tracer) -> Vec<Value> {
    let text = std::fs::read_to_string(t.output_path()).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    parse_jsonl(complete).expect("the agent writes JSON lines")
}

/// A rule added while serving (the app's POST /admin/add-route puts /late/<int:n> in its url_map
/// and view_functions): a request to it gets its route and handler within 10 s, and no span
/// before that carries a wrong one.
#[test]
fn flask_route_added_at_run_time() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    let lines = py.oracle("routes_flask_app:app", true, &[("POST", "/admin/add-route", 200), ("GET", "/late/7", 200)]);
    let late = expected(&lines[1], 200, "GET /late/7");
    assert_eq!(late.route.as_deref(), Some("/late/<int:n>"), "the oracle sees the added rule");
    let g = Gunicorn::start(py.gunicorn("routes_flask_app:app", "sync"));
    let t = default_tracer(&[g.pid()]);
    let add = send(g.port(), "POST", "/admin/add-route", b"", 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tries = Vec::new();
    let found = loop {
        let s = send(g.port(), "GET", "/late/7", b"", 200);
        let span = wait_for(Duration::from_secs(5), || {
            spans_so_far(&t).into_iter().find(|sp| attr_u64(sp, "client.port") == Some(u64::from(s.client_port)))
        })
        .unwrap_or_else(|| panic!("no span for GET /late/7 (client port {}): {}", s.client_port, t.stderr_now()));
        let route = attr_str(&span, "http.route").map(String::from);
        assert!(route.is_none() || route == late.route, "a wrong route before the table was re-read: {span}");
        tries.push((s, span));
        if route.is_some() || Instant::now() >= deadline {
            break route.is_some();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let r = t.stop();
    assert!(found, "GET /late/7 never got its route within 10 s; last span: {}", tries.last().unwrap().1);
    let (s, span) = tries.last().unwrap();
    let add_span = span_of(&r.spans, &add, "POST /admin/add-route");
    let wrong: Vec<String> = [
        check_span(span, s, &late, "GET /late/7 after the rule was added"),
        check_span(add_span, &add, &expected(&lines[0], 200, "POST /admin/add-route"), "POST /admin/add-route"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_all_right(&wrong, 2);
}

// --- Real applications from PyPI ------------------------------------------------------------------

/// httpbin (Flask): converters in real rules (`/status/<codes>`, `/bytes/<int:n>`,
/// `/anything/<path:anything>`), decorated views.
const HTTPBIN: &[Req] = &[
    ("GET", "/get", 200),
    ("GET", "/status/418", 418),
    ("GET", "/anything/foo/bar", 200),
    ("GET", "/bytes/16", 200),
    ("POST", "/post", 200),
    ("GET", "/nope", 404),
];

/// httpbinx (FastAPI): routers included from several modules.
const HTTPBINX: &[Req] = &[
    ("GET", "/get", 200),
    ("GET", "/status/418", 418),
    ("GET", "/bytes/16", 200),
    ("GET", "/uuid", 200),
    ("POST", "/post", 200),
    ("GET", "/nope", 404),
];

/// Django's admin site: AdminSite's bound methods behind admin_view's decorators, ModelAdmin
/// views, and the catch-all re_path inside a path() include; an anonymous visitor is redirected
/// to the login page.
const DJANGO_ADMIN: &[Req] = &[
    ("GET", "/admin/", 302),
    ("GET", "/admin/login/", 200),
    ("GET", "/admin/auth/user/", 302),
    ("GET", "/admin/password_change/", 302),
    ("GET", "/admin/nope/", 302),
    ("GET", "/elsewhere/", 404),
];

#[test]
fn real_pypi_apps() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    run_cells(&[
        Cell::new("httpbin", &py, "pypi_httpbin:app", HTTPBIN).otel(),
        Cell::new("httpbinx", &py, "pypi_httpbinx:app", HTTPBINX).asgi().otel(),
        Cell::new("django admin", &py, "djadmin:application", DJANGO_ADMIN).otel(),
    ]);
}

// --- pytracer routes ------------------------------------------------------------------------------

/// Routes sorted by their JSON text: the order of a route table is not part of the contract.
fn sorted_routes(v: &Value) -> Vec<String> {
    let mut routes: Vec<String> =
        v.as_array().unwrap_or_else(|| panic!("routes is a list: {v}")).iter().map(Value::to_string).collect();
    routes.sort();
    routes
}

/// `pytracer routes --pid WORKER --json` lists every rule of the Flask test app's url_map, each
/// with its methods and view (the MethodView once per method it implements), exactly as the
/// oracle reads them from `app.url_map.iter_rules()`.
#[test]
fn routes_command_lists_the_flask_app() {
    if !require_venvs(&[routes_venv()]) {
        return;
    }
    let py = Py::Host(routes_venv());
    let g = Gunicorn::start(py.gunicorn("routes_flask_app:app", "sync"));
    let worker = g.wait_for_workers(1, &[])[0];
    let out = Command::new(pytracer_bin())
        .args(["routes", "--pid", &worker.to_string(), "--json"])
        .output()
        .expect("running pytracer routes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytracer routes exited {}: {stderr}", out.status);
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("pytracer routes --json: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let want: Value =
        serde_json::from_str(&py.run_oracle(&["routes_flask_app:app".into(), "--routes".into()])).expect("oracle JSON");
    assert_eq!(got["pid"], json!(worker), "{got}");
    assert_eq!(got["framework"], "flask", "{got}");
    assert!(got["found_at"].as_str().is_some_and(|s| !s.is_empty()), "found_at says where the app was found: {got}");
    assert_eq!(sorted_routes(&got["routes"]), sorted_routes(&want["routes"]), "{got}");
    assert_eq!(got["skipped"], json!([]), "{got}");
    let keys: Vec<&String> = got.as_object().expect("an object").keys().collect();
    assert_eq!(keys.len(), 5, "pid, framework, found_at, routes, skipped: {got}");
    assert_eq!(got["found_at"], "routes_flask_app:app", "the command line's module:variable: {got}");

    // `discover` says the same in one line per traced process.
    let out = Command::new(pytracer_bin()).args(["discover", "--json"]).output().expect("running pytracer discover");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|c| c["pid"] == json!(worker))
        .unwrap_or_else(|| panic!("discover lists the worker {worker}"));
    // Rules, not listing entries: a class-based view's rule is one entry per method.
    let rules: std::collections::BTreeSet<&str> =
        want["routes"].as_array().expect("a list").iter().filter_map(|r| r["route"].as_str()).collect();
    assert_eq!(
        line["python"]["routes"],
        json!(format!("flask, {} rules (routes_flask_app:app)", rules.len())),
        "{line}"
    );
}
