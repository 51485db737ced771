//! The CPU sampler's records (`pytracer profile`): each sample's frames named and given their
//! line as it arrives (a code object may be freed later), then, at the end, joined to the
//! request its thread was serving: the kernel tags a sample with the connection and the start of
//! the request the thread read last; the agent looks for the settled exchange on that
//! connection whose time holds the sample, and takes its span's ids and route.
use std::collections::HashMap;
use std::sync::Arc;

use tracer_common::PyFrame;

use super::{Agent, Python};
use crate::bpf::probes::{ProbeError, Probes};
use crate::cpython::lines::{self, LineCache};
use crate::profile::{Frame, Profile, Request, Sample, Settings};
use crate::spans::semconv;

/// Samples kept: at 19 Hz on 64 CPUs, 15 minutes' worth. Beyond, samples are counted and left.
const MAX_SAMPLES: usize = 1_000_000;
/// Settled requests kept per connection for the join.
const MAX_REQUESTS_PER_CONN: usize = 4096;
/// How far before a request's start the search for its samples goes on: records from two CPUs
/// reach the ring buffer a little out of time order.
const REORDER_NS: u64 = 1_000_000_000;

struct Pending {
    tgid: u32,
    /// The connection of the request the thread was serving (-1: none).
    fd: i32,
    ns: u64,
    frames: Vec<Arc<Frame>>,
}

struct Settled {
    start_ns: u64,
    end_ns: u64,
    request: Arc<Request>,
}

pub(super) struct Profiler {
    pub(super) settings: Settings,
    pending: Vec<Pending>,
    requests: HashMap<(u32, i32), Vec<Settled>>,
    lines: LineCache,
    started_ns: u64,
    /// Samples left out past MAX_SAMPLES.
    pub(super) dropped: u64,
    /// Frames whose code object could not be read (named `<unknown>`).
    pub(super) unnamed_frames: u64,
}

impl Profiler {
    /// Attaches the sampler on every CPU.
    pub(super) fn start(probes: &mut Probes, settings: Settings) -> Result<Profiler, ProbeError> {
        let cpus = probes.start_sampler(settings.rate_hz)?;
        log::info!("CPU sampler at {} Hz on {cpus} CPUs", settings.rate_hz);
        Ok(Profiler {
            settings,
            pending: Vec::new(),
            requests: HashMap::new(),
            lines: LineCache::default(),
            started_ns: crate::clock::monotonic_ns(),
            dropped: 0,
            unnamed_frames: 0,
        })
    }

    /// Joins every sample to its request.
    pub(super) fn profile(&mut self, now_ns: u64) -> Profile {
        let samples = self
            .pending
            .drain(..)
            .map(|p| {
                let request = self.requests.get(&(p.tgid, p.fd)).and_then(|rs| {
                    rs.iter().find(|r| (r.start_ns..=r.end_ns).contains(&p.ns)).map(|r| r.request.clone())
                });
                Sample { pid: p.tgid, request, frames: p.frames }
            })
            .collect();
        Profile { samples, rate_hz: self.settings.rate_hz, duration_ns: now_ns.saturating_sub(self.started_ns) }
    }
}

impl Agent {
    /// A sample from the CPU sampler: `fd` is the connection of the thread's request (-1: none).
    pub(super) fn on_profile_sample(&mut self, tgid: u32, fd: i32, ns: u64, frames: &[PyFrame]) {
        let Some(p) = self.profiler.as_mut() else { return };
        if p.pending.len() >= MAX_SAMPLES {
            p.dropped += 1;
            self.metrics.profile_give_up("sample_over_limit");
            return;
        }
        let Some(Python::Supported { layout, .. }) = self.procs.get(&tgid).map(|t| &t.python) else {
            self.metrics.profile_give_up("sample_unknown_process");
            return;
        };
        let line_layout = lines::for_minor(layout.minor);
        let mut named = Vec::with_capacity(frames.len());
        // Outermost first, as profiles are drawn.
        for f in frames.iter().rev() {
            let unread = p.lines.read_errors;
            let line = line_layout.and_then(|l| p.lines.line(tgid, f, &l));
            if p.lines.read_errors != unread {
                self.metrics.profile_give_up("line_unread");
            }
            let frame = if let Some(c) = self.code_cache.resolve(tgid, f, &layout.frames) {
                Frame { function: c.qualname.clone(), file: c.file.clone(), line }
            } else {
                p.unnamed_frames += 1;
                self.metrics.profile_give_up("frame_unnamed");
                Frame { function: "<unknown>".into(), file: String::new(), line: None }
            };
            named.push(Arc::new(frame));
        }
        p.pending.push(Pending { tgid, fd, ns, frames: named });
    }

    /// A settled request of connection `fd` of `tgid`, with its span.
    /// Its samples have arrived (the kernel sent them before the response's last bytes): the
    /// span gets their count and hottest frame.
    pub(super) fn profile_request(
        &mut self,
        (tgid, fd): (u32, i32),
        (start_ns, end_ns): (u64, u64),
        span: &mut crate::spans::Span,
        method: &str,
        route: Option<&str>,
    ) {
        let Some(p) = self.profiler.as_mut() else { return };
        let mut leaves: HashMap<&Frame, u64> = HashMap::new();
        let mut n = 0u64;
        for s in p.pending.iter().rev() {
            if s.ns.saturating_add(REORDER_NS) < start_ns {
                break;
            }
            if s.tgid == tgid && s.fd == fd && (start_ns..=end_ns).contains(&s.ns) {
                n += 1;
                if let Some(leaf) = s.frames.last() {
                    *leaves.entry(leaf).or_default() += 1;
                }
            }
        }
        if n > 0 {
            span.attributes.insert(semconv::PYTRACER_PROFILE_SAMPLES.into(), n.into());
            // Ties go to the first label in order, so the attribute does not depend on hashing.
            if let Some((leaf, _)) =
                leaves.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.label().cmp(&a.0.label())))
            {
                span.attributes.insert(semconv::PYTRACER_PROFILE_HOTTEST.into(), leaf.label().into());
            }
        }
        let rs = p.requests.entry((tgid, fd)).or_default();
        if rs.len() >= MAX_REQUESTS_PER_CONN {
            rs.remove(0);
        }
        let root = route.map_or_else(|| method.to_owned(), |r| format!("{method} {r}"));
        let request = Request {
            span_id: span.span_id.clone(),
            trace_id: span.trace_id.clone(),
            root,
            route: route.map(str::to_owned),
        };
        rs.push(Settled { start_ns, end_ns, request: Arc::new(request) });
    }

    /// A process exited or executed another program: its code objects are gone (its samples,
    /// named already, stay).
    pub(super) fn profile_forget(&mut self, tgid: u32) {
        if let Some(p) = self.profiler.as_mut() {
            p.lines.forget(tgid);
        }
    }

    /// Writes the profile's files at the end of `pytracer profile`.
    pub(super) fn write_profile(&mut self) -> anyhow::Result<()> {
        let now = crate::clock::monotonic_ns();
        let Some(p) = self.profiler.as_mut() else { return Ok(()) };
        let profile = p.profile(now);
        let attributed = profile.samples.iter().filter(|s| s.request.is_some()).count();
        log::info!(
            "profile: {} samples, {attributed} in requests; {} left out (limit), {} frames unnamed, {} line tables unread",
            profile.samples.len(),
            p.dropped,
            p.unnamed_frames,
            p.lines.read_errors
        );
        for path in crate::profile::write_all(&profile, &p.settings.dir)? {
            log::info!("wrote {}", path.display());
        }
        Ok(())
    }
}
