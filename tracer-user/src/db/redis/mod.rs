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
mod attributes;
mod commands;
mod framing;
mod replies;
mod requests;
mod session;
#[cfg(test)]
mod tests;

pub use commands::key_count;
pub use requests::looks_like_request;
pub use session::RedisConnection;

/// `db.system.name`.
pub const SYSTEM: &str = "redis";
