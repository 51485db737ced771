//! Werkzeug 3.0/3.1 routing, as `werkzeug/routing/matcher.py`'s `StateMachineMatcher` does it:
//! each rule is cut into parts at its slashes (`Rule._parse_rule`), the parts form a tree whose
//! static transitions are tried before the dynamic ones, the dynamic ones in converter-weight
//! order, and rules sharing a state in the order they were added. The first rule reached wins;
//! a converter's `to_python` refusing its value then fails the whole match (no other rule is
//! tried), as in `StateMachineMatcher.match`.
//!
//! Werkzeug 3.0 merges slashes with `/{2,}?` (pairs) where 3.1 uses `/{2,}`; this follows 3.1.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::pyregex::{self, PyRegexError};
use super::table::{NumberBounds, Outcome, Skipped, WerkzeugMap, WerkzeugRule};
use super::view::code_for;

/// `rules._part_re`: a slash, static text, or `<converter(arguments):variable>`.
static PART_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\A(?:(?P<slash>/)|(?P<static>[^</]+)|(?:<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<arguments>.*?)\))?:)?(?P<variable>[a-zA-Z_][a-zA-Z0-9_]*)>))",
    )
    .expect("static regex")
});

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("malformed url rule")]
    Malformed,
    #[error("no converter read for <{0}>")]
    MissingConverter(String),
    #[error("converter for <{0}>: {1}")]
    Regex(String, PyRegexError),
    #[error("host or subdomain rule ({0}): the matcher does not see the request's host")]
    Domain(String),
}

/// `rules.Weighting`: compared as Python compares the named tuple (field by field, lists
/// lexicographically), which the derived `Ord` of a tuple of `Vec`s also does.
type Weighting = (i64, Vec<(i64, i64)>, i64, Vec<i64>);

#[derive(Debug, Clone, PartialEq)]
enum Content {
    Static(String),
    /// The part's regex in `regex` syntax, without the final `\Z` (added when compiled);
    /// `suffixed`: a `part_isolating=False` part whose rule text ends in a slash.
    Dynamic {
        regex: String,
        suffixed: bool,
    },
}

/// `rules.RulePart`; equal parts share a state, as `StateMachineMatcher.add` compares them.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    content: Content,
    is_final: bool,
    weight: Weighting,
}

#[derive(Debug, Default)]
struct State {
    /// (part, its compiled regex, next state), sorted by the part's weight (stable).
    dynamic: Vec<(Part, Regex, usize)>,
    /// Indices into `Werkzeug::rules`, in the order added.
    rules: Vec<usize>,
    statics: HashMap<String, usize>,
}

#[derive(Debug)]
struct Compiled {
    /// Index of the rule in the table.
    index: usize,
    /// Converter names in the order of their `<...>` (`Rule._converters`), with their bounds.
    converters: Vec<(String, Option<NumberBounds>)>,
}

/// The compiled map: the state tree and the rules it leads to.
#[derive(Debug)]
pub struct Werkzeug {
    states: Vec<State>,
    rules: Vec<Compiled>,
    merge_slashes: bool,
}

/// Why a match attempt ended early: a rule matches with a trailing slash added.
struct SlashRequired;

impl Werkzeug {
    pub fn new(map: &WerkzeugMap, max_rules: usize, skipped: &mut Vec<Skipped>) -> Werkzeug {
        let mut m = Werkzeug { states: vec![State::default()], rules: Vec::new(), merge_slashes: map.merge_slashes };
        for (index, rule) in map.rules.iter().enumerate() {
            // build_only rules are never given to the matcher (`Map.add`).
            if rule.build_only {
                continue;
            }
            if m.rules.len() >= max_rules {
                skipped.push(Skipped { rule: rule.rule.clone(), reason: format!("over the {max_rules}-rule cap") });
                continue;
            }
            match parse_rule(rule) {
                Ok((parts, converters)) => m.add(parts, Compiled { index, converters }),
                Err(e) => skipped.push(Skipped { rule: rule.rule.clone(), reason: e.to_string() }),
            }
        }
        m.sort();
        m
    }

    /// `StateMachineMatcher.add`: static parts by content, dynamic parts by equality.
    fn add(&mut self, parts: Vec<(Part, Regex)>, rule: Compiled) {
        let mut state = 0;
        for (part, regex) in parts {
            state = match &part.content {
                Content::Static(text) => {
                    if let Some(&next) = self.states[state].statics.get(text) {
                        next
                    } else {
                        let next = self.new_state();
                        self.states[state].statics.insert(text.clone(), next);
                        next
                    }
                }
                Content::Dynamic { .. } => {
                    if let Some(&(_, _, next)) = self.states[state].dynamic.iter().find(|(p, _, _)| *p == part) {
                        next
                    } else {
                        let next = self.new_state();
                        self.states[state].dynamic.push((part, regex, next));
                        next
                    }
                }
            };
        }
        let index = self.rules.len();
        self.rules.push(rule);
        self.states[state].rules.push(index);
    }

    fn new_state(&mut self) -> usize {
        self.states.push(State::default());
        self.states.len() - 1
    }

    /// `StateMachineMatcher.update`: dynamic transitions by weight (Python's sort is stable).
    fn sort(&mut self) {
        for state in &mut self.states {
            state.dynamic.sort_by(|a, b| a.0.weight.cmp(&b.0.weight));
        }
    }

    /// `MapAdapter.match` for a decoded path (PATH_INFO) and method.
    pub fn resolve<'t>(&self, map: &'t WerkzeugMap, method: &str, path_info: &str) -> Outcome<'t> {
        let method = method.to_ascii_uppercase();
        let path = if path_info.is_empty() { String::new() } else { format!("/{}", path_info.trim_start_matches('/')) };
        let mut search = Search { m: self, rules: &map.rules, method: &method, have_match_for: false };
        let first = match search.walk(0, &domain_and_parts(&path), Vec::new()) {
            Ok(rv) => rv,
            Err(SlashRequired) => return Outcome::NotFound,
        };
        match first {
            Some((rule, values)) => {
                let compiled = &self.rules[rule];
                let table_rule = &map.rules[compiled.index];
                if !to_python_accepts(compiled, &values) {
                    return search.no_match();
                }
                if table_rule.redirect_to {
                    return Outcome::NotFound;
                }
                Outcome::Found { route: table_rule.rule.clone(), code: code_for(&table_rule.view, &method) }
            }
            None if self.merge_slashes => {
                let merged = merge_slashes(&path);
                match search.walk(0, &domain_and_parts(&merged), Vec::new()) {
                    // Either way a redirect to the merged (or slash-added) path.
                    Err(SlashRequired) => Outcome::NotFound,
                    Ok(Some((rule, _))) if map.rules[self.rules[rule].index].merge_slashes => Outcome::NotFound,
                    Ok(_) => search.no_match(),
                }
            }
            None => search.no_match(),
        }
    }
}

/// `[domain, *path.split("/")]`; the domain part is empty (host rules are skipped).
fn domain_and_parts(path: &str) -> Vec<&str> {
    std::iter::once("").chain(path.split('/')).collect()
}

/// `re.sub("/{2,}", "/", path)`.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

struct Search<'a> {
    m: &'a Werkzeug,
    /// The table's rules, which the compiled ones refer to by index.
    rules: &'a [WerkzeugRule],
    method: &'a str,
    /// A rule matched the path but not the method: `NoMatch.have_match_for` non-empty.
    have_match_for: bool,
}

/// `[""]`: what remains after a suffixed part matched its trailing slash.
const TRAILING: &[&str] = &[""];

impl Search<'_> {
    /// `NoMatch`: 405 when some rule had the path, else 404 (a websocket mismatch is a 400;
    /// neither sets `request.url_rule`, so no route either way).
    fn no_match<'t>(&self) -> Outcome<'t> {
        if self.have_match_for {
            Outcome::MethodNotAllowed { route: None }
        } else {
            Outcome::NotFound
        }
    }

    /// Whether `rule` serves this method over plain HTTP; records a method-only mismatch.
    fn rule(&self, rule: usize) -> &WerkzeugRule {
        &self.rules[self.m.rules[rule].index]
    }

    fn accepts(&mut self, rule: usize) -> bool {
        let r = self.rule(rule);
        if r.methods.as_ref().is_some_and(|ms| !ms.iter().any(|m| m == self.method)) {
            self.have_match_for = true;
            false
        } else {
            !r.websocket
        }
    }

    /// `StateMachineMatcher.match._match`.
    fn walk(
        &mut self,
        state: usize,
        parts: &[&str],
        values: Vec<String>,
    ) -> Result<Option<(usize, Vec<String>)>, SlashRequired> {
        let st = &self.m.states[state];
        let Some((&part, rest)) = parts.split_first() else {
            for &rule in &st.rules {
                if self.accepts(rule) {
                    return Ok(Some((rule, values)));
                }
            }
            // A rule would match with a trailing slash: redirect, unless it is not strict.
            if let Some(&slashed) = st.statics.get("") {
                for &rule in &self.m.states[slashed].rules {
                    let r = self.rule(rule);
                    if !r.websocket && r.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m == self.method)) {
                        if r.strict_slashes {
                            return Err(SlashRequired);
                        }
                        return Ok(Some((rule, values)));
                    }
                }
            }
            return Ok(None);
        };
        if let Some(&next) = st.statics.get(part) {
            if let Some(rv) = self.walk(next, rest, values.clone())? {
                return Ok(Some(rv));
            }
        }
        for (test, regex, next) in &st.dynamic {
            let joined;
            let (target, mut remaining) = if test.is_final {
                joined = parts.join("/");
                (joined.as_str(), &[][..])
            } else {
                (part, rest)
            };
            let Some((groups, slash)) = match_part(test, regex, target) else { continue };
            if slash {
                remaining = TRAILING;
            }
            let mut new_values = values.clone();
            new_values.extend(groups);
            if let Some(rv) = self.walk(*next, remaining, new_values)? {
                return Ok(Some(rv));
            }
        }
        // Only a trailing slash left: rules without strict slashes match without it.
        if parts == [""] {
            for &rule in &st.rules {
                if self.rule(rule).strict_slashes {
                    continue;
                }
                if self.accepts(rule) {
                    return Ok(Some((rule, values)));
                }
            }
        }
        Ok(None)
    }
}

/// A dynamic part against its target: the converters' values, and whether a suffixed part
/// matched its trailing slash. Python's `(?<!/)(/?)\Z` suffix has no lookbehind here: a target
/// ending in `/` matches as the prefix on all but that slash, unless the slash is doubled; any
/// other target matches as the prefix on all of it.
fn match_part(part: &Part, regex: &Regex, target: &str) -> Option<(Vec<String>, bool)> {
    let Content::Dynamic { suffixed, .. } = &part.content else { return None };
    let (subject, slash) = match target.strip_suffix('/') {
        Some(head) if *suffixed => {
            if head.ends_with('/') {
                return None;
            }
            (head, true)
        }
        _ => (target, false),
    };
    let caps = regex.captures(subject)?;
    let mut groups: Vec<(usize, String)> = regex
        .capture_names()
        .flatten()
        .filter_map(|name| {
            let n = name.strip_prefix("__werkzeug_")?.parse().ok()?;
            Some((n, caps.name(name).map_or("", |m| m.as_str()).to_owned()))
        })
        .collect();
    groups.sort_by_key(|(n, _)| *n);
    Some((groups.into_iter().map(|(_, v)| v).collect(), slash))
}

/// `NumberConverter.to_python`: `fixed_digits`, then the bounds. Digits outside ASCII (Python's
/// `int()` takes any Unicode decimal digit) cannot be valued here and are let through.
fn to_python_accepts(rule: &Compiled, values: &[String]) -> bool {
    rule.converters.iter().zip(values).all(|((_, bounds), value)| {
        let Some(b) = bounds else { return true };
        if b.fixed_digits != 0 && value.chars().count() as i64 != b.fixed_digits {
            return false;
        }
        let Ok(n) = value.parse::<f64>() else { return true };
        !(b.min.is_some_and(|min| n < min) || b.max.is_some_and(|max| n > max))
    })
}

type Parsed = (Vec<(Part, Regex)>, Vec<(String, Option<NumberBounds>)>);

/// `Rule.compile` for a rule without a domain: the empty domain part, then `_parse_rule` on the
/// rule text (slashes merged first when the rule merges them).
fn parse_rule(rule: &WerkzeugRule) -> Result<Parsed, RuleError> {
    if !rule.domain.is_empty() {
        return Err(RuleError::Domain(rule.domain.clone()));
    }
    let text = if rule.merge_slashes { merge_slashes(&rule.rule) } else { rule.rule.clone() };
    let empty_weight = (0, Vec::new(), 0, Vec::new());
    let mut parts = vec![static_part(String::new(), empty_weight)];
    let mut converters = Vec::new();
    parse_parts(rule, &text, &mut parts, &mut converters)?;
    Ok((parts, converters))
}

fn static_part(text: String, weight: Weighting) -> (Part, Regex) {
    // Static parts are compared as text; the regex is never run.
    static NEVER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\z\A.").expect("static regex"));
    (Part { content: Content::Static(text), is_final: false, weight }, NEVER.clone())
}

#[derive(Default)]
struct Building {
    content: String,
    is_static: bool,
    static_weights: Vec<(i64, i64)>,
    argument_weights: Vec<i64>,
    is_final: bool,
    convertor_number: usize,
}

impl Building {
    fn new() -> Building {
        Building { is_static: true, ..Building::default() }
    }

    fn weight(&self) -> Weighting {
        (
            -(self.static_weights.len() as i64),
            self.static_weights.clone(),
            -(self.argument_weights.len() as i64),
            self.argument_weights.clone(),
        )
    }

    fn finish(self, suffixed: bool) -> Result<(Part, Regex), PyRegexError> {
        let weight = self.weight();
        if self.is_static {
            return Ok(static_part(self.content, weight));
        }
        let regex = pyregex::compile(&format!(r"\A(?:{})\z", self.content))?;
        let content = Content::Dynamic { regex: self.content, suffixed };
        Ok((Part { content, is_final: self.is_final, weight }, regex))
    }
}

fn parse_parts(
    rule: &WerkzeugRule,
    text: &str,
    parts: &mut Vec<(Part, Regex)>,
    converters: &mut Vec<(String, Option<NumberBounds>)>,
) -> Result<(), RuleError> {
    let compile_err = |e| RuleError::Regex(rule.rule.clone(), e);
    let mut b = Building::new();
    // While a part is static its content is raw text; once a converter appears it becomes a
    // regex and the text so far is escaped (as `_parse_rule` does with `re.escape`).
    let mut raw = String::new();
    let mut pos = 0;
    while pos < text.len() {
        let caps = PART_RE.captures(&text[pos..]).ok_or(RuleError::Malformed)?;
        if let Some(s) = caps.name("static") {
            b.static_weights.push((b.static_weights.len() as i64, -(s.len() as i64)));
            if b.is_static {
                raw.push_str(s.as_str());
            } else {
                b.content.push_str(&regex::escape(s.as_str()));
            }
        }
        if let Some(var) = caps.name("variable") {
            let name = var.as_str();
            if b.is_static {
                b.content = regex::escape(&raw);
            }
            b.is_static = false;
            let (_, conv) = rule
                .converters
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| RuleError::MissingConverter(name.to_owned()))?;
            if !conv.part_isolating {
                b.is_final = true;
            }
            let conv_regex = pyregex::translate(&conv.regex).map_err(|e| RuleError::Regex(name.to_owned(), e))?;
            let _ = write!(b.content, "(?P<__werkzeug_{}>{conv_regex})", b.convertor_number);
            b.convertor_number += 1;
            b.argument_weights.push(conv.weight);
            converters.push((name.to_owned(), conv.number.clone()));
        }
        if caps.name("slash").is_some() {
            if b.is_final {
                b.content.push('/');
            } else {
                if b.is_static {
                    b.content = std::mem::take(&mut raw);
                }
                parts.push(std::mem::replace(&mut b, Building::new()).finish(false).map_err(compile_err)?);
            }
        }
        pos += caps.get(0).map_or(1, |m| m.len().max(1));
    }
    if b.is_static {
        b.content = raw;
    }
    let suffixed = b.is_final && b.content.ends_with('/');
    if suffixed {
        // The trailing slash is matched by `match_part` (Werkzeug's `(?<!/)(/?)` suffix).
        b.content.pop();
    }
    let weight = b.weight();
    parts.push(b.finish(suffixed).map_err(compile_err)?);
    if suffixed {
        parts.push(static_part(String::new(), weight));
    }
    Ok(())
}
