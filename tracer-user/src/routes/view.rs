//! The code that serves a request once its route is known.
use std::sync::Arc;

use super::table::View;
use crate::cpython::code::CodeInfo;

/// For a class-based view, its method named after the HTTP method (lower case), HEAD falling
/// back to `get` as Django's `View.setup` and Flask's `MethodView.dispatch_request` both do; a
/// class without that method (the framework answers 405 itself) gives the view function.
pub fn code_for<'v>(view: &'v View, method: &str) -> Option<&'v Arc<CodeInfo>> {
    if !view.methods.is_empty() {
        // `name == method.lower()`, without making the lower-case copy.
        let is_lower_of = |name: &str, method: &str| {
            name.len() == method.len() && name.bytes().zip(method.bytes()).all(|(n, m)| n == m.to_ascii_lowercase())
        };
        let find = |wanted: &str| view.methods.iter().find(|(m, _)| is_lower_of(m, wanted)).map(|(_, code)| code);
        let found = find(method).or_else(|| if is_lower_of("head", method) { find("get") } else { None });
        if found.is_some() {
            return found;
        }
    }
    view.function.as_ref()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn code(name: &str) -> Arc<CodeInfo> {
        Arc::new(CodeInfo { qualname: name.to_owned(), file: "app.py".to_owned(), first_line: 1 })
    }

    pub fn func(name: &str) -> View {
        View { function: Some(code(name)), methods: Vec::new() }
    }

    pub fn class(name: &str, methods: &[&str]) -> View {
        View {
            function: Some(code(&format!("{name}.as_view"))),
            methods: methods.iter().map(|m| ((*m).to_owned(), code(&format!("{name}.{m}")))).collect(),
        }
    }

    fn name(code: Option<&Arc<CodeInfo>>) -> Option<&str> {
        code.map(|c| c.qualname.as_str())
    }

    #[test]
    fn function_view() {
        assert_eq!(name(code_for(&func("home"), "POST")), Some("home"));
        assert_eq!(name(code_for(&View::default(), "GET")), None);
    }

    #[test]
    fn class_view_by_method_head_falls_back_to_get() {
        let v = class("Item", &["get", "post"]);
        assert_eq!(name(code_for(&v, "GET")), Some("Item.get"));
        assert_eq!(name(code_for(&v, "post")), Some("Item.post"));
        assert_eq!(name(code_for(&v, "HEAD")), Some("Item.get"));
        assert_eq!(name(code_for(&v, "DELETE")), Some("Item.as_view"));
        let with_head = class("Both", &["get", "head"]);
        assert_eq!(name(code_for(&with_head, "HEAD")), Some("Both.head"));
    }
}
