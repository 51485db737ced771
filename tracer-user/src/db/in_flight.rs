//! A connection's calls in flight, oldest first, and how they end when their replies cannot be
//! read to the end: the part of pairing MySQL, PostgreSQL and Redis share.
//!
//! All three lean on the client waiting for its replies (see the [module](super) notes). When a
//! reply's framing is lost inside a read, the reads that follow are taken as more of that reply,
//! a gap in what could be followed; the calls in flight end at the last of them when the client
//! writes again, which a client waiting for its reply only does once it has read all of it, or
//! when the connection closes. A connection that closes with calls still waiting otherwise
//! returns them unanswered, at the last syscall seen.
//!
//! Each protocol says, by one function, what a call in flight becomes when it ends either way
//! ([`EndedBy`]), or that it gives no call (a statement's housekeeping, a start-up).
use std::collections::{vec_deque, VecDeque};

use crate::calls::DbCall;
use crate::db::DbStats;

/// Why a call in flight ended before its reply was read to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// Its reply's framing was lost; the client wrote again (or closed), so the reply was over:
    /// the call ends at the last read, without the reply's status.
    ReplyGap,
    /// The connection closed before the reply.
    Close,
}

/// The calls written and not yet answered, and where the last reply's framing was lost.
#[derive(Debug)]
pub(crate) struct InFlight<P> {
    calls: VecDeque<P>,
    /// The reply's framing was lost inside a read: the exit of the last read since.
    reply_gap: Option<u64>,
    /// The exit of the last syscall seen: where unanswered calls end at close.
    last_end_ns: u64,
}

impl<P> Default for InFlight<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> InFlight<P> {
    pub(crate) fn new() -> Self {
        InFlight { calls: VecDeque::new(), reply_gap: None, last_end_ns: 0 }
    }

    /// A syscall on the connection ended at `end_ns`.
    pub(crate) fn saw(&mut self, end_ns: u64) {
        self.last_end_ns = self.last_end_ns.max(end_ns);
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub(crate) fn iter(&self) -> vec_deque::Iter<'_, P> {
        self.calls.iter()
    }

    /// The oldest call: the one the next reply answers.
    pub(crate) fn front(&self) -> Option<&P> {
        self.calls.front()
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut P> {
        self.calls.front_mut()
    }

    pub(crate) fn pop_front(&mut self) -> Option<P> {
        self.calls.pop_front()
    }

    pub(crate) fn push_back(&mut self, p: P) {
        self.calls.push_back(p);
    }

    /// Forgets every call in flight (the connection was given up on).
    pub(crate) fn clear(&mut self) {
        self.calls.clear();
    }

    /// A reply's framing was lost inside the read that ended at `end_ns`.
    pub(crate) fn reply_lost(&mut self, end_ns: u64) {
        self.reply_gap = Some(end_ns);
    }

    /// A read that ended at `end_ns` while the reply's framing is lost: true when it is still
    /// the reply whose framing was lost (the gap then reaches to its end).
    pub(crate) fn in_reply_gap(&mut self, end_ns: u64) -> bool {
        if self.reply_gap.is_some() {
            self.reply_gap = Some(end_ns);
        }
        self.reply_gap.is_some()
    }

    /// The client writes again. After a reply gap, every call in flight ends at the gap's last
    /// read (counted as a resync, and each call as an unframed reply), and the caller restarts
    /// its reply framing; None when there was no gap.
    pub(crate) fn write_after_gap(
        &mut self,
        stats: &mut DbStats,
        end: impl FnMut(P, u64, EndedBy) -> Option<DbCall>,
    ) -> Option<Vec<DbCall>> {
        let end_ns = self.reply_gap.take()?;
        stats.resyncs += 1;
        Some(self.end_all(end_ns, EndedBy::ReplyGap, stats, end))
    }

    /// The client started a new command while the oldest call's reply was being read: having
    /// read that reply whole before writing again, it saw the reply's end, which the parser
    /// missed (a reply it took for longer than it was). The call ends at `end_ns`, the last read;
    /// counted as a desync found and resynced at once, and as an unframed reply.
    pub(crate) fn cut_front(
        &mut self,
        end_ns: u64,
        stats: &mut DbStats,
        mut end: impl FnMut(P, u64, EndedBy) -> Option<DbCall>,
    ) -> Option<DbCall> {
        let p = self.calls.pop_front()?;
        stats.desyncs += 1;
        stats.resyncs += 1;
        let call = end(p, end_ns, EndedBy::ReplyGap)?;
        stats.unframed_replies += 1;
        Some(call)
    }

    /// The connection ended: after a reply gap the calls in flight end at its last read, else
    /// they are unanswered at the last syscall seen.
    pub(crate) fn close(
        &mut self,
        stats: &mut DbStats,
        end: impl FnMut(P, u64, EndedBy) -> Option<DbCall>,
    ) -> Vec<DbCall> {
        match self.reply_gap.take() {
            Some(end_ns) => self.end_all(end_ns, EndedBy::ReplyGap, stats, end),
            None => self.end_all(self.last_end_ns, EndedBy::Close, stats, end),
        }
    }

    /// Ends every call in flight at `end_ns`; each that gives a call after a reply gap is counted
    /// as an unframed reply.
    fn end_all(
        &mut self,
        end_ns: u64,
        by: EndedBy,
        stats: &mut DbStats,
        mut end: impl FnMut(P, u64, EndedBy) -> Option<DbCall>,
    ) -> Vec<DbCall> {
        let calls: Vec<DbCall> = self.calls.drain(..).filter_map(|p| end(p, end_ns, by)).collect();
        if by == EndedBy::ReplyGap {
            stats.unframed_replies += calls.len() as u64;
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call in flight that gives a call unless it is "housekeeping" (odd start).
    fn end(start_ns: u64, end_ns: u64, by: EndedBy) -> Option<DbCall> {
        start_ns.is_multiple_of(2).then(|| DbCall {
            start_ns,
            end_ns,
            system: "test",
            operation: String::new(),
            query_text: None,
            attributes: crate::calls::Attributes::default(),
            error: (by == EndedBy::Close).then(|| "closed".to_string()),
        })
    }

    fn ends(calls: &[DbCall]) -> Vec<(u64, u64, bool)> {
        calls.iter().map(|c| (c.start_ns, c.end_ns, c.error.is_some())).collect()
    }

    #[test]
    fn a_reply_gap_ends_the_calls_at_its_last_read_when_the_client_writes() {
        let mut f = InFlight::new();
        let mut stats = DbStats::default();
        assert!(f.write_after_gap(&mut stats, end).is_none());
        f.push_back(10);
        f.push_back(11);
        f.push_back(12);
        assert!(!f.in_reply_gap(20));
        f.reply_lost(30);
        assert!(f.in_reply_gap(40));
        f.saw(50);
        let calls = f.write_after_gap(&mut stats, end).expect("a gap was open");
        assert_eq!(ends(&calls), [(10, 40, false), (12, 40, false)]);
        assert_eq!((stats.resyncs, stats.unframed_replies), (1, 2));
        assert!(f.is_empty() && f.write_after_gap(&mut stats, end).is_none());
    }

    #[test]
    fn close_ends_a_gap_or_leaves_the_calls_unanswered() {
        let mut f = InFlight::new();
        let mut stats = DbStats::default();
        f.push_back(10);
        f.reply_lost(30);
        f.saw(60);
        assert_eq!(ends(&f.close(&mut stats, end)), [(10, 30, false)]);
        assert_eq!(stats.unframed_replies, 1);
        f.push_back(70);
        f.push_back(71);
        f.saw(90);
        f.saw(80);
        assert_eq!(ends(&f.close(&mut stats, end)), [(70, 90, true)]);
        assert_eq!(stats, DbStats { unframed_replies: 1, ..DbStats::default() });
    }

    #[test]
    fn a_new_command_cuts_the_reply_being_read() {
        let mut f = InFlight::new();
        let mut stats = DbStats::default();
        f.push_back(11);
        f.push_back(12);
        assert!(f.cut_front(20, &mut stats, end).is_none());
        assert_eq!(ends(&[f.cut_front(30, &mut stats, end).expect("gives a call")]), [(12, 30, false)]);
        assert!(f.cut_front(40, &mut stats, end).is_none());
        let (d, r, u) = (stats.desyncs, stats.resyncs, stats.unframed_replies);
        assert_eq!((d, r, u), (2, 2, 1));
    }
}
