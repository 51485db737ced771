//! End to end: the agent's Prometheus endpoint while it traces a real Gunicorn.
use std::collections::HashMap;
use std::time::Duration;

use pytracer_tests::*;

#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn red_and_process_metrics_match_the_requests() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let mport = free_port();
    let t = Tracer::start(&[g.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    for i in 0..5 {
        assert_eq!(get(g.port(), &format!("/users/{i}")).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(g.port(), "/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(g.port(), "/fail").status, 500);
    }
    assert_eq!(request(g.port(), "POST", "/items", &[], b"abc").status, 201);
    // No rule serves it: the label falls back to the path's template.
    assert_eq!(get(g.port(), "/nope/7").status, 404);
    // Process metrics are sampled once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let m = scrape(mport);

    let count = "http_server_request_duration_seconds_count";
    let get200 = [("http_request_method", "GET"), ("http_response_status_code", "200")];
    assert_eq!(sum(&m, count, &[get200[0], get200[1], ("http_route", "/users/<int:user_id>")]), 5.0);
    assert_eq!(sum(&m, count, &[("http_response_status_code", "404"), ("http_route", "/nope/{id}")]), 1.0);
    assert_eq!(sum(&m, count, &[get200[0], get200[1], ("http_route", "/hello")]), 3.0);
    assert_eq!(sum(&m, count, &[("http_response_status_code", "500"), ("http_route", "/fail")]), 2.0);
    assert_eq!(
        sum(
            &m,
            count,
            &[("http_request_method", "POST"), ("http_response_status_code", "201"), ("http_route", "/items")]
        ),
        1.0
    );
    assert_eq!(sum(&m, count, &[]), 12.0, "no other requests");
    // The first worker to serve read the app's routes; the other (if it served) took that table.
    let tables = |result: &str| sum(&m, "pytracer_route_tables_total", &[("result", result)]);
    assert!(
        tables("read") == 1.0 && tables("reused") <= 1.0,
        "route tables: read {}, reused {}",
        tables("read"),
        tables("reused")
    );
    assert_eq!(sum(&m, "http_server_request_body_size_bytes_sum", &[("http_route", "/items")]), 3.0);
    assert_eq!(
        sum(&m, "http_server_response_body_size_bytes_sum", &[("http_route", "/hello")]),
        15.0,
        "3 × b\"hello\""
    );
    let workers = g.worker_pids();
    for l in m.iter().filter(|l| l.name.starts_with("http_server_request_duration_seconds")) {
        assert_eq!(l.labels["service_name"], "testapp");
        assert_eq!(l.labels["process_role"], "worker");
        assert!(workers.contains(&l.labels["pid"].parse().unwrap()), "{l:?}");
    }

    // Per-process metrics for the master and each worker, with their roles.
    let master = g.pid().to_string();
    let threads = |pid: &str| sum(&m, "process_thread_count", &[("pid", pid)]);
    assert!(threads(&master) >= 1.0);
    assert_eq!(
        m.iter().find(|l| l.name == "process_thread_count" && l.labels["pid"] == master).unwrap().labels
            ["process_role"],
        "master"
    );
    for w in &workers {
        let w = w.to_string();
        assert_eq!(threads(&w), 1.0, "a sync worker has one thread");
        assert!(sum(&m, "process_memory_usage_bytes", &[("pid", &w)]) > 1e6);
        assert!(sum(&m, "process_open_file_descriptor_count", &[("pid", &w)]) >= 3.0);
        assert!(sum(&m, "process_cpu_time_seconds_total", &[("pid", &w), ("cpu_mode", "user")]) > 0.0);
        for t in ["voluntary", "involuntary"] {
            assert_eq!(
                m.iter()
                    .filter(|l| l.name == "process_context_switches_total"
                        && l.labels["pid"] == w
                        && l.labels["type"] == t)
                    .count(),
                1
            );
        }
        assert_eq!(m.iter().filter(|l| l.name == "process_paging_faults_total" && l.labels["pid"] == w).count(), 2);
    }
    assert_eq!(sum(&m, "pytracer_processes", &[("attach_state", "traced")]), 3.0);
    assert_eq!(sum(&m, "pytracer_events_dropped_total", &[("reason", "ringbuf_full")]), 0.0);
    assert!(sum(&m, "pytracer_events_received_total", &[]) >= 11.0 * 4.0, "accept, read, writes, close per request");
    assert!(sum(&m, "pytracer_memory_usage_bytes", &[]) > 0.0);
    let r = t.stop();
    assert_eq!(r.spans.len(), 12);
}

#[test]
fn ring_buffer_overflow_is_counted() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let mport = free_port();
    let t = Tracer::start(&[g.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    let agent = t.pid().unwrap() as i32;
    // Stop the agent (never the target): the kernel side goes on producing, the ring buffer
    // (4 MiB) fills with the uploads' records, and every record that does not fit is counted.
    // Gunicorn reads a 1 MB body in about four recv calls, 4 KiB of each captured: about 21 KB of
    // records per upload until 2 MiB wait unread, then 1 KiB of each (the pressed capture, about
    // 5 KB per upload): about 100 uploads fill the first half and 420 more the second, so 1000
    // bring twice what fits.
    unsafe { libc::kill(agent, libc::SIGSTOP) };
    let body = vec![b'u'; 1_048_576];
    for _ in 0..1000 {
        assert_eq!(request(g.port(), "POST", "/upload", &[], &body).status, 200);
    }
    unsafe { libc::kill(agent, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(2500));
    let dropped = sum(&scrape(mport), "pytracer_events_dropped_total", &[("reason", "ringbuf_full")]);
    assert!(dropped > 0.0, "1000 uploads must overflow a 4 MiB ring buffer");
    let r = t.stop();
    let summary = r.stderr.lines().rev().find(|l| l.contains("kernel_dropped[")).unwrap();
    assert!(summary.contains(&format!("ringbuf_full={dropped} ")), "metric {dropped} vs exit summary: {summary}");
    assert!(r.stderr.contains("kernel events dropped so far"), "the agent warns on stderr:\n{}", r.stderr);
}

/// pyenv's shared libpython: the GC pause comes from a uprobe pair on the collector function.
#[test]
fn cpython_metrics_match_the_interpreter() {
    if !require_privileged() {
        return;
    }
    check_cpython_metrics(GunicornOpts::sync(2), "3.11.7");
}

/// Debian's static, stripped python3.11: no collector symbol, so the GC pause comes from the
/// gc__start/gc__done USDT probes, whose semaphores the kernel raises.
#[test]
fn cpython_metrics_match_the_interpreter_on_a_static_stripped_build() {
    if !require_privileged_debian() {
        return;
    }
    check_cpython_metrics(GunicornOpts::sync(2).venv(debian_venv_dir()), "3.11.2");
}

/// Debian sid's static, stripped 3.14 and 3.15 in a chroot: where the GC state is comes from
/// `_Py_DebugOffsets`, what is in it from their GC rows (3.15 keeps its statistics in ring
/// buffers), and the pauses from their gc__start/gc__done USDT probes.
#[test]
fn cpython_metrics_match_the_interpreter_on_3_14_and_3_15() {
    let venvs = [("/opt/venv-3.14", "3.14.10"), ("/opt/venv-3.15", "3.15.2")];
    if !require_chroot_venvs(&venvs.map(|(venv, _)| ("sid", venv))) {
        return;
    }
    for (venv, version) in venvs {
        check_cpython_metrics(GunicornOpts::sync(2).chroot(debian_chroot("sid"), venv), version);
    }
}

/// The interpreter's own numbers, read by pytracer from outside, against what the worker says of
/// itself: GC statistics per generation (gc.get_stats()), thread states, the runtime's version,
/// and one GC-pause observation per collection.
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn check_cpython_metrics(opts: GunicornOpts, version: &str) {
    let g = Gunicorn::start(opts);
    let mport = free_port();
    let t = Tracer::start(&[g.pid()], &["--metrics-addr", &format!("127.0.0.1:{mport}")]);
    std::thread::sleep(Duration::from_millis(1500));
    let before = scrape(mport);
    let pause_count = |m: &[Line], pid: &str| sum(m, "cpython_gc_pause_seconds_count", &[("pid", pid)]);
    let collections = |m: &[Line], pid: &str| sum(m, "cpython_gc_collections_total", &[("pid", pid)]);

    // Explicit collections; the app raised gen0's threshold, so no others happen.
    let mut collected_by: HashMap<String, [u32; 3]> = HashMap::new();
    for generation in [2, 0, 1, 2, 2, 0] {
        let pid = get(g.port(), &format!("/gc/collect/{generation}")).text();
        collected_by.entry(pid).or_default()[generation] += 1;
    }
    std::thread::sleep(Duration::from_millis(1500));

    let workers = g.worker_pids();
    let mut seen = HashMap::new();
    while seen.len() < workers.len() {
        let v: serde_json::Value = serde_json::from_slice(&get(g.port(), "/debug/runtime").body).unwrap();
        seen.insert(v["pid"].to_string(), v);
    }
    // Scraped after the workers' own accounts, so that the CPU the /debug/runtime requests
    // themselves cost is counted on both sides (scraped first, a busy machine made them up to
    // 60 ms apart); the wait lets the interpreter figures settle.
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape(mport);
    for (pid, inside) in &seen {
        for generation in 0..3 {
            let gen = generation.to_string();
            let want = &inside["gc"][generation];
            for (metric, key) in [
                ("cpython_gc_collections_total", "collections"),
                ("cpython_gc_collected_objects_total", "collected"),
                ("cpython_gc_uncollectable_objects_total", "uncollectable"),
            ] {
                let got = sum(&after, metric, &[("pid", pid), ("cpython_gc_generation", &gen)]);
                assert_eq!(got, want[key].as_f64().unwrap(), "pid {pid} generation {gen} {key}");
            }
        }
        assert_eq!(
            sum(&after, "cpython_threads", &[("pid", pid)]),
            inside["threads"].as_f64().unwrap(),
            "pid {pid} threads"
        );
        // procfs counts CPU in 10 ms ticks and is read at the scrape, which came after the
        // worker's getrusage; the idle worker spent far less than 50 ms in between (the end of
        // that request, heartbeats).
        for (mode, key) in [("user", "utime"), ("system", "stime")] {
            let outside = sum(&after, "process_cpu_time_seconds_total", &[("pid", pid), ("cpu_mode", mode)]);
            let inside_s = inside["rusage"][key].as_f64().unwrap();
            assert!(
                (outside - inside_s).abs() < 0.05,
                "pid {pid} {mode} CPU: {outside} s from /proc, {inside_s} s from getrusage"
            );
        }
        assert_eq!(
            sum(&after, "python_info", &[("pid", pid), ("version", version), ("implementation", "cpython")]),
            1.0
        );
        let by_generation = collected_by.get(pid).copied().unwrap_or_default();
        for (generation, n) in by_generation.iter().enumerate() {
            // gc.collect(g) counts once, in generation g's entry of gc.get_stats().
            let of = |m: &[Line]| {
                sum(
                    m,
                    "cpython_gc_collections_total",
                    &[("pid", pid), ("cpython_gc_generation", &generation.to_string())],
                )
            };
            assert_eq!(of(&after) - of(&before), f64::from(*n), "pid {pid}: generation {generation} collections");
        }
        let n = f64::from(by_generation.iter().sum::<u32>());
        assert_eq!(collections(&after, pid) - collections(&before, pid), n, "pid {pid}: collections counted in memory");
        assert_eq!(pause_count(&after, pid) - pause_count(&before, pid), n, "pid {pid}: one GC pause per collection");
    }
    let paused: f64 = sum(&after, "cpython_gc_pause_seconds_sum", &[]);
    assert!(paused > 0.0, "pauses have a duration");
    assert_eq!(sum(&after, "pytracer_processes", &[("python_support", "supported")]), 3.0);
    let r = t.stop();
    assert!(!r.stderr.contains("no GC pause metric"), "{}", r.stderr);
}

/// The GC probes run in the traced processes only: an untraced Python mapping the very same
/// libpython runs none of them, however often it collects. (On the file for every process, each
/// of its collections had trapped into them.)
#[test]
fn gc_probes_run_in_traced_processes_only() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let t = Tracer::start(&[g.pid()], &[]);
    let agent = t.pid().unwrap();
    let _stats = RunStats::enable();
    let runs = || program_runs(agent, "gc_start");
    let before = runs();
    // The app raised gen0's threshold: these are the workers' only collections.
    for _ in 0..3 {
        assert_eq!(get(g.port(), "/gc/collect/0").status, 200);
    }
    let traced = runs() - before;
    let out = std::process::Command::new(venv_dir().join("bin").join("python"))
        .args(["-c", "import gc\nfor _ in range(200): gc.collect(0)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let untraced = runs() - before - traced;
    assert_eq!(traced, 3, "one run per collection in the traced workers");
    assert_eq!(untraced, 0, "no run in an untraced Python with the same libpython");
    t.stop();
}

/// The GIL-wait histogram costs a uprobe pair on every PyEval_RestoreThread, so it is off unless
/// the configuration asks for it: no samples by default, samples for every worker when on.
#[test]
#[expect(clippy::float_cmp, reason = "the metrics compared are counts, exact in f64")]
fn gil_wait_is_opt_in() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::gthread(2, 4));
    for enabled in [false, true] {
        let dir = TempDir::new("gil-config").unwrap();
        let config = dir.path().join("pytracer.yaml");
        std::fs::write(&config, format!("cpython:\n  gil_wait: {enabled}\n")).unwrap();
        let mport = free_port();
        let t = Tracer::start(
            &[g.pid()],
            &["--config", config.to_str().unwrap(), "--metrics-addr", &format!("127.0.0.1:{mport}")],
        );
        for _ in 0..40 {
            assert_eq!(get(g.port(), "/sleep/1").status, 200);
        }
        std::thread::sleep(Duration::from_millis(1500));
        let m = scrape(mport);
        let waits = sum(&m, "cpython_gil_wait_seconds_count", &[]);
        let requests = sum(&m, "http_server_request_duration_seconds_count", &[]);
        assert_eq!(requests, 40.0);
        if enabled {
            // time.sleep releases the GIL and takes it back: at least once per request.
            assert!(waits >= 40.0, "{waits} GIL waits for 40 requests");
            eprintln!("GIL waits per request (gthread, /sleep/1): {:.1}", waits / requests);
        } else {
            assert_eq!(waits, 0.0, "off by default");
        }
        t.stop();
    }
}

/// A process's series go away once it has exited and the grace period passed: metrics do not
/// grow with every worker Gunicorn ever recycled.
#[test]
fn exited_process_series_are_removed() {
    if !require_privileged() {
        return;
    }
    let g = Gunicorn::start(GunicornOpts::sync(2));
    let dir = TempDir::new("grace-config").unwrap();
    let config = dir.path().join("pytracer.yaml");
    std::fs::write(&config, "metrics:\n  exited_process_grace_seconds: 1\n").unwrap();
    let mport = free_port();
    let t = Tracer::start(
        &[g.pid()],
        &["--config", config.to_str().unwrap(), "--metrics-addr", &format!("127.0.0.1:{mport}")],
    );
    let victim = get(g.port(), "/pid").text();
    std::thread::sleep(Duration::from_millis(1500));
    let has = |m: &[Line], name: &str| m.iter().any(|l| l.name == name && l.labels.get("pid") == Some(&victim));
    let before = scrape(mport);
    for name in ["http_server_request_duration_seconds_count", "process_thread_count", "cpython_threads", "python_info"]
    {
        assert!(has(&before, name), "{name} for pid {victim} before it exits");
    }
    unsafe { libc::kill(victim.parse().unwrap(), libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || t.stderr_now().contains(&format!("pid {victim} exited"))));
    std::thread::sleep(Duration::from_secs(3));
    let after = scrape(mport);
    let left: Vec<&Line> = after.iter().filter(|l| l.labels.get("pid") == Some(&victim)).collect();
    assert!(left.is_empty(), "series of the exited pid {victim} remain: {left:?}");
    t.stop();
}
