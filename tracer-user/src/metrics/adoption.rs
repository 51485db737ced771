//! Counters of connections older than the agent (agent/adopt.rs): how many were adopted, by
//! side, what moved on them before their first request boundary (skipped, never parsed), and
//! the sockets that could not be followed.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use prometheus_client::registry::Registry;

use crate::existing_conns::Side;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    /// `accepted` (server end) or `connected` (client end).
    side: String,
}

/// Clones share their series: the agent keeps one, the registry another.
#[derive(Clone, Default)]
pub struct Adoption {
    adopted: Family<SideLabels, Counter>,
    skipped_records: Family<SideLabels, Counter>,
    skipped_bytes: Family<SideLabels, Counter>,
    unfollowed: Counter,
}

impl Adoption {
    /// New counters, registered in `r`.
    pub fn registered(r: &mut Registry) -> Self {
        let a = Adoption::default();
        a.register(r);
        a
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "pytracer_connections_adopted",
            "Connections a traced process had open before the agent attached, followed from their next request boundary, by side: accepted (server end) or connected (client end)",
            self.adopted.clone(),
        );
        r.register(
            "pytracer_adopted_skipped_records",
            "Reads and writes on adopted connections before their first request boundary (the rest of an exchange in flight at attach): skipped, not parsed",
            self.skipped_records.clone(),
        );
        r.register(
            "pytracer_adopted_skipped_bytes",
            "Bytes those skipped reads and writes moved",
            self.skipped_bytes.clone(),
        );
        r.register(
            "pytracer_connections_unadopted",
            "Sockets found open in a traced process at attach that could not be followed (closed meanwhile, unreadable, or the kernel's connection map refused them)",
            self.unfollowed.clone(),
        );
    }

    pub fn adopted(&self, side: Side) {
        self.adopted.get_or_create(&labels(side)).inc();
    }

    /// Sets the skipped counters of `side` to their totals (they only grow).
    pub fn sync_skipped(&self, side: Side, records: u64, bytes: u64) {
        grow_to(&self.skipped_records.get_or_create(&labels(side)), records);
        grow_to(&self.skipped_bytes.get_or_create(&labels(side)), bytes);
    }

    pub fn sync_unreadable(&self, total: u64) {
        grow_to(&self.unfollowed, total);
    }
}

fn labels(side: Side) -> SideLabels {
    SideLabels { side: side.label().into() }
}

fn grow_to(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_side() {
        let mut r = Registry::default();
        let a = Adoption::registered(&mut r);
        a.adopted(Side::Accepted);
        a.adopted(Side::Accepted);
        a.adopted(Side::Connected);
        a.sync_skipped(Side::Accepted, 2, 300);
        a.sync_skipped(Side::Accepted, 3, 310);
        a.sync_unreadable(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "pytracer_connections_adopted_total{side=\"accepted\"} 2",
            "pytracer_connections_adopted_total{side=\"connected\"} 1",
            "pytracer_adopted_skipped_records_total{side=\"accepted\"} 3",
            "pytracer_adopted_skipped_bytes_total{side=\"accepted\"} 310",
            "pytracer_connections_unadopted_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
