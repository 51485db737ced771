//! `_Py_DebugOffsets`, which CPython 3.13+ keeps at the start of `_PyRuntime` for out-of-process
//! tools: read from the live process (not the file), so a build whose structs differ from our
//! tables still walks right. Where each field sits in it, per version, is in versions.rs.
use super::layout::{FrameLayout, GcLayout, GcStats, Layout};
use super::memory::{ReadError, ReadMemory};
use super::version::Version;
use super::versions;

pub const COOKIE: &[u8; 8] = b"xdebugpy";

#[derive(Debug, thiserror::Error)]
pub enum DebugOffsetsError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("_PyRuntime does not start with the _Py_DebugOffsets cookie \"xdebugpy\"; the process is not the CPython 3.13+ it claims to be, so spans stay wire-only")]
    Cookie,
    #[error("_Py_DebugOffsets says CPython {live}, the library says {file}; restart the process if its library was replaced")]
    Version { live: Version, file: Version },
    #[error("_Py_DebugOffsets field {field} = {value} is not plausible; spans stay wire-only")]
    Implausible { field: &'static str, value: u64 },
    #[error(
        "CPython {version} has a _Py_DebugOffsets layout pytracer does not know ({known} are known); spans stay wire-only",
        known = versions::debug_offsets_range()
    )]
    UnknownLayout { version: Version },
}

/// The layout for a live 3.13+ process: the version's GC row (the contents of the GC state are not
/// in `_Py_DebugOffsets`) and `base`'s remaining fields, with where the GC state is and everything
/// the stack walk and thread list need taken from the process itself.
pub fn read(
    mem: &(impl ReadMemory + ?Sized),
    runtime_addr: u64,
    file_version: Version,
    base: &Layout,
) -> Result<Layout, DebugOffsetsError> {
    let spec = versions::for_version(file_version).ok_or(DebugOffsetsError::UnknownLayout { version: file_version })?;
    let pos = spec.debug_offsets.as_ref().ok_or(DebugOffsetsError::UnknownLayout { version: file_version })?;
    let mut raw = vec![0u8; pos.size];
    mem.read(runtime_addr, &mut raw)?;
    if &raw[..8] != COOKIE {
        return Err(DebugOffsetsError::Cookie);
    }
    let u = |at: u64| u64::from_ne_bytes(raw[at as usize..at as usize + 8].try_into().unwrap());
    let live = Version::from_hex(u(8));
    if (live.major, live.minor) != (file_version.major, file_version.minor) {
        return Err(DebugOffsetsError::Version { live, file: file_version });
    }
    let field = |name: &'static str| -> Result<u64, DebugOffsetsError> {
        let value = u(pos.of(name));
        // Offsets into interpreter structs: anything beyond 64 KiB is a corrupt read.
        if value > 0xffff {
            return Err(DebugOffsetsError::Implausible { field: name, value });
        }
        Ok(value)
    };
    let ob_type = field("pyobject.ob_type")?;
    if ob_type != 8 {
        return Err(DebugOffsetsError::Implausible { field: "pyobject.ob_type", value: ob_type });
    }
    let owner = field("interpreter_frame.owner")?;
    let frames = FrameLayout {
        tstate_frame: field("thread_state.current_frame")?,
        cframe_current_frame: None,
        frame_code: field("interpreter_frame.executable")?,
        frame_previous: field("interpreter_frame.previous")?,
        frame_owner: Some(owner),
        code_filename: field("code_object.filename")?,
        code_name: field("code_object.name")?,
        code_qualname: Some(field("code_object.qualname")?),
        code_first_line: field("code_object.firstlineno")?,
        unicode_ascii_size: field("unicode_object.asciiobject_size")?,
        code_tag_mask: spec.code_tag_mask,
        ..base.frames
    };
    Ok(Layout {
        minor: file_version.minor,
        runtime_interpreters_head: field("runtime_state.interpreters_head")?,
        interp_threads_head: field("interpreter_state.threads_head")?,
        tstate_next: field("thread_state.next")?,
        tstate_thread_id: field("thread_state.thread_id")?,
        gc_offset: field("interpreter_state.gc")?,
        gc: spec.gc.filter(|gc| gc_row_fits(gc, file_version, |name| pos.get(name).map(u))),
        frames,
        ..*base
    })
}

/// One offset from a live 3.13+ process's `_Py_DebugOffsets` (a field versions.rs lists), checked
/// as [`read`] checks its fields.
pub fn read_field(
    mem: &(impl ReadMemory + ?Sized),
    runtime_addr: u64,
    version: Version,
    name: &'static str,
) -> Result<u64, DebugOffsetsError> {
    let spec = versions::for_version(version).ok_or(DebugOffsetsError::UnknownLayout { version })?;
    let pos = spec.debug_offsets.as_ref().ok_or(DebugOffsetsError::UnknownLayout { version })?;
    let mut cookie = [0u8; 8];
    mem.read(runtime_addr, &mut cookie)?;
    if &cookie != COOKIE {
        return Err(DebugOffsetsError::Cookie);
    }
    let value = mem.u64(runtime_addr + pos.of(name))?;
    if value > 0xffff {
        return Err(DebugOffsetsError::Implausible { field: name, value });
    }
    Ok(value)
}

/// Whether the GC row agrees with what the live `_Py_DebugOffsets` says of the GC state
/// (`live(field)` is its value, `None` where the version lacks the field). A build whose GC state
/// differs (a patched distro build, say) keeps its stack walk and only loses the GC metrics.
fn gc_row_fits(gc: &GcLayout, version: Version, live: impl Fn(&str) -> Option<u64>) -> bool {
    let mut want = vec![("gc.collecting", gc.collecting)];
    if let GcStats::History(h) = &gc.stats {
        want.extend([("gc.generation_stats", h.pointer), ("gc.generation_stats_size", h.size)]);
    }
    let wrong: Vec<String> = want
        .into_iter()
        .filter(|(name, value)| live(name) != Some(*value))
        .map(|(name, value)| format!("{name} is {:?}, not {value}", live(name)))
        .collect();
    if !wrong.is_empty() {
        log::warn!(
            "CPython {version}: _Py_DebugOffsets describes a GC state unlike the one pytracer knows ({}); no GC metrics for it",
            wrong.join(", ")
        );
    }
    wrong.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpython::layout;
    use crate::cpython::memory::LocalMemory;

    const RUNTIME: u64 = 0x7f00_0000_1000;

    /// A `_PyRuntime` whose `_Py_DebugOffsets` says `hex` and stores `value(field)` for each field.
    fn fake_runtime(minor: u8, hex: u64, value: impl Fn(&str) -> u64) -> LocalMemory {
        let pos = versions::for_minor(minor).unwrap().debug_offsets.as_ref().unwrap();
        let mut mem = LocalMemory::new(RUNTIME, pos.size);
        mem.put(RUNTIME, COOKIE);
        mem.put_u64(RUNTIME + 8, hex);
        for (name, at) in pos.fields {
            mem.put_u64(RUNTIME + at, value(name));
        }
        mem
    }

    /// Distinct plausible values, so a field read from the wrong position shows.
    fn value_of(name: &str) -> u64 {
        if name == "pyobject.ob_type" {
            return 8;
        }
        100 + name.bytes().map(u64::from).sum::<u64>() % 1000
    }

    /// [`value_of`], but the GC fields hold what this version's GC row expects, as a real build's do.
    fn fitting(minor: u8) -> impl Fn(&str) -> u64 {
        let gc = versions::for_minor(minor).unwrap().gc.unwrap();
        move |name| match (name, &gc.stats) {
            ("gc.collecting", _) => gc.collecting,
            ("gc.generation_stats", GcStats::History(h)) => h.pointer,
            ("gc.generation_stats_size", GcStats::History(h)) => h.size,
            _ => value_of(name),
        }
    }

    #[test]
    fn reads_a_3_14_blob_over_the_3_13_row() {
        let base = layout::for_minor(13).unwrap();
        let mem = fake_runtime(14, 0x030e_05f0, fitting(14));
        let l = read(&mem, RUNTIME, Version::new(3, 14, 5), base).unwrap();
        assert_eq!(l.minor, 14);
        assert_eq!(l.runtime_interpreters_head, value_of("runtime_state.interpreters_head"));
        assert_eq!(l.tstate_thread_id, value_of("thread_state.thread_id"));
        assert_eq!(l.frames.frame_code, value_of("interpreter_frame.executable"));
        assert_eq!(l.frames.code_qualname, Some(value_of("code_object.qualname")));
        assert_eq!(l.frames.frame_owner, Some(value_of("interpreter_frame.owner")));
        assert_eq!(l.frames.code_tag_mask, 3);
        assert_eq!(l.gc, Some(layout::GC_3_14));
        assert_eq!(l.gc_offset, value_of("interpreter_state.gc"));
        // What _Py_DebugOffsets does not give comes from the row.
        assert_eq!(l.frames.eval_frame_arg, base.frames.eval_frame_arg);
        assert_eq!(l.frames.owner_cstack, base.frames.owner_cstack);
    }

    #[test]
    fn a_3_13_blob_keeps_the_gc_table_and_untagged_code() {
        let base = layout::for_minor(13).unwrap();
        let mem = fake_runtime(13, 0x030d_00f0, fitting(13));
        let l = read(&mem, RUNTIME, Version::new(3, 13, 0), base).unwrap();
        assert_eq!(l.frames.code_tag_mask, 0);
        assert_eq!(l.gc, base.gc);
        assert_eq!(l.interp_threads_head, value_of("interpreter_state.threads_head"));
    }

    #[test]
    fn a_3_15_blob_gets_the_history_row() {
        let base = layout::for_minor(13).unwrap();
        let mem = fake_runtime(15, 0x030f_02f0, fitting(15));
        let l = read(&mem, RUNTIME, Version::new(3, 15, 2), base).unwrap();
        assert_eq!(l.gc, Some(layout::GC_3_15));
        assert_eq!(l.gc_offset, value_of("interpreter_state.gc"));
        assert_eq!(l.tstate_thread_id, value_of("thread_state.thread_id"));
    }

    /// A build whose `_Py_DebugOffsets` describes another GC state keeps the stack walk and loses
    /// only the GC metrics.
    #[test]
    fn a_gc_state_unlike_the_row_turns_only_the_gc_off() {
        let base = layout::for_minor(13).unwrap();
        for (minor, hex, field) in [
            (13, 0x030d_05f0, "gc.collecting"),
            (14, 0x030e_0af0, "gc.collecting"),
            (15, 0x030f_02f0, "gc.generation_stats_size"),
            (15, 0x030f_02f0, "gc.generation_stats"),
        ] {
            let real = fitting(minor);
            let mem = fake_runtime(minor, hex, |n| if n == field { real(n) + 8 } else { real(n) });
            let l = read(&mem, RUNTIME, Version::new(3, minor, 0), base).unwrap();
            assert_eq!(l.gc, None, "3.{minor} {field}");
            assert_eq!(l.frames.frame_code, value_of("interpreter_frame.executable"));
        }
    }

    #[test]
    fn rejects_bad_blobs() {
        let base = layout::for_minor(13).unwrap();
        let v = Version::new(3, 14, 0);
        let mut mem = fake_runtime(14, 0x030e_00f0, value_of);
        mem.put(RUNTIME, b"notdebug");
        assert!(matches!(read(&mem, RUNTIME, v, base), Err(DebugOffsetsError::Cookie)));
        let mem = fake_runtime(14, 0x030f_00f0, value_of);
        assert!(matches!(read(&mem, RUNTIME, v, base), Err(DebugOffsetsError::Version { .. })));
        let mem = fake_runtime(14, 0x030e_00f0, |n| if n == "thread_state.next" { 1 << 20 } else { value_of(n) });
        let e = read(&mem, RUNTIME, v, base).unwrap_err();
        assert!(matches!(e, DebugOffsetsError::Implausible { field: "thread_state.next", .. }), "{e}");
        let e = read(&mem, RUNTIME, Version::new(3, 16, 0), base).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CPython 3.16.0 has a _Py_DebugOffsets layout pytracer does not know (3.13 to 3.15 are known); spans stay wire-only"
        );
        let e = read(&mem, RUNTIME + 8, v, base).unwrap_err();
        assert!(matches!(e, DebugOffsetsError::Read(_)), "{e}");
    }
}
