//! Which application function handled a request: from the Python stacks the kernel walked on
//! the thread that read the request, while it was being served. The handler is the outermost
//! frame of the application (not of Flask, Django, Werkzeug, Gunicorn or the standard library).
// foldhash: these maps are looked up on every kernel record; std's SipHash was about 5% of
// the agent's CPU under load.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use tracer_common::PyFrame;

use super::{Agent, Python};
use crate::cpython::code::CodeInfo;

/// Samples kept per thread: a request's walks are used when its span is settled, a few ms later.
const MAX_SAMPLES: usize = 64;

/// (pid, tid) → what was seen on that thread, with its kernel timestamp.
type PerThread<T> = HashMap<(u32, u32), T>;

#[derive(Default)]
pub(super) struct Samples {
    by_thread: PerThread<VecDeque<(u64, Arc<CodeInfo>)>>,
    /// The innermost application frame of the last walk made at an outgoing write, per thread.
    last_call_site: PerThread<(u64, Arc<CodeInfo>)>,
    pub stacks: u64,
    pub without_app_frame: u64,
}

impl Samples {
    /// The handler seen on thread `tid` of `pid` between `start_ns` and `end_ns`.
    pub fn handler(&mut self, pid: u32, tid: u32, start_ns: u64, end_ns: u64) -> Option<Arc<CodeInfo>> {
        let q = self.by_thread.get_mut(&(pid, tid))?;
        while q.front().is_some_and(|(t, _)| *t < start_ns) {
            q.pop_front();
        }
        q.iter().find(|(t, _)| *t <= end_ns).map(|(_, c)| c.clone())
    }

    /// The code that made the outgoing write whose walk ran between `from_ns` and `to_ns`.
    pub fn caller(&self, pid: u32, tid: u32, from_ns: u64, to_ns: u64) -> Option<Arc<CodeInfo>> {
        let (t, code) = self.last_call_site.get(&(pid, tid))?;
        (from_ns..=to_ns).contains(t).then(|| code.clone())
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_thread.retain(|k, _| k.0 != pid);
        self.last_call_site.retain(|k, _| k.0 != pid);
    }
}

/// The outermost application frame called by library code. Frames come innermost first. The
/// outermost frames are often application files too (the server's launcher script, a `<module>`
/// in the venv's bin/) that call into the server: those are not handlers, the first application
/// frame the framework calls is.
fn handler_of(frames: &[Option<Arc<CodeInfo>>]) -> Option<Arc<CodeInfo>> {
    let mut caller_is_library = false;
    for f in frames.iter().rev() {
        let Some(info) = f else {
            caller_is_library = false;
            continue;
        };
        if is_shim(info) {
            continue;
        }
        let library = is_library_file(&info.file);
        if !library && caller_is_library {
            return Some(info.clone());
        }
        caller_is_library = library;
    }
    None
}

/// Code objects the interpreter makes for itself, with no source file: 3.13's `__init__`
/// clean-up shim (filename and name both "__init__", first line 0) sits between a class call and
/// its `__init__`. They are neither the application nor a library: the walk looks through them.
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "the interpreter names its own files exactly `.py`; the check only tells shims from files"
)]
fn is_shim(info: &CodeInfo) -> bool {
    !info.file.contains('/') && !info.file.ends_with(".py")
}

/// Library code: the standard library, installed packages, and frozen or generated code.
pub fn is_library_file(path: &str) -> bool {
    path.starts_with('<')
        || path.contains("/site-packages/")
        || path.contains("/dist-packages/")
        || path.contains("/lib/python3")
        || path.contains("/lib64/python3")
}

impl Agent {
    pub(super) fn on_stack(&mut self, tgid: u32, tid: u32, ns: u64, trigger: u32, frames: &[PyFrame]) {
        self.samples.stacks += 1;
        let Some(Python::Supported { layout, .. }) = self.procs.get(&tgid).map(|t| &t.python) else { return };
        let layout = &layout.frames;
        let resolved: Vec<Option<Arc<CodeInfo>>> =
            frames.iter().map(|f| self.code_cache.resolve(tgid, f, layout)).collect();
        if trigger == tracer_common::STACK_TRIGGER_CLIENT_WRITE {
            // The innermost application frame: the code that issued the call.
            let site = resolved.iter().flatten().find(|c| !is_shim(c) && !is_library_file(&c.file));
            match site {
                Some(code) => {
                    self.samples.last_call_site.insert((tgid, tid), (ns, code.clone()));
                }
                None => {
                    self.samples.last_call_site.remove(&(tgid, tid));
                }
            }
        }
        let Some(handler) = handler_of(&resolved) else {
            self.samples.without_app_frame += 1;
            return;
        };
        let q = self.samples.by_thread.entry((tgid, tid)).or_default();
        if q.len() >= MAX_SAMPLES {
            q.pop_front();
        }
        q.push_back((ns, handler));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_files() {
        for lib in [
            "/usr/lib/python3.11/socketserver.py",
            "/root/.pyenv/versions/3.11.7/lib/python3.11/json/__init__.py",
            "/srv/app/.venv/lib/python3.12/site-packages/flask/app.py",
            "/usr/lib/python3/dist-packages/django/core/handlers/base.py",
            "<frozen importlib._bootstrap>",
        ] {
            assert!(is_library_file(lib), "{lib}");
        }
        for app in ["/srv/app/app.py", "/work/main/tests/apps/testapp.py", "/app/myproject/views.py"] {
            assert!(!is_library_file(app), "{app}");
        }
    }

    #[test]
    fn handler_is_the_outermost_app_frame_the_framework_calls() {
        let f = |name: &str, file: &str| {
            Some(Arc::new(CodeInfo { qualname: name.into(), file: file.into(), first_line: 1 }))
        };
        let lib = "/v/lib/python3.11/site-packages/flask/app.py";
        // Innermost first.
        let stack = vec![
            f("dumps", "/usr/lib/python3.11/json/__init__.py"),
            f("helper", "/srv/app.py"),
            f("get_user", "/srv/app.py"),
            f("__init__", "__init__"),
            f("dispatch_request", lib),
            None,
            f("handle", "/v/lib/python3.11/site-packages/gunicorn/workers/sync.py"),
            f("<module>", "/v/bin/gunicorn"),
        ];
        assert_eq!(handler_of(&stack).unwrap().qualname, "get_user");
        assert!(handler_of(&stack[3..]).is_none(), "only the server's own frames");
    }

    #[test]
    fn handler_is_the_first_sample_inside_the_request() {
        let mut s = Samples::default();
        let info = |n: &str| Arc::new(CodeInfo { qualname: n.into(), file: "/a.py".into(), first_line: 1 });
        let q = s.by_thread.entry((1, 2)).or_default();
        q.push_back((5, info("previous_request")));
        q.push_back((15, info("hello")));
        q.push_back((16, info("hello")));
        assert_eq!(s.handler(1, 2, 10, 20).unwrap().qualname, "hello");
        assert!(s.handler(1, 2, 30, 40).is_none());
        assert!(s.handler(1, 3, 10, 20).is_none(), "another thread");
    }
}
