//! The reply side: complete top-level replies as the client reads them, nested aggregates
//! followed by their counts, bulk values skipped by their lengths. Only an error's text is kept.
use super::framing::{parse_int, read_line, LineRead, MAX_COUNT, MAX_LINE};
use crate::piece::Piece;

/// Deepest nesting of reply aggregates followed.
const MAX_DEPTH: usize = 64;

/// One complete top-level reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// The error line of `-ERR ...` or `!<len>` bulk errors.
    pub(super) error: Option<String>,
    pub(super) end_ns: u64,
}

#[derive(Debug)]
pub(super) enum RepState {
    /// At a value's type byte (or inside its header line).
    Value {
        buf: Vec<u8>,
    },
    /// Inside a bulk value's bytes and CRLF; `keep` for bulk errors.
    Bulk {
        remaining: u64,
        keep: Option<Vec<u8>>,
    },
    Lost,
}

/// What a top-level value is, to decide whether it pairs with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopKind {
    Reply,
    Push,
    Attribute,
}

/// The reply side: complete top-level replies as they are read.
#[derive(Debug)]
pub(super) struct Replies {
    pub(super) state: RepState,
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
    top: TopKind,
    error: Option<String>,
}

impl Replies {
    pub(super) fn new() -> Self {
        Replies { state: RepState::Value { buf: Vec::new() }, stack: Vec::new(), top: TopKind::Reply, error: None }
    }

    /// A value ended: pop finished aggregates; a finished top-level value is a reply (unless it
    /// was a push or an attribute).
    fn value_done(&mut self, end_ns: u64, out: &mut Vec<Reply>) {
        while let Some(top) = self.stack.last_mut() {
            *top -= 1;
            if *top > 0 {
                return;
            }
            self.stack.pop();
        }
        if self.top == TopKind::Reply {
            out.push(Reply { error: self.error.take(), end_ns });
        }
        self.error = None;
        self.top = TopKind::Reply;
    }

    pub(super) fn feed(&mut self, p: &Piece, out: &mut Vec<Reply>) -> bool {
        let mut pos = 0u64;
        while pos < p.len {
            match &mut self.state {
                RepState::Lost => return false,
                RepState::Value { buf } => {
                    let line = match read_line(p, &mut pos, buf) {
                        LineRead::More => continue,
                        LineRead::Lost => {
                            self.state = RepState::Lost;
                            return false;
                        }
                        LineRead::Done(l) => l,
                    };
                    let Some((&ty, rest)) = line.split_first() else {
                        self.state = RepState::Lost;
                        return false;
                    };
                    let at_top = self.stack.is_empty();
                    let n = match ty {
                        b'+' | b':' | b',' | b'#' | b'(' | b'_' => {
                            self.value_done(p.end_ns, out);
                            continue;
                        }
                        b'-' => {
                            if at_top {
                                self.error = Some(String::from_utf8_lossy(rest).into_owned());
                            }
                            self.value_done(p.end_ns, out);
                            continue;
                        }
                        b'$' | b'*' | b'%' | b'~' | b'>' | b'|' | b'!' | b'=' => match parse_int(rest) {
                            Some(n) if n <= MAX_COUNT => n,
                            _ => {
                                self.state = RepState::Lost;
                                return false;
                            }
                        },
                        _ => {
                            self.state = RepState::Lost;
                            return false;
                        }
                    };
                    match ty {
                        b'$' | b'!' | b'=' if n < 0 => self.value_done(p.end_ns, out),
                        b'$' | b'!' | b'=' => {
                            let keep = (ty == b'!' && at_top).then(Vec::new);
                            self.state = RepState::Bulk { remaining: n as u64 + 2, keep };
                        }
                        _ if n <= 0 => self.value_done(p.end_ns, out),
                        _ => {
                            if self.stack.len() >= MAX_DEPTH {
                                self.state = RepState::Lost;
                                return false;
                            }
                            if at_top {
                                self.top = match ty {
                                    b'>' => TopKind::Push,
                                    b'|' => TopKind::Attribute,
                                    _ => TopKind::Reply,
                                };
                            }
                            let elems = if matches!(ty, b'%' | b'|') { n as u64 * 2 } else { n as u64 };
                            self.stack.push(elems);
                        }
                    }
                }
                RepState::Bulk { remaining, keep } => {
                    let n = (*remaining).min(p.len - pos);
                    if let Some(k) = keep {
                        let at = pos as usize;
                        let content = n.min(remaining.saturating_sub(2)) as usize;
                        let captured = p.data.len().saturating_sub(at).min(content);
                        let take = captured.min(MAX_LINE.saturating_sub(k.len()));
                        k.extend_from_slice(&p.data[at..at + take]);
                    }
                    *remaining -= n;
                    pos += n;
                    if *remaining == 0 {
                        if let Some(k) = keep.take() {
                            self.error = Some(String::from_utf8_lossy(&k).into_owned());
                        }
                        self.state = RepState::Value { buf: Vec::new() };
                        self.value_done(p.end_ns, out);
                    }
                }
            }
        }
        true
    }
}
