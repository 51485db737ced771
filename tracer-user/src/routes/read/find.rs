//! Finding the application object in a worker: the `module:variable` its command line names
//! (Gunicorn's app URI, uWSGI's `--module`/`--callable`), the Gunicorn worker itself (reached
//! through its signal handlers, for app factories), then module globals; through wrappers such
//! as ProxyFix, WhiteNoise or ASGI middleware. Django needs no object: its settings name the
//! root urlconf.
use std::rc::Rc;

use super::{django, flask, starlette, RoutesError};
use crate::cpython::interpreter::Interpreter;
use crate::cpython::objects::{Objects, MAX_UNWRAP};
use crate::routes::table::{Framework, RouteTable};

/// Top-level packages never holding the app: skipped by the scan of module globals.
const LIBRARIES: &[&str] = &[
    "flask",
    "werkzeug",
    "django",
    "starlette",
    "fastapi",
    "gunicorn",
    "uvicorn",
    "uwsgi",
    "jinja2",
    "click",
    "asgiref",
    "pydantic",
    "pydantic_core",
    "anyio",
    "h11",
    "httptools",
    "sqlparse",
    "markupsafe",
    "itsdangerous",
    "blinker",
    "encodings",
    "importlib",
    "collections",
    "email",
    "http",
    "json",
    "logging",
    "concurrent",
    "asyncio",
    "urllib",
    "xml",
    "ctypes",
    "multiprocessing",
    "unittest",
    "re",
    "os",
    "sys",
    "typing",
    "typing_extensions",
    "zipfile",
    "opentelemetry",
    "psycopg",
    "redis",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
    "site",
];
/// Module globals looked at in the scan at most.
const MAX_GLOBALS: usize = 20_000;
/// Gunicorn's workers keep their app in `wsgi` (sync, gthread, uvicorn's worker) or `asgi`
/// (gunicorn's own asgi worker); SIGTERM's handler is the worker's bound method, except under
/// uvicorn's worker, which keeps only SIGUSR1 (and SIGQUIT) on it.
const WORKER_SIGNALS: [u64; 3] = [15, 10, 3];

pub fn table(interp: &Interpreter, o: &Objects, pid: u32) -> Result<RouteTable, RoutesError> {
    let modules = interp.sys_modules(o)?;
    let module = |name: &str| modules.iter().find(|(n, _)| &**n == name).map(|(_, m)| *m);
    let hints = hints(pid);
    let mut looked = Vec::new();
    for (m, attr) in &hints {
        looked.push(format!("{m}:{attr}"));
        // A hinted name that is not a module (or not there) is no app.
        let Some(obj) = module(m).and_then(|m| o.module_global(m, attr).ok()).flatten() else { continue };
        if let Some(t) = app_table(o, obj, format!("{m}:{attr}"), &modules)? {
            return Ok(t);
        }
    }
    if let Some(t) = from_worker(interp, o, &modules)? {
        return Ok(t);
    }
    if let Some(t) = from_worker_frames(interp, o, &modules)? {
        return Ok(t);
    }
    // Module globals: the hinted modules first (a factory's module may keep what it made).
    let mut order: Vec<&(Rc<str>, u64)> =
        modules.iter().filter(|(n, _)| hints.iter().any(|(m, _)| **m == **n)).collect();
    order.extend(modules.iter().filter(|(n, _)| scanned_module(n) && !hints.iter().any(|(m, _)| **m == **n)));
    let mut seen = 0;
    for (name, m) in order {
        // sys.modules may hold objects that are not modules (lazy loaders, shims): skipped.
        let globals = match o.module_dict(*m) {
            Ok(g) => g,
            Err(e @ crate::cpython::objects::ObjectError::Budget(_)) => return Err(e.into()),
            Err(_) => continue,
        };
        for (global, obj) in globals.iter().cloned() {
            seen += 1;
            if seen > MAX_GLOBALS {
                break;
            }
            // Only instances of classes can be apps: skip functions, modules, strs, ... cheaply.
            let Ok(ty) = o.type_of(obj) else { continue };
            if o.type_flags(ty)? & crate::cpython::object_layout::fixed::TPFLAGS_HEAPTYPE == 0 {
                continue;
            }
            if framework_of(o, obj)?.is_some() {
                if let Some(t) = app_table(o, obj, format!("{name}:{global}"), &modules)? {
                    return Ok(t);
                }
            }
        }
    }
    if module("django.conf").is_some() {
        return django::read(o, &modules);
    }
    Err(RoutesError::NoApp(format!(
        "no Flask, Django, Starlette or FastAPI application found (looked at {}the Gunicorn worker and module globals)",
        if looked.is_empty() { String::new() } else { format!("{}, ", looked.join(", ")) }
    )))
}

/// What a framework object is, by its class or a base class.
enum Kind {
    Flask,
    Starlette(Framework),
    Django,
}

fn framework_of(o: &Objects, obj: u64) -> Result<Option<Kind>, RoutesError> {
    let ty = o.type_of(obj)?;
    for t in o.mro(ty)? {
        let kind = match &*o.type_name(t)? {
            "Flask" => Kind::Flask,
            "FastAPI" => Kind::Starlette(Framework::FastApi),
            "Starlette" => Kind::Starlette(Framework::Starlette),
            "WSGIHandler" | "ASGIHandler" => Kind::Django,
            _ => continue,
        };
        return Ok(Some(kind));
    }
    Ok(None)
}

/// The table of the app `obj` is or wraps.
fn app_table(
    o: &Objects,
    mut obj: u64,
    found_at: String,
    modules: &[(Rc<str>, u64)],
) -> Result<Option<RouteTable>, RoutesError> {
    for _ in 0..MAX_UNWRAP {
        match framework_of(o, obj)? {
            Some(Kind::Flask) => return Ok(Some(flask::read(o, obj, found_at)?)),
            Some(Kind::Starlette(f)) => return Ok(Some(starlette::read(o, obj, f, found_at)?)),
            Some(Kind::Django) => return django::read(o, modules).map(Some),
            None => {}
        }
        // Middleware keeps what it wraps as `app` (ProxyFix, Starlette's), `application`
        // (WhiteNoise) or `wsgi_app`.
        let mut next = None;
        for attr in ["app", "application", "wsgi_app", "_app"] {
            if let Some(inner) = o.own_attr(obj, attr)? {
                next = Some(inner);
                break;
            }
        }
        match next {
            Some(n) => obj = n,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// The Gunicorn worker's app, through the bound method it installed as a signal handler.
fn from_worker(
    interp: &Interpreter,
    o: &Objects,
    modules: &[(Rc<str>, u64)],
) -> Result<Option<RouteTable>, RoutesError> {
    let Some(handlers) = interp.objects.signal_handlers else { return Ok(None) };
    for sig in WORKER_SIGNALS {
        let Ok(Some(handler)) = o.opt_ptr(interp.runtime_addr + handlers + 16 * sig, "signal handler") else {
            continue;
        };
        if &*o.type_name_of(handler)? != "method" {
            continue;
        }
        let worker = o.ptr(handler + crate::cpython::object_layout::fixed::METHOD_SELF, "method self")?;
        if !o.is_instance_of(worker, "Worker")? {
            continue;
        }
        if let Some(t) = worker_app(o, worker, modules)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Functions of Gunicorn's workers that run for the worker's whole life, `self` their local 0:
/// some thread is inside one of them (the main thread, under `run`).
const WORKER_FRAMES: [&str; 5] = ["run", "run_for_one", "run_for_multiple", "init_process", "handle"];
/// Thread states and frames per thread looked at at most.
const MAX_THREADS: usize = 64;
const MAX_FRAMES: usize = 128;

/// The Gunicorn worker found on a thread's stack (for interpreters whose signal handlers are
/// out of reach, 3.8–3.11): a frame of one of its methods holds it as `self`.
fn from_worker_frames(
    interp: &Interpreter,
    o: &Objects,
    modules: &[(Rc<str>, u64)],
) -> Result<Option<RouteTable>, RoutesError> {
    let l = interp.layout;
    let f = &l.frames;
    let head = o.ptr(interp.runtime_addr + l.runtime_interpreters_head, "interpreter state")?;
    let mut tstate = o.opt_ptr(head + l.interp_threads_head, "thread state")?;
    for _ in 0..MAX_THREADS {
        let Some(t) = tstate else { break };
        let mut frame = match f.cframe_current_frame {
            Some(cur) => match o.opt_ptr(t + f.tstate_frame, "cframe")? {
                Some(cframe) => o.opt_ptr(cframe + cur, "frame")?,
                None => None,
            },
            None => o.opt_ptr(t + f.tstate_frame, "frame")?,
        };
        for _ in 0..MAX_FRAMES {
            let Some(fr) = frame else { break };
            frame = o.opt_ptr(fr + f.frame_previous, "previous frame")?;
            if let (Some(owner_at), Some(cstack)) = (f.frame_owner, f.owner_cstack) {
                if o.u64(fr + owner_at)? as u8 >= cstack {
                    continue; // a C-stack shim or entry frame: no code
                }
            }
            let code = o.u64(fr + f.frame_code)? & !f.code_tag_mask;
            if code == 0 || o.type_name_of(code).map_or(true, |n| &*n != "code") {
                continue;
            }
            let name = o.str(o.ptr(code + f.code_name, "code name")?)?;
            if !WORKER_FRAMES.contains(&&*name) {
                continue;
            }
            let Some(me) = o.opt_ptr(fr + interp.objects.frame_locals, "self")? else { continue };
            if o.is_instance_of(me, "Worker")? {
                if let Some(t) = worker_app(o, me, modules)? {
                    return Ok(Some(t));
                }
            }
        }
        tstate = o.opt_ptr(t + l.tstate_next, "next thread state")?;
    }
    Ok(None)
}

/// The app a Gunicorn worker loaded.
fn worker_app(o: &Objects, worker: u64, modules: &[(Rc<str>, u64)]) -> Result<Option<RouteTable>, RoutesError> {
    for attr in ["wsgi", "asgi"] {
        if let Some(app) = o.own_attr(worker, attr)? {
            if let Some(t) = app_table(o, app, format!("gunicorn worker.{attr}"), modules)? {
                return Ok(Some(t));
            }
        }
    }
    Ok(None)
}

fn scanned(module: &str) -> bool {
    let top = module.split('.').next().unwrap_or(module);
    !top.starts_with('_') || module == "__main__"
}

/// (module, variable) pairs the command line names: Gunicorn's `module:variable` (a factory
/// call `module:create_app()` names only its module), uWSGI's `--module`/`-w`/`--wsgi` with its
/// `--callable` (default `application`).
fn hints(pid: u32) -> Vec<(String, String)> {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return Vec::new() };
    let args: Vec<String> = raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    parse_hints(&args)
}

fn parse_hints(args: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut callable = "application".to_string();
    let mut uwsgi_modules = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = |i: usize, flag: &str| -> Option<String> {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        };
        if let Some(v) = value(i, "--callable") {
            callable = v;
        } else if let Some(v) = ["--module", "-w", "--wsgi"].iter().find_map(|f| value(i, f)) {
            uwsgi_modules.push(v);
        } else if !a.starts_with('-') {
            if let Some((m, var)) = app_uri(a) {
                out.push((m, var));
            }
        }
        i += 1;
    }
    // Gunicorn's `-w` is its worker count: only a dotted name is a module.
    for m in uwsgi_modules {
        let hint = match m.split_once(':') {
            Some(_) => app_uri(&m),
            None => app_uri(&format!("{m}:{callable}")),
        };
        out.extend(hint);
    }
    out
}

/// `gapp:app` → (gapp, app); `pkg.mod:create_app()` → (pkg.mod, create_app), whose global is
/// the factory, not the app: the scan and the worker find the app.
fn app_uri(arg: &str) -> Option<(String, String)> {
    let (m, var) = arg.split_once(':')?;
    let var = var.split('(').next().unwrap_or(var);
    let ident = |s: &str| {
        s.split('.').all(|p| {
            p.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
    };
    (ident(m) && ident(var)).then(|| (m.to_string(), var.to_string()))
}

/// Whether `module` is one to scan: not a library's (its top-level package is not in
/// [`LIBRARIES`]) and not private.
fn scanned_module(module: &str) -> bool {
    let top = module.split('.').next().unwrap_or(module);
    scanned(module) && !LIBRARIES.contains(&top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn command_lines_name_the_app() {
        let h = parse_hints(&args("/venv/bin/python /venv/bin/gunicorn -w 2 -b 127.0.0.1:8000 gapp:app"));
        assert_eq!(h, [("gapp".to_string(), "app".to_string())]);
        let h = parse_hints(&args("gunicorn --bind=unix:/run/x.sock 'factory:create_app()' pkg.wsgi:application"));
        assert_eq!(h, [("pkg.wsgi".to_string(), "application".to_string())], "quoted as a shell would not be");
        let h = parse_hints(&args("gunicorn factory:create_app(debug=True)"));
        assert_eq!(h, [("factory".to_string(), "create_app".to_string())]);
        let h = parse_hints(&args("uwsgi --http :8000 --module wsgiapp --callable app --master"));
        assert_eq!(h, [("wsgiapp".to_string(), "app".to_string())]);
        let h = parse_hints(&args("uwsgi --module=djproj.wsgi:application"));
        assert_eq!(h, [("djproj.wsgi".to_string(), "application".to_string())]);
        assert!(parse_hints(&args("uwsgi --http :8000 --wsgi-file app.py")).is_empty());
    }

    #[test]
    fn library_modules_are_not_scanned() {
        assert!(scanned_module("gapp") && scanned_module("__main__") && scanned_module("uwsgi_file_app"));
        assert!(!scanned_module("flask.app") && !scanned_module("_thread") && !scanned_module("json.decoder"));
    }
}
