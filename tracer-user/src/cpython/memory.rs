//! Reading another process's memory: process_vm_readv only, which neither stops nor signals the
//! process and cannot write to it. A read that races with the process (freed memory, a pointer
//! being updated) returns an error or stale bytes; callers bound every walk and check what they
//! read.

#[derive(Debug, thiserror::Error)]
#[error("cannot read {len} bytes at {addr:#x} in pid {pid}: {source}")]
pub struct ReadError {
    pub pid: u32,
    pub addr: u64,
    pub len: usize,
    pub source: std::io::Error,
}

pub struct Memory {
    pid: u32,
}

impl Memory {
    pub fn new(pid: u32) -> Memory {
        Memory { pid }
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: both iovecs describe valid ranges: ours is `buf`, the remote one is only read
        // by the kernel on the other process's behalf.
        let n =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &raw const local, 1, &raw const remote, 1, 0) };
        if n == buf.len() as isize {
            return Ok(());
        }
        let source = if n < 0 { std::io::Error::last_os_error() } else { std::io::Error::other("short read") };
        Err(ReadError { pid: self.pid, addr, len: buf.len(), source })
    }

    pub fn u64(&self, addr: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    pub fn i64(&self, addr: u64) -> Result<i64, ReadError> {
        self.u64(addr).map(|v| v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_rejects_bad_addresses() {
        let value: u64 = 0x1122_3344_5566_7788;
        let m = Memory::new(std::process::id());
        assert_eq!(m.u64(&raw const value as u64).unwrap(), value);
        let e = m.u64(8).unwrap_err().to_string();
        assert!(e.contains("cannot read 8 bytes at 0x8"), "{e}");
    }
}
