//! New programs, found at their exec: the kernel tells every exec on the host, and `pytracer run`
//! checks each new program's command line against discovery at the next tick, so a server started
//! after the agent is traced within about a second without reading all of /proc. The periodic
//! rescan stays as the safety net (an exec record lost to a full ring buffer, a command line
//! rewritten after the exec).
use std::time::{Duration, Instant};

use super::Agent;

/// How long after its exec a process is looked at: the dynamic loader has mapped libpython by
/// then (discovery looks for it when the executable's name says nothing), and a shell that
/// executes another program at once has done so.
const SETTLE: Duration = Duration::from_millis(200);

/// Execs waiting for their look. A host that executes more between two ticks (a build, a burst of
/// shell scripts) has the next tick rescan /proc instead: nothing is lost, only read the slow way.
const MAX_PENDING: usize = 4096;

#[derive(Default)]
pub(super) struct PendingExecs {
    /// (pid, when the agent heard of its exec), oldest first.
    pids: Vec<(u32, Instant)>,
    /// More than MAX_PENDING since the last tick.
    overflowed: bool,
}

impl PendingExecs {
    pub(super) fn push(&mut self, pid: u32, at: Instant) {
        if self.pids.len() >= MAX_PENDING {
            self.overflowed = true;
            return;
        }
        self.pids.push((pid, at));
    }

    /// The pids whose exec is at least SETTLE old at `now`, each once, and whether the list
    /// overflowed since the last call (then a full rescan stands in for what was left out).
    fn take_due(&mut self, now: Instant) -> (Vec<u32>, bool) {
        let due = self.pids.partition_point(|&(_, at)| now.saturating_duration_since(at) >= SETTLE);
        let mut pids: Vec<u32> = self.pids.drain(..due).map(|(pid, _)| pid).collect();
        pids.sort_unstable();
        pids.dedup();
        (pids, std::mem::take(&mut self.overflowed))
    }
}

impl Agent {
    /// An exec by a process that is not traced: looked at by the next tick's `check_execs`.
    pub(super) fn exec_seen(&mut self, pid: u32) {
        if let Some(execs) = &mut self.execs {
            execs.push(pid, Instant::now());
        }
    }

    /// Traces the processes that executed a program discovery picks; true when some execs were
    /// not kept and /proc must be rescanned instead.
    pub(super) fn check_execs(&mut self) -> bool {
        let Some(execs) = &mut self.execs else { return false };
        let (pids, overflowed) = execs.take_due(Instant::now());
        for pid in pids {
            // Traced meanwhile: forked by a traced process and told first, or found by a rescan.
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Some(cmdline) = self.rescanner.check(pid, &self.config.discovery) {
                self.start_tracing(pid, &cmdline);
            }
        }
        overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execs_wait_to_settle_and_come_once() {
        let t0 = Instant::now();
        let mut p = PendingExecs::default();
        p.push(7, t0);
        p.push(5, t0);
        p.push(7, t0 + Duration::from_millis(10));
        p.push(9, t0 + Duration::from_millis(500));
        assert_eq!(p.take_due(t0), (vec![], false));
        assert_eq!(p.take_due(t0 + SETTLE + Duration::from_millis(10)), (vec![5, 7], false));
        assert_eq!(p.take_due(t0 + Duration::from_secs(1)), (vec![9], false));
        assert_eq!(p.take_due(t0 + Duration::from_secs(2)), (vec![], false));
    }

    #[test]
    fn an_overflow_asks_for_a_rescan_once() {
        let t0 = Instant::now();
        let mut p = PendingExecs::default();
        for pid in 0..=MAX_PENDING as u32 {
            p.push(pid, t0);
        }
        let (pids, overflowed) = p.take_due(t0 + SETTLE);
        assert_eq!((pids.len(), overflowed), (MAX_PENDING, true));
        assert_eq!(p.take_due(t0 + SETTLE), (vec![], false));
    }
}
