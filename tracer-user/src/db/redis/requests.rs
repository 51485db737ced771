//! The request side: commands as the client writes them, arrays of bulk strings or inline
//! lines. Only the elements a span needs are kept (see `commands::KEPT`); the rest is skipped
//! by its declared length.
use super::commands::{Command, KEPT};
use super::framing::{parse_int, read_line, LineRead, MAX_COUNT};
use crate::piece::Piece;

/// Bytes kept of a command's name and subcommand.
const MAX_NAME: usize = 64;

/// True for the first bytes of a RESP request: `*<count>\r\n$`, or an inline command of a few
/// connection-level words (`PING`, `HELLO`, ...) that is not an HTTP request line.
pub fn looks_like_request(b: &[u8]) -> bool {
    if let Some(rest) = b.strip_prefix(b"*") {
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 10 {
            return false;
        }
        let after = &rest[digits..];
        return match after.len() {
            0 => true,
            1 => after == b"\r",
            2 => after == b"\r\n",
            _ => after.starts_with(b"\r\n$"),
        };
    }
    let line_end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..line_end];
    if line.windows(5).any(|w| w == b"HTTP/") {
        return false;
    }
    let word = line.split(|c| *c == b' ' || *c == b'\r').next().unwrap_or(b"");
    let word = String::from_utf8_lossy(word).to_ascii_uppercase();
    matches!(word.as_str(), "PING" | "HELLO" | "AUTH" | "SELECT" | "INFO" | "QUIT" | "ECHO")
        && (line_end < b.len() || line.len() > word.len())
}

#[derive(Debug)]
pub(super) enum ReqState {
    /// Waiting for an array header (`*N`) or an inline command line.
    Start,
    /// Reading a line: inline command (`inline`) or an array / bulk header.
    Line {
        buf: Vec<u8>,
        inline: bool,
    },
    /// Waiting for element `i` of `argc`: its bulk header line.
    BulkHeader {
        buf: Vec<u8>,
    },
    /// Inside element `i`'s bytes (and its CRLF).
    BulkBody {
        remaining: u64,
        keep: bool,
    },
    Lost,
}

/// The request side: commands as they are written.
#[derive(Debug)]
pub(super) struct Requests {
    pub(super) state: ReqState,
    /// The command being read: argc, elements kept (name, subcommand, numkeys), elements seen.
    argc: usize,
    seen: usize,
    elems: Vec<Vec<u8>>,
    start_ns: u64,
}

impl Requests {
    pub(super) fn new() -> Self {
        Requests { state: ReqState::Start, argc: 0, seen: 0, elems: Vec::new(), start_ns: 0 }
    }

    /// The command being read when the framing was lost, if its name was seen.
    pub(super) fn partial(&mut self) -> Option<Command> {
        let named = self.argc > 0 && self.elems.first().is_some_and(|e| !e.is_empty());
        named.then(|| self.finish())
    }

    fn finish(&mut self) -> Command {
        let elems = std::mem::take(&mut self.elems);
        self.state = ReqState::Start;
        self.seen = 0;
        Command::new(&elems, self.argc, self.start_ns)
    }

    /// Feeds a written piece; completed commands go to `out`. False when the framing was lost.
    #[expect(clippy::too_many_lines, reason = "one match over the request states, an arm each")]
    pub(super) fn feed(&mut self, p: &Piece, out: &mut Vec<Command>) -> bool {
        let mut pos = 0u64;
        while pos < p.len {
            match &mut self.state {
                ReqState::Lost => return false,
                ReqState::Start => {
                    let Some(&c) = p.data.get(pos as usize) else {
                        self.state = ReqState::Lost;
                        return false;
                    };
                    self.start_ns = p.start_ns;
                    self.elems.clear();
                    self.seen = 0;
                    if c == b'*' {
                        pos += 1;
                        self.state = ReqState::Line { buf: Vec::new(), inline: false };
                    } else if c == b'\r' || c == b'\n' {
                        // Stray line ends between inline commands.
                        pos += 1;
                    } else {
                        self.state = ReqState::Line { buf: Vec::new(), inline: true };
                    }
                }
                ReqState::Line { buf, inline } => {
                    let inline = *inline;
                    match read_line(p, &mut pos, buf) {
                        LineRead::More => {}
                        LineRead::Lost => {
                            self.state = ReqState::Lost;
                            return false;
                        }
                        LineRead::Done(line) => {
                            if inline {
                                let words: Vec<&[u8]> =
                                    line.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty()).collect();
                                if words.is_empty() {
                                    self.state = ReqState::Start;
                                    continue;
                                }
                                self.argc = words.len();
                                self.elems =
                                    words.iter().take(KEPT).map(|w| w[..w.len().min(MAX_NAME)].to_vec()).collect();
                                out.push(self.finish());
                            } else {
                                match parse_int(&line) {
                                    Some(n) if (1..=MAX_COUNT).contains(&n) => {
                                        self.argc = n as usize;
                                        self.state = ReqState::BulkHeader { buf: Vec::new() };
                                    }
                                    // `*0` or `*-1`: nothing to run.
                                    Some(n) if n <= 0 => self.state = ReqState::Start,
                                    _ => {
                                        self.state = ReqState::Lost;
                                        return false;
                                    }
                                }
                            }
                        }
                    }
                }
                ReqState::BulkHeader { buf } => match read_line(p, &mut pos, buf) {
                    LineRead::More => {}
                    LineRead::Done(line) if line.first() == Some(&b'$') => match parse_int(&line[1..]) {
                        Some(n) if (0..=MAX_COUNT).contains(&n) => {
                            let keep = self.seen < KEPT;
                            if keep {
                                self.elems.push(Vec::new());
                            }
                            self.state = ReqState::BulkBody { remaining: n as u64 + 2, keep };
                        }
                        _ => {
                            self.state = ReqState::Lost;
                            return false;
                        }
                    },
                    _ => {
                        self.state = ReqState::Lost;
                        return false;
                    }
                },
                ReqState::BulkBody { remaining, keep } => {
                    let n = (*remaining).min(p.len - pos);
                    if *keep {
                        let e = self.elems.last_mut().expect("pushed with the header");
                        let at = pos as usize;
                        // The element's bytes, not its CRLF; keep up to MAX_NAME.
                        let content = n.min(remaining.saturating_sub(2)) as usize;
                        let captured = p.data.len().saturating_sub(at).min(content);
                        let take = captured.min(MAX_NAME.saturating_sub(e.len()));
                        e.extend_from_slice(&p.data[at..at + take]);
                    }
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        self.seen += 1;
                        if self.seen == self.argc {
                            out.push(self.finish());
                        } else {
                            self.state = ReqState::BulkHeader { buf: Vec::new() };
                        }
                    }
                }
            }
        }
        true
    }
}
