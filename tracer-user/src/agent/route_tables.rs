//! Each traced worker's route table: read from its memory the first time one of its requests
//! needs it, shared with its sibling workers (forked from the same parent, they load the same
//! app), read again when requests miss every rule (a route added at run time), and forgotten
//! when the process executes another program or exits.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Agent;
use crate::cpython::code::CodeInfo;
use crate::routes::read::{self, RoutesError};
use crate::routes::table::Outcome;
use crate::routes::Matcher;

/// A process without a table is asked again after this long, doubling up to [`MAX_RETRY`]: its
/// app may still be loading (Django imports its urlconf at the first request), or it may serve
/// no framework at all, and then asking costs a few thousand reads each time.
const RETRY_NO_TABLE: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_mins(1);
/// A table that missed a request is read again at most this often.
const REREAD_ON_MISS: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct RouteTables {
    by_pid: HashMap<u32, PidTable>,
    /// The parent and command line of each process forked from a traced one: siblings running
    /// the same command line (Gunicorn's or uWSGI's workers, not an emperor's vassals) load
    /// the same app and share a table.
    parent: HashMap<u32, (u32, String)>,
    /// The latest table read by any of those siblings, by their (parent, command line): found
    /// without a scan, for every request of a worker that has none yet.
    shared: HashMap<(u32, String), Arc<Matcher>>,
}

#[derive(Default)]
struct PidTable {
    matcher: Option<Arc<Matcher>>,
    last_read: Option<Instant>,
    last_error: Option<String>,
    /// How long after `last_read` a process without a table is asked again.
    retry: Duration,
    /// Its interpreter cannot be read (not Python, an unsupported build): never asked again
    /// until it executes another program.
    gave_up: bool,
}

/// The route and view of one request.
pub(super) struct Resolved {
    /// `None` for a rule whose route OpenTelemetry does not write (Django's `''`).
    pub(super) route: Option<String>,
    pub(super) code: Option<Arc<CodeInfo>>,
}

impl RouteTables {
    pub(super) fn forked(&mut self, parent: u32, child: u32, cmdline: String) {
        self.parent.insert(child, (parent, cmdline));
    }

    /// After an exec or an exit: the old table describes nothing.
    pub(super) fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.parent.remove(&pid);
        // A master gone (or executing anew) forks no more siblings of the old app.
        self.shared.retain(|(parent, _), _| *parent != pid);
    }

    /// `pid` has a route table: its spans get their handler from it.
    pub(super) fn has_table(&self, pid: u32) -> bool {
        self.by_pid.get(&pid).is_some_and(|t| t.matcher.is_some())
    }

    /// A sibling's table, when one has been read.
    fn sibling(&self, pid: u32) -> Option<Arc<Matcher>> {
        self.shared.get(self.parent.get(&pid)?).cloned()
    }

    /// Another process forked by `pid`'s parent with its command line (a live sibling, as far as
    /// the agent knows: exited ones are forgotten).
    fn sibling_pid(&self, pid: u32) -> Option<u32> {
        let mine = self.parent.get(&pid)?;
        self.parent.iter().find(|(c, p)| **c != pid && *p == mine).map(|(c, _)| *c)
    }

    /// `pid` read `m`: its siblings take it from here.
    fn share(&mut self, pid: u32, m: &Arc<Matcher>) {
        if let Some(key) = self.parent.get(&pid) {
            self.shared.insert(key.clone(), m.clone());
        }
    }
}

impl Agent {
    /// The framework's route for a request served by `pid`, and the view that serves it.
    pub(super) fn resolve_route(&mut self, pid: u32, method: &str, path: &str) -> Option<Resolved> {
        let now = Instant::now();
        if self.routes.by_pid.get(&pid).is_none_or(|t| t.matcher.is_none()) {
            if let Some(shared) = self.routes.sibling(pid) {
                self.metrics.route_table("reused");
                let t = self.routes.by_pid.entry(pid).or_default();
                t.matcher = Some(shared);
                t.last_read = Some(now);
            } else if self
                .routes
                .by_pid
                .get(&pid)
                .is_none_or(|t| !t.gave_up && t.last_read.is_none_or(|at| now - at >= t.retry))
            {
                self.read_routes(pid, now);
                // Dead (or a zombie: its exe link is gone with its memory).
                let gone = std::fs::read_link(format!("/proc/{pid}/exe")).is_err();
                if gone && self.routes.by_pid.get(&pid).is_none_or(|t| t.matcher.is_none()) {
                    self.table_from_sibling(pid, now);
                }
            }
        }
        let matcher = self.routes.by_pid.get(&pid)?.matcher.clone()?;
        if let Some(r) = resolved(&matcher, method, path) {
            return Some(r);
        }
        let stale = self.routes.by_pid.get(&pid).and_then(|t| t.last_read).is_none_or(|at| now - at >= REREAD_ON_MISS);
        if !stale {
            return None;
        }
        self.read_routes(pid, now);
        let matcher = self.routes.by_pid.get(&pid)?.matcher.clone()?;
        resolved(&matcher, method, path)
    }

    /// `pid` cannot be read (a worker killed before its last requests settled, whose memory is
    /// gone): a sibling running the same app can, and its table serves `pid`'s requests.
    fn table_from_sibling(&mut self, pid: u32, now: Instant) {
        let Some(sibling) = self.routes.sibling_pid(pid) else { return };
        if self.routes.by_pid.get(&sibling).is_none_or(|t| t.matcher.is_none() && !t.gave_up) {
            self.read_routes(sibling, now);
        }
        if let Some(shared) = self.routes.sibling(pid) {
            self.metrics.route_table("reused");
            let t = self.routes.by_pid.entry(pid).or_default();
            t.matcher = Some(shared);
            t.last_read = Some(now);
        }
    }

    fn read_routes(&mut self, pid: u32, now: Instant) {
        let result = read::read(pid);
        let t = self.routes.by_pid.entry(pid).or_default();
        t.last_read = Some(now);
        match result {
            Ok((table, reads)) => {
                let m = Matcher::new(table);
                let tab = m.table();
                log::debug!(
                    "pid {pid}: {} rules of a {} app ({}) in {reads} reads, {} skipped",
                    tab.len(),
                    tab.framework.as_str(),
                    tab.found_at,
                    tab.skipped.len()
                );
                for s in &tab.skipped {
                    log::debug!("pid {pid}: route {} not matched: {}", s.rule, s.reason);
                }
                let m = Arc::new(m);
                t.matcher = Some(m.clone());
                t.last_error = None;
                t.retry = RETRY_NO_TABLE;
                self.routes.share(pid, &m);
                self.metrics.route_table("read");
            }
            Err(e) => {
                if t.last_error.as_deref() != Some(&e.to_string()) {
                    // Once per distinct reason: a worker retried every second says it once.
                    match &e {
                        RoutesError::NoApp(_) => log::debug!("pid {pid}: no route table: {e}"),
                        _ => log::info!("pid {pid}: no route table: {e}"),
                    }
                }
                t.last_error = Some(e.to_string());
                t.retry = (t.retry * 2).clamp(RETRY_NO_TABLE, MAX_RETRY);
                t.gave_up = matches!(e, RoutesError::Open(_));
                self.metrics.route_table(e.label());
            }
        }
    }
}

fn resolved(m: &Matcher, method: &str, path: &str) -> Option<Resolved> {
    match m.resolve(method, path) {
        Outcome::Found { route, code } => Some(Resolved { route: Some(route).filter(|r| !r.is_empty()), code }),
        Outcome::MethodNotAllowed { route: Some(route) } => Some(Resolved { route: Some(route), code: None }),
        Outcome::MethodNotAllowed { route: None } | Outcome::NotFound => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::table::{Framework, RouteTable, Rules};

    fn matcher() -> Arc<Matcher> {
        let table = RouteTable {
            framework: Framework::Starlette,
            found_at: "app:app".into(),
            rules: Rules::Starlette(Vec::new()),
            skipped: Vec::new(),
        };
        Arc::new(Matcher::new(table))
    }

    #[test]
    fn siblings_with_the_same_command_line_share_a_table() {
        let mut t = RouteTables::default();
        t.forked(1, 10, "gunicorn app:app".into());
        t.forked(1, 11, "gunicorn app:app".into());
        t.forked(1, 12, "python other.py".into());
        t.forked(2, 20, "gunicorn app:app".into());
        assert!(t.sibling(11).is_none(), "nothing read yet");
        let m = matcher();
        t.share(10, &m);
        assert!(t.sibling(11).is_some_and(|s| Arc::ptr_eq(&s, &m)));
        assert!(t.sibling(12).is_none(), "another program forked by the same parent");
        assert!(t.sibling(20).is_none(), "another master's worker");
        t.forget(1);
        assert!(t.sibling(11).is_none(), "the master is gone: its table is not offered again");
    }
}
