//! Raw data: offsets into CPython's interpreter state, per minor version, for 64-bit (x86_64) builds
//! of 3.8–3.13 without free threading. The numbers come from the DWARF of the pyenv builds on the dev machine, and
//! the test below checks them against it again. CPython does not promise these layouts, but they are
//! fixed within a minor version for a given configuration: a debug build (`--with-pydebug`) or a
//! free-threaded 3.13t one differs and is not covered.
//!
//! What 3.13's `_Py_DebugOffsets` (at the start of `_PyRuntime`) already provides, and agrees with the
//! 3.13 row below (the test reads it from the same library): `runtime_state.interpreters_head`,
//! `interpreter_state.next`, `.threads_head`, `.gc`, `thread_state.next`, `.thread_id`,
//! `.native_thread_id`, and `gc.size`/`gc.collecting`. It does not provide `enabled`, `generations`
//! or `generation_stats` (3.15's adds the latter), so the GC rows below ([`GcLayout`]) are needed
//! for 3.13 to 3.15: the 3.14 and 3.15 ones come from their headers (no DWARF in Debian's builds).

/// Where the GC state lives: 3.8 keeps it in _PyRuntimeState, 3.9+ in each PyInterpreterState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcHome {
    Runtime,
    Interpreter,
}

// Which row a version uses, and what `_Py_DebugOffsets` overrides, is decided in versions.rs.

/// Length of both `generations` and the statistics in every version here. 3.13.0 still has three
/// generations: the incremental young/old collector was backed out before the release. 3.14.0 has
/// it (`young`, `old[2]`: three entries still, at the same offsets), 3.14.10 and 3.15 the
/// generational one again; `gc.get_stats()` has three entries in each.
pub const GENERATIONS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub minor: u8,
    /// offsetof(_PyRuntimeState, interpreters.head)
    pub runtime_interpreters_head: u64,
    /// offsetof(PyInterpreterState, next)
    pub interp_next: u64,
    /// offsetof(PyInterpreterState, tstate_head) up to 3.10, threads.head from 3.11
    pub interp_threads_head: u64,
    /// offsetof(PyThreadState, next)
    pub tstate_next: u64,
    /// offsetof(PyThreadState, thread_id): the pthread_t, not the kernel tid
    pub tstate_thread_id: u64,
    /// offsetof(PyThreadState, native_thread_id): the kernel tid; 3.11+, None before
    pub tstate_native_thread_id: Option<u64>,
    pub gc_home: GcHome,
    /// offsetof(_PyRuntimeState, gc) for 3.8; offsetof(PyInterpreterState, gc) for 3.9+
    pub gc_offset: u64,
    /// Inside the GC state; `None` for a version whose GC structures are not known (runtime GC
    /// metrics off, the stack walk still on: `python_support="stack_walk_only"`).
    pub gc: Option<GcLayout>,
    /// The C function whose entry and return bound one collection, for a GC-pause uprobe pair. Every
    /// collection (automatic, gc.collect(), PyGC_Collect, shutdown) goes through exactly one call of it,
    /// and it does not recurse (`collecting` guards it). It is a local symbol in every version: in
    /// .symtab only, so stripped distro builds do not have it. GCC may emit it only as clones with a
    /// suffix (pyenv's 3.8.18 has `collect.constprop.0` and `.1` and no plain `collect`; automatic
    /// collections use one, PyGC_Collect the other): attach to every symbol that
    /// [`Layout::is_gc_collect_symbol`] accepts.
    pub gc_collect_fn: &'static str,
    /// What the stack walk needs.
    pub frames: FrameLayout,
}

/// Offsets for walking a thread's Python frames and naming their code objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// offsetof(PyThreadState, frame) up to 3.10, `cframe` in 3.11–3.12, `current_frame` in 3.13.
    pub tstate_frame: u64,
    /// offsetof(_PyCFrame, current_frame) when the thread state points at a cframe (3.11, 3.12).
    pub cframe_current_frame: Option<u64>,
    /// offsetof(frame, f_code) (PyFrameObject up to 3.10, _PyInterpreterFrame after; 3.13's
    /// f_executable).
    pub frame_code: u64,
    /// f_back up to 3.10, `previous` after.
    pub frame_previous: u64,
    /// offsetof(_PyInterpreterFrame, owner): 3.11+.
    pub frame_owner: Option<u64>,
    /// FRAME_OWNED_BY_CSTACK: the entry shim frames of 3.12+, which are not Python code.
    pub owner_cstack: Option<u8>,
    pub code_filename: u64,
    pub code_name: u64,
    /// 3.11+; older versions have only the bare name.
    pub code_qualname: Option<u64>,
    pub code_first_line: u64,
    /// sizeof(PyASCIIObject): where a compact ASCII string's characters start.
    pub unicode_ascii_size: u64,
    /// Argument (0-based) of `_PyEval_EvalFrameDefault` holding the frame and the thread state:
    /// 3.8 is (frame, throwflag); 3.9+ (tstate, frame, throwflag).
    pub eval_frame_arg: u8,
    pub eval_tstate_arg: Option<u8>,
    /// Low bits to clear from the frame's code pointer: 3.14+ store it as a tagged `_PyStackRef`
    /// (versions.rs says which versions; the rows here are all untagged).
    pub code_tag_mask: u64,
}

const FRAMES_3_8_TO_3_10: FrameLayout = FrameLayout {
    tstate_frame: 24,
    cframe_current_frame: None,
    frame_code: 32,
    frame_previous: 24,
    frame_owner: None,
    owner_cstack: None,
    code_filename: 104,
    code_name: 112,
    code_qualname: None,
    code_first_line: 40,
    unicode_ascii_size: 48,
    eval_frame_arg: 1,
    eval_tstate_arg: Some(0),
    code_tag_mask: 0,
};

impl Layout {
    /// Whether an ELF symbol is `gc_collect_fn` or a whole clone of it (`.constprop.N`, `.isra.N`).
    /// `.part.N` and `.cold` pieces are rejected: they are fragments, so their entry and return do not
    /// bound a collection.
    pub fn is_gc_collect_symbol(&self, symbol: &str) -> bool {
        let Some(rest) = symbol.strip_prefix(self.gc_collect_fn) else {
            return false;
        };
        if rest.is_empty() {
            return true;
        }
        let Some(rest) = rest.strip_prefix('.') else {
            return false;
        };
        let parts: Vec<&str> = rest.split('.').collect();
        parts.len().is_multiple_of(2)
            && parts.chunks(2).all(|p| {
                matches!(p[0], "constprop" | "isra") && !p[1].is_empty() && p[1].bytes().all(|b| b.is_ascii_digit())
            })
    }
}

/// Offsets inside `struct _gc_runtime_state` (the GC state of [`Layout::gc_offset`]). Which row a
/// version uses is said in versions.rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcLayout {
    /// offsetof(enabled) (an int)
    pub enabled: u64,
    /// offsetof(generations): [struct gc_generation; GENERATIONS]
    pub generations: u64,
    /// sizeof(struct gc_generation): {PyGC_Head head; int threshold; int count}
    pub generation_size: u64,
    pub generation_threshold: u64,
    pub generation_count: u64,
    /// offsetof(collecting): `_Py_DebugOffsets` carries it too (gc.collecting, 3.13+), so a live
    /// process whose value differs has a GC state this row does not describe.
    pub collecting: u64,
    /// Where the statistics `gc.get_stats()` returns are kept.
    pub stats: GcStats,
}

/// How a version keeps its per-generation statistics (collections, collected, uncollectable, all
/// cumulative since the interpreter started). Both shapes have [`GENERATIONS`] entries, in the
/// order of `gc.get_stats()`, which is the order of the `cpython_gc_generation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcStats {
    /// 3.8–3.14: `struct gc_generation_stats generation_stats[GENERATIONS]` inside the GC state,
    /// `size` bytes each, starting with collections, collected, uncollectable (Py_ssize_t each).
    Inline { at: u64, size: u64 },
    /// 3.15: `struct gc_stats *generation_stats`, a heap block holding one ring buffer of recent
    /// collections per generation (young, old[0], old[1]); the entry at each ring's `index` holds
    /// the running totals (each collection writes its ring's next entry as the previous totals plus
    /// its own numbers).
    History(GcHistory),
}

/// 3.15's `struct gc_stats` (Include/internal/pycore_interp_structs.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcHistory {
    /// offsetof(struct _gc_runtime_state, generation_stats): the pointer
    pub pointer: u64,
    /// sizeof(struct gc_stats); `_Py_DebugOffsets` has it as gc.generation_stats_size
    pub size: u64,
    /// sizeof(struct gc_generation_stats): {ts_start, ts_stop, collections, collected,
    /// uncollectable, candidates, duration, heap_size}
    pub entry_size: u64,
    /// offsetof(struct gc_generation_stats, collections); collected and uncollectable follow it
    pub entry_collections: u64,
    /// The young ring and the two old ones, in `gc.get_stats()` order.
    pub rings: [GcRing; GENERATIONS],
    /// offsetof(struct gc_stats, update_seq): a uint32, seen to advance by 2 with each
    /// collection's write of the statistics (a sequence lock): a read that sees it odd, or sees it
    /// change, raced a collection.
    pub update_seq: u64,
}

/// One ring buffer of `struct gc_stats`: offsets from the start of `struct gc_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcRing {
    /// Where its `items` start
    pub items: u64,
    /// How many items (GC_YOUNG_STATS_SIZE, GC_OLD_STATS_SIZE)
    pub len: u64,
    /// Its `int8_t index`: the item holding the current totals
    pub index: u64,
}

/// The GC struct kept the same shape from 3.8 to 3.13; only where it sits moved (checked
/// against the DWARF of the pyenv builds by the test below).
pub const GC_3_8_TO_3_13: GcLayout = GcLayout {
    enabled: 12,
    generations: 24,
    generation_size: 24,
    generation_threshold: 16,
    generation_count: 20,
    collecting: 200,
    stats: GcStats::Inline { at: 128, size: 24 },
};

/// 3.14 (measured on Debian's 3.14.10, whose `generations[3]` is the generational collector
/// again; the headers keep `dummy1..3` where the incremental collector of earlier 3.14 releases
/// had `work_to_do`, `visited_space` and `phase`, so those releases have the same offsets, with
/// `young`, `old[2]` in the place of `generations`). From `offsetof` against
/// /usr/include/python3.14 with `Py_BUILD_CORE`; sizeof is 264, as the build's
/// `_Py_DebugOffsets` gc.size says; checked on a live 3.14.10 against `gc.get_stats()`,
/// `gc.get_count()`, `gc.get_threshold()` and `gc.isenabled()`.
pub const GC_3_14: GcLayout = GcLayout {
    enabled: 12,
    generations: 24,
    generation_size: 24,
    generation_threshold: 16,
    generation_count: 20,
    collecting: 192,
    stats: GcStats::Inline { at: 120, size: 24 },
};

/// 3.15 (Debian's 3.15.2): `trash_delete_later`/`trash_delete_nesting` left the GC state, and the
/// statistics moved to a heap-allocated ring-buffer history. Measured like [`GC_3_14`]; sizeof
/// is 176, generation_stats 104 and sizeof(struct gc_stats) 1120, as `_Py_DebugOffsets` says.
pub const GC_3_15: GcLayout = GcLayout {
    enabled: 0,
    generations: 8,
    generation_size: 24,
    generation_threshold: 16,
    generation_count: 20,
    collecting: 112,
    stats: GcStats::History(GcHistory {
        pointer: 104,
        size: 1120,
        entry_size: 64,
        entry_collections: 16,
        rings: [
            GcRing { items: 0, len: 11, index: 704 },
            GcRing { items: 712, len: 3, index: 904 },
            GcRing { items: 912, len: 3, index: 1104 },
        ],
        update_seq: 1112,
    }),
};

static LAYOUTS: [Layout; 6] = [
    Layout {
        minor: 8,
        runtime_interpreters_head: 32,
        interp_next: 0,
        interp_threads_head: 8,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        gc_home: GcHome::Runtime,
        gc_offset: 344,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "collect",
        frames: FrameLayout { eval_frame_arg: 0, eval_tstate_arg: None, ..FRAMES_3_8_TO_3_10 },
    },
    Layout {
        minor: 9,
        runtime_interpreters_head: 32,
        interp_next: 0,
        interp_threads_head: 8,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        gc_home: GcHome::Interpreter,
        gc_offset: 616,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "collect",
        frames: FRAMES_3_8_TO_3_10,
    },
    Layout {
        minor: 10,
        runtime_interpreters_head: 32,
        interp_next: 0,
        interp_threads_head: 8,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        gc_home: GcHome::Interpreter,
        gc_offset: 616,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "gc_collect_main",
        frames: FRAMES_3_8_TO_3_10,
    },
    Layout {
        minor: 11,
        runtime_interpreters_head: 40,
        interp_next: 0,
        interp_threads_head: 16,
        tstate_next: 8,
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        gc_home: GcHome::Interpreter,
        gc_offset: 648,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "gc_collect_main",
        frames: FrameLayout {
            tstate_frame: 56,
            cframe_current_frame: Some(8),
            frame_code: 32,
            frame_previous: 48,
            frame_owner: Some(69),
            owner_cstack: None,
            code_filename: 112,
            code_name: 120,
            code_qualname: Some(128),
            code_first_line: 72,
            unicode_ascii_size: 48,
            eval_frame_arg: 1,
            eval_tstate_arg: Some(0),
            code_tag_mask: 0,
        },
    },
    Layout {
        minor: 12,
        runtime_interpreters_head: 40,
        interp_next: 0,
        interp_threads_head: 72,
        tstate_next: 8,
        tstate_thread_id: 136,
        tstate_native_thread_id: Some(144),
        gc_home: GcHome::Interpreter,
        gc_offset: 112,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "gc_collect_main",
        frames: FrameLayout {
            tstate_frame: 56,
            cframe_current_frame: Some(0),
            frame_code: 0,
            frame_previous: 8,
            frame_owner: Some(70),
            owner_cstack: Some(3),
            code_filename: 112,
            code_name: 120,
            code_qualname: Some(128),
            code_first_line: 68,
            unicode_ascii_size: 40,
            eval_frame_arg: 1,
            eval_tstate_arg: Some(0),
            code_tag_mask: 0,
        },
    },
    Layout {
        minor: 13,
        runtime_interpreters_head: 632,
        interp_next: 7264,
        interp_threads_head: 7344,
        tstate_next: 8,
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        gc_home: GcHome::Interpreter,
        gc_offset: 7400,
        gc: Some(GC_3_8_TO_3_13),
        gc_collect_fn: "gc_collect_main",
        frames: FrameLayout {
            tstate_frame: 72,
            cframe_current_frame: None,
            frame_code: 0,
            frame_previous: 8,
            frame_owner: Some(70),
            owner_cstack: Some(3),
            code_filename: 112,
            code_name: 120,
            code_qualname: Some(128),
            code_first_line: 68,
            unicode_ascii_size: 40,
            eval_frame_arg: 1,
            eval_tstate_arg: Some(0),
            code_tag_mask: 0,
        },
    },
];

pub fn for_minor(minor: u8) -> Option<&'static Layout> {
    LAYOUTS.iter().find(|l| l.minor == minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    #[test]
    fn only_3_8_to_3_13_are_known() {
        assert!(for_minor(7).is_none());
        assert!(for_minor(14).is_none());
        for minor in 8..=13 {
            assert_eq!(for_minor(minor).map(|l| l.minor), Some(minor));
        }
    }

    #[test]
    fn gc_collect_symbol_accepts_whole_clones_only() {
        let l = for_minor(8).unwrap();
        for ok in ["collect", "collect.constprop.0", "collect.isra.1.constprop.0"] {
            assert!(l.is_gc_collect_symbol(ok), "{ok}");
        }
        for bad in ["collect.cold", "collect.part.0", "collect_with_callback", "collect.constprop", "gc_collect"] {
            assert!(!l.is_gc_collect_symbol(bad), "{bad}");
        }
    }

    /// No pyenv build or no gdb/nm: a skip on a dev box, a failure where the privileged suite must run.
    fn skip(why: &str) {
        assert!(
            std::env::var("PYTRACER_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "PYTRACER_REQUIRE_PRIVILEGED=1 but {why}"
        );
        eprintln!("SKIPPED: {why}");
    }

    fn pyenv_root() -> Option<PathBuf> {
        if let Some(root) = std::env::var_os("PYENV_ROOT") {
            return Some(root.into());
        }
        if let Ok(out) = Command::new("pyenv").arg("root").output() {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !root.is_empty() {
                return Some(root.into());
            }
        }
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv"))
    }

    /// The minor of a pyenv version directory this table claims to describe: "3.X.Y", pre-releases
    /// included (they must match too). Free-threaded ("3.13.0t"), other implementations and "-dev"
    /// checkouts are out of the table's scope.
    fn minor_of(dir_name: &str) -> Option<u8> {
        let mut parts = dir_name.splitn(3, '.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        let patch_ok = patch.starts_with(|c: char| c.is_ascii_digit())
            && patch
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(['a', 'b', 'r', 'c'])
                .bytes()
                .all(|b| b.is_ascii_digit());
        let minor: u8 = minor.parse().ok()?;
        (major == "3" && patch_ok && for_minor(minor).is_some()).then_some(minor)
    }

    /// Where versions.rs says this minor's `_Py_DebugOffsets` fields sit (3.13+), if it reads them.
    fn debug_offsets_positions(minor: u8) -> Option<&'static crate::cpython::versions::DebugOffsetsPositions> {
        crate::cpython::versions::for_minor(minor)?.debug_offsets.as_ref()
    }

    fn tool_works(tool: &str) -> bool {
        Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
    }

    /// Expressions for gdb, by key. Members that do not exist in a version are asked for anyway, so
    /// that their absence is checked too (gdb prints an error and goes on to the next command).
    fn queries(minor: u8) -> Vec<(&'static str, String)> {
        let off = |ty: &str, member: &str| format!("&(({ty}*)0)->{member}");
        let threads = if minor <= 10 { "tstate_head" } else { "threads.head" };
        let mut q = vec![
            ("runtime_interpreters_head", off("_PyRuntimeState", "interpreters.head")),
            ("interp_next", off("PyInterpreterState", "next")),
            ("interp_threads_head", off("PyInterpreterState", threads)),
            ("tstate_next", off("PyThreadState", "next")),
            ("tstate_thread_id", off("PyThreadState", "thread_id")),
            ("tstate_native_thread_id", off("PyThreadState", "native_thread_id")),
            ("runtime_gc", off("_PyRuntimeState", "gc")),
            ("interp_gc", off("PyInterpreterState", "gc")),
            ("gc_enabled", off("struct _gc_runtime_state", "enabled")),
            ("gc_collecting", off("struct _gc_runtime_state", "collecting")),
            ("gc_generation_stats", off("struct _gc_runtime_state", "generation_stats")),
            ("gc_generation_stats_size", "sizeof(struct gc_generation_stats)".into()),
            ("gc_generations", off("struct _gc_runtime_state", "generations")),
            ("gc_generation_size", "sizeof(struct gc_generation)".into()),
            ("gc_generation_threshold", off("struct gc_generation", "threshold")),
            ("gc_generation_count", off("struct gc_generation", "count")),
            (
                "gc_generations_len",
                "sizeof(((struct _gc_runtime_state*)0)->generations) / sizeof(struct gc_generation)".into(),
            ),
            (
                "gc_generation_stats_len",
                "sizeof(((struct _gc_runtime_state*)0)->generation_stats) / sizeof(struct gc_generation_stats)".into(),
            ),
        ];
        let (frame_ty, tstate_frame, code) = match minor {
            ..=10 => ("PyFrameObject", "frame", "f_code"),
            11 | 12 => ("struct _PyInterpreterFrame", "cframe", "f_code"),
            _ => ("struct _PyInterpreterFrame", "current_frame", "f_executable"),
        };
        let previous = if minor <= 10 { "f_back" } else { "previous" };
        q.extend([
            ("tstate_frame", off("PyThreadState", tstate_frame)),
            ("cframe_current_frame", off("_PyCFrame", "current_frame")),
            ("frame_code", off(frame_ty, code)),
            ("frame_previous", off(frame_ty, previous)),
            ("frame_owner", off("struct _PyInterpreterFrame", "owner")),
            ("owner_cstack", "FRAME_OWNED_BY_CSTACK".into()),
            ("code_filename", off("PyCodeObject", "co_filename")),
            ("code_name", off("PyCodeObject", "co_name")),
            ("code_qualname", off("PyCodeObject", "co_qualname")),
            ("code_first_line", off("PyCodeObject", "co_firstlineno")),
            ("unicode_ascii_size", "sizeof(PyASCIIObject)".into()),
        ]);
        if let Some(pos) = debug_offsets_positions(minor) {
            // The initializer of _PyRuntime in the file's .PyRuntime section: what a reader of
            // _Py_DebugOffsets would see in a live process of this build.
            let d = |path: &str| format!("_PyRuntime.debug_offsets.{path}");
            for (field, _) in pos.fields {
                q.push((field, off("_Py_DebugOffsets", field)));
            }
            q.push(("debug_offsets_size", "sizeof(_Py_DebugOffsets)".into()));
            q.extend([
                ("debug.runtime_interpreters_head", d("runtime_state.interpreters_head")),
                ("debug.interp_next", d("interpreter_state.next")),
                ("debug.interp_threads_head", d("interpreter_state.threads_head")),
                ("debug.interp_gc", d("interpreter_state.gc")),
                ("debug.tstate_next", d("thread_state.next")),
                ("debug.tstate_thread_id", d("thread_state.thread_id")),
                ("debug.tstate_native_thread_id", d("thread_state.native_thread_id")),
            ]);
        }
        q
    }

    fn run_gdb(lib: &Path, queries: &[(&'static str, String)]) -> Result<HashMap<String, u64>, String> {
        let mut cmd = Command::new("gdb");
        cmd.args(["-batch", "-nx"]);
        for (key, expr) in queries {
            cmd.arg("-ex").arg(format!("printf \"{key}=%lu\\n\", (unsigned long)({expr})"));
        }
        // Proves gdb ran every command rather than giving up part way.
        cmd.args(["-ex", "echo END\\n"]).arg(lib);
        let out = cmd.output().map_err(|e| format!("gdb: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.lines().last() != Some("END") {
            return Err(format!("gdb did not finish: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect())
    }

    /// Symbols of the library's .symtab accepted by `is_gc_collect_symbol`, with nm's type letter.
    fn gc_collect_symbols(lib: &Path, layout: &Layout) -> Result<Vec<(char, String)>, String> {
        let out = Command::new("nm").arg("--defined-only").arg(lib).output().map_err(|e| format!("nm: {e}"))?;
        if !out.status.success() {
            return Err(format!("nm failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
                layout.is_gc_collect_symbol(name).then(|| (kind.chars().next().unwrap_or('?'), name.to_string()))
            })
            .collect())
    }

    /// Every disagreement between the table and one build, as "version field: ..." lines.
    fn check_build(version: &str, minor: u8, lib: &Path) -> Vec<String> {
        let layout = for_minor(minor).unwrap();
        let got = match run_gdb(lib, &queries(minor)) {
            Ok(got) => got,
            Err(e) => return vec![format!("{version}: {e}")],
        };
        let mut bad = Vec::new();
        let mut expect = |field: &str, want: Option<u64>| {
            let have = got.get(field).copied();
            if have != want {
                bad.push(format!("{version} {field}: table says {want:?}, DWARF of {} says {have:?}", lib.display()));
            }
        };
        let (runtime_gc, interp_gc) = match layout.gc_home {
            GcHome::Runtime => (Some(layout.gc_offset), None),
            GcHome::Interpreter => (None, Some(layout.gc_offset)),
        };
        expect("runtime_interpreters_head", Some(layout.runtime_interpreters_head));
        expect("interp_next", Some(layout.interp_next));
        expect("interp_threads_head", Some(layout.interp_threads_head));
        expect("tstate_next", Some(layout.tstate_next));
        expect("tstate_thread_id", Some(layout.tstate_thread_id));
        expect("tstate_native_thread_id", layout.tstate_native_thread_id);
        expect("runtime_gc", runtime_gc);
        expect("interp_gc", interp_gc);
        let gc = layout.gc.expect("every row has its GC layout");
        let GcStats::Inline { at: stats_at, size: stats_size } = gc.stats else {
            panic!("3.{minor}: the rows checked against DWARF keep their statistics inline")
        };
        expect("gc_enabled", Some(gc.enabled));
        expect("gc_collecting", Some(gc.collecting));
        expect("gc_generation_stats", Some(stats_at));
        expect("gc_generation_stats_size", Some(stats_size));
        expect("gc_generations", Some(gc.generations));
        expect("gc_generation_size", Some(gc.generation_size));
        expect("gc_generation_threshold", Some(gc.generation_threshold));
        expect("gc_generation_count", Some(gc.generation_count));
        expect("gc_generations_len", Some(GENERATIONS as u64));
        expect("gc_generation_stats_len", Some(GENERATIONS as u64));
        let f = &layout.frames;
        expect("tstate_frame", Some(f.tstate_frame));
        expect("cframe_current_frame", f.cframe_current_frame);
        expect("frame_code", Some(f.frame_code));
        expect("frame_previous", Some(f.frame_previous));
        expect("frame_owner", f.frame_owner);
        expect("owner_cstack", f.owner_cstack.map(u64::from));
        expect("code_filename", Some(f.code_filename));
        expect("code_name", Some(f.code_name));
        expect("code_qualname", f.code_qualname);
        expect("code_first_line", Some(f.code_first_line));
        expect("unicode_ascii_size", Some(f.unicode_ascii_size));
        if let Some(pos) = debug_offsets_positions(minor) {
            // Where cpython::debug_offsets reads each field in a live process.
            for (field, at) in pos.fields {
                expect(field, Some(*at));
            }
            expect("debug_offsets_size", Some(pos.size as u64));
            expect("debug.runtime_interpreters_head", Some(layout.runtime_interpreters_head));
            expect("debug.interp_next", Some(layout.interp_next));
            expect("debug.interp_threads_head", Some(layout.interp_threads_head));
            expect("debug.interp_gc", Some(layout.gc_offset));
            expect("debug.tstate_next", Some(layout.tstate_next));
            expect("debug.tstate_thread_id", Some(layout.tstate_thread_id));
            expect("debug.tstate_native_thread_id", layout.tstate_native_thread_id);
        }
        match gc_collect_symbols(lib, layout) {
            Err(e) => bad.push(format!("{version} gc_collect_fn: {e}")),
            Ok(syms) if syms.is_empty() => bad.push(format!(
                "{version} gc_collect_fn: no symbol {:?} (or a clone of it) in {}",
                layout.gc_collect_fn,
                lib.display()
            )),
            Ok(syms) => {
                // The doc comment promises a local symbol ('t'); a global one would mean it changed.
                for (kind, name) in syms.iter().filter(|(kind, _)| *kind != 't') {
                    bad.push(format!("{version} gc_collect_fn: {name} has nm type {kind:?}, not local 't'"));
                }
            }
        }
        bad
    }

    #[test]
    fn table_matches_dwarf_of_every_pyenv_build() {
        let Some(root) = pyenv_root() else {
            return skip("no pyenv root (PYENV_ROOT, `pyenv root`, ~/.pyenv)");
        };
        let versions_dir = root.join("versions");
        let mut builds: Vec<(String, u8, PathBuf)> = std::fs::read_dir(&versions_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_string_lossy().into_owned();
                let minor = minor_of(&version)?;
                // --enable-shared puts the interpreter in libpython; a default pyenv build links it
                // into the executable, which carries the same DWARF.
                let dir = entry.path();
                let lib = dir.join(format!("lib/libpython3.{minor}.so.1.0"));
                let lib = if lib.exists() { lib } else { dir.join(format!("bin/python3.{minor}")) };
                Some((version, minor, lib))
            })
            .collect();
        builds.sort_by_key(|(_, minor, _)| *minor);
        if builds.is_empty() {
            return skip(&format!("no CPython 3.8–3.13 build under {}", versions_dir.display()));
        }
        for tool in ["gdb", "nm"] {
            if !tool_works(tool) {
                return skip(&format!("`{tool}` is not installed; it is needed to read the builds' debug info"));
            }
        }
        let failures: Vec<String> = std::thread::scope(|s| {
            let jobs: Vec<_> =
                builds.iter().map(|(version, minor, lib)| s.spawn(move || check_build(version, *minor, lib))).collect();
            jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
        });
        let checked: Vec<&str> = builds.iter().map(|(v, _, _)| v.as_str()).collect();
        assert!(failures.is_empty(), "layout table disagrees with DWARF:\n{}", failures.join("\n"));
        eprintln!("layout table matches DWARF of {}", checked.join(", "));
    }

    /// The rows of versions without DWARF (Debian's 3.14 and 3.15 are stripped) against their
    /// headers: `offsetof` compiled with the host's gcc. The host's libc headers come first
    /// (`-idirafter`): only pyconfig.h's arch directory is taken from the chroot's /usr/include.
    fn gc_row_from_headers(include: &Path, arch_include: &Path, minor: u8) -> Result<HashMap<String, u64>, String> {
        let s = "struct _gc_runtime_state";
        let mut fields = vec![
            ("enabled".to_string(), format!("offsetof({s}, enabled)")),
            ("generations".into(), format!("offsetof({s}, generations)")),
            ("generations_len".into(), format!("sizeof((({s}*)0)->generations) / sizeof(struct gc_generation)")),
            ("generation_size".into(), "sizeof(struct gc_generation)".into()),
            ("generation_threshold".into(), "offsetof(struct gc_generation, threshold)".into()),
            ("generation_count".into(), "offsetof(struct gc_generation, count)".into()),
            ("collecting".into(), format!("offsetof({s}, collecting)")),
            ("stats".into(), format!("offsetof({s}, generation_stats)")),
            ("stats_collections".into(), "offsetof(struct gc_generation_stats, collections)".into()),
            ("stats_collected".into(), "offsetof(struct gc_generation_stats, collected)".into()),
            ("stats_uncollectable".into(), "offsetof(struct gc_generation_stats, uncollectable)".into()),
            ("stats_entry_size".into(), "sizeof(struct gc_generation_stats)".into()),
        ];
        if minor >= 15 {
            fields.push(("history_size".into(), "sizeof(struct gc_stats)".into()));
            fields.push(("update_seq".into(), "offsetof(struct gc_stats, update_seq)".into()));
            for (g, ring) in ["young", "old[0]", "old[1]"].iter().enumerate() {
                let len = if g == 0 { "GC_YOUNG_STATS_SIZE" } else { "GC_OLD_STATS_SIZE" };
                fields.push((format!("ring{g}_items"), format!("offsetof(struct gc_stats, {ring}.items)")));
                fields.push((format!("ring{g}_index"), format!("offsetof(struct gc_stats, {ring}.index)")));
                fields.push((format!("ring{g}_len"), len.into()));
            }
        } else {
            fields.push((
                "stats_len".into(),
                format!("sizeof((({s}*)0)->generation_stats) / sizeof(struct gc_generation_stats)"),
            ));
        }
        let dir = std::env::temp_dir().join(format!("pytracer-gc-headers-{}-3.{minor}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let prints = fields.iter().fold(String::new(), |mut out, (key, expr)| {
            let _ = writeln!(out, "    printf(\"{key}=%lu\\n\", (unsigned long)({expr}));");
            out
        });
        let c = format!(
            "#define Py_BUILD_CORE 1\n#include <Python.h>\n#include <internal/pycore_interp_structs.h>\n#include <stdio.h>\nint main(void) {{\n{prints}    return 0;\n}}\n"
        );
        let (src, exe) = (dir.join("gc.c"), dir.join("gc"));
        std::fs::write(&src, c).map_err(|e| e.to_string())?;
        let out = Command::new("gcc")
            .arg("-I")
            .arg(include)
            .arg("-idirafter")
            .arg(arch_include)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .output()
            .map_err(|e| format!("gcc: {e}"))?;
        if !out.status.success() {
            return Err(format!("gcc failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let run = Command::new(&exe).output().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(String::from_utf8_lossy(&run.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect())
    }

    #[test]
    fn gc_rows_of_3_14_and_3_15_match_their_headers() {
        let root = std::env::var_os("PYTRACER_CHROOTS")
            .map_or_else(|| PathBuf::from("/var/cache/pytracer-chroots"), PathBuf::from);
        let sid = root.join("sid");
        if !tool_works("gcc") {
            return skip("`gcc` is not installed; it is needed to read the 3.14/3.15 headers");
        }
        let mut bad = Vec::new();
        for (minor, row) in [(14, GC_3_14), (15, GC_3_15)] {
            let include = sid.join(format!("usr/include/python3.{minor}"));
            if !include.join("internal/pycore_interp_structs.h").is_file() {
                return skip(&format!("no python3.{minor}-dev headers in {}", sid.display()));
            }
            let got = match gc_row_from_headers(&include, &sid.join("usr/include"), minor) {
                Ok(got) => got,
                Err(e) => {
                    bad.push(format!("3.{minor}: {e}"));
                    continue;
                }
            };
            let mut want: Vec<(String, u64)> = vec![
                ("enabled".into(), row.enabled),
                ("generations".into(), row.generations),
                ("generations_len".into(), GENERATIONS as u64),
                ("generation_size".into(), row.generation_size),
                ("generation_threshold".into(), row.generation_threshold),
                ("generation_count".into(), row.generation_count),
                ("collecting".into(), row.collecting),
            ];
            match row.stats {
                GcStats::Inline { at, size } => want.extend([
                    ("stats".into(), at),
                    ("stats_entry_size".into(), size),
                    ("stats_len".into(), GENERATIONS as u64),
                    ("stats_collections".into(), 0),
                ]),
                GcStats::History(h) => {
                    want.extend([
                        ("stats".into(), h.pointer),
                        ("history_size".into(), h.size),
                        ("stats_entry_size".into(), h.entry_size),
                        ("stats_collections".into(), h.entry_collections),
                        ("update_seq".into(), h.update_seq),
                    ]);
                    for (g, ring) in h.rings.iter().enumerate() {
                        want.push((format!("ring{g}_items"), ring.items));
                        want.push((format!("ring{g}_index"), ring.index));
                        want.push((format!("ring{g}_len"), ring.len));
                    }
                }
            }
            // The readers take collected and uncollectable as the two words after collections.
            want.push(("stats_collected".into(), want.iter().find(|(k, _)| k == "stats_collections").unwrap().1 + 8));
            want.push((
                "stats_uncollectable".into(),
                want.iter().find(|(k, _)| k == "stats_collections").unwrap().1 + 16,
            ));
            for (key, value) in want {
                let have = got.get(&key).copied();
                if have != Some(value) {
                    bad.push(format!("3.{minor} {key}: row says {value}, the headers say {have:?}"));
                }
            }
        }
        assert!(bad.is_empty(), "GC rows disagree with the headers:\n{}", bad.join("\n"));
    }

    #[test]
    fn pyenv_directory_names() {
        assert_eq!(minor_of("3.8.18"), Some(8));
        assert_eq!(minor_of("3.13.0"), Some(13));
        assert_eq!(minor_of("3.13.0rc1"), Some(13));
        assert_eq!(minor_of("3.13.0t"), None);
        assert_eq!(minor_of("3.7.16"), None);
        assert_eq!(minor_of("3.14.0"), None);
        assert_eq!(minor_of("pypy3.10-7.3.12"), None);
        assert_eq!(minor_of("3.12-dev"), None);
    }
}
