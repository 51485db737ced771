//! The code behind a route: a function (through decorators, bound methods and partials), or a
//! class-based view's method per HTTP method.
use std::sync::Arc;

use crate::cpython::objects::{Objects, Result};
use crate::routes::table::View;

/// The HTTP method handlers a class-based view may define (Django's `http_method_names`; Flask's
/// `MethodView` and Starlette's `HTTPEndpoint` look up the same lower-case names).
const METHODS: [&str; 8] = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];

/// The view of a callable the framework dispatches to. A function carrying `view_class` (Django's
/// and Flask's `as_view()`) or a class (a Starlette endpoint) gets one entry per method it has.
pub fn of_callable(o: &Objects, callable: u64) -> Result<View> {
    let mut view = View::default();
    if o.is_instance_of(callable, "type")? {
        view.methods = methods_of(o, callable)?;
        return Ok(view);
    }
    let Some(f) = o.unwrap_function(callable)? else { return Ok(view) };
    if let Some(class) = o.function_attr(&f, "view_class")? {
        if o.is_instance_of(class, "type")? {
            view.methods = methods_of(o, class)?;
        }
    }
    view.function = Some(Arc::new(f.code));
    Ok(view)
}

fn methods_of(o: &Objects, class: u64) -> Result<Vec<(String, Arc<crate::cpython::code::CodeInfo>)>> {
    let mut out = Vec::new();
    for m in METHODS {
        let Some(attr) = o.class_attr(class, m)? else { continue };
        if let Some(f) = o.unwrap_function(attr)? {
            out.push((m.to_string(), Arc::new(f.code)));
        }
    }
    Ok(out)
}

/// A rule's `methods`: a set of upper-case strs, sorted; `None` (every method) when the rule has
/// none or it is `None`.
pub fn methods(o: &Objects, set: Option<u64>) -> Result<Option<Vec<String>>> {
    let Some(set) = set else { return Ok(None) };
    if o.is_none(set)? {
        return Ok(None);
    }
    let mut v = Vec::new();
    for s in o.set_items(set)? {
        v.push(o.str(s)?.to_string());
    }
    v.sort();
    Ok(Some(v))
}
