//! pytracer's YAML configuration: schema, defaults and validation.
//!
//! Every error names the file, the line and the field, so that a typo in a DaemonSet's ConfigMap is
//! found from the agent's first log line.
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod env;

/// The shipped default configuration, every field documented. `Config::default()` equals it.
pub const DEFAULT_YAML: &str = include_str!("../pytracer.yaml");

/// The whole configuration. Every field can also be set by an environment variable
/// `PYTRACER_<SECTION>_<FIELD>` (see [`env`]; each is named in config/pytracer.yaml above its
/// field), applied over the file by [`Config::load_with_env`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub discovery: Discovery,
    pub service: Service,
    pub http: Http,
    pub output: Output,
    pub metrics: Metrics,
    pub cpython: Cpython,
    pub otlp: Otlp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Otlp {
    /// The OTLP/HTTP traces URL. When absent, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
    /// OTEL_EXPORTER_OTLP_ENDPOINT (plus /v1/traces) in the agent's environment enable export.
    pub endpoint: Option<String>,
    /// Extra request headers (API keys); OTEL_EXPORTER_OTLP_HEADERS adds to them.
    pub headers: std::collections::BTreeMap<String, String>,
    /// "gzip" or "none".
    pub compression: String,
    pub batch_size: usize,
    /// Spans waiting for export; beyond it they are dropped and counted.
    pub queue_size: usize,
    pub timeout_seconds: f64,
}

impl Default for Otlp {
    fn default() -> Self {
        Otlp {
            endpoint: None,
            headers: std::collections::BTreeMap::default(),
            compression: "gzip".into(),
            batch_size: 512,
            queue_size: 8192,
            timeout_seconds: 10.0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cpython {
    /// Measure how long threads wait to take the GIL back (cpython_gil_wait_seconds). Off by
    /// default: it costs a uprobe pair on every blocking call's return, several per request.
    pub gil_wait: bool,
    pub frame_eval: FrameEval,
}

/// When the stack-walking uprobe on `_PyEval_EvalFrameDefault` is attached. It fires about 120
/// times per Flask request, so it cannot stay on by default within the cost budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameEval {
    /// `sampled`: on for `window_ms` every `every_seconds` in each traced process; `always`: on
    /// all the time (for the processes you choose to trace that way); `off`.
    pub mode: FrameEvalMode,
    pub window_ms: u64,
    pub every_seconds: f64,
    /// Sampled mode: the least time between two stack walks on one thread, in microseconds.
    /// Each walk costs ~10-20 µs; a few per request find the handler. `always` walks every hit.
    pub min_walk_gap_us: u64,
    /// Sampled mode: open windows in processes whose route table already names each span's
    /// handler as well, to check the table against the stack (`pytracer_route_checks_total`).
    /// Off by default: a window costs ~+180 µs on each request served inside it (about 1% of a
    /// small request's CPU at the default duty cycle) for nothing the table does not give.
    pub in_routed_processes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameEvalMode {
    Off,
    Sampled,
    Always,
}

impl Default for FrameEval {
    fn default() -> Self {
        FrameEval {
            mode: FrameEvalMode::Sampled,
            window_ms: 100,
            every_seconds: 10.0,
            min_walk_gap_us: 250,
            in_routed_processes: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of the Prometheus `/metrics` endpoint of `pytracer run`; null turns it off.
    pub listen: Option<String>,
    /// Seconds a process's series stay after it exited, so a last scrape still sees them.
    pub exited_process_grace_seconds: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: Some("0.0.0.0:9464".into()), exited_process_grace_seconds: 60.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// A process is a candidate when its command line contains one of these (case-sensitive).
    pub whitelist: Vec<String>,
    /// ...and is ignored when it also contains one of these (checked after the whitelist).
    pub blacklist: Vec<String>,
    /// How often `pytracer run` reads all of /proc for new processes. Children of traced
    /// processes are followed in the kernel at once, and a new program is looked at about a second
    /// after its exec; this rescan is the safety net, for an exec record lost to a full ring
    /// buffer and a command line rewritten after the exec.
    pub rescan_interval_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    /// Overrides the service name of every traced process.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Names whose values never leave the agent: query parameters and captured headers.
    pub secrets: Secrets,
    /// Headers recorded on spans, by name (any case).
    pub capture_headers: CaptureHeaders,
}

/// Instana's secrets setting: a matcher and a list. A query parameter or captured header whose
/// name matches is recorded as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    pub matcher: SecretMatcher,
    pub list: Vec<String>,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            matcher: SecretMatcher::ContainsIgnoreCase,
            list: strings(&["key", "pass", "secret", "token", "auth", "session", "signature", "credential"]),
        }
    }
}

/// How a name is matched against each entry of the secrets list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretMatcher {
    ContainsIgnoreCase,
    Contains,
    EqualsIgnoreCase,
    Equals,
    /// The entry is a regular expression the whole name must match.
    Regex,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureHeaders {
    /// Request headers, as `http.request.header.<name>` on server and client spans.
    pub request: Vec<String>,
    /// Response headers, as `http.response.header.<name>`.
    pub response: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    /// Where JSON span lines go; standard output when absent.
    pub path: Option<PathBuf>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            whitelist: strings(&["gunicorn", "uwsgi"]),
            blacklist: strings(&["pipenv", "runserver", "ipython"]),
            rescan_interval_seconds: 30.0,
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}\n  (see config/pytracer.yaml for every field and its meaning)")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid { path: PathBuf, line: usize, field: &'static str, message: String },
    #[error("environment variable {var}=`{value}`: {message}")]
    Env { var: String, value: String, message: String },
}

impl Config {
    /// The file at `path` (the defaults when `None`), then the `PYTRACER_*` variables among
    /// `vars` over it (see [`env`]), validated together. The command line's flags go on top.
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, path) = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
                (text, p.to_owned())
            }
            None => (String::new(), PathBuf::from("<defaults>")),
        };
        let mut config = Config::parse_unvalidated(&text, &path)?;
        let from_env = env::apply(&mut config, vars)?;
        config.validate(&text, &path, &from_env)?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_unvalidated(text, path)?;
        config.validate(text, path, &[])?;
        Ok(config)
    }

    fn parse_unvalidated(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // An empty file (or one with only comments) means "all defaults".
        Ok(if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                ConfigError::Syntax { path: path.to_owned(), line, column, message: e.to_string() }
            })?
        })
    }

    /// `from_env`: the fields environment variables set, whose errors name the variable rather
    /// than a line of the file.
    fn validate(&self, text: &str, path: &Path, from_env: &[env::SetByEnv]) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| match from_env.iter().find(|(f, _, _)| *f == field) {
            Some((_, var, value)) => ConfigError::Env { var: var.clone(), value: value.clone(), message },
            None => ConfigError::Invalid { path: path.to_owned(), line: line_of(text, field), field, message },
        };
        let d = &self.discovery;
        if d.whitelist.is_empty() {
            return Err(invalid(
                "whitelist",
                "is empty, so nothing would ever be traced; list at least one command-line substring such as gunicorn"
                    .into(),
            ));
        }
        if d.whitelist.iter().chain(&d.blacklist).any(String::is_empty) {
            return Err(invalid("whitelist", "an empty entry matches every process; remove it".into()));
        }
        if !(d.rescan_interval_seconds.is_finite() && d.rescan_interval_seconds >= 0.1) {
            return Err(invalid(
                "rescan_interval_seconds",
                format!("is {}, it must be a number of seconds of at least 0.1", d.rescan_interval_seconds),
            ));
        }
        if self.service.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("name", "is empty; remove it to derive the name from each process".into()));
        }
        if let Some(addr) = &self.metrics.listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    "listen",
                    format!("`{addr}` is not an address and port such as 0.0.0.0:9464 (or null to turn metrics off)"),
                ));
            }
        }
        let grace = self.metrics.exited_process_grace_seconds;
        if !(grace.is_finite() && grace >= 0.0) {
            return Err(invalid(
                "exited_process_grace_seconds",
                format!("is {grace}, it must be a number of seconds, 0 or more"),
            ));
        }
        let fe = &self.cpython.frame_eval;
        if fe.mode == FrameEvalMode::Sampled {
            if fe.window_ms == 0 || fe.window_ms > 60_000 {
                return Err(invalid("window_ms", format!("is {}, it must be 1 to 60000 milliseconds", fe.window_ms)));
            }
            if !(fe.every_seconds.is_finite() && fe.every_seconds * 1000.0 > fe.window_ms as f64) {
                return Err(invalid(
                    "every_seconds",
                    format!("is {}, it must be longer than the window ({} ms)", fe.every_seconds, fe.window_ms),
                ));
            }
        }
        let o = &self.otlp;
        if let Some(url) = &o.endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("endpoint", format!("`{url}` is not an http:// or https:// URL (the full traces URL, e.g. http://collector:4318/v1/traces)")));
            }
        }
        if o.compression != "gzip" && o.compression != "none" {
            return Err(invalid("compression", format!("is `{}`; use gzip or none", o.compression)));
        }
        if !(1..=10_000).contains(&o.batch_size) {
            return Err(invalid("batch_size", format!("is {}; use 1 to 10000 spans", o.batch_size)));
        }
        if o.queue_size < o.batch_size {
            return Err(invalid(
                "queue_size",
                format!("is {}, smaller than batch_size {}", o.queue_size, o.batch_size),
            ));
        }
        if !(o.timeout_seconds.is_finite() && o.timeout_seconds > 0.0) {
            return Err(invalid(
                "timeout_seconds",
                format!("is {}; use a positive number of seconds", o.timeout_seconds),
            ));
        }
        self.validate_http(&invalid)
    }

    fn validate_http(&self, invalid: &impl Fn(&'static str, String) -> ConfigError) -> Result<(), ConfigError> {
        let secrets = &self.http.secrets;
        if secrets.list.iter().any(String::is_empty) {
            return Err(invalid("list", "an empty secrets entry would redact every value; remove it".into()));
        }
        if secrets.matcher == SecretMatcher::Regex {
            for entry in &secrets.list {
                if let Err(e) = regex::Regex::new(&format!("^(?:{entry})$")) {
                    return Err(invalid("list", format!("`{entry}` is not a regular expression: {e}")));
                }
            }
        }
        let c = &self.http.capture_headers;
        for (field, names) in [("request", &c.request), ("response", &c.response)] {
            if let Some(bad) = names.iter().find(|n| n.is_empty() || !n.bytes().all(is_token_byte)) {
                return Err(invalid(
                    field,
                    format!("`{bad}` is not a header name (letters, digits and !#$%&'*+-.^_`|~)"),
                ));
            }
        }
        Ok(())
    }
}

/// A byte of an HTTP token (RFC 9110 section 5.6.2), what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The 1-based line where `key:` first appears, for messages about values that parse but are wrong.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':')))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn shipped_file_is_the_default() {
        assert_eq!(parse(DEFAULT_YAML).unwrap(), Config::default());
    }

    #[test]
    fn metrics_can_be_turned_off() {
        assert_eq!(parse("metrics:\n  listen: null\n").unwrap().metrics.listen, None);
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(parse("# nothing\n\n").unwrap(), Config::default());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = parse("service:\n  name: shop\n").unwrap();
        assert_eq!(c.service.name.as_deref(), Some("shop"));
        assert_eq!(c.discovery, Discovery::default());
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = err("discovery:\n  whitelist: [gunicorn]\n  whitelst: [uwsgi]\n");
        assert!(e.starts_with("test.yaml:3:3: "), "{e}");
        assert!(e.contains("unknown field `whitelst`"), "{e}");
        assert!(e.contains("expected one of `whitelist`"), "{e}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let e = err("service:\n  name: a\nexporter:\n  otlp: x\n");
        assert!(e.starts_with("test.yaml:3:1: "), "{e}");
        assert!(e.contains("unknown field `exporter`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_field() {
        let e = err("discovery:\n  rescan_interval_seconds: soon\n");
        assert!(e.starts_with("test.yaml:2:"), "{e}");
        assert!(e.contains("rescan_interval_seconds"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn list_expected_but_scalar_given() {
        let e = err("discovery:\n  whitelist: gunicorn\n");
        assert!(e.starts_with("test.yaml:2:"), "{e}");
        assert!(e.contains("whitelist") && e.contains("expected a sequence"), "{e}");
    }

    #[test]
    fn bad_yaml_names_line() {
        let e = err("discovery:\n  whitelist: [gunicorn\nservice:\n");
        assert!(e.starts_with("test.yaml:"), "{e}");
        let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 2, "{e}");
    }

    #[test]
    fn invalid_values_name_their_line() {
        let e = err("discovery:\n  whitelist: []\n");
        assert_eq!(e.lines().next().unwrap().split(": field").next().unwrap(), "test.yaml:2");
        assert!(e.contains("`whitelist`"), "{e}");
        let e = err("discovery:\n  whitelist: [gunicorn]\n\n  rescan_interval_seconds: 0\n");
        assert!(e.starts_with("test.yaml:4: field `rescan_interval_seconds`: is 0"), "{e}");
        let e = err("service:\n  name: ' '\n");
        assert!(e.starts_with("test.yaml:2: field `name`"), "{e}");
        let e = err("http:\n  secrets:\n    list: ['']\n");
        assert!(e.starts_with("test.yaml:3: field `list`"), "{e}");
        let e = err("http:\n  secrets:\n    matcher: regex\n    list: ['a(']\n");
        assert!(e.starts_with("test.yaml:4: field `list`: `a(` is not a regular expression"), "{e}");
        let e = err("http:\n  secrets:\n    matcher: like\n");
        assert!(e.contains("unknown variant `like`, expected one of `contains-ignore-case`"), "{e}");
        let e = err("http:\n  capture_headers:\n    request: ['x y']\n");
        assert!(e.starts_with("test.yaml:3: field `request`: `x y` is not a header name"), "{e}");
        let c = parse("http:\n  secrets:\n    matcher: regex\n    list: ['x-.*']\n").unwrap();
        assert_eq!(c.http.secrets.matcher, SecretMatcher::Regex);
        let e = err("otlp:\n  endpoint: collector:4318\n");
        assert!(e.starts_with("test.yaml:2: field `endpoint`: `collector:4318` is not an http"), "{e}");
        let e = err("otlp:\n  compression: zstd\n");
        assert!(e.starts_with("test.yaml:2: field `compression`"), "{e}");
        let e = err("otlp:\n  batch_size: 100\n  queue_size: 10\n");
        assert!(e.starts_with("test.yaml:3: field `queue_size`"), "{e}");
        let e = err("metrics:\n  listen: localhost\n");
        assert!(e.starts_with("test.yaml:2: field `listen`: `localhost` is not an address"), "{e}");
        let e = err("metrics:\n  listen: null\n  exited_process_grace_seconds: -1\n");
        assert!(e.starts_with("test.yaml:3: field `exited_process_grace_seconds`"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/pytracer.yaml")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/pytracer.yaml"), "{e}");
    }
}
