//! One connection's state machine: start-up, simple and extended queries, prepared statements,
//! and the pairing of calls in flight with the ReadyForQuery that ends each.
use std::collections::HashMap;

use super::attributes::{make_call, Kind, Pending};
use super::framing::{be32, cstr, FState, Framer, Mode, Msg, Step, CALL_STARTS, GSSENC_REQUEST, SSL_REQUEST};
use super::messages::{back_cap, error_fields, front_cap, BACKEND_TYPES, FRONTEND_TYPES};
use super::SYSTEM;
use crate::calls::{Call, ClientProtocol, DbCall};
use crate::db::in_flight::{EndedBy, InFlight};
use crate::db::{clamp, DbStats, Piece};

/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;

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
    inflight: InFlight<Pending>,
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
            inflight: InFlight::new(),
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

    /// Calls written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.iter().filter(|p| p.kind != Kind::Startup).count()
    }

    /// What the client wrote.
    pub fn on_write(&mut self, p: &Piece) -> Vec<DbCall> {
        let p = &clamp(p);
        self.inflight.saw(p.end_ns);
        if self.stats.given_up {
            return Vec::new();
        }
        let mut calls = Vec::new();
        // The database `database()` says, borrowed field by field (the parser's other fields change).
        let end = ended(self.database.as_deref().or(self.user.as_deref()));
        if let Some(cut) = self.inflight.write_after_gap(&mut self.stats, end) {
            calls = cut;
            self.back.reset();
        }
        if self.front.lost() {
            if !self.front.resyncs_at(p, CALL_STARTS) {
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
                Some(Step::Msg(m)) => self.frontend_message(&m),
            }
            if self.stats.given_up {
                break;
            }
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
        if self.back.lost() {
            if self.inflight.in_reply_gap(p.end_ns) {
                // Still the reply whose framing was lost.
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
                    if let Some(c) = self.backend_message(&m) {
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
    pub fn on_close(&mut self) -> Vec<DbCall> {
        self.building = None;
        let end = ended(self.database.as_deref().or(self.user.as_deref()));
        self.inflight.close(&mut self.stats, end)
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

    /// A reply's framing was lost inside the read that ended at `end_ns` (its later headers were
    /// beyond the capture): the calls in flight end at the last read before the client writes
    /// again ([`InFlight`]).
    fn lose_back(&mut self, end_ns: u64) {
        self.stats.desyncs += 1;
        if self.byte_answers > 0 {
            self.give_up();
            return;
        }
        self.back.state = FState::Lost;
        self.inflight.reply_lost(end_ns);
    }

    fn give_up(&mut self) {
        self.stats.given_up = true;
        self.stats.calls_lost += self.in_flight() as u64;
        self.inflight.clear();
        self.building = None;
    }

    fn frontend_message(&mut self, m: &Msg) {
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

    fn startup_message(&mut self, m: &Msg) {
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

    fn backend_message(&mut self, m: &Msg) -> Option<DbCall> {
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

/// What a call in flight becomes when it ends before its reply was read to the end, on a
/// connection to `database`: the start-up gives none; after a reply gap, a sequence that executed
/// nothing gives none unless the server refused it; at close, every other is unanswered.
fn ended(database: Option<&str>) -> impl FnMut(Pending, u64, EndedBy) -> Option<DbCall> + '_ {
    move |mut p, end_ns, by| {
        if p.kind == Kind::Startup {
            return None;
        }
        match by {
            EndedBy::ReplyGap => (p.executes > 0 || p.error.is_some()).then(|| make_call(p, end_ns, database, false)),
            EndedBy::Close => {
                if p.error.is_none() {
                    p.error = Some((String::new(), "connection closed before the reply".into()));
                }
                Some(make_call(p, end_ns, database, true))
            }
        }
    }
}

impl ClientProtocol for PgConnection {
    fn on_write(&mut self, p: &Piece) -> Vec<Call> {
        PgConnection::on_write(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_read(&mut self, p: &Piece) -> Vec<Call> {
        PgConnection::on_read(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_close(&mut self) -> Vec<Call> {
        PgConnection::on_close(self).into_iter().map(Call::Db).collect()
    }

    fn stats(&self) -> &DbStats {
        &self.stats
    }

    fn protocol(&self) -> &'static str {
        SYSTEM
    }
}
