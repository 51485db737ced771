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
mod attributes;
mod framing;
mod messages;
mod session;
#[cfg(test)]
mod tests;

pub use framing::{looks_like_call, looks_like_startup};
pub use session::PgConnection;

/// `db.system.name`.
pub const SYSTEM: &str = "postgresql";
