//! Pairs the requests read from one accepted connection with the responses written to it.
//! HTTP/1.x answers in order, so the response being written always belongs to the oldest request
//! still waiting: a FIFO is enough for keep-alive and pipelining.

use std::collections::VecDeque;

use super::stream::{Event, Framing, Head, Kind, Stream};
use crate::piece::Piece;

/// A request and (if it came) its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: Head,
    /// Entry of the syscall that returned the request's first bytes.
    pub start_ns: u64,
    /// Request body bytes; the declared length when the body had not been read in full.
    pub request_body: u64,
    request_done: bool,
    pub response: Option<Head>,
    pub response_body: u64,
    /// Exit of the syscall that wrote the response's last bytes (or the last seen activity).
    pub end_ns: u64,
    /// Why the exchange ended without a complete response.
    pub incomplete: Option<Incomplete>,
    /// Another connection's span tells of this request (a worker's side of a request uWSGI's
    /// HTTP router forwarded: the router's span carries it).
    pub handed_off: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// The connection closed before any response head.
    NoResponse,
    /// The connection closed in the middle of the response body.
    ResponseCut,
}

impl Incomplete {
    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::NoResponse => "no_response",
            Incomplete::ResponseCut => "response_incomplete",
        }
    }
}

/// What one event on the connection produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub finished: Vec<Exchange>,
    /// Request heads read in this event: the newest this many of [`Connection::pending_requests`].
    pub requests: u32,
    pub malformed_requests: u32,
    pub malformed_responses: u32,
    /// Responses seen with no request to pair them with (the request came before we attached).
    pub unmatched_responses: u32,
}

/// Which end of the connection the traced process is: a server reads requests and writes
/// responses; a client (an outgoing call) writes requests and reads responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Server,
    Client,
}

#[derive(Debug)]
pub struct Connection {
    role: Role,
    requests: Stream,
    responses: Stream,
    pending: VecDeque<Exchange>,
    /// Index in `pending` of the exchange whose response is being written, once its head is seen.
    responding: bool,
    /// Skip the body of a response that had no request (so the next head is found).
    orphan_response: bool,
    /// Exit of the last syscall that carried response bytes.
    last_response_end_ns: u64,
}

/// Requests waiting for their response on one connection; beyond this the oldest are dropped
/// (a client pipelining without reading is not a server we can follow).
const MAX_PENDING: usize = 64;

impl Default for Connection {
    fn default() -> Self {
        Connection::new(Role::Server)
    }
}

impl Connection {
    pub fn new(role: Role) -> Self {
        Connection {
            role,
            requests: Stream::new(Kind::Request),
            responses: Stream::new(Kind::Response),
            // Room for one exchange: most connections carry one request at a time, and VecDeque's
            // first growth (four exchanges) is an allocation too big for malloc's fast caches.
            pending: VecDeque::with_capacity(1),
            responding: false,
            orphan_response: false,
            last_response_end_ns: 0,
        }
    }

    /// The traced process read `piece` from the socket.
    pub fn on_read(&mut self, piece: &Piece) -> Outcome {
        match self.role {
            Role::Server => self.requests_in(piece),
            Role::Client => self.responses_in(piece),
        }
    }

    /// The traced process wrote `piece` to the socket.
    pub fn on_write(&mut self, piece: &Piece) -> Outcome {
        match self.role {
            Role::Server => self.responses_in(piece),
            Role::Client => self.requests_in(piece),
        }
    }

    fn requests_in(&mut self, piece: &Piece) -> Outcome {
        let mut out = Outcome::default();
        let mut pos = 0;
        while let Some(ev) = self.requests.next(piece, &mut pos) {
            match ev {
                Event::Head { head, start_ns, end_ns } => {
                    let framing = head.declared_framing();
                    let declared = match framing {
                        Some(Framing::Length(n)) => n,
                        _ => 0,
                    };
                    if self.pending.len() == MAX_PENDING {
                        self.pending.pop_front();
                        out.malformed_requests += 1;
                    }
                    out.requests += 1;
                    self.pending.push_back(Exchange {
                        request: head,
                        start_ns,
                        request_body: declared,
                        request_done: false,
                        response: None,
                        response_body: 0,
                        end_ns,
                        incomplete: None,
                        handed_off: false,
                    });
                    // A request without a valid length has no body (RFC 9112 6.3, last rule).
                    if let Some(Event::Done { body_size, .. }) =
                        self.requests.set_framing(framing.unwrap_or(Framing::None), end_ns)
                    {
                        self.request_done(body_size);
                    }
                }
                Event::Done { body_size, .. } => self.request_done(body_size),
                Event::Malformed { .. } => out.malformed_requests += 1,
            }
        }
        out
    }

    fn request_done(&mut self, body_size: u64) {
        if let Some(x) = self.pending.iter_mut().rev().find(|x| !x.request_done) {
            x.request_body = body_size;
            x.request_done = true;
        }
    }

    fn responses_in(&mut self, piece: &Piece) -> Outcome {
        let mut out = Outcome::default();
        self.last_response_end_ns = piece.end_ns;
        let mut pos = 0;
        while let Some(ev) = self.responses.next(piece, &mut pos) {
            match ev {
                Event::Head { head, end_ns, .. } => {
                    let framing = self.response_framing(head, &mut out);
                    if let Some(done) = self.responses.set_framing(framing, end_ns) {
                        self.response_done(&done, &mut out);
                    }
                }
                done @ Event::Done { .. } => self.response_done(&done, &mut out),
                Event::Malformed { .. } => out.malformed_responses += 1,
            }
        }
        out
    }

    /// Attaches a response head to its request and decides how its body is framed.
    fn response_framing(&mut self, head: Head, out: &mut Outcome) -> Framing {
        let interim = (100..200).contains(&head.status) && head.status != 101;
        let Some(x) = self.pending.front_mut() else {
            if !interim {
                out.unmatched_responses += 1;
                self.orphan_response = true;
            }
            return head.declared_framing().unwrap_or(Framing::UntilClose);
        };
        if interim {
            // 100 Continue and friends: the final response follows.
            return Framing::None;
        }
        let no_body = x.request.method == "HEAD" || head.status == 204 || head.status == 304;
        let framing = match head.declared_framing() {
            _ if no_body => Framing::None,
            Some(Framing::None) | None => Framing::UntilClose,
            Some(f) => f,
        };
        x.response = Some(head);
        self.responding = true;
        framing
    }

    fn response_done(&mut self, done: &Event, out: &mut Outcome) {
        let &Event::Done { body_size, end_ns } = done else { return };
        if std::mem::take(&mut self.orphan_response) {
            return;
        }
        if !std::mem::take(&mut self.responding) {
            return; // an interim response
        }
        if let Some(mut x) = self.pending.pop_front() {
            x.response_body = body_size;
            x.end_ns = end_ns;
            out.finished.push(x);
        }
    }

    /// The process closed the socket: finish what can be finished, report the rest as incomplete.
    pub fn on_close(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let written = self.responses.body_so_far();
        if let Some(done) = self.responses.close() {
            self.response_done(&done, &mut out);
        }
        let cut = std::mem::take(&mut self.responding);
        for (i, mut x) in self.pending.drain(..).enumerate() {
            if i == 0 && cut {
                // The body bytes written before the cut.
                x.response_body = written;
            }
            x.incomplete = Some(if i == 0 && cut { Incomplete::ResponseCut } else { Incomplete::NoResponse });
            x.end_ns = x.end_ns.max(self.last_response_end_ns);
            out.finished.push(x);
        }
        out
    }

    /// Whether a request with this method and target is waiting for its response.
    pub fn awaits(&self, method: &str, target: &str) -> bool {
        self.pending.iter().any(|x| x.request.method == method && x.request.target == target)
    }

    /// Requests whose response has not been completed yet.
    /// The oldest request still waiting for its response: the one being served.
    pub fn oldest(&self) -> Option<&Exchange> {
        self.pending.front()
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The heads of the requests still waiting for (the end of) their response, oldest first.
    pub fn pending_requests(&self) -> impl DoubleEndedIterator<Item = &Head> {
        self.pending.iter().map(|x| &x.request)
    }

    /// Marks the oldest waiting request that `matches` and is not yet handed off as told by
    /// another connection's span (see [`Exchange::handed_off`]); false when there is none.
    pub fn hand_off(&mut self, matches: impl Fn(&Head) -> bool) -> bool {
        match self.pending.iter_mut().find(|x| !x.handed_off && matches(&x.request)) {
            Some(x) => {
                x.handed_off = true;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(data: &[u8], t: u64) -> Piece<'_> {
        Piece { data, len: data.len() as u64, start_ns: t, end_ns: t + 1 }
    }

    fn summary(xs: &[Exchange]) -> Vec<(String, u16, u64, u64, u64, u64)> {
        xs.iter()
            .map(|x| {
                (
                    format!("{} {}", x.request.method, x.request.target),
                    x.response.as_ref().map_or(0, |h| h.status),
                    x.request_body,
                    x.response_body,
                    x.start_ns,
                    x.end_ns,
                )
            })
            .collect()
    }

    #[test]
    fn sync_worker_sequence() {
        // Gunicorn sync: recvfrom (request), sendto (head), sendto (body), close.
        let mut c = Connection::default();
        assert!(c.on_read(&p(b"GET /users/7 HTTP/1.1\r\nHost: a\r\n\r\n", 100)).finished.is_empty());
        assert!(c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 200)).finished.is_empty());
        let out = c.on_write(&p(b"{\"id\": 7}", 300));
        assert_eq!(summary(&out.finished), [("GET /users/7".into(), 200, 0, 9, 100, 301)]);
        assert_eq!(c.on_close(), Outcome::default());
    }

    #[test]
    fn keep_alive_and_pipelining() {
        let mut c = Connection::default();
        c.on_read(&p(b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz", 10));
        assert_eq!(c.in_flight(), 2);
        let out = c.on_write(&p(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nbb",
            20,
        ));
        assert_eq!(
            summary(&out.finished),
            [("GET /a".into(), 200, 0, 1, 10, 21), ("POST /b".into(), 201, 3, 2, 10, 21)]
        );
        c.on_read(&p(b"DELETE /c HTTP/1.1\r\n\r\n", 30));
        let out = c.on_write(&p(b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 0\r\n\r\n", 40));
        assert_eq!(summary(&out.finished), [("DELETE /c".into(), 404, 0, 0, 30, 41)]);
    }

    #[test]
    fn expect_continue_skips_interim_response() {
        let mut c = Connection::default();
        c.on_read(&p(b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 10));
        assert!(c.on_write(&p(b"HTTP/1.1 100 Continue\r\n\r\n", 20)).finished.is_empty());
        c.on_read(&p(b"data", 30));
        let out = c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 40));
        assert_eq!(summary(&out.finished), [("PUT /x".into(), 200, 4, 2, 10, 41)]);
    }

    #[test]
    fn head_request_has_no_response_body() {
        let mut c = Connection::default();
        c.on_read(&p(b"HEAD / HTTP/1.1\r\n\r\n", 1));
        let out = c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 2));
        assert_eq!(summary(&out.finished), [("HEAD /".into(), 200, 0, 0, 1, 3)]);
    }

    #[test]
    fn response_until_close_ends_at_last_write() {
        let mut c = Connection::default();
        c.on_read(&p(b"GET / HTTP/1.0\r\n\r\n", 1));
        c.on_write(&p(b"HTTP/1.0 200 OK\r\n\r\nab", 2));
        c.on_write(&p(b"cd", 5));
        let out = c.on_close();
        assert_eq!(summary(&out.finished), [("GET /".into(), 200, 0, 4, 1, 6)]);
        assert_eq!(out.finished[0].incomplete, None);
    }

    #[test]
    fn close_mid_response_and_without_response() {
        let mut c = Connection::default();
        c.on_read(&p(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1));
        c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 2));
        let out = c.on_close();
        let kinds: Vec<_> = out.finished.iter().map(|x| x.incomplete).collect();
        assert_eq!(kinds, [Some(Incomplete::ResponseCut), Some(Incomplete::NoResponse)]);
        assert_eq!(out.finished[0].response_body, 3, "the body bytes written before the cut");
        assert_eq!(out.finished[1].response_body, 0);
    }

    #[test]
    fn response_without_request_is_counted_and_skipped() {
        let mut c = Connection::default();
        let out = c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1));
        assert_eq!(out.unmatched_responses, 1);
        c.on_read(&p(b"GET /n HTTP/1.1\r\n\r\n", 2));
        let out = c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3));
        assert_eq!(summary(&out.finished), [("GET /n".into(), 200, 0, 0, 2, 4)]);
    }

    #[test]
    fn each_read_says_how_many_request_heads_it_carried() {
        let mut c = Connection::default();
        assert_eq!(c.on_read(&p(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHo", 1)).requests, 1);
        assert_eq!(c.on_read(&p(b"st: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n", 2)).requests, 2);
        let newest: Vec<_> = c.pending_requests().rev().take(2).map(|h| h.target.as_str()).collect();
        assert_eq!(newest, ["/c", "/b"]);
        assert_eq!(c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3)).requests, 0);
    }

    #[test]
    fn handed_off_request_finishes_marked() {
        let mut c = Connection::default();
        c.on_read(&p(b"GET /a HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n", 1));
        let waiting: Vec<_> = c.pending_requests().map(|h| h.target.clone()).collect();
        assert_eq!(waiting, ["/a", "/big"]);
        assert!(c.hand_off(|h| h.target == "/big"));
        assert!(!c.hand_off(|h| h.target == "/big"), "each request is handed off once");
        assert!(!c.hand_off(|h| h.target == "/none"));
        c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 2));
        c.on_write(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nxx", 3));
        let out = c.on_close();
        let marks: Vec<_> =
            out.finished.iter().map(|x| (x.request.target.as_str(), x.handed_off, x.incomplete)).collect();
        assert_eq!(marks, [("/big", true, Some(Incomplete::ResponseCut))]);
    }

    #[test]
    fn relayed_body_captured_short_is_counted_in_full() {
        // uWSGI's HTTP router relays a 1 MiB response in 4 KiB writes; while the ring buffer
        // fills, the kernel captures 1 KiB of each (tracer_common::PRESSED_CAPTURE_LEN). Every
        // byte is still counted, and the head, in the first write, still parses.
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n";
        let mut first = head.to_vec();
        first.resize(4096, b'x');
        let cut = tracer_common::PRESSED_CAPTURE_LEN;
        let mut c = Connection::default();
        c.on_read(&p(b"GET /big/1048576 HTTP/1.1\r\nHost: a\r\n\r\n", 1));
        let mut t = 10;
        let mut out = c.on_write(&Piece { data: &first[..cut], len: 4096, start_ns: t, end_ns: t + 1 });
        let mut left = head.len() as u64 + 1_048_576 - 4096;
        let chunk = [b'x'; 4096];
        while left > 0 {
            t += 10;
            let len = left.min(4096);
            out = c.on_write(&Piece { data: &chunk[..cut.min(len as usize)], len, start_ns: t, end_ns: t + 1 });
            left -= len;
        }
        assert_eq!(summary(&out.finished), [("GET /big/1048576".into(), 200, 0, 1_048_576, 1, t + 1)]);
        assert_eq!(out.finished[0].incomplete, None);
        assert_eq!(c.on_close(), Outcome::default());
    }

    #[test]
    fn garbage_is_counted_not_paired() {
        let mut c = Connection::default();
        let out = c.on_read(&p(b"\x00\x01\x02 nonsense\r\n\r\n", 1));
        assert_eq!(out.malformed_requests, 1);
        let out = c.on_write(&p(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 2));
        assert!(out.finished.is_empty());
        assert_eq!(out.unmatched_responses, 1);
    }

    #[test]
    fn client_role_pairs_written_requests_with_read_responses() {
        // An outgoing call: the process writes the request and reads the response.
        let mut c = Connection::new(Role::Client);
        assert!(c.on_write(&p(b"GET /items/2 HTTP/1.1\r\nHost: b\r\n\r\n", 100)).finished.is_empty());
        let out = c.on_read(&p(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200));
        assert_eq!(summary(&out.finished), [("GET /items/2".into(), 200, 0, 2, 100, 201)]);
    }
}
