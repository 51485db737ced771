//! Reads of the traced process's memory. Every read goes through bpf_probe_read_user: a bad
//! pointer is a failed read, never a fault.
use aya_ebpf::helpers::{bpf_probe_read_user, generated};

/// Reads `len` user bytes, with `len` clamped to MAX in a way the verifier can bound: the caller
/// guarantees `dst` has MAX bytes of room.
#[inline(always)]
pub fn read_user<const MAX: usize>(dst: *mut u8, len: usize, src: u64) -> bool {
    let len = if len > MAX { MAX } else { len };
    if len == 0 {
        return true;
    }
    // SAFETY: `dst` has room for MAX >= len bytes (the caller's promise); `src` is only read by
    // the helper, which checks it.
    unsafe { generated::bpf_probe_read_user(dst.cast(), len as u32, src as *const _) == 0 }
}

#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: the helper checks the address.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}
