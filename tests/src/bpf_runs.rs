//! How many times a process's BPF programs have run: the kernel counts runs only while run-time
//! statistics are on, which [`RunStats`] keeps them for as long as it lives.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::bpf_objects::BpfObjects;

/// Run statistics on (BPF_ENABLE_STATS): the kernel keeps them on while any such descriptor is
/// open, so tests running at once cannot turn them off under each other, and the sysctl is left
/// as it was.
pub struct RunStats {
    _fd: OwnedFd,
}

impl RunStats {
    pub fn enable() -> RunStats {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        // union bpf_attr for BPF_ENABLE_STATS: the statistics' type.
        let attr: [u32; 2] = [BPF_STATS_RUN_TIME, 0];
        // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of a local array.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), size_of_val(&attr)) };
        assert!(fd >= 0, "BPF_ENABLE_STATS: {} (needs root)", std::io::Error::last_os_error());
        // SAFETY: a descriptor the call just opened for us.
        RunStats { _fd: unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) } }
    }
}

/// Runs so far of process `pid`'s programs named `name`, summed (one `bpftool prog show`, kept
/// to the ids its descriptors name).
pub fn program_runs(pid: u32, name: &str) -> u64 {
    let ours = BpfObjects::of(pid).programs;
    let out = std::process::Command::new("bpftool").args(["prog", "show", "--json"]).output().expect("running bpftool");
    assert!(out.status.success(), "bpftool prog show: {}", String::from_utf8_lossy(&out.stderr));
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    progs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == name && p["id"].as_u64().is_some_and(|id| ours.contains(&(id as u32))))
        .map(|p| p["run_cnt"].as_u64().unwrap_or(0))
        .sum()
}
