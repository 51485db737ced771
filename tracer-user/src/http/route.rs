//! A bounded `http_route` label for requests whose framework route is not known: ids in the path
//! become `{id}`, and each service gets at most MAX_ROUTES distinct values before `_OTHER`. The
//! same template is every server span's `url.template` (the wire's guess, never `http.route`).
use std::collections::{HashMap, HashSet};

pub const MAX_ROUTES: usize = 200;
const MAX_SEGMENTS: usize = 8;

/// `/users/42/orders/9f1c...` → `/users/{id}/orders/{id}`.
pub fn template(path: &str) -> String {
    // Room for the path and a placeholder or two: built once per request, it should not grow.
    let mut out = String::with_capacity(path.len() + 8);
    for (i, seg) in path.split('/').skip(1).enumerate() {
        if i == MAX_SEGMENTS {
            out.push_str("/…");
            break;
        }
        out.push('/');
        out.push_str(if looks_like_id(seg) { "{id}" } else { seg });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn looks_like_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.chars().filter(char::is_ascii_digit).count();
    let hex = seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    digits == seg.len() || (hex && seg.len() >= 16) || (digits >= 4 && digits * 2 >= seg.len())
}

#[derive(Debug, Default)]
pub struct Routes {
    seen: HashMap<String, HashSet<String>>,
}

impl Routes {
    pub fn label(&mut self, service: &str, path: &str) -> String {
        let t = template(path);
        // A seen service costs no allocation: this runs for every request without a route.
        if !self.seen.contains_key(service) {
            self.seen.insert(service.to_string(), HashSet::new());
        }
        let seen = self.seen.get_mut(service).expect("inserted above");
        if seen.contains(&t) {
            t
        } else if seen.len() < MAX_ROUTES {
            seen.insert(t.clone());
            t
        } else {
            "_OTHER".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_placeholders() {
        assert_eq!(template("/users/42"), "/users/{id}");
        assert_eq!(template("/orders/9f1c2b3a4d5e6f708192a3b4/items"), "/orders/{id}/items");
        assert_eq!(template("/a/550e8400-e29b-41d4-a716-446655440000"), "/a/{id}");
        assert_eq!(template("/v2/health"), "/v2/health");
        assert_eq!(template("/"), "/");
        assert_eq!(template("/static/app.js"), "/static/app.js");
        assert_eq!(template("/1/2/3/4/5/6/7/8/9/10"), "/{id}/{id}/{id}/{id}/{id}/{id}/{id}/{id}/…");
    }

    #[test]
    fn cardinality_is_bounded_per_service() {
        let mut r = Routes::default();
        for i in 0..MAX_ROUTES {
            assert_eq!(r.label("s", &format!("/p{i}x")), format!("/p{i}x"));
        }
        assert_eq!(r.label("s", "/one-more"), "_OTHER");
        assert_eq!(r.label("s", "/p3x"), "/p3x");
        assert_eq!(r.label("other", "/one-more"), "/one-more");
    }
}
