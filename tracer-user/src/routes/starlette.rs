//! Starlette (and FastAPI, whose `APIRoute`s are Starlette routes) routing: `compile_path` turns
//! `/users/{uid:int}` into `^/users/(?P<uid>[0-9]+)$`, `Route.matches` applies it with
//! `re.match` and answers PARTIAL when the method is not among `methods`, and a `Mount` matches
//! `path + "/{path:path}"` (FULL whatever the method), its routes seeing `"/" + path`.
//!
//! The route is what opentelemetry-instrumentation-fastapi's `_get_route_details`
//! (`opentelemetry/instrumentation/fastapi/__init__.py`) writes: it walks only the app's
//! top-level `routes`; the first FULL match gives that route's `path` (for a `Mount`, the
//! mount's own path, not the route inside it) and stops; a PARTIAL match gives its `path` but the
//! walk goes on, so a later FULL overrides it and a later PARTIAL replaces it. `http.route` is
//! then set only `if route:` (a mount at the root, path `""`, gives none). The view code is the
//! endpoint that really serves the request: mounts are descended with the router's own rule
//! (first FULL, else the first PARTIAL answers 405).
//!
//! A mount whose routes do not take the rest of the path (its router answers 404, or its app
//! could not be read) is still `Found` with the mount's path, which OpenTelemetry writes, and no
//! code. `Host` routes (the request's host is not seen) and `WebSocketRoute`s never match.
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::pyregex::{self, PyRegexError};
use super::table::{Outcome, Skipped, StarletteRoute, View};
use super::view::code_for;

/// Mounts nested deeper than this are skipped.
const MAX_DEPTH: usize = 64;

/// `starlette.routing.PARAM_REGEX`.
static PARAM_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?\}").expect("static regex"));

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("no convertor read for {{{0}}}")]
    MissingParam(String),
    #[error("{0}")]
    Regex(#[from] PyRegexError),
    #[error("mounts nested over {MAX_DEPTH} deep")]
    TooDeep,
}

#[derive(Debug)]
enum Node {
    Route { regex: Regex, path: String, methods: Option<Vec<String>>, view: View },
    Mount { regex: Regex, path: String, children: Vec<Node> },
}

#[derive(Debug)]
pub struct Starlette {
    nodes: Vec<Node>,
}

/// `starlette.routing.Match`, with what a match leads to.
enum Match<'n> {
    None,
    Partial,
    /// A route: its view. A mount: the rest of the path, for its routes.
    FullRoute(&'n View),
    FullMount(String, &'n [Node]),
}

impl Starlette {
    pub fn new(routes: &[StarletteRoute], max_rules: usize, skipped: &mut Vec<Skipped>) -> Starlette {
        let mut budget = max_rules;
        Starlette { nodes: compile_routes(routes, "", 0, &mut budget, skipped) }
    }

    /// `_get_route_details` for the route; the router's own dispatch for the code.
    pub fn resolve(&self, method: &str, path: &str) -> Outcome {
        let mut partial_route = None;
        for node in &self.nodes {
            match matches(node, method, path) {
                Match::None => {}
                Match::Partial => partial_route = Some(node_path(node).to_owned()),
                Match::FullRoute(view) => {
                    return Outcome::Found { route: node_path(node).to_owned(), code: code_for(view, method).cloned() }
                }
                Match::FullMount(rest, children) => {
                    let route = node_path(node).to_owned();
                    return match dispatch(children, method, &rest, 1) {
                        Dispatch::Found(view) => Outcome::Found { route, code: code_for(view, method).cloned() },
                        Dispatch::MethodNotAllowed => Outcome::MethodNotAllowed { route: Some(route) },
                        Dispatch::NotFound => Outcome::Found { route, code: None },
                    };
                }
            }
        }
        match partial_route {
            Some(route) => Outcome::MethodNotAllowed { route: Some(route) },
            // No match, or the router's redirect_slashes redirect: either way no route.
            None => Outcome::NotFound,
        }
    }
}

enum Dispatch<'n> {
    Found(&'n View),
    MethodNotAllowed,
    NotFound,
}

/// `Router.app` inside a mount: the first FULL match serves; else the first PARTIAL answers 405.
fn dispatch<'n>(nodes: &'n [Node], method: &str, path: &str, depth: usize) -> Dispatch<'n> {
    let mut partial = false;
    for node in nodes {
        match matches(node, method, path) {
            Match::None => {}
            Match::Partial => partial = true,
            Match::FullRoute(view) => return Dispatch::Found(view),
            Match::FullMount(rest, children) if depth < MAX_DEPTH => {
                return dispatch(children, method, &rest, depth + 1);
            }
            Match::FullMount(..) => return Dispatch::NotFound,
        }
    }
    if partial {
        Dispatch::MethodNotAllowed
    } else {
        Dispatch::NotFound
    }
}

fn node_path(node: &Node) -> &str {
    match node {
        Node::Route { path, .. } | Node::Mount { path, .. } => path,
    }
}

/// `Route.matches` / `Mount.matches` for an HTTP request.
fn matches<'n>(node: &'n Node, method: &str, path: &str) -> Match<'n> {
    match node {
        Node::Route { regex, methods, view, .. } => {
            if !regex.is_match(path) {
                Match::None
            } else if methods.as_ref().is_some_and(|ms| !ms.is_empty() && !ms.iter().any(|m| m == method)) {
                Match::Partial
            } else {
                Match::FullRoute(view)
            }
        }
        Node::Mount { regex, children, .. } => match regex.captures(path) {
            Some(caps) => Match::FullMount(format!("/{}", caps.name("path").map_or("", |m| m.as_str())), children),
            None => Match::None,
        },
    }
}

fn compile_routes(
    routes: &[StarletteRoute],
    prefix: &str,
    depth: usize,
    budget: &mut usize,
    skipped: &mut Vec<Skipped>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for route in routes {
        let (path, params) = match route {
            StarletteRoute::Route { path, params, .. } | StarletteRoute::Mount { path, params, .. } => (path, params),
            StarletteRoute::Other { .. } => continue,
        };
        let full = format!("{prefix}{path}");
        if *budget == 0 {
            skipped.push(Skipped { rule: full, reason: "over the rule cap".to_owned() });
            continue;
        }
        *budget -= 1;
        let compiled = match route {
            StarletteRoute::Route { methods, view, .. } => compile_path(path, params).map(|regex| Node::Route {
                regex,
                path: path.clone(),
                methods: methods.clone(),
                view: view.clone(),
            }),
            StarletteRoute::Mount { .. } if depth >= MAX_DEPTH => Err(PathError::TooDeep),
            StarletteRoute::Mount { routes, .. } => {
                compile_path(&format!("{path}/{{path:path}}"), params).map(|regex| {
                    let children = compile_routes(routes, &full, depth + 1, budget, skipped);
                    Node::Mount { regex, path: path.clone(), children }
                })
            }
            StarletteRoute::Other { .. } => continue,
        };
        match compiled {
            Ok(node) => nodes.push(node),
            Err(e) => skipped.push(Skipped { rule: full, reason: e.to_string() }),
        }
    }
    nodes
}

/// `compile_path` for an HTTP path: `^`, escaped text, `(?P<name>convertor.regex)`, `$`; applied
/// with `re.match`, so `$` also takes a final newline, spelt `\n?\z` here. A mount's `path`
/// parameter is the `path` convertor's `.*` unless the table gives it.
fn compile_path(path: &str, params: &[(String, String)]) -> Result<Regex, PathError> {
    let mut rx = String::from(r"\A");
    let mut idx = 0;
    for caps in PARAM_RE.captures_iter(path) {
        let whole = caps.get(0).expect("group 0");
        let name = &caps[1];
        let conv = match params.iter().find(|(n, _)| n == name) {
            Some((_, regex)) => pyregex::translate(regex)?,
            None if name == "path" => ".*".to_owned(),
            None => return Err(PathError::MissingParam(name.to_owned())),
        };
        rx.push_str(&regex::escape(&path[idx..whole.start()]));
        // Only the mount's `path` value is used; the other groups stay unnamed (a collision
        // with a convertor's own group names is then impossible).
        if name == "path" {
            let _ = write!(rx, "(?P<path>{conv})");
        } else {
            let _ = write!(rx, "(?:{conv})");
        }
        idx = whole.end();
    }
    rx.push_str(&regex::escape(&path[idx..]));
    rx.push_str(r"\n?\z");
    Ok(pyregex::compile(&rx)?)
}

#[cfg(test)]
mod tests {
    use super::super::table::{Framework, RouteTable, Rules};
    use super::super::view::tests::{class, func};
    use super::super::Matcher;
    use super::*;

    fn params(ps: &[(&str, &str)]) -> Vec<(String, String)> {
        ps.iter().map(|(n, r)| ((*n).to_owned(), (*r).to_owned())).collect()
    }

    fn route(path: &str, ps: &[(&str, &str)], methods: Option<&[&str]>, endpoint: &str) -> StarletteRoute {
        StarletteRoute::Route {
            path: path.to_owned(),
            params: params(ps),
            methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            view: func(endpoint),
        }
    }

    fn mount(path: &str, ps: &[(&str, &str)], routes: Vec<StarletteRoute>) -> StarletteRoute {
        StarletteRoute::Mount { path: path.to_owned(), params: params(ps), routes }
    }

    fn matcher(routes: Vec<StarletteRoute>) -> Matcher {
        Matcher::new(RouteTable {
            framework: Framework::Starlette,
            found_at: "app:app".to_owned(),
            rules: Rules::Starlette(routes),
            skipped: Vec::new(),
        })
    }

    /// The routes as Starlette 1.10 built them (paths, convertor regexes, methods with the
    /// automatic HEAD); `/static` mounts an app whose routes are not readable.
    fn routes() -> Vec<StarletteRoute> {
        vec![
            route("/", &[], Some(&["GET", "HEAD"]), "home"),
            route("/users/{uid:int}", &[("uid", "[0-9]+")], Some(&["GET", "HEAD"]), "user"),
            route("/users/{name}", &[("name", "[^/]+")], Some(&["POST"]), "user_name"),
            route("/users/me", &[], Some(&["GET", "HEAD"]), "me"),
            route("/f/{x:float}", &[("x", "[0-9]+(\\.[0-9]+)?")], Some(&["GET", "HEAD"]), "float"),
            route("/files/{p:path}", &[("p", ".*")], Some(&["GET", "HEAD"]), "files"),
            route(
                "/u/{id:uuid}",
                &[("id", "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")],
                Some(&["GET", "HEAD"]),
                "uuid",
            ),
            route("/only-put", &[], Some(&["PUT"]), "put"),
            route("/only-put", &[], Some(&["DELETE"]), "put2"),
            StarletteRoute::Other { kind: "WebSocketRoute".to_owned() },
            mount(
                "/sub",
                &[("path", ".*")],
                vec![
                    route("/", &[], Some(&["GET", "HEAD"]), "sub_root"),
                    route("/items/{id:int}", &[("id", "[0-9]+")], Some(&["POST"]), "sub_item"),
                    mount("/deep", &[("path", ".*")], vec![route("/x", &[], Some(&["GET", "HEAD"]), "deep_x")]),
                ],
            ),
            mount("/static", &[("path", ".*")], vec![]),
        ]
    }

    type Case = (&'static str, &'static str, Option<&'static str>, &'static str, Option<&'static str>);

    #[test]
    fn matches_as_starlette_and_opentelemetry_do() {
        // Expectations from Starlette 1.10 itself (installed aside, not a dependency): the route
        // from a copy of opentelemetry-instrumentation-fastapi's `_get_route_details` over the
        // top-level routes, the serving endpoint from `Router.app`'s choice (first FULL, mounts
        // descended, else the first PARTIAL → 405), with `scope["path"] = unquote(raw)`.
        let m = matcher(routes());
        assert!(m.table().skipped.is_empty(), "{:?}", m.table().skipped);
        // (method, path, http.route, what the router did, the serving endpoint)
        let cases: &[Case] = &[
            ("GET", "/", Some("/"), "full", Some("home")),
            ("GET", "/users/3", Some("/users/{uid:int}"), "full", Some("user")),
            ("POST", "/users/3", Some("/users/{name}"), "full", Some("user_name")),
            ("HEAD", "/users/3", Some("/users/{uid:int}"), "full", Some("user")),
            ("DELETE", "/users/3", Some("/users/{name}"), "405", None),
            ("GET", "/users/me", Some("/users/me"), "full", Some("me")),
            ("POST", "/users/bob", Some("/users/{name}"), "full", Some("user_name")),
            ("GET", "/users/bob", Some("/users/{name}"), "405", None),
            ("GET", "/users/3/", None, "404", None),
            ("GET", "/f/1.5", Some("/f/{x:float}"), "full", Some("float")),
            ("GET", "/f/2", Some("/f/{x:float}"), "full", Some("float")),
            ("GET", "/files/a/b", Some("/files/{p:path}"), "full", Some("files")),
            ("GET", "/files/", Some("/files/{p:path}"), "full", Some("files")),
            ("GET", "/u/12345678-1234-1234-1234-123456789abc", Some("/u/{id:uuid}"), "full", Some("uuid")),
            ("GET", "/only-put", Some("/only-put"), "405", None),
            ("GET", "/ws", None, "404", None),
            ("GET", "/sub/", Some("/sub"), "full", Some("sub_root")),
            ("GET", "/sub", None, "404", None),
            ("POST", "/sub/items/4", Some("/sub"), "full", Some("sub_item")),
            ("GET", "/sub/items/4", Some("/sub"), "405", None),
            ("GET", "/sub/deep/x", Some("/sub"), "full", Some("deep_x")),
            ("GET", "/sub/nope", Some("/sub"), "404", None),
            ("GET", "/static/css/a.css", Some("/static"), "full", None),
            ("GET", "/nope", None, "404", None),
            ("GET", "/users/b%C3%B6b", Some("/users/{name}"), "405", None),
            ("POST", "/users/a%2Fb", None, "404", None),
        ];
        for (method, path, route, served, code) in cases {
            let got = m.resolve(method, path);
            let got_code = match &got {
                Outcome::Found { code, .. } => code.as_ref().map(|c| c.qualname.as_str()),
                _ => None,
            };
            let ok = match (*served, &got) {
                ("full", Outcome::Found { route: r, .. }) => Some(r.as_str()) == *route && got_code == *code,
                ("405", Outcome::MethodNotAllowed { route: r }) => r.as_deref() == *route,
                // A mount's router answered 404: OpenTelemetry still writes the mount's path.
                ("404", Outcome::Found { route: r, code: None }) => Some(r.as_str()) == *route,
                ("404", Outcome::NotFound) => route.is_none(),
                _ => false,
            };
            assert!(ok, "{method} {path:?}: want {route:?} {served} {code:?}, got {got:?}");
        }
    }

    #[test]
    fn mount_at_root_gives_an_empty_route_and_class_views_by_method() {
        let mut r = route("/items", &[], None, "items");
        if let StarletteRoute::Route { view, .. } = &mut r {
            *view = class("Items", &["get", "post"]);
        }
        let m = matcher(vec![mount("", &[("path", ".*")], vec![r])]);
        match m.resolve("POST", "/items") {
            Outcome::Found { route, code } => {
                assert_eq!(route, "");
                assert_eq!(code.as_ref().map(|c| c.qualname.as_str()), Some("Items.post"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unrunnable_routes_are_skipped() {
        let m = matcher(vec![
            route("/a/{x}", &[("x", "(?<=a)b")], None, "look"),
            route("/b/{y}", &[], None, "missing"),
            route("/ok", &[], None, "ok"),
        ]);
        let reasons: Vec<(&str, &str)> =
            m.table().skipped.iter().map(|s| (s.rule.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("/a/{x}", "Python regex feature not supported by the regex crate: lookbehind"),
                ("/b/{y}", "no convertor read for {y}"),
            ]
        );
        assert!(matches!(m.resolve("GET", "/ok"), Outcome::Found { .. }));
    }
}
