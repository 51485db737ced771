//! Interpreter state read from a live process: GC statistics per generation (what
//! `gc.get_stats()` returns) and the number of thread states. Every walk is bounded and every
//! value checked, so a torn read gives an error, never a garbage metric.
use super::layout::{GcHome, Layout};
use super::memory::{ReadError, ReadMemory};

pub use super::layout::GENERATIONS;
/// More thread states than this means the list is corrupt (or we raced a rewrite).
const MAX_THREADS: u32 = 4096;
/// Counters beyond this are not plausible for a live interpreter: a torn read.
const MAX_COUNTER: i64 = 1 << 48;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub gc: [GenStats; GENERATIONS],
    pub threads: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("interpreter state looks inconsistent: {0}")]
    Inconsistent(String),
}

pub fn snapshot(
    mem: &(impl ReadMemory + ?Sized),
    runtime_addr: u64,
    layout: &Layout,
) -> Result<Snapshot, RuntimeError> {
    let interp = mem.u64(runtime_addr + layout.runtime_interpreters_head)?;
    if interp == 0 {
        return Err(RuntimeError::Inconsistent("no interpreter yet (or already finalized)".into()));
    }
    let gc = match layout.gc_home {
        GcHome::Runtime => runtime_addr + layout.gc_offset,
        GcHome::Interpreter => interp + layout.gc_offset,
    };
    let mut out = Snapshot::default();
    for (g, stats) in out.gc.iter_mut().enumerate() {
        let at = gc + layout.gc_generation_stats + g as u64 * layout.gc_generation_stats_size;
        let field = |i: u64| -> Result<u64, RuntimeError> {
            let v = mem.i64(at + 8 * i)?;
            if !(0..MAX_COUNTER).contains(&v) {
                return Err(RuntimeError::Inconsistent(format!("gc generation {g} counter {v}")));
            }
            Ok(v as u64)
        };
        *stats = GenStats { collections: field(0)?, collected: field(1)?, uncollectable: field(2)? };
    }
    let mut t = mem.u64(interp + layout.interp_threads_head)?;
    while t != 0 {
        out.threads += 1;
        if out.threads > MAX_THREADS {
            return Err(RuntimeError::Inconsistent(format!("more than {MAX_THREADS} thread states")));
        }
        t = mem.u64(t + layout.tstate_next)?;
    }
    Ok(out)
}
