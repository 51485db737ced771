//! The uwsgi binary protocol (https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html), as
//! nginx's uwsgi_pass and uWSGI's own HTTP router speak it to the workers: a 4-byte header
//! (modifier1, 16-bit little-endian size, modifier2), then that many bytes of vars, each a
//! 16-bit little-endian length-prefixed key and value, then the request body. The worker answers
//! in plain HTTP (which is itself a valid uwsgi packet, modifier1 72 = 'H'), so only requests
//! need this parser.
use super::head::Head;

/// modifier1 values whose packet is a request vars block followed by the body, with modifier2 0:
/// 0 WSGI, 5 PSGI, 6 Lua WSAPI, 7 Rack, 8 JWSGI/Ring, 9 CGI, 14 PHP.
const REQUEST_MODIFIERS: [u8; 7] = [0, 5, 6, 7, 8, 9, 14];

/// True when `buf` starts like a uwsgi request packet rather than an HTTP request line (which
/// starts with an uppercase method).
pub fn is_packet_start(buf: &[u8]) -> bool {
    buf.first().is_some_and(|&m| REQUEST_MODIFIERS.contains(&m)) && buf.get(3).is_none_or(|&m2| m2 == 0)
}

/// Parses one request packet's header and vars. Ok(None) until the whole vars block is there;
/// with `partial`, returns what the captured bytes hold, marked truncated.
pub fn parse(buf: &[u8], partial: bool) -> Result<Option<(Head, usize)>, String> {
    if buf.len() < 4 {
        return if partial { Err("uwsgi packet header cut".into()) } else { Ok(None) };
    }
    let (m1, size, m2) = (buf[0], u16::from_le_bytes([buf[1], buf[2]]) as usize, buf[3]);
    if m2 != 0 || !REQUEST_MODIFIERS.contains(&m1) {
        return Err(format!("uwsgi packet with modifier1={m1} modifier2={m2} is not a request"));
    }
    let end = 4 + size;
    if buf.len() < end && !partial {
        return Ok(None);
    }
    let vars = &buf[4..end.min(buf.len())];
    let mut head = Head { uwsgi: Some((m1, m2)), truncated: buf.len() < end, version: 1, ..Default::default() };
    let (mut path_info, mut query, mut uri) = (None, None, None);
    let (mut addr, mut port, mut server_name, mut server_port) = (None, None, None, None);
    let mut i = 0;
    while i < vars.len() {
        let Some((key, after_key)) = field(vars, i) else { break };
        let Some((value, after_value)) = field(vars, after_key) else {
            if partial {
                break;
            }
            return Err("uwsgi var value runs past the packet".into());
        };
        i = after_value;
        let (key, value) = (String::from_utf8_lossy(key), String::from_utf8_lossy(value).into_owned());
        match key.as_ref() {
            "REQUEST_METHOD" => head.method = value,
            "REQUEST_URI" => uri = Some(value),
            "PATH_INFO" => path_info = Some(value),
            "QUERY_STRING" => query = Some(value),
            // A request line the front server took apart though it was no HTTP (uWSGI's router
            // forwards `NOT A REQUEST` as method NOT, URI A, protocol REQUEST): not a request.
            "SERVER_PROTOCOL" if !value.starts_with("HTTP/") => {
                return Err(format!("uwsgi request with SERVER_PROTOCOL {value:?}"));
            }
            "SERVER_PROTOCOL" => head.version = u8::from(value != "HTTP/1.0"),
            // The front server has framed the body already: in the uwsgi protocol the body is
            // CONTENT_LENGTH bytes as they are. nginx de-chunks a chunked request body and
            // passes CONTENT_LENGTH, but forwards the client's Transfer-Encoding header too,
            // which must not make the body look chunked.
            "HTTP_TRANSFER_ENCODING" => {}
            "REMOTE_ADDR" => addr = Some(value),
            "REMOTE_PORT" => port = value.parse().ok(),
            "SERVER_NAME" => server_name = Some(value),
            "SERVER_PORT" => server_port = Some(value),
            "UWSGI_SCHEME" => head.scheme = Some(value),
            "HTTPS" if value.eq_ignore_ascii_case("on") => head.scheme = Some("https".into()),
            "CONTENT_LENGTH" if !value.is_empty() => head.headers.push(("content-length".into(), value)),
            "CONTENT_TYPE" if !value.is_empty() => head.headers.push(("content-type".into(), value)),
            k if k.starts_with("HTTP_") => {
                head.headers.push((k[5..].to_ascii_lowercase().replace('_', "-").into(), value));
            }
            _ => {}
        }
    }
    if i < vars.len() && !partial {
        return Err("uwsgi var key runs past the packet".into());
    }
    if head.method.is_empty() {
        return Err("uwsgi request without REQUEST_METHOD".into());
    }
    // REQUEST_URI is what the client sent; PATH_INFO and QUERY_STRING are its parts.
    head.target = uri.unwrap_or_else(|| match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{}?{q}", path_info.clone().unwrap_or_else(|| "/".into())),
        None => path_info.unwrap_or_else(|| "/".into()),
    });
    if head.header("host").is_none() {
        if let Some(name) = server_name {
            let host = server_port.map_or(name.clone(), |p| format!("{name}:{p}"));
            head.headers.push(("host".into(), host));
        }
    }
    head.remote = addr.zip(port);
    Ok(Some((head, end.min(buf.len()))))
}

/// A 16-bit little-endian length and that many bytes, at `at`.
fn field(vars: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u16::from_le_bytes([*vars.get(at)?, *vars.get(at + 1)?]) as usize;
    let start = at + 2;
    vars.get(start..start + len).map(|v| (v, start + len))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a packet as nginx would send it.
    pub fn packet(m1: u8, vars: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in vars {
            body.extend((k.len() as u16).to_le_bytes());
            body.extend(k.as_bytes());
            body.extend((v.len() as u16).to_le_bytes());
            body.extend(v.as_bytes());
        }
        let mut p = vec![m1];
        p.extend((body.len() as u16).to_le_bytes());
        p.push(0);
        p.extend(body);
        p
    }

    fn nginx_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            ("REQUEST_URI", "/items?a=1"),
            ("PATH_INFO", "/items"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("UWSGI_SCHEME", "http"),
            ("REMOTE_ADDR", "10.0.0.7"),
            ("REMOTE_PORT", "51234"),
            ("SERVER_PORT", "8080"),
            ("SERVER_NAME", "shop"),
            ("HTTP_HOST", "shop.example:8080"),
            ("HTTP_USER_AGENT", "curl/8"),
            ("HTTP_X_REQUEST_ID", "abc"),
        ]
    }

    #[test]
    fn wsgi_request_from_nginx() {
        let p = packet(0, &nginx_vars());
        let (h, n) = parse(&p, false).unwrap().unwrap();
        assert_eq!(n, p.len());
        assert_eq!((h.method.as_str(), h.target.as_str(), h.version), ("POST", "/items?a=1", 1));
        assert_eq!(h.header("host"), Some("shop.example:8080"));
        assert_eq!(h.header("user-agent"), Some("curl/8"));
        assert_eq!(h.header("x-request-id"), Some("abc"));
        assert_eq!(h.header("content-length"), Some("3"));
        assert_eq!(h.remote, Some(("10.0.0.7".into(), 51234)));
        assert_eq!(h.scheme.as_deref(), Some("http"));
        assert_eq!(h.uwsgi, Some((0, 0)));
        assert!(!h.truncated);
    }

    #[test]
    fn incomplete_then_complete() {
        let p = packet(0, &nginx_vars());
        assert_eq!(parse(&p[..3], false), Ok(None));
        assert_eq!(parse(&p[..p.len() - 1], false), Ok(None));
        assert!(parse(&p, false).unwrap().is_some());
    }

    #[test]
    fn partial_capture_keeps_whole_vars() {
        let p = packet(0, &nginx_vars());
        let (h, _) = parse(&p[..60], true).unwrap().unwrap();
        assert!(h.truncated);
        assert_eq!(h.method, "POST");
    }

    #[test]
    fn target_from_path_info_and_query() {
        let p = packet(0, &[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/u/7"), ("QUERY_STRING", "x=2")]);
        assert_eq!(parse(&p, false).unwrap().unwrap().0.target, "/u/7?x=2");
        let p = packet(0, &[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/u/7"), ("QUERY_STRING", "")]);
        assert_eq!(parse(&p, false).unwrap().unwrap().0.target, "/u/7");
    }

    #[test]
    fn other_packets_and_garbage_are_errors() {
        let mut p = packet(0, &nginx_vars());
        p[3] = 1;
        assert!(parse(&p, false).unwrap_err().contains("modifier2=1"));
        let p = packet(100, &[("a", "b")]);
        assert!(parse(&p, false).is_err());
        let p = packet(0, &[("QUERY_STRING", "a")]);
        assert!(parse(&p, false).unwrap_err().contains("REQUEST_METHOD"));
        // A key length that runs past the block.
        let mut p = packet(0, &[("REQUEST_METHOD", "GET")]);
        p.extend([0xff, 0x00]);
        let size = (p.len() - 4) as u16;
        p[1..3].copy_from_slice(&size.to_le_bytes());
        assert!(parse(&p, false).is_err());
    }

    #[test]
    fn body_is_content_length_even_with_the_clients_transfer_encoding() {
        // What nginx sends for a chunked request it buffered (seen on the wire).
        let p = packet(
            0,
            &[
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_LENGTH", "11"),
                ("REQUEST_URI", "/upload"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("HTTP_TRANSFER_ENCODING", "chunked"),
            ],
        );
        let (h, _) = parse(&p, false).unwrap().unwrap();
        assert_eq!(h.header("transfer-encoding"), None);
        assert_eq!(h.declared_framing(), Some(crate::http::head::Framing::Length(11)));
    }

    #[test]
    fn a_protocol_that_is_not_http_is_not_a_request() {
        let p = packet(0, &[("REQUEST_METHOD", "NOT"), ("REQUEST_URI", "A"), ("SERVER_PROTOCOL", "REQUEST")]);
        assert!(parse(&p, false).unwrap_err().contains("SERVER_PROTOCOL"));
        let p = packet(0, &[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), ("SERVER_PROTOCOL", "HTTP/2.0")]);
        assert!(parse(&p, false).is_ok(), "nginx passes HTTP/2 clients' requests on");
    }

    #[test]
    fn detection() {
        assert!(is_packet_start(&packet(0, &nginx_vars())));
        assert!(!is_packet_start(b"GET / HTTP/1.1\r\n"));
        assert!(!is_packet_start(b""));
    }
}
