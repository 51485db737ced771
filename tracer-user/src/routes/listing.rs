//! `pytracer routes`: a process's routes as a list, one entry per route and view (a class-based
//! view gives one per HTTP method it implements), for people and for scripts.
use std::io::Write;

use serde::Serialize;

use super::table::{DjangoEntry, DjangoPattern, RouteTable, Rules, StarletteRoute, View};

#[derive(Debug, Serialize)]
pub struct Listing<'t> {
    pub pid: u32,
    pub framework: &'static str,
    pub found_at: &'t str,
    pub routes: Vec<Entry>,
    pub skipped: &'t [super::table::Skipped],
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub route: String,
    /// `None`: every method (Django routes by path only).
    pub methods: Option<Vec<String>>,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

pub fn listing(pid: u32, table: &RouteTable) -> Listing<'_> {
    let mut routes = Vec::new();
    match &table.rules {
        Rules::Werkzeug(m) => {
            for r in &m.rules {
                push(&mut routes, &r.rule, r.methods.as_deref(), &r.view);
            }
        }
        Rules::Django(entries) => django(&mut routes, "", entries),
        Rules::Starlette(list) => starlette(&mut routes, "", list),
    }
    Listing { pid, framework: table.framework.as_str(), found_at: &table.found_at, routes, skipped: &table.skipped }
}

/// One entry for a function view; one per implemented method (within `methods`, when the rule
/// restricts them) for a class-based view.
fn push(out: &mut Vec<Entry>, route: &str, methods: Option<&[String]>, view: &View) {
    if view.methods.is_empty() {
        let code = view.function.as_deref();
        out.push(Entry {
            route: route.to_string(),
            methods: methods.map(<[String]>::to_vec),
            function: code.map(|c| c.qualname.clone()),
            file: code.map(|c| c.file.clone()),
            line: code.map(|c| c.first_line),
        });
        return;
    }
    for (m, code) in &view.methods {
        let upper = m.to_uppercase();
        if methods.is_some_and(|allowed| !allowed.contains(&upper)) {
            continue;
        }
        out.push(Entry {
            route: route.to_string(),
            methods: Some(vec![upper]),
            function: Some(code.qualname.clone()),
            file: Some(code.file.clone()),
            line: Some(code.first_line),
        });
    }
}

/// Django's `ResolverMatch.route`: each level's pattern text joined, the `^` of a nested regex
/// dropped (`URLResolver._join_route`).
fn django(out: &mut Vec<Entry>, prefix: &str, entries: &[DjangoEntry]) {
    let join = |text: &str| {
        if prefix.is_empty() {
            text.to_string()
        } else {
            format!("{prefix}{}", text.strip_prefix('^').unwrap_or(text))
        }
    };
    for e in entries {
        match e {
            DjangoEntry::Pattern { pattern, view, .. } => push(out, &join(text(pattern)), None, view),
            DjangoEntry::Resolver { pattern, children, .. } => django(out, &join(text(pattern)), children),
        }
    }
}

fn text(p: &DjangoPattern) -> &str {
    match p {
        DjangoPattern::Route { route, .. } => route,
        DjangoPattern::Regex { regex, .. } => regex,
    }
}

fn starlette(out: &mut Vec<Entry>, prefix: &str, list: &[StarletteRoute]) {
    for r in list {
        match r {
            StarletteRoute::Route { path, methods, view, .. } => {
                push(out, &format!("{prefix}{path}"), methods.as_deref(), view);
            }
            StarletteRoute::Mount { path, routes, .. } => starlette(out, &format!("{prefix}{path}"), routes),
            StarletteRoute::Other { .. } => {}
        }
    }
}

/// A table for a terminal: METHODS, ROUTE, VIEW, FILE:LINE.
pub fn write_text(out: &mut impl Write, l: &Listing) -> std::io::Result<()> {
    writeln!(out, "pid {}: {} app ({}), {} routes", l.pid, l.framework, l.found_at, l.routes.len())?;
    writeln!(out, "{:<24} {:<40} {:<32} FILE:LINE", "METHODS", "ROUTE", "VIEW")?;
    for e in &l.routes {
        let methods = e.methods.as_ref().map_or_else(|| "*".to_string(), |m| m.join(","));
        let at = match (&e.file, e.line) {
            (Some(f), Some(n)) => format!("{f}:{n}"),
            _ => "-".into(),
        };
        writeln!(out, "{methods:<24} {:<40} {:<32} {at}", e.route, e.function.as_deref().unwrap_or("-"))?;
    }
    for s in l.skipped {
        writeln!(out, "not matched: {} ({})", s.rule, s.reason)?;
    }
    Ok(())
}
