//! Which CPU each party runs on: the servers share one CPU so that their CPU per request is what
//! they spend on requests; the load generators, the agent and the in-process agents' sinks take
//! the other.
use anyhow::{bail, Context, Result};

pub const SERVER_CPU: usize = 0;
pub const CLIENT_CPU: usize = 1;

/// `pid` (0: the calling thread) on one CPU only.
pub fn pin(pid: u32, cpu: usize) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid")?;
    if pin_raw(pid, cpu) != 0 {
        bail!("pinning pid {pid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `sched_setaffinity` alone, safe to call between fork and exec; its return code.
pub fn pin_raw(pid: libc::pid_t, cpu: usize) -> libc::c_int {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &raw const set)
    }
}
