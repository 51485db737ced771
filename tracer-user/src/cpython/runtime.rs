//! Interpreter state read from a live process: GC statistics per generation (what
//! `gc.get_stats()` returns) and the number of thread states. Every walk is bounded and every
//! value checked, so a torn read gives an error, never a garbage metric.
use super::layout::{GcHistory, GcHome, GcStats, Layout};
use super::memory::{ReadError, ReadMemory};

pub use super::layout::GENERATIONS;
/// More thread states than this means the list is corrupt (or we raced a rewrite).
const MAX_THREADS: u32 = 4096;
/// Counters beyond this are not plausible for a live interpreter: a torn read.
const MAX_COUNTER: i64 = 1 << 48;
/// Reads of 3.15's statistics history that may race a collection before giving up until the next
/// tick: a collection writes them once, in well under a millisecond.
const HISTORY_ATTEMPTS: usize = 3;

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
    #[error("the GC state of CPython 3.{0} is not known")]
    UnknownGc(u8),
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
    let gc_layout = layout.gc.ok_or(RuntimeError::UnknownGc(layout.minor))?;
    let mut out = Snapshot {
        gc: match &gc_layout.stats {
            GcStats::Inline { at, size } => inline_stats(mem, gc + at, *size)?,
            GcStats::History(h) => history_stats(mem, gc, h)?,
        },
        threads: 0,
    };
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

/// Three Py_ssize_t counters (collections, collected, uncollectable) from the start of `bytes`.
fn gen_stats(bytes: &[u8], g: usize) -> Result<GenStats, RuntimeError> {
    let field = |i: usize| -> Result<u64, RuntimeError> {
        let v = i64::from_ne_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        if !(0..MAX_COUNTER).contains(&v) {
            return Err(RuntimeError::Inconsistent(format!("gc generation {g} counter {v}")));
        }
        Ok(v as u64)
    };
    Ok(GenStats { collections: field(0)?, collected: field(1)?, uncollectable: field(2)? })
}

/// 3.8–3.14: `generation_stats[GENERATIONS]` inside the GC state.
fn inline_stats(mem: &(impl ReadMemory + ?Sized), at: u64, size: u64) -> Result<[GenStats; GENERATIONS], RuntimeError> {
    let mut out = [GenStats::default(); GENERATIONS];
    for (g, stats) in out.iter_mut().enumerate() {
        let mut b = [0u8; 24];
        mem.read(at + g as u64 * size, &mut b)?;
        *stats = gen_stats(&b, g)?;
    }
    Ok(out)
}

/// 3.15: the current entry of each ring of the `struct gc_stats` the GC state points at, read
/// whole between two reads of its sequence number so that the three generations are of one moment
/// and no entry is half written.
fn history_stats(
    mem: &(impl ReadMemory + ?Sized),
    gc: u64,
    h: &GcHistory,
) -> Result<[GenStats; GENERATIONS], RuntimeError> {
    let block = mem.u64(gc + h.pointer)?;
    if block == 0 {
        return Err(RuntimeError::Inconsistent("no GC statistics block yet".into()));
    }
    let size = usize::try_from(h.size).expect("a struct size");
    let mut raw = vec![0u8; size];
    for _ in 0..HISTORY_ATTEMPTS {
        let seq = mem.u32(block + h.update_seq)?;
        mem.read(block, &mut raw)?;
        if seq % 2 == 1 || mem.u32(block + h.update_seq)? != seq {
            continue;
        }
        let mut out = [GenStats::default(); GENERATIONS];
        for (g, (stats, ring)) in out.iter_mut().zip(&h.rings).enumerate() {
            let index = u64::from(raw[ring.index as usize]);
            if index >= ring.len {
                return Err(RuntimeError::Inconsistent(format!("gc generation {g} ring index {index}")));
            }
            let at = (ring.items + index * h.entry_size + h.entry_collections) as usize;
            *stats = gen_stats(raw.get(at..at + 24).ok_or_else(|| RuntimeError::Inconsistent("ring".into()))?, g)?;
        }
        return Ok(out);
    }
    Err(RuntimeError::Inconsistent(format!("the GC statistics changed during each of {HISTORY_ATTEMPTS} reads")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::layout::{self, GcLayout};
    use crate::cpython::memory::LocalMemory;

    const BASE: u64 = 0x7f00_0000_0000;
    const RUNTIME: u64 = BASE;
    const INTERP: u64 = BASE + 0x1000;
    /// 3.15's heap block of statistics.
    const BLOCK: u64 = BASE + 0x4000;
    const THREAD: u64 = BASE + 0x5000;

    /// A 3.13 row with `gc` as the GC state, as debug_offsets.rs builds one for 3.14+.
    fn layout_with(gc: GcLayout) -> Layout {
        Layout { gc: Some(gc), ..*layout::for_minor(13).unwrap() }
    }

    /// An interpreter with one thread state.
    fn process(l: &Layout) -> LocalMemory {
        let mut mem = LocalMemory::new(BASE, 0x6000);
        mem.put_u64(RUNTIME + l.runtime_interpreters_head, INTERP);
        mem.put_u64(INTERP + l.interp_threads_head, THREAD);
        mem
    }

    fn put_counters(mem: &mut LocalMemory, at: u64, (collections, collected, uncollectable): (u64, u64, u64)) {
        mem.put_u64(at, collections);
        mem.put_u64(at + 8, collected);
        mem.put_u64(at + 16, uncollectable);
    }

    fn stats(c: [(u64, u64, u64); GENERATIONS]) -> [GenStats; GENERATIONS] {
        c.map(|(collections, collected, uncollectable)| GenStats { collections, collected, uncollectable })
    }

    /// The numbers a live 3.14.10 held after five gc.collect() and one gc.collect(1), as
    /// gc.get_stats() also reported them.
    #[test]
    fn reads_the_inline_statistics_of_3_14() {
        let l = layout_with(layout::GC_3_14);
        let mut mem = process(&l);
        let gc = INTERP + l.gc_offset;
        for (g, c) in [(6, 33, 0), (1, 0, 0), (5, 0, 0)].into_iter().enumerate() {
            put_counters(&mut mem, gc + 120 + 24 * g as u64, c);
        }
        let snap = snapshot(&mem, RUNTIME, &l).unwrap();
        assert_eq!(snap.gc, stats([(6, 33, 0), (1, 0, 0), (5, 0, 0)]));
        assert_eq!(snap.threads, 1);
    }

    /// 3.15: each ring's entry at its index holds the totals; older entries are history.
    fn history_process(seq: u32, young_index: u8) -> (Layout, LocalMemory) {
        let l = layout_with(layout::GC_3_15);
        let mut mem = process(&l);
        mem.put_u64(INTERP + l.gc_offset + 104, BLOCK);
        // A live 3.15.2's block after 3 young, 1 collect(1) and 5 collect(2) collections.
        for (i, c) in [(0, 0, 0), (1, 0, 0), (2, 23, 0), (3, 23, 0), (4, 23, 0), (5, 23, 0)].into_iter().enumerate() {
            put_counters(&mut mem, BLOCK + 64 * i as u64 + 16, c);
        }
        mem.put(BLOCK + 704, &[young_index]);
        put_counters(&mut mem, BLOCK + 712 + 64 + 16, (1, 0, 0));
        mem.put(BLOCK + 712 + 192, &[1]);
        for (i, c) in [(3, 6, 0), (4, 6, 0), (5, 6, 0)].into_iter().enumerate() {
            put_counters(&mut mem, BLOCK + 912 + 64 * i as u64 + 16, c);
        }
        mem.put(BLOCK + 912 + 192, &[2]);
        mem.put_u32(BLOCK + 1112, seq);
        (l, mem)
    }

    #[test]
    fn reads_the_current_entry_of_each_3_15_ring() {
        let (l, mem) = history_process(22, 5);
        let snap = snapshot(&mem, RUNTIME, &l).unwrap();
        assert_eq!(snap.gc, stats([(5, 23, 0), (1, 0, 0), (5, 6, 0)]));
        assert_eq!(snap.threads, 1);
    }

    #[test]
    fn rejects_a_3_15_block_being_written_or_out_of_range() {
        let (l, mem) = history_process(23, 5);
        let e = snapshot(&mem, RUNTIME, &l).unwrap_err().to_string();
        assert!(e.contains("changed during each of 3 reads"), "{e}");
        let (l, mem) = history_process(22, 11);
        let e = snapshot(&mem, RUNTIME, &l).unwrap_err().to_string();
        assert!(e.contains("generation 0 ring index 11"), "{e}");
        let (l, mut mem) = history_process(22, 5);
        mem.put_u64(INTERP + l.gc_offset + 104, 0);
        let e = snapshot(&mem, RUNTIME, &l).unwrap_err().to_string();
        assert!(e.contains("no GC statistics block yet"), "{e}");
    }

    #[test]
    fn an_unknown_gc_state_is_an_error_not_zeros() {
        let l = Layout { gc: None, ..layout_with(layout::GC_3_14) };
        let e = snapshot(&process(&l), RUNTIME, &l).unwrap_err();
        assert!(matches!(e, RuntimeError::UnknownGc(13)), "{e}");
    }
}
