//! The few packets a span needs, read from their captured first bytes: the server's greeting,
//! the client's handshake response, commands, and OK, ERR and EOF.

// Capability flags (both sides announce theirs; a feature is on when both have it).
pub(super) const CLIENT_CONNECT_WITH_DB: u64 = 0x8;
pub(super) const CLIENT_COMPRESS: u64 = 0x20;
pub(super) const CLIENT_PROTOCOL_41: u64 = 0x200;
pub(super) const CLIENT_SSL: u64 = 0x800;
pub(super) const CLIENT_SECURE_CONNECTION: u64 = 0x8000;
pub(super) const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u64 = 0x20_0000;
pub(super) const CLIENT_DEPRECATE_EOF: u64 = 0x100_0000;
pub(super) const CLIENT_OPTIONAL_RESULTSET_METADATA: u64 = 0x200_0000;
pub(super) const CLIENT_ZSTD_COMPRESSION: u64 = 0x400_0000;
pub(super) const CLIENT_QUERY_ATTRIBUTES: u64 = 0x800_0000;
/// MariaDB's own capabilities sit above bit 32 (in the greeting's and the response's filler,
/// announced when the server leaves bit 0, CLIENT_MYSQL, clear).
const CLIENT_MYSQL: u64 = 0x1;
pub(super) const MARIADB_CLIENT_PROGRESS: u64 = 1 << 32;
pub(super) const MARIADB_CLIENT_CACHE_METADATA: u64 = 1 << 36;

// Server status flags of OK and EOF packets.
pub(super) const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x40;
pub(super) const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;

// Commands.
pub(super) const COM_QUIT: u8 = 0x01;
pub(super) const COM_INIT_DB: u8 = 0x02;
pub(super) const COM_QUERY: u8 = 0x03;
pub(super) const COM_FIELD_LIST: u8 = 0x04;
pub(super) const COM_PROCESS_INFO: u8 = 0x0a;
pub(super) const COM_CHANGE_USER: u8 = 0x11;
pub(super) const COM_BINLOG_DUMP: u8 = 0x12;
pub(super) const COM_STMT_PREPARE: u8 = 0x16;
pub(super) const COM_STMT_EXECUTE: u8 = 0x17;
pub(super) const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub(super) const COM_STMT_CLOSE: u8 = 0x19;
pub(super) const COM_STMT_RESET: u8 = 0x1a;
pub(super) const COM_STMT_FETCH: u8 = 0x1c;
pub(super) const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
/// The last command byte defined (COM_RESET_CONNECTION, 0x1f; MariaDB's bulk execute is 0xfa).
const COM_LAST: u8 = 0x1f;
pub(super) const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// A byte that starts a command.
pub(super) fn is_command(c: u8) -> bool {
    (1..=COM_LAST).contains(&c) || c == COM_STMT_BULK_EXECUTE
}

/// `db.operation.name` of a command that carries no SQL: its protocol name without `COM_`.
pub(super) fn command_name(c: u8) -> &'static str {
    match c {
        0x02 => "INIT_DB",
        0x04 => "FIELD_LIST",
        0x05 => "CREATE_DB",
        0x06 => "DROP_DB",
        0x07 => "REFRESH",
        0x08 => "SHUTDOWN",
        0x09 => "STATISTICS",
        0x0a => "PROCESS_INFO",
        0x0c => "PROCESS_KILL",
        0x0d => "DEBUG",
        0x0e => "PING",
        0x11 => "CHANGE_USER",
        0x16 => "STMT_PREPARE",
        0x1a => "STMT_RESET",
        0x1b => "SET_OPTION",
        0x1c => "STMT_FETCH",
        0x1f => "RESET_CONNECTION",
        _ => "COMMAND",
    }
}

/// A length-encoded integer at the start of `b`, and the bytes after it. None when cut, or for
/// 0xfb (NULL) and 0xff (not an integer).
pub(super) fn lenenc(b: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = b.split_first()?;
    let n = match first {
        0..=0xfa => return Some((u64::from(first), rest)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..n)?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    Some((u64::from_le_bytes(v), &rest[n..]))
}

fn le16(b: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

fn le32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// NUL-terminated string at the start of `b`, and the rest after the NUL.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// What the greeting (Initial Handshake v10) says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Greeting {
    pub(super) version: String,
    pub(super) capabilities: u64,
}

pub(super) fn greeting(b: &[u8]) -> Option<Greeting> {
    let (&10, rest) = b.split_first()? else { return None };
    let (version, rest) = cstr(rest)?;
    // Connection id (4), first 8 bytes of the auth data, a filler byte.
    let rest = rest.get(13..)?;
    let low = u64::from(le16(rest)?);
    // Character set (1), status (2), then the upper capability bytes.
    let high = u64::from(le16(rest.get(5..)?)?);
    let mut capabilities = low | high << 16;
    if capabilities & CLIENT_MYSQL == 0 {
        // Auth data length (1), 6 reserved bytes, MariaDB's capabilities.
        if let Some(ext) = rest.get(14..).and_then(le32) {
            capabilities |= u64::from(ext) << 32;
        }
    }
    Some(Greeting { version: String::from_utf8_lossy(version).into_owned(), capabilities })
}

/// What the client's first packet is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Login {
    /// The short packet asking for TLS: nothing after it is readable.
    SslRequest,
    /// A handshake response (protocol 4.1): its capabilities and database, when given.
    Response { capabilities: u64, database: Option<String> },
    /// An old-protocol (3.20) response, or not a response at all.
    Other,
}

/// Handshake Response 41: capabilities (4), max packet size (4), character set (1), 23 filler
/// bytes (MariaDB's own capabilities in the last 4), user, auth response, database.
pub(super) fn login(b: &[u8], len: u32) -> Login {
    let Some(low) = le32(b) else { return Login::Other };
    let mut capabilities = u64::from(low);
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Login::Other;
    }
    if capabilities & CLIENT_SSL != 0 && len == 32 {
        return Login::SslRequest;
    }
    if capabilities & CLIENT_MYSQL == 0 {
        if let Some(ext) = b.get(28..).and_then(le32) {
            capabilities |= u64::from(ext) << 32;
        }
    }
    let database = (|| {
        if capabilities & CLIENT_CONNECT_WITH_DB == 0 {
            return None;
        }
        let (_user, rest) = cstr(b.get(32..)?)?;
        let rest = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            let (n, r) = lenenc(rest)?;
            r.get(usize::try_from(n).ok()?..)?
        } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let (&n, r) = rest.split_first()?;
            r.get(n as usize..)?
        } else {
            cstr(rest)?.1
        };
        let (db, _) = cstr(rest)?;
        (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned())
    })();
    Login::Response { capabilities, database }
}

/// The status flags of an OK packet (0x00, or 0xfe ending a result set under
/// CLIENT_DEPRECATE_EOF): after the affected rows and the last insert id.
pub(super) fn ok_status(b: &[u8]) -> Option<u16> {
    let (_, rest) = lenenc(b.get(1..)?)?;
    let (_, rest) = lenenc(rest)?;
    le16(rest)
}

/// The status flags of an EOF packet (0xfe, warnings (2), status (2)).
pub(super) fn eof_status(b: &[u8]) -> Option<u16> {
    le16(b.get(3..)?)
}

/// An ERR packet: its error code and message (after the `#` and the SQLSTATE, when there).
pub(super) fn err(b: &[u8]) -> (u16, String) {
    let code = b.get(1..).and_then(le16).unwrap_or(0);
    let mut msg = b.get(3..).unwrap_or_default();
    if msg.first() == Some(&b'#') {
        msg = msg.get(6..).unwrap_or_default();
    }
    (code, String::from_utf8_lossy(msg).into_owned())
}

/// The 4-byte statement id right after a command byte (COM_STMT_EXECUTE, _CLOSE, _RESET, ...)
/// or the PREPARE_OK's status byte.
pub(super) fn statement_id(b: &[u8]) -> Option<u32> {
    le32(b.get(1..)?)
}

/// PREPARE_OK: status 0x00, statement id (4), columns (2), parameters (2).
pub(super) fn prepare_ok(b: &[u8]) -> Option<(u32, u16, u16)> {
    Some((statement_id(b)?, le16(b.get(5..)?)?, le16(b.get(7..)?)?))
}

/// The text of a COM_QUERY payload (after its command byte). Under CLIENT_QUERY_ATTRIBUTES
/// the text follows a parameter count and set count; a query sent with attributes (count > 0)
/// has their values before the text, which are not followed: None.
pub(super) fn query_text(b: &[u8], capabilities: u64) -> Option<&[u8]> {
    let rest = b.get(1..)?;
    if capabilities & CLIENT_QUERY_ATTRIBUTES == 0 {
        return Some(rest);
    }
    let (count, rest) = lenenc(rest)?;
    let (_sets, rest) = lenenc(rest)?;
    (count == 0).then_some(rest)
}
