//! Writing records to the ring buffer, and counting the ones that could not be written.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{DropReason, EventHeader, EventKind, ProcEvent};

use crate::maps::{DROPS, EVENTS};

/// Unread bytes above which a record wakes the agent. Below it the agent is not woken: it drains
/// on its own timer. A wakeup per record cost the traced app about 100 µs per request on this
/// machine (irq_work, context switches, the agent's epoll round trip, on 2 shared cores).
const WAKEUP_BYTES: u64 = 512 * 1024;

/// Unread bytes in the 4 MiB ring buffer above which stacks are not sent.
const STACK_SHARE_BYTES: u64 = 1 << 20;

/// Bytes written to the ring buffer that the agent has not read yet.
#[inline(always)]
pub fn unread() -> u64 {
    EVENTS.query(u64::from(BPF_RB_AVAIL_DATA))
}

#[inline(always)]
fn wakeup_flags() -> u64 {
    wakeup_flags_at(unread())
}

#[inline(always)]
fn wakeup_flags_at(unread: u64) -> u64 {
    if unread > WAKEUP_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(p) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Sends a fixed-size record.
#[inline(always)]
pub fn output<T>(ev: &T) {
    if EVENTS.output::<T>(ev, wakeup_flags()).is_err() {
        count_drop(DropReason::RingBufFull);
    }
}

/// Sends the first bytes of a record assembled in a scratch map (data and stack records are only
/// as long as what they carry).
#[inline(always)]
pub fn output_bytes(bytes: &[u8]) {
    output_bytes_at(bytes, unread());
}

/// [`output_bytes`] with the ring's unread bytes already queried (a data record's capture
/// depends on them too: one query per record, not two).
#[inline(always)]
pub fn output_bytes_at(bytes: &[u8], unread: u64) {
    if EVENTS.output::<[u8]>(bytes, wakeup_flags_at(unread)).is_err() {
        count_drop(DropReason::RingBufFull);
    }
}

/// Sends a [`ProcEvent`]: a header and, for a fork, the child.
#[inline(always)]
pub fn output_proc(kind: EventKind, tgid: u32, tid: u32, fd: i32, start_ns: u64, end_ns: u64, child: u32) {
    let ev = ProcEvent {
        header: EventHeader { kind: kind as u32, tgid, tid, fd, start_ns, end_ns, ret: 0 },
        child,
        _pad: 0,
    };
    output(&ev);
}

/// Stacks may fill only part of the ring buffer: a burst of them (a frame-evaluation window on a
/// busy server) must not crowd out the records that make the spans.
#[inline(always)]
pub fn room_for_stacks() -> bool {
    unread() <= STACK_SHARE_BYTES
}
