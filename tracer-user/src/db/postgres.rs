//! PostgreSQL's frontend/backend protocol (version 3), from the client's side.
//!
//! A call is a simple `Query` up to its `ReadyForQuery`, or an extended-protocol sequence
//! (`Parse`/`Bind`/`Describe`/`Execute` ... `Sync`) up to the `ReadyForQuery` that answers its
//! `Sync`. Every `Query` and every `Sync` (and the StartupMessage) is answered by exactly one
//! `ReadyForQuery`, in order, so calls in flight are paired first in, first out; that also covers
//! libpq's pipeline mode. Statements prepared by name are remembered per connection, so a later
//! `Bind`/`Execute` without `Parse` still has its text. Sequences that execute nothing (a
//! prepare-only `Parse`/`Sync`) give no call unless the server answered with an error.
//!
//! Messages are framed by their declared lengths: only the first bytes of the few messages a span
//! needs are kept (query text, statement names, CommandComplete tag, ErrorResponse fields), the
//! rest (row data, large parameters) is skipped by count even when it was not captured.
use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{base_attributes, clamp, sql, Call, DbStats, Piece};

/// `db.system.name`.
pub const SYSTEM: &str = "postgresql";

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
/// Largest StartupMessage accepted (PostgreSQL's own limit is 10000).
const MAX_STARTUP: u32 = 10_000;
/// Largest message length believed: PostgreSQL refuses anything over 1 GB.
const MAX_MESSAGE: u32 = 1 << 30;
/// Longest query text kept from a Query or Parse message (the sanitized text is shorter still).
const MAX_SQL: usize = 16 * 1024;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;

/// Frontend (client) message types.
const FRONTEND_TYPES: &[u8] = b"QPBDESXCHFdcfp";
/// Backend (server) message types.
const BACKEND_TYPES: &[u8] = b"RSKZCEDTIN123nstGHWdcAvV";

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// True for the first bytes of a StartupMessage (protocol 3.x), SSLRequest, GSSENCRequest or
/// CancelRequest.
pub fn looks_like_startup(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let (len, code) = (be32(b), be32(&b[4..]));
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        // Protocol 3.x: a list of NUL-terminated names and values, ending with an empty name.
        c if c >> 16 == 3 && c & 0xffff < 100 => {
            (9..=MAX_STARTUP).contains(&len) && b.get(8).is_none_or(|c| c.is_ascii_lowercase() || *c == b'_' || *c == 0)
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Length, then body: the StartupMessage and its relatives, which have no type byte.
    Untyped,
    /// Type byte, length, body.
    Typed,
    /// One byte without framing: the answer to an SSLRequest or GSSENCRequest.
    Byte,
}

/// One message: its type (0 when untyped), declared body length, and the captured prefix of its
/// body, at most the cap its type was given.
#[derive(Debug)]
struct Msg {
    ty: u8,
    body: Vec<u8>,
    start_ns: u64,
    end_ns: u64,
}

#[derive(Debug)]
enum FState {
    Header { buf: [u8; 5], have: usize, start_ns: u64 },
    Body { ty: u8, remaining: u64, body: Vec<u8>, cap: usize, gap: bool, start_ns: u64 },
    Lost,
}

/// Message framing of one direction.
#[derive(Debug)]
struct Framer {
    state: FState,
    valid: &'static [u8],
}

enum Step {
    Msg(Msg),
    Lost,
}

impl Framer {
    fn new(valid: &'static [u8]) -> Self {
        Framer { state: FState::Header { buf: [0; 5], have: 0, start_ns: 0 }, valid }
    }

    fn lost(&self) -> bool {
        matches!(self.state, FState::Lost)
    }

    fn reset(&mut self) {
        self.state = FState::Header { buf: [0; 5], have: 0, start_ns: 0 };
    }

    /// The next complete message of `p` from `*pos`, or None when the piece is used up (or the
    /// framing is lost). `cap` gives how many body bytes to keep for a message type.
    fn next(&mut self, p: &Piece, pos: &mut u64, mode: Mode, cap: impl Fn(u8) -> usize) -> Option<Step> {
        loop {
            if *pos >= p.len {
                return None;
            }
            match &mut self.state {
                FState::Lost => return None,
                FState::Header { buf, have, start_ns } => {
                    let want = match mode {
                        Mode::Typed => 5,
                        Mode::Untyped => 4,
                        Mode::Byte => 1,
                    };
                    let at = *pos as usize;
                    if at >= p.data.len() {
                        self.state = FState::Lost;
                        *pos = p.len;
                        return Some(Step::Lost);
                    }
                    if *have == 0 {
                        *start_ns = p.start_ns;
                    }
                    let take = (want - *have).min(p.data.len() - at);
                    buf[*have..*have + take].copy_from_slice(&p.data[at..at + take]);
                    *have += take;
                    *pos += take as u64;
                    if *have < want {
                        continue;
                    }
                    let start_ns = *start_ns;
                    let (ty, len) = match mode {
                        Mode::Byte => {
                            let ty = buf[0];
                            self.reset();
                            return Some(Step::Msg(Msg { ty, body: Vec::new(), start_ns, end_ns: p.end_ns }));
                        }
                        Mode::Untyped => {
                            let l = be32(&buf[..4]);
                            if !(8..=MAX_STARTUP).contains(&l) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            (0, l - 4)
                        }
                        Mode::Typed => {
                            let l = be32(&buf[1..5]);
                            if !self.valid.contains(&buf[0]) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            if !(4..=MAX_MESSAGE).contains(&l) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            (buf[0], l - 4)
                        }
                    };
                    if len == 0 {
                        self.reset();
                        return Some(Step::Msg(Msg { ty, body: Vec::new(), start_ns, end_ns: p.end_ns }));
                    }
                    let cap = cap(ty).min(len as usize);
                    self.state = FState::Body {
                        ty,
                        remaining: u64::from(len),
                        body: Vec::with_capacity(cap),
                        cap,
                        gap: false,
                        start_ns,
                    };
                }
                FState::Body { ty, remaining, body, cap, gap, start_ns } => {
                    let n = (*remaining).min(p.len - *pos);
                    if body.len() < *cap && !*gap {
                        let at = *pos as usize;
                        let captured = p.data.len().saturating_sub(at).min(n as usize);
                        let take = captured.min(*cap - body.len());
                        if take > 0 {
                            body.extend_from_slice(&p.data[at..at + take]);
                        }
                        if body.len() < *cap && (take as u64) < n {
                            // Wanted bytes that were not captured: keep what is contiguous.
                            *gap = true;
                        }
                    }
                    *remaining -= n;
                    *pos += n;
                    if *remaining == 0 {
                        let m = Msg { ty: *ty, body: std::mem::take(body), start_ns: *start_ns, end_ns: p.end_ns };
                        self.reset();
                        return Some(Step::Msg(m));
                    }
                }
            }
        }
    }

    /// After the framing was lost: whether `p` plausibly starts at a message boundary (every
    /// header in its captured bytes valid, the lengths leading from one to the next).
    fn resyncs_at(&self, p: &Piece, first: &[u8]) -> bool {
        let d = p.data;
        if d.len() < 5 || !first.contains(&d[0]) {
            return false;
        }
        let mut at = 0usize;
        while at + 5 <= d.len() {
            let l = be32(&d[at + 1..]);
            if !self.valid.contains(&d[at]) || !(4..=MAX_MESSAGE).contains(&l) {
                return false;
            }
            at += 1 + l as usize;
        }
        // The last header read claims the rest of the capture (its body may run on past the
        // capture, or into the next piece); a header cut by the end of the capture is doubtful.
        at >= d.len()
    }
}

/// NUL-terminated string at the start of `b`, and the rest after the NUL.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Startup,
    Simple,
    Extended,
}

/// A call written and not yet answered by its ReadyForQuery.
#[derive(Debug)]
struct Pending {
    kind: Kind,
    start_ns: u64,
    sql: Option<String>,
    executes: u32,
    /// The last CommandComplete tag.
    tag: Option<String>,
    /// The first ErrorResponse: (SQLSTATE, message).
    error: Option<(String, String)>,
}

/// An extended-protocol sequence whose Sync has not been written yet.
#[derive(Debug)]
struct Building {
    start_ns: u64,
    sql: Option<String>,
    executes: u32,
}

/// One PostgreSQL client connection: feed it the client's writes and reads in order.
#[derive(Debug)]
pub struct PgConnection {
    front: Framer,
    back: Framer,
    startup_done: bool,
    /// SSLRequests/GSSENCRequests written and not yet answered by their one byte.
    byte_answers: u32,
    user: Option<String>,
    database: Option<String>,
    /// Named prepared statements: name -> text.
    statements: HashMap<String, String>,
    /// The text of the unnamed statement (the last Parse with an empty name).
    unnamed: Option<String>,
    /// The statement text bound to the last portal.
    portal_sql: Option<String>,
    building: Option<Building>,
    inflight: VecDeque<Pending>,
    last_end_ns: u64,
    /// The reply's framing was lost inside a read (its later headers were beyond the capture):
    /// the exit of the last read since. The calls in flight end there when the client writes
    /// again, which a client waiting for its reply only does once it has read all of it.
    reply_gap: Option<u64>,
    stats: DbStats,
}

impl Default for PgConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl PgConnection {
    /// A connection followed from its first byte (the StartupMessage or SSLRequest).
    pub fn new() -> Self {
        PgConnection {
            front: Framer::new(FRONTEND_TYPES),
            back: Framer::new(BACKEND_TYPES),
            startup_done: false,
            byte_answers: 0,
            user: None,
            database: None,
            statements: HashMap::new(),
            unnamed: None,
            portal_sql: None,
            building: None,
            inflight: VecDeque::new(),
            last_end_ns: 0,
            reply_gap: None,
            stats: DbStats::default(),
        }
    }

    /// A connection first seen after its start-up (the agent attached later): both directions
    /// wait for a piece that starts at a message boundary. Statements prepared before are unknown.
    pub fn mid_stream() -> Self {
        let mut c = Self::new();
        c.startup_done = true;
        c.front.state = FState::Lost;
        c.back.state = FState::Lost;
        c
    }

    /// The `user` of the StartupMessage.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The `database` of the StartupMessage (`db.namespace`); PostgreSQL defaults it to the user.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref().or(self.user.as_deref())
    }

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// Calls written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.iter().filter(|p| p.kind != Kind::Startup).count()
    }

    /// What the client wrote.
    pub fn on_write(&mut self, p: &Piece) -> Vec<Call> {
        let p = &clamp(p);
        self.last_end_ns = self.last_end_ns.max(p.end_ns);
        if self.stats.given_up {
            return Vec::new();
        }
        let mut calls = Vec::new();
        if let Some(end) = self.reply_gap.take() {
            calls = self.finish_in_flight(end);
            self.back.reset();
            self.stats.resyncs += 1;
        }
        if self.front.lost() {
            if !self.front.resyncs_at(p, b"QPBSX") {
                return calls;
            }
            self.front.reset();
            self.stats.resyncs += 1;
        }
        let mut pos = 0;
        loop {
            let mode = if self.startup_done { Mode::Typed } else { Mode::Untyped };
            match self.front.next(p, &mut pos, mode, front_cap) {
                None => break,
                Some(Step::Lost) => {
                    self.lose_front();
                    break;
                }
                Some(Step::Msg(m)) => self.frontend_message(m),
            }
            if self.stats.given_up {
                break;
            }
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
        if self.back.lost() {
            if self.reply_gap.is_some() {
                // Still the reply whose framing was lost.
                self.reply_gap = Some(p.end_ns);
                return calls;
            }
            if self.byte_answers > 0 || !self.back.resyncs_at(p, BACKEND_TYPES) {
                return calls;
            }
            self.back.reset();
            self.stats.resyncs += 1;
        }
        let mut pos = 0;
        loop {
            let mode = if self.byte_answers > 0 { Mode::Byte } else { Mode::Typed };
            match self.back.next(p, &mut pos, mode, back_cap) {
                None => break,
                Some(Step::Lost) => {
                    self.lose_back(p.end_ns);
                    break;
                }
                Some(Step::Msg(m)) => {
                    if mode == Mode::Byte {
                        self.byte_answers -= 1;
                        if m.ty != b'N' {
                            // 'S' (TLS) or 'G' (GSSAPI encryption): nothing readable follows.
                            self.give_up();
                            break;
                        }
                        continue;
                    }
                    if let Some(c) = self.backend_message(m) {
                        calls.push(c);
                    }
                }
            }
            if self.stats.given_up {
                break;
            }
        }
        calls
    }

    /// The connection ended: calls still waiting for their reply are returned with an error.
    pub fn on_close(&mut self) -> Vec<Call> {
        self.building = None;
        if let Some(end) = self.reply_gap.take() {
            return self.finish_in_flight(end);
        }
        let end = self.last_end_ns;
        let db = self.database().map(str::to_string);
        self.inflight
            .drain(..)
            .filter(|p| p.kind != Kind::Startup)
            .map(|mut p| {
                if p.error.is_none() {
                    p.error = Some((String::new(), "connection closed before the reply".into()));
                }
                make_call(p, end, db.as_deref(), true)
            })
            .collect()
    }

    /// A request's framing was lost inside a write (a large Bind, say, whose later messages
    /// were beyond the capture). The sequence being written is taken as one call whose Sync was
    /// in the lost bytes; the next write that starts at a message boundary resynchronises.
    fn lose_front(&mut self) {
        self.stats.desyncs += 1;
        if !self.startup_done || self.byte_answers > 0 {
            // Nothing to resynchronise on before the protocol proper begins.
            self.give_up();
            return;
        }
        if let Some(b) = self.building.take() {
            self.stats.unframed_requests += 1;
            self.inflight.push_back(Pending {
                kind: Kind::Extended,
                start_ns: b.start_ns,
                sql: b.sql,
                executes: b.executes.max(1),
                tag: None,
                error: None,
            });
        }
        self.front.state = FState::Lost;
    }

    /// A reply's framing was lost inside the read that ended at `end_ns`: see `reply_gap`.
    fn lose_back(&mut self, end_ns: u64) {
        self.stats.desyncs += 1;
        if self.byte_answers > 0 {
            self.give_up();
            return;
        }
        self.back.state = FState::Lost;
        self.reply_gap = Some(end_ns);
    }

    /// Ends every call in flight at `end_ns` (their replies could not be followed to the end).
    fn finish_in_flight(&mut self, end_ns: u64) -> Vec<Call> {
        let db = self.database().map(str::to_string);
        let calls: Vec<Call> = self
            .inflight
            .drain(..)
            .filter(|p| p.kind != Kind::Startup && (p.executes > 0 || p.error.is_some()))
            .map(|p| make_call(p, end_ns, db.as_deref(), false))
            .collect();
        self.stats.unframed_replies += calls.len() as u64;
        calls
    }

    fn give_up(&mut self) {
        self.stats.given_up = true;
        self.stats.calls_lost += self.in_flight() as u64;
        self.inflight.clear();
        self.building = None;
    }

    fn frontend_message(&mut self, m: Msg) {
        match m.ty {
            0 => self.startup_message(m),
            b'Q' => {
                let sql = cstr(&m.body).map_or(&m.body[..], |(s, _)| s);
                self.inflight.push_back(Pending {
                    kind: Kind::Simple,
                    start_ns: m.start_ns,
                    sql: Some(String::from_utf8_lossy(sql).into_owned()),
                    executes: 1,
                    tag: None,
                    error: None,
                });
            }
            b'P' => {
                let b = self.building.get_or_insert(Building { start_ns: m.start_ns, sql: None, executes: 0 });
                let Some((name, rest)) = cstr(&m.body) else { return };
                let text = String::from_utf8_lossy(cstr(rest).map_or(rest, |(s, _)| s)).into_owned();
                if b.sql.is_none() {
                    b.sql = Some(text.clone());
                }
                if name.is_empty() {
                    self.unnamed = Some(text);
                } else {
                    let name = String::from_utf8_lossy(name).into_owned();
                    if self.statements.len() < MAX_STATEMENTS || self.statements.contains_key(&name) {
                        self.statements.insert(name, text);
                    }
                }
            }
            b'B' => {
                let b = self.building.get_or_insert(Building { start_ns: m.start_ns, sql: None, executes: 0 });
                // Portal name, then statement name; the parameters after them are not needed.
                let text = cstr(&m.body).and_then(|(_, rest)| cstr(rest)).and_then(|(stmt, _)| {
                    if stmt.is_empty() {
                        self.unnamed.clone()
                    } else {
                        self.statements.get(&*String::from_utf8_lossy(stmt)).cloned()
                    }
                });
                if b.sql.is_none() {
                    b.sql.clone_from(&text);
                }
                self.portal_sql = text;
            }
            b'E' => {
                let b = self.building.get_or_insert(Building { start_ns: m.start_ns, sql: None, executes: 0 });
                b.executes += 1;
                if b.sql.is_none() {
                    b.sql.clone_from(&self.portal_sql);
                }
            }
            b'D' | b'H' => {
                self.building.get_or_insert(Building { start_ns: m.start_ns, sql: None, executes: 0 });
            }
            b'C' => {
                // Close: 'S' statement or 'P' portal, then its name.
                if let Some((&b'S', rest)) = m.body.split_first() {
                    if let Some((name, _)) = cstr(rest) {
                        self.statements.remove(&*String::from_utf8_lossy(name));
                    }
                }
            }
            b'S' => {
                let b = self.building.take().unwrap_or(Building { start_ns: m.start_ns, sql: None, executes: 0 });
                self.inflight.push_back(Pending {
                    kind: Kind::Extended,
                    start_ns: b.start_ns,
                    sql: b.sql,
                    executes: b.executes,
                    tag: None,
                    error: None,
                });
            }
            // Terminate, Flush, copy data, function calls, password messages: nothing to keep.
            _ => {}
        }
    }

    fn startup_message(&mut self, m: Msg) {
        let code = if m.body.len() >= 4 { be32(&m.body) } else { 0 };
        match code {
            SSL_REQUEST | GSSENC_REQUEST => self.byte_answers += 1,
            c if c >> 16 == 3 => {
                self.startup_done = true;
                let mut rest = &m.body[4..];
                while let Some((k, r)) = cstr(rest) {
                    let Some((v, r)) = cstr(r).filter(|_| !k.is_empty()) else { break };
                    let v = String::from_utf8_lossy(v).into_owned();
                    match k {
                        b"user" => self.user = Some(v),
                        b"database" => self.database = Some(v),
                        _ => {}
                    }
                    rest = r;
                }
                self.inflight.push_back(Pending {
                    kind: Kind::Startup,
                    start_ns: m.start_ns,
                    sql: None,
                    executes: 0,
                    tag: None,
                    error: None,
                });
            }
            // A CancelRequest, or anything else: not a query connection.
            _ => self.give_up(),
        }
    }

    fn backend_message(&mut self, m: Msg) -> Option<Call> {
        match m.ty {
            b'C' => {
                let tag = cstr(&m.body).map_or(&m.body[..], |(s, _)| s);
                if let Some(p) = self.inflight.front_mut() {
                    p.tag = Some(String::from_utf8_lossy(tag).into_owned());
                }
            }
            b'E' => {
                let (code, message) = error_fields(&m.body);
                match self.inflight.front_mut() {
                    Some(p) if p.error.is_none() => p.error = Some((code, message)),
                    Some(_) => {}
                    // A FATAL error outside any call (e.g. an administrator's shutdown).
                    None => self.stats.unmatched_replies += 1,
                }
            }
            b'Z' => {
                let Some(p) = self.inflight.pop_front() else {
                    self.stats.unmatched_replies += 1;
                    return None;
                };
                if p.kind == Kind::Startup || (p.executes == 0 && p.error.is_none()) {
                    return None;
                }
                return Some(make_call(p, m.end_ns, self.database(), false));
            }
            _ => {}
        }
        None
    }
}

/// Body bytes kept per frontend message type.
fn front_cap(ty: u8) -> usize {
    match ty {
        0 => MAX_STARTUP as usize,
        b'Q' | b'P' => MAX_SQL,
        // Portal and statement names (each at most NAMEDATALEN, 64).
        b'B' | b'C' => 160,
        _ => 0,
    }
}

/// Body bytes kept per backend message type.
fn back_cap(ty: u8) -> usize {
    match ty {
        b'C' => 128,
        b'E' => 4096,
        _ => 0,
    }
}

/// SQLSTATE (`C`) and message (`M`) of an ErrorResponse; a missing code is empty.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut rest = body;
    while let Some((&field, r)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, r)) = cstr(r) else {
            // Cut by the capture: keep what there is.
            if field == b'M' {
                message = String::from_utf8_lossy(r).into_owned();
            }
            break;
        };
        match field {
            b'C' => code = String::from_utf8_lossy(value).into_owned(),
            b'M' => message = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
        rest = r;
    }
    (code, message)
}

fn make_call(p: Pending, end_ns: u64, database: Option<&str>, closed: bool) -> Call {
    let raw = p.sql.as_deref().unwrap_or("");
    let operation = sql::operation(raw).unwrap_or_default();
    let query_text = p.sql.as_deref().map(sql::sanitize).filter(|q| !q.is_empty());
    let mut attributes = base_attributes(SYSTEM, &operation, query_text.as_deref());
    if let Some(db) = database {
        attributes.insert("db.namespace".into(), json!(db));
    }
    if p.executes > 1 {
        attributes.insert("db.operation.batch.size".into(), json!(p.executes));
    }
    if let Some(rows) = p.tag.as_deref().and_then(returned_rows) {
        attributes.insert("db.response.returned_rows".into(), json!(rows));
    }
    let error = p.error.map(|(code, message)| {
        if closed && code.is_empty() {
            attributes.insert("error.type".into(), json!("connection_closed"));
        } else {
            let code = if code.is_empty() { "_OTHER".to_string() } else { code };
            attributes.insert("db.response.status_code".into(), json!(code));
            attributes.insert("error.type".into(), json!(code));
        }
        message
    });
    Call { start_ns: p.start_ns, end_ns, system: SYSTEM, operation, query_text, attributes, error }
}

/// Rows a CommandComplete tag says a query returned: `SELECT 3`, `FETCH 2`, `MOVE 0` (and the
/// DML tags with RETURNING, which cannot be told apart here, are left out).
fn returned_rows(tag: &str) -> Option<u64> {
    let (cmd, n) = tag.rsplit_once(' ')?;
    matches!(cmd, "SELECT" | "FETCH").then(|| n.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    /// The whole captured session, in order; the large Bind's write captured to 4096 bytes.
    fn session() -> Vec<Sys> {
        vec![
            full(W, PG_SSL_REQUEST),
            full(R, PG_SSL_NO),
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            full(W, PG_SIMPLE_QUERY),
            full(R, PG_SIMPLE_REPLY),
            full(W, PG_EXTENDED),
            full(R, PG_EXTENDED_REPLY),
            full(W, PG_BAD_QUERY),
            full(R, PG_BAD_QUERY_REPLY),
            full(W, PG_PREPARE),
            full(R, PG_PREPARE_REPLY),
            full(W, PG_BIND_PREPARED),
            full(R, PG_BIND_PREPARED_REPLY),
            full(W, PG_BIND_PREPARED_2),
            full(R, PG_BIND_PREPARED_2_REPLY),
            (W, PG_LARGE_INSERT, PG_LARGE_INSERT_LEN),
            full(W, PG_LARGE_INSERT_TAIL),
            full(R, PG_LARGE_INSERT_REPLY),
            full(W, PG_LENGTH_QUERY),
            full(R, PG_LENGTH_REPLY),
            full(W, PG_TERMINATE),
        ]
    }

    /// Feeds syscall `i` as a piece with start 100*i and end 100*i+50; returns every call.
    fn run(c: &mut PgConnection, script: &[Sys]) -> Vec<Call> {
        let mut calls = Vec::new();
        for (i, &(d, data, len)) in script.iter().enumerate() {
            let t = 100 * i as u64;
            let p = Piece { data, len, start_ns: t, end_ns: t + 50 };
            calls.extend(match d {
                W => c.on_write(&p),
                R => c.on_read(&p),
            });
        }
        calls.extend(c.on_close());
        calls
    }

    /// Feeds every syscall one byte at a time, each byte its own piece (uncaptured bytes of a
    /// partly captured syscall as one piece with no data).
    fn run_bytewise(c: &mut PgConnection, script: &[Sys]) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut t = 0;
        for &(d, data, len) in script {
            let mut pieces: Vec<Piece> = data
                .chunks(1)
                .map(|b| {
                    t += 10;
                    Piece { data: b, len: 1, start_ns: t, end_ns: t + 5 }
                })
                .collect();
            if len > data.len() as u64 {
                t += 10;
                pieces.push(Piece { data: &[], len: len - data.len() as u64, start_ns: t, end_ns: t + 5 });
            }
            for p in pieces {
                calls.extend(match d {
                    W => c.on_write(&p),
                    R => c.on_read(&p),
                });
            }
        }
        calls.extend(c.on_close());
        calls
    }

    /// (operation, query text, error, SQLSTATE) of a call.
    type Summary = (String, Option<String>, Option<String>, Option<String>);

    fn summary(calls: &[Call]) -> Vec<Summary> {
        calls
            .iter()
            .map(|c| {
                let code = c.attributes.get("db.response.status_code").and_then(|v| v.as_str()).map(str::to_string);
                (c.operation.clone(), c.query_text.clone(), c.error.clone(), code)
            })
            .collect()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    fn expected() -> Vec<Summary> {
        let sel = |q: &str| ("SELECT".to_string(), s(q), None, None);
        vec![
            sel("SELECT count(*) FROM items WHERE name <> ?"),
            sel("SELECT name FROM items WHERE id = $1"),
            ("SELEC".to_string(), s("SELEC name FROM items"), s("syntax error at or near \"SELEC\""), s("42601")),
            sel("SELECT name FROM items WHERE id = $1 AND name <> $2"),
            sel("SELECT name FROM items WHERE id = $1 AND name <> $2"),
            ("INSERT".to_string(), s("INSERT INTO items VALUES ($1, $2)"), None, None),
            sel("SELECT length(name) FROM items WHERE id = ?"),
        ]
    }

    #[test]
    fn captured_session_gives_one_call_per_query() {
        let mut c = PgConnection::new();
        let calls = run(&mut c, &session());
        assert_eq!(summary(&calls), expected());
        assert_eq!((c.user(), c.database()), (Some("postgres"), Some("app")));
        assert_eq!(c.stats(), &DbStats::default());
        assert_eq!(c.in_flight(), 0);

        // Times: first write of the call to the read that completed it.
        let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
        assert_eq!(times, [(400, 550), (600, 750), (800, 950), (1200, 1350), (1400, 1550), (1600, 1850), (1900, 2050)]);

        let simple = &calls[0];
        assert_eq!(simple.system, "postgresql");
        assert_eq!(simple.span_name(), "SELECT app");
        assert_eq!(
            serde_json::Value::Object(simple.attributes.clone()),
            serde_json::json!({
                "db.system.name": "postgresql",
                "db.operation.name": "SELECT",
                "db.query.text": "SELECT count(*) FROM items WHERE name <> ?",
                "db.namespace": "app",
                "db.response.returned_rows": 1,
            })
        );
        let err = &calls[2];
        assert_eq!(err.attributes["error.type"], "42601");
        assert_eq!(err.attributes["db.response.status_code"], "42601");
        assert!(!calls[5].attributes.contains_key("db.response.returned_rows"), "INSERT 0 1 returns no rows");
    }

    #[test]
    fn one_byte_pieces_give_the_same_calls() {
        let mut c = PgConnection::new();
        let calls = run_bytewise(&mut c, &session());
        assert_eq!(summary(&calls), expected());
        assert_eq!(c.stats(), &DbStats::default());
        // The large insert starts at its first byte's write and ends with its reply's last byte.
        let insert = &calls[5];
        assert!(insert.start_ns < insert.end_ns);
    }

    #[test]
    fn several_messages_per_piece_in_both_directions() {
        // Two queries pipelined in one write, both replies in one read, then the extended query
        // split at an awkward place (inside the Bind's length field).
        let mut both = PG_SIMPLE_QUERY.to_vec();
        both.extend_from_slice(PG_BAD_QUERY);
        let mut replies = PG_SIMPLE_REPLY.to_vec();
        replies.extend_from_slice(PG_BAD_QUERY_REPLY);
        let both: &'static [u8] = Box::leak(both.into_boxed_slice());
        let replies: &'static [u8] = Box::leak(replies.into_boxed_slice());
        let split = PG_EXTENDED.iter().position(|&b| b == b'B').unwrap() + 3;
        let script = vec![
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            full(W, both),
            full(R, replies),
            full(W, &PG_EXTENDED[..split]),
            full(W, &PG_EXTENDED[split..]),
            full(R, &PG_EXTENDED_REPLY[..7]),
            full(R, &PG_EXTENDED_REPLY[7..]),
        ];
        let mut c = PgConnection::new();
        let calls = run(&mut c, &script);
        let e = expected();
        assert_eq!(summary(&calls), vec![e[0].clone(), e[2].clone(), e[1].clone()]);
        // The pipelined pair: both start with the one write, end with the one read.
        assert_eq!((calls[0].start_ns, calls[0].end_ns, calls[1].start_ns, calls[1].end_ns), (200, 350, 200, 350));
        assert_eq!((calls[2].start_ns, calls[2].end_ns), (400, 750));
    }

    #[test]
    fn a_request_cut_by_the_capture_is_one_call_and_the_next_write_resyncs() {
        // The large Bind and the Describe/Execute/Sync after it in one write: the later headers
        // are beyond the 4096 captured bytes.
        let total = PG_LARGE_INSERT_LEN + PG_LARGE_INSERT_TAIL.len() as u64;
        let script = vec![
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            (W, PG_LARGE_INSERT, total),
            full(R, PG_LARGE_INSERT_REPLY),
            full(W, PG_LENGTH_QUERY),
            full(R, PG_LENGTH_REPLY),
        ];
        let mut c = PgConnection::new();
        let calls = run(&mut c, &script);
        assert_eq!(summary(&calls), vec![expected()[5].clone(), expected()[6].clone()]);
        assert_eq!((calls[0].start_ns, calls[0].end_ns), (200, 350));
        assert_eq!(c.stats(), &DbStats { desyncs: 1, resyncs: 1, unframed_requests: 1, ..DbStats::default() });
    }

    /// A reply larger than the capture: RowDescription, 300 DataRows, CommandComplete, ReadyForQuery.
    fn big_reply() -> &'static [u8] {
        let mut r = PG_SIMPLE_REPLY[..31].to_vec(); // RowDescription
        for i in 0..300u32 {
            let v = format!("{i:020}");
            r.push(b'D');
            r.extend_from_slice(&(4 + 2 + 4 + v.len() as u32).to_be_bytes());
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&(v.len() as u32).to_be_bytes());
            r.extend_from_slice(v.as_bytes());
        }
        r.extend_from_slice(b"C\x00\x00\x00\x0fSELECT 300\x00Z\x00\x00\x00\x05I");
        Box::leak(r.into_boxed_slice())
    }

    #[test]
    fn a_reply_cut_by_the_capture_ends_when_the_client_writes_again() {
        let big = big_reply();
        assert!(big.len() > 2 * CAPTURE);
        let (first, second) = big.split_at(big.len() / 2);
        let script = vec![
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            full(W, PG_SIMPLE_QUERY),
            // Two reads, each captured to 4096 bytes: the headers after that are not seen.
            (R, &first[..CAPTURE], first.len() as u64),
            (R, &second[..CAPTURE], second.len() as u64),
            full(W, PG_EXTENDED),
            full(R, PG_EXTENDED_REPLY),
            full(W, PG_SIMPLE_QUERY),
            (R, &big[..CAPTURE], big.len() as u64),
        ];
        let mut c = PgConnection::new();
        let calls = run(&mut c, &script);
        let e = expected();
        assert_eq!(summary(&calls), vec![e[0].clone(), e[1].clone(), e[0].clone()]);
        // The first ends with the last read before the next write; the last one at close.
        let times: Vec<(u64, u64)> = calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
        assert_eq!(times, [(200, 450), (500, 650), (700, 850)]);
        // Its status (CommandComplete) was not seen.
        assert!(!calls[0].attributes.contains_key("db.response.returned_rows"));
        assert_eq!(c.stats(), &DbStats { desyncs: 2, resyncs: 1, unframed_replies: 2, ..DbStats::default() });

        // Fully captured, the same reply is followed to its ReadyForQuery.
        let mut c = PgConnection::new();
        let calls =
            run(&mut c, &[full(W, PG_STARTUP), full(R, PG_STARTUP_REPLY), full(W, PG_SIMPLE_QUERY), full(R, big)]);
        assert_eq!(calls[0].attributes["db.response.returned_rows"], 300);
        assert_eq!(c.stats(), &DbStats::default());
    }

    #[test]
    fn garbage_loses_framing_and_is_counted() {
        let script = vec![
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            full(W, b"\xff\xff\xff\xff\xff\xff"),
            full(W, b"junk"),
        ];
        let mut c = PgConnection::new();
        assert!(run(&mut c, &script).is_empty());
        assert_eq!(c.stats().desyncs, 1);
        assert!(!c.stats().given_up);
    }

    #[test]
    fn attached_mid_stream_it_waits_for_a_message_boundary() {
        let script = vec![
            // The tail of a reply: no boundary.
            full(R, &PG_STARTUP_REPLY[100..]),
            full(W, PG_EXTENDED),
            full(R, PG_EXTENDED_REPLY),
            // A statement prepared before the agent came: its text is unknown.
            full(W, PG_BIND_PREPARED),
            full(R, PG_BIND_PREPARED_REPLY),
        ];
        let mut c = PgConnection::mid_stream();
        let calls = run(&mut c, &script);
        assert_eq!(summary(&calls), vec![expected()[1].clone(), (String::new(), None, None, None)]);
        assert_eq!(c.stats().resyncs, 2);
        assert_eq!(c.database(), None);
    }

    #[test]
    fn tls_and_cancel_connections_are_given_up() {
        let mut c = PgConnection::new();
        run(&mut c, &[full(W, PG_SSL_REQUEST), full(R, b"S"), full(W, b"\x16\x03\x01\x00\x05hello")]);
        assert!(c.stats().given_up);
        let cancel: &[u8] = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02";
        assert!(looks_like_startup(cancel));
        let mut c = PgConnection::new();
        run(&mut c, &[full(W, cancel)]);
        assert!(c.stats().given_up);
    }

    #[test]
    fn close_before_the_reply_reports_the_call_with_an_error() {
        let mut c = PgConnection::new();
        let calls = run(
            &mut c,
            &[
                full(W, PG_STARTUP),
                full(R, PG_STARTUP_REPLY),
                full(W, PG_SIMPLE_QUERY),
                full(R, &PG_SIMPLE_REPLY[..20]),
            ],
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].error.as_deref(), Some("connection closed before the reply"));
        assert_eq!(calls[0].attributes["error.type"], "connection_closed");
        assert_eq!((calls[0].start_ns, calls[0].end_ns), (200, 350));
    }

    #[test]
    fn closed_statements_are_forgotten() {
        let close: &[u8] = b"C\x00\x00\x00\x0cS_pg3_0\x00";
        let script = vec![
            full(W, PG_STARTUP),
            full(R, PG_STARTUP_REPLY),
            full(W, PG_PREPARE),
            full(R, PG_PREPARE_REPLY),
            full(W, close),
            full(W, PG_BIND_PREPARED),
            full(R, PG_BIND_PREPARED_REPLY),
        ];
        let mut c = PgConnection::new();
        assert_eq!(summary(&run(&mut c, &script)), vec![(String::new(), None, None, None)]);
    }

    #[test]
    fn error_fields_and_row_counts() {
        let body = &PG_BAD_QUERY_REPLY[5..];
        assert_eq!(error_fields(body), ("42601".into(), "syntax error at or near \"SELEC\"".into()));
        // Cut by the capture in the middle of the message.
        assert_eq!(error_fields(&body[..40]), ("42601".into(), "syntax error at or".into()));
        assert_eq!(returned_rows("SELECT 3"), Some(3));
        assert_eq!(returned_rows("INSERT 0 1"), None);
        assert_eq!(returned_rows("FETCH 10"), Some(10));
        assert_eq!(returned_rows("BEGIN"), None);
    }

    /// Every syscall cut into pieces at random places (a piece that starts past the capture has
    /// no data): the calls do not depend on where the cuts fall.
    #[test]
    fn random_piece_boundaries_give_the_same_calls() {
        for seed in 0..300u64 {
            let mut c = PgConnection::new();
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
            feed_garbage(&mut PgConnection::new(), &session()[..4], seed);
        }
    }
}
