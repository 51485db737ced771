//! Capabilities the agent keeps once its programs are loaded and its listener bound.
//!
//! Started as root (sudo), the agent holds every capability; from then on it needs only these:
//! - `CAP_BPF`, `CAP_PERFMON`, `CAP_SYS_ADMIN`: per-process uprobes attached later (libssl, the
//!   frame-evaluation windows, a new libpython), which this kernel allows only with SYS_ADMIN;
//! - `CAP_SYS_PTRACE`: `process_vm_readv`, `/proc/PID/root`, `exe`, `environ` and `pidfd_getfd`
//!   of processes that are not the agent's own;
//! - `CAP_DAC_READ_SEARCH`: reading files of other users through `/proc/PID/root` (a
//!   container's libpython, its libssl, the runtime's bundle files).
//!
//! Everything else (setuid, chown, kill, module loading, raw I/O, network administration…) is
//! dropped from the effective, permitted, inheritable, ambient and bounding sets, so that a
//! compromised agent cannot use it, and `no_new_privs` is set. A capability the agent was not
//! given (a DaemonSet's short list) simply stays absent.
use caps::{CapSet, Capability, CapsHashSet};
use thiserror::Error;

/// What the agent keeps; see the module's documentation for why each.
pub const KEPT: [Capability; 5] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_READ_SEARCH,
];

#[derive(Debug, Error)]
pub enum PrivilegesError {
    #[error("cannot {what} capabilities: {source}")]
    Caps {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
}

/// What [`drop_unneeded`] did.
#[derive(Debug)]
pub struct Dropped {
    /// The capabilities still held (effective), by name.
    pub kept: Vec<String>,
    /// How many the permitted set lost.
    pub dropped: usize,
    /// The bounding set was cut too (that needs CAP_SETPCAP, which a DaemonSet does not give).
    pub bounding: bool,
}

/// Keeps only [`KEPT`] (as far as the agent holds them) and sets `no_new_privs`.
pub fn drop_unneeded() -> Result<Dropped, PrivilegesError> {
    let err = |what| move |source| PrivilegesError::Caps { what, source };
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("read"))?;
    let keep: CapsHashSet = KEPT.iter().copied().filter(|c| permitted.contains(c)).collect();
    // The bounding set first: cutting it needs CAP_SETPCAP, which goes with the rest below.
    let bounding = permitted.contains(&Capability::CAP_SETPCAP);
    if bounding {
        for cap in caps::read(None, CapSet::Bounding).map_err(err("read"))? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(err("drop bounding"))?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("clear ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("clear inheritable"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(err("set effective"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err("set permitted"))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegesError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    let mut kept: Vec<String> = keep.iter().map(|c| c.to_string().to_lowercase()).collect();
    kept.sort();
    Ok(Dropped { kept, dropped: permitted.len() - keep.len(), bounding })
}
