//! One connection's state machine: the batch being written, batches in flight paired first in,
//! first out with their replies, and what happens when either side's framing is lost.
use std::collections::VecDeque;

use serde_json::json;

use super::attributes::{make_call, Batch};
use super::commands::Command;
use super::replies::{RepState, Replies};
use super::requests::{looks_like_request, ReqState, Requests};
use super::SYSTEM;
use crate::calls::{Call, ClientProtocol, DbCall};
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
    inflight: VecDeque<Batch>,
    last_end_ns: u64,
    /// A reply's framing was lost inside a read (an element header beyond the capture): the exit
    /// of the last read since. What is in flight ends there when the client writes again, which
    /// a client waiting for its replies only does once it has read them.
    reply_gap: Option<u64>,
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
            inflight: VecDeque::new(),
            last_end_ns: 0,
            reply_gap: None,
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
        self.last_end_ns = self.last_end_ns.max(p.end_ns);
        let mut calls = Vec::new();
        if self.stats.given_up {
            return calls;
        }
        if let Some(end) = self.reply_gap.take() {
            calls = self.finish_in_flight(end);
            self.replies = Replies::new();
            self.stats.resyncs += 1;
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
        self.last_end_ns = self.last_end_ns.max(p.end_ns);
        let mut calls = Vec::new();
        if self.stats.given_up {
            return calls;
        }
        self.close_batch();
        if matches!(self.replies.state, RepState::Lost) {
            if self.reply_gap.is_some() {
                self.reply_gap = Some(p.end_ns);
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
            self.stats.desyncs += 1;
            self.reply_gap = Some(p.end_ns);
        }
        calls
    }

    /// The connection ended: commands still waiting for replies are returned with an error.
    pub fn on_close(&mut self) -> Vec<DbCall> {
        self.close_batch();
        if let Some(end) = self.reply_gap.take() {
            return self.finish_in_flight(end);
        }
        let end = self.last_end_ns;
        self.inflight
            .drain(..)
            .map(|mut b| {
                while b.errors.len() < b.commands.len() {
                    b.errors.push(None);
                }
                let mut c = make_call(b, end);
                c.error = Some("connection closed before the reply".into());
                c.attributes.insert(semconv::ERROR_TYPE.into(), json!("connection_closed"));
                c
            })
            .collect()
    }

    /// A read ends the batch being written.
    fn close_batch(&mut self) {
        if !self.writing.is_empty() {
            let commands = std::mem::take(&mut self.writing);
            self.inflight.push_back(Batch { errors: Vec::with_capacity(commands.len()), commands });
        }
    }

    /// Ends every batch in flight at `end_ns` (their replies could not be followed to the end);
    /// errors seen before the gap are kept.
    fn finish_in_flight(&mut self, end_ns: u64) -> Vec<DbCall> {
        let calls: Vec<DbCall> = self
            .inflight
            .drain(..)
            .map(|mut b| {
                while b.errors.len() < b.commands.len() {
                    b.errors.push(None);
                }
                make_call(b, end_ns)
            })
            .collect();
        self.stats.unframed_replies += calls.len() as u64;
        calls
    }
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
