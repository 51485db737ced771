//! The agent's health: its own counters and the interpreter samples of the traced processes,
//! synced into the metrics before each scrape (their procfs figures are read then too,
//! crate::metrics::process); the kernel's drop counters once a second; the exit summary.
use std::collections::HashMap;
use std::time::Duration;

use crate::cpython;
use crate::metrics::{ProcLabels, Total};

use super::{Agent, Python};
use crate::export::sink::SpanSink;

impl Agent {
    /// Once a second: the kernel's drop counters (a warning when they grew), expiry of exited
    /// processes' series.
    pub(super) fn tick(&mut self) {
        self.report_drops();
        self.metrics.expire(Duration::from_secs_f64(self.config.metrics.exited_process_grace_seconds));
    }

    /// Before each scrape (the metrics server asks, see `event_loop`): the agent's counters,
    /// gauges and interpreter samples into the metrics. Synced once a second, they were an idle
    /// agent's largest cost after its wake-ups, for values a scrape every 15 s reads once; synced
    /// at the scrape, they are also current.
    pub(super) fn sync_metrics(&mut self) {
        self.report_drops();
        // First: its read errors are among the counters synced below.
        self.sample_interpreters();
        self.sync_adoption_metrics();
        let s = &self.stats;
        let user_side = [
            ("bad_record", s.bad_records),
            ("unknown_connection", s.unknown_connection),
            ("malformed_request", s.malformed_requests),
            ("malformed_response", s.malformed_responses),
            ("unmatched_response", s.unmatched_responses),
            ("span_write_failed", s.spans_lost),
            ("interpreter_read_error", s.interpreter_read_errors),
            // A code object freed (or its memory unreadable) before its name was read: that
            // frame is left out of its stack.
            ("code_object_unreadable", self.code_cache.read_errors),
            // A file a traced process mapped that could not be searched for OpenSSL: HTTPS
            // through it stays unseen.
            ("tls_library_unreadable", self.tls.unreadable_files()),
        ];
        let kernel_side: Vec<_> = s.kernel_drops.iter().map(|(r, n)| (r.name(), *n)).collect();
        for (reason, total) in kernel_side.into_iter().chain(user_side) {
            self.metrics.sync_dropped(reason, total);
        }
        self.metrics.sync_total(Total::TraceparentInvalid, self.stats.invalid_traceparent);
        self.metrics.sync_total(Total::SpansUnsampled, self.stats.unsampled);
        self.metrics.sync_total(Total::ExitSpans, self.stats.exit_spans);
        self.metrics.sync_total(Total::SpansStitched, self.stats.stitched);
        self.metrics.sync_stitch_missed("call_not_seen", self.stats.stitch_missed_call_not_seen);
        self.metrics.sync_stitch_missed("ids_fixed_early", self.stats.stitch_missed_ids_fixed_early);
        self.metrics.sync_total(Total::ClientConnectionsUnparsed, self.stats.unparsed_client_connections);
        self.metrics.sync_total(Total::PythonStacks, self.samples.stacks);
        self.metrics.sync_total(Total::CapturesPressed, self.stats.pressed_captures);
        if let Some(e) = &self.sink.otlp {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &e.counters;
            for (outcome, n) in [
                ("exported", c.exported.load(Relaxed)),
                ("queue_full", c.queue_full.load(Relaxed)),
                ("failed", c.failed.load(Relaxed)),
            ] {
                self.metrics.sync_otlp(outcome, n);
            }
            self.metrics.sync_total(Total::OtlpRetries, c.retries.load(Relaxed));
        }
        let mut active: HashMap<u32, usize> = HashMap::new();
        for ((tgid, _), c) in &self.server.conns {
            *active.entry(*tgid).or_default() += c.http.in_flight();
        }
        let labels: Vec<ProcLabels> = self.procs.values().map(|t| t.labels.clone()).collect();
        for l in &labels {
            self.metrics.set_active_requests(l, active.get(&l.pid).copied().unwrap_or(0));
        }
        self.metrics.set_processes(&labels);
    }

    /// Each traced interpreter's GC statistics and threads, and the processes by Python support.
    fn sample_interpreters(&mut self) {
        let mut states: HashMap<&'static str, usize> = HashMap::new();
        for t in self.procs.values() {
            let label = match &t.python {
                // A build whose GC state is not the one its version's GC row describes (see
                // debug_offsets.rs): handler code on spans, but no GC metrics.
                Python::Supported { layout, .. } if layout.gc.is_none() => "stack_walk_only",
                Python::Supported { runtime_addr, layout, .. } => {
                    match cpython::runtime::snapshot(&cpython::memory::Memory::new(t.labels.pid), *runtime_addr, layout)
                    {
                        Ok(snap) => self.metrics.observe_python(&t.labels, &snap),
                        // A process in the middle of starting or exiting; counted, retried next tick.
                        Err(_) => self.stats.interpreter_read_errors += 1,
                    }
                    "supported"
                }
                Python::Unsupported { label } => label,
            };
            *states.entry(label).or_default() += 1;
        }
        self.metrics.set_process_states(&states);
    }

    fn report_drops(&mut self) {
        let drops = self.probes.drops();
        let total: u64 = drops.iter().map(|d| d.1).sum();
        if total > self.reported_drops {
            let detail: Vec<String> =
                drops.iter().filter(|d| d.1 > 0).map(|(r, n)| format!("{}={n}", r.name())).collect();
            log::warn!("{} kernel events dropped so far ({})", total, detail.join(", "));
            self.reported_drops = total;
        }
        self.stats.kernel_drops = drops;
    }

    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        self.settle_awaiting(true);
        self.write_profile()?;
        if let Some(mut e) = self.sink.otlp.take() {
            // Sends what is queued; bounded by the retry budget.
            e.shutdown();
            let c = &e.counters;
            log::info!(
                "OTLP: exported={} queue_full={} failed={} retries={}",
                c.exported.load(Relaxed),
                c.queue_full.load(Relaxed),
                c.failed.load(Relaxed),
                c.retries.load(Relaxed)
            );
        }
        self.report_drops();
        self.stats.in_flight_at_exit = self.server.conns.values().map(|c| c.http.in_flight() as u64).sum();
        self.sink.flush()?;
        log::info!("{}", self.stats.summary());
        log::info!(
            "python stacks={} without_app_frame={} code_lookups={} code_read_errors={}",
            self.samples.stacks,
            self.samples.without_app_frame,
            self.code_cache.misses,
            self.code_cache.read_errors
        );
        Ok(())
    }
}
