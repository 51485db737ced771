//! OTLP/HTTP (protobuf) export of spans, next to the JSON lines. A dedicated thread batches spans
//! from a bounded queue, so a slow or down collector never blocks the event loop: when the queue
//! is full, spans are dropped and counted.
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;

use super::proto;
use crate::spans::{Attributes, Span, StatusCode};

/// Where and how to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full traces URL, e.g. http://collector:4318/v1/traces.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub batch_size: usize,
    pub queue_size: usize,
    pub timeout: Duration,
}

impl Settings {
    /// From the config file, else the standard OpenTelemetry environment variables (of the
    /// agent's own environment). None when neither asks for OTLP.
    pub fn resolve(cfg: &pytracer_config::Otlp, env: impl Fn(&str) -> Option<String>) -> Option<Settings> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let url = cfg.endpoint.clone().or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).or_else(|| {
            // The generic endpoint is a base URL: the signal's path is appended (OTLP spec).
            env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })?;
        let mut headers: Vec<(String, String)> = cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            if let Some(list) = env(var) {
                headers.extend(parse_headers(&list));
            }
        }
        Some(Settings {
            url,
            headers,
            gzip: cfg.compression == "gzip",
            batch_size: cfg.batch_size,
            queue_size: cfg.queue_size,
            timeout: Duration::from_secs_f64(cfg.timeout_seconds),
        })
    }
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C Baggage format, as the spec says).
fn parse_headers(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the exporter did, read by the agent's metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub exported: AtomicU64,
    /// Dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Given up on after retries, or refused by the collector.
    pub failed: AtomicU64,
    pub retries: AtomicU64,
}

pub struct Exporter {
    tx: Option<SyncSender<Span>>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

/// Retries per batch, and the longest wait between two tries.
const MAX_ATTEMPTS: u32 = 6;
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A partial batch goes out after this long.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

impl Exporter {
    pub fn start(settings: Settings) -> Exporter {
        let (tx, rx) = sync_channel(settings.queue_size);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&settings, &rx, &c))
            .expect("spawning the OTLP exporter thread");
        Exporter { tx: Some(tx), thread: Some(thread), counters }
    }

    /// Never blocks: a full queue drops the span and counts it.
    pub fn send(&self, span: Span) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(span) {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends what is queued (bounded by the retry budget) and stops the thread.
    pub fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(settings: &Settings, rx: &Receiver<Span>, counters: &Counters) {
    let agent = ureq::AgentBuilder::new().timeout(settings.timeout).build();
    let mut batch: Vec<Span> = Vec::with_capacity(settings.batch_size);
    let mut deadline = Instant::now() + FLUSH_EVERY;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(span) => {
                batch.push(span);
                if batch.len() < settings.batch_size {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                flush(&agent, settings, &mut batch, counters);
                return;
            }
        }
        flush(&agent, settings, &mut batch, counters);
        deadline = Instant::now() + FLUSH_EVERY;
    }
}

fn flush(agent: &ureq::Agent, s: &Settings, batch: &mut Vec<Span>, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let body = encode(batch);
    batch.clear();
    let body = if s.gzip { gzip(&body) } else { body };
    let mut backoff = Duration::from_millis(250);
    for attempt in 1..=MAX_ATTEMPTS {
        let mut req = agent.post(&s.url).set("Content-Type", "application/x-protobuf");
        if s.gzip {
            req = req.set("Content-Encoding", "gzip");
        }
        for (k, v) in &s.headers {
            req = req.set(k, v);
        }
        let wait = match req.send_bytes(&body) {
            Ok(_) => {
                counters.exported.fetch_add(n, Ordering::Relaxed);
                return;
            }
            // Throttled or briefly unavailable: the OTLP spec says to retry, after Retry-After
            // when the collector gives one.
            Err(ureq::Error::Status(code @ (429 | 502 | 503 | 504), resp)) => {
                let after =
                    resp.header("Retry-After").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                log::warn!("OTLP collector answered {code} (attempt {attempt}/{MAX_ATTEMPTS}); retrying");
                after.unwrap_or(backoff).min(MAX_BACKOFF)
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                log::error!(
                    "OTLP collector refused {n} spans with {code}: {}",
                    text.chars().take(200).collect::<String>()
                );
                counters.failed.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(ureq::Error::Transport(t)) => {
                log::warn!("cannot reach the OTLP collector at {} (attempt {attempt}/{MAX_ATTEMPTS}): {t}", s.url);
                backoff
            }
        };
        if attempt < MAX_ATTEMPTS {
            counters.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    counters.failed.fetch_add(n, Ordering::Relaxed);
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    e.write_all(body).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// One ResourceSpans per distinct resource (per traced process), in arrival order.
pub fn encode(spans: &[Span]) -> Vec<u8> {
    let mut groups: Vec<(&Attributes, Vec<proto::Span>)> = Vec::new();
    for s in spans {
        let p = to_proto(s);
        match groups.iter_mut().find(|(r, _)| *r == &*s.resource) {
            Some((_, v)) => v.push(p),
            None => groups.push((&*s.resource, vec![p])),
        }
    }
    let req = proto::ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(resource, spans)| proto::ResourceSpans {
                resource: Some(proto::Resource { attributes: key_values(resource) }),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(proto::InstrumentationScope {
                        name: "pytracer".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    spans,
                }],
            })
            .collect(),
    };
    req.encode_to_vec()
}

fn to_proto(s: &Span) -> proto::Span {
    proto::Span {
        trace_id: hex_bytes(&s.trace_id),
        span_id: hex_bytes(&s.span_id),
        trace_state: s.trace_state.clone().unwrap_or_default(),
        parent_span_id: s.parent_span_id.as_deref().map(hex_bytes).unwrap_or_default(),
        name: s.name.clone(),
        kind: s.kind.otlp(),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: key_values(&s.attributes),
        status: Some(proto::Status {
            message: String::new(),
            code: if s.status.code == StatusCode::Error { 2 } else { 0 },
        }),
    }
}

fn key_values(a: &Attributes) -> Vec<proto::KeyValue> {
    use proto::any_value::Value as V;
    a.iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Value::String(s) => V::StringValue(s.clone()),
                Value::Bool(b) => V::BoolValue(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => V::IntValue(i),
                    None => V::DoubleValue(n.as_f64()?),
                },
                _ => return None,
            };
            Some(proto::KeyValue { key: k.to_string(), value: Some(proto::AnyValue { value: Some(value) }) })
        })
        .collect()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_config_then_environment() {
        let mut cfg = pytracer_config::Otlp::default();
        let none = |_: &str| None;
        assert_eq!(Settings::resolve(&cfg, none), None);
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4318/".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("api-key=a%20b,x=1".to_string()),
            _ => None,
        };
        let s = Settings::resolve(&cfg, env).unwrap();
        assert_eq!(s.url, "http://c:4318/v1/traces");
        assert_eq!(s.headers, [("api-key".to_string(), "a b".to_string()), ("x".to_string(), "1".to_string())]);
        assert!(s.gzip);
        let traces = |k: &str| (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://t/v1/traces".to_string());
        assert_eq!(Settings::resolve(&cfg, traces).unwrap().url, "http://t/v1/traces");
        cfg.endpoint = Some("https://cfg/v1/traces".into());
        assert_eq!(Settings::resolve(&cfg, env).unwrap().url, "https://cfg/v1/traces");
    }

    #[test]
    fn encodes_and_groups_by_resource() {
        let mut a = Attributes::default();
        a.insert("http.response.status_code".into(), 200.into());
        let span = |pid: u32| Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            trace_state: None,
            name: "GET".into(),
            kind: crate::spans::SpanKind::Server,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            status: crate::spans::Status { code: StatusCode::Unset },
            resource: Arc::new([("process.pid".into(), Value::from(pid))].into_iter().collect()),
            attributes: a.clone(),
        };
        let bytes = encode(&[span(1), span(2), span(1)]);
        let req = proto::ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.resource_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id, hex_bytes("00f067aa0ba902b7"));
        assert_eq!(s.kind, 2);
    }
}
