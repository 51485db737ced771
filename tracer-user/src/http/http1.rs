//! HTTP/1.x heads with httparse, and a best-effort reading of heads cut by the capture window.
use std::mem::MaybeUninit;

use super::head::{header_name, Head, HeaderName, Kind};

const MAX_HEADERS: usize = 128;

/// A complete head and its length in bytes; Ok(None) while more bytes are needed.
pub fn parse_head(kind: Kind, buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    // Left uninitialised: httparse writes each header it finds, and zeroing room for 128 of them
    // (4 KiB) cost more than parsing the five a response usually has.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let config = httparse::ParserConfig::default();
    match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut []);
            match config.parse_request_with_uninit_headers(&mut req, buf, &mut headers) {
                Ok(httparse::Status::Complete(n)) => Ok(Some((
                    Head {
                        method: req.method.unwrap_or_default().to_string(),
                        target: req.path.unwrap_or_default().to_string(),
                        status: 0,
                        version: req.version.unwrap_or(1),
                        headers: collect(req.headers),
                        truncated: false,
                        ..Default::default()
                    },
                    n,
                ))),
                Ok(httparse::Status::Partial) => Ok(None),
                Err(httparse::Error::TooManyHeaders) => Err(format!("more than {MAX_HEADERS} headers")),
                Err(e) => Err(format!("invalid request head: {e}")),
            }
        }
        Kind::Response => {
            let mut resp = httparse::Response::new(&mut []);
            match config.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
                Ok(httparse::Status::Complete(n)) => Ok(Some((
                    Head {
                        method: String::new(),
                        target: String::new(),
                        status: resp.code.unwrap_or(0),
                        version: resp.version.unwrap_or(1),
                        headers: collect(resp.headers),
                        truncated: false,
                        ..Default::default()
                    },
                    n,
                ))),
                Ok(httparse::Status::Partial) => Ok(None),
                Err(e) => Err(format!("invalid response head: {e}")),
            }
        }
    }
}

/// Best effort for a head that was cut: the first line, and each complete header line after it.
pub fn parse_partial(kind: Kind, buf: &[u8]) -> Option<Head> {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let mut parts = first.splitn(3, ' ');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    let mut head = Head { truncated: true, ..Default::default() };
    match kind {
        Kind::Request => {
            head.method = a.to_string();
            head.target = b.to_string();
            head.version = version_of(c)?;
        }
        Kind::Response => {
            head.version = version_of(a)?;
            head.status = b.parse().ok()?;
        }
    }
    // Every line but the last is complete (the last may have been cut mid-value).
    let rest: Vec<&str> = lines.collect();
    for line in rest.iter().take(rest.len().saturating_sub(1)) {
        if let Some((n, v)) = line.split_once(':') {
            head.headers.push((header_name(n.trim()), v.trim().to_string()));
        }
    }
    Some(head)
}

fn version_of(s: &str) -> Option<u8> {
    match s.trim() {
        "HTTP/1.1" => Some(1),
        "HTTP/1.0" => Some(0),
        _ => None,
    }
}

fn collect(headers: &[httparse::Header]) -> Vec<(HeaderName, String)> {
    headers.iter().map(|h| (header_name(h.name), value_text(h.value))).collect()
}

/// A header value, trimmed, lossily decoded: checked as UTF-8 first (nearly every value is
/// ASCII), since the lossy decoder walks it in chunks even when nothing needs replacing.
fn value_text(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => String::from_utf8_lossy(v).trim().to_owned(),
    }
}

/// A piece that begins like a message: where a stream that lost its framing may pick up again.
pub fn looks_like_start(kind: Kind, data: &[u8]) -> bool {
    match kind {
        Kind::Response => data.starts_with(b"HTTP/1."),
        Kind::Request => {
            let Some(sp) = data.iter().take(16).position(|&b| b == b' ') else { return false };
            sp > 0 && data[..sp].iter().all(u8::is_ascii_uppercase)
        }
    }
}
