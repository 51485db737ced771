//! The rows `top` shows, computed once per refresh from the stats and the workers, and their
//! plain-text form (`--once`, and any terminal without a live view).
use std::fmt::Write as _;

use super::stats::{percentile, Stats};
use super::workers::Worker;

/// A column to sort the routes by (largest first; route names A–Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Requests,
    Errors,
    P50,
    P95,
    P99,
    Route,
}

impl SortBy {
    pub const ALL: [SortBy; 6] =
        [SortBy::Requests, SortBy::Errors, SortBy::P50, SortBy::P95, SortBy::P99, SortBy::Route];

    pub fn parse(s: &str) -> Result<SortBy, String> {
        SortBy::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("`{s}` is not a column: use {}", SortBy::ALL.map(SortBy::name).join(", ")))
    }

    pub fn name(self) -> &'static str {
        match self {
            SortBy::Requests => "requests",
            SortBy::Errors => "errors",
            SortBy::P50 => "p50",
            SortBy::P95 => "p95",
            SortBy::P99 => "p99",
            SortBy::Route => "route",
        }
    }

    /// The next column (the live view's `s` key).
    #[must_use]
    pub fn next(self) -> SortBy {
        let i = SortBy::ALL.iter().position(|c| *c == self).unwrap_or(0);
        SortBy::ALL[(i + 1) % SortBy::ALL.len()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteRow {
    pub service: String,
    pub route: String,
    pub requests: u64,
    pub per_second: f64,
    /// Share of requests that failed, in percent.
    pub error_percent: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub handler: String,
    /// `postgresql 2×0.8ms redis 1×0.1ms`: calls per request and their mean latency.
    pub calls: String,
}

/// The routes' rows, sorted. Requests per second are over the `elapsed_s` seconds of tracing, or
/// with `live`, over the last ten seconds (the whole time while it is shorter).
pub fn route_rows(stats: &Stats, elapsed_s: f64, sort: SortBy, live: bool) -> Vec<RouteRow> {
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let window_s = (super::stats::RATE_WINDOW_NS as f64 / 1e9).min(elapsed_s);
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut rows: Vec<RouteRow> = stats
        .routes
        .iter()
        .map(|((service, route), r)| RouteRow {
            service: service.clone(),
            route: route.clone(),
            requests: r.requests,
            per_second: if live {
                r.recent_count(now_ns) as f64 / window_s.max(1e-9)
            } else {
                r.requests as f64 / elapsed_s.max(1e-9)
            },
            error_percent: 100.0 * r.errors as f64 / r.requests.max(1) as f64,
            p50_ms: ms(percentile(&r.durations, 50.0)),
            p95_ms: ms(percentile(&r.durations, 95.0)),
            p99_ms: ms(percentile(&r.durations, 99.0)),
            handler: r.handler.clone().unwrap_or_else(|| "-".into()),
            calls: r
                .calls
                .iter()
                .map(|(kind, (n, total))| {
                    format!("{kind} {:.1}×{:.2}ms", *n as f64 / r.requests as f64, ms(*total) / (*n).max(1) as f64)
                })
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    let key = |r: &RouteRow| match sort {
        SortBy::Requests => r.requests as f64,
        SortBy::Errors => r.error_percent,
        SortBy::P50 => r.p50_ms,
        SortBy::P95 => r.p95_ms,
        SortBy::P99 => r.p99_ms,
        SortBy::Route => 0.0,
    };
    rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| (&a.service, &a.route).cmp(&(&b.service, &b.route))));
    rows
}

pub const ROUTE_HEADER: [&str; 9] = ["SERVICE", "ROUTE", "REQS", "REQ/S", "ERR%", "P50ms", "P95ms", "P99ms", "HANDLER"];
pub const WORKER_HEADER: [&str; 7] = ["PID", "SERVICE", "CPU%", "RSS MiB", "GC", "GC PAUSE ms", "GC MAX ms"];

/// A route row's cells, in [`ROUTE_HEADER`]'s order (the calls go on their own line).
pub fn route_cells(r: &RouteRow) -> [String; 9] {
    [
        r.service.clone(),
        r.route.clone(),
        r.requests.to_string(),
        format!("{:.1}", r.per_second),
        format!("{:.1}", r.error_percent),
        format!("{:.2}", r.p50_ms),
        format!("{:.2}", r.p95_ms),
        format!("{:.2}", r.p99_ms),
        r.handler.clone(),
    ]
}

pub fn worker_cells(w: &Worker) -> [String; 7] {
    [
        w.pid.to_string(),
        w.service.clone(),
        format!("{:.1}", w.cpu_percent),
        format!("{:.1}", w.rss_bytes as f64 / 1_048_576.0),
        w.gc_collections.map_or_else(|| "-".into(), |n| n.to_string()),
        format!("{:.2}", w.gc_pauses.total_ns as f64 / 1e6),
        format!("{:.2}", w.gc_pauses.max_ns as f64 / 1e6),
    ]
}

/// The plain-text table: routes (each with its calls beneath when it made any), then workers.
pub fn plain(routes: &[RouteRow], workers: &[Worker]) -> String {
    let mut out = String::new();
    let cells: Vec<[String; 9]> = routes.iter().map(route_cells).collect();
    let widths = column_widths(&ROUTE_HEADER, &cells);
    line(&mut out, &ROUTE_HEADER.map(str::to_string), &widths);
    for (r, c) in routes.iter().zip(&cells) {
        line(&mut out, c, &widths);
        if !r.calls.is_empty() {
            let _ = writeln!(out, "    calls: {}", r.calls);
        }
    }
    if !workers.is_empty() {
        out.push('\n');
        let cells: Vec<[String; 7]> = workers.iter().map(worker_cells).collect();
        let widths = column_widths(&WORKER_HEADER, &cells);
        line(&mut out, &WORKER_HEADER.map(str::to_string), &widths);
        for c in &cells {
            line(&mut out, c, &widths);
        }
    }
    out
}

fn column_widths<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> [usize; N] {
    let mut w = header.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    w
}

fn line<const N: usize>(out: &mut String, cells: &[String; N], widths: &[usize; N]) {
    let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
    let _ = writeln!(out, "{}", parts.join("  ").trim_end());
}
