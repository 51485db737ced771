//! A finished exchange on an accepted connection becomes a server span with the stable OpenTelemetry HTTP semantic
//! conventions' attribute names.
use std::net::IpAddr;

use serde_json::{json, Value};

use super::{semconv, Attributes, Resource, Span, SpanIds, SpanKind, Status, StatusCode};
use crate::http::{connection::Exchange, redact::Redaction, route};
use crate::sockaddr::{ip_text, Peer};

/// What the agent knows about the connection besides its bytes.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub client: Peer,
    /// The listening socket's address, for requests without a Host header.
    pub local: Option<(IpAddr, u16)>,
    /// The connection is TLS the server terminates itself (its bytes came from libssl).
    pub tls: bool,
}

/// The most attributes a server span carries without captured headers.
const SERVER_SPAN_ATTRIBUTES: usize = 24;

const KNOWN_METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];

/// `ids` place the span in its trace (the caller's traceparent, a same-host caller, or a new
/// trace: the agent decides); `to_unix` converts the kernel's monotonic timestamps to Unix time.
pub fn server_span(
    x: &Exchange,
    conn: &ConnContext,
    ids: SpanIds,
    redaction: &Redaction,
    resource: Resource,
    to_unix: impl Fn(u64) -> u64,
) -> Span {
    // Room for every attribute a server span gets (those below, the route, the code and a
    // profile's): the map never grows while it is filled.
    let mut a = Attributes::with_capacity_and_hasher(SERVER_SPAN_ATTRIBUTES, foldhash::fast::RandomState::default());
    let req = &x.request;
    let known = KNOWN_METHODS.contains(&req.method.as_str());
    if known {
        a.insert(semconv::HTTP_REQUEST_METHOD.into(), json!(req.method));
    } else {
        a.insert(semconv::HTTP_REQUEST_METHOD.into(), json!("_OTHER"));
        a.insert(semconv::HTTP_REQUEST_METHOD_ORIGINAL.into(), json!(req.method));
    }
    let (path, query) = split_target(&req.target);
    a.insert(semconv::URL_PATH.into(), json!(path));
    // Not http.route: that is the app's own route, which the wire does not carry.
    a.insert(semconv::URL_TEMPLATE.into(), json!(route::template(path)));
    if let Some(q) = query {
        a.insert(semconv::URL_QUERY.into(), json!(redaction.query(q)));
    }
    let scheme = req.scheme.as_deref().unwrap_or(if conn.tls { "https" } else { "http" });
    a.insert(semconv::URL_SCHEME.into(), json!(scheme));
    if let Some(resp) = &x.response {
        a.insert(semconv::HTTP_RESPONSE_STATUS_CODE.into(), json!(resp.status));
        redaction.response_headers(resp, &mut a);
    }
    redaction.request_headers(req, &mut a);
    let host = req.header("host").and_then(split_host);
    match (&host, conn.local) {
        (Some((h, p)), local) => {
            a.insert(semconv::SERVER_ADDRESS.into(), json!(h));
            if let Some(port) = p.or(local.map(|l| l.1)) {
                a.insert(semconv::SERVER_PORT.into(), json!(port));
            }
        }
        (None, Some((ip, port))) => {
            a.insert(semconv::SERVER_ADDRESS.into(), json!(ip_text(ip)));
            a.insert(semconv::SERVER_PORT.into(), json!(port));
        }
        (None, None) => {}
    }
    // Behind nginx or uWSGI's router the socket's peer is the proxy; the client is in the vars.
    let vars_client = req
        .remote
        .as_ref()
        .map(|(ip, port)| Peer::Inet { ip: ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), port: *port });
    match vars_client.as_ref().unwrap_or(&conn.client) {
        Peer::Inet { ip, port } => {
            a.insert(semconv::CLIENT_ADDRESS.into(), json!(ip_text(*ip)));
            a.insert(semconv::CLIENT_PORT.into(), json!(port));
        }
        Peer::Unix { path } if !path.is_empty() => {
            a.insert(semconv::CLIENT_ADDRESS.into(), json!(path));
        }
        _ => {}
    }
    a.insert(semconv::NETWORK_PROTOCOL_VERSION.into(), json!(if req.version == 0 { "1.0" } else { "1.1" }));
    if let Some(ua) = req.header("user-agent") {
        a.insert(semconv::USER_AGENT_ORIGINAL.into(), json!(ua));
    }
    a.insert(semconv::HTTP_REQUEST_BODY_SIZE.into(), json!(x.request_body));
    if x.response.is_some() {
        a.insert(semconv::HTTP_RESPONSE_BODY_SIZE.into(), json!(x.response_body));
    }
    if req.truncated {
        a.insert(semconv::PYTRACER_HTTP_REQUEST_HEAD_TRUNCATED.into(), Value::Bool(true));
    }
    let status = x.response.as_ref().map_or(0, |r| r.status);
    let error = match x.incomplete {
        Some(why) => Some(why.as_str().to_string()),
        None if status >= 500 => Some(status.to_string()),
        None => None,
    };
    let code = match error {
        Some(e) => {
            a.insert(semconv::ERROR_TYPE.into(), json!(e));
            StatusCode::Error
        }
        None => StatusCode::Unset,
    };
    Span {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        trace_state: ids.trace_state,
        name: if known { req.method.clone() } else { "HTTP".into() },
        kind: SpanKind::Server,
        start_time_unix_nano: to_unix(x.start_ns),
        end_time_unix_nano: to_unix(x.end_ns),
        status: Status { code },
        resource,
        attributes: a,
    }
}

/// Splits an origin-form or absolute-form request target into path and query.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|s| target.strip_prefix(s))
        .map_or(target, |r| r.find('/').map_or("/", |i| &r[i..]));
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    }
}

/// "host", "host:port", "[v6]" or "[v6]:port".
pub(crate) fn split_host(h: &str) -> Option<(&str, Option<u16>)> {
    let h = h.trim();
    if h.is_empty() {
        return None;
    }
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return Some((ip, after.strip_prefix(':').and_then(|p| p.parse().ok())));
    }
    match h.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok())),
        None => Some((h, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::connection::Connection;
    use crate::piece::Piece;

    fn exchange(req: &[u8], resp: &[u8]) -> Exchange {
        let mut c = Connection::default();
        c.on_read(&Piece { data: req, len: req.len() as u64, start_ns: 1_000, end_ns: 2_000 });
        let mut out = c.on_write(&Piece { data: resp, len: resp.len() as u64, start_ns: 5_000, end_ns: 9_000 });
        out.finished.pop().unwrap_or_else(|| c.on_close().finished.pop().unwrap())
    }

    fn ctx() -> ConnContext {
        ConnContext {
            client: Peer::Inet { ip: "127.0.0.1".parse().unwrap(), port: 51234 },
            local: Some(("127.0.0.1".parse().unwrap(), 8000)),
            tls: false,
        }
    }

    fn keys() -> Redaction {
        Redaction::new(&pytracer_config::Secrets::default(), &pytracer_config::CaptureHeaders::default()).unwrap()
    }

    #[test]
    fn issue_example_attributes_exactly() {
        let x = exchange(
            b"GET /users/7?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: curl/7.88.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"id\": 7, \"x\": 1}",
        );
        let s = server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t + 10);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["attributes"],
            json!({"http.request.method":"GET","url.path":"/users/7","url.template":"/users/{id}","url.query":"a=1","url.scheme":"http",
                "http.response.status_code":200,"server.address":"127.0.0.1","server.port":8000,
                "client.address":"127.0.0.1","client.port":51234,"network.protocol.version":"1.1",
                "user_agent.original":"curl/7.88.1","http.request.body.size":0,"http.response.body.size":17})
        );
        assert_eq!(
            (v["name"].as_str(), v["kind"].as_str(), v["status"]["code"].as_str()),
            (Some("GET"), Some("server"), Some("unset"))
        );
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (1_010, 9_010));
        assert!(v["parent_span_id"].is_null());
        // Key order of the JSON line is the documented one.
        let line = serde_json::to_string(&s).unwrap();
        assert!(line.starts_with("{\"trace_id\":"), "{line}");
        assert!(line.find("\"attributes\"").unwrap() > line.find("\"resource\"").unwrap());
    }

    #[test]
    fn server_error_and_redaction_and_other_method() {
        let x = exchange(
            b"BREW /pot?api_key=s3&x=1 HTTP/1.0\r\n\r\n",
            b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        );
        let v = serde_json::to_value(server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t))
            .unwrap();
        let a = &v["attributes"];
        assert_eq!(a[semconv::HTTP_REQUEST_METHOD], "_OTHER");
        assert_eq!(a[semconv::HTTP_REQUEST_METHOD_ORIGINAL], "BREW");
        assert_eq!(v["name"], "HTTP");
        assert_eq!(a[semconv::URL_QUERY], "api_key=<redacted>&x=1");
        assert_eq!(a[semconv::ERROR_TYPE], "503");
        assert_eq!(v["status"]["code"], "error");
        assert_eq!(a[semconv::NETWORK_PROTOCOL_VERSION], "1.0");
        // No Host header: the listening socket's address.
        assert_eq!(
            (a[semconv::SERVER_ADDRESS].as_str(), a[semconv::SERVER_PORT].as_u64()),
            (Some("127.0.0.1"), Some(8000))
        );
        assert!(a.get("user_agent.original").is_none());
    }

    #[test]
    fn client_error_is_not_a_span_error() {
        let x = exchange(
            b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 3\r\n\r\nno!",
        );
        let v = serde_json::to_value(server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t))
            .unwrap();
        assert_eq!(v["status"]["code"], "unset");
        assert!(v["attributes"].get("error.type").is_none());
        assert!(v["attributes"].get("url.query").is_none());
        assert_eq!(v["attributes"][semconv::SERVER_ADDRESS], "h");
        assert_eq!(v["attributes"][semconv::SERVER_PORT], 8000);
    }

    #[test]
    fn no_response_is_an_error_without_status_code() {
        let x = exchange(b"GET /a HTTP/1.1\r\nHost: h:1\r\n\r\n", b"");
        let v = serde_json::to_value(server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t))
            .unwrap();
        assert_eq!(v["attributes"][semconv::ERROR_TYPE], "no_response");
        assert!(v["attributes"].get("http.response.status_code").is_none());
    }

    #[test]
    fn incoming_context_sets_trace_and_parent() {
        let x = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let crate::http::traceparent::Incoming::Valid(parent) = crate::http::traceparent::parse(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("k=v"),
        ) else {
            panic!("a valid traceparent")
        };
        let v = serde_json::to_value(server_span(
            &x,
            &ctx(),
            SpanIds::continuing(&parent),
            &keys(),
            Resource::default(),
            |t| t,
        ))
        .unwrap();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(v["trace_state"], "k=v");
        assert_ne!(v["span_id"], "00f067aa0ba902b7");
        let v = serde_json::to_value(server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t))
            .unwrap();
        assert!(v["parent_span_id"].is_null() && v.get("trace_state").is_none());
    }

    #[test]
    fn uwsgi_request_names_the_real_client() {
        let mut req = crate::http::uwsgi::tests::packet(
            0,
            &[
                ("REQUEST_METHOD", "POST"),
                ("REQUEST_URI", "/items"),
                ("CONTENT_LENGTH", "3"),
                ("REMOTE_ADDR", "10.0.0.7"),
                ("REMOTE_PORT", "40000"),
                ("HTTP_HOST", "shop:80"),
                ("UWSGI_SCHEME", "https"),
            ],
        );
        req.extend(b"abc");
        let x = exchange(&req, b"HTTP/1.1 201 CREATED\r\nContent-Length: 2\r\n\r\nok");
        let v = serde_json::to_value(server_span(&x, &ctx(), SpanIds::root(), &keys(), Resource::default(), |t| t))
            .unwrap();
        let a = &v["attributes"];
        assert_eq!(
            (a[semconv::CLIENT_ADDRESS].as_str(), a[semconv::CLIENT_PORT].as_u64()),
            (Some("10.0.0.7"), Some(40000))
        );
        assert_eq!((a[semconv::SERVER_ADDRESS].as_str(), a[semconv::SERVER_PORT].as_u64()), (Some("shop"), Some(80)));
        assert_eq!(a[semconv::URL_SCHEME], "https");
        assert_eq!(a[semconv::HTTP_REQUEST_BODY_SIZE], 3);
        assert_eq!(a[semconv::HTTP_RESPONSE_STATUS_CODE], 201);
    }

    #[test]
    fn targets_and_hosts() {
        assert_eq!(split_target("/a/b?x=1&y"), ("/a/b", Some("x=1&y")));
        assert_eq!(split_target("http://h:1/p?q"), ("/p", Some("q")));
        assert_eq!(split_target("http://h"), ("/", None));
        assert_eq!(split_host("[::1]:8080"), Some(("::1", Some(8080))));
        assert_eq!(split_host("example.com"), Some(("example.com", None)));
        assert_eq!(split_host(""), None);
    }
}
