//! The agent's own counters: nothing is dropped without being counted here. Printed on exit, and
//! the basis of the `pytracer_` metrics.
use tracer_common::DropReason;

#[derive(Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub spans: u64,
    /// Spans that could not be written to the output.
    pub spans_lost: u64,
    /// Kernel records that did not decode.
    pub bad_records: u64,
    /// Data on a connection whose accept was not seen.
    pub unknown_connection: u64,
    pub malformed_requests: u64,
    pub malformed_responses: u64,
    pub unmatched_responses: u64,
    /// Requests reported with error.type because the connection ended before the response did.
    pub incomplete_exchanges: u64,
    /// Requests still waiting for their response when the agent stopped (not reported).
    pub in_flight_at_exit: u64,
    /// Requests whose traceparent broke the W3C rules: they started a new trace.
    pub invalid_traceparent: u64,
    /// Requests whose caller's traceparent said "not sampled": no span written.
    pub unsampled: u64,
    /// Worker-side uwsgi requests folded into the router's span (uWSGI --http).
    pub routed: u64,
    /// Exit spans written (database queries, HTTP calls to other services).
    pub exit_spans: u64,
    /// Of those, connects that failed (refused, unreachable, timed out).
    pub failed_connects: u64,
    /// Connects to unix sockets that failed: counted, no span (see agent::client).
    pub failed_unix_connects: u64,
    /// Outgoing connections whose protocol pytracer does not parse (DNS, TLS, ...): not spans.
    pub unparsed_client_connections: u64,
    /// Server spans parented by a traced caller's exit span on the same host (no headers).
    pub stitched: u64,
    /// Server spans with a same-host traced caller that stayed roots, by why: the caller's call
    /// was not seen within the wait, or an exit span needed the ids before it was.
    pub stitch_missed_call_not_seen: u64,
    pub stitch_missed_ids_fixed_early: u64,
    /// Interpreter snapshots that could not be read (process starting or exiting).
    pub interpreter_read_errors: u64,
    /// Reads and writes whose capture the kernel cut short because the ring buffer was filling
    /// (tracer_common::PRESSED_CAPTURE_LEN): counted in full, parsed only as far as captured.
    pub pressed_captures: u64,
    pub kernel_drops: Vec<(DropReason, u64)>,
}

impl Stats {
    pub fn summary(&self) -> String {
        let drops: Vec<String> = self.kernel_drops.iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
        format!(
            "spans={} events={} kernel_dropped[{}] spans_lost={} bad_records={} unknown_connection={} \
             malformed_requests={} malformed_responses={} unmatched_responses={} incomplete={} in_flight_at_exit={} invalid_traceparent={} unsampled={} routed={} exit_spans={} failed_connects={} failed_unix_connects={} unparsed_client_connections={} stitched={} stitch_missed={} pressed_captures={}",
            self.spans,
            self.events,
            drops.join(" "),
            self.spans_lost,
            self.bad_records,
            self.unknown_connection,
            self.malformed_requests,
            self.malformed_responses,
            self.unmatched_responses,
            self.incomplete_exchanges,
            self.in_flight_at_exit,
            self.invalid_traceparent,
            self.unsampled,
            self.routed,
            self.exit_spans,
            self.failed_connects,
            self.failed_unix_connects,
            self.unparsed_client_connections,
            self.stitched,
            self.stitch_missed_call_not_seen + self.stitch_missed_ids_fixed_early,
            self.pressed_captures
        )
    }
}
