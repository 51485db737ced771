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
    pub fn resolve(&self, method: &str, path_info: &str) -> Outcome {
        let path = if path_info.is_empty() { "/" } else { path_info };
        // The root resolver's `^/`.
        let Some(rest) = path.strip_prefix('/') else { return Outcome::NotFound };
        match resolve_nodes(&self.nodes, rest) {
            Some((route, view)) => Outcome::Found { route, code: code_for(view, method).cloned() },
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

#[cfg(test)]
mod tests {
    use super::super::table::{DjangoConverter, Framework, RouteTable, Rules};
    use super::super::view::tests::{class, func};
    use super::super::Matcher;
    use super::*;

    fn route(route: &str, converters: &[(&str, &str, &str)], is_endpoint: bool) -> DjangoPattern {
        let converters = converters
            .iter()
            .map(|(n, class, regex)| {
                ((*n).to_owned(), DjangoConverter { class: (*class).to_owned(), regex: (*regex).to_owned() })
            })
            .collect();
        DjangoPattern::Route { route: route.to_owned(), converters, is_endpoint }
    }

    fn regex(regex: &str, is_endpoint: bool) -> DjangoPattern {
        DjangoPattern::Regex { regex: regex.to_owned(), is_endpoint }
    }

    fn pattern(pattern: DjangoPattern, view: &str) -> DjangoEntry {
        DjangoEntry::Pattern { pattern, name: None, view: func(view) }
    }

    fn resolver(pattern: DjangoPattern, children: Vec<DjangoEntry>) -> DjangoEntry {
        DjangoEntry::Resolver { pattern, namespace: None, children }
    }

    fn matcher(entries: Vec<DjangoEntry>) -> Matcher {
        Matcher::new(RouteTable {
            framework: Framework::Django,
            found_at: "ROOT_URLCONF djurls".to_owned(),
            rules: Rules::Django(entries),
            skipped: Vec::new(),
        })
    }

    /// The urlconf as Django 4.2 built it (patterns, converters and their regexes read back from
    /// the URLPattern/URLResolver objects); `yyyy` is a registered custom converter.
    fn entries() -> Vec<DjangoEntry> {
        vec![
            pattern(route("", &[], true), "home"),
            pattern(route("articles/<int:year>/", &[("year", "IntConverter", "[0-9]+")], true), "year"),
            pattern(route("articles/<yyyy:year>/archive/", &[("year", "YearConverter", "[0-9]{4}")], true), "archive"),
            pattern(route("articles/<slug:slug>/", &[("slug", "SlugConverter", "[-a-zA-Z0-9_]+")], true), "article"),
            pattern(
                route(
                    "u/<uuid:id>/",
                    &[("id", "UUIDConverter", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")],
                    true,
                ),
                "uuid",
            ),
            pattern(route("files/<path:p>", &[("p", "PathConverter", ".+")], true), "files"),
            pattern(route("str/<str:s>/x", &[("s", "StringConverter", "[^/]+")], true), "str"),
            pattern(route("plain/<name>/", &[("name", "StringConverter", "[^/]+")], true), "plain"),
            pattern(regex("^legacy/(?P<id>[0-9]+)/$", true), "legacy"),
            pattern(regex("^nodollar/(\\d+)", true), "nodollar"),
            pattern(regex("anywhere", true), "anywhere"),
            resolver(
                route("api/", &[], false),
                vec![
                    pattern(route("users/", &[], true), "users"),
                    pattern(route("users/<int:pk>/", &[("pk", "IntConverter", "[0-9]+")], true), "user"),
                    pattern(regex("^re/(?P<x>[a-z]+)/$", true), "api_re"),
                    resolver(
                        route("v<int:ver>/", &[("ver", "IntConverter", "[0-9]+")], false),
                        vec![pattern(route("items/", &[], true), "items"), pattern(route("", &[], true), "v_root")],
                    ),
                ],
            ),
            resolver(
                regex("^old/", false),
                vec![pattern(regex("^thing/$", true), "old_thing"), pattern(route("new/", &[], true), "old_new")],
            ),
            resolver(route("api/", &[], false), vec![pattern(route("later/", &[], true), "later")]),
            resolver(
                route("shop/", &[], false),
                vec![resolver(route("", &[], false), vec![pattern(route("cart/", &[], true), "cart")])],
            ),
            pattern(route("foo/", &[], true), "foo"),
        ]
    }

    #[test]
    fn resolves_as_django_does() {
        // Expectations from Django 4.2.30 itself: `django.urls.resolve(path_info)` with this
        // urlconf as ROOT_URLCONF, path_info being `repercent_broken_unicode(unquote_to_bytes(raw))`
        // as its WSGI handler computes it; `Some((ResolverMatch.route, view))` or `None` for
        // Resolver404. The route is what OpenTelemetry writes (empty: no attribute).
        let m = matcher(entries());
        assert!(m.table().skipped.is_empty(), "{:?}", m.table().skipped);
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("/", Some(("", "home"))),
            ("", Some(("", "home"))),
            ("/articles/2024/", Some(("articles/<int:year>/", "year"))),
            ("/articles/2024", None),
            ("/articles/2024/archive/", Some(("articles/<yyyy:year>/archive/", "archive"))),
            ("/articles/hello-world_1/", Some(("articles/<slug:slug>/", "article"))),
            ("/articles/héllo/", None),
            ("/u/12345678-1234-1234-1234-123456789abc/", Some(("u/<uuid:id>/", "uuid"))),
            ("/u/12345678-1234-1234-1234-123456789ABC/", None),
            ("/files/a/b/c.txt", Some(("files/<path:p>", "files"))),
            ("/files/", None),
            ("/str/a%20b/x", Some(("str/<str:s>/x", "str"))),
            ("/plain/x/", Some(("plain/<name>/", "plain"))),
            ("/legacy/12/", Some(("^legacy/(?P<id>[0-9]+)/$", "legacy"))),
            ("/legacy/12/extra", None),
            ("/nodollar/12/whatever", Some(("^nodollar/(\\d+)", "nodollar"))),
            ("/zzz/anywhere/zzz", Some(("anywhere", "anywhere"))),
            ("/api/users/", Some(("api/users/", "users"))),
            ("/api/users/3/", Some(("api/users/<int:pk>/", "user"))),
            ("/api/re/abc/", Some(("api/re/(?P<x>[a-z]+)/$", "api_re"))),
            ("/api/v2/items/", Some(("api/v<int:ver>/items/", "items"))),
            ("/api/v2/", Some(("api/v<int:ver>/", "v_root"))),
            ("/api/later/", Some(("api/later/", "later"))),
            ("/old/thing/", Some(("^old/thing/$", "old_thing"))),
            ("/old/new/", Some(("^old/new/", "old_new"))),
            ("/shop/cart/", Some(("shop/cart/", "cart"))),
            ("/foo", None),
            ("/foo/", Some(("foo/", "foo"))),
            ("foo/", None),
            ("//foo/", None),
            ("/api/nope/", None),
            ("/articles/%FF/", None),
            ("/plain/%C3%A9/", Some(("plain/<name>/", "plain"))),
            ("/plain/%FF/", Some(("plain/<name>/", "plain"))),
            ("/files/a%2Fb", Some(("files/<path:p>", "files"))),
        ];
        for (path, want) in cases {
            for method in ["GET", "POST", "PATCH"] {
                let got = m.resolve(method, path);
                let ok = match (want, &got) {
                    (Some((route, view)), Outcome::Found { route: r, code: Some(code) }) => {
                        r == route && code.qualname == *view
                    }
                    (None, Outcome::NotFound) => true,
                    _ => false,
                };
                assert!(ok, "{method} {path:?}: want {want:?}, got {got:?}");
            }
        }
    }

    #[test]
    fn class_based_view_method_and_join_route() {
        let entries = vec![DjangoEntry::Pattern {
            pattern: route("item/", &[], true),
            name: Some("item".to_owned()),
            view: class("ItemView", &["get", "put"]),
        }];
        let m = matcher(entries);
        let code = |method| match m.resolve(method, "/item/") {
            Outcome::Found { code, .. } => code.map(|c| c.qualname.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(code("GET").as_deref(), Some("ItemView.get"));
        assert_eq!(code("HEAD").as_deref(), Some("ItemView.get"));
        assert_eq!(code("PUT").as_deref(), Some("ItemView.put"));
        assert_eq!(code("DELETE").as_deref(), Some("ItemView.as_view"));
        // `URLResolver._join_route`.
        assert_eq!(join_route("", "^a/$"), "^a/$");
        assert_eq!(join_route("^x/", "^a/$"), "^x/a/$");
        assert_eq!(join_route("x/", "a/"), "x/a/");
    }

    #[test]
    fn unrunnable_patterns_are_skipped_and_the_rest_still_resolve() {
        let m = matcher(vec![
            pattern(regex(r"^(?P<a>x)/(?P=a)/$", true), "backref"),
            resolver(
                route("api/", &[], false),
                vec![pattern(regex(r"^(?=y)y/$", true), "look"), pattern(route("ok/", &[], true), "ok")],
            ),
            pattern(route("m/<int:pk>/", &[], true), "missing"),
        ]);
        let reasons: Vec<(&str, &str)> =
            m.table().skipped.iter().map(|s| (s.rule.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (
                    r"^(?P<a>x)/(?P=a)/$",
                    "Python regex feature not supported by the regex crate: named back-references (?P=name)"
                ),
                (r"api/(?=y)y/$", "Python regex feature not supported by the regex crate: lookahead"),
                ("m/<int:pk>/", "no converter read for <pk>"),
            ]
        );
        assert!(matches!(m.resolve("GET", "/api/ok/"), Outcome::Found { route, .. } if route == "api/ok/"));
    }
}
