//! One span as a JSON line, written straight into the output buffer: the same bytes serde's
//! derived form gives (the key order is the documented one), without building it through
//! serde's generic path, and with each process's resource rendered once, not once per span.
//! Strings that need no escaping (nearly all: names, paths, addresses) are copied as they are,
//! and integers go through `itoa`: serde's escaping and `fmt` had been nearly a tenth of the
//! agent's CPU per span.
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use serde_json::Value;

use crate::spans::{Attributes, Resource, Span};

/// Processes whose rendered resource is kept; past this the cache starts afresh (exited
/// processes' entries go with it).
const MAX_CACHED: usize = 1024;

/// Each resource's JSON, by the address of its shared attributes. The entry holds the `Arc`, so
/// the address cannot be reused by another resource while it is cached.
#[derive(Default)]
pub struct ResourceCache {
    rendered: HashMap<usize, (Resource, Vec<u8>)>,
}

impl ResourceCache {
    fn json(&mut self, r: &Resource) -> io::Result<&[u8]> {
        let key = Arc::as_ptr(r) as usize;
        if !self.rendered.contains_key(&key) {
            if self.rendered.len() >= MAX_CACHED {
                self.rendered.clear();
            }
            let json = serde_json::to_vec(r.as_ref()).map_err(io::Error::from)?;
            self.rendered.insert(key, (Arc::clone(r), json));
        }
        Ok(&self.rendered[&key].1)
    }
}

/// Writes `span` and a newline.
pub fn write(out: &mut impl Write, span: &Span, resources: &mut ResourceCache) -> io::Result<()> {
    out.write_all(b"{\"trace_id\":")?;
    string(out, &span.trace_id)?;
    out.write_all(b",\"span_id\":")?;
    string(out, &span.span_id)?;
    out.write_all(b",\"parent_span_id\":")?;
    match &span.parent_span_id {
        Some(p) => string(out, p)?,
        None => out.write_all(b"null")?,
    }
    if let Some(t) = &span.trace_state {
        out.write_all(b",\"trace_state\":")?;
        string(out, t)?;
    }
    out.write_all(b",\"name\":")?;
    string(out, &span.name)?;
    out.write_all(b",\"kind\":\"")?;
    out.write_all(span.kind.as_str().as_bytes())?;
    out.write_all(b"\",\"start_time_unix_nano\":")?;
    integer(out, span.start_time_unix_nano)?;
    out.write_all(b",\"end_time_unix_nano\":")?;
    integer(out, span.end_time_unix_nano)?;
    out.write_all(b",\"status\":{\"code\":\"")?;
    out.write_all(span.status.code.as_str().as_bytes())?;
    out.write_all(b"\"},\"resource\":")?;
    out.write_all(resources.json(&span.resource)?)?;
    out.write_all(b",\"attributes\":")?;
    attributes(out, &span.attributes)?;
    out.write_all(b"}\n")
}

/// The attributes as a JSON object, in their order.
fn attributes(out: &mut impl Write, a: &Attributes) -> io::Result<()> {
    out.write_all(b"{")?;
    for (i, (k, v)) in a.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        match k {
            // The names the code spells (semantic conventions) need no escaping.
            Cow::Borrowed(name) => {
                debug_assert!(!needs_escape(name), "{name}");
                out.write_all(b"\"")?;
                out.write_all(name.as_bytes())?;
                out.write_all(b"\":")?;
            }
            Cow::Owned(name) => {
                string(out, name)?;
                out.write_all(b":")?;
            }
        }
        value(out, v)?;
    }
    out.write_all(b"}")
}

fn value(out: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::String(s) => string(out, s),
        Value::Bool(true) => out.write_all(b"true"),
        Value::Bool(false) => out.write_all(b"false"),
        Value::Null => out.write_all(b"null"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => integer(out, u),
            (None, Some(i)) => out.write_all(itoa::Buffer::new().format(i).as_bytes()),
            // Floats: serde's own shortest form.
            (None, None) => serde_json::to_writer(out, n).map_err(io::Error::from),
        },
        Value::Array(_) | Value::Object(_) => serde_json::to_writer(out, v).map_err(io::Error::from),
    }
}

fn integer(out: &mut impl Write, n: u64) -> io::Result<()> {
    out.write_all(itoa::Buffer::new().format(n).as_bytes())
}

/// A JSON string: as it is when nothing in it needs escaping (JSON escapes only `"`, `\\` and
/// control characters), else through serde's escaping.
fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    if needs_escape(s) {
        serde_json::to_writer(out, s).map_err(io::Error::from)
    } else {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    }
}

/// Whether JSON must escape a byte of `s`. Without an early exit, so that the compiler can test
/// many bytes at a time.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(0u8, |any, b| any | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{Attributes, SpanIds, SpanKind, Status, StatusCode};
    use serde_json::json;

    fn span(parent: Option<&str>, state: Option<&str>, resource: &Resource) -> Span {
        let ids = SpanIds::root();
        let Value::Object(attributes) = json!({"url.path": "/a\"b\\c\u{1}é", "http.response.status_code": 200, "x": true, "y": 1.5,
                "z": -7, "n": null, "f": false, "l": ["a", "b\"c"], "plain": "/users/42 é", "k\"ey": 18_446_744_073_709_551_615u64})
        else {
            panic!()
        };
        Span {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: parent.map(str::to_string),
            trace_state: state.map(str::to_string),
            name: "GET /a\"".into(),
            kind: SpanKind::Client,
            start_time_unix_nano: 1_763_790_000_000_000_000,
            end_time_unix_nano: 1_763_790_000_002_100_000,
            status: Status { code: StatusCode::Error },
            resource: Arc::clone(resource),
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    #[test]
    fn same_bytes_as_serde() {
        let mut r = Attributes::default();
        r.insert("service.name".into(), json!("app"));
        r.insert("process.pid".into(), json!(4321));
        let r = Resource::new(r);
        let mut cache = ResourceCache::default();
        for s in [span(None, None, &r), span(Some("00f067aa0ba902b7"), Some("k=v,a=b"), &r)] {
            let mut out = Vec::new();
            write(&mut out, &s, &mut cache).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap() + "\n");
        }
        assert_eq!(cache.rendered.len(), 1);
    }

    #[test]
    fn each_resource_rendered_apart() {
        let mut cache = ResourceCache::default();
        let mut lines = Vec::new();
        for pid in [1, 2, 1] {
            let r = Resource::new([("process.pid".into(), json!(pid))].into_iter().collect());
            let mut out = Vec::new();
            write(&mut out, &span(None, None, &r), &mut cache).unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            lines.push(v["resource"]["process.pid"].as_u64().unwrap());
        }
        assert_eq!(lines, [1, 2, 1]);
    }
}
