//! One direction of an HTTP/1.x connection, reassembled from syscall-sized pieces of which only a
//! bounded prefix was captured. The parser needs real bytes only where framing lives (heads and
//! chunk-size lines); body bytes are skipped by count, so a 1 MB body costs nothing to follow.

use super::chunked::{ChunkStep, ChunkedDecoder};
pub use super::head::{Framing, Head, Kind};
use super::{http1, uwsgi};
use crate::piece::Piece;

/// Heads larger than this are not buffered further: the message is reported with what was seen.
/// Room for the largest uwsgi vars block (16-bit size) and its 4-byte header.
pub const MAX_HEAD: usize = 64 * 1024 + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete head; the caller must answer with `set_framing`.
    Head { head: Head, start_ns: u64, end_ns: u64 },
    /// The body (possibly empty) ended: the message is complete.
    Done { body_size: u64, end_ns: u64 },
    /// Bytes that are not HTTP: the stream is skipped until a piece starts with a plausible head.
    Malformed { reason: String },
}

#[derive(Debug)]
enum State {
    /// Waiting for (more of) a head.
    Head {
        buf: Vec<u8>,
        start_ns: Option<u64>,
    },
    /// A head was returned; waiting for the caller's framing decision.
    AwaitFraming,
    Body {
        remaining: u64,
        body: u64,
    },
    Chunked {
        dec: ChunkedDecoder,
        body: u64,
    },
    UntilClose {
        body: u64,
        last_end_ns: u64,
    },
    /// Lost track of message boundaries (uncaptured framing bytes or garbage).
    Unsynced,
}

#[derive(Debug)]
pub struct Stream {
    kind: Kind,
    state: State,
}

impl Stream {
    pub fn new(kind: Kind) -> Self {
        Stream { kind, state: State::Head { buf: Vec::new(), start_ns: None } }
    }

    /// True while a message has begun but not ended.
    pub fn mid_message(&self) -> bool {
        match &self.state {
            State::Head { buf, .. } => !buf.is_empty(),
            State::Unsynced => false,
            _ => true,
        }
    }

    /// Feeds `piece` from byte `*pos`; returns the next event, or None when the piece is used up.
    /// Call again with the same piece and position until it returns None.
    pub fn next(&mut self, piece: &Piece, pos: &mut u64) -> Option<Event> {
        loop {
            if *pos >= piece.len {
                return None;
            }
            match &mut self.state {
                State::Head { buf, start_ns } => {
                    let at = *pos as usize;
                    if at >= piece.data.len() {
                        // The head's bytes were not captured: nothing to parse.
                        let had = !buf.is_empty();
                        self.state = State::Unsynced;
                        *pos = piece.len;
                        return had.then(|| Event::Malformed { reason: "head bytes beyond the capture window".into() });
                    }
                    if buf.is_empty() && start_ns.is_none() {
                        *start_ns = Some(piece.start_ns);
                    }
                    let before = buf.len();
                    let room = MAX_HEAD.saturating_sub(before);
                    let avail = &piece.data[at..];
                    let avail = &avail[..avail.len().min(room)];
                    if before == 0 {
                        // Nearly every head arrives whole in one piece: parsed where it lies,
                        // without copying the piece (up to the capture size) into the buffer.
                        // Anything else takes the buffered path below, which parses again.
                        if let Ok(Some((head, n))) = parse_head(self.kind, avail) {
                            let start = start_ns.unwrap_or(piece.start_ns);
                            *pos += n as u64;
                            self.state = State::AwaitFraming;
                            return Some(Event::Head { head, start_ns: start, end_ns: piece.end_ns });
                        }
                    }
                    buf.extend_from_slice(avail);
                    match parse_head(self.kind, buf) {
                        Ok(Some((head, n))) => {
                            let start = start_ns.unwrap_or(piece.start_ns);
                            *pos += (n - before) as u64;
                            self.state = State::AwaitFraming;
                            return Some(Event::Head { head, start_ns: start, end_ns: piece.end_ns });
                        }
                        Ok(None) => {
                            let truncated_capture = (piece.data.len() as u64) < piece.len;
                            if truncated_capture || buf.len() >= MAX_HEAD {
                                // The rest of this head was never captured: report what we have.
                                let start = start_ns.unwrap_or(piece.start_ns);
                                let partial = parse_partial(self.kind, buf);
                                *pos = piece.len;
                                self.state = State::Unsynced;
                                return Some(match partial {
                                    Some(head) => Event::Head { head, start_ns: start, end_ns: piece.end_ns },
                                    None => Event::Malformed { reason: "head larger than the capture window".into() },
                                });
                            }
                            *pos = piece.len;
                            return None;
                        }
                        Err(reason) => {
                            self.state = State::Unsynced;
                            *pos = piece.len;
                            return Some(Event::Malformed { reason });
                        }
                    }
                }
                State::AwaitFraming => {
                    // The caller did not set framing: treat as bodiless.
                    self.state = State::Head { buf: Vec::new(), start_ns: None };
                }
                State::Body { remaining, body } => {
                    let take = (*remaining).min(piece.len - *pos);
                    *pos += take;
                    *remaining -= take;
                    *body += take;
                    if *remaining == 0 {
                        let body_size = *body;
                        self.state = State::Head { buf: Vec::new(), start_ns: None };
                        return Some(Event::Done { body_size, end_ns: piece.end_ns });
                    }
                }
                State::Chunked { dec, body } => match dec.feed(piece, pos) {
                    ChunkStep::More(n) => *body += n,
                    ChunkStep::Done(n) => {
                        let body_size = *body + n;
                        self.state = State::Head { buf: Vec::new(), start_ns: None };
                        return Some(Event::Done { body_size, end_ns: piece.end_ns });
                    }
                    ChunkStep::Lost => {
                        self.state = State::Unsynced;
                        *pos = piece.len;
                        return Some(Event::Malformed { reason: "chunk framing beyond the capture window".into() });
                    }
                },
                State::UntilClose { body, last_end_ns } => {
                    *body += piece.len - *pos;
                    *last_end_ns = piece.end_ns;
                    *pos = piece.len;
                }
                State::Unsynced => {
                    // Resynchronise only at the start of a piece that begins like a message.
                    if *pos == 0 && looks_like_start(self.kind, piece.data) {
                        self.state = State::Head { buf: Vec::new(), start_ns: None };
                    } else {
                        *pos = piece.len;
                    }
                }
            }
        }
    }

    /// The caller's answer to a Head event. Returns Done at once for a bodiless message.
    pub fn set_framing(&mut self, framing: Framing, head_end_ns: u64) -> Option<Event> {
        if !matches!(self.state, State::AwaitFraming) {
            return None; // e.g. a truncated head already moved the stream to Unsynced
        }
        self.state = match framing {
            Framing::None | Framing::Length(0) => {
                self.state = State::Head { buf: Vec::new(), start_ns: None };
                return Some(Event::Done { body_size: 0, end_ns: head_end_ns });
            }
            Framing::Length(n) => State::Body { remaining: n, body: 0 },
            Framing::Chunked => State::Chunked { dec: ChunkedDecoder::default(), body: 0 },
            Framing::UntilClose => State::UntilClose { body: 0, last_end_ns: head_end_ns },
        };
        None
    }

    /// Body bytes of the message in progress seen so far (0 between messages).
    pub fn body_so_far(&self) -> u64 {
        match &self.state {
            State::Body { body, .. } | State::Chunked { body, .. } | State::UntilClose { body, .. } => *body,
            _ => 0,
        }
    }

    /// The connection closed: a body that runs until close is complete now.
    pub fn close(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.state, State::Unsynced) {
            State::UntilClose { body, last_end_ns } => Some(Event::Done { body_size: body, end_ns: last_end_ns }),
            _ => None,
        }
    }
}

/// A request may be a uwsgi packet (behind nginx or uWSGI's router) or HTTP; a response is HTTP.
fn parse_head(kind: Kind, buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    if kind == Kind::Request && uwsgi::is_packet_start(buf) {
        return uwsgi::parse(buf, false);
    }
    http1::parse_head(kind, buf)
}

fn parse_partial(kind: Kind, buf: &[u8]) -> Option<Head> {
    if kind == Kind::Request && uwsgi::is_packet_start(buf) {
        return uwsgi::parse(buf, true).ok().flatten().map(|(h, _)| h);
    }
    http1::parse_partial(kind, buf)
}

/// Whether `data`, the first bytes a server read, plausibly start a request: an HTTP request
/// line or a uwsgi packet header.
pub fn starts_request(data: &[u8]) -> bool {
    looks_like_start(Kind::Request, data)
}

fn looks_like_start(kind: Kind, data: &[u8]) -> bool {
    (kind == Kind::Request && uwsgi::is_packet_start(data)) || http1::looks_like_start(kind, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(data: &[u8], t: u64) -> Piece<'_> {
        Piece { data, len: data.len() as u64, start_ns: t, end_ns: t + 1 }
    }

    /// Feeds pieces, answering heads with their declared framing, and collects the events.
    fn run(kind: Kind, pieces: &[Piece]) -> Vec<Event> {
        let mut s = Stream::new(kind);
        let mut out = vec![];
        for p in pieces {
            let mut pos = 0;
            while let Some(ev) = s.next(p, &mut pos) {
                if let Event::Head { head, end_ns, .. } = &ev {
                    let framing = match (kind, head.declared_framing()) {
                        (Kind::Response, Some(Framing::None)) => Framing::UntilClose,
                        (_, f) => f.unwrap_or(Framing::None),
                    };
                    let end = *end_ns;
                    out.push(ev.clone());
                    if let Some(done) = s.set_framing(framing, end) {
                        out.push(done);
                    }
                    continue;
                }
                out.push(ev);
            }
        }
        if let Some(ev) = s.close() {
            out.push(ev);
        }
        out
    }

    fn heads(evs: &[Event]) -> Vec<String> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Head { head, .. } => Some(format!("{} {}", head.method, head.target)),
                _ => None,
            })
            .collect()
    }

    fn dones(evs: &[Event]) -> Vec<(u64, u64)> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Done { body_size, end_ns } => Some((*body_size, *end_ns)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn simple_get() {
        let evs = run(Kind::Request, &[piece(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", 10)]);
        assert_eq!(heads(&evs), ["GET /a?b=1"]);
        assert_eq!(dones(&evs), [(0, 11)]);
    }

    #[test]
    fn head_split_across_pieces_keeps_first_start() {
        let evs = run(Kind::Request, &[piece(b"GET / HT", 10), piece(b"TP/1.1\r\n", 20), piece(b"\r\n", 30)]);
        match &evs[0] {
            Event::Head { start_ns, end_ns, .. } => assert_eq!((*start_ns, *end_ns), (10, 31)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let msg = b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let pieces: Vec<Piece> = msg.chunks(1).enumerate().map(|(i, c)| piece(c, i as u64 * 10)).collect();
        let evs = run(Kind::Request, &pieces);
        assert_eq!(heads(&evs), ["POST /p"]);
        assert_eq!(dones(&evs), [(3, (msg.len() as u64 - 1) * 10 + 1)]);
    }

    #[test]
    fn pipelined_requests_in_one_piece() {
        let evs = run(
            Kind::Request,
            &[piece(
                b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
                5,
            )],
        );
        assert_eq!(heads(&evs), ["POST /a", "GET /b", "GET /c"]);
        assert_eq!(dones(&evs).iter().map(|d| d.0).collect::<Vec<_>>(), [2, 0, 0]);
    }

    #[test]
    fn large_body_skipped_by_count_without_capture() {
        // 1 MB body in 8 KiB reads of which 4 KiB are captured.
        let head = b"POST /u HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
        let junk = vec![b'x'; 4096];
        let mut pieces = vec![piece(head, 0)];
        for i in 0..128 {
            pieces.push(Piece { data: &junk, len: 8192, start_ns: 100 + i, end_ns: 200 + i });
        }
        pieces.push(piece(b"GET /next HTTP/1.1\r\n\r\n", 1000));
        let evs = run(Kind::Request, &pieces);
        assert_eq!(heads(&evs), ["POST /u", "GET /next"]);
        assert_eq!(dones(&evs), [(1_048_576, 327), (0, 1001)]);
    }

    #[test]
    fn chunked_body_with_trailer() {
        let evs = run(
            Kind::Request,
            &[
                piece(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 0),
                piece(b"6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n", 10),
            ],
        );
        assert_eq!(dones(&evs), [(11, 11)]);
    }

    #[test]
    fn response_until_close() {
        let evs = run(Kind::Response, &[piece(b"HTTP/1.0 200 OK\r\n\r\nabc", 0), piece(b"defg", 10)]);
        assert_eq!(dones(&evs), [(7, 11)]);
    }

    #[test]
    fn garbage_then_resync_at_next_piece() {
        let evs = run(
            Kind::Request,
            &[piece(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 0), piece(b"GET /ok HTTP/1.1\r\n\r\n", 10)],
        );
        assert!(matches!(evs[0], Event::Malformed { .. }), "{evs:?}");
        assert_eq!(heads(&evs), ["GET /ok"]);
    }

    #[test]
    fn head_longer_than_capture_is_reported_truncated() {
        let mut msg = b"GET /long?q=1 HTTP/1.1\r\nUser-Agent: t\r\nCookie: ".to_vec();
        msg.extend(vec![b'c'; 8000]);
        let p = Piece { data: &msg[..4096], len: msg.len() as u64 + 4, start_ns: 0, end_ns: 1 };
        let mut s = Stream::new(Kind::Request);
        let mut pos = 0;
        match s.next(&p, &mut pos) {
            Some(Event::Head { head, .. }) => {
                assert!(head.truncated);
                assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/long?q=1"));
                assert_eq!(head.header("user-agent"), Some("t"));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(pos, p.len);
    }

    #[test]
    fn invalid_content_length_is_not_a_framing() {
        let mut s = Stream::new(Kind::Request);
        let p = piece(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 0);
        let mut pos = 0;
        let Some(Event::Head { head, .. }) = s.next(&p, &mut pos) else { panic!() };
        assert_eq!(head.declared_framing(), None);
    }
}
