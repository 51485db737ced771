//! One connection's state machine: the batch being written, batches in flight paired first in,
//! first out with their replies, and what happens when either side's framing is lost.
use serde_json::json;

use super::attributes::{make_call, Batch};
use super::commands::Command;
use super::replies::{RepState, Replies};
use super::requests::{looks_like_request, ReqState, Requests};
use super::SYSTEM;
use crate::calls::{Call, ClientProtocol, DbCall};
use crate::db::in_flight::{EndedBy, InFlight};
use crate::db::{clamp, DbStats, Piece};
use crate::spans::semconv;

/// Commands in flight remembered; beyond that the connection is given up on.
const MAX_INFLIGHT: usize = 100_000;

/// One Redis client connection: feed it the client's writes and reads in order.
#[derive(Debug)]
pub struct RedisConnection {
    requests: Requests,
    replies: Replies,
    /// Commands written since the last read: the batch being written.
    writing: Vec<Command>,
    /// Batches written, oldest first, waiting for their replies.
    inflight: InFlight<Batch>,
    stats: DbStats,
}

impl Default for RedisConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisConnection {
    pub fn new() -> Self {
        RedisConnection {
            requests: Requests::new(),
            replies: Replies::new(),
            writing: Vec::new(),
            inflight: InFlight::new(),
            stats: DbStats::default(),
        }
    }

    /// Commands written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.writing.len() + self.inflight.iter().map(|b| b.commands.len() - b.errors.len()).sum::<usize>()
    }

    /// What the client wrote.
    pub fn on_write(&mut self, p: &Piece) -> Vec<DbCall> {
        let p = &clamp(p);
        self.inflight.saw(p.end_ns);
        let mut calls = Vec::new();
        if self.stats.given_up {
            return calls;
        }
        if let Some(cut) = self.inflight.write_after_gap(&mut self.stats, |b, end_ns, by| Some(ended(b, end_ns, by))) {
            calls = cut;
            self.replies = Replies::new();
        }
        if matches!(self.requests.state, ReqState::Lost) {
            if !looks_like_request(p.data) {
                return calls;
            }
            self.requests = Requests::new();
            self.stats.resyncs += 1;
        }
        let mut cmds = Vec::new();
        let ok = self.requests.feed(p, &mut cmds);
        self.writing.extend(cmds);
        if !ok {
            // The rest of the write was not captured (or is not RESP). A command whose name was
            // seen is taken as written whole; the next write that looks like a request resyncs.
            self.stats.desyncs += 1;
            if let Some(c) = self.requests.partial() {
                self.stats.unframed_requests += 1;
                self.writing.push(c);
            }
            self.requests.state = ReqState::Lost;
        }
        if self.in_flight() > MAX_INFLIGHT {
            self.stats.calls_lost += self.in_flight() as u64;
            self.writing.clear();
            self.inflight.clear();
            self.stats.given_up = true;
        }
        calls
    }

    /// What the client read.
    pub fn on_read(&mut self, p: &Piece) -> Vec<DbCall> {
        let p = &clamp(p);
        self.inflight.saw(p.end_ns);
        let mut calls = Vec::new();
        if self.stats.given_up {
            return calls;
        }
        self.close_batch();
        if matches!(self.replies.state, RepState::Lost) {
            if self.inflight.in_reply_gap(p.end_ns) {
                return calls;
            }
            // Resync on a read that starts with a reply's type byte once commands were written
            // after the loss (everything in flight before it was dropped): a synchronous client
            // reads a reply whole before it writes again, so that read starts a fresh reply.
            if self.inflight.is_empty() || !p.data.first().is_some_and(|c| b"+-:$*_,#!=(%~>|".contains(c)) {
                return calls;
            }
            self.replies = Replies::new();
            self.stats.resyncs += 1;
        }
        let mut replies = Vec::new();
        let ok = self.replies.feed(p, &mut replies);
        for r in replies {
            let Some(b) = self.inflight.front_mut() else {
                self.stats.unmatched_replies += 1;
                continue;
            };
            b.errors.push(r.error);
            if b.errors.len() == b.commands.len() {
                let b = self.inflight.pop_front().expect("front exists");
                calls.push(make_call(b, r.end_ns));
            }
        }
        if !ok {
            // What is in flight ends at the last read before the client writes again.
            self.stats.desyncs += 1;
            self.inflight.reply_lost(p.end_ns);
        }
        calls
    }

    /// The connection ended: commands still waiting for replies are returned with an error.
    pub fn on_close(&mut self) -> Vec<DbCall> {
        self.close_batch();
        self.inflight.close(&mut self.stats, |b, end_ns, by| Some(ended(b, end_ns, by)))
    }

    /// A read ends the batch being written.
    fn close_batch(&mut self) {
        if !self.writing.is_empty() {
            let commands = std::mem::take(&mut self.writing);
            self.inflight.push_back(Batch { errors: Vec::with_capacity(commands.len()), commands });
        }
    }
}

/// What a batch in flight becomes when it ends before its replies were read to the end: a call
/// with the errors seen so far, after a reply gap; an unanswered one at close.
fn ended(mut b: Batch, end_ns: u64, by: EndedBy) -> DbCall {
    while b.errors.len() < b.commands.len() {
        b.errors.push(None);
    }
    let mut c = make_call(b, end_ns);
    if by == EndedBy::Close {
        c.error = Some("connection closed before the reply".into());
        c.attributes.insert(semconv::ERROR_TYPE.into(), json!("connection_closed"));
    }
    c
}

impl ClientProtocol for RedisConnection {
    fn on_write(&mut self, p: &Piece) -> Vec<Call> {
        RedisConnection::on_write(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_read(&mut self, p: &Piece) -> Vec<Call> {
        RedisConnection::on_read(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_close(&mut self) -> Vec<Call> {
        RedisConnection::on_close(self).into_iter().map(Call::Db).collect()
    }

    fn stats(&self) -> &DbStats {
        &self.stats
    }

    fn protocol(&self) -> &'static str {
        SYSTEM
    }
}
