//! The agent's allocator, and giving its free pages back to the kernel.
//!
//! mimalloc, not glibc's malloc: a span is some forty small allocations made and freed within
//! the same drain, and glibc's free lists (with the consolidation its larger requests trigger)
//! were a fifth of the agent's CPU per span.
//!
//! Loading the programs parses the kernel's BTF (several MB) and discovery reads /proc at
//! start; an allocator keeps what they freed mapped, which was most of the agent's resident
//! memory for the rest of its life unless it is handed back.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the heap's unused pages: mimalloc's, and glibc's (what C code in the process freed).
pub fn trim() {
    // SAFETY: mi_collect only walks mimalloc's own pages; `force` also returns the pages of
    // abandoned threads' heaps.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no extra pad.
    unsafe {
        libc::malloc_trim(0);
    }
}
