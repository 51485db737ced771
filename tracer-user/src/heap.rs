//! Gives the allocator's free pages back to the kernel. Loading the programs parses the kernel's
//! BTF (several MB) and discovery reads /proc at start; glibc keeps what they freed mapped, which
//! was about half of the agent's resident memory for the rest of its life.

/// Returns the heap's unused pages (glibc's `malloc_trim`); a no-op with other C libraries.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no extra pad.
    unsafe {
        libc::malloc_trim(0);
    }
}
