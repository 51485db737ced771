//! Where every finished span goes: one `SpanSink` the agent writes to, with the JSON lines and the
//! OTLP exporter behind it. A new destination is a new `SpanSink`, not a change to the agent.
use std::io::{self, BufWriter, Write};

use super::json_line::{self, ResourceCache};
use super::otlp;
use crate::spans::Span;

/// A destination for finished spans.
pub trait SpanSink {
    /// Takes one span; an error means this destination lost it (the caller counts it).
    fn send(&mut self, span: &Span) -> io::Result<()>;
    /// Makes what was sent visible (called after each batch of kernel records).
    fn flush(&mut self) -> io::Result<()>;
    /// A garbage collection paused a thread of `pid` for `ns`: only `top` shows them per
    /// worker; span destinations leave it (the metrics have their histogram).
    fn gc_pause(&mut self, _pid: u32, _ns: u64) {}
}

/// One span per line, as JSON (the default output, for pipes and files).
pub struct JsonLines {
    out: BufWriter<Box<dyn Write>>,
    resources: ResourceCache,
}

/// Room for a drain's spans (about a fifth of a second of a busy server), so that each drain is
/// one write or a few.
const OUTPUT_BUFFER: usize = 256 * 1024;

impl JsonLines {
    pub fn new(out: Box<dyn Write>) -> Self {
        JsonLines { out: BufWriter::with_capacity(OUTPUT_BUFFER, out), resources: ResourceCache::default() }
    }
}

impl SpanSink for JsonLines {
    fn send(&mut self, span: &Span) -> io::Result<()> {
        json_line::write(&mut self.out, span, &mut self.resources)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The OTLP/HTTP exporter's queue: it never fails here, its own counters tell what it dropped.
impl SpanSink for otlp::Exporter {
    fn send(&mut self, span: &Span) -> io::Result<()> {
        otlp::Exporter::send(self, span.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How spans are written to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per line: for pipes, files and collectors.
    #[default]
    Json,
    /// One short line per span, traces as trees: for a terminal (see pretty.rs).
    Pretty,
}

impl Format {
    pub fn sink(self, out: Box<dyn Write>) -> Box<dyn SpanSink> {
        match self {
            Format::Json => Box::new(JsonLines::new(out)),
            Format::Pretty => Box::new(super::pretty::Pretty::new(out)),
        }
    }
}

/// The output (JSON lines or pretty), and the OTLP exporter when one is configured.
pub struct Sinks {
    pub lines: Box<dyn SpanSink>,
    pub otlp: Option<otlp::Exporter>,
    pub extra: Option<Box<dyn SpanSink>>,
}

impl SpanSink for Sinks {
    /// The span counts as written when the JSON line was (the OTLP side counts its own outcomes).
    fn send(&mut self, span: &Span) -> io::Result<()> {
        if let Some(e) = &mut self.otlp {
            SpanSink::send(e, span)?;
        }
        if let Some(e) = &mut self.extra {
            e.send(span)?;
        }
        self.lines.send(span)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lines.flush()
    }

    fn gc_pause(&mut self, pid: u32, ns: u64) {
        if let Some(e) = &mut self.extra {
            e.gc_pause(pid, ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::SharedBuf;
    use crate::spans::{SpanIds, SpanKind, Status, StatusCode};

    #[test]
    fn json_lines_writes_one_line_per_span() {
        let buf = SharedBuf::default();
        let mut sinks = Sinks { lines: Format::Json.sink(Box::new(buf.clone())), otlp: None, extra: None };
        let ids = SpanIds::root();
        let span = Span {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: None,
            trace_state: None,
            name: "GET".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            status: Status { code: StatusCode::Unset },
            resource: crate::spans::Resource::default(),
            attributes: crate::spans::Attributes::default(),
        };
        sinks.send(&span).unwrap();
        sinks.send(&span).unwrap();
        sinks.flush().unwrap();
        let text = String::from_utf8(buf.0.borrow().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["name"] == "GET"));
    }
}
