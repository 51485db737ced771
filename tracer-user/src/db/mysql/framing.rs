//! MySQL packet framing: a 3-byte little-endian payload length and a sequence id, then the
//! payload. A payload of 16 MiB - 1 (the largest a packet holds) goes on in the next packet.
//! Each packet keeps only the first bytes of its payload it was given; the rest is skipped by
//! count, captured or not. A header that was not captured loses the framing.
use crate::piece::Piece;

/// The largest payload one packet carries; a packet this long is continued by the next.
pub(super) const MAX_PAYLOAD: u32 = 0x00ff_ffff;
/// Protocol version 10: every server since MySQL 3.21 (and every MariaDB).
const PROTOCOL_VERSION: u8 = 10;
/// A greeting is its version string, a few fixed fields and the authentication plugin's data
/// and name: far below this.
const MAX_GREETING: u32 = 1024;

/// One packet: its sequence id, declared payload length and the captured prefix of its payload.
#[derive(Debug)]
pub(super) struct Packet {
    pub(super) seq: u8,
    pub(super) len: u32,
    pub(super) body: Vec<u8>,
    /// The payload goes on in a packet before this one (a continuation of a 16 MiB payload).
    pub(super) continuation: bool,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
}

#[derive(Debug)]
enum FState {
    Header { buf: [u8; 4], have: usize, start_ns: u64 },
    Body { seq: u8, len: u32, remaining: u32, body: Vec<u8>, cap: usize, gap: bool, start_ns: u64 },
    Lost,
}

/// The packet framing of one direction.
#[derive(Debug)]
pub(super) struct Framer {
    state: FState,
    /// The last packet's payload was 16 MiB - 1: the next one continues it.
    continuing: bool,
}

pub(super) enum Step {
    Packet(Packet),
    /// A header was beyond the capture.
    Lost,
}

impl Framer {
    pub(super) fn new() -> Self {
        Framer { state: FState::Header { buf: [0; 4], have: 0, start_ns: 0 }, continuing: false }
    }

    pub(super) fn lost(&self) -> bool {
        matches!(self.state, FState::Lost)
    }

    pub(super) fn lose(&mut self) {
        self.state = FState::Lost;
    }

    pub(super) fn reset(&mut self) {
        *self = Framer::new();
    }

    /// The next complete packet of `p` from `*pos`, keeping at most `cap` payload bytes; None
    /// when the piece is used up or the framing is lost.
    pub(super) fn next(&mut self, p: &Piece, pos: &mut u64, cap: usize) -> Option<Step> {
        loop {
            if *pos >= p.len && !matches!(self.state, FState::Body { remaining: 0, .. }) {
                return None;
            }
            match &mut self.state {
                FState::Lost => return None,
                FState::Header { buf, have, start_ns } => {
                    let at = usize::try_from(*pos).unwrap_or(usize::MAX);
                    if at >= p.data.len() {
                        self.state = FState::Lost;
                        *pos = p.len;
                        return Some(Step::Lost);
                    }
                    if *have == 0 {
                        *start_ns = p.start_ns;
                    }
                    let take = (4 - *have).min(p.data.len() - at);
                    buf[*have..*have + take].copy_from_slice(&p.data[at..at + take]);
                    *have += take;
                    *pos += take as u64;
                    if *have < 4 {
                        continue;
                    }
                    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], 0]);
                    let cap = cap.min(len as usize);
                    self.state = FState::Body {
                        seq: buf[3],
                        len,
                        remaining: len,
                        body: Vec::with_capacity(cap),
                        cap,
                        gap: false,
                        start_ns: *start_ns,
                    };
                }
                FState::Body { seq, len, remaining, body, cap, gap, start_ns } => {
                    let n = u64::from(*remaining).min(p.len.saturating_sub(*pos));
                    if body.len() < *cap && !*gap {
                        let at = usize::try_from(*pos).unwrap_or(usize::MAX);
                        let captured = p.data.len().saturating_sub(at).min(n as usize);
                        let take = captured.min(*cap - body.len());
                        if take > 0 {
                            body.extend_from_slice(&p.data[at..at + take]);
                        }
                        if body.len() < *cap && (take as u64) < n {
                            // Wanted bytes that were not captured: keep what is contiguous.
                            *gap = true;
                        }
                    }
                    *remaining -= n as u32;
                    *pos += n;
                    if *remaining == 0 {
                        let packet = Packet {
                            seq: *seq,
                            len: *len,
                            body: std::mem::take(body),
                            continuation: self.continuing,
                            start_ns: *start_ns,
                            end_ns: p.end_ns,
                        };
                        self.continuing = *len == MAX_PAYLOAD;
                        self.state = FState::Header { buf: [0; 4], have: 0, start_ns: 0 };
                        return Some(Step::Packet(packet));
                    }
                }
            }
        }
    }
}

/// True for the first bytes a MySQL or MariaDB server sends: a greeting (sequence id 0,
/// protocol version 10, a printable version string), or only its 4-byte header, which cannot
/// tell yet (None: the caller waits for more).
pub fn looks_like_greeting(b: &[u8]) -> Option<bool> {
    if b.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    if b[3] != 0 || !(16..=MAX_GREETING).contains(&len) {
        return Some(false);
    }
    if *b.get(4)? != PROTOCOL_VERSION {
        return Some(false);
    }
    // The server's version: printable up to its NUL (as much of it as was read; none read yet
    // is given the benefit of the doubt).
    let rest = &b[5..b.len().min(4 + len as usize)];
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    let printable = rest[..end].iter().all(|c| (0x20..0x7f).contains(c));
    Some(rest.is_empty() || (end > 0 && printable))
}

/// After the client's framing was lost: whether `p` plausibly starts a command (sequence id 0,
/// a known command byte; any further header in the capture a continuation or another command).
pub(super) fn command_starts_at(p: &Piece, known: impl Fn(u8) -> bool) -> bool {
    let d = p.data;
    let mut at = 0usize;
    let mut continued: Option<u8> = None;
    while at + 4 <= d.len() {
        let len = u32::from_le_bytes([d[at], d[at + 1], d[at + 2], 0]);
        let seq = d[at + 3];
        match continued {
            Some(prev) if seq != prev.wrapping_add(1) => return false,
            Some(_) => {}
            None => {
                if seq != 0 || !d.get(at + 4).is_some_and(|&c| known(c)) {
                    return false;
                }
            }
        }
        continued = (len == MAX_PAYLOAD).then_some(seq);
        at += 4 + len as usize;
    }
    at >= d.len() && !d.is_empty() && d.len() >= 5
}
