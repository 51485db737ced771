//! Environment overrides: every field of the configuration can also be set by a variable
//! `PYTRACER_<SECTION>_<FIELD>` (the YAML path upper-cased, dots as underscores), as a Kubernetes
//! pod spec sets things. They apply after the file and before the command line's flags.
//!
//! Values: lists are comma-separated (`gunicorn,uwsgi`; empty for none), maps `k=v,k2=v2`,
//! booleans `true` or `false`, and an empty value for an optional field leaves it unset (for
//! `metrics.listen`: turns the endpoint off). A value that does not parse is an error naming the
//! variable; a `PYTRACER_<SECTION>_` variable naming no field is one too, so a typo is not
//! silently ignored.
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{Config, ConfigError, FrameEvalMode, SecretMatcher};

/// Every variable, the YAML field it sets, and how.
pub(crate) struct EnvField {
    /// The field's YAML path, `section.field` or `cpython.frame_eval.mode`.
    pub path: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

impl EnvField {
    /// `PYTRACER_` and the path, upper-cased, dots as underscores.
    pub fn var(&self) -> String {
        format!("PYTRACER_{}", self.path.to_uppercase().replace('.', "_"))
    }

    /// The field's own name, as validation messages name it.
    pub fn leaf(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }
}

macro_rules! field {
    ($path:literal, |$c:ident, $v:ident| $body:expr) => {
        EnvField {
            path: $path,
            set: |$c: &mut Config, $v: &str| {
                $body;
                Ok(())
            },
        }
    };
}

/// The variables, in the order of config/pytracer.yaml.
pub(crate) const FIELDS: &[EnvField] = &[
    field!("discovery.whitelist", |c, v| c.discovery.whitelist = list(v)?),
    field!("discovery.blacklist", |c, v| c.discovery.blacklist = list(v)?),
    field!("discovery.rescan_interval_seconds", |c, v| c.discovery.rescan_interval_seconds = number(v)?),
    field!("service.name", |c, v| c.service.name = optional(v)),
    field!("http.secrets.matcher", |c, v| c.http.secrets.matcher = matcher(v)?),
    field!("http.secrets.list", |c, v| c.http.secrets.list = list(v)?),
    field!("http.capture_headers.request", |c, v| c.http.capture_headers.request = list(v)?),
    field!("http.capture_headers.response", |c, v| c.http.capture_headers.response = list(v)?),
    field!("output.path", |c, v| c.output.path = optional(v).map(PathBuf::from)),
    field!("metrics.listen", |c, v| c.metrics.listen = optional(v)),
    field!("metrics.exited_process_grace_seconds", |c, v| c.metrics.exited_process_grace_seconds = number(v)?),
    field!("cpython.gil_wait", |c, v| c.cpython.gil_wait = boolean(v)?),
    field!("cpython.frame_eval.mode", |c, v| c.cpython.frame_eval.mode = mode(v)?),
    field!("cpython.frame_eval.window_ms", |c, v| c.cpython.frame_eval.window_ms = whole(v)?),
    field!("cpython.frame_eval.every_seconds", |c, v| c.cpython.frame_eval.every_seconds = number(v)?),
    field!("cpython.frame_eval.min_walk_gap_us", |c, v| c.cpython.frame_eval.min_walk_gap_us = whole(v)?),
    field!("cpython.frame_eval.in_routed_processes", |c, v| c.cpython.frame_eval.in_routed_processes = boolean(v)?),
    field!("otlp.endpoint", |c, v| c.otlp.endpoint = optional(v)),
    field!("otlp.headers", |c, v| c.otlp.headers = map(v)?),
    field!("otlp.compression", |c, v| c.otlp.compression = v.trim().to_string()),
    field!("otlp.batch_size", |c, v| c.otlp.batch_size = whole(v)?),
    field!("otlp.queue_size", |c, v| c.otlp.queue_size = whole(v)?),
    field!("otlp.timeout_seconds", |c, v| c.otlp.timeout_seconds = number(v)?),
];

/// A field an environment variable set: its leaf name, the variable and its value.
pub(crate) type SetByEnv = (&'static str, String, String);

/// Applies the `PYTRACER_*` variables among `vars` to `config`; returns which fields they set,
/// for validation messages.
pub(crate) fn apply(
    config: &mut Config,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<SetByEnv>, ConfigError> {
    let mut set = Vec::new();
    // Sorted, so that of several bad variables the same one is named every time.
    let vars: BTreeMap<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("PYTRACER_")).collect();
    for (var, value) in &vars {
        match FIELDS.iter().find(|f| f.var() == *var) {
            Some(f) => {
                (f.set)(config, value).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    value: value.clone(),
                    message,
                })?;
                set.push((f.leaf(), var.clone(), value.clone()));
            }
            None => {
                if let Some(section) = section_of(var) {
                    let known: Vec<String> =
                        FIELDS.iter().filter(|f| f.path.starts_with(section)).map(EnvField::var).collect();
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        value: value.clone(),
                        message: format!("no such setting; the {section} section's are {}", known.join(", ")),
                    });
                }
            }
        }
    }
    Ok(set)
}

/// The configuration section a `PYTRACER_<SECTION>_...` variable would belong to. Other
/// `PYTRACER_` variables (the test harness's, say) are not the agent's business.
fn section_of(var: &str) -> Option<&'static str> {
    let rest = var.strip_prefix("PYTRACER_")?;
    FIELDS
        .iter()
        .map(|f| f.path.split('.').next().unwrap_or_default())
        .find(|s| rest.strip_prefix(&s.to_uppercase()).is_some_and(|r| r.starts_with('_')))
}

fn list(v: &str) -> Result<Vec<String>, String> {
    if v.trim().is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err("has an empty entry (two commas in a row, or one at an end); list entries separated by commas, \
                    e.g. gunicorn,uwsgi"
            .into());
    }
    Ok(items)
}

fn map(v: &str) -> Result<BTreeMap<String, String>, String> {
    list(v)?
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_string(), val.trim().to_string())),
            _ => Err(format!("`{kv}` is not key=value; write entries as k=v,k2=v2")),
        })
        .collect()
}

fn optional(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn number(v: &str) -> Result<f64, String> {
    v.trim().parse().map_err(|_| "is not a number".to_string())
}

fn whole<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| "is not a whole number (0 or more)".to_string())
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not a boolean; use true or false".into()),
    }
}

fn mode(v: &str) -> Result<FrameEvalMode, String> {
    match v.trim() {
        "off" => Ok(FrameEvalMode::Off),
        "sampled" => Ok(FrameEvalMode::Sampled),
        "always" => Ok(FrameEvalMode::Always),
        _ => Err("is not a mode; use off, sampled or always".into()),
    }
}

fn matcher(v: &str) -> Result<SecretMatcher, String> {
    match v.trim() {
        "contains-ignore-case" => Ok(SecretMatcher::ContainsIgnoreCase),
        "contains" => Ok(SecretMatcher::Contains),
        "equals-ignore-case" => Ok(SecretMatcher::EqualsIgnoreCase),
        "equals" => Ok(SecretMatcher::Equals),
        "regex" => Ok(SecretMatcher::Regex),
        _ => Err("is not a matcher; use contains-ignore-case, contains, equals-ignore-case, equals or regex".into()),
    }
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "the floats compared were parsed from short decimal strings, exactly")]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        CaptureHeaders, Cpython, Discovery, FrameEval, Http, Metrics, Otlp, Output, Secrets, Service, DEFAULT_YAML,
    };

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn load(file: Option<&str>, v: &[(&str, &str)]) -> Result<Config, ConfigError> {
        // One file per call: the tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pytracer-config-env-{}-{n}.yaml", std::process::id()));
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let c = Config::load_with_env(file.map(|_| path.as_path()), vars(v));
        let _ = std::fs::remove_file(&path);
        c
    }

    fn err(file: Option<&str>, v: &[(&str, &str)]) -> String {
        load(file, v).expect_err("should be rejected").to_string()
    }

    /// Each variable is named in config/pytracer.yaml on the line above its field (or the
    /// commented-out example of an optional one), and nowhere else.
    #[test]
    fn every_variable_is_documented_above_its_field() {
        let lines: Vec<&str> = DEFAULT_YAML.lines().collect();
        let documented = lines.iter().filter(|l| l.contains("# Environment: PYTRACER_")).count();
        assert_eq!(documented, FIELDS.len());
        for f in FIELDS {
            let var = f.var();
            let at = lines
                .iter()
                .position(|l| {
                    l.trim_start()
                        .strip_prefix("# Environment: ")
                        .is_some_and(|r| r.starts_with(&var) && !r[var.len()..].starts_with('_'))
                })
                .unwrap_or_else(|| panic!("{var} is not documented in config/pytracer.yaml"));
            let next = lines[at + 1].trim_start().trim_start_matches("# ");
            assert!(next.starts_with(&format!("{}:", f.leaf())), "{var} is above `{}`", lines[at + 1]);
        }
    }

    /// Every field of the configuration has a variable: each one set to a value other than its
    /// default changes that field. The destructuring names every field, so a new field without
    /// a variable does not compile here.
    #[test]
    fn every_field_has_a_variable() {
        let all = [
            ("PYTRACER_DISCOVERY_WHITELIST", "gunicorn, myserver"),
            ("PYTRACER_DISCOVERY_BLACKLIST", ""),
            ("PYTRACER_DISCOVERY_RESCAN_INTERVAL_SECONDS", "0.5"),
            ("PYTRACER_SERVICE_NAME", "checkout"),
            ("PYTRACER_HTTP_SECRETS_MATCHER", "equals"),
            ("PYTRACER_HTTP_SECRETS_LIST", "token"),
            ("PYTRACER_HTTP_CAPTURE_HEADERS_REQUEST", "x-request-id, user-agent"),
            ("PYTRACER_HTTP_CAPTURE_HEADERS_RESPONSE", "content-type"),
            ("PYTRACER_OUTPUT_PATH", "/var/log/spans.jsonl"),
            ("PYTRACER_METRICS_LISTEN", ""),
            ("PYTRACER_METRICS_EXITED_PROCESS_GRACE_SECONDS", "5"),
            ("PYTRACER_CPYTHON_GIL_WAIT", "true"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_MODE", "always"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_WINDOW_MS", "200"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_EVERY_SECONDS", "30"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_MIN_WALK_GAP_US", "100"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_IN_ROUTED_PROCESSES", "true"),
            ("PYTRACER_OTLP_ENDPOINT", "http://collector:4318/v1/traces"),
            ("PYTRACER_OTLP_HEADERS", "x-api-key=s3cr=t, tenant = a"),
            ("PYTRACER_OTLP_COMPRESSION", "none"),
            ("PYTRACER_OTLP_BATCH_SIZE", "100"),
            ("PYTRACER_OTLP_QUEUE_SIZE", "1000"),
            ("PYTRACER_OTLP_TIMEOUT_SECONDS", "2.5"),
        ];
        assert_eq!(all.len(), FIELDS.len());
        let Config {
            discovery: Discovery { whitelist, blacklist, rescan_interval_seconds },
            service: Service { name },
            http:
                Http { secrets: Secrets { matcher, list: secrets }, capture_headers: CaptureHeaders { request, response } },
            output: Output { path },
            metrics: Metrics { listen, exited_process_grace_seconds },
            cpython:
                Cpython {
                    gil_wait,
                    frame_eval: FrameEval { mode, window_ms, every_seconds, min_walk_gap_us, in_routed_processes },
                },
            otlp: Otlp { endpoint, headers, compression, batch_size, queue_size, timeout_seconds },
        } = load(None, &all).unwrap();
        assert_eq!(whitelist, ["gunicorn", "myserver"]);
        assert!(blacklist.is_empty());
        assert_eq!(rescan_interval_seconds, 0.5);
        assert_eq!(name.as_deref(), Some("checkout"));
        assert_eq!((matcher, secrets), (SecretMatcher::Equals, vec!["token".to_string()]));
        assert_eq!(
            (request, response),
            (vec!["x-request-id".to_string(), "user-agent".to_string()], vec!["content-type".to_string()])
        );
        assert_eq!(path, Some(PathBuf::from("/var/log/spans.jsonl")));
        assert_eq!(listen, None);
        assert_eq!(exited_process_grace_seconds, 5.0);
        assert!(gil_wait);
        assert_eq!((mode, window_ms, every_seconds, min_walk_gap_us), (FrameEvalMode::Always, 200, 30.0, 100));
        assert!(in_routed_processes);
        assert_eq!(endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
        assert_eq!(
            headers.into_iter().collect::<Vec<_>>(),
            [("tenant".to_string(), "a".to_string()), ("x-api-key".to_string(), "s3cr=t".to_string())]
        );
        assert_eq!((compression.as_str(), batch_size, queue_size, timeout_seconds), ("none", 100, 1000, 2.5));
    }

    #[test]
    fn variables_override_the_file_and_leave_the_rest() {
        let file =
            "service:\n  name: from-file\nmetrics:\n  listen: 127.0.0.1:9000\n  exited_process_grace_seconds: 7\n";
        let c = load(Some(file), &[("PYTRACER_SERVICE_NAME", "from-env"), ("PYTRACER_METRICS_LISTEN", "")]).unwrap();
        assert_eq!(c.service.name.as_deref(), Some("from-env"));
        assert_eq!(c.metrics.listen, None, "an empty value unsets it");
        assert_eq!(c.metrics.exited_process_grace_seconds, 7.0, "from the file");
        assert_eq!(c.discovery, Discovery::default());
        assert_eq!(load(Some(file), &[]).unwrap(), Config::parse(file, Path::new("x")).unwrap());
    }

    #[test]
    fn other_pytracer_variables_are_not_the_agents() {
        let c = load(None, &[("PYTRACER_BIN", "/x"), ("PYTRACER_REQUIRE_PRIVILEGED", "1"), ("HOME", "/root")]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_value_that_does_not_parse_names_the_variable() {
        for (var, value, want) in [
            ("PYTRACER_DISCOVERY_RESCAN_INTERVAL_SECONDS", "soon", "is not a number"),
            ("PYTRACER_CPYTHON_GIL_WAIT", "yes", "is not a boolean; use true or false"),
            ("PYTRACER_CPYTHON_FRAME_EVAL_MODE", "fast", "is not a mode; use off, sampled or always"),
            ("PYTRACER_OTLP_BATCH_SIZE", "-1", "is not a whole number (0 or more)"),
            ("PYTRACER_OTLP_HEADERS", "novalue", "`novalue` is not key=value; write entries as k=v,k2=v2"),
            ("PYTRACER_DISCOVERY_WHITELIST", "gunicorn,,uwsgi", "has an empty entry"),
        ] {
            let e = err(None, &[(var, value)]);
            assert!(e.starts_with(&format!("environment variable {var}=`{value}`: {want}")), "{e}");
        }
    }

    #[test]
    fn a_value_that_parses_but_is_wrong_names_the_variable() {
        let e = err(None, &[("PYTRACER_DISCOVERY_WHITELIST", "")]);
        assert!(e.starts_with("environment variable PYTRACER_DISCOVERY_WHITELIST=``: is empty, so nothing"), "{e}");
        let e = err(Some("metrics:\n  listen: 0.0.0.0:9464\n"), &[("PYTRACER_METRICS_LISTEN", "localhost")]);
        assert!(
            e.starts_with("environment variable PYTRACER_METRICS_LISTEN=`localhost`: `localhost` is not an address"),
            "{e}"
        );
        // A bad value the file gave is still the file's, with its line.
        let e = err(Some("otlp:\n  compression: zstd\n"), &[("PYTRACER_OTLP_BATCH_SIZE", "10")]);
        assert!(e.ends_with(".yaml:2: field `compression`: is `zstd`; use gzip or none"), "{e}");
    }

    #[test]
    fn a_misspelt_variable_of_a_section_is_an_error() {
        let e = err(None, &[("PYTRACER_OTLP_ENDPOINTS", "http://c:4318/v1/traces")]);
        assert!(
            e.starts_with("environment variable PYTRACER_OTLP_ENDPOINTS=`http://c:4318/v1/traces`: no such setting; the otlp section's are PYTRACER_OTLP_ENDPOINT, PYTRACER_OTLP_HEADERS,"),
            "{e}"
        );
    }
}
