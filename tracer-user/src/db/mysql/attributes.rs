//! A call's facts, gathered while it is in flight, and the span attributes they become.
use serde_json::json;

use super::packets::{command_name, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE};
use crate::calls::DbCall;
use crate::db::sql::{self, Dialect};
use crate::db::{base_attributes, truncate, MAX_QUERY_TEXT};
use crate::spans::semconv;

/// Where a reply is: what its next packet can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// The first packet of a response: OK, ERR, a LOCAL INFILE request or a result set's column
    /// count (again after a result that said more results follow).
    First,
    /// Column definitions left to skip, then the EOF after them (without CLIENT_DEPRECATE_EOF)
    /// or straight to the rows.
    Columns { left: u64 },
    /// The EOF after the column definitions.
    ColumnsEof,
    /// Rows, until an EOF (or under CLIENT_DEPRECATE_EOF an OK starting 0xfe) or an ERR.
    Rows,
    /// The server asked for a local file: the client sends it, then the server's OK or ERR.
    Infile,
    /// PREPARE_OK or ERR.
    Prepared,
    /// Parameter and column definitions (and their EOFs) after a PREPARE_OK.
    Skip { left: u64 },
    /// One packet: OK, ERR, EOF or a string.
    One,
    /// COM_CHANGE_USER's authentication, until OK or ERR.
    Auth,
}

/// A command written and not yet answered in full.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) command: u8,
    pub(super) start_ns: u64,
    /// The statement's text (COM_QUERY, COM_STMT_PREPARE, and COM_STMT_EXECUTE's remembered one).
    pub(super) sql: Option<String>,
    /// The statement id (COM_STMT_EXECUTE, _FETCH, _RESET).
    pub(super) statement: Option<u32>,
    /// COM_INIT_DB's database.
    pub(super) database: Option<String>,
    pub(super) reply: Reply,
    /// A packet of its reply was read.
    pub(super) started: bool,
    /// Rows of the result sets so far, once one began.
    pub(super) rows: Option<u64>,
    /// The first ERR: code and message.
    pub(super) error: Option<(u16, String)>,
}

impl Pending {
    pub(super) fn new(command: u8, start_ns: u64, reply: Reply) -> Self {
        Pending {
            command,
            start_ns,
            sql: None,
            statement: None,
            database: None,
            reply,
            started: false,
            rows: None,
            error: None,
        }
    }
}

/// Why a call has no reply: the connection ended first.
pub(super) const CLOSED: &str = "connection closed before the reply";

pub(super) fn make_call(
    p: Pending,
    end_ns: u64,
    system: &'static str,
    namespace: Option<&str>,
    closed: bool,
) -> DbCall {
    let has_sql = matches!(p.command, COM_QUERY | COM_STMT_PREPARE | COM_STMT_EXECUTE | COM_STMT_FETCH);
    let raw = p.sql.as_deref().filter(|_| has_sql);
    let operation = match raw.and_then(|s| sql::operation_in(s, Dialect::MySql)) {
        Some(op) => op,
        None if p.command == COM_QUERY => String::new(),
        None => command_name(p.command).to_string(),
    };
    let query_text =
        raw.map(|s| truncate(sql::sanitize_in(s, Dialect::MySql), MAX_QUERY_TEXT)).filter(|q| !q.is_empty());
    let mut attributes = base_attributes(system, &operation, query_text.as_deref());
    if let Some(db) = namespace {
        attributes.insert(semconv::DB_NAMESPACE.into(), json!(db));
    }
    if let Some(rows) = p.rows {
        attributes.insert(semconv::DB_RESPONSE_RETURNED_ROWS.into(), json!(rows));
    }
    let error = if closed && p.error.is_none() {
        attributes.insert(semconv::ERROR_TYPE.into(), json!("connection_closed"));
        Some(CLOSED.to_string())
    } else {
        p.error.map(|(code, message)| {
            // The server's error number, as the conventions ask for MySQL and MariaDB.
            attributes.insert(semconv::DB_RESPONSE_STATUS_CODE.into(), json!(code.to_string()));
            attributes.insert(semconv::ERROR_TYPE.into(), json!(code.to_string()));
            message
        })
    };
    DbCall { start_ns: p.start_ns, end_ns, system, operation, query_text, attributes, error }
}
