//! A call's facts (the commands written together and their replies) and the span attributes
//! they become.
use serde_json::json;

use super::commands::Command;
use super::SYSTEM;
use crate::calls::DbCall;
use crate::db::{base_attributes, truncate, MAX_QUERY_TEXT};
use crate::spans::semconv;

/// Commands written together (no read in between): one call.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) commands: Vec<Command>,
    /// Replies received so far, in order.
    pub(super) errors: Vec<Option<String>>,
}

pub(super) fn make_call(b: Batch, end_ns: u64) -> DbCall {
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
        attributes.insert(semconv::DB_OPERATION_BATCH_SIZE.into(), json!(b.commands.len()));
    }
    let keys: Option<u64> = b.commands.iter().map(|c| c.keys).sum();
    if let Some(k) = keys {
        attributes.insert(semconv::DB_REDIS_KEY_COUNT.into(), json!(k));
    }
    // The first error of the batch is the call's.
    let error = b.errors.into_iter().flatten().next();
    if let Some(e) = &error {
        // The error's prefix, by convention its kind: ERR, WRONGTYPE, NOSCRIPT, ...
        let code = e.split(' ').next().unwrap_or("ERR").to_string();
        attributes.insert(semconv::DB_RESPONSE_STATUS_CODE.into(), json!(code));
        attributes.insert(semconv::ERROR_TYPE.into(), json!(code));
    }
    DbCall {
        start_ns: first.start_ns,
        end_ns,
        system: SYSTEM,
        operation,
        query_text: Some(query_text),
        attributes,
        error,
    }
}
