//! Loads the eBPF object, attaches it to the syscall and scheduler tracepoints, and gives the
//! agent typed access to its maps.
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::programs::{TracePoint, UProbe};
use aya::{Ebpf, EbpfLoader};
use tracer_common::names::{map, program, TRACEPOINTS};
use tracer_common::{ConnKey, DropReason, PyOffsets, TrackedProc};

pub use super::usdt::UsdtLink;

pub(super) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// Loaded at start, attached to each traced process whose interpreter has their sites
/// (agent/python.rs).
const UPROBES: [&str; 6] = [
    program::GC_START,
    program::GC_RETURN,
    program::GC_DONE,
    program::GIL_REQUEST,
    program::GIL_TAKEN,
    program::PY_FRAME_EVAL,
];
/// libssl's uprobes (tracer-ebpf's probes/tls.rs), loaded at start, attached per process.
const TLS_PROGRAMS: [&str; 6] = [
    program::SSL_SET_FD,
    program::SSL_READ,
    program::SSL_READ_EX,
    program::SSL_WRITE,
    program::SSL_WRITE_EX,
    program::SSL_RETURN,
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("this pytracer binary carries no eBPF programs (it was built with AYA_BUILD_SKIP=1); rebuild it with `cargo build --release`")]
    NoObject,
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`")]
    Tracefs(std::io::Error),
    #[error("loading the eBPF object failed: {0}. pytracer needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN) and a kernel of 5.17 or later (`pytracer check` says what is missing)")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("loading program {name} failed: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("attaching {name} to tracepoint {category}:{tracepoint} failed: {source}")]
    Attach {
        name: &'static str,
        category: &'static str,
        tracepoint: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("the eBPF object has no map or program {0}")]
    MissingMap(&'static str),
    #[error("attaching {name} to the USDT probe of {path} at file offset {offset:#x} failed: {source}")]
    Usdt { name: &'static str, path: String, offset: u64, source: std::io::Error },
    #[error("attaching {name} to {path} at file offset {offset:#x} failed: {source}")]
    Uprobe { name: &'static str, path: String, offset: u64, source: Box<aya::programs::ProgramError> },
    #[error("attaching the CPU sampler on CPU {cpu} failed: {source}")]
    Sampler { cpu: u32, source: Box<aya::programs::ProgramError> },
    #[error("cannot list the online CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
}

pub struct Probes {
    /// Owns the programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
    tracked: HashMap<MapData, u32, TrackedProc>,
    conns: HashMap<MapData, ConnKey, u32>,
    drops: PerCpuArray<MapData, u64>,
    py_offsets: HashMap<MapData, u32, PyOffsets>,
}

/// One uprobe attached to one process; give it back to [`Probes::detach_uprobe`].
#[derive(Debug)]
pub struct UprobeLink {
    program: &'static str,
    link: UProbeLinkId,
}

impl Probes {
    /// Loads and attaches everything. Returns the ring buffer of events separately so the event
    /// loop can own it.
    pub fn load() -> Result<(Probes, RingBuf<MapData>), ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        ensure_tracefs()?;
        // Without the kernel's BTF: aya's loader needs it only for CO-RE relocations, which the
        // object has none of (`the_object_loads_without_kernel_btf` checks), and `Ebpf::load` parsed
        // all 5 MB of it twice, most of the agent's peak memory. `EbpfLoader::new` still parses
        // it once (it has no constructor that does not); `btf(None)` frees that copy before the
        // programs load.
        let mut ebpf = EbpfLoader::new().btf(None).load(OBJECT).map_err(|e| ProbeError::Load(Box::new(e)))?;
        for &(name, category, tracepoints) in TRACEPOINTS {
            let prog: &mut TracePoint =
                ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(name))?;
            prog.load().map_err(|source| ProbeError::Program { name, source })?;
            for &tracepoint in tracepoints {
                prog.attach(category, tracepoint).map_err(|source| ProbeError::Attach {
                    name,
                    category,
                    tracepoint,
                    source: Box::new(source),
                })?;
            }
        }
        let events = RingBuf::try_from(take(&mut ebpf, map::EVENTS)?)
            .map_err(|source| ProbeError::Map { map: map::EVENTS, source })?;
        let tracked = HashMap::try_from(take(&mut ebpf, map::TRACKED)?)
            .map_err(|source| ProbeError::Map { map: map::TRACKED, source })?;
        let conns = HashMap::try_from(take(&mut ebpf, map::CONNS)?)
            .map_err(|source| ProbeError::Map { map: map::CONNS, source })?;
        let drops = PerCpuArray::try_from(take(&mut ebpf, map::DROPS)?)
            .map_err(|source| ProbeError::Map { map: map::DROPS, source })?;
        set_kernel_config(&mut ebpf)?;
        let py_offsets = HashMap::try_from(take(&mut ebpf, map::PY_OFFSETS)?)
            .map_err(|source| ProbeError::Map { map: map::PY_OFFSETS, source })?;
        for name in UPROBES.into_iter().chain(TLS_PROGRAMS) {
            let prog: &mut UProbe =
                ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(name))?;
            prog.load().map_err(|source| ProbeError::Program { name, source })?;
        }
        Ok((Probes { ebpf, tracked, conns, drops, py_offsets }, events))
    }

    /// Follows `pid` (and, through the fork tracepoint, every child it creates from now on).
    pub fn track(&mut self, pid: u32, root: u32) -> Result<(), ProbeError> {
        self.tracked
            .insert(pid, TrackedProc { root_tgid: root, _pad: 0 }, 0)
            .map_err(|source| ProbeError::Map { map: map::TRACKED, source })
    }

    pub fn is_tracked(&self, pid: u32) -> bool {
        self.tracked.get(&pid, 0).is_ok()
    }

    /// The least time between two frame-evaluation walks on one thread (0: every hit).
    pub fn set_walk_gap(&mut self, ns: u64) -> Result<(), ProbeError> {
        let mut config: Array<&mut MapData, u64> =
            Array::try_from(self.ebpf.map_mut(map::KCONFIG).ok_or(ProbeError::MissingMap(map::KCONFIG))?)
                .map_err(|source| ProbeError::Map { map: map::KCONFIG, source })?;
        config
            .set(tracer_common::KCONFIG_WALK_GAP_NS, ns, 0)
            .map_err(|source| ProbeError::Map { map: map::KCONFIG, source })
    }

    /// Tells the stack walk how to read `pid`'s interpreter (its children inherit it at fork).
    pub fn set_py_offsets(&mut self, pid: u32, offsets: PyOffsets) -> Result<(), ProbeError> {
        self.py_offsets.insert(pid, offsets, 0).map_err(|source| ProbeError::Map { map: map::PY_OFFSETS, source })
    }

    /// Attaches uprobe program `program` (tracer-ebpf's probes/tls.rs, gc_gil.rs, frame_eval.rs) at `offset`
    /// of `path`, for process `pid` only: a probe for every process would trap in all that map
    /// the same file, traced or not.
    pub fn attach_uprobe(
        &mut self,
        program: &'static str,
        pid: u32,
        path: &Path,
        offset: u64,
    ) -> Result<UprobeLink, ProbeError> {
        let prog: &mut UProbe =
            self.ebpf.program_mut(program).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(program))?;
        let scope = std::num::NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        prog.attach(UProbeAttachLocation::AbsoluteOffset(offset), path, scope)
            .map(|link| UprobeLink { program, link })
            .map_err(|source| ProbeError::Uprobe {
                name: program,
                path: path.display().to_string(),
                offset,
                source: Box::new(source),
            })
    }

    pub fn detach_uprobe(&mut self, link: UprobeLink) {
        if let Some(prog) =
            self.ebpf.program_mut(link.program).and_then(|p| -> Option<&mut UProbe> { p.try_into().ok() })
        {
            // Fails only when the process is gone and the kernel already dropped the probe.
            let _ = prog.detach(link.link);
        }
    }

    /// Attaches program `name` (a uprobe) to a USDT probe at file `offset`, for process `pid`
    /// only, raising its semaphore in that process alone through the kernel (see usdt.rs).
    pub fn attach_usdt(
        &mut self,
        name: &'static str,
        pid: u32,
        path: &Path,
        offset: u64,
        semaphore_offset: u64,
    ) -> Result<UsdtLink, ProbeError> {
        use std::os::fd::{AsFd, AsRawFd};
        let prog: &mut UProbe =
            self.ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(name))?;
        let err = |e: std::io::Error| ProbeError::Usdt { name, path: path.display().to_string(), offset, source: e };
        let fd = prog.fd().map_err(|e| err(std::io::Error::other(e.to_string())))?.as_fd().as_raw_fd();
        super::usdt::attach(fd, pid, path, offset, semaphore_offset).map_err(err)
    }

    /// Enters a connection the process had before it was tracked in the connection map, as its
    /// accept or connect would have. False when the map already follows that descriptor: the
    /// socket was accepted or connected since the process was tracked, and its own record tells
    /// of it. An entry a close left (CONN_CLOSED) is written over, as the next accept would.
    pub fn adopt_connection(&mut self, tgid: u32, fd: i32, connected: bool) -> Result<bool, ProbeError> {
        use tracer_common::{CONN_ACCEPTED, CONN_CLOSED, CONN_CONNECTED};
        const BPF_NOEXIST: u64 = 1;
        const BPF_EXIST: u64 = 2;
        let how = if connected { CONN_CONNECTED } else { CONN_ACCEPTED };
        let key = ConnKey { tgid, fd: fd as u32 };
        let exists = |e: &aya::maps::MapError| matches!(e, aya::maps::MapError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EEXIST));
        match self.conns.insert(key, how, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(e) if exists(&e) => match self.conns.get(&key, 0) {
                Ok(CONN_CLOSED) => {
                    self.conns
                        .insert(key, how, BPF_EXIST)
                        .map_err(|source| ProbeError::Map { map: map::CONNS, source })?;
                    Ok(true)
                }
                // Followed already, or gone again since (its close's record tells of it).
                _ => Ok(false),
            },
            Err(source) => Err(ProbeError::Map { map: map::CONNS, source }),
        }
    }

    /// Stops following one descriptor (an adopted one that closed before it was entered).
    pub fn forget_connection(&mut self, tgid: u32, fd: i32) {
        let _ = self.conns.remove(&ConnKey { tgid, fd: fd as u32 });
    }

    /// Loads the CPU sampler and attaches it as a cpu-clock event at `hz` on every online CPU,
    /// for all tasks (the program skips untraced ones). Returns the CPUs covered.
    pub fn start_sampler(&mut self, hz: u64) -> Result<usize, ProbeError> {
        use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
        use aya::programs::PerfEvent;
        let name = program::PROFILE_SAMPLE;
        let prog: &mut PerfEvent =
            self.ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(name))?;
        prog.load().map_err(|source| ProbeError::Program { name, source })?;
        let cpus = aya::util::online_cpus().map_err(|(_, e)| ProbeError::Cpus(e))?;
        // The data path keeps THREAD_REQUEST from now on.
        let mut config: Array<&mut MapData, u64> =
            Array::try_from(self.ebpf.map_mut(map::KCONFIG).ok_or(ProbeError::MissingMap(map::KCONFIG))?)
                .map_err(|source| ProbeError::Map { map: map::KCONFIG, source })?;
        config
            .set(tracer_common::KCONFIG_PROFILING, 1, 0)
            .map_err(|source| ProbeError::Map { map: map::KCONFIG, source })?;
        let prog: &mut PerfEvent =
            self.ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(ProbeError::MissingMap(name))?;
        for &cpu in &cpus {
            prog.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(hz),
                false,
            )
            .map_err(|source| ProbeError::Sampler { cpu, source: Box::new(source) })?;
        }
        Ok(cpus.len())
    }

    /// Forgets the connections of a process that exited without closing them.
    pub fn forget_connections(&mut self, tgid: u32) {
        let keys: Vec<ConnKey> = self.conns.keys().filter_map(Result::ok).filter(|k| k.tgid == tgid).collect();
        for k in keys {
            let _ = self.conns.remove(&k);
        }
    }

    /// Events the kernel side could not deliver, summed over CPUs, by reason.
    pub fn drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|&r| {
                let n = self.drops.get(&(r as u32), 0).map_or(0, |v| v.iter().sum());
                (r, n)
            })
            .collect()
    }
}

/// The members the connect exit follows to a socket's own address (tracer-ebpf's sock.rs), each
/// with its KCONFIG index.
pub(super) const SOCK_MEMBERS: [(u32, &str, &[&str]); 10] = [
    (tracer_common::KCONFIG_TASK_FILES, "task_struct", &["files"]),
    (tracer_common::KCONFIG_FILES_FDT, "files_struct", &["fdt"]),
    (tracer_common::KCONFIG_FDT_MAX_FDS, "fdtable", &["max_fds"]),
    (tracer_common::KCONFIG_FDT_FD, "fdtable", &["fd"]),
    (tracer_common::KCONFIG_FILE_PRIVATE_DATA, "file", &["private_data"]),
    (tracer_common::KCONFIG_SOCKET_SK, "socket", &["sk"]),
    (tracer_common::KCONFIG_SKC_FAMILY, "sock", &["__sk_common", "skc_family"]),
    (tracer_common::KCONFIG_SKC_NUM, "sock", &["__sk_common", "skc_num"]),
    (tracer_common::KCONFIG_SKC_RCV_SADDR, "sock", &["__sk_common", "skc_rcv_saddr"]),
    (tracer_common::KCONFIG_SKC_V6_RCV_SADDR, "sock", &["__sk_common", "skc_v6_rcv_saddr"]),
];

/// Kernel facts the programs cannot find themselves, from the kernel's BTF, read once. Without
/// BTF, stack walks from syscalls (the Python caller of outgoing calls) are off, and an outgoing
/// connection's own address is read from /proc instead (too late for the shortest calls).
fn set_kernel_config(ebpf: &mut Ebpf) -> Result<(), ProbeError> {
    use tracer_common as tc;
    let btf = super::kernel_btf::KernelBtf::load();
    let fsbase =
        match btf.as_ref().map_err(Clone::clone).and_then(|b| b.offset_of("task_struct", &["thread", "fsbase"])) {
            Ok(off) => off,
            Err(e) => {
                log::warn!("no Python caller on outgoing calls: {e}");
                0
            }
        };
    let mut values = vec![(tc::KCONFIG_TASK_FSBASE, fsbase)];
    let sock: Result<Vec<(u32, u64)>, super::kernel_btf::BtfError> = btf.as_ref().map_err(Clone::clone).and_then(|b| {
        SOCK_MEMBERS.iter().map(|&(index, root, path)| b.offset_of(root, path).map(|off| (index, off))).collect()
    });
    match sock {
        Ok(offsets) => {
            values.extend(offsets);
            values.push((tc::KCONFIG_SOCK_OFFSETS_OK, 1));
        }
        Err(e) => log::warn!("outgoing connections' own addresses come from /proc (late for short calls): {e}"),
    }
    let mut config: Array<&mut MapData, u64> =
        Array::try_from(ebpf.map_mut(map::KCONFIG).ok_or(ProbeError::MissingMap(map::KCONFIG))?)
            .map_err(|source| ProbeError::Map { map: map::KCONFIG, source })?;
    for (index, value) in values {
        config.set(index, value, 0).map_err(|source| ProbeError::Map { map: map::KCONFIG, source })?;
    }
    Ok(())
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, ProbeError> {
    ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))
}

/// Where aya looks for tracefs, in its order: the tracefs mount, then debugfs's tracing
/// directory (which the kernel mounts on first access once debugfs is mounted: a fresh machine
/// without systemd's tracefs mount has only this one).
const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs directory the loader will find tracepoint ids in, if one is there now.
pub fn tracefs_dir() -> Option<&'static str> {
    TRACEFS_DIRS.into_iter().find(|d| Path::new(d).join("events").is_dir())
}

/// aya finds tracepoint ids under tracefs, which a fresh machine may not have mounted.
fn ensure_tracefs() -> Result<(), ProbeError> {
    if tracefs_dir().is_some() {
        return Ok(());
    }
    let rc = unsafe {
        libc::mount(c"tracefs".as_ptr(), c"/sys/kernel/tracing".as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(ProbeError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}
