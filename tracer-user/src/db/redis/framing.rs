//! RESP's line framing, shared by both directions: headers and simple values are lines ended by
//! CRLF; a line that was not captured (or is absurdly long) loses the framing.
use crate::piece::Piece;

/// Longest line kept (array and bulk headers, inline commands, simple strings and errors).
pub(super) const MAX_LINE: usize = 4096;
/// Largest element count or bulk length believed (Redis's own limit on a bulk is 512 MB).
pub(super) const MAX_COUNT: i64 = 1 << 32;

pub(super) enum LineRead {
    /// The piece ended before the line did.
    More,
    /// The line, without its CRLF (or LF).
    Done(Vec<u8>),
    /// The line's bytes were not captured, or it is too long.
    Lost,
}

/// Reads up to and including the next `\n` from `p` at `*pos`, accumulating in `buf`.
pub(super) fn read_line(p: &Piece, pos: &mut u64, buf: &mut Vec<u8>) -> LineRead {
    let at = *pos as usize;
    if at >= p.data.len() {
        *pos = p.len;
        return LineRead::Lost;
    }
    let avail = &p.data[at..];
    if let Some(i) = avail.iter().position(|&c| c == b'\n') {
        buf.extend_from_slice(&avail[..i]);
        *pos += i as u64 + 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.len() > MAX_LINE {
            buf.truncate(MAX_LINE);
        }
        LineRead::Done(std::mem::take(buf))
    } else {
        buf.extend_from_slice(avail);
        *pos += avail.len() as u64;
        if buf.len() > MAX_LINE * 16 {
            return LineRead::Lost;
        }
        if (*pos) < p.len {
            // The rest of the line was not captured.
            return LineRead::Lost;
        }
        LineRead::More
    }
}

pub(super) fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}
