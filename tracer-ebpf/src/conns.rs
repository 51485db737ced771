//! The followed sockets (CONNS): the one place that knows a closed socket's entry stays.
//!
//! Why a close leaves its entry (marked CONN_CLOSED) instead of deleting it: a delete, and the
//! next accept's insert, are each a hash-table update with the bucket's lock and the free list,
//! once per connection; a pre-fork worker gets the same descriptor number for every connection,
//! so its next accept finds the entry and writes over it in place: two lookups instead. Only
//! descriptors below KEEP_BELOW_FD are kept: a server holding thousands of connections at once
//! must not leave thousands of closed entries in the map every process shares, and a pre-fork
//! worker's connection has a small number. Kept entries go when the agent forgets the process at
//! its exit.
use tracer_common::{ConnKey, DropReason, CONN_CLOSED, KEEP_BELOW_FD};

use crate::maps::CONNS;
use crate::output::count_drop;

/// The CONNS flags of a followed socket; None when it is not followed (or was closed).
#[inline(always)]
pub fn get(key: ConnKey) -> Option<u32> {
    let how = CONNS.get_ptr(key)?;
    // SAFETY: a value pointer from a map lookup, valid for this program run.
    let how = unsafe { *how };
    (how != CONN_CLOSED).then_some(how)
}

/// Follows a socket, `how` its CONNS flags: in place when the descriptor number kept its entry.
/// False (counted) when the map is full.
#[inline(always)]
pub fn follow(key: ConnKey, how: u32) -> bool {
    if key.fd < KEEP_BELOW_FD {
        if let Some(slot) = CONNS.get_ptr_mut(key) {
            // SAFETY: a value pointer from a map lookup, valid for this program run; the
            // descriptor number is this process's, and its syscalls on it are ordered.
            unsafe { *slot = how };
            return true;
        }
    }
    if CONNS.insert(key, how, 0).is_err() {
        count_drop(DropReason::ConnMapFull);
        return false;
    }
    true
}

/// Adds `flag` to a followed socket's flags; false when the socket is not followed.
#[inline(always)]
pub fn mark(key: ConnKey, flag: u32) -> bool {
    let Some(slot) = CONNS.get_ptr_mut(key) else { return false };
    // SAFETY: as in `follow`.
    let slot = unsafe { &mut *slot };
    if *slot == CONN_CLOSED {
        return false;
    }
    *slot |= flag;
    true
}

/// Stops following a socket at its close; false when it was not followed.
#[inline(always)]
pub fn unfollow(key: ConnKey) -> bool {
    if key.fd >= KEEP_BELOW_FD {
        return CONNS.remove(key).is_ok(); // no entry is kept closed up there
    }
    let Some(slot) = CONNS.get_ptr_mut(key) else { return false };
    // SAFETY: as in `follow`.
    let slot = unsafe { &mut *slot };
    if *slot == CONN_CLOSED {
        return false;
    }
    *slot = CONN_CLOSED;
    true
}
