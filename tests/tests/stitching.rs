//! Same-host stitching, many times over: a traced frontend calls a traced backend with no
//! propagation header, and every backend span must be the child of the frontend's client span
//! for that call, in the frontend's trace, whatever CPUs the two run on and whether each call
//! has a connection of its own (so the caller may have closed before the callee's span settles)
//! or all share one keep-alive connection.
use std::collections::{HashMap, HashSet};

use pytracer_tests::*;
use serde_json::Value;

const CALLS: usize = 200;

/// Pins every thread of `pid` to one CPU.
fn pin(pid: u32, cpu: usize) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for t in tasks.flatten() {
        let tid: i32 = t.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: a plain syscall on a local, initialised CPU set.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &raw const set)
        };
        assert_eq!(rc, 0, "pin {tid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}

#[test]
fn every_call_is_stitched_whatever_the_cpus_and_connections() {
    if !require_privileged() {
        return;
    }
    let back = Gunicorn::start(GunicornOpts::sync(1).app("stitchapp:app"));
    let front = Gunicorn::start(GunicornOpts::sync(1).app("stitchapp:app"));
    let (back_worker, front_worker) = (back.worker_pids()[0], front.worker_pids()[0]);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let t = Tracer::start(&[back.pid(), front.pid()], &[]);
    let mut cases = Vec::new();
    for (route, keepalive) in [("fresh", false), ("keepalive", true)] {
        for (cpu_back, cpu_front, placement) in [(0, 0, "same-cpu"), (0, 1 % cpus, "two-cpus")] {
            pin(back_worker, cpu_back);
            pin(front_worker, cpu_front);
            let case = format!("{route}-{placement}");
            let r = get(front.port(), &format!("/{route}/{}/{case}/{CALLS}", back.port()));
            assert_eq!((r.status, String::from_utf8_lossy(&r.body).into_owned()), (200, CALLS.to_string()), "{case}");
            cases.push((case, keepalive));
        }
    }
    let r = t.stop();
    let by_id: HashMap<&str, &Value> = r.spans.iter().map(|s| (s["span_id"].as_str().unwrap(), s)).collect();
    for (case, keepalive) in &cases {
        let query = format!("case={case}");
        let callee: Vec<&Value> = r
            .spans
            .iter()
            .filter(|s| s["kind"] == "server" && attr_str(s, "url.query") == Some(query.as_str()))
            .collect();
        assert_eq!(callee.len(), CALLS, "{case}: backend spans");
        let front_span = r
            .spans
            .iter()
            .find(|s| {
                s["kind"] == "server"
                    && attr_str(s, "url.path").is_some_and(|p| p.ends_with(&format!("/{case}/{CALLS}")))
            })
            .unwrap_or_else(|| panic!("{case}: no frontend span\n{}", summarize(&r.spans)));
        let mut parents = HashSet::new();
        for s in &callee {
            let parent = s["parent_span_id"].as_str().and_then(|p| by_id.get(p));
            let parent = parent
                .unwrap_or_else(|| panic!("{case} (keep-alive {keepalive}): a backend span without its caller: {s}"));
            assert_eq!(parent["kind"], "client", "{case}: {s}");
            assert_eq!(
                parent["parent_span_id"], front_span["span_id"],
                "{case}: the call is the frontend request's child"
            );
            assert_eq!(s["trace_id"], front_span["trace_id"], "{case}: one trace");
            parents.insert(parent["span_id"].as_str().unwrap());
        }
        assert_eq!(parents.len(), CALLS, "{case}: each backend span has its own call");
    }
    let stitched = format!(" stitched={} stitch_missed=0", CALLS * cases.len());
    assert!(r.stderr.contains(&stitched), "{}", r.stderr);
}
