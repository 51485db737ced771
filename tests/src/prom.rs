//! Reading the agent's Prometheus endpoint in tests: a scrape parsed into sample lines, and
//! sums over the lines that carry given labels.
use std::collections::HashMap;
use std::net::TcpListener;

use crate::http::get;

/// A loopback port nothing listens on (for the agent's `--metrics-addr`).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One sample line: name, labels, value.
#[derive(Debug)]
pub struct Line {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

pub fn scrape(port: u16) -> Vec<Line> {
    let resp = get(port, "/metrics");
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap_or_default().starts_with("application/openmetrics-text"));
    let text = resp.text();
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics ends with # EOF:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((metric, tail)) => (metric, tail.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Line { name: name.to_string(), labels, value: value.parse().unwrap() }
        })
        .collect()
}

pub fn sum(lines: &[Line], name: &str, want: &[(&str, &str)]) -> f64 {
    lines
        .iter()
        .filter(|l| l.name == name && want.iter().all(|(k, v)| l.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|l| l.value)
        .sum()
}
