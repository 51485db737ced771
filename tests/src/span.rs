//! Reading span JSON in assertions.
//!
//! Accessors return `Value::Null` / `None` for absent fields instead of panicking, so a test's
//! `assert_eq!` shows the whole comparison; lookups that must succeed panic with the span shown.

use serde_json::Value;

/// `span["attributes"][key]`; `Value::Null` when absent.
pub fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

pub fn attr_str<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    attr(span, key).as_str()
}

/// An attribute as an integer, whether the agent wrote a JSON number or a decimal string
/// (OTLP/JSON encodes 64-bit integers as strings).
pub fn attr_u64(span: &Value, key: &str) -> Option<u64> {
    as_u64(attr(span, key))
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The span's duration in nanoseconds: `duration_ns` if present (top level or attribute),
/// else `end_time_unix_nano - start_time_unix_nano` (or `end_ns - start_ns`).
pub fn duration_ns(span: &Value) -> u64 {
    if let Some(d) = as_u64(&span["duration_ns"]).or_else(|| attr_u64(span, "duration_ns")) {
        return d;
    }
    for (start, end) in [("start_time_unix_nano", "end_time_unix_nano"), ("start_ns", "end_ns")] {
        if let (Some(s), Some(e)) = (as_u64(&span[start]), as_u64(&span[end])) {
            assert!(e >= s, "span ends ({e}) before it starts ({s}): {span}");
            return e - s;
        }
    }
    panic!("span has no duration_ns nor start/end times: {span}");
}

/// The request path without query string: attribute `url.path`, else `http.target` cut at `?`.
pub fn span_path(span: &Value) -> Option<&str> {
    attr_str(span, "url.path").or_else(|| attr_str(span, "http.target").map(|t| t.split('?').next().unwrap_or(t)))
}

/// Spans whose path (see [`span_path`]) is exactly `path`, in output order.
pub fn spans_by_path<'a>(spans: &'a [Value], path: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| span_path(s) == Some(path)).collect()
}

/// Spans whose attribute `key` equals `value`.
pub fn spans_with_attr<'a>(spans: &'a [Value], key: &str, value: &Value) -> Vec<&'a Value> {
    spans.iter().filter(|s| attr(s, key) == value).collect()
}

/// The one span with this path; panics listing all spans when there are zero or several.
pub fn one_span<'a>(spans: &'a [Value], path: &str) -> &'a Value {
    let found = spans_by_path(spans, path);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one span for {path}, found {}; all spans:\n{}",
        found.len(),
        summarize(spans)
    );
    found[0]
}

/// One line per span, for failure messages.
pub fn summarize(spans: &[Value]) -> String {
    if spans.is_empty() {
        return "<no spans>".into();
    }
    spans.iter().enumerate().map(|(i, s)| format!("  [{i}] {s}")).collect::<Vec<_>>().join("\n")
}

/// The spans whose parent is the span with id `parent_id`, in start order.
pub fn children<'a>(spans: &'a [Value], parent_id: &Value) -> Vec<&'a Value> {
    let mut c: Vec<&Value> = spans.iter().filter(|s| s["parent_span_id"] == *parent_id).collect();
    c.sort_by_key(|s| s["start_time_unix_nano"].as_u64());
    c
}

/// The Python caller of an exit span, or the handler of a server span: function, file, and the
/// function's first line.
pub fn assert_code(span: &Value, file: &std::path::Path, function: &str) {
    let what = format!("{} {}", span["kind"], span["name"]);
    assert_eq!(attr_str(span, "code.function.name"), Some(function), "{what}: {span}");
    assert_eq!(attr_str(span, "code.file.path"), Some(file.to_str().unwrap()), "{what}");
    assert_eq!(attr_u64(span, "code.line.number"), Some(crate::first_line_of(file, function)), "{what}");
}

/// The connect's share of a call that lived one (None for a call on a connection already open),
/// checked to lie within the span.
pub fn connect_share(span: &Value) -> Option<f64> {
    let took = span["attributes"].get("pytracer.connect.duration")?.as_f64().expect("seconds");
    #[expect(clippy::cast_precision_loss, reason = "a span's duration in seconds")]
    let span_s = duration_ns(span) as f64 / 1e9;
    assert!((0.0..=span_s).contains(&took), "the connect ({took} s) within the span ({span_s} s): {span}");
    Some(took)
}

/// An exit span's attributes other than `code.*` and the connect's duration (checked by
/// [`connect_share`]), for exact comparison.
pub fn exit_attributes(span: &Value) -> Value {
    connect_share(span);
    let mut a = span["attributes"].as_object().cloned().unwrap_or_default();
    a.retain(|k, _| !k.starts_with("code.") && k != "pytracer.connect.duration");
    Value::Object(a)
}
