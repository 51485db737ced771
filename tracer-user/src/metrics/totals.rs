//! The agent's own counters that live elsewhere (its `Stats`, the OTLP exporter) and are
//! exported as they are: one enum, so that a counter synced is one the registry has.

/// Counters the agent keeps elsewhere (its `Stats`, the OTLP exporter) and exports as they are.
/// An enum, not names: a counter the agent syncs is one the registry has, or it does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Total {
    TraceparentInvalid,
    SpansUnsampled,
    OtlpRetries,
    ExitSpans,
    SpansStitched,
    ClientConnectionsUnparsed,
    PythonStacks,
    CapturesPressed,
}

impl Total {
    pub const ALL: [Total; 8] = [
        Total::TraceparentInvalid,
        Total::SpansUnsampled,
        Total::OtlpRetries,
        Total::ExitSpans,
        Total::SpansStitched,
        Total::ClientConnectionsUnparsed,
        Total::PythonStacks,
        Total::CapturesPressed,
    ];

    /// The metric's name (the registry adds `_total`) and help.
    pub(super) fn describe(self) -> (&'static str, &'static str) {
        match self {
            Total::TraceparentInvalid => (
                "pytracer_traceparent_invalid",
                "Requests whose traceparent broke the W3C rules; they started a new trace",
            ),
            Total::SpansUnsampled => {
                ("pytracer_spans_unsampled", "Requests whose caller's traceparent said not to record them: no span")
            }
            Total::OtlpRetries => {
                ("pytracer_otlp_retries", "OTLP export requests retried after 429/502/503/504 or a network error")
            }
            Total::ExitSpans => {
                ("pytracer_exit_spans", "Exit spans written: database queries and HTTP calls the traced processes made")
            }
            Total::SpansStitched => (
                "pytracer_spans_stitched",
                "Server spans parented by a traced caller's call on the same host, without headers",
            ),
            Total::ClientConnectionsUnparsed => (
                "pytracer_client_connections_unparsed",
                "Outgoing connections in a protocol pytracer does not parse (no spans)",
            ),
            Total::PythonStacks => (
                "pytracer_python_stacks",
                "Python stacks walked in the kernel (frame-evaluation windows and outgoing writes)",
            ),
            Total::CapturesPressed => (
                "pytracer_captures_pressed",
                "Reads and writes whose captured bytes the kernel cut short while the ring buffer filled (counted in full)",
            ),
        }
    }
}
