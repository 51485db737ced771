//! The answers one route table already gave: a server sees the same few (method, path) pairs
//! again and again, and matching costs far more than looking the pair up. The cache belongs to
//! its [`super::Matcher`], so a table read again (an exec, a reload, a route added at run time)
//! starts with an empty one.
//!
//! Bounded, simply: at [`MAX_ENTRIES`] answers it is emptied and fills again, and paths longer
//! than [`MAX_CACHED_KEY`] with the method (rarely seen twice) are matched every time without being kept, so a
//! table's cache holds at most about 4,096 × (128 + its longest route + ~100) bytes. Paths with
//! ids (`/users/42`, `/users/43`) mostly miss; the matchers are cheap on their own for them.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::table::Outcome;

/// Answers kept per table before the cache is emptied.
pub const MAX_ENTRIES: usize = 4096;
/// Longest method and raw path (in bytes, together) whose answer is kept.
pub const MAX_CACHED_KEY: usize = 128;

/// A table's answers by raw method and raw path (as on the request line: the matchers'
/// decoding and case-folding are theirs to do, and the same input gives the same answer).
#[derive(Debug, Default)]
pub struct Cache {
    // A `Mutex` because matchers are shared (`Arc`) by a worker's siblings; the agent asks from
    // one thread, so it is never contended.
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// By method, then path: both looked up as borrowed `&str`, without building a key.
    by_method: HashMap<Box<str>, HashMap<Box<str>, Outcome>>,
    len: usize,
}

impl Cache {
    /// The answer for (`method`, `path`): the one kept, else `resolve()`'s, kept for next time.
    pub fn get_or_resolve(&self, method: &str, path: &str, resolve: impl FnOnce() -> Outcome) -> Outcome {
        if method.len() + path.len() > MAX_CACHED_KEY {
            return resolve();
        }
        if let Some(hit) = self.lock().by_method.get(method).and_then(|paths| paths.get(path)) {
            return hit.clone();
        }
        // Matched without the lock held: a panicking matcher leaves the cache as it was.
        let outcome = resolve();
        let mut entries = self.lock();
        if entries.len >= MAX_ENTRIES {
            entries.by_method.clear();
            entries.len = 0;
        }
        let Entries { by_method, len } = &mut *entries;
        if !by_method.contains_key(method) {
            by_method.insert(method.into(), HashMap::new());
        }
        if let Some(paths) = by_method.get_mut(method) {
            if paths.insert(path.into(), outcome.clone()).is_none() {
                *len += 1;
            }
        }
        outcome
    }

    /// Answers kept.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries are consistent after any panic (each change is one insert or a clear).
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn found(route: &str) -> Outcome {
        Outcome::Found { route: route.to_owned(), code: None }
    }

    #[test]
    fn a_pair_is_matched_once_then_answered_from_the_cache() {
        let cache = Cache::default();
        let calls = Cell::new(0);
        let resolve = || {
            calls.set(calls.get() + 1);
            found("/users/<int:uid>")
        };
        assert_eq!(cache.get_or_resolve("GET", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(cache.get_or_resolve("GET", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(calls.get(), 1);
        // Another method or another path is another pair.
        assert_eq!(cache.get_or_resolve("POST", "/users/42", || Outcome::NotFound), Outcome::NotFound);
        assert_eq!(cache.get_or_resolve("GET", "/users/43", resolve), found("/users/<int:uid>"));
        assert_eq!(calls.get(), 2);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_full_cache_is_emptied_and_long_keys_are_not_kept() {
        let cache = Cache::default();
        for i in 0..MAX_ENTRIES {
            cache.get_or_resolve("GET", &format!("/r{i}"), || Outcome::NotFound);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        cache.get_or_resolve("GET", "/one-more", || Outcome::NotFound);
        assert_eq!(cache.len(), 1);
        let matched = Cell::new(false);
        cache.get_or_resolve("GET", "/r0", || {
            matched.set(true);
            Outcome::NotFound
        });
        assert!(matched.get(), "emptied: /r0 is matched again");
        assert_eq!(cache.len(), 2);

        let longest = format!("/{}", "a".repeat(MAX_CACHED_KEY - "GET".len() - 1));
        cache.get_or_resolve("GET", &longest, || Outcome::NotFound);
        assert_eq!(cache.len(), 3);
        cache.get_or_resolve("GET", &format!("{longest}b"), || Outcome::NotFound);
        assert_eq!(cache.len(), 3, "one byte over the key cap");
    }
}
