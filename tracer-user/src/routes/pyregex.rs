//! Python `re` syntax → the `regex` crate's. The routes' regular expressions are Python ones (a
//! Django `re_path`, a custom converter's `regex`); most of the syntax is shared, and what is not
//! is either rewritten here to mean the same or refused with a reason, so a rule we cannot run
//! exactly is skipped instead of matched wrongly.
//!
//! Known differences kept: `$` (without the `m` flag) becomes `\z`, so a subject ending in a
//! newline (a path ending in `%0A`) may match differently; `\w`, `\b` and `\s` follow the
//! `regex` crate's Unicode tables, which differ from Python's on a few exotic characters.
use regex::Regex;
use std::fmt::Write as _;

/// Compiled-program size cap: a table is read from an untrusted process; a pathological pattern
/// must fail to compile rather than take the agent's memory.
const SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PyRegexError {
    #[error("Python regex feature not supported by the regex crate: {0}")]
    Unsupported(&'static str),
    #[error("not a valid Python regex: {0}")]
    Invalid(&'static str),
    #[error("regex does not compile: {0}")]
    Compile(String),
}

/// Compiles a pattern already in the `regex` crate's syntax (built by a matcher from translated
/// parts), with the size cap.
pub fn compile(rust: &str) -> Result<Regex, PyRegexError> {
    regex::RegexBuilder::new(rust)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| PyRegexError::Compile(e.to_string().lines().last().unwrap_or_default().to_owned()))
}

/// Translates a Python regular expression into the `regex` crate's syntax, with the same meaning.
pub fn translate(py: &str) -> Result<String, PyRegexError> {
    let chars: Vec<char> = py.chars().collect();
    let multiline = has_multiline_flag(&chars);
    let mut out = String::with_capacity(py.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => i = escape(&chars, i, false, &mut out)?,
            '[' => i = class(&chars, i, &mut out)?,
            // A lone `]` is a literal in Python; the `regex` crate wants it escaped.
            ']' => out.push_str(r"\]"),
            '}' => out.push_str(r"\}"),
            '$' if multiline => out.push('$'),
            // Python's `$` also matches before a final newline; the nearest is the end of text.
            '$' => out.push_str(r"\z"),
            '{' => i = brace(&chars, i, &mut out)?,
            '(' => i = group(&chars, i, &mut out)?,
            // Python 3.11's possessive `*+`, `++`, `?+` would read as a nested repetition here.
            '*' | '+' | '?' if chars.get(i) == Some(&'+') => {
                return Err(PyRegexError::Unsupported("possessive quantifiers"));
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Translates and compiles; `anchor` wraps it as the caller's match mode needs.
pub fn compile_python(py: &str, anchor: Anchor) -> Result<Regex, PyRegexError> {
    let rust = translate(py)?;
    compile(&anchor.wrap(&rust))
}

/// How Python applies the pattern: `re.match` (anchored at the start), `re.fullmatch`, or
/// `re.search` (anywhere; the `regex` crate's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Full,
    Search,
}

impl Anchor {
    pub fn wrap(self, rust: &str) -> String {
        match self {
            Anchor::Start => format!(r"\A(?:{rust})"),
            Anchor::Full => format!(r"\A(?:{rust})\z"),
            Anchor::Search => rust.to_owned(),
        }
    }
}

/// `(?m)` anywhere: `$` then keeps its line meaning, which both engines share.
fn has_multiline_flag(chars: &[char]) -> bool {
    chars.windows(2).enumerate().any(|(i, w)| {
        w == ['(', '?']
            && chars[i + 2..].iter().take_while(|c| c.is_ascii_alphabetic() || **c == '-').any(|c| *c == 'm')
    })
}

/// An escape at `chars[i]` (just after the backslash); returns the index after it.
fn escape(chars: &[char], i: usize, in_class: bool, out: &mut String) -> Result<usize, PyRegexError> {
    let Some(&d) = chars.get(i) else { return Err(PyRegexError::Invalid("trailing backslash")) };
    let next = i + 1;
    match d {
        'Z' if !in_class => out.push_str(r"\z"),
        'A' | 'b' | 'B' if !in_class => {
            out.push('\\');
            out.push(d);
        }
        // In a class Python's `\b` is a backspace.
        'b' => out.push_str(r"\x08"),
        'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'n' | 't' | 'r' | 'f' | 'v' | 'a' => {
            out.push('\\');
            out.push(d);
        }
        'x' | 'u' | 'U' => {
            let width = match d {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let hex: String = chars.get(next..next + width).unwrap_or_default().iter().collect();
            if hex.len() != width || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(PyRegexError::Invalid("incomplete hex escape"));
            }
            let _ = write!(out, r"\x{{{hex}}}");
            return Ok(next + width);
        }
        '0'..='7' => {
            // Python: `\0` and three-digit `\NNN` are octal; other digits are back-references.
            let digits: String = chars[i..].iter().take(3).take_while(|c| ('0'..='7').contains(*c)).collect();
            if d != '0' && (digits.len() < 3 || in_class) {
                return Err(PyRegexError::Unsupported("back-references"));
            }
            let value = u32::from_str_radix(&digits, 8).unwrap_or(0);
            let _ = write!(out, r"\x{{{value:x}}}");
            return Ok(i + digits.len());
        }
        '8' | '9' => return Err(PyRegexError::Unsupported("back-references")),
        'N' => return Err(PyRegexError::Unsupported(r"\N{name} escapes")),
        c if c.is_ascii_alphanumeric() => return Err(PyRegexError::Invalid("bad escape")),
        // Any other escaped character is itself; as a hex escape it is a literal for the `regex`
        // crate too, in or out of a class and in verbose mode.
        c => {
            let _ = write!(out, r"\x{{{:x}}}", u32::from(c));
        }
    }
    Ok(next)
}

/// A character class from just after its `[`; returns the index after its `]`.
fn class(chars: &[char], mut i: usize, out: &mut String) -> Result<usize, PyRegexError> {
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let start = i;
    let mut prev_dash = false;
    while let Some(&c) = chars.get(i) {
        i += 1;
        let mut dash = false;
        match c {
            ']' if i - 1 > start => {
                out.push(']');
                return Ok(i);
            }
            '\\' => i = escape(chars, i, true, out)?,
            // Literal in Python; nesting and set operators (`&&`, `~~`, `--`) in the `regex` crate.
            ']' | '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if prev_dash => out.push_str(r"\-"),
            '-' => {
                out.push('-');
                dash = true;
            }
            _ => out.push(c),
        }
        prev_dash = dash;
    }
    Err(PyRegexError::Invalid("unterminated character class"))
}

/// A `{` (index just after it): a repetition when Python reads one, else a literal brace.
fn brace(chars: &[char], i: usize, out: &mut String) -> Result<usize, PyRegexError> {
    let rest = &chars[i..];
    let min: String = rest.iter().take_while(|c| c.is_ascii_digit()).collect();
    let mut j = min.len();
    let mut max = None;
    if rest.get(j) == Some(&',') {
        let m: String = rest[j + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
        j += 1 + m.len();
        max = Some(m);
    }
    if rest.get(j) != Some(&'}') || (min.is_empty() && max.is_none()) {
        out.push_str(r"\{");
        return Ok(i);
    }
    if rest.get(j + 1) == Some(&'+') {
        return Err(PyRegexError::Unsupported("possessive quantifiers"));
    }
    // Python's `{,n}` is `{0,n}`; the `regex` crate needs the lower bound.
    let min = if min.is_empty() { "0".to_owned() } else { min };
    match max {
        None => {
            let _ = write!(out, "{{{min}}}");
        }
        Some(max) => {
            let _ = write!(out, "{{{min},{max}}}");
        }
    }
    Ok(i + j + 1)
}

/// A `(` (index just after it): the group kinds both engines have pass, the others are refused.
fn group(chars: &[char], i: usize, out: &mut String) -> Result<usize, PyRegexError> {
    if chars.get(i) != Some(&'?') {
        out.push('(');
        return Ok(i);
    }
    let at = |k: usize| chars.get(i + k).copied();
    match (at(1), at(2)) {
        (Some('P'), Some('<')) | (Some(':'), _) => {
            out.push_str("(?");
            Ok(i + 1)
        }
        (Some('<'), Some(c)) if c != '=' && c != '!' => {
            out.push_str("(?");
            Ok(i + 1)
        }
        (Some('P'), Some('=')) => Err(PyRegexError::Unsupported("named back-references (?P=name)")),
        (Some('=' | '!'), _) => Err(PyRegexError::Unsupported("lookahead")),
        (Some('<'), _) => Err(PyRegexError::Unsupported("lookbehind")),
        (Some('>'), _) => Err(PyRegexError::Unsupported("atomic groups")),
        (Some('('), _) => Err(PyRegexError::Unsupported("conditional groups")),
        (Some('#'), _) => {
            // A comment: dropped with its closing parenthesis.
            let close =
                chars[i..].iter().position(|c| *c == ')').ok_or(PyRegexError::Invalid("unterminated comment"))?;
            Ok(i + close + 1)
        }
        _ => flags(chars, i + 1, out),
    }
}

/// `(?flags)` or `(?flags-flags:...)` from just after the `?`.
fn flags(chars: &[char], mut i: usize, out: &mut String) -> Result<usize, PyRegexError> {
    let mut kept = String::new();
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            'i' | 'm' | 's' | 'x' | '-' => kept.push(c),
            // Unicode matching is the default for str patterns in both.
            'u' => {}
            'a' => return Err(PyRegexError::Unsupported("the ASCII flag (?a)")),
            'L' => return Err(PyRegexError::Unsupported("the locale flag (?L)")),
            ')' | ':' => {
                let kept = kept.trim_end_matches('-');
                match (c, kept.is_empty()) {
                    (')', true) => {}
                    (':', true) => out.push_str("(?:"),
                    _ => {
                        out.push_str("(?");
                        out.push_str(kept);
                        out.push(c);
                    }
                }
                return Ok(i);
            }
            _ => return Err(PyRegexError::Invalid("unknown group extension")),
        }
    }
    Err(PyRegexError::Invalid("unterminated group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(py: &str) -> String {
        translate(py).unwrap()
    }

    fn full(py: &str, s: &str) -> bool {
        compile_python(py, Anchor::Full).unwrap().is_match(s)
    }

    #[test]
    fn shared_syntax_passes_through() {
        assert_eq!(t(r"^(?P<pk>[0-9]+)/edit/$"), r"^(?P<pk>[0-9]+)/edit/\z");
        assert_eq!(t(r"[^/]+"), r"[^/]+");
        assert_eq!(t(r"\d+\.\d+"), r"\d+\x{2e}\d+");
        assert_eq!(t(r"(?:a|b)"), r"(?:a|b)");
        assert_eq!(t(r"[^/].*?"), r"[^/].*?");
        assert_eq!(t(r"a{2,3}?"), r"a{2,3}?");
    }

    #[test]
    fn python_only_spellings_are_rewritten() {
        assert_eq!(t(r"foo\Z"), r"foo\z");
        assert_eq!(t(r"a{,3}"), r"a{0,3}");
        assert_eq!(t(r"a{,}"), r"a{0,}");
        assert_eq!(t(r"a{"), r"a\{");
        assert_eq!(t(r"{x}"), r"\{x\}");
        assert_eq!(t(r"a]"), r"a\]");
        assert_eq!(t(r"[[a&&b~~c]"), r"[\[a\&\&b\~\~c]");
        assert_eq!(t(r"[]a]"), r"[\]a]");
        assert_eq!(t(r"[\b]"), r"[\x08]");
        assert_eq!(t(r"\0\101"), r"\x{0}\x{41}");
        assert_eq!(t(r"\x41\u00e9"), r"\x{41}\x{00e9}");
        assert_eq!(t(r"(?#note)a"), "a");
        assert_eq!(t(r"(?u)a(?iu:b)"), "a(?i:b)");
        assert_eq!(t(r"\/\-\ \é"), r"\x{2f}\x{2d}\x{20}\x{e9}");
    }

    #[test]
    fn unsupported_features_are_refused_with_a_reason() {
        assert_eq!(translate(r"(?P<a>x)(?P=a)"), Err(PyRegexError::Unsupported("named back-references (?P=name)")));
        assert_eq!(translate(r"(a)\1"), Err(PyRegexError::Unsupported("back-references")));
        assert_eq!(translate(r"foo(?=bar)"), Err(PyRegexError::Unsupported("lookahead")));
        assert_eq!(translate(r"foo(?!bar)"), Err(PyRegexError::Unsupported("lookahead")));
        assert_eq!(translate(r"(?<=a)b"), Err(PyRegexError::Unsupported("lookbehind")));
        assert_eq!(translate(r"(?<!a)b"), Err(PyRegexError::Unsupported("lookbehind")));
        assert_eq!(translate(r"(?>a)"), Err(PyRegexError::Unsupported("atomic groups")));
        assert_eq!(translate(r"(?a)\w"), Err(PyRegexError::Unsupported("the ASCII flag (?a)")));
        assert_eq!(translate("[a"), Err(PyRegexError::Invalid("unterminated character class")));
        assert_eq!(translate(r"a*+"), Err(PyRegexError::Unsupported("possessive quantifiers")));
        assert_eq!(translate(r"a{2}+"), Err(PyRegexError::Unsupported("possessive quantifiers")));
        assert!(matches!(compile_python("(?P<a>x)(?P<a>y)", Anchor::Full), Err(PyRegexError::Compile(_))));
    }

    #[test]
    fn translated_patterns_match_as_python_does() {
        // Expectations checked with CPython 3.11's re.fullmatch.
        assert!(full(r"a{,2}", "aa"));
        assert!(!full(r"a{,2}", "aaa"));
        assert!(full(r"a{", "a{"));
        assert!(full(r"[]a]+", "]a]"));
        assert!(full(r"[+--]", "-"));
        assert!(full(r"price\$", "price$"));
        assert!(full(r"^foo/$", "foo/"));
        assert!(!full(r"^foo/$", "foo/\n"));
        assert!(full(r"(?i)abc", "ABC"));
        assert!(full(r"\d+", "١٢"));
    }
}
