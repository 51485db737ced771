//! HTTP/1.x from the client's side of a connection: the requests a traced process sent and the
//! responses it read back, one [`HttpCall`] per exchange.
//!
//! The same connection parser as the server side does the work, in the client role: what the
//! client writes are requests, what it reads are responses.
use super::connection::{Connection, Exchange, Outcome, Role};
use crate::calls::{Call, ClientProtocol, HttpCall, ProtocolStats};
use crate::piece::Piece;

/// `protocol` label of the client metrics.
pub const PROTOCOL: &str = "http";

/// An HTTP/1.x request line starts with an upper-case method token and a space.
pub fn looks_like_request(b: &[u8]) -> bool {
    let method_len = b.iter().take(16).take_while(|c| c.is_ascii_uppercase()).count();
    method_len >= 3 && b.get(method_len) == Some(&b' ')
}

/// One HTTP client connection: feed it the client's writes and reads in order.
#[derive(Debug)]
pub struct HttpClient {
    conn: Connection,
    stats: ProtocolStats,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient { conn: Connection::new(Role::Client), stats: ProtocolStats::default() }
    }
}

impl HttpClient {
    fn finish(&mut self, out: Outcome) -> Vec<Call> {
        // A head that did not parse loses the stream's framing.
        self.stats.desyncs += u64::from(out.malformed_requests) + u64::from(out.malformed_responses);
        self.stats.unmatched_replies += u64::from(out.unmatched_responses);
        out.finished.into_iter().map(|x| Call::Http(call(x))).collect()
    }
}

impl ClientProtocol for HttpClient {
    fn on_write(&mut self, p: &Piece) -> Vec<Call> {
        let out = self.conn.on_write(p);
        self.finish(out)
    }

    fn on_read(&mut self, p: &Piece) -> Vec<Call> {
        let out = self.conn.on_read(p);
        self.finish(out)
    }

    fn on_close(&mut self) -> Vec<Call> {
        let out = self.conn.on_close();
        self.finish(out)
    }

    fn stats(&self) -> &ProtocolStats {
        &self.stats
    }

    fn protocol(&self) -> &'static str {
        PROTOCOL
    }
}

/// What a client span needs of an exchange.
fn call(x: Exchange) -> HttpCall {
    HttpCall {
        start_ns: x.start_ns,
        end_ns: x.end_ns,
        host: x.request.header("host").map(str::to_string),
        traceparent: x.request.header("traceparent").map(str::to_string),
        method: x.request.method,
        target: x.request.target,
        incomplete: x.incomplete.map(super::connection::Incomplete::as_str),
        request_headers: x.request.headers,
        status: x.response.as_ref().map(|r| r.status),
        response_headers: x.response.map(|r| r.headers).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_request_lines_are_recognised() {
        assert!(looks_like_request(b"GET /items/2 HTTP/1.1\r\n"));
        assert!(looks_like_request(b"DELETE / HTTP/1.1\r\n"));
        assert!(!looks_like_request(b"\x16\x03\x01\x02\x00"), "TLS");
        assert!(!looks_like_request(b"*2\r\n$3\r\nGET\r\n"), "Redis");
        assert!(!looks_like_request(b"\x12\x34\x01\x00\x00\x01"), "DNS");
    }

    #[test]
    fn a_request_written_and_its_response_read_are_one_call() {
        let piece = |d: &'static [u8], t: u64| Piece { data: d, len: d.len() as u64, start_ns: t, end_ns: t + 5 };
        let mut c = HttpClient::default();
        let req = b"GET /items/1?x=2 HTTP/1.1\r\nHost: backend:8001\r\ntraceparent: 00-a-b-01\r\n\r\n";
        assert!(c.on_write(&piece(req, 10)).is_empty());
        let calls = c.on_read(&piece(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 20));
        assert_eq!(
            calls,
            [Call::Http(HttpCall {
                start_ns: 10,
                end_ns: 25,
                method: "GET".into(),
                target: "/items/1?x=2".into(),
                host: Some("backend:8001".into()),
                traceparent: Some("00-a-b-01".into()),
                status: Some(404),
                incomplete: None,
                request_headers: vec![
                    ("host".into(), "backend:8001".into()),
                    ("traceparent".into(), "00-a-b-01".into())
                ],
                response_headers: vec![("content-length".into(), "0".into())],
            })]
        );
        c.on_write(&piece(b"POST /x HTTP/1.1\r\n\r\n", 30));
        let closed = c.on_close();
        let Some(Call::Http(x)) = closed.first() else { panic!("{closed:?}") };
        assert_eq!((x.status, x.incomplete), (None, Some("no_response")));
        assert_eq!(c.stats(), &ProtocolStats::default());
    }
}
