//! A call's facts, gathered while it is in flight, and the span attributes they become.
use serde_json::json;

use super::messages::returned_rows;
use super::SYSTEM;
use crate::calls::DbCall;
use crate::db::{base_attributes, sql};
use crate::spans::semconv;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Startup,
    Simple,
    Extended,
}

/// A call written and not yet answered by its ReadyForQuery.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) kind: Kind,
    pub(super) start_ns: u64,
    pub(super) sql: Option<String>,
    pub(super) executes: u32,
    /// The last CommandComplete tag.
    pub(super) tag: Option<String>,
    /// The first ErrorResponse: (SQLSTATE, message).
    pub(super) error: Option<(String, String)>,
}

pub(super) fn make_call(p: Pending, end_ns: u64, database: Option<&str>, closed: bool) -> DbCall {
    let raw = p.sql.as_deref().unwrap_or("");
    let operation = sql::operation(raw).unwrap_or_default();
    let query_text = p.sql.as_deref().map(sql::sanitize).filter(|q| !q.is_empty());
    let mut attributes = base_attributes(SYSTEM, &operation, query_text.as_deref());
    if let Some(db) = database {
        attributes.insert(semconv::DB_NAMESPACE.into(), json!(db));
    }
    if p.executes > 1 {
        attributes.insert(semconv::DB_OPERATION_BATCH_SIZE.into(), json!(p.executes));
    }
    if let Some(rows) = p.tag.as_deref().and_then(returned_rows) {
        attributes.insert(semconv::DB_RESPONSE_RETURNED_ROWS.into(), json!(rows));
    }
    let error = p.error.map(|(code, message)| {
        if closed && code.is_empty() {
            attributes.insert(semconv::ERROR_TYPE.into(), json!("connection_closed"));
        } else {
            let code = if code.is_empty() { "_OTHER".to_string() } else { code };
            attributes.insert(semconv::DB_RESPONSE_STATUS_CODE.into(), json!(code));
            attributes.insert(semconv::ERROR_TYPE.into(), json!(code));
        }
        message
    });
    DbCall { start_ns: p.start_ns, end_ns, system: SYSTEM, operation, query_text, attributes, error }
}
