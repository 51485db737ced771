//! The answers one route table already gave: a server sees the same few (method, path) pairs
//! again and again, and matching costs far more than looking the pair up. The cache belongs to
//! its [`super::Matcher`], so a table read again (an exec, a reload, a route added at run time)
//! starts with an empty one.
//!
//! Bounded by construction: [`SLOTS`] slots, each pair's slot chosen by its hash, a newcomer
//! taking the place of the answer there. Paths with ids (`/users/42`, `/users/43`) are mostly
//! seen once, so a pair is only kept the second time it is seen (a slot's fingerprint remembers
//! the first): a path seen once costs a hash and two slot reads, no copy and no allocation.
//! Method and path over [`MAX_CACHED_KEY`] bytes (rarely seen twice) are never kept. The hash
//! has no secret key: pairs made to share a slot can only push each other out, so the worst an
//! attacker can do is the cost of matching without a cache.
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::table::Outcome;

/// Slots per table (a power of two). Fixed cost: 16 bytes a slot, made at the first request;
/// each answer kept adds its method, path and route.
pub const SLOTS: usize = 4096;
/// Longest method and raw path (in bytes, together) whose answer is kept.
pub const MAX_CACHED_KEY: usize = 128;

/// A table's answers by raw method and raw path (as on the request line: the matchers'
/// decoding and case-folding are theirs to do, and the same input gives the same answer).
#[derive(Debug, Default)]
pub struct Cache {
    // A `Mutex` because matchers are shared (`Arc`) by a worker's siblings; the agent asks from
    // one thread, so it is never contended.
    slots: Mutex<Vec<Slot>>,
}

/// Both halves side by side: a lookup touches one cache line.
#[derive(Debug, Default)]
struct Slot {
    /// Fingerprint of the last pair that missed here: seen once.
    seen: u64,
    kept: Option<Box<Kept>>,
}

#[derive(Debug)]
struct Kept {
    method: Box<str>,
    path: Box<str>,
    outcome: Outcome,
}

impl Cache {
    /// The answer for (`method`, `path`): the one kept, else `resolve()`'s (kept if the pair
    /// was seen just before).
    pub fn get_or_resolve(&self, method: &str, path: &str, resolve: impl FnOnce() -> Outcome) -> Outcome {
        if method.len() + path.len() > MAX_CACHED_KEY {
            return resolve();
        }
        let fingerprint = fingerprint(method, path);
        #[expect(clippy::cast_possible_truncation, reason = "the low bits pick the slot")]
        let slot = fingerprint as usize & (SLOTS - 1);
        let mut slots = self.lock();
        if slots.is_empty() {
            slots.resize_with(SLOTS, Slot::default);
        }
        let slot = &mut slots[slot];
        if let Some(k) = &slot.kept {
            if *k.method == *method && *k.path == *path {
                return k.outcome.clone();
            }
        }
        // A matcher that panics leaves the slot as it was.
        let outcome = resolve();
        if slot.seen == fingerprint {
            slot.kept = Some(Box::new(Kept { method: method.into(), path: path.into(), outcome: outcome.clone() }));
        } else {
            slot.seen = fingerprint;
        }
        outcome
    }

    /// Answers kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.lock().iter().filter(|s| s.kept.is_some()).count()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // The slots are consistent after any panic (each change is one store, after matching).
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn fingerprint(method: &str, path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (method, path).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn found(route: &str) -> Outcome {
        Outcome::Found { route: route.to_owned(), code: None }
    }

    #[test]
    fn a_pair_seen_twice_is_kept_then_answered_from_the_cache() {
        let cache = Cache::default();
        let calls = Cell::new(0);
        let resolve = || {
            calls.set(calls.get() + 1);
            found("/users/<int:uid>")
        };
        assert_eq!(cache.get_or_resolve("GET", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(cache.kept(), 0, "seen once: not kept");
        assert_eq!(cache.get_or_resolve("GET", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(cache.kept(), 1);
        assert_eq!(cache.get_or_resolve("GET", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(calls.get(), 2, "the third from the cache");
        // Another method is another pair.
        let calls_before = calls.get();
        assert_eq!(cache.get_or_resolve("POST", "/users/42", resolve), found("/users/<int:uid>"));
        assert_eq!(calls.get(), calls_before + 1);
    }

    #[test]
    fn pairs_seen_once_are_not_kept_and_the_slots_bound_the_rest() {
        let cache = Cache::default();
        for i in 0..10_000 {
            cache.get_or_resolve("GET", &format!("/users/{i}"), || Outcome::NotFound);
        }
        assert_eq!(cache.kept(), 0);
        let calls = Cell::new(0);
        for i in 0..2 * SLOTS {
            for _ in 0..2 {
                cache.get_or_resolve("GET", &format!("/r/{i}"), || {
                    calls.set(calls.get() + 1);
                    Outcome::NotFound
                });
            }
        }
        assert_eq!(calls.get(), 2 * 2 * SLOTS, "each matched on both sightings");
        assert!(cache.kept() <= SLOTS, "{} kept", cache.kept());
        // The last one kept is answered from the cache.
        let last = format!("/r/{}", 2 * SLOTS - 1);
        assert_eq!(cache.get_or_resolve("GET", &last, || found("not from the cache")), Outcome::NotFound);
    }

    #[test]
    fn long_keys_are_not_kept() {
        let cache = Cache::default();
        let longest = format!("/{}", "a".repeat(MAX_CACHED_KEY - "GET".len() - 1));
        let longer = format!("{longest}b");
        for _ in 0..2 {
            cache.get_or_resolve("GET", &longest, || Outcome::NotFound);
            cache.get_or_resolve("GET", &longer, || Outcome::NotFound);
        }
        assert_eq!(cache.kept(), 1, "one byte over the key cap");
        assert_eq!(cache.get_or_resolve("GET", &longer, || found("matched")), found("matched"));
    }
}
