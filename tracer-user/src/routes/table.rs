//! A web application's routes as read from its memory: the framework's own rules, in the
//! framework's own order, with the view each one dispatches to. The readers (`read/`) fill these
//! from a live process; the matchers (`werkzeug.rs`, `django.rs`, `starlette.rs`) answer, for a
//! request's method and path, which rule the framework would pick. Nothing here reads memory.
use std::sync::Arc;

use crate::cpython::code::CodeInfo;

/// Which framework's semantics a table is matched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Flask,
    Django,
    /// Starlette itself, or FastAPI (a Starlette router underneath): the same matching.
    Starlette,
    FastApi,
}

impl Framework {
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Flask => "flask",
            Framework::Django => "django",
            Framework::Starlette => "starlette",
            Framework::FastApi => "fastapi",
        }
    }
}

/// The code that serves a route: a function, or for a class-based view the class's method for
/// each HTTP method it implements (lower-case names as the class defines them: `get`, `post`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The function the framework calls (for a class-based view, the `as_view()` wrapper).
    pub function: Option<Arc<CodeInfo>>,
    /// Class-based views: (lower-case method name, its code), from the class and its bases.
    pub methods: Vec<(String, Arc<CodeInfo>)>,
}

/// One application's routes.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTable {
    pub framework: Framework,
    /// Where the app was found, for `discover` and logs: `gapp:app`, `ROOT_URLCONF djproj.urls`.
    pub found_at: String,
    pub rules: Rules,
    /// Rules read but left out of matching, each with why (a host rule, a regex we cannot run).
    pub skipped: Vec<Skipped>,
}

impl RouteTable {
    /// Rules that can serve a request: Werkzeug rules, Django patterns (under every include),
    /// Starlette routes (under every mount).
    pub fn len(&self) -> usize {
        fn django(e: &[DjangoEntry]) -> usize {
            e.iter()
                .map(|e| match e {
                    DjangoEntry::Pattern { .. } => 1,
                    DjangoEntry::Resolver { children, .. } => django(children),
                })
                .sum()
        }
        fn starlette(r: &[StarletteRoute]) -> usize {
            r.iter()
                .map(|r| match r {
                    StarletteRoute::Route { .. } => 1,
                    StarletteRoute::Mount { routes, .. } => starlette(routes),
                    StarletteRoute::Other { .. } => 0,
                })
                .sum()
        }
        match &self.rules {
            Rules::Werkzeug(m) => m.rules.len(),
            Rules::Django(e) => django(e),
            Rules::Starlette(r) => starlette(r),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rules {
    Werkzeug(WerkzeugMap),
    Django(Vec<DjangoEntry>),
    Starlette(Vec<StarletteRoute>),
}

// ---- Flask / Werkzeug ----

#[derive(Debug, Clone, PartialEq)]
pub struct WerkzeugMap {
    /// `Map.strict_slashes`, `Map.merge_slashes`: the defaults each rule may override.
    pub rules: Vec<WerkzeugRule>,
    /// `Map.merge_slashes`: when no rule matches, the matcher retries with `//` merged (and
    /// redirects if that matches), whatever the rules' own setting.
    pub merge_slashes: bool,
}

#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::struct_excessive_bools, reason = "Werkzeug's own per-rule flags, one field each")]
pub struct WerkzeugRule {
    /// `Rule.rule`, exactly: `/users/<int:uid>`, the `http.route` OpenTelemetry's Flask
    /// instrumentation writes.
    pub rule: String,
    pub endpoint: String,
    /// `Rule.methods` (upper case, with the automatic HEAD and OPTIONS); `None`: every method.
    pub methods: Option<Vec<String>>,
    /// `Rule._converters`: argument name → converter, for every `<...>` in `rule`.
    pub converters: Vec<(String, WerkzeugConverter)>,
    pub strict_slashes: bool,
    pub merge_slashes: bool,
    /// `Rule.websocket`: such a rule does not match plain HTTP requests.
    pub websocket: bool,
    /// `Rule.build_only`: never matched.
    pub build_only: bool,
    /// `Rule.subdomain`, or `Rule.host` when the map uses host matching; empty for the usual
    /// rule. A rule with one depends on the request's host, which the matcher does not see.
    pub domain: String,
    /// `Rule.redirect_to` is set: a match is a redirect the router answers itself.
    pub redirect_to: bool,
    /// `Flask.view_functions[endpoint]`.
    pub view: View,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WerkzeugConverter {
    /// The converter's class name (`UnicodeConverter`, `IntegerConverter`, a custom one).
    pub class: String,
    /// Its `regex` (instance attribute, else class attribute).
    pub regex: String,
    /// Its `weight` (class attribute; Werkzeug's default is 100).
    pub weight: i64,
    /// Its `part_isolating` (false for `path`: it may span slashes).
    pub part_isolating: bool,
    /// Number converters (`int`, `float`) check these in `to_python`: a mismatch is no match.
    pub number: Option<NumberBounds>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumberBounds {
    pub fixed_digits: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub signed: bool,
}

// ---- Django ----

#[derive(Debug, Clone, PartialEq)]
pub enum DjangoPattern {
    /// `path()`: `RoutePattern._route` and its converters (name → converter).
    Route { route: String, converters: Vec<(String, DjangoConverter)>, is_endpoint: bool },
    /// `re_path()`: `RegexPattern._regex`, a Python regular expression.
    Regex { regex: String, is_endpoint: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DjangoConverter {
    pub class: String,
    /// The converter's `regex` (a class attribute for Django's own and most custom ones).
    pub regex: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DjangoEntry {
    /// `URLPattern`: a pattern and its `callback`.
    Pattern { pattern: DjangoPattern, name: Option<String>, view: View },
    /// `URLResolver` (`include()`): a prefix and the patterns under it, in order.
    Resolver { pattern: DjangoPattern, namespace: Option<String>, children: Vec<DjangoEntry> },
}

// ---- Starlette / FastAPI ----

#[derive(Debug, Clone, PartialEq)]
pub enum StarletteRoute {
    /// `Route`/`APIRoute`: `path` (`/users/{uid:int}`), its param convertors' regexes,
    /// `methods` (`None`: every method), the endpoint.
    Route { path: String, params: Vec<(String, String)>, methods: Option<Vec<String>>, view: View },
    /// `Mount`: a prefix (trailing `/` stripped, as Starlette stores it) and the routes of the
    /// mounted app or router, when they could be read.
    Mount { path: String, params: Vec<(String, String)>, routes: Vec<StarletteRoute> },
    /// Anything else in the list (`WebSocketRoute`, `Host`): never a full match for HTTP.
    Other { kind: String },
}

/// The framework's answer for one request. It owns what it says (the view's code is shared, not
/// copied), so a table's cache can keep it and hand it out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rule that serves it: `route` is the `http.route` OpenTelemetry's instrumentation for
    /// that framework writes; `code` the view's code for this method, when known. An empty
    /// `route` is one the instrumentation does not write (Django's `''`, a Starlette mount at
    /// the root: both guard with `if route:`).
    Found { route: String, code: Option<Arc<CodeInfo>> },
    /// A path rule matched but not for this method (405). `route` is what OpenTelemetry
    /// still writes for it (Starlette's partial match), `None` where it writes none.
    MethodNotAllowed { route: Option<String> },
    /// No rule (404, or a redirect the router itself answers, such as a strict-slash one).
    NotFound,
}
