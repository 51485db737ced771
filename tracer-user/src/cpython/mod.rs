//! CPython seen from outside: which build a process runs, where its interpreter state lives, and
//! what it says. Shared by the runtime metrics and the stack walk.
pub mod build;
pub mod code;
pub mod debug_offsets;
pub mod elf;
pub mod interpreter;
pub mod layout;
pub mod lines;
pub mod maps;
pub mod memory;
pub mod object_layout;
pub mod objects;
pub mod runtime;
pub mod version;
pub mod versions;
pub mod walk;

use std::sync::Mutex;

use build::PythonBuild;
use layout::Layout;

/// What the agent can do with a traced process's interpreter.
pub enum Support {
    Supported {
        build: PythonBuild,
        layout: &'static Layout,
        layout_source: LayoutSource,
    },
    /// Wire-only: the reason says why, for `discover` and the `python_support` metric label.
    Unsupported {
        reason: String,
        label: &'static str,
    },
}

pub use versions::LayoutSource;

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
    // versions.rs says which layout row a version uses and whether _Py_DebugOffsets overrides it.
    let Some(spec) = versions::for_version(build.version) else {
        return Support::Unsupported {
            reason: format!(
                "CPython {} is not supported ({}); spans stay wire-only",
                build.version,
                versions::supported_summary()
            ),
            label: "unsupported_version",
        };
    };
    let table = layout::for_minor(spec.row).expect("every version spec names a layout row");
    if spec.debug_offsets.is_none() {
        return Support::Supported { build, layout: table, layout_source: LayoutSource::Table };
    }
    let mem = memory::Memory::new(pid);
    match debug_offsets::read(&mem, build.runtime_addr, build.version, table) {
        Ok(live) => Support::Supported { layout: intern(&live), build, layout_source: LayoutSource::DebugOffsets },
        Err(e) => Support::Unsupported { reason: format!("pid {pid}: {e}"), label: "bad_debug_offsets" },
    }
}

/// Layouts read from live processes, kept for the agent's lifetime: a handful of distinct ones at
/// most (one per build), each shared by every process that has it.
fn intern(layout: &Layout) -> &'static Layout {
    static SEEN: Mutex<Vec<&'static Layout>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(l) = seen.iter().find(|l| **l == layout) {
        return l;
    }
    let l: &'static Layout = Box::leak(Box::new(*layout));
    seen.push(l);
    l
}
