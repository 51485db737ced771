//! Django (4.2, 5.2, 6.x) URL resolution, as `django/urls/resolvers.py` does it: the root
//! `URLResolver` (pattern `^/`) takes the leading slash, then its `url_patterns` are tried in
//! order; an include (`URLResolver`) matches a prefix and hands the rest to its children, and
//! when none of them matches the search goes on with the include's next sibling. There is no
//! method routing: a URL that resolves is found for every method.
//!
//! The route is `ResolverMatch.route`: each include's `str(pattern)` (`RoutePattern._route`, or
//! `RegexPattern._regex` for `re_path`) joined by `URLResolver._join_route`, which drops a
//! leading `^` of the part it appends unless nothing precedes it. OpenTelemetry's Django
//! middleware (`opentelemetry/instrumentation/django/middleware/otel_middleware.py`,
//! `_DjangoMiddleware.process_view`) writes that string unchanged as `http.route`, with no `/`
//! prepended, and only `if route:`: an empty route (`path('', home)`) gives no attribute.
//!
//! The path is Django's WSGI `path_info`, undecodable bytes re-percent-encoded (ASGI servers
//! decode with replacement characters instead; the two differ only on invalid UTF-8).
//! Converters' `to_python` raising `ValueError` (a "no match" in Django) is not modelled: the
//! converter's regex alone decides, which is exact for Django's own converters.
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::pyregex::{self, Anchor, PyRegexError};
use super::table::{DjangoEntry, DjangoPattern, Outcome, Skipped, View};
use super::view::code_for;

/// Includes nested deeper than this are skipped (the resolution recurses once per level).
const MAX_DEPTH: usize = 64;

/// `_PATH_PARAMETER_COMPONENT_RE`.
static PARAMETER_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>").expect("static regex"));

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("no converter read for <{0}>")]
    MissingConverter(String),
    #[error("{0}")]
    Regex(#[from] PyRegexError),
    #[error("includes nested over {MAX_DEPTH} deep")]
    TooDeep,
}

#[derive(Debug)]
enum Node {
    Pattern { regex: Regex, route: String, view: View },
    Resolver { regex: Regex, route: String, children: Vec<Node> },
}

#[derive(Debug)]
pub struct Django {
    nodes: Vec<Node>,
}

impl Django {
    pub fn new(entries: &[DjangoEntry], max_rules: usize, skipped: &mut Vec<Skipped>) -> Django {
        let mut budget = max_rules;
        Django { nodes: compile_entries(entries, "", 0, &mut budget, skipped) }
    }

    /// `URLResolver.resolve(request.path_info)` on the root resolver.
    pub fn resolve(&self, method: &str, path_info: &str) -> Outcome<'_> {
        let path = if path_info.is_empty() { "/" } else { path_info };
        // The root resolver's `^/`.
        let Some(rest) = path.strip_prefix('/') else { return Outcome::NotFound };
        match resolve_nodes(&self.nodes, rest) {
            Some((route, view)) => Outcome::Found { route, code: code_for(view, method) },
            None => Outcome::NotFound,
        }
    }
}

/// The first node that resolves `path`: its joined route and view.
fn resolve_nodes<'n>(nodes: &'n [Node], path: &str) -> Option<(String, &'n View)> {
    nodes.iter().find_map(|node| match node {
        // `URLPattern.resolve`: the route is `str(self.pattern)`, whatever is left of the path.
        Node::Pattern { regex, route, view } => regex.is_match(path).then(|| (route.clone(), view)),
        Node::Resolver { regex, route, children } => {
            let end = regex.find(path)?.end();
            let (sub_route, view) = resolve_nodes(children, &path[end..])?;
            Some((join_route(route, &sub_route), view))
        }
    })
}

/// `URLResolver._join_route`.
fn join_route(route1: &str, route2: &str) -> String {
    if route1.is_empty() {
        return route2.to_owned();
    }
    format!("{route1}{}", route2.strip_prefix('^').unwrap_or(route2))
}

fn compile_entries(
    entries: &[DjangoEntry],
    prefix: &str,
    depth: usize,
    budget: &mut usize,
    skipped: &mut Vec<Skipped>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for entry in entries {
        let (DjangoEntry::Pattern { pattern, .. } | DjangoEntry::Resolver { pattern, .. }) = entry;
        let route = pattern_str(pattern).to_owned();
        let full = join_route(prefix, &route);
        if *budget == 0 {
            skipped.push(Skipped { rule: full, reason: "over the rule cap".to_owned() });
            continue;
        }
        *budget -= 1;
        let regex = match compile_pattern(pattern) {
            Ok(r) => r,
            Err(e) => {
                skipped.push(Skipped { rule: full, reason: e.to_string() });
                continue;
            }
        };
        match entry {
            DjangoEntry::Pattern { view, .. } => nodes.push(Node::Pattern { regex, route, view: view.clone() }),
            DjangoEntry::Resolver { .. } if depth >= MAX_DEPTH => {
                skipped.push(Skipped { rule: full, reason: PatternError::TooDeep.to_string() });
            }
            DjangoEntry::Resolver { children, .. } => {
                let children = compile_entries(children, &full, depth + 1, budget, skipped);
                nodes.push(Node::Resolver { regex, route, children });
            }
        }
    }
    nodes
}

/// `str(pattern)`.
fn pattern_str(pattern: &DjangoPattern) -> &str {
    match pattern {
        DjangoPattern::Route { route, .. } => route,
        DjangoPattern::Regex { regex, .. } => regex,
    }
}

/// The regex `pattern.match` applies, anchored as it applies it.
fn compile_pattern(pattern: &DjangoPattern) -> Result<Regex, PatternError> {
    match pattern {
        DjangoPattern::Route { route, converters, is_endpoint } => {
            // `_route_to_regex`: `^`, escaped text, `(?P<name>converter.regex)`, `\Z` at an
            // endpoint; `RoutePattern.match` searches, which the `^` anchors.
            let mut rx = String::from(r"\A");
            let mut rest = route.as_str();
            while let Some(caps) = PARAMETER_RE.captures(rest) {
                let whole = caps.get(0).expect("group 0");
                rx.push_str(&regex::escape(&rest[..whole.start()]));
                let name = &caps["parameter"];
                let (_, conv) = converters
                    .iter()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| PatternError::MissingConverter(name.to_owned()))?;
                // Unnamed here: the values are not needed, and a Python identifier need not be a
                // valid group name for the `regex` crate.
                let _ = write!(rx, "(?:{})", pyregex::translate(&conv.regex)?);
                rest = &rest[whole.end()..];
            }
            rx.push_str(&regex::escape(rest));
            if *is_endpoint {
                rx.push_str(r"\z");
            }
            Ok(pyregex::compile(&rx)?)
        }
        DjangoPattern::Regex { regex, is_endpoint } => {
            // `RegexPattern.match`: fullmatch at an endpoint whose pattern ends with `$` (even an
            // escaped one: Django tests the text), search otherwise.
            let anchor = if *is_endpoint && regex.ends_with('$') { Anchor::Full } else { Anchor::Search };
            Ok(pyregex::compile_python(regex, anchor)?)
        }
    }
}
