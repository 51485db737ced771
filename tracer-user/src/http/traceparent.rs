//! Incoming W3C Trace Context (https://www.w3.org/TR/trace-context/): a valid `traceparent`
//! continues the caller's trace; an invalid one starts a new trace and is counted.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
    /// The `tracestate` header, kept as sent (bounded), only with a valid traceparent.
    pub trace_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// No traceparent header: a new trace.
    Absent,
    Valid(Parent),
    /// A traceparent that breaks the spec: a new trace, and the reason is counted.
    Invalid(&'static str),
}

/// The longest tracestate kept: the spec allows 32 members of up to 256 characters, but a
/// header that long is a client bug, not context worth carrying.
const MAX_TRACE_STATE: usize = 512;

pub fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Incoming {
    let Some(tp) = traceparent else { return Incoming::Absent };
    match parse_traceparent(tp.trim()) {
        Ok((trace_id, span_id, flags)) => Incoming::Valid(Parent {
            trace_id: trace_id.to_string(),
            span_id: span_id.to_string(),
            sampled: flags & 1 == 1,
            trace_state: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= MAX_TRACE_STATE)
                .map(str::to_string),
        }),
        Err(why) => Incoming::Invalid(why),
    }
}

fn parse_traceparent(tp: &str) -> Result<(&str, &str, u8), &'static str> {
    let mut parts = tp.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(span_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("too few fields");
    };
    let rest = parts.next();
    if !is_lower_hex(version, 2) {
        return Err("bad version");
    }
    if version == "ff" {
        return Err("version ff is invalid");
    }
    // Version 00 has exactly four fields; a later version may append more, which we ignore.
    if version == "00" && rest.is_some() {
        return Err("version 00 with extra fields");
    }
    if !is_lower_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return Err("bad trace-id");
    }
    if !is_lower_hex(span_id, 16) || span_id.bytes().all(|b| b == b'0') {
        return Err("bad parent-id");
    }
    if !is_lower_hex(flags, 2) {
        return Err("bad trace-flags");
    }
    let flags = u8::from_str_radix(flags, 16).map_err(|_| "bad trace-flags")?;
    Ok((trace_id, span_id, flags))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_header_continues_the_trace() {
        let Incoming::Valid(p) = parse(Some(TP), Some("congo=t61rcWkgMzE")) else { panic!() };
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id, "00f067aa0ba902b7");
        assert!(p.sampled);
        assert_eq!(p.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
        let Incoming::Valid(p) = parse(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), None) else {
            panic!()
        };
        assert!(!p.sampled);
    }

    #[test]
    fn spec_rejections() {
        let bad = [
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "bad trace-id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "bad parent-id"),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "bad trace-id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "too few fields"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "version 00 with extra fields"),
            ("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "bad version"),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "bad trace-id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-xx", "bad trace-flags"),
        ];
        for (h, why) in bad {
            assert_eq!(parse(Some(h), Some("a=b")), Incoming::Invalid(why), "{h}");
        }
    }

    #[test]
    fn later_versions_may_add_fields() {
        let h = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert!(matches!(parse(Some(h), None), Incoming::Valid(_)));
    }

    #[test]
    fn absent_and_oversized_state() {
        assert_eq!(parse(None, Some("a=b")), Incoming::Absent);
        let Incoming::Valid(p) = parse(Some(TP), Some(&"x".repeat(600))) else { panic!() };
        assert_eq!(p.trace_state, None);
    }
}
