//! The few messages a span needs, and how much of each is kept: query text (`Query`, `Parse`),
//! statement and portal names (`Bind`, `Close`), the CommandComplete tag and the ErrorResponse
//! fields. Everything else (row data, parameters) is skipped by its length.
use super::framing::{cstr, MAX_STARTUP};

/// Longest query text kept from a Query or Parse message (the sanitized text is shorter still).
const MAX_SQL: usize = 16 * 1024;

/// Frontend (client) message types.
pub(super) const FRONTEND_TYPES: &[u8] = b"QPBDESXCHFdcfp";
/// Backend (server) message types.
pub(super) const BACKEND_TYPES: &[u8] = b"RSKZCEDTIN123nstGHWdcAvV";

/// Body bytes kept per frontend message type.
pub(super) fn front_cap(ty: u8) -> usize {
    match ty {
        0 => MAX_STARTUP as usize,
        b'Q' | b'P' => MAX_SQL,
        // Portal and statement names (each at most NAMEDATALEN, 64).
        b'B' | b'C' => 160,
        _ => 0,
    }
}

/// Body bytes kept per backend message type.
pub(super) fn back_cap(ty: u8) -> usize {
    match ty {
        b'C' => 128,
        b'E' => 4096,
        _ => 0,
    }
}

/// SQLSTATE (`C`) and message (`M`) of an ErrorResponse; a missing code is empty.
pub(super) fn error_fields(body: &[u8]) -> (String, String) {
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

/// Rows a CommandComplete tag says a query returned: `SELECT 3`, `FETCH 2`, `MOVE 0` (and the
/// DML tags with RETURNING, which cannot be told apart here, are left out).
pub(super) fn returned_rows(tag: &str) -> Option<u64> {
    let (cmd, n) = tag.rsplit_once(' ')?;
    matches!(cmd, "SELECT" | "FETCH").then(|| n.parse().ok()).flatten()
}
