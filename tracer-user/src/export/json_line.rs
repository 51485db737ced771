//! One span as a JSON line, written straight into the output buffer: the same bytes serde's
//! derived form gives (the key order is the documented one), without building it through
//! serde's generic path, and with each process's resource rendered once, not once per span.
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use crate::spans::{Resource, Span};

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
    write!(
        out,
        ",\"kind\":\"{}\",\"start_time_unix_nano\":{},\"end_time_unix_nano\":{},\"status\":{{\"code\":\"{}\"}},\"resource\":",
        span.kind.as_str(),
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.code.as_str()
    )?;
    out.write_all(resources.json(&span.resource)?)?;
    out.write_all(b",\"attributes\":")?;
    serde_json::to_writer(&mut *out, &span.attributes).map_err(io::Error::from)?;
    out.write_all(b"}\n")
}

fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{Attributes, SpanIds, SpanKind, Status, StatusCode};
    use serde_json::json;

    fn span(parent: Option<&str>, state: Option<&str>, resource: &Resource) -> Span {
        let ids = SpanIds::root();
        let serde_json::Value::Object(attributes) =
            json!({"url.path": "/a\"b\\c\u{1}é", "http.response.status_code": 200, "x": true, "y": 1.5})
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
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            lines.push(v["resource"]["process.pid"].as_u64().unwrap());
        }
        assert_eq!(lines, [1, 2, 1]);
    }
}
