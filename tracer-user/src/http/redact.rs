//! Query-string redaction: values of parameters whose name looks secret never leave the agent.

/// Replaces the value of every parameter whose name contains one of `keys` (ignoring case) with
/// `<redacted>`. Everything else, including order and encoding, is kept as sent.
pub fn redact_query(query: &str, keys: &[String]) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name, keys) => format!("{name}=<redacted>"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret(name: &str, keys: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    keys.iter().any(|k| name.contains(&k.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        vec!["key".into(), "pass".into(), "secret".into()]
    }

    #[test]
    fn redacts_matching_names_only() {
        assert_eq!(
            redact_query("a=1&api_KEY=abc&Password=x&client_secret=y&b=2", &keys()),
            "a=1&api_KEY=<redacted>&Password=<redacted>&client_secret=<redacted>&b=2"
        );
    }

    #[test]
    fn keeps_flags_and_empty_pairs() {
        assert_eq!(redact_query("debug&&x=", &keys()), "debug&&x=");
        assert_eq!(redact_query("passthrough", &keys()), "passthrough");
    }
}
