//! The request histograms' series of each process, found once per label set: a request's
//! three observations then cost one lookup by (method, status, route), not a label set built
//! and hashed four times (three families and the expiry index). The lookup borrows the
//! request's own strings: a seen label set costs no allocation.
use std::hash::BuildHasher;

// foldhash: looked up for every request (SipHash cost more than the lookup).
use foldhash::{HashMap, HashMapExt};

use prometheus_client::metrics::histogram::Histogram;

use super::ProcLabels;

/// A request's labels besides its process's: method, status (none without a response), route.
pub type ExchangeKey = (String, Option<u16>, String);

/// One label set's histograms (handles sharing the families' own series).
#[derive(Clone)]
pub struct Series {
    pub duration: Histogram,
    pub request_body: Histogram,
    /// None for requests without a response (the key's status is None).
    pub response_body: Option<Histogram>,
}

/// Label sets by the hash of their parts, so that a lookup needs no owned key; the few that
/// share a hash are told apart by comparing the parts.
type ByHash = HashMap<u64, Vec<(ExchangeKey, Series)>>;

/// Per pid: the labels its handles were made with, and the handles.
#[derive(Default)]
pub struct ExchangeSeries {
    by_pid: HashMap<u32, (ProcLabels, ByHash)>,
    hasher: foldhash::fast::RandomState,
}

impl ExchangeSeries {
    /// The handles of (method, status, route) for a process labelled `p`, if made before with
    /// the same labels.
    pub fn get(&self, p: &ProcLabels, method: &str, status: Option<u16>, route: &str) -> Option<&Series> {
        let (labels, series) = self.by_pid.get(&p.pid)?;
        if labels != p {
            return None;
        }
        let same = |k: &ExchangeKey| k.0 == method && k.1 == status && k.2 == route;
        series.get(&self.hash(method, status, route))?.iter().find(|(k, _)| same(k)).map(|(_, s)| s)
    }

    pub fn insert(&mut self, p: &ProcLabels, key: ExchangeKey, s: Series) {
        let hash = self.hash(&key.0, key.1, &key.2);
        let entry = self.by_pid.entry(p.pid).or_insert_with(|| (p.clone(), HashMap::new()));
        if &entry.0 != p {
            // The process's labels changed (it executed another program): new series.
            *entry = (p.clone(), HashMap::new());
        }
        let same_hash = entry.1.entry(hash).or_default();
        same_hash.retain(|(k, _)| *k != key);
        same_hash.push((key, s));
    }

    fn hash(&self, method: &str, status: Option<u16>, route: &str) -> u64 {
        self.hasher.hash_one((method, status, route))
    }

    /// The process's series are removed from the families: its handles go too.
    pub fn remove(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}
