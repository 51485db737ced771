//! The request histograms' series of each process, found once per label set: a request's
//! three observations then cost one lookup by (method, status, route), not a label set built
//! and hashed four times (three families and the expiry index).
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

/// Per pid: the labels its handles were made with, and the handles.
#[derive(Default)]
pub struct ExchangeSeries {
    by_pid: HashMap<u32, (ProcLabels, HashMap<ExchangeKey, Series>)>,
}

impl ExchangeSeries {
    /// The handles of `key` for a process labelled `p`, if made before with the same labels.
    pub fn get(&self, p: &ProcLabels, key: &ExchangeKey) -> Option<&Series> {
        let (labels, series) = self.by_pid.get(&p.pid)?;
        if labels != p {
            return None;
        }
        series.get(key)
    }

    pub fn insert(&mut self, p: &ProcLabels, key: ExchangeKey, s: Series) {
        let entry = self.by_pid.entry(p.pid).or_insert_with(|| (p.clone(), HashMap::new()));
        if &entry.0 != p {
            // The process's labels changed (it executed another program): new series.
            *entry = (p.clone(), HashMap::new());
        }
        entry.1.insert(key, s);
    }

    /// The process's series are removed from the families: its handles go too.
    pub fn remove(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}
