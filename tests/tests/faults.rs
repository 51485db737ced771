//! The fault suite (issue 15), run by `cargo xtask faults` (ignored otherwise: minutes long).
//!
//! Each fault gets its own Gunicorn serving tests/apps/testapp.py and its own release agent
//! (`pytracer trace --pid MASTER --metrics-addr ...`). Every request the suite sends carries its
//! own `f=N` query, so its spans can be counted. For each fault a row: survived (the agent still
//! runs, and a check request sent after the fault is exactly one span), the requests sent after
//! the agent was ready, their spans, those lost (owed a span and without one) and what the agent
//! counted (the deltas of its drop and give-up counters on /metrics). The table goes to
//! `$PYTRACER_FAULTS_REPORT` (bench/out/faults.md unless set; `cargo xtask faults` writes
//! bench/faults.md) and is printed row by row. `PYTRACER_FAULTS=name,name` runs only those.
//!
//! Asserted: every fault survived, no request twice, and none lost where the design promises it;
//! where a fault loses requests by design (the agent stopped until its ring buffer is full), that
//! every loss is counted, and that requests sent after the agent caught up are all traced.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pytracer_tests::*;
use serde_json::Value;

/// The kernel map sizes and the closed-entry bound (tracer-common/src/maps.rs), as counts here.
const MAX_CONNECTIONS: usize = tracer_common::MAX_CONNECTIONS as usize;
/// A closed socket's CONNS entry stays for the next socket of its number below this descriptor;
/// above it, the close deletes the entry.
const KEEP_BELOW_FD: usize = tracer_common::KEEP_BELOW_FD as usize;
const MAX_TRACKED_PIDS: usize = tracer_common::MAX_TRACKED_PIDS as usize;
/// Index of `ringbuf_full` in the kernel's DROPS array.
const RINGBUF_FULL: u32 = tracer_common::DropReason::RingBufFull as u32;

/// One request sent during a fault.
struct Req {
    id: u64,
    /// Just before its first byte was sent.
    at: Instant,
    /// When its response was read (or the attempt failed).
    done: Instant,
    status: Option<u16>,
    /// Whether a span is owed: answered, or seen started by the agent before its worker died.
    owed: bool,
}

#[derive(Default)]
struct Ledger {
    next: AtomicU64,
    reqs: Mutex<Vec<Req>>,
}

/// Sends tagged requests and books them; cheap to clone into client threads.
#[derive(Clone)]
struct Client {
    port: u16,
    ledger: Arc<Ledger>,
}

impl Client {
    /// A fresh id and `path` carrying it.
    fn tag(&self, path: &str) -> (u64, String) {
        let id = self.ledger.next.fetch_add(1, Relaxed);
        let sep = if path.contains('?') { '&' } else { '?' };
        (id, format!("{path}{sep}f={id}"))
    }

    fn book(&self, id: u64, at: Instant, status: Option<u16>, owed: bool) {
        self.ledger.reqs.lock().unwrap().push(Req { id, at, done: Instant::now(), status, owed });
    }

    /// One request on a fresh connection (`Connection: close`); a span is owed when answered.
    fn get(&self, path: &str) -> Option<Response> {
        self.get_within(path, Duration::from_secs(10))
    }

    /// [`Self::get`] for a route that takes long on purpose: waits up to `t` for the answer.
    fn get_within(&self, path: &str, t: Duration) -> Option<Response> {
        let (id, tagged) = self.tag(path);
        let at = Instant::now();
        let r = Conn::try_open(self.port).and_then(|mut c| {
            c.set_io_timeout(t)?;
            c.try_send("GET", &tagged, &[("Connection", "close")], b"")
        });
        let status = r.as_ref().ok().map(|r| r.status);
        self.book(id, at, status, status.is_some());
        r.ok()
    }

    /// Answered requests whose response was read within `[from, to)`.
    fn answered_between(&self, from: Instant, to: Instant) -> usize {
        self.ledger.reqs.lock().unwrap().iter().filter(|r| r.status.is_some() && r.done >= from && r.done < to).count()
    }
}

/// Client threads sending `path` (tagged) on a new connection each until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, path: &'static str, clients: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (stop, client) = (stop.clone(), client.clone());
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        client.get(path);
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) {
        self.stop.store(true, Relaxed);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
    }
}

/// The agent's drop and give-up counters, by reason, from one scrape.
fn counters(lines: &[Line]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in lines {
        let reason = l.labels.get("reason").cloned().unwrap_or_default();
        let key = match l.name.as_str() {
            "pytracer_events_dropped_total" => reason,
            "pytracer_attach_errors_total" => format!("attach_error:{reason}"),
            "pytracer_connections_unadopted_total" => "connections_unadopted".into(),
            "pytracer_adopted_skipped_records_total" => "adopted_skipped_records".into(),
            "pytracer_events_received_total" => "(events received)".into(),
            _ => continue,
        };
        *out.entry(key).or_insert(0.0) += l.value;
    }
    out
}

/// Scrapes until the counters are the same twice in a row, 1.2 s apart (the agent syncs them
/// once a second): what it had to take in is taken in. Gives up after 30 s, with the last.
fn settle(mport: u16) -> BTreeMap<String, f64> {
    let mut last = counters(&scrape(mport));
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(1200));
        let now = counters(&scrape(mport));
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// One row of the table.
#[derive(Default)]
struct Row {
    fault: String,
    survived: bool,
    sent: usize,
    spans: usize,
    lost: usize,
    counted: BTreeMap<String, f64>,
    notes: Vec<String>,
    /// Broken promises: the suite fails on any.
    failures: Vec<String>,
    /// Set when the fault could not be run: why.
    not_run: Option<String>,
}

impl Row {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// A counter's delta (they count whole things).
    fn count(&self, key: &str) -> usize {
        self.counted.get(key).map_or(0, |v| *v as usize)
    }

    fn counted_text(&self) -> String {
        let parts: Vec<String> = self
            .counted
            .iter()
            .filter(|(k, v)| **v != 0.0 && !k.starts_with('('))
            .map(|(k, v)| format!("`{k}` +{v}"))
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }

    fn markdown(&self) -> String {
        if let Some(why) = &self.not_run {
            return format!("| {} | not run | | | | | {why} |", self.fault);
        }
        let mut notes = self.notes.join("; ");
        if !self.failures.is_empty() {
            let _ = write!(notes, "; **FAILED: {}**", self.failures.join("; "));
        }
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.fault,
            if self.survived { "yes" } else { "**no**" },
            self.sent,
            self.spans,
            self.lost,
            self.counted_text(),
            notes
        )
    }
}

/// What a fault ran against: a Gunicorn, the agent tracing it, its metrics and the requests.
struct Rig {
    g: Gunicorn,
    t: Tracer,
    mport: u16,
    base: BTreeMap<String, f64>,
    client: Client,
    row: Row,
    /// Requests that started before this instant may be lost, if every loss is counted (the
    /// agent was stopped); None: none may be lost.
    loss_allowed_before: Option<Instant>,
}

/// What the rig left: the row and the spans by request id, for a fault's own checks.
struct Done {
    row: Row,
    by_id: BTreeMap<u64, Vec<Value>>,
    stderr: String,
}

fn request_id(span: &Value) -> Option<u64> {
    let q = span["attributes"]["url.query"].as_str()?;
    q.split('&').find_map(|kv| kv.strip_prefix("f=")).and_then(|v| v.parse().ok())
}

impl Rig {
    fn start(fault: &str, opts: GunicornOpts) -> Rig {
        let g = Gunicorn::start(opts);
        let mport = free_port();
        let t = Tracer::start(&[g.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
        let base = counters(&scrape(mport));
        let client = Client { port: g.port(), ledger: Arc::default() };
        Rig { g, t, mport, base, client, row: Row { fault: fault.into(), ..Row::default() }, loss_allowed_before: None }
    }

    fn agent_pid(&self) -> u32 {
        self.t.pid().expect("agent running")
    }

    fn maps(&self) -> AgentMaps {
        AgentMaps::of(self.agent_pid())
    }

    fn note(&mut self, n: impl Into<String>) {
        self.row.notes.push(n.into());
    }

    /// Settles the counters, sends the check request, stops the agent and fills the row.
    fn finish(mut self) -> Done {
        let running = self.t.is_running();
        if running {
            let now = settle(self.mport);
            for (k, v) in &now {
                let d = v - self.base.get(k).copied().unwrap_or(0.0);
                self.row.counted.insert(k.clone(), d);
            }
        }
        let check = running.then(|| {
            let (id, tagged) = self.client.tag("/hello");
            let at = Instant::now();
            let r = Conn::try_open(self.g.port())
                .and_then(|mut c| c.try_send("GET", &tagged, &[("Connection", "close")], b""));
            let status = r.ok().map(|r| r.status);
            self.client.book(id, at, status, status.is_some());
            id
        });
        // The check's span is written at its response's end; a moment for the agent to read it.
        std::thread::sleep(Duration::from_millis(500));
        // The harness's other tests allow 15 s; on this shared 2-core machine under other
        // builds' load a stop has taken longer (its probes' detach), so it is timed and shown.
        let stopping = Instant::now();
        let (status, result) = self.t.stop_lenient(Duration::from_mins(1));
        let stop_took = stopping.elapsed();
        let mut by_id: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
        for s in result.spans.into_iter().filter(|s| s["kind"] == "server") {
            if let Some(id) = request_id(&s) {
                by_id.entry(id).or_default().push(s);
            }
        }
        let mut row = self.row;
        let reqs = self.client.ledger.reqs.lock().unwrap();
        let check_spans = check.map_or(0, |id| by_id.get(&id).map_or(0, Vec::len));
        row.survived = running && check_spans == 1;
        row.check(running, "the agent had exited");
        row.check(check_spans == 1, format!("the check request has {check_spans} spans"));
        row.check(
            status.is_some_and(|s| s.success()),
            format!("the agent's exit within {stop_took:?} of SIGINT: {status:?}"),
        );
        if stop_took > Duration::from_secs(5) {
            row.notes.push(format!("the agent took {:.1} s to stop after SIGINT", stop_took.as_secs_f64()));
        }
        row.sent = reqs.len();
        row.spans = reqs.iter().map(|r| by_id.get(&r.id).map_or(0, Vec::len)).sum();
        let lost: Vec<&Req> = reqs.iter().filter(|r| r.owed && !by_id.contains_key(&r.id)).collect();
        row.lost = lost.len();
        let twice: Vec<u64> =
            reqs.iter().filter(|r| by_id.get(&r.id).is_some_and(|v| v.len() > 1)).map(|r| r.id).collect();
        row.check(twice.is_empty(), format!("requests with more than one span: {twice:?}"));
        let unanswered = reqs.iter().filter(|r| r.status.is_none()).count();
        if unanswered > 0 {
            row.notes.push(format!("{unanswered} not answered by the server"));
        }
        match self.loss_allowed_before {
            None => row.check(lost.is_empty(), format!("lost: {:?}", lost.iter().map(|r| r.id).collect::<Vec<_>>())),
            Some(t) => {
                let late: Vec<u64> = lost.iter().filter(|r| r.at >= t).map(|r| r.id).collect();
                row.check(late.is_empty(), format!("lost after the agent caught up: {late:?}"));
                let dropped = row.counted.get("ringbuf_full").copied().unwrap_or(0.0);
                row.check(
                    (row.lost as f64) <= dropped,
                    format!("{} lost but only {dropped} records counted dropped", row.lost),
                );
            }
        }
        drop(reqs);
        Done { row, by_id, stderr: result.stderr }
    }
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process of a server this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn several(client: &Client, path: &str, n: usize) {
    for _ in 0..n {
        client.get(path);
    }
}

/// The worker the agent says is serving a request (its active-requests gauge, set each second).
fn busy_worker(mport: u16) -> Option<u32> {
    scrape(mport)
        .iter()
        .find(|l| l.name == "http_server_active_requests" && l.value >= 1.0)
        .and_then(|l| l.labels.get("pid")?.parse().ok())
}

/// Sends `path` from a thread; its worker dies serving it: by its own hand (`/abort`), or, with
/// `sigkill`, by SIGKILL once the agent counts the request active. Then the master replaces the
/// dead worker, and the replacement's requests must be traced.
fn worker_dies(fault: &str, path: &'static str, sigkill: bool) -> Row {
    let mut rig = Rig::start(fault, GunicornOpts::sync(2));
    several(&rig.client, "/hello", 20);
    let before = rig.g.worker_pids();
    let (id, tagged) = rig.client.tag(path);
    let port = rig.g.port();
    let at = Instant::now();
    let h = std::thread::spawn(move || {
        Conn::try_open(port).and_then(|mut c| c.try_send("GET", &tagged, &[("Connection", "close")], b"")).ok()
    });
    if sigkill {
        let victim = wait_for(Duration::from_secs(20), || busy_worker(rig.mport)).expect("the agent saw the request");
        kill(victim, libc::SIGKILL);
        rig.note(format!("worker {victim} killed while the agent counted its request active"));
    }
    let answer = h.join().unwrap();
    rig.row.check(answer.is_none(), format!("the dying request was answered: {answer:?}"));
    // The server read it before its worker died: the agent owes it a span.
    rig.client.book(id, at, None, true);
    let dead = wait_for(Duration::from_secs(20), || before.iter().copied().find(|w| !procfs::is_alive(*w)))
        .expect("a worker died");
    let workers = rig.g.wait_for_workers(2, &[dead]);
    several(&rig.client, "/hello", 20);
    let done = rig.finish();
    let mut row = done.row;
    if let Some(s) = done.by_id.get(&id).and_then(|v| v.first()) {
        let pid = s["resource"]["process.pid"].as_u64();
        row.check(pid == Some(u64::from(dead)), format!("the dying request's span names pid {pid:?}, not {dead}"));
        row.check(s["status"]["code"] == "error", format!("the dying request's span: {s}"));
        let error = attr_str(s, "error.type").unwrap_or_default().to_string();
        row.check(error == "no_response", format!("the dying request's error.type {error:?}"));
        row.notes.push(format!("the dying request: one error span, error.type {error}"));
    }
    row.notes.push(format!("worker {dead} replaced by {workers:?}, traced"));
    row
}

/// Gunicorn's USR2: the master forks a child that executes a new Gunicorn master, which forks new
/// workers; the old master is then stopped (TERM). Requests after that reach only the new
/// workers, children of a process that executed a new program while traced.
fn reexec() -> Row {
    let mut rig = Rig::start("2. exec: Gunicorn USR2 re-exec, old master stopped", GunicornOpts::sync(2));
    several(&rig.client, "/hello", 20);
    let old = rig.g.pid();
    let old_workers = rig.g.worker_pids();
    kill(old, libc::SIGUSR2);
    let ready = rig.g.dir().join("ready");
    let new_master = wait_for(Duration::from_mins(1), || {
        procfs::children(old).into_iter().find(|c| {
            let w = procfs::children(*c);
            !old_workers.contains(c) && w.len() == 2 && w.iter().all(|p| ready.join(p.to_string()).exists())
        })
    })
    .expect("a new master with 2 ready workers after USR2");
    kill(old, libc::SIGTERM);
    let gone = wait_until(Duration::from_mins(1), || {
        !procfs::is_alive(old) && old_workers.iter().all(|w| !procfs::is_alive(*w))
    });
    rig.row.check(gone, "the old master and workers exited");
    let new_workers = procfs::children(new_master);
    let first = rig.client.ledger.next.load(Relaxed);
    several(&rig.client, "/hello", 30);
    let done = rig.finish();
    let mut row = done.row;
    let executed = done.stderr.contains(&format!("pid {new_master} executed"));
    row.check(executed, format!("the agent never said pid {new_master} executed"));
    let after: Vec<&Value> = done.by_id.iter().filter(|(id, _)| **id >= first).flat_map(|(_, v)| v).collect();
    let by_new = after
        .iter()
        .filter(|s| s["resource"]["process.pid"].as_u64().is_some_and(|p| new_workers.contains(&(p as u32))));
    let by_new = by_new.count();
    row.check(by_new == after.len(), format!("{by_new} of {} spans after the exec from new workers", after.len()));
    row.notes.push(format!(
        "new master {new_master} (executed while traced), its workers {new_workers:?}: {by_new} spans after the old master stopped"
    ));
    row
}

fn thousand_children() -> Row {
    let mut rig = Rig::start(
        "3. 1,000 short-lived children forked by a traced worker",
        GunicornOpts::sync(2).args(&["--timeout", "120"]),
    );
    several(&rig.client, "/hello", 10);
    let tracked_before = rig.maps().get("TRACKED").entries();
    let load = Load::start(&rig.client, "/hello", 1, Duration::from_millis(5));
    let r = rig.client.get_within("/fork/1000", Duration::from_secs(100));
    load.finish();
    rig.row.check(r.as_ref().is_some_and(|r| r.text() == "1000"), format!("/fork/1000: {:?}", r.map(|r| r.text())));
    std::thread::sleep(Duration::from_secs(2));
    let tracked_after = rig.maps().get("TRACKED").entries();
    rig.row.check(
        tracked_after == tracked_before,
        format!("TRACKED entries {tracked_before} before, {tracked_after} after"),
    );
    let done = rig.finish();
    let mut row = done.row;
    let forker = done
        .by_id
        .values()
        .flatten()
        .find(|s| span_path(s).is_some_and(|p| p.starts_with("/fork/")))
        .and_then(|s| s["resource"]["process.pid"].as_u64());
    let followed = forker.map_or(0, |w| done.stderr.matches(&format!("(forked by {w})")).count());
    let exited = forker.map_or(0, |_| done.stderr.matches(" exited; still tracing").count());
    row.check(followed == 1000, format!("the agent followed {followed} of the 1,000 children"));
    if row.count("attach_error:tls_probe") > 0 {
        row.notes.push(
            "`attach_error:tls_probe`: each child's per-process libssl probes (5), attached after it had already exited".into(),
        );
    }
    row.notes.push(format!(
        "the agent followed {followed} children and saw {exited} exits; TRACKED entries {tracked_before} before, {tracked_after} after"
    ));
    row
}

fn idle_connections() -> Row {
    const N: usize = 10_000;
    let opts = GunicornOpts::gthread(2, 4).args(&["--worker-connections", "12000", "--keep-alive", "600"]);
    let mut rig = Rig::start("4. 10,000 idle keep-alive connections to gthread Gunicorn", opts);
    let conns_before = rig.maps().get("CONNS").entries();
    let openers: Vec<JoinHandle<Vec<Conn>>> = (0..4)
        .map(|_| {
            let client = rig.client.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for _ in 0..N / 4 {
                    let (id, tagged) = client.tag("/hello");
                    let at = Instant::now();
                    let mut c = Conn::open(client.port);
                    let r = c.try_send("GET", &tagged, &[], b"");
                    let status = r.ok().map(|r| r.status);
                    client.book(id, at, status, status.is_some());
                    held.push(c);
                }
                held
            })
        })
        .collect();
    let mut held: Vec<Conn> = openers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let conns_held = rig.maps().get("CONNS").entries();
    rig.row.check(conns_held >= conns_before + N, format!("CONNS held {conns_held} entries with {N} connections open"));
    // Idle a while, then a second request on every 100th: still followed.
    std::thread::sleep(Duration::from_secs(3));
    for c in held.iter_mut().step_by(100) {
        let (id, tagged) = rig.client.tag("/hello");
        let at = Instant::now();
        let status = c.try_send("GET", &tagged, &[], b"").ok().map(|r| r.status);
        rig.client.book(id, at, status, status.is_some());
    }
    for c in held {
        c.reset();
    }
    rig.note(format!(
        "CONNS entries {conns_before} before, {conns_held} with the connections open (MAX_CONNECTIONS {MAX_CONNECTIONS}: no overflow); a second request on every 100th after 3 s idle"
    ));
    rig.finish().row
}

fn slow_loris() -> Row {
    const SLOW: usize = 100;
    let mut rig = Rig::start(
        "5. 100 slow-loris clients (head a byte every 40 ms) among normal requests",
        GunicornOpts::gthread(2, 128),
    );
    let port = rig.g.port();
    let mut slow: Vec<(u64, Instant, Conn, Vec<u8>)> = (0..SLOW)
        .map(|_| {
            let (id, tagged) = rig.client.tag("/hello");
            let req = build_request(port, "GET", &tagged, &[("Connection", "close")], b"");
            (id, Instant::now(), Conn::open(port), req)
        })
        .collect();
    let load = Load::start(&rig.client, "/hello", 2, Duration::from_millis(5));
    let longest = slow.iter().map(|s| s.3.len()).max().unwrap_or(0);
    for i in 0..longest {
        for (_, _, c, req) in &mut slow {
            if let Some(b) = req.get(i) {
                c.send_raw(&[*b]);
            }
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    for (id, at, mut c, _) in slow {
        let status = c.try_read_response().ok().map(|r| r.status);
        rig.client.book(id, at, status, status.is_some());
    }
    load.finish();
    rig.note(format!("heads of {longest} bytes sent a byte at a time over {:.1} s", longest as f64 * 0.04));
    rig.finish().row
}

/// Stops the agent (SIGSTOP) under load until `stopped_long_enough`, then SIGCONT; the target's
/// answered requests per second during the stop against the 5 s before; requests sent after the
/// agent caught up must all be traced.
fn agent_stopped(
    fault: &str,
    path: &'static str,
    stopped_long_enough: &mut dyn FnMut(&AgentMaps, Duration) -> bool,
) -> Row {
    const CLIENTS: usize = 4;
    let mut rig = Rig::start(fault, GunicornOpts::sync(2));
    let maps = rig.maps();
    // Records a request makes here (accept, read, writes, close), from 100 sent one by one.
    let received = |c: &BTreeMap<String, f64>| c.get("(events received)").copied().unwrap_or(0.0);
    let e0 = received(&settle(rig.mport));
    several(&rig.client, path, 100);
    let per_request = (received(&settle(rig.mport)) - e0) / 100.0;
    let load = Load::start(&rig.client, path, CLIENTS, Duration::ZERO);
    std::thread::sleep(Duration::from_secs(5));
    let stop = Instant::now();
    let agent = rig.agent_pid();
    kill(agent, libc::SIGSTOP);
    let enough = wait_until(Duration::from_mins(1), || stopped_long_enough(&maps, stop.elapsed()));
    let cont = Instant::now();
    let dropped_while_stopped = maps.get("DROPS").percpu_sum(RINGBUF_FULL);
    kill(agent, libc::SIGCONT);
    load.finish();
    rig.row.check(enough, "the stop condition was not met within 60 s");
    let stopped = cont - stop;
    let before = rig.client.answered_between(stop.checked_sub(Duration::from_secs(5)).unwrap(), stop) as f64 / 5.0;
    let during = rig.client.answered_between(stop, cont) as f64 / stopped.as_secs_f64();
    // Caught up: its counters still for a second; then requests it must all trace.
    settle(rig.mport);
    let recovered = Instant::now();
    rig.loss_allowed_before = Some(recovered);
    several(&rig.client, "/hello", 100);
    rig.note(format!(
        "stopped {:.1} s; the app answered {before:.0} requests/s before, {during:.0}/s during the stop (ratio {:.2}); ring buffer drops while stopped (kernel map) {dropped_while_stopped}; 100 requests after it caught up",
        stopped.as_secs_f64(),
        during / before
    ));
    let done = rig.finish();
    let mut row = done.row;
    let dropped = row.counted.get("ringbuf_full").copied().unwrap_or(0.0);
    // Only the requests in flight when the ring filled and when it drained lose part of their
    // records: every other lost request lost all of them.
    let edges = per_request * 2.0 * CLIENTS as f64;
    let off = (dropped - per_request * row.lost as f64).abs();
    row.check(
        off <= edges,
        format!("{dropped} records dropped for {} lost requests of {per_request} records", row.lost),
    );
    row.notes.push(format!(
        "`ringbuf_full` counts records the kernel could not queue; a request makes {per_request:.2} here (accept, read, 2 writes, close), so the counter explains {:.1} lost requests against {} lost (asserted: within the {CLIENTS} clients' requests in flight when the ring filled and when it drained); any other counter above holds records that did arrive of a request that lost some (`unknown_connection`: data on a connection whose accept was dropped; `malformed_response`: a response whose first write was dropped, its rest read as a head)",
        dropped / per_request,
        row.lost
    ));
    row
}

fn ring_buffer_filled() -> Row {
    let mut full_at: Option<Instant> = None;
    agent_stopped(
        "7a. ring buffer filled: agent stopped under load (4 KiB responses) until the kernel counts drops, +2 s",
        "/big/4096",
        &mut |maps, _| {
            if full_at.is_none() && maps.get("DROPS").percpu_sum(RINGBUF_FULL) > 0 {
                full_at = Some(Instant::now());
            }
            full_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(2))
        },
    )
}

fn conns_filled() -> Row {
    // Four workers, each holding 8,250 pairs (16,500 sockets: under the 20,000 descriptors a
    // process may have here) at the same time: 66,000 sockets for the map's 65,536 slots.
    const WORKERS: usize = 4;
    const PAIRS: usize = 8_250;
    let mut rig = Rig::start(
        "7b. CONNS filled: 4 traced workers each holding 8,250 loopback TCP pairs at once (66,000 sockets)",
        GunicornOpts::sync(WORKERS as u32).args(&["--timeout", "120"]),
    );
    several(&rig.client, "/hello", 10);
    // Those requests' connections closed (a sync worker closes after the client's own close), and
    // each worker that served one kept its entry, closed, for its next accept: the same number.
    let conns = rig.maps();
    wait_until(Duration::from_secs(10), || conns.get("CONNS").entries() <= WORKERS);
    let before = conns.get("CONNS").entries();
    let holders: Vec<JoinHandle<Option<Response>>> = (0..WORKERS)
        .map(|_| {
            let client = rig.client.clone();
            std::thread::spawn(move || client.get_within(&format!("/conns/{PAIRS}/15000"), Duration::from_secs(100)))
        })
        .collect();
    let answers: Vec<(usize, u64, u64)> = holders
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .filter_map(|r| {
            let t = r.text();
            let mut it = t.split(' ').map(|v| v.parse::<u64>().ok());
            Some((it.next()?? as usize, it.next()??, it.next()??))
        })
        .collect();
    let made: usize = answers.iter().map(|a| a.0).sum();
    rig.row.check(made == WORKERS * PAIRS, format!("the workers made {made} pairs: {answers:?}"));
    // All held at once: the last pair made before the first let go, so every insert met the map
    // at its fullest.
    let overlap = answers.iter().map(|a| a.1).max() < answers.iter().map(|a| a.2).min();
    rig.row.check(overlap, format!("the workers' pairs were not all held at once: {answers:?}"));
    std::thread::sleep(Duration::from_secs(2));
    // The pairs' entries went with their closes, but for the numbers below KEEP_BELOW_FD.
    let after = rig.maps().get("CONNS").entries();
    let kept_at_most = before + WORKERS * KEEP_BELOW_FD;
    rig.row.check(
        after <= kept_at_most,
        format!("CONNS entries {before} before, {after} after: more than the {kept_at_most} closed ones kept at most"),
    );
    several(&rig.client, "/hello", 20);
    // Each request's own connection, then a connect and an accept per pair. A request's socket
    // takes its worker's lowest free number, the one its /hello took: the closed entry of a
    // worker that served one (counted in `before`) is written over in place, and only the other
    // workers' requests take a slot.
    let total = WORKERS + 2 * made;
    let want = total.saturating_sub(MAX_CONNECTIONS);
    let done = rig.finish();
    let mut row = done.row;
    let counted = row.count("conn_map_full");
    row.check(counted == want, format!("conn_map_full +{counted}, expected {want}"));
    row.notes.push(format!(
        "{WORKERS} requests ({before} of them on a closed entry kept) + 2 x {made} = {total} for {MAX_CONNECTIONS} slots: {want} sockets not followed, each counted; {after} entries after (closed ones kept below fd {KEEP_BELOW_FD}), and requests traced again"
    ));
    row
}

fn tracked_filled() -> Row {
    const THREADS: usize = 16_500;
    let mut rig = Rig::start(
        "7c. TRACKED filled: 16,500 threads held by one traced worker",
        GunicornOpts::sync(2).args(&["--timeout", "120"]),
    );
    several(&rig.client, "/hello", 10);
    let before = rig.maps().get("TRACKED").entries();
    let r = rig.client.get_within(&format!("/threads/{THREADS}"), Duration::from_secs(100));
    let made: usize = r.as_ref().and_then(|r| r.text().parse().ok()).unwrap_or(0);
    rig.row.check(made == THREADS, format!("/threads/{THREADS} started {made}"));
    std::thread::sleep(Duration::from_secs(2));
    let after = rig.maps().get("TRACKED").entries();
    rig.row.check(after == before, format!("TRACKED entries {before} before, {after} after"));
    // Fork tracking works again: a worker killed now is replaced by one that is traced.
    let prev = rig.g.worker_pids();
    let victim = prev[0];
    kill(victim, libc::SIGKILL);
    let workers = rig.g.wait_for_workers(2, &[victim]);
    several(&rig.client, "/hello", 20);
    let want = (before + made).saturating_sub(MAX_TRACKED_PIDS);
    let done = rig.finish();
    let mut row = done.row;
    let counted = row.count("proc_map_full");
    row.check(counted == want, format!("proc_map_full +{counted}, expected {want}"));
    let fresh = workers.iter().find(|w| !prev.contains(w)).copied();
    let followed = fresh.is_some_and(|w| done.stderr.contains(&format!("following pid {w} ")));
    row.check(followed, format!("the replacement worker {fresh:?} was not followed"));
    if row.count("interpreter_read_error") > 0 {
        row.notes.push(
            "`interpreter_read_error`: the once-a-second reads of that worker's interpreter while it had more thread states than the read's bound (4,096)".into(),
        );
    }
    row.notes.push(format!(
        "{before} entries + {made} threads (each thread of a traced process takes an entry) for {MAX_TRACKED_PIDS} slots: {want} not entered, each counted; {after} after; a worker killed afterwards was replaced by a traced one"
    ));
    row
}

fn lru_maps() -> Row {
    Row {
        fault: "7d. INFLIGHT and the other LRU maps".into(),
        not_run: Some(
            "cannot be filled to a loss: INFLIGHT, SSL_CALLS, TLS_PENDING, SSL_FDS, GC_STARTED, GIL_REQUESTED, LAST_WALK and THREAD_REQUEST are LRU maps, which evict their least recently used entry instead of failing (so `inflight_map_full`, `tls_map_full` stay 0); INFLIGHT holds one entry per tracked thread inside a syscall, and tracked threads are capped by TRACKED (16,384, the same size: 7c), so no live entry can be evicted; PY_OFFSETS is filled only after a TRACKED insert succeeds"
                .into(),
        ),
        ..Row::default()
    }
}

fn concurrent_scrapes() -> Row {
    const SCRAPES: usize = 1000;
    let mut rig = Rig::start("8. 1,000 concurrent scrapes of /metrics", GunicornOpts::sync(2));
    several(&rig.client, "/hello", 20);
    let load = Load::start(&rig.client, "/hello", 1, Duration::from_millis(5));
    let barrier = Arc::new(std::sync::Barrier::new(SCRAPES));
    let mport = rig.mport;
    let scrapers: Vec<JoinHandle<bool>> = (0..SCRAPES)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    Conn::try_open(mport)
                        .and_then(|mut c| c.try_send("GET", "/metrics", &[("Connection", "close")], b""))
                        .is_ok_and(|r| r.status == 200 && r.text().trim_end().ends_with("# EOF"))
                })
                .unwrap()
        })
        .collect();
    let answered = scrapers.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    load.finish();
    rig.row.check(answered == SCRAPES, format!("{answered} of {SCRAPES} scrapes answered"));
    rig.note(format!(
        "{answered} of {SCRAPES} scrapes answered (200, ending # EOF), sent at once while requests flowed"
    ));
    rig.finish().row
}

/// Runs one fault, turning a panic (a server that would not start, say) into a failed row.
fn run(fault: &str, f: fn() -> Row) -> Row {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(row) => row,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(ToString::to_string))
                .unwrap_or_default();
            Row { fault: fault.into(), failures: vec![format!("panicked: {msg}")], ..Row::default() }
        }
    }
}

/// Lets the test process and the servers it starts hold the suite's connections: the soft
/// descriptor limit raised to the hard one (raising that needs CAP_SYS_RESOURCE).
fn raise_fd_limit(need: libc::rlim_t) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit with a local, initialised struct.
    let r = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim)
    };
    assert_eq!(r, 0, "raising RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
    assert!(lim.rlim_cur >= need, "the suite needs {need} descriptors per process; the hard limit is {}", lim.rlim_cur);
}

/// What the suite asserts, row by row (printed under the table).
const ASSERTED: &str = "Asserted for every row: survived, no request with two spans, and none lost, except in 6 and 7a, where the agent is stopped on purpose: there, none lost of the requests sent after it caught up, and the records `ringbuf_full` counts account for the lost requests (records per request, measured before, times the requests lost, to within the requests in flight when the ring filled and when it drained). Besides:

- 1a, 1b: the dying request (the server read it, never answered) is one span with status error and `error.type` `no_response`, naming the worker that died; the worker that replaced it is traced.
- 2: the agent says the new master executed a new program; every span after the old master stopped is from the new master's workers.
- 3: the agent followed all 1,000 children, and TRACKED is back to its entries before.
- 4: CONNS holds an entry for each of the 10,000 open connections (its size is 65,536, so nothing overflows).
- 5: each slow request is one span, like the normal ones around it.
- 7b, 7c: the overflow counter (`conn_map_full`, `proc_map_full`) is exactly the entries asked for beyond the map's size; the map is back to its entries before (in 7b, but for the closed entries kept below fd 32, at most 32 a worker); in 7c a worker forked afterwards is followed.
- 8: all 1,000 scrapes answered with a whole OpenMetrics text.
";

/// A fault: its key for `PYTRACER_FAULTS`, its name, and how it is run.
type Fault = (&'static str, &'static str, fn() -> Row);

const HEADER: &str = "| fault | survived | requests sent after ready | spans | lost | counted by the agent (deltas) | notes |\n|---|---|---|---|---|---|---|";

#[test]
#[ignore = "minutes long: run by `cargo xtask faults`"]
fn faults() {
    if !require_privileged() {
        return;
    }
    raise_fd_limit(20_000);
    let only = std::env::var("PYTRACER_FAULTS").unwrap_or_default();
    let faults: [Fault; 12] = [
        ("sigkill", "1a. worker killed by SIGKILL mid-request", || {
            worker_dies("1a. worker killed by SIGKILL mid-request (/sleep/20000)", "/sleep/20000", true)
        }),
        ("abort", "1b. worker crashes by os.abort() mid-request", || {
            worker_dies("1b. worker crashes by os.abort() mid-request (/abort)", "/abort", false)
        }),
        ("exec", "2. exec", reexec),
        ("children", "3. 1,000 children", thousand_children),
        ("idle", "4. 10,000 idle connections", idle_connections),
        ("slowloris", "5. slow-loris", slow_loris),
        ("sigstop", "6. agent SIGSTOP 5 s", || {
            agent_stopped("6. agent stopped (SIGSTOP) 5 s under load, then SIGCONT", "/hello", &mut |_, t| {
                t >= Duration::from_secs(5)
            })
        }),
        ("ringbuf", "7a. ring buffer", ring_buffer_filled),
        ("conns", "7b. CONNS", conns_filled),
        ("tracked", "7c. TRACKED", tracked_filled),
        ("lru", "7d. LRU maps", lru_maps),
        ("scrapes", "8. scrapes", concurrent_scrapes),
    ];
    let started = Instant::now();
    let mut table = String::from(HEADER);
    let _ = writeln!(std::io::stderr(), "\n{HEADER}");
    let mut failed = Vec::new();
    for (key, name, f) in faults {
        if !only.is_empty() && !only.split(',').any(|k| k == key) {
            continue;
        }
        let row = run(name, f);
        let line = row.markdown();
        let _ = writeln!(std::io::stderr(), "{line}");
        let _ = write!(table, "\n{line}");
        if !row.failures.is_empty() {
            failed.push(format!("{}: {}", row.fault, row.failures.join("; ")));
        }
    }
    let took = started.elapsed();
    let report = format!(
        "# Fault suite\n\nReproduce: `cargo xtask faults` ({:.1} minutes for this run; tests/tests/faults.rs). Each fault runs against its own Gunicorn serving tests/apps/testapp.py and its own release agent (`pytracer trace --pid`). Survived: the agent still runs and a check request sent after the fault is exactly one span. Requests sent: every request the suite sent once the agent was ready, the check included. Lost: requests owed a span (answered, or seen started before their worker died) without one. Counted: the deltas of the agent's `pytracer_events_dropped_total{{reason}}`, `pytracer_attach_errors_total{{reason}}`, `pytracer_connections_unadopted_total` and `pytracer_adopted_skipped_records_total` over the fault.\n\n{table}\n\n{ASSERTED}",
        took.as_secs_f64() / 60.0
    );
    let path = std::env::var_os("PYTRACER_FAULTS_REPORT")
        .map_or_else(|| workspace_root().join("bench/out/faults.md"), std::path::PathBuf::from);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, &report).unwrap();
    let _ = writeln!(std::io::stderr(), "\n{:.1} minutes; report: {}", took.as_secs_f64() / 60.0, path.display());
    assert!(failed.is_empty(), "faults failed:\n{}", failed.join("\n"));
}
