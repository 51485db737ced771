//! PostgreSQL message framing: where each message of one direction begins and ends, by its
//! declared length, keeping only the first bytes of a message's body that its type was given.
//! Bytes not captured are skipped by count; a header that was not captured (or is not valid)
//! loses the framing until a piece plausibly starts at a message boundary again.
use crate::piece::Piece;

pub(super) const SSL_REQUEST: u32 = 80_877_103;
pub(super) const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest StartupMessage accepted (PostgreSQL's own limit is 10000).
pub(super) const MAX_STARTUP: u32 = 10_000;
/// Largest message length believed: PostgreSQL refuses anything over 1 GB.
const MAX_MESSAGE: u32 = 1 << 30;

pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// True for the first bytes of a StartupMessage (protocol 3.x), SSLRequest, GSSENCRequest or
/// CancelRequest.
pub fn looks_like_startup(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let (len, code) = (be32(b), be32(&b[4..]));
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        // Protocol 3.x: a list of NUL-terminated names and values, ending with an empty name.
        c if c >> 16 == 3 && c & 0xffff < 100 => {
            (9..=MAX_STARTUP).contains(&len) && b.get(8).is_none_or(|c| c.is_ascii_lowercase() || *c == b'_' || *c == 0)
        }
        _ => false,
    }
}

/// True for the first bytes of a write that starts a call in a session already started: a
/// Query, Parse, Bind, Sync or Terminate whose headers, in what was captured, lead from one to
/// the next. For a connection first seen in the middle of its life.
pub fn looks_like_call(b: &[u8]) -> bool {
    let p = Piece { data: b, len: b.len() as u64, start_ns: 0, end_ns: 0 };
    Framer::new(super::messages::FRONTEND_TYPES).resyncs_at(&p, CALL_STARTS)
}

/// The messages a client's call can start with (a prepared statement's starts with Bind).
pub(super) const CALL_STARTS: &[u8] = b"QPBSX";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Length, then body: the StartupMessage and its relatives, which have no type byte.
    Untyped,
    /// Type byte, length, body.
    Typed,
    /// One byte without framing: the answer to an SSLRequest or GSSENCRequest.
    Byte,
}

/// One message: its type (0 when untyped), declared body length, and the captured prefix of its
/// body, at most the cap its type was given.
#[derive(Debug)]
pub(super) struct Msg {
    pub(super) ty: u8,
    pub(super) body: Vec<u8>,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
}

#[derive(Debug)]
pub(super) enum FState {
    Header { buf: [u8; 5], have: usize, start_ns: u64 },
    Body { ty: u8, remaining: u64, body: Vec<u8>, cap: usize, gap: bool, start_ns: u64 },
    Lost,
}

/// Message framing of one direction.
#[derive(Debug)]
pub(super) struct Framer {
    pub(super) state: FState,
    valid: &'static [u8],
}

pub(super) enum Step {
    Msg(Msg),
    Lost,
}

impl Framer {
    pub(super) fn new(valid: &'static [u8]) -> Self {
        Framer { state: FState::Header { buf: [0; 5], have: 0, start_ns: 0 }, valid }
    }

    pub(super) fn lost(&self) -> bool {
        matches!(self.state, FState::Lost)
    }

    pub(super) fn reset(&mut self) {
        self.state = FState::Header { buf: [0; 5], have: 0, start_ns: 0 };
    }

    /// The next complete message of `p` from `*pos`, or None when the piece is used up (or the
    /// framing is lost). `cap` gives how many body bytes to keep for a message type.
    pub(super) fn next(&mut self, p: &Piece, pos: &mut u64, mode: Mode, cap: impl Fn(u8) -> usize) -> Option<Step> {
        loop {
            if *pos >= p.len {
                return None;
            }
            match &mut self.state {
                FState::Lost => return None,
                FState::Header { buf, have, start_ns } => {
                    let want = match mode {
                        Mode::Typed => 5,
                        Mode::Untyped => 4,
                        Mode::Byte => 1,
                    };
                    let at = *pos as usize;
                    if at >= p.data.len() {
                        self.state = FState::Lost;
                        *pos = p.len;
                        return Some(Step::Lost);
                    }
                    if *have == 0 {
                        *start_ns = p.start_ns;
                    }
                    let take = (want - *have).min(p.data.len() - at);
                    buf[*have..*have + take].copy_from_slice(&p.data[at..at + take]);
                    *have += take;
                    *pos += take as u64;
                    if *have < want {
                        continue;
                    }
                    let start_ns = *start_ns;
                    let (ty, len) = match mode {
                        Mode::Byte => {
                            let ty = buf[0];
                            self.reset();
                            return Some(Step::Msg(Msg { ty, body: Vec::new(), start_ns, end_ns: p.end_ns }));
                        }
                        Mode::Untyped => {
                            let l = be32(&buf[..4]);
                            if !(8..=MAX_STARTUP).contains(&l) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            (0, l - 4)
                        }
                        Mode::Typed => {
                            let l = be32(&buf[1..5]);
                            if !self.valid.contains(&buf[0]) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            if !(4..=MAX_MESSAGE).contains(&l) {
                                self.state = FState::Lost;
                                return Some(Step::Lost);
                            }
                            (buf[0], l - 4)
                        }
                    };
                    if len == 0 {
                        self.reset();
                        return Some(Step::Msg(Msg { ty, body: Vec::new(), start_ns, end_ns: p.end_ns }));
                    }
                    let cap = cap(ty).min(len as usize);
                    self.state = FState::Body {
                        ty,
                        remaining: u64::from(len),
                        body: Vec::with_capacity(cap),
                        cap,
                        gap: false,
                        start_ns,
                    };
                }
                FState::Body { ty, remaining, body, cap, gap, start_ns } => {
                    let n = (*remaining).min(p.len - *pos);
                    if body.len() < *cap && !*gap {
                        let at = *pos as usize;
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
                    *remaining -= n;
                    *pos += n;
                    if *remaining == 0 {
                        let m = Msg { ty: *ty, body: std::mem::take(body), start_ns: *start_ns, end_ns: p.end_ns };
                        self.reset();
                        return Some(Step::Msg(m));
                    }
                }
            }
        }
    }

    /// After the framing was lost: whether `p` plausibly starts at a message boundary (every
    /// header in its captured bytes valid, the lengths leading from one to the next).
    pub(super) fn resyncs_at(&self, p: &Piece, first: &[u8]) -> bool {
        let d = p.data;
        if d.len() < 5 || !first.contains(&d[0]) {
            return false;
        }
        let mut at = 0usize;
        while at + 5 <= d.len() {
            let l = be32(&d[at + 1..]);
            if !self.valid.contains(&d[at]) || !(4..=MAX_MESSAGE).contains(&l) {
                return false;
            }
            at += 1 + l as usize;
        }
        // The last header read claims the rest of the capture (its body may run on past the
        // capture, or into the next piece); a header cut by the end of the capture is doubtful.
        at >= d.len()
    }
}

/// NUL-terminated string at the start of `b`, and the rest after the NUL.
pub(super) fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}
