//! Attaching a loaded uprobe program to a USDT probe whose semaphore must be raised.
//!
//! CPython guards its probe sites with a semaphore: the probe's code runs only while the
//! semaphore is non-zero. The kernel raises it in each process the uprobe is installed in when
//! the uprobe is created with a `ref_ctr_offset` (here one process: the one traced), and lowers
//! it when the uprobe goes away, so pytracer never writes to the target itself. aya 0.14 cannot pass that offset, hence this perf_event_open.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// `perf_event_attr` fields this needs, at their ABI offsets (PERF_ATTR_SIZE_VER7 = 128 bytes).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    _sample: [u64; 3],
    _bits_and_more: [u8; 16],
    config1: u64,
    config2: u64,
    _rest: [u64; 7],
}

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// The uprobe PMU's format: `ref_ctr_offset` is config:32-63.
const REF_CTR_OFFSET_SHIFT: u32 = 32;

/// Keeps the probe (and the raised semaphore) alive; dropping it detaches.
pub struct UsdtLink {
    _fd: OwnedFd,
}

pub fn attach(prog_fd: RawFd, pid: u32, path: &Path, offset: u64, semaphore_offset: u64) -> io::Result<UsdtLink> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let pmu: u32 = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?
        .trim()
        .parse()
        .map_err(|_| io::Error::other("cannot parse the uprobe PMU type"))?;
    let path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: all-zero is a valid perf_event_attr.
    let mut attr: PerfEventAttr = unsafe { std::mem::zeroed() };
    attr.kind = pmu;
    attr.size = size_of::<PerfEventAttr>() as u32;
    attr.config = semaphore_offset << REF_CTR_OFFSET_SHIFT;
    attr.config1 = path.as_ptr() as u64;
    attr.config2 = offset;
    // One process, any CPU: the kernel installs the probe (and raises the semaphore) in that
    // process's address space alone, whichever of its threads runs.
    // SAFETY: attr and path outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &raw const attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: ioctls on our own perf event descriptor.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog_fd) != 0
            || libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(UsdtLink { _fd: fd })
}

#[cfg(test)]
mod tests {
    #[test]
    fn attr_has_the_abi_size_and_offsets() {
        assert_eq!(size_of::<super::PerfEventAttr>(), 128);
        assert_eq!(std::mem::offset_of!(super::PerfEventAttr, config1), 56);
        assert_eq!(std::mem::offset_of!(super::PerfEventAttr, config2), 64);
    }
}
