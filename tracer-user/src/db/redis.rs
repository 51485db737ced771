//! Redis's RESP (2 and 3), from the client's side.
//!
//! Requests are arrays of bulk strings (or inline commands, a line of words). Only the command
//! name (and the subcommand of container commands such as `CLIENT SETINFO`) and the argument
//! count are kept: never keys or values. Replies are skipped by their declared lengths, nested
//! aggregates included; only an error reply's first line is kept.
//!
//! Pairing: Redis answers commands in order, so commands and replies pair first in, first out.
//! Commands written together, with no read in between (a pipeline), make one call, answered when
//! the last of their replies has been read; a single command is a call of its own. RESP3 push
//! messages (`>`) and attributes (`|`) are not replies and pair with nothing.
use std::collections::VecDeque;

use serde_json::json;

use super::{base_attributes, clamp, truncate, Call, DbStats, Piece, MAX_QUERY_TEXT};

/// `db.system.name`.
pub const SYSTEM: &str = "redis";

/// Longest line kept (array and bulk headers, inline commands, simple strings and errors).
const MAX_LINE: usize = 4096;
/// Bytes kept of a command's name and subcommand.
const MAX_NAME: usize = 64;
/// Deepest nesting of reply aggregates followed.
const MAX_DEPTH: usize = 64;
/// Largest element count or bulk length believed (Redis's own limit on a bulk is 512 MB).
const MAX_COUNT: i64 = 1 << 32;
/// Commands in flight remembered; beyond that the connection is given up on.
const MAX_INFLIGHT: usize = 100_000;

/// Commands whose first argument is a subcommand: `CLIENT SETINFO`, `CONFIG GET`, ...
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT",
    "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Where a command's keys are, counted in arguments after the command name.
#[derive(Clone, Copy)]
enum Keys {
    /// No key.
    None,
    /// Exactly one key (the first argument).
    One,
    /// Every argument is a key.
    All,
    /// Every argument but the last (a timeout, or a destination).
    AllButLast,
    /// Every other argument, from the first (key value key value ...).
    Pairs,
    /// `n` arguments are keys.
    Fixed(usize),
    /// A numkeys argument at this index (0-based among the arguments) says how many keys follow.
    NumKeysAt(usize),
}

/// Key positions of common commands. Unknown commands have no key count.
const KEY_TABLE: &[(&str, Keys)] = &[
    ("GET", Keys::One),
    ("SET", Keys::One),
    ("SETNX", Keys::One),
    ("SETEX", Keys::One),
    ("PSETEX", Keys::One),
    ("GETSET", Keys::One),
    ("GETDEL", Keys::One),
    ("GETEX", Keys::One),
    ("APPEND", Keys::One),
    ("STRLEN", Keys::One),
    ("INCR", Keys::One),
    ("INCRBY", Keys::One),
    ("INCRBYFLOAT", Keys::One),
    ("DECR", Keys::One),
    ("DECRBY", Keys::One),
    ("DEL", Keys::All),
    ("UNLINK", Keys::All),
    ("EXISTS", Keys::All),
    ("TOUCH", Keys::All),
    ("WATCH", Keys::All),
    ("MGET", Keys::All),
    ("MSET", Keys::Pairs),
    ("MSETNX", Keys::Pairs),
    ("EXPIRE", Keys::One),
    ("PEXPIRE", Keys::One),
    ("EXPIREAT", Keys::One),
    ("PEXPIREAT", Keys::One),
    ("PERSIST", Keys::One),
    ("TTL", Keys::One),
    ("PTTL", Keys::One),
    ("TYPE", Keys::One),
    ("RENAME", Keys::Fixed(2)),
    ("RENAMENX", Keys::Fixed(2)),
    ("COPY", Keys::Fixed(2)),
    ("HGET", Keys::One),
    ("HSET", Keys::One),
    ("HSETNX", Keys::One),
    ("HMSET", Keys::One),
    ("HMGET", Keys::One),
    ("HDEL", Keys::One),
    ("HGETALL", Keys::One),
    ("HEXISTS", Keys::One),
    ("HINCRBY", Keys::One),
    ("HKEYS", Keys::One),
    ("HVALS", Keys::One),
    ("HLEN", Keys::One),
    ("LPUSH", Keys::One),
    ("RPUSH", Keys::One),
    ("LPOP", Keys::One),
    ("RPOP", Keys::One),
    ("LRANGE", Keys::One),
    ("LLEN", Keys::One),
    ("LINDEX", Keys::One),
    ("LREM", Keys::One),
    ("LTRIM", Keys::One),
    ("BLPOP", Keys::AllButLast),
    ("BRPOP", Keys::AllButLast),
    ("RPOPLPUSH", Keys::Fixed(2)),
    ("LMOVE", Keys::Fixed(2)),
    ("SADD", Keys::One),
    ("SREM", Keys::One),
    ("SMEMBERS", Keys::One),
    ("SISMEMBER", Keys::One),
    ("SCARD", Keys::One),
    ("SPOP", Keys::One),
    ("SINTER", Keys::All),
    ("SUNION", Keys::All),
    ("SDIFF", Keys::All),
    ("ZADD", Keys::One),
    ("ZREM", Keys::One),
    ("ZSCORE", Keys::One),
    ("ZINCRBY", Keys::One),
    ("ZCARD", Keys::One),
    ("ZRANGE", Keys::One),
    ("ZRANGEBYSCORE", Keys::One),
    ("ZREVRANGE", Keys::One),
    ("ZRANK", Keys::One),
    ("XADD", Keys::One),
    ("XLEN", Keys::One),
    ("XRANGE", Keys::One),
    ("PFADD", Keys::One),
    ("PFCOUNT", Keys::All),
    ("EVAL", Keys::NumKeysAt(1)),
    ("EVALSHA", Keys::NumKeysAt(1)),
    ("FCALL", Keys::NumKeysAt(1)),
    ("PING", Keys::None),
    ("ECHO", Keys::None),
    ("HELLO", Keys::None),
    ("AUTH", Keys::None),
    ("SELECT", Keys::None),
    ("INFO", Keys::None),
    ("DBSIZE", Keys::None),
    ("FLUSHDB", Keys::None),
    ("FLUSHALL", Keys::None),
    ("MULTI", Keys::None),
    ("EXEC", Keys::None),
    ("DISCARD", Keys::None),
    ("UNWATCH", Keys::None),
    ("QUIT", Keys::None),
    ("PUBLISH", Keys::None),
];

/// How many keys a command with `argc` elements (name included) names; None when unknown.
pub fn key_count(command: &str, argc: usize, numkeys: Option<u64>) -> Option<u64> {
    let (_, keys) = KEY_TABLE.iter().find(|(name, _)| *name == command)?;
    let args = argc.saturating_sub(1) as u64;
    Some(match *keys {
        Keys::None => 0,
        Keys::One => args.min(1),
        Keys::All => args,
        Keys::AllButLast => args.saturating_sub(1),
        Keys::Pairs => args / 2,
        Keys::Fixed(n) => args.min(n as u64),
        Keys::NumKeysAt(_) => numkeys?.min(args),
    })
}

/// True for the first bytes of a RESP request: `*<count>\r\n$`, or an inline command of a few
/// connection-level words (`PING`, `HELLO`, ...) that is not an HTTP request line.
pub fn looks_like_request(b: &[u8]) -> bool {
    if let Some(rest) = b.strip_prefix(b"*") {
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 10 {
            return false;
        }
        let after = &rest[digits..];
        return match after.len() {
            0 => true,
            1 => after == b"\r",
            2 => after == b"\r\n",
            _ => after.starts_with(b"\r\n$"),
        };
    }
    let line_end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..line_end];
    if line.windows(5).any(|w| w == b"HTTP/") {
        return false;
    }
    let word = line.split(|c| *c == b' ' || *c == b'\r').next().unwrap_or(b"");
    let word = String::from_utf8_lossy(word).to_ascii_uppercase();
    matches!(word.as_str(), "PING" | "HELLO" | "AUTH" | "SELECT" | "INFO" | "QUIT" | "ECHO")
        && (line_end < b.len() || line.len() > word.len())
}

/// A command as written: its name, subcommand for containers, and argument count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    /// Upper-case; `CLIENT SETINFO` for container commands.
    name: String,
    argc: usize,
    keys: Option<u64>,
    start_ns: u64,
}

#[derive(Debug)]
enum ReqState {
    /// Waiting for an array header (`*N`) or an inline command line.
    Start,
    /// Reading a line: inline command (`inline`) or an array / bulk header.
    Line {
        buf: Vec<u8>,
        inline: bool,
    },
    /// Waiting for element `i` of `argc`: its bulk header line.
    BulkHeader {
        buf: Vec<u8>,
    },
    /// Inside element `i`'s bytes (and its CRLF).
    BulkBody {
        remaining: u64,
        keep: bool,
    },
    Lost,
}

/// The request side: commands as they are written.
#[derive(Debug)]
struct Requests {
    state: ReqState,
    /// The command being read: argc, elements kept (name, subcommand, numkeys), elements seen.
    argc: usize,
    seen: usize,
    elems: Vec<Vec<u8>>,
    start_ns: u64,
}

impl Requests {
    fn new() -> Self {
        Requests { state: ReqState::Start, argc: 0, seen: 0, elems: Vec::new(), start_ns: 0 }
    }

    /// Which element indexes are kept: the name, a container's subcommand, and EVAL's numkeys.
    fn keeps(&self, i: usize) -> bool {
        i < 3
    }

    /// The command being read when the framing was lost, if its name was seen.
    fn partial(&mut self) -> Option<Command> {
        let named = self.argc > 0 && self.elems.first().is_some_and(|e| !e.is_empty());
        named.then(|| self.finish())
    }

    fn finish(&mut self) -> Command {
        let elems = std::mem::take(&mut self.elems);
        let word = |i: usize| elems.get(i).map(|e| String::from_utf8_lossy(e).to_ascii_uppercase());
        let mut name = word(0).unwrap_or_default();
        if CONTAINERS.contains(&name.as_str()) {
            if let Some(sub) = word(1).filter(|s| !s.is_empty()) {
                name = format!("{name} {sub}");
            }
        }
        let numkeys = KEY_TABLE.iter().find(|(n, _)| *n == name).and_then(|(_, k)| match k {
            Keys::NumKeysAt(i) => word(*i + 1).and_then(|w| w.parse().ok()),
            _ => None,
        });
        let keys = key_count(&name, self.argc, numkeys);
        self.state = ReqState::Start;
        self.seen = 0;
        Command { name, argc: self.argc, keys, start_ns: self.start_ns }
    }

    /// Feeds a written piece; completed commands go to `out`. False when the framing was lost.
    fn feed(&mut self, p: &Piece, out: &mut Vec<Command>) -> bool {
        let mut pos = 0u64;
        while pos < p.len {
            match &mut self.state {
                ReqState::Lost => return false,
                ReqState::Start => {
                    let Some(&c) = p.data.get(pos as usize) else {
                        self.state = ReqState::Lost;
                        return false;
                    };
                    self.start_ns = p.start_ns;
                    self.elems.clear();
                    self.seen = 0;
                    if c == b'*' {
                        pos += 1;
                        self.state = ReqState::Line { buf: Vec::new(), inline: false };
                    } else if c == b'\r' || c == b'\n' {
                        // Stray line ends between inline commands.
                        pos += 1;
                    } else {
                        self.state = ReqState::Line { buf: Vec::new(), inline: true };
                    }
                }
                ReqState::Line { buf, inline } => {
                    let inline = *inline;
                    match read_line(p, &mut pos, buf) {
                        LineRead::More => {}
                        LineRead::Lost => {
                            self.state = ReqState::Lost;
                            return false;
                        }
                        LineRead::Done(line) => {
                            if inline {
                                let words: Vec<&[u8]> =
                                    line.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty()).collect();
                                if words.is_empty() {
                                    self.state = ReqState::Start;
                                    continue;
                                }
                                self.argc = words.len();
                                self.elems =
                                    words.iter().take(3).map(|w| w[..w.len().min(MAX_NAME)].to_vec()).collect();
                                out.push(self.finish());
                            } else {
                                match parse_int(&line) {
                                    Some(n) if (1..=MAX_COUNT).contains(&n) => {
                                        self.argc = n as usize;
                                        self.state = ReqState::BulkHeader { buf: Vec::new() };
                                    }
                                    // `*0` or `*-1`: nothing to run.
                                    Some(n) if n <= 0 => self.state = ReqState::Start,
                                    _ => {
                                        self.state = ReqState::Lost;
                                        return false;
                                    }
                                }
                            }
                        }
                    }
                }
                ReqState::BulkHeader { buf } => match read_line(p, &mut pos, buf) {
                    LineRead::More => {}
                    LineRead::Done(line) if line.first() == Some(&b'$') => match parse_int(&line[1..]) {
                        Some(n) if (0..=MAX_COUNT).contains(&n) => {
                            let keep = self.keeps(self.seen);
                            if keep {
                                self.elems.push(Vec::new());
                            }
                            self.state = ReqState::BulkBody { remaining: n as u64 + 2, keep };
                        }
                        _ => {
                            self.state = ReqState::Lost;
                            return false;
                        }
                    },
                    _ => {
                        self.state = ReqState::Lost;
                        return false;
                    }
                },
                ReqState::BulkBody { remaining, keep } => {
                    let n = (*remaining).min(p.len - pos);
                    if *keep {
                        let e = self.elems.last_mut().expect("pushed with the header");
                        let at = pos as usize;
                        // The element's bytes, not its CRLF; keep up to MAX_NAME.
                        let content = n.min(remaining.saturating_sub(2)) as usize;
                        let captured = p.data.len().saturating_sub(at).min(content);
                        let take = captured.min(MAX_NAME.saturating_sub(e.len()));
                        e.extend_from_slice(&p.data[at..at + take]);
                    }
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        self.seen += 1;
                        if self.seen == self.argc {
                            out.push(self.finish());
                        } else {
                            self.state = ReqState::BulkHeader { buf: Vec::new() };
                        }
                    }
                }
            }
        }
        true
    }
}

enum LineRead {
    /// The piece ended before the line did.
    More,
    /// The line, without its CRLF (or LF).
    Done(Vec<u8>),
    /// The line's bytes were not captured, or it is too long.
    Lost,
}

/// Reads up to and including the next `\n` from `p` at `*pos`, accumulating in `buf`.
fn read_line(p: &Piece, pos: &mut u64, buf: &mut Vec<u8>) -> LineRead {
    let at = *pos as usize;
    if at >= p.data.len() {
        *pos = p.len;
        return LineRead::Lost;
    }
    let avail = &p.data[at..];
    if let Some(i) = avail.iter().position(|&c| c == b'\n') {
        buf.extend_from_slice(&avail[..i]);
        *pos += i as u64 + 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.len() > MAX_LINE {
            buf.truncate(MAX_LINE);
        }
        LineRead::Done(std::mem::take(buf))
    } else {
        buf.extend_from_slice(avail);
        *pos += avail.len() as u64;
        if buf.len() > MAX_LINE * 16 {
            return LineRead::Lost;
        }
        if (*pos) < p.len {
            // The rest of the line was not captured.
            return LineRead::Lost;
        }
        LineRead::More
    }
}

fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// One complete top-level reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    /// The error line of `-ERR ...` or `!<len>` bulk errors.
    error: Option<String>,
    end_ns: u64,
}

#[derive(Debug)]
enum RepState {
    /// At a value's type byte (or inside its header line).
    Value {
        buf: Vec<u8>,
    },
    /// Inside a bulk value's bytes and CRLF; `keep` for bulk errors.
    Bulk {
        remaining: u64,
        keep: Option<Vec<u8>>,
    },
    Lost,
}

/// What a top-level value is, to decide whether it pairs with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopKind {
    Reply,
    Push,
    Attribute,
}

/// The reply side: complete top-level replies as they are read.
#[derive(Debug)]
struct Replies {
    state: RepState,
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
    top: TopKind,
    error: Option<String>,
}

impl Replies {
    fn new() -> Self {
        Replies { state: RepState::Value { buf: Vec::new() }, stack: Vec::new(), top: TopKind::Reply, error: None }
    }

    /// A value ended: pop finished aggregates; a finished top-level value is a reply (unless it
    /// was a push or an attribute).
    fn value_done(&mut self, end_ns: u64, out: &mut Vec<Reply>) {
        while let Some(top) = self.stack.last_mut() {
            *top -= 1;
            if *top > 0 {
                return;
            }
            self.stack.pop();
        }
        if self.top == TopKind::Reply {
            out.push(Reply { error: self.error.take(), end_ns });
        }
        self.error = None;
        self.top = TopKind::Reply;
    }

    fn feed(&mut self, p: &Piece, out: &mut Vec<Reply>) -> bool {
        let mut pos = 0u64;
        while pos < p.len {
            match &mut self.state {
                RepState::Lost => return false,
                RepState::Value { buf } => {
                    let line = match read_line(p, &mut pos, buf) {
                        LineRead::More => continue,
                        LineRead::Lost => {
                            self.state = RepState::Lost;
                            return false;
                        }
                        LineRead::Done(l) => l,
                    };
                    let Some((&ty, rest)) = line.split_first() else {
                        self.state = RepState::Lost;
                        return false;
                    };
                    let at_top = self.stack.is_empty();
                    let n = match ty {
                        b'+' | b':' | b',' | b'#' | b'(' | b'_' => {
                            self.value_done(p.end_ns, out);
                            continue;
                        }
                        b'-' => {
                            if at_top {
                                self.error = Some(String::from_utf8_lossy(rest).into_owned());
                            }
                            self.value_done(p.end_ns, out);
                            continue;
                        }
                        b'$' | b'*' | b'%' | b'~' | b'>' | b'|' | b'!' | b'=' => match parse_int(rest) {
                            Some(n) if n <= MAX_COUNT => n,
                            _ => {
                                self.state = RepState::Lost;
                                return false;
                            }
                        },
                        _ => {
                            self.state = RepState::Lost;
                            return false;
                        }
                    };
                    match ty {
                        b'$' | b'!' | b'=' if n < 0 => self.value_done(p.end_ns, out),
                        b'$' | b'!' | b'=' => {
                            let keep = (ty == b'!' && at_top).then(Vec::new);
                            self.state = RepState::Bulk { remaining: n as u64 + 2, keep };
                        }
                        _ if n <= 0 => self.value_done(p.end_ns, out),
                        _ => {
                            if self.stack.len() >= MAX_DEPTH {
                                self.state = RepState::Lost;
                                return false;
                            }
                            if at_top {
                                self.top = match ty {
                                    b'>' => TopKind::Push,
                                    b'|' => TopKind::Attribute,
                                    _ => TopKind::Reply,
                                };
                            }
                            let elems = if matches!(ty, b'%' | b'|') { n as u64 * 2 } else { n as u64 };
                            self.stack.push(elems);
                        }
                    }
                }
                RepState::Bulk { remaining, keep } => {
                    let n = (*remaining).min(p.len - pos);
                    if let Some(k) = keep {
                        let at = pos as usize;
                        let content = n.min(remaining.saturating_sub(2)) as usize;
                        let captured = p.data.len().saturating_sub(at).min(content);
                        let take = captured.min(MAX_LINE.saturating_sub(k.len()));
                        k.extend_from_slice(&p.data[at..at + take]);
                    }
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        if let Some(k) = keep.take() {
                            self.error = Some(String::from_utf8_lossy(&k).into_owned());
                        }
                        self.state = RepState::Value { buf: Vec::new() };
                        self.value_done(p.end_ns, out);
                    }
                }
            }
        }
        true
    }
}

/// Commands written together (no read in between): one call.
#[derive(Debug)]
struct Batch {
    commands: Vec<Command>,
    /// Replies received so far, in order.
    errors: Vec<Option<String>>,
}

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

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// Commands written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.writing.len() + self.inflight.iter().map(|b| b.commands.len() - b.errors.len()).sum::<usize>()
    }

    /// What the client wrote.
    pub fn on_write(&mut self, p: &Piece) -> Vec<Call> {
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
    pub fn on_read(&mut self, p: &Piece) -> Vec<Call> {
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
    pub fn on_close(&mut self) -> Vec<Call> {
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
                c.attributes.insert("error.type".into(), json!("connection_closed"));
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
    fn finish_in_flight(&mut self, end_ns: u64) -> Vec<Call> {
        let calls: Vec<Call> = self
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

fn make_call(b: Batch, end_ns: u64) -> Call {
    let single = b.commands.len() == 1;
    let first = &b.commands[0];
    let operation = if single {
        first.name.clone()
    } else if b.commands.iter().all(|c| c.name == first.name) {
        format!("BATCH {}", first.name)
    } else {
        "BATCH".to_string()
    };
    let text: Vec<String> = b
        .commands
        .iter()
        .map(|c| {
            let words = c.name.split(' ').count();
            let mut s = c.name.clone();
            for _ in words..c.argc.min(64) {
                s.push_str(" ?");
            }
            s
        })
        .collect();
    let query_text = truncate(text.join("; "), MAX_QUERY_TEXT);
    let mut attributes = base_attributes(SYSTEM, &operation, Some(&query_text));
    if !single {
        attributes.insert("db.operation.batch.size".into(), json!(b.commands.len()));
    }
    let keys: Option<u64> = b.commands.iter().map(|c| c.keys).sum();
    if let Some(k) = keys {
        attributes.insert("db.redis.key_count".into(), json!(k));
    }
    // The first error of the batch is the call's.
    let error = b.errors.into_iter().flatten().next();
    if let Some(e) = &error {
        // The error's prefix, by convention its kind: ERR, WRONGTYPE, NOSCRIPT, ...
        let code = e.split(' ').next().unwrap_or("ERR").to_string();
        attributes.insert("db.response.status_code".into(), json!(code));
        attributes.insert("error.type".into(), json!(code));
    }
    Call {
        start_ns: first.start_ns,
        end_ns,
        system: SYSTEM,
        operation,
        query_text: Some(query_text),
        attributes,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn session() -> Vec<Sys> {
        vec![
            full(W, REDIS_HELLO),
            full(R, REDIS_HELLO_REPLY),
            full(W, REDIS_MAINT),
            full(R, REDIS_MAINT_REPLY),
            full(W, REDIS_SETINFO_NAME),
            full(R, REDIS_SETINFO_NAME_REPLY),
            full(W, REDIS_SETINFO_VER),
            full(R, REDIS_SETINFO_VER_REPLY),
            full(W, REDIS_SET),
            full(R, REDIS_SET_REPLY),
            full(W, REDIS_GET),
            full(R, REDIS_GET_REPLY),
            full(W, REDIS_GET_MISSING),
            full(R, REDIS_GET_MISSING_REPLY),
            full(W, REDIS_PIPELINE),
            full(R, REDIS_PIPELINE_REPLY),
            full(W, REDIS_HSET),
            full(R, REDIS_HSET_REPLY),
            full(W, REDIS_MGET),
            full(R, REDIS_MGET_REPLY),
            full(W, REDIS_LPUSH),
            full(R, REDIS_LPUSH_REPLY),
            full(W, REDIS_SET_BIG_HEAD),
            (W, REDIS_SET_BIG_VALUE, REDIS_SET_BIG_VALUE_LEN),
            full(W, REDIS_SET_BIG_CRLF),
            full(R, REDIS_SET_BIG_REPLY),
            full(W, REDIS_GET_BIG),
            (R, REDIS_GET_BIG_REPLY, REDIS_GET_BIG_REPLY_LEN),
            full(W, REDIS_DEL),
            full(R, REDIS_DEL_REPLY),
        ]
    }

    fn feed(c: &mut RedisConnection, d: Dir, p: &Piece) -> Vec<Call> {
        match d {
            W => c.on_write(p),
            R => c.on_read(p),
        }
    }

    fn run(c: &mut RedisConnection, script: &[Sys]) -> Vec<Call> {
        let mut calls = Vec::new();
        for (i, &(d, data, len)) in script.iter().enumerate() {
            let t = 100 * i as u64;
            calls.extend(feed(c, d, &Piece { data, len, start_ns: t, end_ns: t + 50 }));
        }
        calls.extend(c.on_close());
        calls
    }

    fn run_bytewise(c: &mut RedisConnection, script: &[Sys]) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut t = 0;
        for &(d, data, len) in script {
            for b in data.chunks(1) {
                t += 10;
                calls.extend(feed(c, d, &Piece { data: b, len: 1, start_ns: t, end_ns: t + 5 }));
            }
            if len > data.len() as u64 {
                t += 10;
                calls.extend(feed(
                    c,
                    d,
                    &Piece { data: &[], len: len - data.len() as u64, start_ns: t, end_ns: t + 5 },
                ));
            }
        }
        calls.extend(c.on_close());
        calls
    }

    /// (operation, query text, key count, error) of each call.
    fn summary(calls: &[Call]) -> Vec<(String, String, Option<u64>, Option<String>)> {
        calls
            .iter()
            .map(|c| {
                let keys = c.attributes.get("db.redis.key_count").and_then(serde_json::Value::as_u64);
                (c.operation.clone(), c.query_text.clone().unwrap_or_default(), keys, c.error.clone())
            })
            .collect()
    }

    fn expected() -> Vec<(String, String, Option<u64>, Option<String>)> {
        let ok = |op: &str, text: &str, keys: Option<u64>| (op.to_string(), text.to_string(), keys, None);
        let err = |op: &str, text: &str, e: &str| (op.to_string(), text.to_string(), None, Some(e.to_string()));
        vec![
            ok("HELLO", "HELLO ?", Some(0)),
            err(
                "CLIENT MAINT_NOTIFICATIONS",
                "CLIENT MAINT_NOTIFICATIONS ? ? ?",
                "ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.",
            ),
            err("CLIENT SETINFO", "CLIENT SETINFO ? ?", "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."),
            err("CLIENT SETINFO", "CLIENT SETINFO ? ?", "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."),
            ok("SET", "SET ? ? ? ?", Some(1)),
            ok("GET", "GET ?", Some(1)),
            ok("GET", "GET ?", Some(1)),
            ok("BATCH", "INCRBY ? ?; EXPIRE ? ?", Some(2)),
            ok("HSET", "HSET ? ? ? ? ?", Some(1)),
            ok("MGET", "MGET ? ? ?", Some(3)),
            (
                "LPUSH".to_string(),
                "LPUSH ? ?".to_string(),
                Some(1),
                Some("WRONGTYPE Operation against a key holding the wrong kind of value".to_string()),
            ),
            ok("SET", "SET ? ?", Some(1)),
            ok("GET", "GET ?", Some(1)),
            ok("DEL", "DEL ? ?", Some(2)),
        ]
    }

    #[test]
    fn captured_session_gives_one_call_per_command_or_pipeline() {
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &session());
        assert_eq!(summary(&calls), expected());
        assert_eq!(c.stats(), &DbStats::default());
        let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
        assert_eq!(
            times,
            [
                (0, 150),
                (200, 350),
                (400, 550),
                (600, 750),
                (800, 950),
                (1000, 1150),
                (1200, 1350),
                (1400, 1550),
                (1600, 1750),
                (1800, 1950),
                (2000, 2150),
                (2200, 2550),
                (2600, 2750),
                (2800, 2950)
            ]
        );
        assert_eq!(
            serde_json::Value::Object(calls[7].attributes.clone()),
            serde_json::json!({
                "db.system.name": "redis",
                "db.operation.name": "BATCH",
                "db.query.text": "INCRBY ? ?; EXPIRE ? ?",
                "db.operation.batch.size": 2,
                "db.redis.key_count": 2,
            })
        );
        assert_eq!(calls[10].attributes["db.response.status_code"], "WRONGTYPE");
        assert_eq!(calls[10].attributes["error.type"], "WRONGTYPE");
        assert_eq!(calls[1].attributes["error.type"], "ERR");
        assert_eq!(calls[0].system, "redis");
        // Never a value or a key in what is exported.
        let all = format!("{calls:?}");
        for secret in ["apple", "item:1", "hits:1", "yyyy", "redis-py", "8.1.0"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }

    #[test]
    fn one_byte_pieces_give_the_same_calls() {
        let mut c = RedisConnection::new();
        let calls = run_bytewise(&mut c, &session());
        assert_eq!(summary(&calls), expected());
        assert_eq!(c.stats(), &DbStats::default());
    }

    #[test]
    fn pipelined_commands_written_in_pieces_pair_with_replies_in_order() {
        // A pipeline written in two writes (no read between them), replies in three reads.
        let script = vec![
            full(W, REDIS_SET),
            full(W, REDIS_GET),
            full(R, b"+OK\r\n$5\r"),
            full(R, b"\nap"),
            full(R, b"ple\r\n"),
            full(W, REDIS_GET_MISSING),
            full(R, REDIS_GET_MISSING_REPLY),
        ];
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &script);
        let ops: Vec<(&str, u64, u64)> = calls.iter().map(|c| (c.operation.as_str(), c.start_ns, c.end_ns)).collect();
        assert_eq!(ops, [("BATCH", 0, 450), ("GET", 500, 650)]);
        assert_eq!(calls[0].query_text.as_deref(), Some("SET ? ? ? ?; GET ?"));
        assert_eq!(calls[0].attributes["db.operation.batch.size"], 2);
    }

    #[test]
    fn resp3_pushes_and_attributes_pair_with_nothing() {
        let script = vec![
            full(W, REDIS_GET),
            // An attribute before the reply, a push message, then the reply itself.
            full(
                R,
                b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            ),
            full(R, b"*2\r\n%1\r\n+k\r\n~1\r\n#t\r\n!21\r\nSYNTAX invalid syntax\r\n"),
            full(W, REDIS_GET),
            full(R, b"!21\r\nSYNTAX invalid syntax\r\n"),
        ];
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &script);
        let s = summary(&calls);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((calls[0].end_ns, calls[0].error.as_deref()), (250, None));
        assert_eq!(calls[1].error.as_deref(), Some("SYNTAX invalid syntax"));
        assert_eq!(calls[1].attributes["error.type"], "SYNTAX");
        assert_eq!(c.stats(), &DbStats::default());
    }

    #[test]
    fn inline_commands() {
        let script = vec![
            full(W, b"PING\r\n"),
            full(R, b"+PONG\r\n"),
            full(W, b"get  foo\r\nEXISTS a b c\n"),
            full(R, b"$-1\r\n:2\r\n"),
        ];
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &script);
        assert_eq!(
            summary(&calls),
            vec![
                ("PING".to_string(), "PING".to_string(), Some(0), None),
                ("BATCH".to_string(), "GET ?; EXISTS ? ? ?".to_string(), Some(4), None)
            ]
        );
    }

    #[test]
    fn a_reply_cut_by_the_capture_ends_when_the_client_writes_again() {
        let script = vec![
            full(W, REDIS_GET),
            // Not even the header was captured.
            (R, b"", 11),
            full(W, REDIS_GET),
            full(R, REDIS_GET_REPLY),
        ];
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &script);
        let get = ("GET".to_string(), "GET ?".to_string(), Some(1), None);
        assert_eq!(summary(&calls), vec![get.clone(), get]);
        assert_eq!((calls[0].start_ns, calls[0].end_ns, calls[1].start_ns, calls[1].end_ns), (0, 150, 200, 350));
        assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_replies: 1, ..DbStats::default() });
    }

    #[test]
    fn large_values_beyond_the_capture() {
        // MGET of three 3000-byte values: the third's header is beyond the 4096 captured bytes
        // of the one read; the reply continues in a second read.
        let v = "v".repeat(3000);
        let reply = format!("*3\r\n$3000\r\n{v}\r\n$3000\r\n{v}\r\n$3000\r\n{v}\r\n");
        let reply: &'static [u8] = Box::leak(reply.into_bytes().into_boxed_slice());
        let (r1, r2) = reply.split_at(8000);
        // MSET of two 5000-byte values in one write: the second key's header is not captured.
        let w = "w".repeat(5000);
        let mset = format!("*5\r\n$4\r\nMSET\r\n$2\r\nk1\r\n$5000\r\n{w}\r\n$2\r\nk2\r\n$5000\r\n{w}\r\n");
        let mset: &'static [u8] = Box::leak(mset.into_bytes().into_boxed_slice());
        let script = vec![
            full(W, REDIS_MGET),
            (R, &r1[..CAPTURE], r1.len() as u64),
            full(R, r2),
            (W, &mset[..CAPTURE], mset.len() as u64),
            full(R, b"+OK\r\n"),
            full(W, REDIS_GET),
            full(R, REDIS_GET_REPLY),
        ];
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &script);
        assert_eq!(
            summary(&calls),
            vec![
                ("MGET".to_string(), "MGET ? ? ?".to_string(), Some(3), None),
                ("MSET".to_string(), "MSET ? ? ? ?".to_string(), Some(2), None),
                ("GET".to_string(), "GET ?".to_string(), Some(1), None),
            ]
        );
        let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
        assert_eq!(times, [(0, 250), (300, 450), (500, 650)]);
        assert_eq!(
            c.stats(),
            &DbStats { desyncs: 2, resyncs: 2, unframed_replies: 1, unframed_requests: 1, ..DbStats::default() }
        );
    }

    #[test]
    fn malformed_request_loses_framing() {
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &[full(W, b"*2\r\nGET\r\n"), full(R, b"-ERR Protocol error\r\n")]);
        assert!(calls.is_empty());
        assert_eq!(c.stats(), &DbStats { desyncs: 1, unmatched_replies: 1, ..DbStats::default() });
    }

    #[test]
    fn close_before_the_reply_reports_the_call_with_an_error() {
        let mut c = RedisConnection::new();
        let calls = run(&mut c, &[full(W, REDIS_SET), full(R, b"+O")]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].operation, "SET");
        assert_eq!(calls[0].error.as_deref(), Some("connection closed before the reply"));
        assert_eq!((calls[0].start_ns, calls[0].end_ns), (0, 150));
    }

    #[test]
    fn key_counts() {
        assert_eq!(key_count("GET", 2, None), Some(1));
        assert_eq!(key_count("SET", 5, None), Some(1));
        assert_eq!(key_count("DEL", 4, None), Some(3));
        assert_eq!(key_count("MSET", 7, None), Some(3));
        assert_eq!(key_count("BLPOP", 4, None), Some(2));
        assert_eq!(key_count("RENAME", 3, None), Some(2));
        assert_eq!(key_count("PING", 1, None), Some(0));
        assert_eq!(key_count("EVAL", 6, Some(2)), Some(2));
        assert_eq!(key_count("EVAL", 6, None), None);
        assert_eq!(key_count("XREADGROUP", 8, None), None);
        // EVAL's numkeys comes from the command itself.
        let mut c = RedisConnection::new();
        let eval: &[u8] = b"*5\r\n$4\r\nEVAL\r\n$6\r\nreturn\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let calls = run(&mut c, &[full(W, eval), full(R, b"_\r\n")]);
        assert_eq!(calls[0].attributes["db.redis.key_count"], 2);
    }

    #[test]
    fn request_detection() {
        assert!(looks_like_request(REDIS_HELLO));
        assert!(looks_like_request(REDIS_PIPELINE));
        assert!(looks_like_request(b"*1"));
        assert!(looks_like_request(b"ping\r\n"));
        assert!(looks_like_request(b"AUTH secret\r\n"));
        assert!(!looks_like_request(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_request(b"PING"));
        assert!(!looks_like_request(b"*1\r\n+x"));
        assert!(!looks_like_request(b"$5\r\n"));
    }

    /// Every syscall cut into pieces at random places (a piece that starts past the capture has
    /// no data): the calls do not depend on where the cuts fall.
    #[test]
    fn random_piece_boundaries_give_the_same_calls() {
        for seed in 0..300u64 {
            let mut c = RedisConnection::new();
            let calls = replay_with_random_cuts(&mut c, &session(), seed);
            assert_eq!(summary(&calls), expected(), "seed {seed}");
            assert_eq!(c.stats(), &DbStats::default(), "seed {seed}");
        }
    }

    /// Arbitrary bytes in both directions, after a real start: no panic, and what was lost is
    /// counted.
    #[test]
    fn garbage_never_panics() {
        for seed in 0..500u64 {
            feed_garbage(&mut RedisConnection::new(), &session()[..4], seed);
        }
    }
}
