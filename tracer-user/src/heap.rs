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

/// mimalloc's `mi_option_purge_delay` (mimalloc.h's option 15; the -sys crate names no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Called first in `main`: freed pages go back to the kernel at once, not 10 ms later. Loading
/// frees the BTF's several MB while it allocates more, and with the delay the agent's peak RSS
/// was 39 MB, not 24.
pub fn init() {
    // SAFETY: sets one of mimalloc's global options; no allocation depends on it yet.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

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
