//! A socket's own address, read from kernel memory: current task -> files -> fdtable -> file ->
//! socket -> sock, with member offsets the agent found in the kernel's BTF (KCONFIG). Every read
//! goes through bpf_probe_read_kernel, so a stale pointer is a failed read, never a fault.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use tracer_common::{
    AF_INET, AF_INET6, KCONFIG_FDT_FD, KCONFIG_FDT_MAX_FDS, KCONFIG_FILES_FDT, KCONFIG_FILE_PRIVATE_DATA,
    KCONFIG_SKC_FAMILY, KCONFIG_SKC_NUM, KCONFIG_SKC_RCV_SADDR, KCONFIG_SKC_V6_RCV_SADDR, KCONFIG_SOCKET_SK,
    KCONFIG_SOCK_OFFSETS_OK, KCONFIG_TASK_FILES,
};

use crate::maps::KCONFIG;

#[inline(always)]
fn offset(index: u32) -> Option<u64> {
    KCONFIG.get(index).copied()
}

#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: the helper checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The local (family, port in host order, address) of the current task's socket `fd`; None when
/// the offsets are unknown or the chain does not lead to an inet socket.
#[inline(always)]
pub fn local_addr(fd: i32) -> Option<(u16, u16, [u8; 16])> {
    if fd < 0 || offset(KCONFIG_SOCK_OFFSETS_OK)? != 1 {
        return None;
    }
    // SAFETY: no arguments; returns the current task_struct's address.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task + offset(KCONFIG_TASK_FILES)?)?;
    let fdt: u64 = read(files + offset(KCONFIG_FILES_FDT)?)?;
    let max_fds: u32 = read(fdt + offset(KCONFIG_FDT_MAX_FDS)?)?;
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array: u64 = read(fdt + offset(KCONFIG_FDT_FD)?)?;
    let file: u64 = read(fd_array + (fd as u64) * 8)?;
    let socket: u64 = read(file + offset(KCONFIG_FILE_PRIVATE_DATA)?)?;
    let sk: u64 = read(socket + offset(KCONFIG_SOCKET_SK)?)?;
    let family: u16 = read(sk + offset(KCONFIG_SKC_FAMILY)?)?;
    let port: u16 = read(sk + offset(KCONFIG_SKC_NUM)?)?;
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let v4: [u8; 4] = read(sk + offset(KCONFIG_SKC_RCV_SADDR)?)?;
            addr[..4].copy_from_slice(&v4);
        }
        AF_INET6 => addr = read(sk + offset(KCONFIG_SKC_V6_RCV_SADDR)?)?,
        _ => return None,
    }
    Some((family, port, addr))
}
