//! What `pytracer top` shows, gathered from the spans as they finish: per service and route,
//! requests, errors and latencies, the handler, and the exit calls its requests made.
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::export::sink::SpanSink;
use crate::spans::{semconv, Span, SpanKind};

/// Latencies kept per route (the newest): percentiles over a bounded window.
const MAX_SAMPLES: usize = 10_000;
/// Calls waiting for the request that made them at most.
const MAX_PENDING: usize = 50_000;
/// Routes at most; beyond, requests count under `_OTHER`.
const MAX_ROUTES: usize = 2_000;
/// The live view's requests per second are over this window.
pub const RATE_WINDOW_NS: u64 = 10_000_000_000;

/// One row: a service's route (the app's `http.route`, else the `url.template`).
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub requests: u64,
    pub errors: u64,
    /// Server span durations in ns, the newest [`MAX_SAMPLES`].
    pub durations: Vec<u64>,
    /// `user() app.py:17`, from the newest span that named it.
    pub handler: Option<String>,
    /// Exit calls of its requests by kind (`postgresql`, `redis`, `http`): count, total ns.
    pub calls: BTreeMap<String, (u64, u64)>,
    pub pids: std::collections::BTreeSet<u64>,
    /// End times (Unix ns) of the requests of the last [`RATE_WINDOW_NS`].
    pub recent: std::collections::VecDeque<u64>,
}

impl Route {
    /// Requests that ended in the [`RATE_WINDOW_NS`] before `now_ns`.
    pub fn recent_count(&self, now_ns: u64) -> usize {
        self.recent.iter().filter(|&&t| t + RATE_WINDOW_NS >= now_ns).count()
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    /// (service, route) → its figures.
    pub routes: BTreeMap<(String, String), Route>,
    /// Exit calls by the span id of the request that made them, until that request finishes.
    pending: HashMap<String, Vec<(String, u64)>>,
    /// Garbage-collection pauses by process, since `top` started.
    pub gc_pauses: HashMap<u32, GcPauses>,
}

/// A process's GC pauses: how many, their total and the longest, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcPauses {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

impl Stats {
    pub fn add(&mut self, s: &Span) {
        let dur = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano);
        if s.kind != SpanKind::Server {
            if let Some(parent) = &s.parent_span_id {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                self.pending.entry(parent.clone()).or_default().push((call_kind(s), dur));
            }
            return;
        }
        let a = &s.attributes;
        let service = s.resource.get(semconv::SERVICE_NAME).and_then(Value::as_str).unwrap_or("-").to_string();
        let route = a
            .get(semconv::HTTP_ROUTE)
            .or_else(|| a.get(semconv::URL_TEMPLATE))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        let key = if self.routes.len() >= MAX_ROUTES && !self.routes.contains_key(&(service.clone(), route.clone())) {
            (service, "_OTHER".to_string())
        } else {
            (service, route)
        };
        let r = self.routes.entry(key).or_default();
        r.requests += 1;
        let status = a.get(semconv::HTTP_RESPONSE_STATUS_CODE).and_then(Value::as_u64).unwrap_or(0);
        if status >= 500 || a.contains_key(semconv::ERROR_TYPE) {
            r.errors += 1;
        }
        if r.durations.len() >= MAX_SAMPLES {
            r.durations.remove(0);
        }
        r.durations.push(dur);
        while r.recent.front().is_some_and(|&t| t + RATE_WINDOW_NS < s.end_time_unix_nano)
            || r.recent.len() >= MAX_SAMPLES
        {
            r.recent.pop_front();
        }
        r.recent.push_back(s.end_time_unix_nano);
        if let Some(f) = a.get(semconv::CODE_FUNCTION_NAME).and_then(Value::as_str) {
            let file = a.get(semconv::CODE_FILE_PATH).and_then(Value::as_str).unwrap_or_default();
            let base = file.rsplit('/').next().unwrap_or(file);
            let line = a.get(semconv::CODE_LINE_NUMBER).map(ToString::to_string).unwrap_or_default();
            r.handler = Some(format!("{f}() {base}:{line}"));
        }
        if let Some(pid) = s.resource.get(semconv::PROCESS_PID).and_then(Value::as_u64) {
            r.pids.insert(pid);
        }
        for (kind, d) in self.pending.remove(&s.span_id).unwrap_or_default() {
            let c = r.calls.entry(kind).or_default();
            c.0 += 1;
            c.1 += d;
        }
    }
}

/// What an exit call was: its database system, else `http`.
fn call_kind(s: &Span) -> String {
    s.attributes.get(semconv::DB_SYSTEM_NAME).and_then(Value::as_str).unwrap_or("http").to_string()
}

/// The nearest-rank percentile `p` (0–100) of `durations`, in ns.
pub fn percentile(durations: &[u64], p: f64) -> u64 {
    if durations.is_empty() {
        return 0;
    }
    let mut v = durations.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The agent's sink into the shared [`Stats`].
pub struct StatsSink(pub Arc<Mutex<Stats>>);

impl SpanSink for StatsSink {
    fn send(&mut self, span: &Span) -> io::Result<()> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(span);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn gc_pause(&mut self, pid: u32, ns: u64) {
        let mut s = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded by the traced processes: an exited one's entry is one small record.
        let g = s.gc_pauses.entry(pid).or_default();
        g.count += 1;
        g.total_ns += ns;
        g.max_ns = g.max_ns.max(ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&d, 50.0), percentile(&d, 95.0), percentile(&d, 99.0)), (50, 95, 99));
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
