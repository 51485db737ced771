//! A live interpreter opened for reading its objects: its build, the layouts that describe it,
//! and `sys.modules`, the root every application object is found from.
use std::rc::Rc;

use super::layout::Layout;
use super::memory::Memory;
use super::object_layout::ObjectLayout;
use super::objects::{ObjectError, Objects};
use super::version::Version;
use super::{debug_offsets, versions, Support};

pub struct Interpreter {
    pub pid: u32,
    pub version: Version,
    pub runtime_addr: u64,
    pub layout: &'static Layout,
    pub objects: &'static ObjectLayout,
    /// offsetof(PyInterpreterState, modules): from `_Py_DebugOffsets` on 3.13+.
    pub modules_offset: u64,
    mem: Memory,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("pid {pid}: {reason}")]
    Unsupported { pid: u32, reason: String, label: &'static str },
    #[error("pid {pid}: {source}")]
    DebugOffsets { pid: u32, source: debug_offsets::DebugOffsetsError },
}

impl OpenError {
    pub fn label(&self) -> &'static str {
        match self {
            OpenError::Unsupported { label, .. } => label,
            OpenError::DebugOffsets { .. } => "bad_debug_offsets",
        }
    }
}

impl Interpreter {
    pub fn open(pid: u32) -> Result<Interpreter, OpenError> {
        let (build, layout) = match super::inspect(pid) {
            Support::Supported { build, layout, .. } => (build, layout),
            Support::Unsupported { reason, label } => return Err(OpenError::Unsupported { pid, reason, label }),
        };
        let objects = versions::objects_for_minor(build.version.minor).ok_or_else(|| OpenError::Unsupported {
            pid,
            reason: format!("no object layout for CPython {}", build.version),
            label: "unsupported_version",
        })?;
        let mem = Memory::new(pid);
        let modules_offset = match versions::for_version(build.version).and_then(|s| s.debug_offsets.as_ref()) {
            Some(_) => {
                debug_offsets::read_field(&mem, build.runtime_addr, build.version, "interpreter_state.imports_modules")
                    .map_err(|source| OpenError::DebugOffsets { pid, source })?
            }
            None => objects.interp_modules,
        };
        Ok(Interpreter {
            pid,
            version: build.version,
            runtime_addr: build.runtime_addr,
            layout,
            objects,
            modules_offset,
            mem,
        })
    }

    /// GC counters and thread count, as the metrics read them.
    pub fn gc_snapshot(&self) -> Result<super::runtime::Snapshot, super::runtime::RuntimeError> {
        super::runtime::snapshot(&self.mem, self.runtime_addr, self.layout)
    }

    /// A reader for one pass, capped at `budget` reads.
    pub fn reader(&self, budget: u32) -> Objects<'_> {
        Objects::new(&self.mem, self.objects, self.layout.frames, budget)
    }

    /// `sys.modules` of the main interpreter: (name, module) pairs. Values are not checked here
    /// (a few hundred type reads): whoever reads a module's dict checks that it is one.
    pub fn sys_modules(&self, o: &Objects) -> Result<Vec<(Rc<str>, u64)>, ObjectError> {
        let interp = o.ptr(self.runtime_addr + self.layout.runtime_interpreters_head, "interpreter state")?;
        let modules = o.ptr(interp + self.modules_offset, "sys.modules")?;
        Ok(o.str_items(modules)?.to_vec())
    }
}
