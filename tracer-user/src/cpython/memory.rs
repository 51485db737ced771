//! Reading the traced interpreter's memory, behind [`ReadMemory`] so that the readers of CPython
//! structs (runtime.rs, code.rs, debug_offsets.rs) run the same against a live process
//! ([`Memory`]) and against bytes laid out by a unit test ([`LocalMemory`]).
//!
//! A live process is read with process_vm_readv only, which neither stops nor signals the
//! process and cannot write to it. A read that races with the process (freed memory, a pointer
//! being updated) returns an error or stale bytes; callers bound every walk and check what they
//! read.

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {len} bytes at {addr:#x} in pid {pid}: {source}")]
    Process { pid: u32, addr: u64, len: usize, source: std::io::Error },
    #[error("cannot read {len} bytes at {addr:#x}: outside the local buffer at {base:#x} ({size} bytes)")]
    Local { addr: u64, len: usize, base: u64, size: usize },
}

/// Where CPython's structs are read from. Values are in the reader's (the agent's) byte order:
/// the agent only traces processes on its own machine.
pub trait ReadMemory {
    /// Fill `buf` from `addr`, all of it or an error.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    fn u64(&self, addr: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn i64(&self, addr: u64) -> Result<i64, ReadError> {
        self.u64(addr).map(|v| v as i64)
    }

    /// Fill each buffer from its address, as many as one call can (one process_vm_readv for a
    /// live process): `Ok` for each read done in full, `Err` for the others.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<(), ReadError>> {
        reads.iter_mut().map(|(addr, buf)| self.read(*addr, buf)).collect()
    }

    fn u32(&self, addr: u64) -> Result<u32, ReadError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }
}

/// Another process's memory, through process_vm_readv.
pub struct Memory {
    pid: u32,
}

impl Memory {
    pub fn new(pid: u32) -> Memory {
        Memory { pid }
    }
}

impl ReadMemory for Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
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
        Err(ReadError::Process { pid: self.pid, addr, len: buf.len(), source })
    }

    /// One process_vm_readv for up to [`IOV_BATCH`] ranges at a time. The kernel stops at the
    /// first range it cannot read, so the ranges after a failed one are read one by one.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<(), ReadError>> {
        let mut out = Vec::with_capacity(reads.len());
        for chunk in reads.chunks_mut(IOV_BATCH) {
            let total: usize = chunk.iter().map(|(_, b)| b.len()).sum();
            let local: Vec<libc::iovec> = chunk
                .iter_mut()
                .map(|(_, b)| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
                .collect();
            let remote: Vec<libc::iovec> = chunk
                .iter()
                .map(|(a, b)| libc::iovec { iov_base: *a as *mut libc::c_void, iov_len: b.len() })
                .collect();
            // SAFETY: each local iovec is one of our buffers; the remote ones are only read.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid as libc::pid_t,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n >= 0 && n as usize == total {
                out.extend(chunk.iter().map(|_| Ok(())));
                continue;
            }
            let done = usize::try_from(n).unwrap_or(0);
            let mut at = 0;
            for (addr, buf) in chunk.iter_mut() {
                let end = at + buf.len();
                out.push(if end <= done { Ok(()) } else { self.read(*addr, buf) });
                at = end;
            }
        }
        out
    }
}

/// Ranges per process_vm_readv call (Linux's IOV_MAX is 1024).
const IOV_BATCH: usize = 1024;

/// Bytes that pretend to live at `base`: a target address space in miniature for unit tests.
#[derive(Debug, Clone, Default)]
pub struct LocalMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl LocalMemory {
    pub fn new(base: u64, size: usize) -> Self {
        LocalMemory { base, bytes: vec![0; size] }
    }

    /// Store `data` at address `addr` (which must lie in the buffer).
    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let at = (addr - self.base) as usize;
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    pub fn put_u64(&mut self, addr: u64, value: u64) {
        self.put(addr, &value.to_ne_bytes());
    }

    pub fn put_u32(&mut self, addr: u64, value: u32) {
        self.put(addr, &value.to_ne_bytes());
    }
}

impl ReadMemory for LocalMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let out_of_range = || ReadError::Local { addr, len: buf.len(), base: self.base, size: self.bytes.len() };
        let start = addr.checked_sub(self.base).ok_or_else(out_of_range)? as usize;
        let src = start.checked_add(buf.len()).and_then(|end| self.bytes.get(start..end)).ok_or_else(out_of_range)?;
        buf.copy_from_slice(src);
        Ok(())
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

    #[test]
    fn local_memory_reads_inside_and_rejects_outside() {
        let mut m = LocalMemory::new(0x1000, 32);
        m.put_u64(0x1008, 0x1122_3344_5566_7788);
        m.put_u32(0x1010, 7);
        assert_eq!(m.u64(0x1008).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.u32(0x1010).unwrap(), 7);
        assert_eq!(m.i64(0x1000).unwrap(), 0);
        for bad in [0xff8, 0x1019, u64::MAX] {
            let e = m.u64(bad).unwrap_err().to_string();
            assert!(e.contains("outside the local buffer at 0x1000"), "{e}");
        }
    }
}
