//! A deliberately small HTTP/1.1 client over a bare TcpStream.
//!
//! Tests of a syscall-level tracer need to control exactly which bytes go out in which write
//! (keep-alive, pipelining, split writes), which client crates hide.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADERS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header of that name, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy), for assertions on text bodies.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced it will close the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// One client connection; successive requests reuse the socket (keep-alive). After a response
/// carrying `Connection: close` the socket is shut down, so later reads see EOF.
pub struct Conn {
    stream: TcpStream,
    port: u16,
    /// Bytes read past the end of the previous response (pipelined responses).
    buf: Vec<u8>,
    eof: bool,
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Build request bytes: `Host`, `User-Agent` unless given, then `headers`, then
/// `Content-Length` when the body is non-empty or the method is POST/PUT (unless given, or
/// `Transfer-Encoding` is given).
pub fn build_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "Host: 127.0.0.1:{port}\r\n");
    }
    if !has("user-agent") {
        head.push_str("User-Agent: pytracer-tests/1\r\n");
    }
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    let wants_length = !body.is_empty() || method == "POST" || method == "PUT";
    if wants_length && !has("content-length") && !has("transfer-encoding") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

impl Conn {
    /// Connect to 127.0.0.1:`port`; panics on failure.
    pub fn open(port: u16) -> Conn {
        Self::try_open(port).unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"))
    }

    pub fn try_open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, port, buf: Vec::new(), eof: false })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Wait up to `t` for each read and write instead of 10 s (a request the server takes long
    /// to answer on purpose).
    pub fn set_io_timeout(&mut self, t: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(t))?;
        self.stream.set_write_timeout(Some(t))
    }

    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().map_or(0, |a| a.port())
    }

    /// Send one request (one write) and read its response; panics on I/O or parse errors.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on port {}: {e}", self.port))
    }

    pub fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let req = build_request(self.port, method, path, headers, body);
        self.stream.write_all(&req)?;
        self.read_response_inner(method == "HEAD")
    }

    /// Write bytes as-is in a single write call (e.g. two pipelined requests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing {} raw bytes to port {}: {e}", bytes.len(), self.port));
    }

    /// Read the next response (after `send_raw`); panics on I/O or parse errors.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().unwrap_or_else(|e| panic!("reading response on port {}: {e}", self.port))
    }

    pub fn try_read_response(&mut self) -> io::Result<Response> {
        self.read_response_inner(false)
    }

    /// Close with a reset (SO_LINGER 0): no TIME_WAIT left on the port, as the fault suite's
    /// thousands of connections would leave.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt on our own socket with a local, correctly sized option value.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    /// Half-close our side, as a client does after its last request.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Whether the server has closed the connection (EOF seen or pending), without blocking.
    pub fn peer_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if self.eof {
            return true;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = match self.stream.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        let _ = self.stream.set_nonblocking(false);
        closed
    }

    /// Read more bytes into `buf`; false at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        // Read straight into the buffer's spare room, trimmed back to what arrived.
        let start = self.buf.len();
        self.buf.resize(start + 64 * 1024, 0);
        let read = loop {
            match self.stream.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        self.buf.truncate(start + n);
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// Ensure at least `n` buffered bytes.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed with {} of {n} bytes", self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    /// Take one CRLF-terminated line (without the CRLF) from the buffer.
    fn take_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF inside chunked body"));
            }
        }
    }

    fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        loop {
            let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut hdrs);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.buf.drain(..len);
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill()? {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed before a complete response head ({} bytes)", self.buf.len()),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io_err(format!(
                        "bad response head ({e}): {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    )))
                }
            }
        }
    }

    fn read_response_inner(&mut self, head_request: bool) -> io::Result<Response> {
        let (status, headers) = loop {
            let (status, headers) = self.read_head()?;
            // Interim responses (100 Continue) precede the real one.
            if !(100..200).contains(&status) || status == 101 {
                break (status, headers);
            }
        };
        let mut resp = Response { status, headers, body: Vec::new() };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = self.read_chunked()?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.trim().parse().map_err(|_| io_err(format!("bad Content-Length {len:?}")))?;
            self.fill_to(len)?;
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill()? {}
            resp.body = std::mem::take(&mut self.buf);
        }
        if resp.closes_connection() {
            // Close our side as real clients do. Gunicorn's sync worker half-closes and then
            // lingers (up to 2 s) until the client closes; keeping the socket open would stall
            // that worker and delay the next request it should serve.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        Ok(resp)
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.take_line()?;
            let line = String::from_utf8_lossy(&line);
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| io_err(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.take_line()?.is_empty() {}
                return Ok(body);
            }
            self.fill_to(size + 2)?;
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(io_err("chunk not followed by CRLF"));
            }
            self.buf.drain(..size + 2);
        }
    }
}

/// One request on a fresh connection with `Connection: close`; panics on failure.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        all.push(("Connection", "close"));
    }
    Conn::open(port).send(method, path, &all, body)
}

/// `GET path` on a fresh connection.
pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], b"")
}
