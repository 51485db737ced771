//! A private Prometheus server for the metrics tests: Debian's `prometheus`, its own config (one
//! job scraping given loopback ports every second), its own TSDB in a scratch directory and its
//! web API on 127.0.0.1:<free port>, in its own process group, stopped on drop. Never the system
//! service. [`Prometheus::query`] runs PromQL through its HTTP API (`/api/v1/query`), as Grafana
//! does.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::http::get;
use crate::server::{free_port, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;

/// The scrape (and rule evaluation) interval of the private server: short, so a test sees what
/// it sent within seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// The job name every scraped series carries (`job` label).
pub const JOB: &str = "pytracer";
/// Prometheus bounds no part of an empty TSDB's start-up; this is the harness's own choice.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Prometheus's own shutdown bound is the scrape and rule managers' stop plus the TSDB close,
/// which for a few minutes of data is well under this.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// The prometheus binary: `$PYTRACER_PROMETHEUS`, else /usr/bin/prometheus (Debian's package).
pub fn prometheus_bin() -> PathBuf {
    match std::env::var_os("PYTRACER_PROMETHEUS") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("/usr/bin/prometheus"),
    }
}

/// Whether a private Prometheus can run: skips the test, or fails it under
/// `PYTRACER_REQUIRE_PRIVILEGED=1`, when the binary is missing.
pub fn require_prometheus() -> bool {
    crate::env::gate(&missing_prometheus())
}

fn missing_prometheus() -> Vec<String> {
    let b = prometheus_bin();
    if b.is_file() {
        vec![]
    } else {
        vec![format!(
            "{} not found (set PYTRACER_PROMETHEUS or run `cargo xtask setup`, which installs Debian's prometheus)",
            b.display()
        )]
    }
}

/// One element of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A running private Prometheus; stopped on drop.
pub struct Prometheus {
    server: Server,
    port: u16,
    // Dropped last: the TSDB lives in it.
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:<port>/metrics` for each of `targets`; panics with
    /// its log tail on failure.
    pub fn start(targets: &[u16]) -> Prometheus {
        match Self::try_start(targets) {
            Ok(p) => p,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn try_start(targets: &[u16]) -> Result<Prometheus> {
        let missing = missing_prometheus();
        if !missing.is_empty() {
            bail!("cannot start prometheus: {}", missing.join("; "));
        }
        crate::server::start_retrying(|| Self::spawn(targets))
    }

    fn spawn(targets: &[u16]) -> Result<Prometheus> {
        let dir = TempDir::new("prometheus")?;
        let port = free_port()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets)).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's defaults point at /usr/share/prometheus; the API needs neither.
            .arg(format!("--web.console.templates={}", dir.path().display()))
            .arg(format!("--web.console.libraries={}", dir.path().display()))
            .arg("--log.level=info");
        let stop = Stop { signal: libc::SIGTERM, grace: SHUTDOWN + MARGIN };
        let server = Server::spawn("prometheus", &mut cmd, dir.path().join("prometheus.log"), stop)?;
        Ok(Prometheus { server, port, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Its API's JSON answer to `GET path`; an error carries Prometheus's own message (a PromQL
    /// syntax error, say).
    pub fn api(&self, path: &str) -> Result<Value> {
        let resp = get(self.port, path);
        let body: Value = serde_json::from_slice(&resp.body)
            .with_context(|| format!("GET {path}: {} {}", resp.status, resp.text()))?;
        if body["status"] != "success" {
            bail!("GET {path}: {} {}: {}", resp.status, body["errorType"], body["error"]);
        }
        Ok(body["data"].clone())
    }

    /// An instant query at the current time; a scalar answer is one sample without labels.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("query", promql).finish();
        let data = self.api(&format!("/api/v1/query?{q}")).with_context(|| format!("query {promql}"))?;
        let value = |v: &Value| -> Result<f64> {
            let text = v[1].as_str().with_context(|| format!("a sample value: {v}"))?;
            // Prometheus writes NaN and infinities as Go does.
            text.parse().with_context(|| format!("a sample value: {text}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .context("a vector's result")?
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .context("a sample's metric")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                    Ok(Sample { labels, value: value(&s["value"])? })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample { labels: BTreeMap::new(), value: value(&data["result"])? }]),
            other => bail!("query {promql}: a result type this harness does not read: {other:?}"),
        }
    }

    /// The values of `label` on the series that match `selector` (Grafana's `label_values()`).
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>> {
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("match[]", selector).finish();
        let data = self.api(&format!("/api/v1/label/{label}/values?{q}"))?;
        Ok(data.as_array().context("label values")?.iter().filter_map(|v| v.as_str().map(String::from)).collect())
    }

    /// Scrape targets and their health, as `/api/v1/targets` reports them: (scrape URL, health,
    /// last error).
    pub fn targets(&self) -> Result<Vec<(String, String, String)>> {
        let data = self.api("/api/v1/targets")?;
        Ok(data["activeTargets"]
            .as_array()
            .context("active targets")?
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("scrapeUrl"), s("health"), s("lastError"))
            })
            .collect())
    }
}

fn config_yaml(targets: &[u16]) -> String {
    let secs = SCRAPE_INTERVAL.as_secs();
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "global:\n  scrape_interval: {secs}s\n  evaluation_interval: {secs}s\n  scrape_timeout: {secs}s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

impl Started for Prometheus {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    fn ready_timeout(&self) -> Duration {
        START_TIMEOUT + MARGIN
    }

    fn is_ready(&mut self) -> bool {
        tcp_accepts(self.port) && get(self.port, "/-/ready").status == 200
    }

    fn progress(&self) -> String {
        format!("no 200 from /-/ready on port {}", self.port)
    }
}
