//! Which request each thread is serving, for the CPU sampler (THREAD_REQUEST): kept from the
//! reads, writes and closes of accepted connections, which the data path sees anyway.
//!
//! A request starts at a read on a connection the thread was not serving, or at a read after the
//! thread wrote on it (the answer to the previous request on a keep-alive connection). It ends
//! when the thread closes the connection. The agent checks each sample's time against the
//! request's span as well, so a stale entry (a connection closed by another thread) is not
//! misattributed.
use tracer_common::{ThreadRequest, KCONFIG_PROFILING};

use crate::maps::{KCONFIG, THREAD_REQUEST};

#[inline(always)]
fn profiling() -> bool {
    KCONFIG.get(KCONFIG_PROFILING).is_some_and(|v| *v != 0)
}

/// A read (`write` false) or write that moved bytes on accepted connection `fd`.
#[inline(always)]
pub fn on_server_data(tgid: u32, tid: u32, fd: i32, start_ns: u64, write: bool) {
    if !profiling() {
        return;
    }
    if let Some(r) = THREAD_REQUEST.get_ptr_mut(tid) {
        // SAFETY: a value pointer from a map lookup, valid for this program run.
        let r = unsafe { &mut *r };
        if r.tgid == tgid && r.fd == fd {
            if write {
                r.answered = 1;
            } else if r.answered != 0 {
                r.start_ns = start_ns;
                r.answered = 0;
            }
            return;
        }
    }
    if write {
        return; // a thread that writes without having read serves no request of its own
    }
    // An LRU map evicts instead of failing: nothing to count.
    let _ = THREAD_REQUEST.insert(tid, ThreadRequest { tgid, fd, start_ns, answered: 0, _pad: 0 }, 0);
}

/// The thread closed `fd`: the request it served on it is over.
#[inline(always)]
pub fn on_close(tgid: u32, tid: u32, fd: i32) {
    if !profiling() {
        return;
    }
    // SAFETY: as above.
    if THREAD_REQUEST.get_ptr(tid).is_some_and(|r| unsafe { (*r).tgid == tgid && (*r).fd == fd }) {
        let _ = THREAD_REQUEST.remove(tid);
    }
}

/// The request thread `tid` of `tgid` is serving, if any.
#[inline(always)]
pub fn current(tgid: u32, tid: u32) -> Option<ThreadRequest> {
    let r = THREAD_REQUEST.get_ptr(tid)?;
    // SAFETY: as above; copied out.
    let r = unsafe { *r };
    (r.tgid == tgid).then_some(r)
}
