//! What never leaves the agent: values of query parameters and captured headers whose name looks
//! secret (the configured matcher and list, Instana's setting), and always the credentials
//! headers.
use pytracer_config::{CaptureHeaders, SecretMatcher, Secrets};
use regex::Regex;
use serde_json::json;

use crate::spans::Attributes;

use super::head::{Head, HeaderName};

/// What a redacted value is recorded as.
pub const REDACTED: &str = "<redacted>";

/// Headers whose value is never recorded, whatever the configuration: they carry credentials.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// The configured secrets and captured headers, compiled once.
#[derive(Debug, Clone)]
pub struct Redaction {
    matcher: Matcher,
    /// Lower-cased names, as the parsed heads keep them.
    request_headers: Vec<String>,
    response_headers: Vec<String>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Contains { entries: Vec<String>, ignore_case: bool },
    Equals { entries: Vec<String>, ignore_case: bool },
    Regex(Vec<Regex>),
}

impl Redaction {
    /// Fails only on a regular expression the configuration's validation would have refused.
    pub fn new(secrets: &Secrets, capture: &CaptureHeaders) -> Result<Redaction, regex::Error> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
        let matcher = match secrets.matcher {
            SecretMatcher::ContainsIgnoreCase => Matcher::Contains { entries: lower(&secrets.list), ignore_case: true },
            SecretMatcher::Contains => Matcher::Contains { entries: secrets.list.clone(), ignore_case: false },
            SecretMatcher::EqualsIgnoreCase => Matcher::Equals { entries: lower(&secrets.list), ignore_case: true },
            SecretMatcher::Equals => Matcher::Equals { entries: secrets.list.clone(), ignore_case: false },
            SecretMatcher::Regex => Matcher::Regex(
                secrets.list.iter().map(|e| Regex::new(&format!("^(?:{e})$"))).collect::<Result<_, _>>()?,
            ),
        };
        Ok(Redaction { matcher, request_headers: lower(&capture.request), response_headers: lower(&capture.response) })
    }

    /// Whether a parameter or header called `name` is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        match &self.matcher {
            Matcher::Contains { entries, ignore_case: true } => {
                let name = name.to_ascii_lowercase();
                entries.iter().any(|e| name.contains(e.as_str()))
            }
            Matcher::Contains { entries, ignore_case: false } => entries.iter().any(|e| name.contains(e.as_str())),
            Matcher::Equals { entries, ignore_case: true } => entries.iter().any(|e| e.eq_ignore_ascii_case(name)),
            Matcher::Equals { entries, ignore_case: false } => entries.iter().any(|e| e == name),
            Matcher::Regex(res) => res.iter().any(|r| r.is_match(name)),
        }
    }

    /// `query` with the value of every secret parameter replaced by `<redacted>`. Everything
    /// else, including order and encoding, is kept as sent.
    pub fn query(&self, query: &str) -> String {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if self.is_secret(name) => format!("{name}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The captured request headers present in `head`, as `http.request.header.<name>`.
    pub fn request_headers(&self, head: &Head, a: &mut Attributes) {
        self.capture(&head.headers, &self.request_headers, "http.request.header.", a);
    }

    /// The captured response headers present in `head`, as `http.response.header.<name>`.
    pub fn response_headers(&self, head: &Head, a: &mut Attributes) {
        self.capture(&head.headers, &self.response_headers, "http.response.header.", a);
    }

    /// Both, from a call's headers (lower-case names, as parsed).
    pub fn call_headers(
        &self,
        request: &[(HeaderName, String)],
        response: &[(HeaderName, String)],
        a: &mut Attributes,
    ) {
        self.capture(request, &self.request_headers, "http.request.header.", a);
        self.capture(response, &self.response_headers, "http.response.header.", a);
    }

    /// `target` (a path and maybe a query) with the query's secrets redacted.
    pub fn target(&self, target: &str) -> String {
        match target.split_once('?') {
            Some((path, query)) => format!("{path}?{}", self.query(query)),
            None => target.to_string(),
        }
    }

    /// The conventions' shape: one attribute per header, a list of its values in order.
    fn capture(&self, headers: &[(HeaderName, String)], names: &[String], prefix: &str, a: &mut Attributes) {
        for name in names {
            let values: Vec<&str> = headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            if values.is_empty() {
                continue;
            }
            let hidden = CREDENTIAL_HEADERS.contains(&name.as_str()) || self.is_secret(name);
            let values: Vec<&str> = if hidden { vec![REDACTED; values.len()] } else { values };
            a.insert(format!("{prefix}{name}").into(), json!(values));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redaction(matcher: SecretMatcher, list: &[&str]) -> Redaction {
        let secrets = Secrets { matcher, list: list.iter().map(ToString::to_string).collect() };
        let capture = CaptureHeaders {
            request: vec!["X-Request-Id".into(), "Authorization".into(), "Cookie".into(), "X-Api-Token".into()],
            response: vec!["Set-Cookie".into(), "Content-Type".into()],
        };
        Redaction::new(&secrets, &capture).unwrap()
    }

    fn default_redaction() -> Redaction {
        Redaction::new(&Secrets::default(), &CaptureHeaders::default()).unwrap()
    }

    #[test]
    fn redacts_matching_names_only() {
        assert_eq!(
            default_redaction().query("a=1&api_KEY=abc&Password=x&client_secret=y&b=2&access_token=t&sessionid=s"),
            "a=1&api_KEY=<redacted>&Password=<redacted>&client_secret=<redacted>&b=2&access_token=<redacted>&sessionid=<redacted>"
        );
    }

    #[test]
    fn a_call_target_keeps_its_path_and_loses_its_secrets() {
        let r = default_redaction();
        assert_eq!(r.target("/v1/charge?amount=3&api_key=k"), "/v1/charge?amount=3&api_key=<redacted>");
        assert_eq!(r.target("/v1/token"), "/v1/token", "a path is not a query");
        let mut a = Attributes::default();
        let capture = CaptureHeaders { request: vec!["x-request-id".into()], response: vec!["set-cookie".into()] };
        let r = Redaction::new(&Secrets::default(), &capture).unwrap();
        r.call_headers(&[("x-request-id".into(), "r9".into())], &[("set-cookie".into(), "s=1".into())], &mut a);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"http.request.header.x-request-id": ["r9"], "http.response.header.set-cookie": ["<redacted>"]})
        );
    }

    #[test]
    fn keeps_flags_and_empty_pairs() {
        let r = default_redaction();
        assert_eq!(r.query("debug&&x="), "debug&&x=");
        assert_eq!(r.query("passthrough"), "passthrough");
    }

    #[test]
    fn each_matcher() {
        let q = "Key=1&key=2&apikey=3&KEYS=4";
        assert_eq!(
            redaction(SecretMatcher::ContainsIgnoreCase, &["key"]).query(q),
            "Key=<redacted>&key=<redacted>&apikey=<redacted>&KEYS=<redacted>"
        );
        assert_eq!(
            redaction(SecretMatcher::Contains, &["key"]).query(q),
            "Key=1&key=<redacted>&apikey=<redacted>&KEYS=4"
        );
        assert_eq!(
            redaction(SecretMatcher::EqualsIgnoreCase, &["key"]).query(q),
            "Key=<redacted>&key=<redacted>&apikey=3&KEYS=4"
        );
        assert_eq!(redaction(SecretMatcher::Equals, &["key"]).query(q), "Key=1&key=<redacted>&apikey=3&KEYS=4");
        // The whole name must match, as in Instana's regex matcher.
        assert_eq!(
            redaction(SecretMatcher::Regex, &["[a-z]*key"]).query(q),
            "Key=1&key=<redacted>&apikey=<redacted>&KEYS=4"
        );
    }

    #[test]
    fn captured_headers_with_credentials_hidden() {
        let head = Head {
            headers: vec![
                ("x-request-id".into(), "r1".into()),
                ("authorization".into(), "Bearer abc".into()),
                ("cookie".into(), "a=1".into()),
                ("cookie".into(), "b=2".into()),
                ("x-api-token".into(), "t".into()),
                ("x-other".into(), "not captured".into()),
            ],
            ..Head::default()
        };
        let mut a = Attributes::default();
        // Authorization and Cookie are hidden whatever the list says; X-Api-Token by the list.
        redaction(SecretMatcher::Equals, &["nothing"]).request_headers(&head, &mut a);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({
                "http.request.header.x-request-id": ["r1"],
                "http.request.header.authorization": ["<redacted>"],
                "http.request.header.cookie": ["<redacted>", "<redacted>"],
                "http.request.header.x-api-token": ["t"],
            })
        );
        let mut a = Attributes::default();
        redaction(SecretMatcher::ContainsIgnoreCase, &["token"]).request_headers(&head, &mut a);
        assert_eq!(a["http.request.header.x-api-token"], json!(["<redacted>"]));
        let response = Head {
            headers: vec![("set-cookie".into(), "s=1".into()), ("content-type".into(), "text/plain".into())],
            ..Head::default()
        };
        let mut a = Attributes::default();
        redaction(SecretMatcher::Equals, &["nothing"]).response_headers(&response, &mut a);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"http.response.header.set-cookie": ["<redacted>"], "http.response.header.content-type": ["text/plain"]})
        );
    }
}
