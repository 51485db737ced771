//! MySQL's client/server protocol (the classic protocol, version 10), from the client's side;
//! MariaDB speaks the same.
//!
//! The server speaks first: its greeting names the server (a MariaDB version string makes
//! `db.system.name` `mariadb`, anything else `mysql`) and its capabilities. The client's
//! handshake response carries the database (`db.namespace`, changed later by `COM_INIT_DB` or a
//! `USE`); an SSL request (TLS) or compression gives the connection up. Authentication
//! exchanges are skipped until the server's OK or ERR.
//!
//! Then every command starts a fresh packet sequence and is answered in order, one reply per
//! command but for the few that have none (`COM_QUIT`, `COM_STMT_CLOSE`,
//! `COM_STMT_SEND_LONG_DATA`). A call is a command up to the end of its reply: `COM_QUERY`,
//! `COM_STMT_EXECUTE` (with the text remembered from its `COM_STMT_PREPARE`, by the statement id
//! the server's PREPARE_OK gave), `COM_PING`, `COM_INIT_DB` and the rest. A prepare, and a
//! statement reset, give a call only when the server refused them (as PostgreSQL's prepare-only
//! sequences do): they are the statement's housekeeping, not its run.
//!
//! Packets are framed by their 3-byte length and checked by their sequence ids; only the first
//! bytes of a packet are kept (a command's text, a reply's first bytes), rows and column
//! definitions are skipped by length even when they were not captured. What framing cannot
//! follow leans on the client waiting for each reply, as PyMySQL, mysqlclient and
//! mysql-connector-python do: a reply cut by the capture, or read as longer than it was, ends at
//! the last read before the client's next command; everything of the kind is counted.
//!
//! A connection is recognised by its greeting; one already open when the agent attached (a
//! pool's) is followed from its next write that is a whole command a call starts with
//! ([`looks_like_command`]), without what its handshake said: no `db.namespace` until a
//! `COM_INIT_DB` or `USE`, and `mysql` as `db.system.name` (the greeting that would say MariaDB
//! was never seen).
mod attributes;
mod framing;
mod packets;
mod session;
#[cfg(test)]
mod tests;

pub use framing::looks_like_greeting;
pub use session::MysqlConnection;

/// A write that is one or more whole packets, the first a command (sequence id 0) that starts a
/// call: COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_INIT_DB or COM_PING. Where a
/// connection opened before the agent is picked up.
pub fn looks_like_command(write: &[u8]) -> bool {
    let p = crate::piece::Piece { data: write, len: write.len() as u64, start_ns: 0, end_ns: 0 };
    framing::command_starts_at(&p, |c| {
        matches!(
            c,
            packets::COM_QUERY
                | packets::COM_STMT_PREPARE
                | packets::COM_STMT_EXECUTE
                | packets::COM_INIT_DB
                | COM_PING
        )
    })
}

const COM_PING: u8 = 0x0e;

/// The protocol's name: the `protocol` label of its metrics, for MySQL and MariaDB alike.
pub const PROTOCOL: &str = "mysql";
/// `db.system.name` of a MySQL server (and of any server whose greeting does not say MariaDB).
pub const MYSQL: &str = "mysql";
/// `db.system.name` of a MariaDB server: the conventions name it apart from MySQL.
pub const MARIADB: &str = "mariadb";
