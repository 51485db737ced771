//! One connection's state machine: greeting, login and authentication, then commands paired
//! first in, first out with their replies, and what happens when either side's framing is lost.
use std::collections::HashMap;

use super::attributes::{make_call, Pending, Reply};
use super::framing::{command_starts_at, Framer, Packet, Step, MAX_PAYLOAD};
use super::packets::{
    eof_status, err, greeting, is_command, lenenc, login, ok_status, prepare_ok, query_text, statement_id, Login,
    CLIENT_COMPRESS, CLIENT_DEPRECATE_EOF, CLIENT_OPTIONAL_RESULTSET_METADATA, CLIENT_ZSTD_COMPRESSION,
    COM_BINLOG_DUMP, COM_BINLOG_DUMP_GTID, COM_CHANGE_USER, COM_FIELD_LIST, COM_INIT_DB, COM_PROCESS_INFO, COM_QUERY,
    COM_QUIT, COM_STMT_BULK_EXECUTE, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE,
    COM_STMT_RESET, COM_STMT_SEND_LONG_DATA, MARIADB_CLIENT_CACHE_METADATA, MARIADB_CLIENT_PROGRESS,
    SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_CURSOR_EXISTS,
};
use super::{MARIADB, MYSQL, PROTOCOL};
use crate::calls::{Call, ClientProtocol, DbCall};
use crate::db::in_flight::{EndedBy, InFlight};
use crate::db::{clamp, DbStats, Piece};

/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;
/// Commands in flight remembered; beyond that the connection is given up on.
const MAX_INFLIGHT: usize = 10_000;
/// Payload bytes kept of a client packet: a command's text (the capture is shorter still).
const FRONT_CAP: usize = 16 * 1024;
/// Payload bytes kept of a server packet: a greeting, an OK's status, an ERR's message.
const BACK_CAP: usize = 1024;
/// Of a row: enough to tell a row from an EOF, or from an OK ending the rows.
const ROW_CAP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Waiting for the client's handshake response.
    Login,
    /// Authentication: the client's packets are skipped until the server's OK or ERR.
    Auth,
    /// Commands.
    Ready,
}

/// One MySQL or MariaDB client connection: feed it the client's writes and reads in order.
#[derive(Debug)]
pub struct MysqlConnection {
    front: Framer,
    back: Framer,
    phase: Phase,
    /// `db.system.name`: `mariadb` when the greeting's version says MariaDB.
    system: &'static str,
    server_capabilities: u64,
    /// What both sides announced.
    capabilities: u64,
    /// `db.namespace`: the handshake's database, then COM_INIT_DB's or USE's.
    database: Option<String>,
    /// Prepared statements: id (from the PREPARE_OK) -> text.
    statements: HashMap<u32, String>,
    inflight: InFlight<Pending>,
    /// The sequence id the next packet must have (None right after a resync).
    seq: Option<u8>,
    /// The client is sending a local file: its packets until an empty one are data.
    infile: bool,
    /// The exit of the last read.
    last_read_ns: u64,
    /// Calls finished while a write was parsed (a reply cut short by the next command).
    done: Vec<DbCall>,
    stats: DbStats,
}

impl Default for MysqlConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl MysqlConnection {
    /// A connection followed from its first byte (the server's greeting).
    pub fn new() -> Self {
        MysqlConnection {
            front: Framer::new(),
            back: Framer::new(),
            phase: Phase::Greeting,
            system: MYSQL,
            server_capabilities: 0,
            capabilities: 0,
            database: None,
            statements: HashMap::new(),
            inflight: InFlight::new(),
            seq: Some(0),
            infile: false,
            last_read_ns: 0,
            done: Vec::new(),
            stats: DbStats::default(),
        }
    }

    /// A connection first seen at a command (it was open before the agent attached): its
    /// handshake is behind it, so what it said (MariaDB or MySQL, the database) is unknown.
    pub fn mid_stream() -> Self {
        MysqlConnection { phase: Phase::Ready, ..Self::new() }
    }

    /// `db.namespace`: the current database.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// `db.system.name`: `mysql` or `mariadb`.
    pub fn system(&self) -> &'static str {
        self.system
    }

    /// Commands written and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Statements prepared and not closed.
    pub fn statements(&self) -> usize {
        self.statements.len()
    }

    /// What the client wrote.
    pub fn on_write(&mut self, p: &Piece) -> Vec<DbCall> {
        let p = &clamp(p);
        self.inflight.saw(p.end_ns);
        if self.stats.given_up {
            return Vec::new();
        }
        let mut calls = Vec::new();
        let end = ended(self.system, self.database.as_deref());
        if let Some(cut) = self.inflight.write_after_gap(&mut self.stats, end) {
            calls = cut;
            self.back.reset();
            self.seq = None;
        }
        if self.front.lost() {
            if !command_starts_at(p, is_command) {
                return calls;
            }
            self.front.reset();
            self.infile = false;
            self.seq = None;
            self.stats.resyncs += 1;
        }
        let mut pos = 0;
        while let Some(step) = self.front.next(p, &mut pos, FRONT_CAP) {
            match step {
                Step::Lost => {
                    self.lose_front();
                    break;
                }
                Step::Packet(pk) => self.client_packet(&pk),
            }
            if self.stats.given_up {
                break;
            }
        }
        calls.append(&mut self.done);
        calls
    }

    /// What the client read.
    pub fn on_read(&mut self, p: &Piece) -> Vec<DbCall> {
        let p = &clamp(p);
        self.inflight.saw(p.end_ns);
        self.last_read_ns = p.end_ns;
        let mut calls = Vec::new();
        if self.stats.given_up {
            return calls;
        }
        if self.back.lost() {
            // Still the reply whose framing was lost (when it was lost in a reply).
            self.inflight.in_reply_gap(p.end_ns);
            return calls;
        }
        let mut pos = 0;
        loop {
            let cap = if self.inflight.front().is_some_and(|f| f.reply == Reply::Rows) { ROW_CAP } else { BACK_CAP };
            let Some(step) = self.back.next(p, &mut pos, cap) else { break };
            match step {
                Step::Lost => {
                    self.lose_back(p.end_ns);
                    break;
                }
                Step::Packet(pk) => {
                    if let Some(c) = self.server_packet(&pk) {
                        calls.push(c);
                    }
                }
            }
            if self.stats.given_up || self.back.lost() {
                break;
            }
        }
        calls
    }

    /// The connection ended: calls still waiting for their reply are returned with an error.
    pub fn on_close(&mut self) -> Vec<DbCall> {
        self.inflight.close(&mut self.stats, ended(self.system, self.database.as_deref()))
    }

    /// A client packet's header was beyond the capture (a command longer than 16 MiB, whose
    /// next packet's header was not captured). The command is taken as written whole; the next
    /// write that starts a command resynchronises.
    fn lose_front(&mut self) {
        self.stats.desyncs += 1;
        if self.phase != Phase::Ready {
            self.give_up();
            return;
        }
        if !self.inflight.is_empty() {
            self.stats.unframed_requests += 1;
        }
        self.front.lose();
        self.seq = None;
    }

    /// A reply's framing was lost inside the read that ended at `end_ns`: the calls in flight
    /// end at the last read before the client writes again ([`InFlight`]).
    fn lose_back(&mut self, end_ns: u64) {
        self.stats.desyncs += 1;
        if self.phase != Phase::Ready {
            self.give_up();
            return;
        }
        self.back.lose();
        self.inflight.reply_lost(end_ns);
    }

    fn give_up(&mut self) {
        self.stats.given_up = true;
        self.stats.calls_lost += self.inflight.len() as u64;
        self.inflight.clear();
    }

    /// Checks a packet's sequence id against the one expected, and expects the next.
    fn in_sequence(&mut self, pk: &Packet) -> bool {
        let ok = self.seq.is_none_or(|s| s == pk.seq);
        self.seq = Some(pk.seq.wrapping_add(1));
        ok
    }

    fn client_packet(&mut self, pk: &Packet) {
        match self.phase {
            // The client spoke first: not the protocol this connection was taken for.
            Phase::Greeting => self.give_up(),
            Phase::Login => {
                if !self.in_sequence(pk) {
                    self.stats.desyncs += 1;
                    self.give_up();
                    return;
                }
                match login(&pk.body, pk.len) {
                    Login::Response { capabilities, database } => {
                        self.capabilities = capabilities & self.server_capabilities;
                        if self.capabilities & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION) != 0 {
                            // Compressed packets: nothing readable follows.
                            self.give_up();
                            return;
                        }
                        self.database = database;
                        self.phase = Phase::Auth;
                    }
                    // TLS from here on, or a protocol older than 4.1.
                    Login::SslRequest | Login::Other => self.give_up(),
                }
            }
            // Authentication data (a password, a public key request): nothing to keep.
            Phase::Auth => {
                self.in_sequence(pk);
            }
            Phase::Ready => self.command_packet(pk),
        }
    }

    fn command_packet(&mut self, pk: &Packet) {
        if pk.continuation {
            // More of a command longer than one packet.
            self.in_sequence(pk);
            return;
        }
        if self.infile {
            // The local file's content; an empty packet ends it.
            self.in_sequence(pk);
            if pk.len == 0 {
                self.infile = false;
            }
            return;
        }
        let Some(&command) = pk.body.first() else { return };
        if pk.seq != 0 || !is_command(command) {
            self.lose_front();
            return;
        }
        self.seq = Some(1);
        let mut pending = match command {
            // No reply.
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_STMT_CLOSE => {
                if let Some(id) = statement_id(&pk.body) {
                    self.statements.remove(&id);
                }
                return;
            }
            // Replication streams, not calls.
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => {
                self.give_up();
                return;
            }
            COM_QUERY | COM_PROCESS_INFO => {
                let mut p = Pending::new(command, pk.start_ns, Reply::First);
                if command == COM_QUERY {
                    p.sql = query_text(&pk.body, self.capabilities).map(|t| String::from_utf8_lossy(t).into_owned());
                }
                p
            }
            COM_STMT_PREPARE => {
                let mut p = Pending::new(command, pk.start_ns, Reply::Prepared);
                p.sql = Some(String::from_utf8_lossy(&pk.body[1..]).into_owned());
                p
            }
            COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE | COM_STMT_FETCH | COM_STMT_RESET => {
                let reply = if command == COM_STMT_FETCH { Reply::Rows } else { Reply::First };
                let reply = if command == COM_STMT_RESET { Reply::One } else { reply };
                let mut p = Pending::new(command, pk.start_ns, reply);
                p.statement = statement_id(&pk.body);
                p.sql = p.statement.and_then(|id| self.statements.get(&id).cloned());
                if command == COM_STMT_BULK_EXECUTE {
                    p.command = COM_STMT_EXECUTE;
                }
                p
            }
            COM_FIELD_LIST => Pending::new(command, pk.start_ns, Reply::Rows),
            COM_CHANGE_USER => {
                self.phase = Phase::Auth;
                Pending::new(command, pk.start_ns, Reply::Auth)
            }
            _ => Pending::new(command, pk.start_ns, Reply::One),
        };
        if command == COM_INIT_DB {
            pending.database = Some(String::from_utf8_lossy(&pk.body[1..]).into_owned());
        }
        if self.inflight.front().is_some_and(|p| p.started) {
            // A new command while a reply was being read: it ends at the last read; the new
            // command's reply starts afresh.
            let end = ended(self.system, self.database.as_deref());
            if let Some(call) = self.inflight.cut_front(self.last_read_ns, &mut self.stats, end) {
                self.done.push(call);
            }
        }
        if self.inflight.len() >= MAX_INFLIGHT {
            self.give_up();
            return;
        }
        self.inflight.push_back(pending);
    }

    fn server_packet(&mut self, pk: &Packet) -> Option<DbCall> {
        if !self.in_sequence(pk) {
            self.lose_back(pk.end_ns);
            return None;
        }
        if pk.continuation {
            // More of a packet already classified (a row longer than 16 MiB).
            return None;
        }
        let first = pk.body.first().copied();
        match self.phase {
            Phase::Greeting => {
                match greeting(&pk.body) {
                    Some(g) => {
                        // MariaDB answers the MySQL protocol; its greeting's version says which
                        // it is ("5.5.5-10.11.6-MariaDB-0+deb12u1"), and the conventions name it
                        // apart. Anything else (MySQL, Percona, ...) is `mysql`.
                        if g.version.contains("MariaDB") {
                            self.system = MARIADB;
                        }
                        self.server_capabilities = g.capabilities;
                        self.phase = Phase::Login;
                    }
                    // An ERR instead (too many connections, host blocked), or not a greeting.
                    None => self.give_up(),
                }
                None
            }
            Phase::Login => {
                // The server spoke out of turn.
                self.stats.unmatched_replies += 1;
                None
            }
            Phase::Auth => {
                if !matches!(first, Some(0x00 | 0xff)) {
                    // An auth switch request or more data: the exchange goes on.
                    return None;
                }
                self.phase = Phase::Ready;
                match self.inflight.front() {
                    Some(p) if p.reply == Reply::Auth => {
                        let mut p = self.inflight.pop_front().expect("front exists");
                        if first == Some(0xff) {
                            p.error = Some(err(&pk.body));
                        }
                        Some(make_call(p, pk.end_ns, self.system, self.database.as_deref(), false))
                    }
                    _ => None,
                }
            }
            Phase::Ready => {
                let Some(front) = self.inflight.front_mut() else {
                    if pk.seq == 1 {
                        self.stats.unmatched_replies += 1;
                    }
                    return None;
                };
                front.started = true;
                if !reply_packet(front, pk, self.capabilities, &mut self.infile) {
                    return None;
                }
                let p = self.inflight.pop_front().expect("front exists");
                self.finished(p, pk.end_ns)
            }
        }
    }

    /// A command's reply is complete.
    fn finished(&mut self, p: Pending, end_ns: u64) -> Option<DbCall> {
        if p.error.is_none() {
            match p.command {
                COM_STMT_PREPARE => {
                    if let (Some(id), Some(sql)) = (p.statement, &p.sql) {
                        if self.statements.len() < MAX_STATEMENTS || self.statements.contains_key(&id) {
                            self.statements.insert(id, sql.clone());
                        }
                    }
                }
                COM_INIT_DB => self.database.clone_from(&p.database),
                COM_QUERY => {
                    if let Some(db) = p.sql.as_deref().and_then(used_database) {
                        self.database = Some(db);
                    }
                }
                _ => {}
            }
        }
        emits(&p).then(|| make_call(p, end_ns, self.system, self.database.as_deref(), false))
    }
}

/// Whether a finished command is a call: a statement's housekeeping (its prepare, its reset) is
/// one only when the server refused it.
fn emits(p: &Pending) -> bool {
    !matches!(p.command, COM_STMT_PREPARE | COM_STMT_RESET) || p.error.is_some()
}

/// What a command in flight becomes when it ends before its reply was read to the end: after a
/// reply gap, a call if it [`emits`] one; at close, always an unanswered call.
fn ended<'a>(
    system: &'static str,
    database: Option<&'a str>,
) -> impl FnMut(Pending, u64, EndedBy) -> Option<DbCall> + 'a {
    move |p, end_ns, by| match by {
        EndedBy::ReplyGap => emits(&p).then(|| make_call(p, end_ns, system, database, false)),
        EndedBy::Close => Some(make_call(p, end_ns, system, database, true)),
    }
}

/// The database of a `USE db` statement.
pub(super) fn used_database(sql: &str) -> Option<String> {
    let s = sql.trim_start();
    let rest = s.get(..4).filter(|w| w.eq_ignore_ascii_case("use ")).map(|_| s[4..].trim())?;
    let name = rest.trim_end_matches(';').trim();
    let name = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')).unwrap_or(name);
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

/// One server packet of `p`'s reply; true when the reply is complete.
fn reply_packet(p: &mut Pending, pk: &Packet, capabilities: u64, infile: &mut bool) -> bool {
    let b = &pk.body;
    let first = b.first().copied();
    let deprecate_eof = capabilities & CLIENT_DEPRECATE_EOF != 0;
    // MariaDB's progress reports (an ERR numbered 0xffff) come before the real reply.
    if first == Some(0xff)
        && capabilities & MARIADB_CLIENT_PROGRESS != 0
        && b.get(1..3) == Some(&[0xff, 0xff][..])
        && p.reply != Reply::Rows
    {
        return false;
    }
    if first == Some(0xff) && !matches!(p.reply, Reply::Columns { .. } | Reply::Skip { .. }) {
        if p.error.is_none() {
            p.error = Some(err(b));
        }
        return true;
    }
    match p.reply {
        Reply::One | Reply::Auth => true,
        Reply::First | Reply::Infile => match first {
            Some(0x00) => ok_status(b).is_none_or(|s| s & SERVER_MORE_RESULTS_EXISTS == 0),
            Some(0xfb) if p.reply == Reply::First => {
                p.reply = Reply::Infile;
                *infile = true;
                false
            }
            _ => {
                // A result set: its column count (and, with cached or optional metadata, whether
                // the column definitions follow).
                let Some((columns, rest)) = lenenc(b) else { return true };
                let metadata = if capabilities & CLIENT_OPTIONAL_RESULTSET_METADATA != 0
                    || (capabilities & MARIADB_CLIENT_CACHE_METADATA != 0 && p.command == COM_STMT_EXECUTE)
                {
                    rest.first().is_none_or(|&m| m != 0)
                } else {
                    true
                };
                p.rows.get_or_insert(0);
                p.reply = if metadata && columns > 0 {
                    Reply::Columns { left: columns }
                } else if deprecate_eof {
                    Reply::Rows
                } else {
                    Reply::ColumnsEof
                };
                false
            }
        },
        Reply::Columns { left } => {
            p.reply = if left > 1 {
                Reply::Columns { left: left - 1 }
            } else if deprecate_eof {
                Reply::Rows
            } else {
                Reply::ColumnsEof
            };
            false
        }
        Reply::ColumnsEof => {
            // A cursor was opened (COM_STMT_EXECUTE with a cursor): rows come by COM_STMT_FETCH.
            if eof_status(b).is_some_and(|s| s & SERVER_STATUS_CURSOR_EXISTS != 0) && p.command == COM_STMT_EXECUTE {
                return true;
            }
            p.reply = Reply::Rows;
            false
        }
        Reply::Rows => {
            // 0xfe starts an EOF (or, under CLIENT_DEPRECATE_EOF, the OK ending the rows); a row
            // starting 0xfe has a first value of 16 MiB or more, so its packet is a full one.
            if first == Some(0xfe) && pk.len < MAX_PAYLOAD && (deprecate_eof || pk.len < 9) {
                let status = if deprecate_eof { ok_status(b) } else { eof_status(b) };
                let more = status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0);
                if more {
                    p.reply = Reply::First;
                }
                return !more;
            }
            if p.command != COM_FIELD_LIST {
                p.rows = Some(p.rows.unwrap_or(0) + 1);
            }
            false
        }
        Reply::Prepared => {
            let Some((id, columns, params)) = prepare_ok(b).filter(|_| first == Some(0x00)) else { return true };
            p.statement = Some(id);
            let eof = u64::from(!deprecate_eof);
            let left = if params > 0 { u64::from(params) + eof } else { 0 }
                + if columns > 0 { u64::from(columns) + eof } else { 0 };
            if left == 0 {
                return true;
            }
            p.reply = Reply::Skip { left };
            false
        }
        Reply::Skip { left } => {
            if left <= 1 {
                return true;
            }
            p.reply = Reply::Skip { left: left - 1 };
            false
        }
    }
}

impl ClientProtocol for MysqlConnection {
    fn on_write(&mut self, p: &Piece) -> Vec<Call> {
        MysqlConnection::on_write(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_read(&mut self, p: &Piece) -> Vec<Call> {
        MysqlConnection::on_read(self, p).into_iter().map(Call::Db).collect()
    }

    fn on_close(&mut self) -> Vec<Call> {
        MysqlConnection::on_close(self).into_iter().map(Call::Db).collect()
    }

    fn stats(&self) -> &DbStats {
        &self.stats
    }

    fn protocol(&self) -> &'static str {
        PROTOCOL
    }
}

#[cfg(test)]
impl MysqlConnection {
    /// The capabilities both sides announced.
    pub(super) fn capabilities(&self) -> u64 {
        self.capabilities
    }
}
