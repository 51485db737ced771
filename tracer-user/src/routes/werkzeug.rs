//! Werkzeug 3.0/3.1 routing, as `werkzeug/routing/matcher.py`'s `StateMachineMatcher` does it:
//! each rule is cut into parts at its slashes (`Rule._parse_rule`), the parts form a tree whose
//! static transitions are tried before the dynamic ones, the dynamic ones in converter-weight
//! order, and rules sharing a state in the order they were added. The first rule reached wins;
//! a converter's `to_python` refusing its value then fails the whole match (no other rule is
//! tried), as in `StateMachineMatcher.match`.
//!
//! Werkzeug 3.0 merges slashes with `/{2,}?` (pairs) where 3.1 uses `/{2,}`; this follows 3.1.
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};

use regex::{CaptureLocations, Regex};

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
    /// Sorted by the part's weight (stable).
    dynamic: Vec<Dynamic>,
    /// Indices into `Werkzeug::rules`, in the order added.
    rules: Vec<usize>,
    statics: HashMap<String, usize>,
}

/// A dynamic transition.
#[derive(Debug)]
struct Dynamic {
    part: Part,
    regex: Regex,
    /// The regex's `__werkzeug_N` groups by N (the order of the part's converters), found once
    /// here rather than by name at each match.
    groups: Vec<usize>,
    /// Where `regex`'s groups matched, reused from match to match (`Regex::captures` would
    /// allocate this every time). A `Mutex` only so the matcher can be shared; never contended.
    locations: Mutex<CaptureLocations>,
    next: usize,
}

impl Dynamic {
    fn new(part: Part, regex: Regex, next: usize) -> Dynamic {
        let mut numbered: Vec<(usize, usize)> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(group, name)| Some((name?.strip_prefix("__werkzeug_")?.parse().ok()?, group)))
            .collect();
        numbered.sort_unstable();
        let locations = Mutex::new(regex.capture_locations());
        Dynamic { part, regex, groups: numbered.into_iter().map(|(_, group)| group).collect(), locations, next }
    }
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
                    if let Some(d) = self.states[state].dynamic.iter().find(|d| d.part == part) {
                        d.next
                    } else {
                        let next = self.new_state();
                        self.states[state].dynamic.push(Dynamic::new(part, regex, next));
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
            state.dynamic.sort_by(|a, b| a.part.weight.cmp(&b.part.weight));
        }
    }

    /// `MapAdapter.match` for a decoded path (PATH_INFO) and method. Nothing is copied on the way
    /// but the route of the answer (and the method or path in the rare case they need changing).
    pub fn resolve(&self, map: &WerkzeugMap, method: &str, path_info: &str) -> Outcome {
        // `method.upper()`; methods nearly always arrive upper-case already.
        let method = if method.bytes().any(|b| b.is_ascii_lowercase()) {
            Cow::Owned(method.to_ascii_uppercase())
        } else {
            Cow::Borrowed(method)
        };
        let path = werkzeug_path(path_info);
        let mut search = Search { m: self, rules: &map.rules, method: &method, have_match_for: false };
        let mut values = Vec::new();
        let first = match search.walk_root(Parts::of(&path), &mut values) {
            Ok(rv) => rv,
            Err(SlashRequired) => return Outcome::NotFound,
        };
        match first {
            Some(rule) => {
                let compiled = &self.rules[rule];
                let table_rule = &map.rules[compiled.index];
                if !to_python_accepts(compiled, &values) {
                    return search.no_match();
                }
                if table_rule.redirect_to {
                    return Outcome::NotFound;
                }
                Outcome::Found { route: table_rule.rule.clone(), code: code_for(&table_rule.view, &method).cloned() }
            }
            // Without `//` the merged path is the same one, and walking it again gives the same
            // `None`.
            None if self.merge_slashes && path.contains("//") => {
                let merged = merge_slashes(&path);
                match search.walk_root(Parts::of(&merged), &mut Vec::new()) {
                    // Either way a redirect to the merged (or slash-added) path.
                    Err(SlashRequired) => Outcome::NotFound,
                    Ok(Some(rule)) if map.rules[self.rules[rule].index].merge_slashes => Outcome::NotFound,
                    Ok(_) => search.no_match(),
                }
            }
            None => search.no_match(),
        }
    }
}

/// `f"/{path_info.lstrip('/')}" if path_info else ""`, borrowed from `path_info` when it starts
/// with a slash (the last of its leading slashes is the one kept).
fn werkzeug_path(path_info: &str) -> Cow<'_, str> {
    let stripped = path_info.trim_start_matches('/');
    match path_info.len() - stripped.len() {
        _ if path_info.is_empty() => Cow::Borrowed(""),
        0 => Cow::Owned(format!("/{stripped}")),
        slashes => Cow::Borrowed(&path_info[slashes - 1..]),
    }
}

/// The parts `_match` still has to match, `path.split("/")` from some part on, kept as the rest
/// of the path itself rather than a list; `None` when no part is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts<'p>(Option<&'p str>);

impl<'p> Parts<'p> {
    /// `[""]`: what remains after a suffixed part matched its trailing slash.
    const TRAILING: Parts<'static> = Parts(Some(""));

    /// `path.split("/")`.
    fn of(path: &'p str) -> Parts<'p> {
        Parts(Some(path))
    }

    /// `parts[0], parts[1:]`.
    fn split_first(self) -> Option<(&'p str, Parts<'p>)> {
        let parts = self.0?;
        Some(match parts.split_once('/') {
            Some((first, rest)) => (first, Parts(Some(rest))),
            None => (parts, Parts(None)),
        })
    }

    /// `"/".join(parts)`.
    fn joined(self) -> &'p str {
        self.0.unwrap_or("")
    }
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

impl Search<'_> {
    /// `NoMatch`: 405 when some rule had the path, else 404 (a websocket mismatch is a 400;
    /// neither sets `request.url_rule`, so no route either way).
    fn no_match(&self) -> Outcome {
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

    /// `_match(self._root, [domain, *path.split("/")], [])`. Every compiled rule begins with the
    /// static empty domain part (`parse_rule`), so the root has that one transition and nothing
    /// else: matching the domain part is taking it.
    fn walk_root<'p>(&mut self, path: Parts<'p>, values: &mut Vec<&'p str>) -> Result<Option<usize>, SlashRequired> {
        match self.m.states[0].statics.get("") {
            Some(&next) => self.walk(next, path, values),
            None => Ok(None),
        }
    }

    /// `StateMachineMatcher.match._match`. `values` is a stack: each dynamic part pushes its
    /// converters' values and takes them off again when the branch fails, so on a match it holds
    /// the matched rule's values, borrowed from the path.
    fn walk<'p>(
        &mut self,
        state: usize,
        parts: Parts<'p>,
        values: &mut Vec<&'p str>,
    ) -> Result<Option<usize>, SlashRequired> {
        let st = &self.m.states[state];
        let Some((part, rest)) = parts.split_first() else {
            for &rule in &st.rules {
                if self.accepts(rule) {
                    return Ok(Some(rule));
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
                        return Ok(Some(rule));
                    }
                }
            }
            return Ok(None);
        };
        if let Some(&next) = st.statics.get(part) {
            if let Some(rv) = self.walk(next, rest, values)? {
                return Ok(Some(rv));
            }
        }
        for test in &st.dynamic {
            let (target, mut remaining) = if test.part.is_final { (parts.joined(), Parts(None)) } else { (part, rest) };
            let before = values.len();
            let Some(slash) = match_part(test, target, values) else { continue };
            if slash {
                remaining = Parts::TRAILING;
            }
            if let Some(rv) = self.walk(test.next, remaining, values)? {
                return Ok(Some(rv));
            }
            values.truncate(before);
        }
        // Only a trailing slash left: rules without strict slashes match without it.
        if parts == Parts::TRAILING {
            for &rule in &st.rules {
                if self.rule(rule).strict_slashes {
                    continue;
                }
                if self.accepts(rule) {
                    return Ok(Some(rule));
                }
            }
        }
        Ok(None)
    }
}

/// A dynamic part against its target: pushes the converters' values onto `values` and says
/// whether a suffixed part matched its trailing slash. Python's `(?<!/)(/?)\Z` suffix has no
/// lookbehind here: a target ending in `/` matches as the prefix on all but that slash, unless
/// the slash is doubled; any other target matches as the prefix on all of it.
fn match_part<'p>(test: &Dynamic, target: &'p str, values: &mut Vec<&'p str>) -> Option<bool> {
    let Content::Dynamic { suffixed, .. } = &test.part.content else { return None };
    let (subject, slash) = match target.strip_suffix('/') {
        Some(head) if *suffixed => {
            if head.ends_with('/') {
                return None;
            }
            (head, true)
        }
        _ => (target, false),
    };
    let mut locations = test.locations.lock().unwrap_or_else(PoisonError::into_inner);
    test.regex.captures_read(&mut locations, subject)?;
    values
        .extend(test.groups.iter().map(|&group| locations.get(group).map_or("", |(start, end)| &subject[start..end])));
    Some(slash)
}

/// `NumberConverter.to_python`: `fixed_digits`, then the bounds. Digits outside ASCII (Python's
/// `int()` takes any Unicode decimal digit) cannot be valued here and are let through.
fn to_python_accepts(rule: &Compiled, values: &[&str]) -> bool {
    rule.converters.iter().zip(values).all(|((_, bounds), value)| {
        let Some(b) = bounds else { return true };
        if b.fixed_digits != 0 && value.chars().count() as i64 != b.fixed_digits {
            return false;
        }
        if b.min.is_none() && b.max.is_none() {
            return true;
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

#[cfg(test)]
mod tests {
    use super::super::table::{Framework, RouteTable, Rules, WerkzeugConverter};
    use super::super::view::tests::{class, func};
    use super::super::Matcher;
    use super::*;

    #[expect(clippy::struct_excessive_bools, reason = "the rule's own flags, as Werkzeug has them")]
    #[derive(Clone, Copy)]
    struct Flags {
        strict_slashes: bool,
        merge_slashes: bool,
        websocket: bool,
        build_only: bool,
        redirect_to: bool,
    }

    fn conv(
        class: &str,
        regex: &str,
        weight: i64,
        part_isolating: bool,
        number: Option<NumberBounds>,
    ) -> WerkzeugConverter {
        WerkzeugConverter { class: class.to_owned(), regex: regex.to_owned(), weight, part_isolating, number }
    }

    fn rule(
        rule: &str,
        endpoint: &str,
        methods: Option<&[&str]>,
        converters: Vec<(&str, WerkzeugConverter)>,
        f: Flags,
    ) -> WerkzeugRule {
        let Flags { strict_slashes, merge_slashes, websocket, build_only, redirect_to } = f;
        WerkzeugRule {
            rule: rule.to_owned(),
            endpoint: endpoint.to_owned(),
            methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            converters: converters.into_iter().map(|(n, c)| (n.to_owned(), c)).collect(),
            strict_slashes,
            merge_slashes,
            websocket,
            build_only,
            domain: String::new(),
            redirect_to,
            view: func(endpoint),
        }
    }

    fn matcher(rules: Vec<WerkzeugRule>) -> Matcher {
        let map = WerkzeugMap { rules, merge_slashes: true };
        Matcher::new(RouteTable {
            framework: Framework::Flask,
            found_at: "app:app".to_owned(),
            rules: Rules::Werkzeug(map),
            skipped: Vec::new(),
        })
    }

    /// The rules as Werkzeug 3.1 compiled them (converter regexes, weights, bounds and the
    /// automatic HEAD read back from the `Rule` objects), `/bp/api/...` standing for a blueprint
    /// with `url_prefix="/bp/api"` (Flask joins the prefix into the rule string).
    #[expect(clippy::too_many_lines, reason = "the table as Werkzeug compiled it, rule by rule")]
    fn rules() -> Vec<WerkzeugRule> {
        vec![
            rule(
                "/",
                "index",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/users/",
                "users",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/users/new",
                "users_new",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/users/<name>",
                "user",
                None,
                vec![("name", conv("UnicodeConverter", "[^/]{1,}", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/users/<int:uid>",
                "user_by_id",
                None,
                vec![(
                    "uid",
                    conv(
                        "IntegerConverter",
                        "\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/users/<int:uid>/edit",
                "user_edit",
                Some(&["GET", "HEAD", "POST"]),
                vec![(
                    "uid",
                    conv(
                        "IntegerConverter",
                        "\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/pages/<string(length=2):lang>/",
                "page_lang",
                None,
                vec![("lang", conv("UnicodeConverter", "[^/]{2}", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/short/<string(minlength=2,maxlength=3):s>",
                "short",
                None,
                vec![("s", conv("UnicodeConverter", "[^/]{2,3}", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/num/<int(fixed_digits=4):year>",
                "year",
                None,
                vec![(
                    "year",
                    conv(
                        "IntegerConverter",
                        "\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 4, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/num/<int(min=1,max=10,signed=True):n>/x",
                "bounded",
                None,
                vec![(
                    "n",
                    conv(
                        "IntegerConverter",
                        "-?\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: Some(1.0_f64), max: Some(10.0_f64), signed: true }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/f/<float:x>",
                "float",
                None,
                vec![(
                    "x",
                    conv(
                        "FloatConverter",
                        "\\d+\\.\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/fs/<float(signed=True,max=1.5):x>",
                "float_signed",
                None,
                vec![(
                    "x",
                    conv(
                        "FloatConverter",
                        "-?\\d+\\.\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: Some(1.5_f64), signed: true }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/files/<path:p>",
                "files",
                None,
                vec![("p", conv("PathConverter", "[^/].*?", 200, false, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/files/<path:p>/raw/",
                "files_raw",
                None,
                vec![("p", conv("PathConverter", "[^/].*?", 200, false, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/files/readme",
                "readme",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/obj/<uuid:u>",
                "obj",
                None,
                vec![(
                    "u",
                    conv(
                        "UUIDConverter",
                        "[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}",
                        100,
                        true,
                        None,
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/kind/<any(cat, dog, 'a.b'):k>",
                "kind",
                None,
                vec![("k", conv("AnyConverter", "(?:cat|dog|a\\.b)", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/hex/<hex:h>",
                "hex",
                None,
                vec![("h", conv("HexConverter", "[0-9a-f]{2,}", 80, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/hex/<h2>",
                "hex_default",
                None,
                vec![("h2", conv("UnicodeConverter", "[^/]{1,}", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/post",
                "post_only",
                Some(&["POST"]),
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/loose/",
                "loose",
                None,
                vec![],
                Flags {
                    strict_slashes: false,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/ws",
                "ws",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: true,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/built",
                "built",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: true,
                    redirect_to: false,
                },
            ),
            rule(
                "/old",
                "old",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: true,
                },
            ),
            rule(
                "/bp/api/items/<int:id>",
                "bp.item",
                None,
                vec![(
                    "id",
                    conv(
                        "IntegerConverter",
                        "\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/a/<x>/<y>",
                "a_xy",
                None,
                vec![
                    ("x", conv("UnicodeConverter", "[^/]{1,}", 100, true, None)),
                    ("y", conv("UnicodeConverter", "[^/]{1,}", 100, true, None)),
                ],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/a/b/<z>",
                "a_bz",
                None,
                vec![("z", conv("UnicodeConverter", "[^/]{1,}", 100, true, None))],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/mixed/v<int:n>.json",
                "mixed",
                None,
                vec![(
                    "n",
                    conv(
                        "IntegerConverter",
                        "\\d+",
                        50,
                        true,
                        Some(NumberBounds { fixed_digits: 0, min: None, max: None, signed: false }),
                    ),
                )],
                Flags {
                    strict_slashes: true,
                    merge_slashes: true,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
            rule(
                "/keep//double",
                "keep_double",
                None,
                vec![],
                Flags {
                    strict_slashes: true,
                    merge_slashes: false,
                    websocket: false,
                    build_only: false,
                    redirect_to: false,
                },
            ),
        ]
    }

    #[derive(Debug)]
    enum Want {
        Found(&'static str),
        Mna,
        NotFound,
    }
    use Want::{Found, Mna, NotFound};

    // Expectations from Werkzeug itself: `Map(rules).bind("x").match(unquote(path),
    // method=..., return_rule=True)` under Werkzeug 3.1.9 and 3.0.6 (identical answers);
    // a RequestRedirect (strict or merged slashes, redirect_to) or any other HTTPException
    // is NotFound here, MethodNotAllowed is `Mna`.
    const CASES: &[(&str, &str, Want)] = &[
        ("GET", "/", Found("/")),
        ("GET", "", NotFound),
        ("GET", "//", Found("/")),
        ("GET", "/users", NotFound),
        ("GET", "/users/", Found("/users/")),
        ("GET", "/users/new", Found("/users/new")),
        ("GET", "/users/bob", Found("/users/<name>")),
        ("GET", "/users/42", Found("/users/<int:uid>")),
        ("GET", "/users/42/", NotFound),
        ("POST", "/users/42", Found("/users/<int:uid>")),
        ("HEAD", "/users/42", Found("/users/<int:uid>")),
        ("GET", "/users/42/edit", Found("/users/<int:uid>/edit")),
        ("POST", "/users/42/edit", Found("/users/<int:uid>/edit")),
        ("DELETE", "/users/42/edit", Mna),
        ("GET", "/pages/en/", Found("/pages/<string(length=2):lang>/")),
        ("GET", "/pages/en", NotFound),
        ("GET", "/pages/eng/", NotFound),
        ("GET", "/short/a", NotFound),
        ("GET", "/short/ab", Found("/short/<string(minlength=2,maxlength=3):s>")),
        ("GET", "/short/abcd", NotFound),
        ("GET", "/num/2024", Found("/num/<int(fixed_digits=4):year>")),
        ("GET", "/num/24", NotFound),
        ("GET", "/num/02024", NotFound),
        ("GET", "/num/5/x", Found("/num/<int(min=1,max=10,signed=True):n>/x")),
        ("GET", "/num/-5/x", NotFound),
        ("GET", "/num/11/x", NotFound),
        ("GET", "/num/10/x", Found("/num/<int(min=1,max=10,signed=True):n>/x")),
        ("GET", "/num/0/x", NotFound),
        ("GET", "/f/1.5", Found("/f/<float:x>")),
        ("GET", "/f/1", NotFound),
        ("GET", "/f/-1.5", NotFound),
        ("GET", "/fs/-1.5", Found("/fs/<float(signed=True,max=1.5):x>")),
        ("GET", "/fs/1.6", NotFound),
        ("GET", "/fs/1.5", Found("/fs/<float(signed=True,max=1.5):x>")),
        ("GET", "/files/a", Found("/files/<path:p>")),
        ("GET", "/files/a/b/c", Found("/files/<path:p>")),
        ("GET", "/files/readme", Found("/files/readme")),
        ("GET", "/files/a/raw/", Found("/files/<path:p>/raw/")),
        ("GET", "/files/a/b/raw/", Found("/files/<path:p>/raw/")),
        ("GET", "/files/a/raw", NotFound),
        ("GET", "/files/a/raw//", Found("/files/<path:p>")),
        ("GET", "/files/a//b", Found("/files/<path:p>")),
        ("GET", "/files/", NotFound),
        ("GET", "/obj/12345678-1234-1234-1234-123456789abc", Found("/obj/<uuid:u>")),
        ("GET", "/obj/12345678-1234-1234-1234-123456789ABC", Found("/obj/<uuid:u>")),
        ("GET", "/obj/nope", NotFound),
        ("GET", "/kind/cat", Found("/kind/<any(cat, dog, 'a.b'):k>")),
        ("GET", "/kind/a.b", Found("/kind/<any(cat, dog, 'a.b'):k>")),
        ("GET", "/kind/axb", NotFound),
        ("GET", "/kind/cow", NotFound),
        ("GET", "/hex/ff", Found("/hex/<hex:h>")),
        ("GET", "/hex/zz", Found("/hex/<h2>")),
        ("GET", "/hex/f", Found("/hex/<h2>")),
        ("GET", "/post", Mna),
        ("POST", "/post", Found("/post")),
        ("GET", "/loose", Found("/loose/")),
        ("GET", "/loose/", Found("/loose/")),
        ("GET", "/ws", NotFound),
        ("GET", "/built", NotFound),
        ("GET", "/old", NotFound),
        ("GET", "/bp/api/items/3", Found("/bp/api/items/<int:id>")),
        ("GET", "/a/b/c", Found("/a/b/<z>")),
        ("GET", "/a/x/c", Found("/a/<x>/<y>")),
        ("GET", "/a/b", NotFound),
        ("GET", "/mixed/v2.json", Found("/mixed/v<int:n>.json")),
        ("GET", "/mixed/vx.json", NotFound),
        ("GET", "//users/new", Found("/users/new")),
        ("GET", "/users//new", NotFound),
        ("POST", "/users//new", NotFound),
        ("GET", "/keep//double", Found("/keep//double")),
        ("GET", "/keep/double", NotFound),
        ("GET", "/nope", NotFound),
        ("get", "/users/bob", Found("/users/<name>")),
        ("DELETE", "/users//42/edit", Mna),
        ("GET", "/files//a", NotFound),
        ("GET", "/keep///double", NotFound),
        ("GET", "/users/new/", NotFound),
        ("GET", "/%75sers/new", Found("/users/new")),
        ("GET", "/users/42%2Fedit", Found("/users/<int:uid>/edit")),
        ("GET", "/users/b%C3%B6b", Found("/users/<name>")),
    ];

    #[test]
    fn matches_as_werkzeug_does() {
        let m = matcher(rules());
        assert!(m.table().skipped.is_empty(), "{:?}", m.table().skipped);
        for (method, path, want) in CASES {
            let got = m.resolve(method, path);
            let ok = match (want, &got) {
                (Found(route), Outcome::Found { route: r, code }) => {
                    r == route && code.as_ref().is_some_and(|c| r == route && !c.qualname.is_empty())
                }
                (Mna, Outcome::MethodNotAllowed { route: None }) | (NotFound, Outcome::NotFound) => true,
                _ => false,
            };
            assert!(ok, "{method} {path:?}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn cached_answers_are_the_matched_ones_and_a_new_table_starts_empty() {
        let m = matcher(rules());
        for (method, path, _) in CASES {
            let matched = m.matched(method, path);
            assert_eq!(m.resolve(method, path), matched, "{method} {path:?}, first");
            assert_eq!(m.resolve(method, path), matched, "{method} {path:?}, kept");
            assert_eq!(m.resolve(method, path), matched, "{method} {path:?}, from the cache");
        }
        // Some pairs may have taken another's slot; the last one kept its own.
        assert!((1..=CASES.len()).contains(&m.cached()), "{} kept", m.cached());
        assert_eq!(Matcher::new(m.table().clone()).cached(), 0);
    }

    fn flags() -> Flags {
        Flags { strict_slashes: true, merge_slashes: true, websocket: false, build_only: false, redirect_to: false }
    }

    fn int(max: Option<f64>) -> WerkzeugConverter {
        let bounds = NumberBounds { fixed_digits: 0, min: None, max, signed: false };
        conv("IntegerConverter", r"\d+", 50, true, Some(bounds))
    }

    fn default() -> WerkzeugConverter {
        conv("UnicodeConverter", "[^/]{1,}", 100, true, None)
    }

    #[test]
    fn a_refused_value_fails_the_match_instead_of_trying_the_next_rule() {
        // Werkzeug 3.1: Map([Rule('/<int(max=10):n>'), Rule('/<name>')]).bind('x').match('/20')
        // raises NotFound; '/5' is n, '/abc' is name.
        let m = matcher(vec![
            rule("/<int(max=10):n>", "n", None, vec![("n", int(Some(10.0)))], flags()),
            rule("/<name>", "name", None, vec![("name", default())], flags()),
        ]);
        assert_eq!(m.resolve("GET", "/20"), Outcome::NotFound);
        assert!(matches!(m.resolve("GET", "/5"), Outcome::Found { route, .. } if route == "/<int(max=10):n>"));
        assert!(matches!(m.resolve("GET", "/abc"), Outcome::Found { route, .. } if route == "/<name>"));
    }

    #[test]
    fn unrunnable_rules_are_skipped_with_a_reason() {
        let mut host = rule("/h", "h", None, vec![], flags());
        host.domain = "api".to_owned();
        let lookahead = conv("Custom", "(?!x)[a-z]+", 100, true, None);
        let m = matcher(vec![
            host,
            rule("/c/<v>", "c", None, vec![("v", lookahead)], flags()),
            rule("/m/<missing>", "m", None, vec![], flags()),
            rule("/bad/<", "bad", None, vec![], flags()),
            rule("/ok", "ok", None, vec![], flags()),
        ]);
        let reasons: Vec<(&str, &str)> =
            m.table().skipped.iter().map(|s| (s.rule.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("/h", "host or subdomain rule (api): the matcher does not see the request's host"),
                ("/c/<v>", "converter for <v>: Python regex feature not supported by the regex crate: lookahead"),
                ("/m/<missing>", "no converter read for <missing>"),
                ("/bad/<", "malformed url rule"),
            ]
        );
        assert_eq!(m.resolve("GET", "/h"), Outcome::NotFound);
        assert!(matches!(m.resolve("GET", "/ok"), Outcome::Found { .. }));
    }

    #[test]
    fn class_based_view_code_by_method() {
        let mut r = rule("/items", "items", Some(&["GET", "HEAD", "OPTIONS", "POST"]), vec![], flags());
        r.view = class("Items", &["get", "post"]);
        let m = matcher(vec![r]);
        let code = |method| match m.resolve(method, "/items") {
            Outcome::Found { code, .. } => code.map(|c| c.qualname.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(code("GET").as_deref(), Some("Items.get"));
        assert_eq!(code("HEAD").as_deref(), Some("Items.get"));
        assert_eq!(code("POST").as_deref(), Some("Items.post"));
        assert_eq!(code("OPTIONS").as_deref(), Some("Items.as_view"));
    }

    #[test]
    fn caps() {
        let long = format!("/{}", "a".repeat(super::super::MAX_PATH));
        let m = matcher(vec![rule(
            "/<path:p>",
            "p",
            None,
            vec![("p", conv("PathConverter", "[^/].*?", 200, false, None))],
            flags(),
        )]);
        assert_eq!(m.resolve("GET", &long), Outcome::NotFound);
        let many = (0..=super::super::MAX_RULES).map(|i| rule(&format!("/r{i}"), "r", None, vec![], flags())).collect();
        let m = matcher(many);
        assert_eq!(m.table().skipped.len(), 1);
        assert_eq!(m.table().skipped[0].reason, "over the 10000-rule cap");
        assert!(matches!(m.resolve("GET", "/r9999"), Outcome::Found { .. }));
        assert_eq!(m.resolve("GET", "/r10000"), Outcome::NotFound);
    }
}
