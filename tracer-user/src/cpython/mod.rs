//! CPython seen from outside: which build a process runs, where its interpreter state lives, and
//! what it says. Shared by the runtime metrics and the stack walk.
pub mod build;
pub mod layout;
pub mod memory;
pub mod runtime;

use build::PythonBuild;
use layout::Layout;

/// What the agent can do with a traced process's interpreter.
pub enum Support {
    Supported { build: PythonBuild, layout: &'static Layout },
    /// Wire-only: the reason says why, for `discover` and the `python_support` metric label.
    Unsupported { reason: String, label: &'static str },
}

pub fn inspect(pid: u32) -> Support {
    let build = match build::identify(pid) {
        Ok(b) => b,
        Err(e) => {
            let label = match e {
                build::Unsupported::NotPython { .. } | build::Unsupported::NoSuchProcess { .. } => "not_python",
                _ => "unsupported_build",
            };
            return Support::Unsupported { reason: e.to_string(), label };
        }
    };
    if build.free_threaded {
        return Support::Unsupported {
            reason: format!(
                "CPython {} is a free-threaded build: it has no GIL (so no cpython_gil_wait_seconds), and its GC and thread states differ from the tables, so runtime metrics are off; spans stay wire-only",
                build.version
            ),
            label: "free_threaded",
        };
    }
    match layout::for_minor(build.version.minor) {
        Some(layout) if build.version.major == 3 => Support::Supported { build, layout },
        _ => Support::Unsupported {
            reason: format!("CPython {} has no layout table (3.8 to 3.13 have one); spans stay wire-only", build.version),
            label: "unsupported_version",
        },
    }
}
