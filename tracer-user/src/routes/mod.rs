//! Routes read from the running application: which rule the framework picks for a request, and
//! the view that serves it, so every server span carries `http.route` and the view's code.
pub mod cache;
pub mod decode;
pub mod django;
pub mod listing;
pub mod pyregex;
pub mod read;
pub mod starlette;
pub mod table;
pub mod view;
pub mod werkzeug;

use cache::Cache;
use decode::{percent_decode, Invalid};
use table::{Outcome, RouteTable, Rules};

/// Requests with a longer path are not matched (NotFound): no real route is that long, and the
/// matchers' work grows with the path.
pub const MAX_PATH: usize = 8 * 1024;
/// Rules compiled per table (counting those inside includes and mounts); the rest are skipped
/// with a reason, so a huge or hostile table cannot take the agent's memory.
pub const MAX_RULES: usize = 10_000;

/// One application's route table, compiled for matching.
#[derive(Debug)]
pub struct Matcher {
    table: RouteTable,
    compiled: Compiled,
    /// This table's answers so far: dropped with it when the table is read again.
    cache: Cache,
}

#[derive(Debug)]
enum Compiled {
    Werkzeug(werkzeug::Werkzeug),
    Django(django::Django),
    Starlette(starlette::Starlette),
}

impl Matcher {
    /// Compiles every rule; a rule that cannot be compiled (e.g. a Python regex feature the
    /// `regex` crate lacks, or a Werkzeug host/subdomain rule) goes to `table.skipped` with a
    /// reason and is left out of matching (it stays in `table.rules`, as read).
    pub fn new(mut table: RouteTable) -> Matcher {
        let mut skipped = Vec::new();
        let compiled = match &table.rules {
            Rules::Werkzeug(map) => Compiled::Werkzeug(werkzeug::Werkzeug::new(map, MAX_RULES, &mut skipped)),
            Rules::Django(entries) => Compiled::Django(django::Django::new(entries, MAX_RULES, &mut skipped)),
            Rules::Starlette(routes) => Compiled::Starlette(starlette::Starlette::new(routes, MAX_RULES, &mut skipped)),
        };
        for s in &skipped {
            log::debug!("{}: route {:?} left out: {}", table.found_at, s.rule, s.reason);
        }
        table.skipped.extend(skipped);
        Matcher { table, compiled, cache: Cache::default() }
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// `path` is the raw path from the request line (percent-encoded, no query); it is decoded
    /// as the framework's server hands it over before matching. A pair seen twice is answered
    /// from the cache from then on.
    pub fn resolve(&self, method: &str, path: &str) -> Outcome {
        if path.len() > MAX_PATH {
            log::debug!("{}: request path of {} bytes not matched (cap {MAX_PATH})", self.table.found_at, path.len());
            return Outcome::NotFound;
        }
        self.cache.get_or_resolve(method, path, || self.matched(method, path))
    }

    /// Answers kept in the cache.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.cache.kept()
    }

    fn matched(&self, method: &str, path: &str) -> Outcome {
        match (&self.compiled, &self.table.rules) {
            (Compiled::Werkzeug(m), Rules::Werkzeug(map)) => {
                m.resolve(map, method, &percent_decode(path, Invalid::Replace))
            }
            (Compiled::Django(m), _) => m.resolve(method, &percent_decode(path, Invalid::Repercent)),
            (Compiled::Starlette(m), _) => m.resolve(method, &percent_decode(path, Invalid::Replace)),
            (Compiled::Werkzeug(_), _) => Outcome::NotFound,
        }
    }
}
