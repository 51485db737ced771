//! Folded stacks (Brendan Gregg's format, which inferno and most flame-graph tools read): one
//! line per distinct stack, its frames outermost first separated by `;`, then its sample count.
//! The root frame is the request's route, so each route is one tower of the graph.
use std::collections::BTreeMap;

use super::Profile;

/// Distinct stacks in order, each with its count.
pub fn lines(profile: &Profile) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in &profile.samples {
        let mut stack = clean(s.root());
        for f in &s.frames {
            stack.push(';');
            stack.push_str(&clean(&f.label()));
        }
        *counts.entry(stack).or_default() += 1;
    }
    counts.into_iter().map(|(stack, n)| format!("{stack} {n}")).collect()
}

/// `;` separates frames and the last space the count: neither may appear inside a frame. Control
/// characters (a name read while it was being written) would make the SVG ill-formed XML.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::profile::{Frame, Request, Sample};

    #[test]
    fn stacks_are_rooted_at_their_route_and_counted() {
        let f = |function: &str, line| {
            Arc::new(Frame { function: function.into(), file: "/srv/app/cart.py".into(), line: Some(line) })
        };
        let req = Arc::new(Request {
            span_id: "s".into(),
            trace_id: "t".into(),
            root: "GET /checkout".into(),
            route: Some("/checkout".into()),
        });
        let hot = Sample { pid: 1, request: Some(req), frames: vec![f("view", 3), f("price_cart", 88)] };
        let idle = Sample { pid: 1, request: None, frames: vec![f("serve;x\u{2}", 9)] };
        let p = Profile { samples: vec![hot.clone(), idle, hot], rate_hz: 19, duration_ns: 1 };
        assert_eq!(lines(&p), vec!["GET /checkout;cart:view:3;cart:price_cart:88 2", "unattributed;cart:serve:x?:9 1"]);
    }
}
