//! What an HTTP/1.x (or uwsgi) message head says, whichever parser read it: the request line or
//! status, the headers, and the body framing they declare.

/// Which side of an exchange a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// The body runs until the connection closes (a response without length).
    UntilClose,
}

/// A header name, lowercased: borrowed for the names nearly every message has, so that parsing a
/// head allocates for its values only.
pub type HeaderName = std::borrow::Cow<'static, str>;

/// Names that need no allocation (compared without regard to case).
const COMMON_NAMES: [&str; 24] = [
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "date",
    "server",
    "cookie",
    "set-cookie",
    "authorization",
    "cache-control",
    "vary",
    "location",
    "traceparent",
    "tracestate",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "upgrade",
];

/// `raw` lowercased.
pub fn header_name(raw: &str) -> HeaderName {
    // The length first, inline: nearly every candidate differs in it, and this runs for each
    // header of each message.
    match COMMON_NAMES.iter().find(|n| n.len() == raw.len() && n.eq_ignore_ascii_case(raw)) {
        Some(n) => HeaderName::Borrowed(n),
        None => HeaderName::Owned(raw.to_ascii_lowercase()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// Request: method; response: empty.
    pub method: String,
    /// Request: target as sent (path and query).
    pub target: String,
    /// Response: status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names lowercased, values lossily decoded.
    pub headers: Vec<(HeaderName, String)>,
    /// The head did not fit the capture: some headers were not seen.
    pub truncated: bool,
    /// A uwsgi-protocol request: (modifier1, modifier2) of its packet header.
    pub uwsgi: Option<(u8, u8)>,
    /// The client as the front server saw it (uwsgi REMOTE_ADDR, REMOTE_PORT): behind nginx or
    /// uWSGI's router, the socket's peer is the proxy, not the client.
    pub remote: Option<(String, u16)>,
    /// The scheme the front server received (uwsgi UWSGI_SCHEME or HTTPS=on).
    pub scheme: Option<String>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body framing a message with this head declares (RFC 9112 section 6.3), ignoring the
    /// cases that depend on the request (HEAD, 1xx/204/304), which the caller handles.
    pub fn declared_framing(&self) -> Option<Framing> {
        if let Some(te) = self.header("transfer-encoding") {
            if te.to_ascii_lowercase().split(',').next_back().is_some_and(|t| t.trim() == "chunked") {
                return Some(Framing::Chunked);
            }
        }
        self.header("content-length").map_or(Some(Framing::None), |v| v.trim().parse::<u64>().ok().map(Framing::Length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_lowercased_and_common_ones_borrowed() {
        assert!(matches!(header_name("Content-Length"), HeaderName::Borrowed("content-length")));
        assert!(matches!(header_name("TRACEPARENT"), HeaderName::Borrowed("traceparent")));
        let other = header_name("X-My-Header");
        assert_eq!(other, "x-my-header");
        assert!(matches!(other, HeaderName::Owned(_)));
    }
}
