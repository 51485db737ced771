//! `--format pretty`: one short line per span for a person at a terminal,
//! `GET /users/<int:id> 200 1.2 ms user() app.py:17 pid 20149`, each trace printed as a tree
//! (children indented under their parent, in start order) once its root has finished.
//!
//! Spans finish children first (a request's database calls before the request), so a trace is
//! held until its root arrives: a span without a parent. A trace whose root is elsewhere (its
//! parent came in a `traceparent`) is printed once nothing was added to it for [`QUIET`]. What
//! is held at exit is printed then.
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sink::SpanSink;
use crate::spans::{semconv, Span, SpanKind};

/// A trace without a local root is printed after this long without a new span.
pub const QUIET: Duration = Duration::from_secs(1);
/// Traces held at most; beyond, the oldest is printed as it is (memory stays bounded).
const MAX_HELD: usize = 10_000;

pub struct Pretty {
    out: BufWriter<Box<dyn Write>>,
    held: HashMap<String, Held>,
}

struct Held {
    spans: Vec<Span>,
    last: Instant,
}

impl Pretty {
    pub fn new(out: Box<dyn Write>) -> Self {
        Pretty { out: BufWriter::new(out), held: HashMap::new() }
    }

    fn write_trace(&mut self, spans: &[Span]) -> io::Result<()> {
        for (depth, s) in tree(spans) {
            writeln!(self.out, "{}{}", "  ".repeat(depth), line(s))?;
        }
        Ok(())
    }

    fn write_quiet(&mut self, older_than: Duration) -> io::Result<()> {
        let now = Instant::now();
        let quiet: Vec<String> =
            self.held.iter().filter(|(_, h)| now - h.last >= older_than).map(|(t, _)| t.clone()).collect();
        for t in quiet {
            if let Some(h) = self.held.remove(&t) {
                self.write_trace(&h.spans)?;
            }
        }
        Ok(())
    }
}

impl SpanSink for Pretty {
    fn send(&mut self, span: &Span) -> io::Result<()> {
        if self.held.len() >= MAX_HELD && !self.held.contains_key(&span.trace_id) {
            if let Some(oldest) = self.held.iter().min_by_key(|(_, h)| h.last).map(|(t, _)| t.clone()) {
                let h = self.held.remove(&oldest).expect("present");
                self.write_trace(&h.spans)?;
            }
        }
        let held =
            self.held.entry(span.trace_id.clone()).or_insert_with(|| Held { spans: Vec::new(), last: Instant::now() });
        held.spans.push(span.clone());
        held.last = Instant::now();
        if span.parent_span_id.is_none() {
            let h = self.held.remove(&span.trace_id).expect("just added");
            self.write_trace(&h.spans)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_quiet(QUIET)?;
        self.out.flush()
    }
}

impl Drop for Pretty {
    fn drop(&mut self) {
        // At exit nothing more will come: print what is held.
        let _ = self.write_quiet(Duration::ZERO);
        let _ = self.out.flush();
    }
}

/// The spans in tree order with their depth: roots (no parent among `spans`) by start time,
/// each followed by its children.
fn tree(spans: &[Span]) -> Vec<(usize, &Span)> {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    let mut roots = Vec::new();
    for s in spans {
        match s.parent_span_id.as_deref() {
            Some(p) if ids.contains(p) => children.entry(p).or_default().push(s),
            _ => roots.push(s),
        }
    }
    roots.sort_by_key(|s| s.start_time_unix_nano);
    for c in children.values_mut() {
        c.sort_by_key(|s| s.start_time_unix_nano);
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, &Span)> = roots.into_iter().rev().map(|s| (0, s)).collect();
    while let Some((depth, s)) = stack.pop() {
        out.push((depth, s));
        if let Some(c) = children.get(s.span_id.as_str()) {
            stack.extend(c.iter().rev().map(|c| (depth + 1, *c)));
        }
    }
    out
}

/// `GET /users/<int:id> 200 1.2 ms user() app.py:17 pid 20149`.
pub fn line(s: &Span) -> String {
    let a = &s.attributes;
    let mut parts = vec![s.name.clone()];
    // A server span named by its method alone served no route: its path's template says what
    // was asked (the name stays the conventions' low-cardinality one).
    if s.kind == SpanKind::Server && !s.name.contains(' ') {
        if let Some(Value::String(t)) = a.get(semconv::URL_TEMPLATE) {
            parts.push(t.clone());
        }
    }
    if let Some(status) = a.get(semconv::HTTP_RESPONSE_STATUS_CODE) {
        parts.push(status.to_string());
    }
    if let Some(Value::String(e)) = a.get(semconv::ERROR_TYPE) {
        // A server's 5xx is its own error.type: said once.
        let same_as_status =
            a.get(semconv::HTTP_RESPONSE_STATUS_CODE).and_then(Value::as_u64).is_some_and(|c| e.parse() == Ok(c));
        if !same_as_status {
            parts.push(format!("error={e}"));
        }
    }
    parts.push(duration(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)));
    if let Some(Value::String(f)) = a.get(semconv::CODE_FUNCTION_NAME) {
        let file = a.get(semconv::CODE_FILE_PATH).and_then(Value::as_str).unwrap_or_default();
        let base = file.rsplit('/').next().unwrap_or(file);
        match a.get(semconv::CODE_LINE_NUMBER) {
            Some(l) => parts.push(format!("{f}() {base}:{l}")),
            None => parts.push(format!("{f}() {base}")),
        }
    }
    if let Some(pid) = s.resource.get(semconv::PROCESS_PID) {
        parts.push(format!("pid {pid}"));
    }
    parts.join(" ")
}

/// `812 µs`, `1.2 ms`, `3.40 s`.
fn duration(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::SharedBuf;
    use crate::spans::{Attributes, Status, StatusCode};
    use serde_json::json;

    fn span(id: &str, parent: Option<&str>, name: &str, start_us: u64, dur_us: u64, attrs: Value) -> Span {
        let Value::Object(attributes) = attrs else { panic!() };
        let mut resource = Attributes::default();
        resource.insert(semconv::PROCESS_PID.into(), json!(20149));
        Span {
            trace_id: "t1".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_string),
            trace_state: None,
            name: name.into(),
            kind: SpanKind::Server,
            start_time_unix_nano: start_us * 1000,
            end_time_unix_nano: (start_us + dur_us) * 1000,
            status: Status { code: StatusCode::Unset },
            resource: resource.into(),
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    #[test]
    fn a_request_no_route_served_shows_its_path_template() {
        let mut s =
            span("r", None, "GET", 0, 1200, json!({"http.response.status_code": 404, "url.template": "/items/{id}"}));
        assert_eq!(line(&s), "GET /items/{id} 404 1.2 ms pid 20149");
        s.kind = SpanKind::Client;
        assert_eq!(line(&s), "GET 404 1.2 ms pid 20149", "a call's url.full is not shown");
    }

    /// A request with a query and an HTTP call that itself served a request on this host: the
    /// children finish first, the tree is printed when the root does, children under parents.
    #[test]
    fn a_trace_is_printed_as_a_tree_when_its_root_finishes() {
        let buf = SharedBuf::default();
        let mut p = Pretty::new(Box::new(buf.clone()));
        let code = json!({"code.function.name": "user", "code.file.path": "/srv/app.py", "code.line.number": 17});
        let mut root_attrs = code.clone();
        root_attrs["http.response.status_code"] = json!(200);
        p.send(&span(
            "c2",
            Some("r"),
            "GET",
            1500,
            2000,
            json!({"http.response.status_code": 503, "error.type": "503"}),
        ))
        .unwrap();
        p.send(&span("s2", Some("c2"), "GET /inner", 1600, 1800, json!({"http.response.status_code": 503}))).unwrap();
        p.send(&span("c1", Some("r"), "SELECT users", 1100, 300, json!({"error.type": "42P01"}))).unwrap();
        p.flush().unwrap();
        assert!(buf.0.borrow().is_empty(), "held until the root finishes");
        p.send(&span("r", None, "GET /users/<int:id>", 1000, 4200, root_attrs)).unwrap();
        p.flush().unwrap();
        let text = String::from_utf8(buf.0.borrow().clone()).unwrap();
        assert_eq!(
            text,
            "GET /users/<int:id> 200 4.2 ms user() app.py:17 pid 20149\n  \
             SELECT users error=42P01 300 µs pid 20149\n  \
             GET 503 2.0 ms pid 20149\n    \
             GET /inner 503 1.8 ms pid 20149\n"
        );
    }

    #[test]
    fn a_trace_rooted_elsewhere_is_printed_when_quiet_or_at_exit() {
        let buf = SharedBuf::default();
        let mut p = Pretty::new(Box::new(buf.clone()));
        p.send(&span("s", Some("remote"), "POST /items", 0, 2_500_000, json!({"http.response.status_code": 201})))
            .unwrap();
        p.flush().unwrap();
        assert!(buf.0.borrow().is_empty());
        drop(p);
        assert_eq!(String::from_utf8(buf.0.borrow().clone()).unwrap(), "POST /items 201 2.50 s pid 20149\n");
    }
}
