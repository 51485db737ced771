//! CPython seen from outside: which build a process runs, where its interpreter state lives, and
//! what it says. Shared by the runtime metrics and the stack walk.
pub mod build;
pub mod code;
pub mod debug_offsets;
pub mod layout;
pub mod memory;
pub mod runtime;
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

/// Where the offsets used for a process came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The per-version table in layout.rs (3.8–3.12), checked against DWARF by a test.
    Table,
    /// `_Py_DebugOffsets` read from the live process (3.13+).
    DebugOffsets,
}

impl LayoutSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutSource::Table => "table",
            LayoutSource::DebugOffsets => "_Py_DebugOffsets",
        }
    }
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
    // 3.14 and 3.15 have no table: everything comes from _Py_DebugOffsets, over 3.13's row
    // (whose GC fields are then marked unknown).
    let table = match layout::for_minor(build.version.minor).or(if (14..=15).contains(&build.version.minor) { layout::for_minor(13) } else { None }) {
        Some(layout) if build.version.major == 3 => layout,
        _ => {
            return Support::Unsupported {
                reason: format!("CPython {} is not supported (3.8 to 3.15 are: tables for 3.8 to 3.12, _Py_DebugOffsets for 3.13 to 3.15); spans stay wire-only", build.version),
                label: "unsupported_version",
            }
        }
    };
    if build.version.minor < 13 {
        return Support::Supported { build, layout: table, layout_source: LayoutSource::Table };
    }
    let mem = memory::Memory::new(pid);
    match debug_offsets::read(&mem, build.runtime_addr, build.version, table) {
        Ok(live) => Support::Supported { layout: intern(live), build, layout_source: LayoutSource::DebugOffsets },
        Err(e) => Support::Unsupported { reason: format!("pid {pid}: {e}"), label: "bad_debug_offsets" },
    }
}

/// Layouts read from live processes, kept for the agent's lifetime: a handful of distinct ones at
/// most (one per build), each shared by every process that has it.
fn intern(layout: Layout) -> &'static Layout {
    static SEEN: Mutex<Vec<&'static Layout>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(l) = seen.iter().find(|l| ***l == layout) {
        return l;
    }
    let l: &'static Layout = Box::leak(Box::new(layout));
    seen.push(l);
    l
}
