//! A Starlette or FastAPI app's routes: `app.router.routes`, each `Route`/`APIRoute` with its
//! path, methods, param convertors and endpoint, each `Mount` with the routes of what it mounts.
use crate::cpython::objects::{ObjectError, Objects, Result};
use crate::routes::table::{Framework, RouteTable, Rules, StarletteRoute};

/// Nesting of mounts followed at most.
const MAX_DEPTH: u32 = 8;

pub fn read(o: &Objects, app: u64, framework: Framework, found_at: String) -> Result<RouteTable> {
    let routes = routes_of_app(o, app)?.ok_or(ObjectError::Torn {
        what: "starlette app",
        addr: app,
        why: "no router.routes".into(),
    })?;
    let rules = routes_list(o, routes, 0)?;
    Ok(RouteTable { framework, found_at, rules: Rules::Starlette(rules), skipped: Vec::new() })
}

/// `app.router.routes` of a Starlette app, or `routes` of a `Router`.
fn routes_of_app(o: &Objects, app: u64) -> Result<Option<u64>> {
    if let Some(router) = o.own_attr(app, "router")? {
        return o.own_attr(router, "routes");
    }
    o.own_attr(app, "routes")
}

fn routes_list(o: &Objects, list: u64, depth: u32) -> Result<Vec<StarletteRoute>> {
    if depth > MAX_DEPTH {
        return Err(ObjectError::TooLarge {
            what: "Mount nesting",
            addr: list,
            n: u64::from(depth),
            max: u64::from(MAX_DEPTH),
        });
    }
    let mut out = Vec::new();
    for r in o.sequence(list)? {
        if &*o.type_name_of(r)? == "_IncludedRouter" {
            included(o, r, "", depth, &mut out)?;
        } else {
            out.push(route(o, r, depth)?);
        }
    }
    Ok(out)
}

/// FastAPI 0.137+ keeps an `include_router()` as an `_IncludedRouter` node: the included
/// router's own routes and the include's `prefix` (`include_context.prefix`, prefixes of nested
/// includes joined). Both FastAPI's dispatch and OpenTelemetry's instrumentation see each route
/// at `prefix + path` (its "effective route context"), so that is the route listed here.
fn included(o: &Objects, node: u64, outer: &str, depth: u32, out: &mut Vec<StarletteRoute>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ObjectError::TooLarge {
            what: "include_router nesting",
            addr: node,
            n: u64::from(depth),
            max: u64::from(MAX_DEPTH),
        });
    }
    let prefix = match o.own_attr(node, "include_context")? {
        Some(ctx) => o.attr_str(ctx, "prefix")?.map(|p| p.to_string()).unwrap_or_default(),
        None => String::new(),
    };
    let prefix = format!("{outer}{prefix}");
    let Some(router) = o.own_attr(node, "original_router")? else { return Ok(()) };
    let Some(routes) = o.own_attr(router, "routes")? else { return Ok(()) };
    for r in o.sequence(routes)? {
        if &*o.type_name_of(r)? == "_IncludedRouter" {
            included(o, r, &prefix, depth + 1, out)?;
            continue;
        }
        out.push(match route(o, r, depth + 1)? {
            StarletteRoute::Route { path, mut params, methods, view } => {
                params.extend(prefix_params(&prefix));
                StarletteRoute::Route { path: format!("{prefix}{path}"), params, methods, view }
            }
            StarletteRoute::Mount { path, mut params, routes } => {
                params.extend(prefix_params(&prefix));
                StarletteRoute::Mount { path: format!("{prefix}{path}"), params, routes }
            }
            other @ StarletteRoute::Other { .. } => other,
        });
    }
    Ok(())
}

/// The parameters of an include prefix (`/v1/{tenant}`), with the regexes of Starlette's own
/// convertors: the prefix is a string, its convertors never became objects.
fn prefix_params(prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = prefix;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        let inner = &rest[start + 1..start + len];
        let (name, kind) = inner.split_once(':').unwrap_or((inner, "str"));
        let regex = match kind {
            "path" => ".*",
            "int" => "[0-9]+",
            "float" => r"[0-9]+(\.[0-9]+)?",
            "uuid" => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            _ => "[^/]+",
        };
        out.push((name.to_string(), regex.to_string()));
        rest = &rest[start + len + 1..];
    }
    out
}

fn route(o: &Objects, r: u64, depth: u32) -> Result<StarletteRoute> {
    let kind = o.type_name_of(r)?.to_string();
    let is_route = o.is_instance_of(r, "Route")?;
    let is_mount = !is_route && o.is_instance_of(r, "Mount")?;
    if !is_route && !is_mount {
        return Ok(StarletteRoute::Other { kind });
    }
    let Some(path) = o.attr_str(r, "path")? else { return Ok(StarletteRoute::Other { kind }) };
    let mut params = Vec::new();
    if let Some(d) = o.own_attr(r, "param_convertors")? {
        for (name, conv) in o.str_items(d)?.iter().cloned() {
            let regex = o.attr_str(conv, "regex")?.map_or_else(|| "[^/]+".to_string(), |s| s.to_string());
            params.push((name.to_string(), regex));
        }
    }
    if is_mount {
        // `_base_app` is the mounted app or Router before any middleware wraps it.
        let base = match o.own_attr(r, "_base_app")? {
            Some(b) => Some(b),
            None => o.own_attr(r, "app")?,
        };
        let routes = match base {
            Some(b) => match routes_of_app(o, b)? {
                Some(l) => routes_list(o, l, depth + 1)?,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        return Ok(StarletteRoute::Mount { path: path.to_string(), params, routes });
    }
    let methods = super::view::methods(o, o.own_attr(r, "methods")?)?;
    let view = match o.own_attr(r, "endpoint")? {
        Some(e) => super::view::of_callable(o, e)?,
        None => crate::routes::table::View::default(),
    };
    Ok(StarletteRoute::Route { path: path.to_string(), params, methods, view })
}

#[cfg(test)]
mod tests {
    #[test]
    fn include_prefix_parameters_get_starlettes_regexes() {
        assert!(super::prefix_params("/v1").is_empty());
        assert_eq!(
            super::prefix_params("/t/{tenant}/n/{n:int}"),
            [("tenant".to_string(), "[^/]+".to_string()), ("n".to_string(), "[0-9]+".to_string())]
        );
    }
}
